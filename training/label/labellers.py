"""The labellers of ``python -m training.label``: one teacher each, one record per subject.

A labeller runs its teacher on a frame, keeps what passes the options' thresholds, stores
each subject's *context crop* (:func:`store_crop`) with its labels, and at the end writes the
dataset's index files (:meth:`Labeller.finish`). :class:`LabelOptions` is what the command
line was asked; :mod:`training.label.labelling` runs a labeller over the sources.
"""

from __future__ import annotations

import abc
import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.backends.base import DEFAULT_THREADS
from edge.errors import EdgeError
from edge.transform import (
    CropBox,
    apply_affine,
    box_from_points,
    crop_matrix,
    invert_affine,
    warp_crop,
)
from training.data.augment import compose
from training.data.base import mask_path
from training.data.pts import write_pts

from . import mappings, writers

# The tasks that label whole frames for the finders (training.label.finder).
FINDER_TASKS = ("person-finder", "face-finder")


@dataclass(frozen=True)
class LabelOptions:
    """What ``python -m training.label`` was asked (its --help documents each field). The
    names are the flags', and :meth:`settings` is what a finished source's labels were made
    with: a resumed run reuses them only when it is unchanged."""

    task: str  # pose, face, faceparts, person-finder or face-finder
    sources: tuple[str, ...]
    out: Path
    split: Path | None = None
    every: int = 2
    max_per_source: int = 0
    min_detection: float = 0.5
    min_presence: float = 0.8
    min_visibility: float = 0.5
    min_landmarks: int = 8
    people: int = 4
    box_margin: float = 1.25
    context: float = 2.0
    box_px: int = 160
    no_hair: bool = False
    masks: bool = True  # pose: the teacher's person mask beside every stored crop
    labels_version: int | None = None  # None: the task's newest mapping
    threads: int = DEFAULT_THREADS
    frame_px: int = 320  # finders: the stored frame's long side at most

    def settings(self, versioned: bool) -> dict:
        """The labelling options stored with every finished source (``parts/``): not where
        the sources, output or split file are, nor the threads, which change no label; the
        labels version only for a task that has versions (``versioned``); the stored frame
        size only for the finders (the other tasks' finished sources stay reusable);
        ``masks: true`` only for pose labels with masks."""
        skip = {"sources", "out", "threads", "split", "labels_version", "masks"}
        if self.task not in FINDER_TASKS:
            skip.add("frame_px")
        out = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip
        }
        out = {k: (str(v) if isinstance(v, Path) else v) for k, v in out.items()}
        if versioned:  # labels made by another mapping are made again
            out["labels_version"] = self.labels_version
        if self.task == "pose" and self.masks:
            # Sources finished before masks existed, or under --no-masks, lack the key: a run
            # with masks labels them again, so no dataset mixes records with and without
            # masks, while --no-masks still resumes them (other tasks never have the key).
            out["masks"] = True
        return out


def context_crop(
    frame: np.ndarray, box: CropBox, *, context: float, box_px: int
) -> tuple[np.ndarray, np.ndarray, CropBox]:
    """The context crop around ``box`` (``context`` times its size, ``box_px * context``
    pixels square), its frame->crop matrix and its box in frame pixels."""
    size = int(round(box_px * context))
    wide = CropBox(box.center, box.size * context)
    crop, matrix = warp_crop(frame, wide, (size, size))
    return crop, matrix, wide


def store_crop(
    frame: np.ndarray,
    box: CropBox,
    options: LabelOptions,
    out: Path,
    rel: str,
    person_mask: tuple[np.ndarray, CropBox] | None = None,
) -> tuple[np.ndarray, CropBox]:
    """Write the context crop around ``box`` as ``out/rel``; returns the frame->crop matrix
    and the stored crop's box in frame pixels (recorded, so labels trace back to the frame).

    ``person_mask``: a teacher's mask (probabilities, in the pixels of its own crop) and the
    box that crop was cut from; it is written beside the crop, in the crop's pixels, as
    :func:`training.data.base.mask_path` names it (8-bit PNG, 255: surely the person)."""
    import cv2

    crop, matrix, context = context_crop(frame, box, context=options.context, box_px=options.box_px)
    target = out / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(target), crop, [cv2.IMWRITE_JPEG_QUALITY, 92]):
        raise EdgeError(f"cannot write {target}")
    if person_mask is not None:
        mask = np.round(mask_in_crop(*person_mask, matrix, crop.shape[:2]) * 255)
        # Zlib's strongest level: written once, read every epoch, and the smaller file
        # decodes faster too (measured: about 40 % less time than OpenCV's default level).
        png = [cv2.IMWRITE_PNG_COMPRESSION, 9]
        if not cv2.imwrite(str(mask_path(target)), mask.astype(np.uint8), png):
            raise EdgeError(f"cannot write {mask_path(target)}")
    return matrix, context


def mask_in_crop(
    mask: np.ndarray, roi: CropBox, frame_to_crop: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """A teacher's ``mask`` (its ROI crop's pixels, cut from the frame at ``roi``) in the
    pixels of a crop of ``shape`` (h, w) that ``frame_to_crop`` maps the frame to: ROI crop ->
    frame -> crop. Outside the ROI the teacher saw nothing: 0 (background)."""
    import cv2

    h, w = mask.shape
    roi_to_frame = invert_affine(crop_matrix(roi, (w, h)))
    matrix = compose(frame_to_crop, roi_to_frame)
    out = cv2.warpAffine(
        np.asarray(mask, np.float32),
        matrix,
        (shape[1], shape[0]),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return np.clip(out, 0.0, 1.0)


class Labeller(abc.ABC):
    """One task's teacher and writers (``teacher.reset()`` is called before every source)."""

    teacher: object

    def __init__(self, options: LabelOptions) -> None:
        self.options = options

    @abc.abstractmethod
    def label(
        self, frame: np.ndarray, still: bool, name: str, out: Path, counts: Counter
    ) -> list[dict]:
        """The records of one frame (``name``: its place in the dataset), its crops written;
        what was dropped and why is counted in ``counts``."""

    @abc.abstractmethod
    def finish(self, out: Path, parts: dict[str, list[dict]]) -> None:
        """Write the dataset's index files from every split's records."""


class PoseLabeller(Labeller):
    """MPII-16 and COCO-17 people from BlazePose (up to ``people`` per photo), each with the
    teacher's person mask unless ``masks`` is off."""

    def __init__(self, options: LabelOptions) -> None:
        from .pose import BlazePoseTeacher

        super().__init__(options)
        self.teacher = BlazePoseTeacher(
            min_detection=options.min_detection,
            min_presence=options.min_presence,
            num_threads=options.threads,
            with_mask=options.masks,
        )

    def people(self, frame: np.ndarray, still: bool):
        if not still:
            result = self.teacher.process(frame)
            return [] if result is None else [result]
        rois = self.teacher.detect_all(frame)[: self.options.people]
        return [self.teacher.landmarks(frame, roi) for roi in rois]

    def label(self, frame, still, name, out, counts) -> list[dict]:
        a = self.options
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
            mask = None if r.mask is None else (r.mask, r.roi)
            m, context = store_crop(frame, box, a, out, rel, person_mask=mask)
            mpii_crop = apply_affine(m, mpii)
            crop_box = box_from_points(mpii_crop, visible, margin=a.box_margin)
            head = mappings.head_box(mpii_crop)
            records.append(
                {
                    "mpii": {
                        **writers.mpii_record(
                            rel.removeprefix("images/"),
                            mpii_crop,
                            visible,
                            mpii_c,
                            head,
                            crop_box,
                            name,
                        ),
                        "frame_box": context.to_dict(),
                    },
                    "coco": {
                        "image": rel.removeprefix("images/"),
                        "points": apply_affine(m, coco).tolist(),
                        "visible": (coco_c >= a.min_visibility).tolist(),
                        "scores": coco_c.tolist(),
                        "source": name,
                    },
                }
            )
            counts["people labelled"] += 1
        return records

    def finish(self, out: Path, parts: dict[str, list[dict]]) -> None:
        for split, records in parts.items():
            writers.write_json(out / "annot" / f"{split}.json", [r["mpii"] for r in records])
            writers.write_json(
                out / "annotations" / f"person_keypoints_{split}.json",
                writers.coco_document(r["coco"] for r in records),
            )


class FaceLabeller(Labeller):
    """iBUG-68 points from the face mesh (training.label.faceparts' labeller shares its teacher)."""

    def __init__(self, options: LabelOptions) -> None:
        from .face import FaceMeshTeacher

        super().__init__(options)
        self.teacher = FaceMeshTeacher(
            min_detection=options.min_detection,
            min_presence=options.min_presence,
            num_threads=options.threads,
        )

    def face(self, frame: np.ndarray, counts: Counter):
        """The teacher's face in ``frame``, or None (counted as a frame without a face)."""
        r = self.teacher.process(frame)
        if r is None:
            counts["frames without a face"] += 1
        return r

    def label(self, frame, still, name, out, counts) -> list[dict]:
        from .face import to_ibug68

        a = self.options
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
        return [
            {
                "image": rel,
                "presence": round(float(r.presence), 3),
                "source": name,
                "frame_box": context.to_dict(),
            }
        ]

    def finish(self, out: Path, parts: dict[str, list[dict]]) -> None:
        for split, records in parts.items():
            writers.write_json(out / f"{split}.index.json", records)
