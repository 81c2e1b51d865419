"""python -m training.label: teacher-label real footage into a landmark dataset.

    python -m training.label pose ../shared/media/pose ../shared/media/images --out data/real_pose \
        --split configs/splits/real_media.yaml
    python -m training.label face ../shared/media/face --out data/real_face --split ...
    python -m training.label faceparts ../shared/media/face --out data/real_faceparts --split ...
    python -m training.label person-finder ../shared/media/pose ../shared/media/images \
        ../shared/media/images2/body --out data/person_finder --split ...

Each labelled person (or face) is stored as a *context crop*: the square around its landmarks'
box (``box_margin`` x their extent, the crop the device's tracker makes), enlarged
``--context`` times so augmentation can zoom out and rotate, and resampled so the landmark box
is ``--box-px`` pixels wide. That keeps a dataset of thousands of frames small and quick to
read, and the coordinates are those of the stored image.

Layout of ``--out`` (pose): ``images/<source>/<frame>_<person>.jpg``, ``annot/train.json``
and ``annot/valid.json`` (MPII-16, read by ``--dataset mpii``), ``annotations/
person_keypoints_{train,valid}.json`` (COCO-17, read by ``--dataset coco`` with
``--option images=<out>/images``). Faces: ``train/`` and ``valid/`` hold each crop with its
68-point ``.pts`` (read by ``--dataset 300w --split all``). Face parts: the ``label-map``
layout of :mod:`training.segmentation.data` (``classes.txt``, ``<split>/images/*.jpg``,
``<split>/labels/*.png``). A split file (``--split``) adds a third side, ``select`` (models
are chosen there, never reported), beside ``train`` and ``valid``, and
``sources_<task>.json`` names each source's path, side and activity group. The finders'
labels (``person-finder``, ``face-finder``) are whole frames instead, at most ``--frame-px``
on the long side, each with every person's (face's) box and landmark crop:
``<side>/<source>/<frame>.jpg`` and ``finder_<side>.json`` (training.label.finder).
Pose crops have their person mask beside them (``<frame>_<person>.mask.png``: the teacher's
segmentation in the crop's pixels, 8-bit; ``--no-masks`` leaves them out), which training's
background swap needs. ``summary_<task>.json`` counts what was read, kept and dropped, and
why. Sources already finished (``parts/``) with the same settings are skipped when a run is
repeated, so an interrupted run resumes where it stopped; pose sources labelled without masks
are labelled again by a run with them. Each record keeps its
``source`` (``<clip>/<frame>``) and ``frame_box``, the stored crop's square in the original
frame's pixels, so every label traces back to where it came from.
"""

from __future__ import annotations

from pathlib import Path

from edge.cli import (
    ArgumentParser,
    add_threads_argument,
    float_in_range,
    non_negative_int,
    positive_float,
    positive_int,
    run_cli,
    unit_float,
)

from .labellers import FINDER_TASKS, LabelOptions
from .labelling import label


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m training.label",
        description="Label real videos and photos with a teacher model (BlazePose for bodies, "
        "MediaPipe's face mesh for faces) and write a dataset our readers read.",
    )
    p.add_argument(
        "task",
        choices=("pose", "face", "faceparts", *FINDER_TASKS),
        help="bodies (MPII-16 + COCO-17), faces (iBUG-68), face parts (11-class label maps, "
        "training.label.faceparts; --box-margin applies to the face oval), or whole frames "
        "for the finders: person-finder (every person's box and BlazePose ROI) and "
        "face-finder (every face's box and face-mesh ROI)",
    )
    p.add_argument(
        "sources", nargs="+", help="videos, images, folders (searched recursively) or globs"
    )
    p.add_argument("--out", required=True, type=Path, help="output dataset folder")
    p.add_argument(
        "--split",
        type=Path,
        default=None,
        help="YAML of whole sources held out (training/splits.py): under 'valid: <task>:' the "
        "reported ones, under 'select: <task>:' those that choose models; names or fnmatch "
        "patterns on a file's stem or <folder>/<stem>; every other source trains. Default: all "
        "train",
    )
    p.add_argument("--every", type=positive_int, default=2, help="label every N-th video frame")
    p.add_argument(
        "--max-per-source",
        type=non_negative_int,
        default=0,
        help="keep at most this many frames per video, evenly spread (0: no limit)",
    )
    p.add_argument("--min-detection", type=unit_float, default=0.5, help="detector score to accept")
    p.add_argument(
        "--min-presence",
        type=unit_float,
        default=0.8,
        help="teacher presence score below which a detection is dropped",
    )
    p.add_argument(
        "--min-visibility",
        type=unit_float,
        default=0.5,
        help="a landmark counts as visible at this teacher confidence",
    )
    p.add_argument(
        "--min-landmarks",
        type=non_negative_int,
        default=8,
        help="drop a person with fewer visible landmarks (pose)",
    )
    p.add_argument(
        "--people", type=positive_int, default=4, help="most people labelled per photo (pose)"
    )
    p.add_argument(
        "--box-margin",
        type=positive_float,
        default=1.25,
        help="crop box = landmarks' extent x this (the model's box_margin)",
    )
    p.add_argument(
        "--context", type=float_in_range(1.0), default=2.0, help="stored crop = box x this"
    )
    p.add_argument("--box-px", type=int, default=160, help="landmark box width in stored pixels")
    p.add_argument(
        "--frame-px",
        type=int,
        default=320,
        help="person-finder, face-finder: the stored frame's long side at most, in pixels "
        "(frames are only ever made smaller; default 320, twice a 160-px finder's input)",
    )
    p.add_argument(
        "--no-hair",
        action="store_true",
        help="faceparts: leave hair out (background) instead of taking it from the "
        "selfie segmenter",
    )
    p.add_argument(
        "--no-masks",
        dest="masks",
        action="store_false",
        help="pose: store no person masks (by default the teacher's mask of each person is "
        "written beside its crop as <crop>.mask.png, for augment.background_prob)",
    )
    p.add_argument(
        "--labels-version",
        type=int,
        default=None,
        metavar="N",
        help="face: which teacher mapping to label with: 1 the plain mesh table, 2 "
        "(the default) moved to where people annotate (training.label.face."
        "HUMAN_VERTICAL_OFFSET); an older one reproduces an older model's labels",
    )
    add_threads_argument(p, help="teacher interpreter threads")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The flags' names are LabelOptions' fields: a flag without a field fails here, at once.
    options = LabelOptions(**{**vars(args), "sources": tuple(args.sources)})
    return run_cli(
        lambda: label(options),
        interrupted="interrupted: finished sources are kept in parts/; run again to resume",
    )
