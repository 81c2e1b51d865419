"""The per-frame chain for several subjects, each tracked under its own ID.

>>> tracker = multi_tracker_for(meta, 4)                    # edge.multitrack: its finder too
>>> video = MultiLandmarkPipeline(model, tracker, smoother=OneEuroFilter())
>>> for frame in source:
...     result = video.process(frame)
...     for person in result.people:                        # by ID
...         person.id, person.points, person.scores, person.box

Per frame: find (when due: :class:`edge.multitrack.MultiTracker`) -> one crop per followed
track -> infer (one batch) -> decode -> track -> smooth, each track with its own One Euro
filter (a copy of ``smoother``, started afresh when the track is born or picked up again).
``edge.live --max-people N`` (``--max-faces N``) runs it when N is above 1; with N = 1 it
runs :class:`edge.pipeline.LandmarkPipeline`, unchanged. ``LandmarkModel.predict(image,
finder=...)`` runs it on one still.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .pipeline import landmarks_in_frame, start_frame
from .sources import Frame
from .timing import StageTimes
from .transform import CropBox, warp_crop

if TYPE_CHECKING:
    from .model import LandmarkModel
    from .multitrack import MultiTracker
    from .smoothing import OneEuroFilter

# The timed stages of one frame, in order.
STAGES = ("finding", "crop", "inference", "decode", "tracking", "smoothing")


@dataclass
class TrackedLandmarks:
    """One subject's landmarks in one frame."""

    id: int  # stable while the subject is tracked; never reused
    box: CropBox  # the crop used in this frame
    points: np.ndarray  # (K, 2) smoothed frame pixels; NaN rows are hidden landmarks
    raw_points: np.ndarray  # (K, 2) as decoded
    scores: np.ndarray  # (K,) heatmap peak values
    tracking: bool  # followed into the next frame from these landmarks

    @property
    def score(self) -> float:
        return float(np.mean(self.scores))


@dataclass
class MultiFrameResult:
    frame: Frame
    people: list[TrackedLandmarks]  # by ID; each a person or a face
    found: int | None  # what the finder found in this frame; None: it did not run
    timings: dict[str, float] = field(default_factory=dict)


class MultiLandmarkPipeline:
    """Several subjects per frame (see the module docstring). ``smoother``: the One Euro
    filter each track copies; None: raw landmarks."""

    def __init__(
        self,
        model: LandmarkModel,
        tracker: MultiTracker,
        *,
        smoother: OneEuroFilter | None = None,
        min_score: float = 0.3,
    ) -> None:
        self.model = model
        self.meta = model.metadata
        self.tracker = tracker
        self.smoother = smoother
        self.min_score = min_score
        self._smoothers: dict[int, OneEuroFilter] = {}
        # Crops (N, H, W, 3) uint8 BGR -> heatmaps (N, h, w, K); edge.bench may swap it.
        self.infer = model.predict_heatmaps

    def reset(self) -> None:
        """Forget every track and smoother (an unrelated clip follows)."""
        self.tracker.reset()
        self._smoothers.clear()

    def process(
        self,
        frame: Frame | np.ndarray,
        times: StageTimes | None = None,
        *,
        continuous: bool = True,
    ) -> MultiFrameResult:
        """Every subject's landmarks in one frame (a :class:`~edge.sources.Frame` or a BGR
        image). ``continuous=False`` (unrelated stills) finds afresh in each frame and
        neither tracks nor smooths across frames."""
        frame, timings, stage = start_frame(frame, times)
        image, t, tracker = frame.image, frame.timestamp, self.tracker
        if not continuous:
            self.reset()
        with stage("finding"):
            finds = tracker.find(image, t)
        with stage("crop"):
            todo = tracker.crops(image)
            cut = [warp_crop(image, box, self.meta.input_size) for _, box in todo]
        if not todo:
            tracker.end_frame(t)
            self._forget_gone()
            return MultiFrameResult(frame, [], None if finds is None else len(finds), timings)
        with stage("inference"):
            heatmaps = self.infer(np.stack([crop for crop, _ in cut]))
        with stage("decode"):
            decoded = [
                landmarks_in_frame(self.model.codec, heatmaps[i], to_crop)
                for i, (_, to_crop) in enumerate(cut)
            ]
        with stage("tracking"):
            fresh = [track.fresh for track, _ in todo]
            following = [
                tracker.update(track, raw, scores, t)
                for (track, _), (raw, scores) in zip(todo, decoded, strict=True)
            ]
            tracker.end_frame(t)
            alive = {track.id for track in tracker.tracks}
        people = []
        with stage("smoothing"):
            for (track, box), (raw, scores), new, on in zip(
                todo, decoded, fresh, following, strict=True
            ):
                if track.id not in alive:
                    continue  # a second track on another's subject: dropped
                points = raw
                if continuous and self.smoother is not None:
                    points = self._smooth(track.id, new, raw, scores, t, box, on)
                people.append(TrackedLandmarks(track.id, box, points, raw, scores, on))
            self._forget_gone()
        return MultiFrameResult(frame, people, None if finds is None else len(finds), timings)

    def _smooth(
        self,
        track_id: int,
        fresh: bool,
        raw: np.ndarray,
        scores: np.ndarray,
        timestamp: float,
        box: CropBox,
        following: bool,
    ) -> np.ndarray:
        smoother = self._smoothers.get(track_id)
        if smoother is None or fresh:  # born or picked up again: no history to smooth with
            smoother = self._smoothers[track_id] = copy.deepcopy(self.smoother)
            smoother.reset()
        points = smoother(raw, timestamp, scale=box.size, scores=scores)
        if not following:
            smoother.reset()  # lost: whatever is found next may be someone else
        return points

    def _forget_gone(self) -> None:
        alive = {track.id for track in self.tracker.tracks}
        for track_id in [i for i in self._smoothers if i not in alive]:
            del self._smoothers[track_id]

    def record(self, result: MultiFrameResult, latency_ms: dict[str, float]) -> dict:
        """The JSONL record of one frame: a list of people (edge.outputs.people_record)."""
        from .outputs import people_record

        frame = result.frame
        return people_record(
            frame.index,
            frame.timestamp,
            result.people,
            names=self.meta.landmarks,
            found=result.found,
            latency_ms=latency_ms,
        )

    def annotate(
        self, result: MultiFrameResult, *, fps: float | None = None, show_box: bool = False
    ) -> np.ndarray:
        """A copy of the frame with each subject in their own colour, labelled with their ID."""
        from .draw import draw_box, draw_fps, draw_label, draw_landmarks, track_colour

        image = result.frame.image.copy()
        for person in result.people:
            colour = track_colour(person.id)
            if show_box:
                draw_box(image, person.box, colour)
            draw_landmarks(
                image,
                person.points,
                person.scores,
                self.meta.edges,
                min_score=self.min_score,
                colour=colour,
            )
            draw_label(image, f"#{person.id}", _label_corner(person), colour)
        if fps is not None:
            n = len(result.people)
            draw_fps(image, fps, f"{n} tracked" if n else "no subject")
        return image


def _label_corner(person: TrackedLandmarks) -> tuple[float, float]:
    """Where a subject's ID goes: just above the top-left of its visible landmarks."""
    p = np.asarray(person.points, np.float64)
    p = p[np.isfinite(p).all(axis=1)]
    if len(p) == 0:
        x0 = person.box.center[0] - person.box.size / 2
        return (x0, person.box.center[1] - person.box.size / 2)
    return (float(p[:, 0].min()), float(p[:, 1].min()) - 6.0)
