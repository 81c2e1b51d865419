"""Where to look next: the crop for the coming frame, from the landmarks of the last one.

A landmark model sees a square crop around its subject. In a video the subject moves
little between frames, so the next crop is the square around the current confident
landmarks (enlarged by the model's ``box_margin``); that is far cheaper and steadier than
detecting the subject anew. When the mean landmark confidence drops below a threshold the
track is *lost*, and the next frame starts again from a fallback: the full frame for pose
models, a face finder for face models (faces are small in the frame; see
:mod:`edge.finders`). Several subjects at once, each with its own ID: :mod:`edge.multitrack`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .boxes import box_corners, iou_matrix
from .transform import CropBox, box_from_points, full_frame_box

if TYPE_CHECKING:
    from .metadata import LandmarkMetadata

Detector = Callable[[np.ndarray], "CropBox | None"]

# Landmarks scoring at least this place the next crop (edge.live --crop-min-score). Our scores
# are heatmap peaks, and the limbs' run low even when they are right: at 0.3 the crop was
# placed from the head and shoulders alone and shrank onto them. Chosen on the pose task's
# `select` clips (benchmarks/results/tracked_choice_pose.md): 0.1 followed the person in 73 % of the
# frames against 38 % at 0.3; faces were the same at both.
CROP_MIN_SCORE = 0.1
# --reacquire near: a find overlapping the last followed crop by less than this (IoU) is not
# "near" it, and the finder's best find starts the track again instead.
REACQUIRE_MIN_IOU = 0.1
# The mean landmark score under which a track is lost, where the model records no cut of its
# own (edge.live --lost-below auto). Set for the first bundled pose model's scores: the 5th
# percentile of its mean score on people in the tracker's crops is 0.301 on the pose task's
# select clips, which is how training.evaluate --calibrate-tracking measures a model's own.
DEFAULT_LOST_BELOW = 0.3
# What --calibrate-tracking records: this percentile of the mean landmark score on people.
LOST_CUT_PERCENTILE = 5.0


def lost_below_of(meta: LandmarkMetadata, given: float | str | None = None) -> float:
    """The mean landmark score under which a track of this model is lost: ``given`` when it
    is a number; else (None or "auto") the cut the model records, its metadata's
    ``extra["tracking"]["lost_below"]`` (written by ``training.evaluate
    --calibrate-tracking``), else :data:`DEFAULT_LOST_BELOW`. A model's scores are its own
    (a wider skeleton, another training set, move them), so one cut does not fit every model."""
    if given is not None and given != "auto":
        return float(given)
    recorded = recorded_lost_below(meta)
    return DEFAULT_LOST_BELOW if recorded is None else recorded


def recorded_lost_below(meta: LandmarkMetadata) -> float | None:
    """The lost cut the model records (its metadata's ``extra["tracking"]["lost_below"]``),
    or None."""
    recorded = (meta.extra or {}).get("tracking", {}).get("lost_below")
    return None if recorded is None else float(recorded)


def crop_from_landmarks(
    points: np.ndarray,
    scores: np.ndarray,
    *,
    margin: float,
    min_score: float = CROP_MIN_SCORE,
    min_points: int = 3,
) -> CropBox | None:
    """Square box around the landmarks scoring at least ``min_score``, enlarged by ``margin``.

    None when fewer than ``min_points`` landmarks are confident: a box around one or two
    points says nothing about the subject's extent.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    s = np.asarray(scores, dtype=np.float64).reshape(len(p))
    confident = (s >= min_score) & np.isfinite(p).all(axis=1)
    if confident.sum() < min_points:
        return None
    return box_from_points(p, confident, margin=margin)


def is_lost(scores: np.ndarray, lost_below: float) -> bool:
    """A track is lost when the mean landmark confidence falls below ``lost_below``."""
    s = np.asarray(scores, dtype=np.float64)
    return s.size == 0 or not np.isfinite(s).all() or float(s.mean()) < lost_below


def clamp_box(
    box: CropBox,
    frame_size: tuple[int, int],
    *,
    max_scale: float = 1.5,
    min_scale: float = 0.1,
) -> CropBox:
    """Keep a tracked box usable: its centre on the frame and its side between ``min_scale``
    and ``max_scale`` times the frame's longer side. Without this, landmarks spread over a
    whole crop make each next box ``margin`` times larger and the track runs away, or
    landmarks bunched on one spot shrink it onto a few pixels."""
    w, h = frame_size
    cx = float(np.clip(box.center[0], 0, w - 1))
    cy = float(np.clip(box.center[1], 0, h - 1))
    size = float(np.clip(box.size, min_scale * max(w, h), max_scale * max(w, h)))
    return CropBox((cx, cy), size, box.rotation)


def next_crop(
    points: np.ndarray,
    scores: np.ndarray,
    *,
    margin: float,
    min_score: float = CROP_MIN_SCORE,
    lost_below: float = DEFAULT_LOST_BELOW,
    frame_size: tuple[int, int] | None = None,
) -> CropBox | None:
    """The crop to use on the next frame, or None when the track is lost.

    With ``frame_size`` (width, height) the box is kept on the frame (:func:`clamp_box`).
    """
    if is_lost(scores, lost_below):
        return None
    box = crop_from_landmarks(points, scores, margin=margin, min_score=min_score)
    if box is not None and frame_size is not None:
        box = clamp_box(box, frame_size)
    return box


def search_boxes(width: int, height: int) -> list[CropBox]:
    """Where to look for a subject with no track: the whole frame, then squares of the
    frame's shorter side at the start, middle and end of its longer side (a person who
    fills the frame's height appears at about the scale a pose model was trained on)."""
    boxes = [full_frame_box(width, height)]
    short, long_ = min(width, height), max(width, height)
    for centre in ((short - 1) / 2.0, (long_ - 1) / 2.0, long_ - 1 - (short - 1) / 2.0):
        other = (short - 1) / 2.0
        boxes.append(CropBox((centre, other) if width >= height else (other, centre), short))
    return boxes


class LandmarkTracker:
    """Keeps the crop between frames; falls back to a detector (or the full frame) when lost.

    >>> box = tracker.box_for(image)       # None: nothing to look at in this frame
    >>> result = model.predict(image, box)
    >>> tracking = tracker.update(result.points, result.scores)
    """

    def __init__(
        self,
        *,
        margin: float,
        min_score: float = CROP_MIN_SCORE,
        lost_below: float = DEFAULT_LOST_BELOW,
        detector: Detector | None = None,
        max_shrink: float = 0.5,
        probe_every: int = 0,
        reacquire: str = "near",
    ) -> None:
        self.margin = margin
        self.max_shrink = max_shrink
        # When the track is lost, which of the finder's finds starts it again: "near", the
        # one overlapping the last followed crop most (the subject rarely jumps across the
        # frame in a frame), else the best; "best": the finder's best.
        self.reacquire = reacquire
        self._last: CropBox | None = None
        # Every probe_every frames, one of search_boxes() is tried next to the tracked box
        # (round robin); the caller keeps whichever scores higher. 0 turns probing off.
        self.probe_every = probe_every
        self._frames = 0
        self._probes = 0
        self.min_score = min_score
        self.lost_below = lost_below
        self.detector = detector
        self._box: CropBox | None = None
        self._frame_size: tuple[int, int] | None = None

    @property
    def tracking(self) -> bool:
        return self._box is not None

    @property
    def box(self) -> CropBox | None:
        """The crop the next frame is cut at, from the last landmarks; None while lost."""
        return self._box

    def start(self, box: CropBox) -> None:
        """Follow a subject from ``box`` (a finder's crop): the next frame is cut there."""
        self._box = box

    def reset(self) -> None:
        self._box = None
        self._last = None

    def probe_for(self, image: np.ndarray) -> CropBox | None:
        """A search box to try in this frame as well (only while tracking without a detector),
        so a track stuck on part of the subject, or on the wrong thing, can be replaced."""
        self._frames += 1
        if not self.probe_every or self.detector is not None or self._box is None:
            return None
        if self._frames % self.probe_every:
            return None
        h, w = image.shape[:2]
        boxes = search_boxes(w, h)
        self._probes += 1
        return boxes[self._probes % len(boxes)]

    def box_for(self, image: np.ndarray) -> CropBox | None:
        h, w = image.shape[:2]
        self._frame_size = (w, h)
        if self._box is not None:
            return self._box
        if self.detector is not None:
            return self._found(image)
        if self.probe_every:  # searching anyway: cycle through the search boxes while lost
            boxes = search_boxes(w, h)
            self._probes += 1
            return boxes[self._probes % len(boxes)]
        return full_frame_box(w, h)

    def _found(self, image: np.ndarray) -> CropBox | None:
        """The finder's crop to start again from (see ``reacquire``)."""
        find = getattr(self.detector, "find", None)
        if self.reacquire != "near" or self._last is None or find is None:
            return self.detector(image)
        finds = find(image)
        if not finds:
            return None
        overlaps = iou_matrix([box_corners(self._last)], [box_corners(f.box) for f in finds])[0]
        best = int(np.argmax(overlaps))
        return finds[best].box if overlaps[best] >= REACQUIRE_MIN_IOU else finds[0].box

    def update(self, points: np.ndarray, scores: np.ndarray, *, from_probe: bool = False) -> bool:
        """Take this frame's landmarks; returns whether the next frame is tracked from them.

        ``from_probe``: the landmarks come from the probe box, which won over the track.
        Besides low confidence, a tracked box that would shrink below ``max_shrink`` of its
        size in one frame counts as lost: a subject cannot halve in size between frames, so
        the landmarks have bunched onto one part of it.
        """
        previous = None if from_probe else self._box
        box = next_crop(
            points,
            scores,
            margin=self.margin,
            min_score=self.min_score,
            lost_below=self.lost_below,
            frame_size=self._frame_size,
        )
        if box is not None and previous is not None and box.size < self.max_shrink * previous.size:
            box = None
        self._box = box
        if box is not None:
            self._last = box
        return box is not None


# Tasks whose subject is a face: when the track is lost, a face finder finds it again.
FACE_TASKS = ("face", "segmentation")  # face parts are found and tracked like faces


def subject_of(meta: LandmarkMetadata) -> str:
    """What a model's finder must find: "face" for face and face-part models, else "person"."""
    return "face" if meta.task in FACE_TASKS else "person"


# edge.live --person-finder's default (finder_spec says what it picks).
AUTO_FINDER = "auto"
# The bundled 1-bit person finder (issue 27; configs/person_finder.yaml). "auto" runs it to
# find one person again when the track is lost, and for several people where MediaPipe's
# detector is not in the teacher cache: a device with only the runtime has no mediapipe wheel
# to take it from, and needs no download this way.
BUNDLED_PERSON_FINDER = Path(__file__).resolve().parent / "models" / "person_finder.tflite"
# The bundled 1-bit face finder (configs/face_finder.yaml), --face-detector auto's choice
# where it is installed (else Haar's cascade). Chosen on the face task's `select` clips
# (benchmarks/results/tracked_choice_face.md): it found lost faces again better than Haar
# (followed in 98 % of the frames against 78 %). It looks again in tiles when its whole-frame
# look finds nothing sure (edge.finders.binary.TILE_BELOW), which puts its crop on a face as
# small as messi5.jpg's (43 px of 548), found by Haar's cascade, missed by the whole-frame look.
BUNDLED_FACE_FINDER = Path(__file__).resolve().parent / "models" / "face_finder.tflite"
# edge.live --face-detector's default (finder_spec says what it picks).
DEFAULT_FACE_DETECTOR = AUTO_FINDER


def finder_spec(
    meta: LandmarkMetadata,
    *,
    several: bool = False,
    face_detector: str | None = None,
    person_finder: str | None = None,
) -> str:
    """The finder (a name of :mod:`edge.finders`, "none" or a .tflite path) that a model of
    ``meta``'s task runs, following one subject or ``several``: ``face_detector`` for faces
    and face parts, where None or "auto" means the bundled 1-bit face finder
    (:data:`BUNDLED_FACE_FINDER`) where it is installed, else "haar"; ``person_finder`` for
    people, where None or "auto" means the bundled 1-bit finder
    (:data:`BUNDLED_PERSON_FINDER`) where it is installed, else "none" for one person (the
    whole frame and the search boxes); except for several people, where it means
    "blazepose" when its file is in the teacher cache (:func:`edge.host.teacher_dir`).
    Chosen on each task's `select` clips (benchmarks/results/tracked_choice_pose.md and
    tracked_choice_face.md): a lost person found again by our finder was followed in 84 % of
    the frames against 73 % with the search boxes, a lost face in 98 % against Haar's 78 %.
    ``edge.live``, ``edge.deploy`` and ``edge.doctor`` all pick it here."""
    if subject_of(meta) == "face":
        if face_detector not in (None, AUTO_FINDER):
            return face_detector
        return str(BUNDLED_FACE_FINDER) if BUNDLED_FACE_FINDER.is_file() else "haar"
    if person_finder not in (None, AUTO_FINDER):
        return person_finder
    if not several:
        return str(BUNDLED_PERSON_FINDER) if BUNDLED_PERSON_FINDER.is_file() else "none"
    from .host import teacher_dir

    if (teacher_dir() / "pose_detection.tflite").is_file() or not BUNDLED_PERSON_FINDER.is_file():
        return "blazepose"  # (missing, it says where to get it)
    return str(BUNDLED_PERSON_FINDER)


def tracker_for(
    meta: LandmarkMetadata,
    *,
    face_detector: str | None = None,
    person_finder: str | None = None,
    min_score: float = CROP_MIN_SCORE,
    lost_below: float | str | None = None,
    probe_every: int = 4,
    reacquire: str = "near",
) -> LandmarkTracker:
    """The single-subject tracker a model's task needs: when the track is lost, faces (and
    face parts) fall back to ``face_detector`` and bodies to ``person_finder`` (a finder name
    of :mod:`edge.finders`, a .tflite, or None / "auto": :func:`finder_spec`); a body with no
    finder ("none") to the whole frame and the search boxes probed every ``probe_every``
    frames. ``lost_below``: :func:`lost_below_of` (None or "auto": the model's own cut)."""
    from .finders import create_finder

    spec = finder_spec(meta, face_detector=face_detector, person_finder=person_finder)
    detector = create_finder(spec, subject=subject_of(meta), margin=meta.box_margin)
    return LandmarkTracker(
        margin=meta.box_margin,
        min_score=min_score,
        lost_below=lost_below_of(meta, lost_below),
        detector=detector,
        probe_every=probe_every,
        reacquire=reacquire,
    )
