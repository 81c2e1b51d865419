"""python -m training.label: teacher-label real footage into a landmark dataset.

    python -m training.label pose ../shared/media/pose ../shared/media/images --out data/real_pose \
        --split configs/splits/real_media.yaml
    python -m training.label face ../shared/media/face --out data/real_face --split ...
    python -m training.label faceparts ../shared/media/face --out data/real_faceparts --split ...

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
``<split>/labels/*.png``). ``summary.json`` counts what was
read, kept and dropped, and why. Sources already finished (``parts/``) are skipped when a run
is repeated, so an interrupted run resumes where it stopped. Each record keeps its
``source`` (``<clip>/<frame>``) and ``frame_box``, the stored crop's square in the original
frame's pixels, so every label traces back to where it came from.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from edge.cli import ArgumentParser, add_threads_argument, run_cli
from edge.errors import EdgeError
from edge.transform import CropBox, apply_affine, box_from_points, warp_crop
from training.data.pts import write_pts

from ..splits import load_split
from . import mappings, writers
from .sources import UnreadableSource, expand, frames, is_image

# The newest teacher-to-skeleton mapping of a task. Bumped when it changes, so a resumed run
# labels again what an older mapping labelled (the options alone would not tell), and
# --labels-version makes an older one's labels again (to reproduce a model's reported score).
# face 1: the plain mesh table; 2: moved by to_ibug68's human offsets.
LABELS_VERSION = {"face": 2}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m training.label",
        description="Label real videos and photos with a teacher model (BlazePose for bodies, "
        "MediaPipe's face mesh for faces) and write a dataset our readers read.",
    )
    p.add_argument(
        "task", choices=("pose", "face", "faceparts"),
        help="bodies (MPII-16 + COCO-17), faces (iBUG-68) or face parts (11-class label maps, "
        "training.label.faceparts; --box-margin applies to the face oval)",
    )  # fmt: skip
    p.add_argument(
        "sources", nargs="+", help="videos, images, folders (searched recursively) or globs"
    )
    p.add_argument("--out", required=True, type=Path, help="output dataset folder")
    p.add_argument(
        "--split",
        type=Path,
        default=None,
        help="YAML naming the sources (file stems) that go to validation, under "
        "'<task>:'; every other source goes to training. Default: all to training",
    )
    p.add_argument("--every", type=int, default=2, help="label every N-th video frame")
    p.add_argument(
        "--max-per-source",
        type=int,
        default=0,
        help="keep at most this many frames per video, evenly spread (0: no limit)",
    )
    p.add_argument("--min-detection", type=float, default=0.5, help="detector score to accept")
    p.add_argument(
        "--min-presence",
        type=float,
        default=0.8,
        help="teacher presence score below which a detection is dropped",
    )
    p.add_argument(
        "--min-visibility",
        type=float,
        default=0.5,
        help="a landmark counts as visible at this teacher confidence",
    )
    p.add_argument(
        "--min-landmarks",
        type=int,
        default=8,
        help="drop a person with fewer visible landmarks (pose)",
    )
    p.add_argument("--people", type=int, default=4, help="most people labelled per photo (pose)")
    p.add_argument(
        "--box-margin",
        type=float,
        default=1.25,
        help="crop box = landmarks' extent x this (the model's box_margin)",
    )
    p.add_argument("--context", type=float, default=2.0, help="stored crop = box x this")
    p.add_argument("--box-px", type=int, default=160, help="landmark box width in stored pixels")
    p.add_argument("--no-hair", action="store_true",
                   help="faceparts: leave hair out (background) instead of taking it from the "
                   "selfie segmenter")  # fmt: skip
    p.add_argument("--labels-version", type=int, default=None, metavar="N",
                   help="face: which teacher mapping to label with: 1 the plain mesh table, 2 "
                   "(the default) moved to where people annotate (training.label.face."
                   "HUMAN_VERTICAL_OFFSET); an older one reproduces an older model's labels")  # fmt: skip
    add_threads_argument(p, help="teacher interpreter threads")
    return p  # fmt: skip


def source_key(path: Path) -> str:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', path.stem)}-{digest}"


def context_crop(frame: np.ndarray, box: CropBox, args) -> tuple[np.ndarray, np.ndarray, CropBox]:
    """The context crop around ``box`` (``args.context`` times its size, ``args.box_px *
    args.context`` pixels square), its frame->crop matrix and its box in frame pixels."""
    size = int(round(args.box_px * args.context))
    context = CropBox(box.center, box.size * args.context)
    crop, matrix = warp_crop(frame, context, (size, size))
    return crop, matrix, context


def store_crop(
    frame: np.ndarray, box: CropBox, args, out: Path, rel: str
) -> tuple[np.ndarray, CropBox]:
    """Write the context crop around ``box`` as ``out/rel``; returns the frame->crop matrix
    and the stored crop's box in frame pixels (recorded, so labels trace back to the frame)."""
    import cv2

    crop, matrix, context = context_crop(frame, box, args)
    target = out / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(target), crop, [cv2.IMWRITE_JPEG_QUALITY, 92]):
        raise EdgeError(f"cannot write {target}")
    return matrix, context


class PoseLabeller:
    def __init__(self, args) -> None:
        from .pose import BlazePoseTeacher

        self.args = args
        self.teacher = BlazePoseTeacher(min_detection=args.min_detection,
                                        min_presence=args.min_presence, num_threads=args.threads)  # fmt: skip

    def people(self, frame: np.ndarray, still: bool):
        if not still:
            result = self.teacher.process(frame)
            return [] if result is None else [result]
        rois = self.teacher.detect_all(frame)[: self.args.people]
        return [self.teacher.landmarks(frame, roi) for roi in rois]

    def label(self, frame, still, name, out, counts) -> list[dict]:
        a = self.args
        records = []
        results = self.people(frame, still)
        if not results:
            counts["frames without a person"] += 1
        for k, r in enumerate(results):
            if r.presence < a.min_presence:
                counts["people below --min-presence"] += 1
                continue
            mpii, mpii_c = mappings.to_mpii16(r.points, r.visibility)
            coco, coco_c = mappings.to_coco17(r.points, r.visibility)
            visible = mpii_c >= a.min_visibility
            if visible.sum() < a.min_landmarks:
                counts["people with too few visible landmarks"] += 1
                continue
            box = box_from_points(mpii, visible, margin=a.box_margin)
            rel = f"images/{name}_{k}.jpg"
            m, context = store_crop(frame, box, a, out, rel)
            mpii_crop = apply_affine(m, mpii)
            crop_box = box_from_points(mpii_crop, visible, margin=a.box_margin)
            head = mappings.head_box(mpii_crop)
            records.append({
                "mpii": {**writers.mpii_record(rel.removeprefix("images/"), mpii_crop, visible,
                                               mpii_c, head, crop_box, name),
                         "frame_box": context.to_dict()},
                "coco": {"image": rel.removeprefix("images/"), "points": apply_affine(m, coco).tolist(),
                         "visible": (coco_c >= a.min_visibility).tolist(),
                         "scores": coco_c.tolist(), "source": name},
            })  # fmt: skip
            counts["people labelled"] += 1
        return records

    def finish(self, out: Path, parts: dict[str, list[dict]]) -> None:
        for split, records in parts.items():
            writers.write_json(out / "annot" / f"{split}.json", [r["mpii"] for r in records])
            writers.write_json(out / "annotations" / f"person_keypoints_{split}.json",
                               writers.coco_document(r["coco"] for r in records))  # fmt: skip


class FaceLabeller:
    """iBUG-68 points from the face mesh (training.label.faceparts' labeller shares its teacher)."""

    def __init__(self, args) -> None:
        from .face import FaceMeshTeacher

        self.args = args
        self.teacher = FaceMeshTeacher(min_detection=args.min_detection,
                                       min_presence=args.min_presence, num_threads=args.threads)  # fmt: skip

    def face(self, frame: np.ndarray, counts: Counter):
        """The teacher's face in ``frame``, or None (counted as a frame without a face)."""
        r = self.teacher.process(frame)
        if r is None:
            counts["frames without a face"] += 1
        return r

    def label(self, frame, still, name, out, counts) -> list[dict]:
        from .face import to_ibug68

        a = self.args
        r = self.face(frame, counts)
        if r is None:
            return []
        points = to_ibug68(r.points, human_offsets=a.labels_version >= 2)
        box = box_from_points(points, margin=a.box_margin)
        split_dir, _, stem = name.partition("/")
        rel = f"{split_dir}/{stem}.jpg"
        m, context = store_crop(frame, box, a, out, rel)
        crop_points = apply_affine(m, points)
        write_pts((out / rel).with_suffix(".pts"), crop_points)
        counts["faces labelled"] += 1
        return [{"image": rel, "presence": round(float(r.presence), 3), "source": name,
                 "frame_box": context.to_dict()}]  # fmt: skip

    def finish(self, out: Path, parts: dict[str, list[dict]]) -> None:
        for split, records in parts.items():
            writers.write_json(out / f"{split}.index.json", records)


def run(args) -> int:
    from tqdm import tqdm

    if args.every < 1 or args.box_px < 8 or args.context < 1.0:
        raise EdgeError("--every must be >= 1, --box-px >= 8 and --context >= 1")
    newest = LABELS_VERSION.get(args.task)
    if args.labels_version is None:
        args.labels_version = newest
    elif newest is None or not 1 <= args.labels_version <= newest:
        raise EdgeError(f"--labels-version: {args.task} labels have "
                        f"{f'versions 1 to {newest}' if newest else 'no versions'}")  # fmt: skip
    # Face parts come from the face clips, so they are held out as the face task's are.
    split_task = "face" if args.task == "faceparts" else args.task
    source_split = load_split(args.split)
    missing: list[str] = []
    paths = expand(args.sources, missing)
    for item in missing:
        print(f"skipped: {item}: no such file", file=sys.stderr)
    if not paths:
        raise EdgeError(f"no videos or images found in {' '.join(args.sources)}")
    if args.task == "faceparts":
        from .faceparts import FacePartsLabeller

        labeller = FacePartsLabeller(args)
    else:
        labeller = PoseLabeller(args) if args.task == "pose" else FaceLabeller(args)
    # What makes a finished source's labels reusable: the labelling options, not where the
    # split file lives (its effect, the source's side of the split, is compared on its own).
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                if k not in ("sources", "out", "threads", "split", "labels_version")}  # fmt: skip
    if args.task in LABELS_VERSION:  # labels made by another mapping are made again
        settings["labels_version"] = args.labels_version
    out: Path = args.out
    totals: Counter = Counter({"missing sources": len(missing)} if missing else {})
    per_split: dict[str, list[dict]] = {"train": [], "select": [], "valid": []}
    used_valid: set[str] = set()  # reported held-out sources
    used_select: set[str] = set()  # held out for choosing models
    source_index: dict[str, dict] = {}  # source key -> its path, side and activity group
    bar = tqdm(paths, unit="source", file=sys.stderr)
    for path in bar:
        split = source_split.side(path, split_task)
        if split != "train":
            (used_valid if split == "valid" else used_select).add(path.stem)
        key = source_key(path)
        source_index[key] = {
            "path": str(path),
            "split": split,
            "group": source_split.group(path, split_task),
        }
        part_file = out / "parts" / args.task / f"{key}.json"
        if part_file.is_file():
            done = json.loads(part_file.read_text(encoding="utf-8"))
            stored = {k: v for k, v in done.get("settings", {}).items() if k != "split"}
            if stored == settings and done.get("split") == split:
                per_split[split] += done["records"]
                totals.update(done["counts"])
                totals["sources resumed"] += 1
                continue
        bar.set_postfix_str(path.name[:40])
        counts: Counter = Counter()
        records: list[dict] = []
        still = is_image(path)
        labeller.teacher.reset()  # every source is a new clip or photo
        try:
            chosen = _chosen(path, args) if not still else None
            for index, frame in frames(path, args.every):
                if chosen is not None and index not in chosen:
                    continue
                counts["frames read"] += 1
                folder = f"{split}/{key}" if args.task in ("face", "faceparts") else key
                records += labeller.label(frame, still, f"{folder}/{index:06d}", out, counts)
        except UnreadableSource as exc:
            tqdm.write(f"skipped: {exc}", file=sys.stderr)
            counts["unreadable sources"] += 1
        writers.write_json(part_file, {"settings": settings, "split": split, "source": str(path),
                                       "records": records, "counts": counts})  # fmt: skip
        per_split[split] += records
        totals.update(counts)
    if not per_split["select"]:  # no split file with a select list: the layout as before
        del per_split["select"]
    labeller.finish(out, per_split)
    summary = {"counts": dict(totals), "records": {k: len(v) for k, v in per_split.items()},
               "valid_sources": sorted(used_valid), "select_sources": sorted(used_select),
               "settings": settings,
               "split_file": None if args.split is None else str(args.split)}  # fmt: skip
    writers.write_json(out / f"summary_{args.task}.json", summary)
    writers.write_json(out / f"sources_{args.task}.json", source_index)
    missing = source_split.unused(paths, split_task)
    if not any(per_split.values()):
        raise EdgeError(
            f"nothing was labelled in {len(paths)} source(s); see {out}/summary_{args.task}.json"
        )
    for name, value in sorted(totals.items()):
        print(f"{name:>40}: {value}")
    sides = " / ".join(per_split)
    counts = " / ".join(str(len(v)) for v in per_split.values())
    print(f"{f'records ({sides})':>40}: {counts}")
    if missing:
        print(f"note: {len(missing)} validation patterns in {args.split} matched no source given: "
              f"{', '.join(sorted(missing))}", file=sys.stderr)  # fmt: skip
    return 0


def _chosen(path: Path, args) -> set[int] | None:
    """Frame indices kept under --max-per-source (evenly spread over the clip), or None."""
    if not args.max_per_source:
        return None
    import cv2

    capture = cv2.VideoCapture(str(path))
    n = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    capture.release()
    candidates = list(range(0, max(n, 1), args.every))
    if len(candidates) <= args.max_per_source:
        return None
    picks = np.linspace(0, len(candidates) - 1, args.max_per_source).round().astype(int)
    return {candidates[i] for i in picks}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args),
                   interrupted="interrupted: finished sources are kept in parts/; run again to "
                   "resume")  # fmt: skip
