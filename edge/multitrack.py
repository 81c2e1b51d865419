"""Several subjects at once, each a track with a stable ID (``edge.live --max-people N``).

A finder (:mod:`edge.finders`) acquires people or faces; from then on each track follows its
own landmarks with the single-subject rules of :class:`edge.tracking.LandmarkTracker` (the
next crop from the confident landmarks, lost below ``lost_below``, no implausible shrink).
Per frame, :class:`edge.multipipeline.MultiLandmarkPipeline` calls:

1. :meth:`MultiTracker.find`: the finder runs when it is due (:attr:`~MultiTracker.finder_due`:
   nobody is followed, a track is lost, or ``find_every`` frames have passed since it last
   ran; never while ``max_tracks`` are followed), and its finds go to
   :meth:`~MultiTracker.acquire`;
2. :meth:`~MultiTracker.acquire`: finds are matched to tracks by the IoU of their crop boxes
   (greedy, highest first, at least ``match_iou``). A lost track that is matched is picked up
   again under its ID; a followed one keeps following its own landmarks, unless the find's
   crop is over ``regrow`` times its crop while its landmarks' mean score is under
   ``regrow_below``: then it restarts from the find's crop, keeping its ID (a track born on
   the part of a person that had entered the frame can shrink onto it: the model then fits
   the whole body into the small crop, and the crop never grows back). A find that matched
   no track starts a new one (a new ID) unless its crop overlaps a followed track's by more
   than ``duplicate_iou`` (that subject has a track) or ``max_tracks`` are followed already;
   a newcomer takes the place of the longest-lost track when every place is taken. A
   followed track that no finder run has found for ``drop_after`` seconds is lost unless
   its landmarks' mean score is at least ``sure_above`` (background the finder took for a
   person once is not followed on for ever);
3. the model runs on every followed track's crop (:meth:`~MultiTracker.crops`), and
   :meth:`~MultiTracker.update` takes each track's landmarks;
4. :meth:`~MultiTracker.end_frame`: two followed tracks are one subject when their confident
   landmarks' boxes overlap by more than ``same_iou`` or most landmarks both are sure of
   coincide (one may follow only part of the subject); the younger track goes, and the older
   keeps its ID, taking the younger's crop when that scored higher. A lost track unseen for
   ``drop_after`` seconds goes. IDs are never reused.

The matching and the suppression are pure functions (:func:`match_boxes`,
:func:`same_subject`) on plain arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .boxes import box_corners, iou, iou_matrix
from .finders.base import Found
from .tracking import (
    CROP_MIN_SCORE,
    DEFAULT_LOST_BELOW,
    LandmarkTracker,
    finder_spec,
    lost_below_of,
    subject_of,
)
from .transform import CropBox

if TYPE_CHECKING:
    from .metadata import LandmarkMetadata

# The most subjects edge.live follows at once: each one costs one inference per frame.
MAX_TRACKS = 16
# Issue 27: a person walking into view is to be followed within 3 frames. The finder looks for
# newcomers every K frames, so one found on the first look is followed K - 1 frames after
# entering at worst: K = 3 leaves a frame for a look that misses someone half in view. It
# costs little: a run of the bundled 1-bit finder is under a person's inference
# (docs/measured.md), and it runs only while fewer than max_tracks are followed.
DEFAULT_FIND_EVERY = 3
DEFAULT_DROP_AFTER = 1.0
# A track the finder has missed for drop_after seconds stays only when its landmarks' mean
# score is at least this (MultiTracker.sure_above).
DEFAULT_SURE_ABOVE = 0.5


class FindsSubjects(Protocol):
    """What the tracker needs of a finder (an :class:`edge.finders.base.Finder`)."""

    def find(self, image: np.ndarray) -> list[Found]: ...


def landmark_rect(
    points: np.ndarray, scores: np.ndarray, min_score: float, min_points: int = 3
) -> np.ndarray | None:
    """(x0, y0, x1, y1) around the confident landmarks; None with fewer than ``min_points``."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    s = np.asarray(scores, np.float64).reshape(len(p))
    ok = (s >= min_score) & np.isfinite(p).all(axis=1)
    if ok.sum() < min_points:
        return None
    q = p[ok]
    return np.concatenate([q.min(axis=0), q.max(axis=0)])


def match_boxes(
    tracks: Sequence[np.ndarray], finds: Sequence[np.ndarray], min_iou: float
) -> list[tuple[int, int]]:
    """Pairs (track index, find index), greedily by highest IoU, each at least ``min_iou``;
    every track and every find in at most one pair."""
    m = iou_matrix(tracks, finds)
    pairs = []
    while m.size and m.max() >= min_iou:
        t, f = np.unravel_index(int(np.argmax(m)), m.shape)
        pairs.append((int(t), int(f)))
        m[t, :] = -1.0
        m[:, f] = -1.0
    return pairs


def landmark_agreement(
    a: tuple[np.ndarray, np.ndarray],
    b: tuple[np.ndarray, np.ndarray],
    *,
    min_score: float,
    tolerance: float = 0.1,
) -> float:
    """The share of the landmarks two tracks are both sure of (``min_score``) that lie within
    ``tolerance`` of the larger track's extent of each other; 0 with fewer than 3 such. ``a``
    and ``b`` are (points (K, 2), scores (K,)). Two tracks on one subject agree even when one
    follows only part of it (its box then lies inside the other's, and their IoU is small)."""
    (pa, sa), (pb, sb) = a, b
    pa, pb = np.asarray(pa, np.float64), np.asarray(pb, np.float64)
    both = (
        (np.asarray(sa) >= min_score)
        & (np.asarray(sb) >= min_score)
        & np.isfinite(pa).all(axis=1)
        & np.isfinite(pb).all(axis=1)
    )
    if both.sum() < 3:
        return 0.0
    extent = max(float(np.ptp(p[both], axis=0).max()) for p in (pa, pb))
    close = np.hypot(*(pa[both] - pb[both]).T) <= tolerance * max(extent, 1.0)
    return float(close.mean())


def same_subject(
    rects: Sequence[np.ndarray | None],
    landmarks: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    min_iou: float,
    min_score: float,
    min_agreement: float = 0.5,
) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, of tracks (oldest first) that follow one subject: their confident
    landmarks' boxes overlap by more than ``min_iou``, or at least ``min_agreement`` of the
    landmarks both are sure of coincide (:func:`landmark_agreement`). Each j appears once, with
    the oldest such i that is not itself in a pair as j."""
    pairs: list[tuple[int, int]] = []
    merged: set[int] = set()
    for j in range(len(rects)):
        if rects[j] is None:
            continue
        for i in range(j):
            if i in merged or rects[i] is None:
                continue
            overlap = float(iou(rects[i], rects[j])[0])
            if (
                overlap > min_iou
                or landmark_agreement(landmarks[i], landmarks[j], min_score=min_score)
                >= min_agreement
            ):
                pairs.append((i, j))
                merged.add(j)
                break
    return pairs


@dataclass(eq=False)
class Track:
    """One subject: its ID, the single-subject tracker that follows it, and when it was seen."""

    id: int
    follower: LandmarkTracker
    born: float  # timestamp, seconds
    last_seen: float  # the last frame it was followed
    last_box: CropBox  # where it was last followed: lost, it is matched against this
    rect: np.ndarray | None = None  # its confident landmarks' box in the last frame
    points: np.ndarray | None = None  # (K, 2) its landmarks in the last frame it was followed
    scores: np.ndarray | None = None  # (K,) their scores
    fresh: bool = True  # born or picked up again since its last landmarks: smoothing restarts
    frames: int = 0  # frames it has been followed
    confirmed: float | None = None  # when a finder last found it (None: only at its birth)

    @property
    def tracking(self) -> bool:
        """Followed: its crop for this frame comes from its own last landmarks (or a find)."""
        return self.follower.tracking

    @property
    def box(self) -> CropBox | None:
        return self.follower.box


class MultiTracker:
    """Up to ``max_tracks`` subjects (None: every one found), each a :class:`Track` with a
    stable ID; see the module docstring for the per-frame steps.

    ``finder`` finds the subjects (its ``find``); ``margin``, ``min_score``, ``lost_below``
    and ``max_shrink`` are each track's :class:`~edge.tracking.LandmarkTracker` settings.
    """

    def __init__(
        self,
        finder: FindsSubjects,
        *,
        max_tracks: int | None,
        margin: float,
        min_score: float = CROP_MIN_SCORE,
        lost_below: float = DEFAULT_LOST_BELOW,
        max_shrink: float = 0.5,
        find_every: int = DEFAULT_FIND_EVERY,
        drop_after: float = DEFAULT_DROP_AFTER,
        match_iou: float = 0.3,
        duplicate_iou: float = 0.7,
        same_iou: float = 0.5,
        regrow: float = 1.2,
        regrow_below: float = 0.4,
        sure_above: float = DEFAULT_SURE_ABOVE,
    ) -> None:
        if max_tracks is not None and max_tracks < 1:
            raise ValueError(f"max_tracks must be at least 1, got {max_tracks}")
        if find_every < 1 or drop_after < 0:
            raise ValueError("find_every must be at least 1 and drop_after at least 0")
        self.finder = finder
        self.max_tracks = max_tracks
        self.margin = margin
        self.min_score = min_score
        self.lost_below = lost_below
        self.max_shrink = max_shrink
        self.find_every = find_every
        self.drop_after = drop_after
        self.match_iou = match_iou
        # A find's crop overlapping a followed track's this much is that track's subject. Crops
        # of two people side by side can overlap by half, so this is high; the landmarks'
        # boxes (same_iou, after inference) settle the rest.
        self.duplicate_iou = duplicate_iou
        self.same_iou = same_iou
        # A followed track restarts from a matching find whose crop is over `regrow` times
        # its own while its landmarks' mean score is under `regrow_below`. Both were set on
        # benchmarks.multi_person's walk-ins (room_one_by_one: a person entering from the
        # bottom was followed in a crop too small for 30 frames); without the score
        # condition confident tracks restarted too, and recall fell on two other clips.
        self.regrow = regrow
        self.regrow_below = regrow_below
        # A followed track that no finder run has found for `drop_after` seconds is let
        # go unless its landmarks' mean score is at least `sure_above`: background the finder
        # once took for a person (a tripod, a coat on a desk) gets scores over the lost cut
        # (0.3-0.5), a person in view far more often (0.6-0.8), and a real person the finder
        # misses that long while the model is unsure of them is better found again.
        self.sure_above = sure_above
        self.tracks: list[Track] = []
        self._next_id = 1
        self._since_find: int | None = None  # frames since the finder last ran; None: never
        self._lost_one = False  # a track was lost in the last frame

    def reset(self) -> None:
        """Forget every track (an unrelated clip or still follows); IDs keep counting."""
        self.tracks = []
        self._since_find = None
        self._lost_one = False

    @property
    def finder_due(self) -> bool:
        """Whether the finder runs in this frame: at the start; never while ``max_tracks``
        subjects are followed (it could add nobody); else when nobody is followed, when a
        track was lost in the last frame or is lost and kept (to pick it up again under its
        ID), and every ``find_every`` frames (newcomers)."""
        if self._since_find is None:
            return True
        followed = len(self.followed())
        if self.max_tracks is not None and followed >= self.max_tracks:
            return False
        return (
            followed == 0
            or self._lost_one
            or followed < len(self.tracks)
            or self._since_find >= self.find_every
        )

    def find(self, image: np.ndarray, timestamp: float) -> list[Found] | None:
        """Run the finder on ``image`` when it is due and take its finds; None when it did not
        run."""
        if not self.finder_due:
            return None
        finds = self.finder.find(image)
        self.acquire(finds, timestamp)
        return finds

    def followed(self) -> list[Track]:
        return [t for t in self.tracks if t.tracking]

    def acquire(self, finds: Sequence[Found], timestamp: float) -> list[Track]:
        """Match ``finds`` (best first) to the tracks, pick lost ones up again and start new
        ones; returns the tracks born."""
        self._since_find = 0
        self._lost_one = False
        refs = [box_corners(t.box if t.tracking else t.last_box) for t in self.tracks]
        find_boxes = [box_corners(f.box) for f in finds]
        matched = set()
        found_tracks = set()
        for ti, fi in match_boxes(refs, find_boxes, self.match_iou):
            matched.add(fi)
            found_tracks.add(ti)
            track = self.tracks[ti]
            track.confirmed = timestamp
            if not track.tracking or self._shrunk(track, finds[fi].box):
                track.follower.start(finds[fi].box)  # picked up (again), under its own ID
                track.fresh = True
        for ti, track in enumerate(self.tracks):
            if ti not in found_tracks and track.tracking:
                self._unconfirmed(track, timestamp)
        born = []
        for fi, found in enumerate(finds):
            if fi in matched:
                continue
            followed = self.followed()
            if self.max_tracks is not None and len(followed) >= self.max_tracks:
                break
            if followed:
                overlap = iou(find_boxes[fi], np.stack([box_corners(t.box) for t in followed]))
                if float(overlap.max()) > self.duplicate_iou:
                    continue  # a track already follows this subject
            if self.max_tracks is not None and len(self.tracks) >= self.max_tracks:
                lost = [t for t in self.tracks if not t.tracking]
                self.tracks.remove(min(lost, key=lambda t: t.last_seen))
            born.append(self._start(found.box, timestamp))
        return born

    def _unconfirmed(self, track: Track, timestamp: float) -> None:
        """A followed ``track`` this finder run missed: lost when no run has found it for
        ``drop_after`` seconds and its landmarks are not sure (``sure_above``)."""
        confirmed = track.born if track.confirmed is None else track.confirmed
        if track.scores is None or timestamp - confirmed < self.drop_after:
            return
        if float(np.mean(track.scores)) < self.sure_above:
            track.follower.reset()  # lost: dropped after drop_after more, unless found again
            track.rect = None
            self._lost_one = True

    def _shrunk(self, track: Track, found: CropBox) -> bool:
        """Whether a followed ``track`` has shrunk onto part of the subject that ``found`` (a
        matching find's crop) frames whole: the find's crop is over ``regrow`` times the
        track's, and the track is unsure of its landmarks."""
        return (
            track.tracking
            and track.scores is not None
            and found.size > self.regrow * track.box.size
            and float(np.mean(track.scores)) < self.regrow_below
        )

    def _start(self, box: CropBox, timestamp: float) -> Track:
        follower = LandmarkTracker(
            margin=self.margin,
            min_score=self.min_score,
            lost_below=self.lost_below,
            max_shrink=self.max_shrink,
        )
        follower.start(box)
        track = Track(self._next_id, follower, timestamp, timestamp, box)
        self._next_id += 1
        self.tracks.append(track)
        return track

    def crops(self, image: np.ndarray) -> list[tuple[Track, CropBox]]:
        """Each followed track with its crop for ``image``, oldest track first."""
        return [(t, t.follower.box_for(image)) for t in self.followed()]

    def update(
        self, track: Track, points: np.ndarray, scores: np.ndarray, timestamp: float
    ) -> bool:
        """Take a track's landmarks of this frame; returns whether it is followed on."""
        used = track.box  # this frame's crop (update replaces it with the next one)
        # A fresh track's crop came from a finder, not from its landmarks: no shrink check.
        following = track.follower.update(points, scores, from_probe=track.fresh)
        track.fresh = False
        if following:
            track.last_seen = timestamp
            track.last_box = track.box
            track.rect = landmark_rect(points, scores, self.min_score)
            track.points, track.scores = np.asarray(points), np.asarray(scores)
            track.frames += 1
        else:
            track.rect = None
            track.last_box = used  # where it was looked for last
            self._lost_one = True  # the finder looks again in the next frame
        return following

    def end_frame(self, timestamp: float) -> list[Track]:
        """Merge tracks that follow one subject, and drop lost tracks unseen for
        ``drop_after`` seconds; returns the tracks dropped.

        Of two tracks on one subject the older keeps its ID; it takes the younger's crop when
        the younger's landmarks score higher (it follows more of the subject), and restarts
        from there."""
        followed = [t for t in self.followed() if t.rect is not None]
        gone = []
        pairs = same_subject(
            [t.rect for t in followed],
            [(t.points, t.scores) for t in followed],
            min_iou=self.same_iou,
            min_score=self.min_score,
        )
        for i, j in pairs:
            older, younger = followed[i], followed[j]
            if float(np.mean(younger.scores)) > float(np.mean(older.scores)):
                older.follower, older.rect = younger.follower, younger.rect
                older.points, older.scores = younger.points, younger.scores
                older.last_box, older.fresh = younger.last_box, True
            gone.append(younger)
        gone += [
            t
            for t in self.tracks
            if not t.tracking and timestamp - t.last_seen > self.drop_after and t not in gone
        ]
        self.tracks = [t for t in self.tracks if t not in gone]
        if self._since_find is not None:
            self._since_find += 1
        return gone


def multi_tracker_for(
    meta: LandmarkMetadata,
    max_tracks: int,
    *,
    face_detector: str | None = None,
    person_finder: str | None = None,
    min_score: float = CROP_MIN_SCORE,
    lost_below: float | str | None = None,
    find_every: int = DEFAULT_FIND_EVERY,
    drop_after: float = DEFAULT_DROP_AFTER,
) -> MultiTracker:
    """The tracker of several subjects a model's task needs, with its finder: faces find
    with ``face_detector`` (None or "auto": the bundled 1-bit face finder, Haar's cascade
    where it is not installed), people with ``person_finder`` (None or
    "auto": ``"blazepose"``, or the bundled 1-bit finder where the teacher cache lacks it;
    :func:`edge.tracking.finder_spec`). A segmentation model follows one face: refused in
    one line, as is a finder of none. ``lost_below``: :func:`edge.tracking.lost_below_of`
    (None or "auto": the model's own cut)."""
    from .errors import ModelError
    from .finders import create_finder

    if meta.task == "segmentation":
        raise ModelError(
            "a segmentation model follows one face: --max-faces more than 1 is for face "
            "landmark models"
        )
    subject = subject_of(meta)
    spec = finder_spec(meta, several=True, face_detector=face_detector, person_finder=person_finder)
    finder = create_finder(spec, subject=subject, margin=meta.box_margin)
    if finder is None:
        flag = "--face-detector" if subject == "face" else "--person-finder"
        plural = "people" if subject == "person" else "faces"
        raise ModelError(f"following several {plural} needs a finder: {flag} none is none")
    return MultiTracker(
        finder,
        max_tracks=max_tracks,
        margin=meta.box_margin,
        min_score=min_score,
        lost_below=lost_below_of(meta, lost_below),
        find_every=find_every,
        drop_after=drop_after,
    )
