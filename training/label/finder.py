"""Whole-frame labels for the 1-bit finders: every person (or face) in a frame.

``python -m training.label person-finder ...`` and ``face-finder ...`` store each labelled
frame whole, downscaled so its long side is at most ``--frame-px``, with every subject the
teacher finds in it (``detect_all``), in the stored image's pixels:

* ``rect``: the subject's box (x, y, w, h; x, y the top-left pixel edge, clipped to the
  frame). A person's is the extent of BlazePose's visible landmarks joined with its person
  mask near them (the landmarks stop at the eyes, the mask reaches the top of the head); a
  face's is the extent of the face mesh's 468 points;
* ``box``: the landmark crop (:class:`edge.transform.CropBox`): the crop our landmark models
  were trained on and the device's tracker makes, an upright square of ``--box-margin`` x the
  extent of the points they learn (MPII-16 visible joints for a person, iBUG-68 for a face;
  the same ``box_from_points`` as ``training.label pose``/``face``), so a find hands the
  landmark model the crop it knows (the teacher's own ROI is turned and sized for BlazePose);
* ``score``: the landmark model's presence.

The detectors were made for one subject (BlazePose's finds one or two people of a group in a
whole frame), so they also run on square tiles of the frame. Each detection is refined once
(landmarks on the detector's ROI, then on the ROI they give) before it is kept, and those
that end on one subject (boxes overlapping by IoU > 0.5) are merged into the best; a
detection whose ROI overlaps an earlier one's by IoU > 0.6 (the same person in the frame and
in a tile) is not refined again. A subject whose presence is below ``--min-presence`` goes to the record's
``ignore`` list: the evaluation neither counts a find on it as a false one nor misses it.
Frames with nobody are kept as well (they teach the finder what is not a person).

Layout: ``<side>/<source key>/<frame>.jpg`` and one index per side, ``finder_<side>.json``:
``{"classes": [...], "records": [{"image", "source", "scale", "objects", "ignore"}]}``
(``scale``: stored pixels per original pixel). :mod:`training.finder.data` reads it.
"""

from __future__ import annotations

import abc
from collections import Counter
from pathlib import Path

import numpy as np

from edge.boxes import square_corners, suppress
from edge.errors import EdgeError
from edge.finder_codec import Found, transform_object
from edge.transform import (
    CropBox,
    apply_affine,
    box_from_points,
    crop_matrix,
    invert_affine,
    shrink,
)

from . import mappings, writers
from .labellers import Labeller, LabelOptions

# A merged pair: two refined detections whose boxes overlap this much are one subject.
SAME_SUBJECT_IOU = 0.5
# Two detector ROIs (of the frame and its overlapping tiles) that overlap this much are one
# subject seen twice: only the first is refined. Refining costs two landmark runs, and each
# person is found in 4-6 tiles, so without this a frame took ~10 landmark runs a person.
# Two people side by side, shoulder to shoulder, have body squares overlapping ~0.4.
SAME_ROI_IOU = 0.6
# Mask pixels farther than this share of the landmarks' extent from it belong to someone else.
MASK_REACH = 0.25


def clip_rect(lo: np.ndarray, hi: np.ndarray, shape: tuple[int, ...]) -> tuple[float, ...] | None:
    """The rectangle (x, y, w, h) from corner edges ``lo``..``hi`` clipped to an image of
    ``shape`` (it spans [-0.5, W - 0.5]); None when nothing of it is inside."""
    h, w = shape[:2]
    x0, y0 = max(float(lo[0]), -0.5), max(float(lo[1]), -0.5)
    x1, y1 = min(float(hi[0]), w - 0.5), min(float(hi[1]), h - 0.5)
    if x1 - x0 < 1.0 or y1 - y0 < 1.0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def person_rect(
    points: np.ndarray,
    visible: np.ndarray,
    shape: tuple[int, ...],
    mask: np.ndarray | None = None,
    roi: CropBox | None = None,
) -> tuple[float, ...] | None:
    """A person's box in image pixels (see the module docstring): the extent of the visible
    ``points`` (N, 2), joined with the pixels of ``mask`` (a probability map over the crop
    ``roi``, as BlazePose returns it) that lie within :data:`MASK_REACH` of that extent;
    clipped to the image. None with fewer than two visible points or nothing in the frame."""
    p = np.asarray(points, np.float64)[np.asarray(visible, bool)]
    if len(p) < 2:
        return None
    lo, hi = p.min(axis=0), p.max(axis=0)
    if mask is not None and roi is not None:
        ys, xs = np.nonzero(np.asarray(mask) > 0.5)
        if len(xs):
            size = mask.shape[1]
            to_image = invert_affine(crop_matrix(roi, (size, mask.shape[0])))
            pix = apply_affine(to_image, np.stack([xs, ys], axis=1).astype(np.float64))
            reach = MASK_REACH * (hi - lo)
            near = np.all((pix >= lo - reach) & (pix <= hi + reach), axis=1)
            if near.any():
                lo = np.minimum(lo, pix[near].min(axis=0))
                hi = np.maximum(hi, pix[near].max(axis=0))
    # Points are pixel centres: the box's edges lie half a pixel out.
    return clip_rect(lo - 0.5, hi + 0.5, shape)


def face_rect(points: np.ndarray, shape: tuple[int, ...]) -> tuple[float, ...] | None:
    """A face's box: the extent of its mesh points, clipped to the image."""
    p = np.asarray(points, np.float64)[:, :2]
    return clip_rect(p.min(axis=0) - 0.5, p.max(axis=0) + 0.5, shape)


def distinct_rois(rois: list[CropBox]) -> list[CropBox]:
    """``rois`` in order, each dropped that overlaps an earlier one by IoU above
    :data:`SAME_ROI_IOU` (one subject found in the frame and in several tiles)."""
    return [rois[i] for i in suppress([square_corners(r) for r in rois], SAME_ROI_IOU)]


def merge_duplicates(objects: list[Found]) -> list[Found]:
    """``objects`` best first, each dropped that overlaps a better one by IoU above
    :data:`SAME_SUBJECT_IOU` (two detector ROIs that refined onto one subject)."""
    best_first = sorted(objects, key=lambda o: -o.score)
    return [best_first[i] for i in suppress([o.corners for o in best_first], SAME_SUBJECT_IOU)]


def tiles(shape: tuple[int, ...], sides: tuple[float, ...]) -> list[tuple[int, int, int]]:
    """(x0, y0, side) of square tiles of ``sides`` (shares of the frame's short side) that
    cover the frame with half-tile steps; the whole frame comes first."""
    h, w = shape[:2]
    out = [(0, 0, max(h, w))]
    for share in sides:
        side = int(round(share * min(h, w)))
        if side < 32 or (side == min(h, w) and h == w):
            continue
        for y0 in _starts(h, side):
            for x0 in _starts(w, side):
                out.append((x0, y0, side))
    return out


def tiled_rois(teacher, frame: np.ndarray, sides: tuple[float, ...]) -> list[CropBox]:
    """The distinct ROIs (:func:`distinct_rois`) ``teacher``'s detector (``detect_all``) finds
    in ``frame`` and in its :func:`tiles` of ``sides``, in frame pixels, the whole frame's
    first: a detector made for one subject finds one or two of a group in the whole frame."""
    rois = []
    for x0, y0, side in tiles(frame.shape, sides):
        for roi in teacher.detect_all(frame[y0 : y0 + side, x0 : x0 + side]):
            rois.append(CropBox((roi.center[0] + x0, roi.center[1] + y0), roi.size, roi.rotation))
    return distinct_rois(rois)


def _starts(length: int, side: int) -> list[int]:
    if length <= side:
        return [0]
    n = int(np.ceil((length - side) / (side / 2))) + 1
    return sorted({int(round(v)) for v in np.linspace(0, length - side, n)})


class FinderLabeller(Labeller):
    """One record per frame: the downscaled frame and every subject in it (see the module
    docstring). Subclasses give the teacher, its class name and :meth:`subject`.

    The teachers' detectors were made for one subject: BlazePose's finds one or two people
    of a group in the whole frame. So the detector also runs on square tiles of the frame
    (:attr:`tile_sides`, shares of its short side) and every ROI is refined on the whole
    frame, then merged (:func:`merge_duplicates`).
    """

    class_name: str
    plural: str
    tile_sides: tuple[float, ...] = (1.0, 0.75)

    @abc.abstractmethod
    def subject(self, frame: np.ndarray, roi: CropBox, counts: Counter) -> Found | None:
        """The subject in the detector's ``roi``, refined once by the landmark model, in
        frame pixels with its presence as ``score``; None (counted) when it has no box."""

    def subjects(self, frame: np.ndarray, counts: Counter) -> list[Found]:
        """Every subject the teacher finds in ``frame`` or its tiles, refined (each distinct
        detector ROI once: :func:`tiled_rois`)."""
        out = []
        for roi in tiled_rois(self.teacher, frame, self.tile_sides):
            found = self.subject(frame, roi, counts)
            if found is not None:
                out.append(found)
        return out

    def label(self, frame, still, name, out, counts) -> list[dict]:
        import cv2

        a = self.options
        found = merge_duplicates(self.subjects(frame, counts))
        small, matrix = shrink(frame, a.frame_px)
        scale = float(matrix[0, 0])
        objects, ignore = [], []
        for o in found:
            stored = transform_object(o, matrix)
            if o.score >= a.min_presence:
                objects.append(stored)
            else:
                ignore.append(stored)
        counts[f"{self.plural} labelled"] += len(objects)
        if ignore:
            counts[f"{self.plural} below --min-presence (ignored)"] += len(ignore)
        if not objects:
            counts[f"frames without a {self.class_name}"] += 1
        rel = f"{name}.jpg"
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(target), small, [cv2.IMWRITE_JPEG_QUALITY, 92]):
            raise EdgeError(f"cannot write {target}")
        counts["frames stored"] += 1
        return [
            {
                "image": rel,
                "source": name,
                "scale": round(scale, 6),
                "objects": [o.to_dict() for o in objects],
                "ignore": [o.to_dict() for o in ignore],
            }
        ]

    def finish(self, out: Path, parts: dict[str, list[dict]]) -> None:
        for split, records in parts.items():
            writers.write_json(
                out / f"finder_{split}.json", {"classes": [self.class_name], "records": records}
            )


class PersonFinderLabeller(FinderLabeller):
    """Every person BlazePose's detector finds, with its mask-joined box and ROI."""

    class_name, plural = "person", "people"

    def __init__(self, options: LabelOptions) -> None:
        from .pose import BlazePoseTeacher

        super().__init__(options)
        self.teacher = BlazePoseTeacher(
            min_detection=options.min_detection,
            min_presence=options.min_presence,
            num_threads=options.threads,
            with_mask=True,
        )

    def subject(self, frame: np.ndarray, roi: CropBox, counts: Counter) -> Found | None:
        r = self.teacher.refined(frame, roi)
        visible = r.visibility >= self.options.min_visibility
        rect = person_rect(r.points, visible, frame.shape, r.mask, r.roi)
        mpii, mpii_scores = mappings.to_mpii16(r.points, r.visibility)
        joints = mpii_scores >= self.options.min_visibility
        if rect is None or joints.sum() < 3:
            counts["people with too few visible landmarks"] += 1
            return None
        crop = box_from_points(mpii, joints, margin=self.options.box_margin)
        return Found(float(r.presence), rect, crop)


class FaceFinderLabeller(FinderLabeller):
    """Every face the face teacher's detector finds, with its mesh box and ROI."""

    class_name, plural = "face", "faces"
    # The face teacher's detect_all searches smaller tiles itself when a tile has no face.
    tile_sides = (1.0,)

    def __init__(self, options: LabelOptions) -> None:
        from .face import FaceMeshTeacher

        super().__init__(options)
        self.teacher = FaceMeshTeacher(
            min_detection=options.min_detection,
            min_presence=options.min_presence,
            num_threads=options.threads,
        )

    def subject(self, frame: np.ndarray, roi: CropBox, counts: Counter) -> Found | None:
        r = self.teacher.refined(frame, roi)
        from .face import to_ibug68

        rect = face_rect(r.points, frame.shape)
        if rect is None:
            counts["faces outside the frame"] += 1
            return None
        points = to_ibug68(r.points, human_offsets=self.options.labels_version >= 2)
        crop = box_from_points(points, margin=self.options.box_margin)
        return Found(float(r.presence), rect, crop)
