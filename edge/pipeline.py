"""The per-frame chain, in one place: crop -> infer -> decode -> track -> smooth.

>>> pipeline = LandmarkPipeline(model)                      # one still: no tracking, no smoothing
>>> result = pipeline.process(image_bgr, box=None)         # None: the whole frame
>>> result.points, result.scores, result.box, result.timings
>>> video = LandmarkPipeline(model, tracker=LandmarkTracker(margin=meta.box_margin),
...                          smoother=OneEuroFilter())
>>> for frame in source:                                   # edge.sources.Frame
...     result = video.process(frame)

``LandmarkModel.predict`` is this pipeline without a tracker or smoother; ``python -m
edge.live`` runs it with both, and ``python -m edge.bench`` times it (with the network's
output held fixed, to measure the work around inference). Tracking and smoothing are on when
a tracker and a smoother are given.
"""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .sources import Frame
from .timing import StageTimes
from .transform import CropBox, apply_affine, full_frame_box, invert_affine, warp_crop

if TYPE_CHECKING:
    from .codec import HeatmapCodec
    from .model import LandmarkModel
    from .smoothing import OneEuroFilter
    from .tracking import LandmarkTracker

# A probe box replaces the track when its mean landmark score is higher by this much.
PROBE_GAIN = 0.02
# The timed stages of one frame, in order.
STAGES = ("crop", "inference", "decode", "tracking", "smoothing")


@dataclass
class FrameResult:
    frame: Frame
    box: CropBox | None  # the crop used, None when nothing was looked for (no face found)
    points: np.ndarray | None  # (K, 2) smoothed image pixels; NaN rows are hidden landmarks
    raw_points: np.ndarray | None  # (K, 2) as decoded, before smoothing
    scores: np.ndarray | None  # (K,) heatmap peak values
    tracking: bool  # whether the next frame's crop comes from these landmarks
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, this frame


class LandmarkPipeline:
    """One frame in, landmarks in frame pixels out; each stage timed (see :data:`STAGES`).

    ``tracker``: picks each frame's crop from the last landmarks (falling back to a detector
    or search boxes); None: every frame uses the ``box`` given to :meth:`process`, else the
    whole frame. ``smoother``: a One Euro filter over the landmarks of consecutive frames;
    None: raw landmarks.
    """

    def __init__(
        self,
        model: LandmarkModel,
        *,
        tracker: LandmarkTracker | None = None,
        smoother: OneEuroFilter | None = None,
        min_score: float = 0.3,
    ) -> None:
        self.model = model
        self.meta = model.metadata
        self.tracker = tracker
        self.smoother = smoother
        self.min_score = min_score
        # Crops (N, H, W, 3) uint8 BGR -> heatmaps (N, h, w, K). edge.bench swaps it for a
        # fixed output to time everything around the network.
        self.infer = model.predict_heatmaps

    def reset(self) -> None:
        """Forget the track and the smoother's state (a new, unrelated clip follows)."""
        if self.tracker is not None:
            self.tracker.reset()
        if self.smoother is not None:
            self.smoother.reset()

    def process(
        self,
        frame: Frame | np.ndarray,
        times: StageTimes | None = None,
        *,
        box: CropBox | None = None,
        continuous: bool = True,
    ) -> FrameResult:
        """Landmarks of one frame (a :class:`~edge.sources.Frame` or a BGR image).

        ``box`` is used when there is no tracker. ``continuous=False`` (unrelated stills)
        looks afresh in each frame and neither tracks nor smooths across frames. ``times``
        collects the stage durations (a new frame's are added to it); the result's
        ``timings`` holds this frame's either way.
        """
        frame, timings, stage = start_frame(frame, times)
        image = frame.image
        tracker = self.tracker
        with stage("crop"):
            box, crop, to_crop = pick_crop(image, tracker, box, continuous, self.meta.input_size)
        if box is None:
            if self.smoother is not None:
                self.smoother.reset()
            return FrameResult(frame, None, None, None, None, False, timings)
        probe = tracker.probe_for(image) if tracker is not None and continuous else None
        with stage("inference"):
            heatmaps = self.infer(crop[None])
            if probe is not None:
                probe_crop, probe_to_crop = warp_crop(image, probe, self.meta.input_size)
                probe_heatmaps = self.infer(probe_crop[None])
        with stage("decode"):
            raw, scores = landmarks_in_frame(self.model.codec, heatmaps[0], to_crop)
            from_probe = False
            if probe is not None:
                probe_raw, probe_scores = landmarks_in_frame(
                    self.model.codec, probe_heatmaps[0], probe_to_crop
                )
                if float(np.mean(probe_scores)) > float(np.mean(scores)) + PROBE_GAIN:
                    raw, scores, box = probe_raw, probe_scores, probe
                    from_probe = True
        tracking = False
        if tracker is not None and continuous:
            with stage("tracking"):
                tracking = tracker.update(raw, scores, from_probe=from_probe)
        points = raw
        if self.smoother is not None and continuous:
            with stage("smoothing"):
                if from_probe:
                    self.smoother.reset()  # the track jumped: don't smooth across the jump
                points = self.smoother(raw, frame.timestamp, scale=box.size, scores=scores)
                if tracker is not None and not tracking:
                    # The subject was lost: the next landmarks may belong to someone else.
                    self.smoother.reset()
        return FrameResult(frame, box, points, raw, scores, tracking, timings)

    def record(self, result: FrameResult, latency_ms: dict[str, float]) -> dict:
        """The JSONL record of one frame: named landmarks with scores (edge.outputs' format)."""
        from .outputs import landmark_record

        frame = result.frame
        return landmark_record(
            frame.index,
            frame.timestamp,
            names=self.meta.landmarks,
            points=result.points,
            scores=result.scores,
            box=result.box,
            tracking=result.tracking,
            latency_ms=latency_ms,
        )

    def annotate(self, result: FrameResult, *, fps: float | None = None, show_box: bool = False):
        """A copy of the frame with the overlay drawn."""
        from .draw import draw_box, draw_fps, draw_landmarks

        image = result.frame.image.copy()
        if result.points is not None:
            if show_box and result.box is not None:
                draw_box(image, result.box)
            draw_landmarks(
                image, result.points, result.scores, self.meta.edges, min_score=self.min_score
            )
        if fps is not None:
            draw_fps(image, fps, "" if result.points is not None else "no subject")
        return image


def landmarks_in_frame(
    codec: HeatmapCodec, heatmaps: np.ndarray, to_crop: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One crop's heatmaps (h, w, K) -> landmarks (K, 2) in frame pixels and their scores
    (K,) float32, through the inverse of the image -> crop affine ``to_crop``."""
    crop_points, scores = codec.decode(heatmaps)
    return apply_affine(invert_affine(to_crop), crop_points), np.asarray(scores, np.float32)


def start_frame(frame: Frame | np.ndarray, times: StageTimes | None):
    """The first step of every per-frame chain (this one, edge.segmentation's and
    edge.multipipeline's): the frame (a bare image becomes frame 0 at time 0), this frame's
    timings, and the stage timer that fills them and ``times``."""
    if not isinstance(frame, Frame):
        frame = Frame(frame, 0.0, 0)
    timings: dict[str, float] = {}
    return frame, timings, functools.partial(_timed, times, timings)


def pick_crop(
    image: np.ndarray,
    tracker: LandmarkTracker | None,
    box: CropBox | None,
    continuous: bool,
    input_size: tuple[int, int],
) -> tuple[CropBox | None, np.ndarray | None, np.ndarray | None]:
    """The crop stage of every per-frame chain: ``(box, crop, image -> crop affine)``.

    The tracker's box (after a reset when ``continuous`` is False: unrelated stills are
    looked at afresh), else ``box``, else the whole frame; ``(None, None, None)`` when the
    tracker found nothing to look at.
    """
    if tracker is not None:
        if not continuous:
            tracker.reset()  # unrelated stills: look afresh in each
        box = tracker.box_for(image)
    elif box is None:
        box = full_frame_box(image.shape[1], image.shape[0])
    if box is None:
        return None, None, None
    crop, to_crop = warp_crop(image, box, input_size)
    return box, crop, to_crop


@contextlib.contextmanager
def _timed(times: StageTimes | None, timings: dict[str, float], name: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - started
        timings[name] = seconds
        if times is not None:
            times.add(name, seconds)
