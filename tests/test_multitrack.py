"""Several people, each tracked under a stable ID (edge.multitrack): matching, IDs, newcomers,
dropping, and never two tracks on one person, on plain arrays (no camera, no model).

The scenes are a few people standing or walking in a 640x480 frame. A finder reports every
person in view; a landmark model, looking into a crop, reports the person whose middle is
nearest the crop's centre (confident when that middle is inside the crop, unsure otherwise),
which is what a real model does closely enough for the tracker's bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from edge.finders.base import Found
from edge.multitrack import (
    MultiTracker,
    box_corners,
    landmark_agreement,
    landmark_rect,
    match_boxes,
    same_subject,
)
from edge.transform import CropBox

FRAME = np.zeros((480, 640, 3), np.uint8)
FPS = 30.0
K = 16  # landmarks per person


@dataclass
class Person:
    x: float
    y: float
    height: float = 200.0
    sure: float = 0.9  # the model's landmark scores on them (background a finder took: lower)

    def landmarks(self) -> np.ndarray:
        """K points down a person-shaped strip: head at the top, feet at the bottom."""
        ys = np.linspace(self.y - self.height / 2, self.y + self.height / 2, K)
        xs = self.x + (np.arange(K) % 3 - 1) * self.height * 0.12
        return np.stack([xs, ys], axis=1)

    def found(self, score: float = 0.9) -> Found:
        w, h = 0.4 * self.height, self.height
        rect = (self.x - w / 2, self.y - h / 2, w, h)
        return Found(score, rect, CropBox((self.x, self.y), h * 1.25))


class SceneFinder:
    """Finds every person in the scene, in the scene's order (best first)."""

    def __init__(self, scene: list[Person]) -> None:
        self.scene = scene
        self.calls = 0

    def find(self, image: np.ndarray) -> list[Found]:
        self.calls += 1
        return [p.found() for p in self.scene]


def look(box: CropBox, scene: list[Person]) -> tuple[np.ndarray, np.ndarray]:
    """The landmarks a model reports in ``box``: the nearest person's, confident when their
    middle is inside the crop."""
    if not scene:
        return np.zeros((K, 2)), np.full(K, 0.05)
    near = min(scene, key=lambda p: np.hypot(p.x - box.center[0], p.y - box.center[1]))
    inside = max(abs(near.x - box.center[0]), abs(near.y - box.center[1])) < box.size / 2
    return near.landmarks(), np.full(K, near.sure if inside else 0.05)


def step(tracker: MultiTracker, scene: list[Person], t: float) -> dict[int, np.ndarray]:
    """One frame as MultiLandmarkPipeline runs it: {ID: landmarks} of the followed tracks."""
    tracker.find(FRAME, t)
    seen = {}
    for track, box in tracker.crops(FRAME):
        points, scores = look(box, scene)
        if tracker.update(track, points, scores, t):
            seen[track.id] = points
    tracker.end_frame(t)
    alive = {t.id for t in tracker.tracks}
    return {i: p for i, p in seen.items() if i in alive}


def new_tracker(scene: list[Person], **options) -> tuple[MultiTracker, SceneFinder]:
    finder = SceneFinder(scene)
    options.setdefault("max_tracks", 4)
    return MultiTracker(finder, margin=1.25, **options), finder


def who(points: np.ndarray, scene: list[Person]) -> int:
    """Which person of the scene these landmarks belong to."""
    middle = points.mean(axis=0)
    return int(np.argmin([np.hypot(p.x - middle[0], p.y - middle[1]) for p in scene]))


def test_each_person_keeps_their_id_while_walking():
    scene = [Person(150, 240), Person(480, 240)]
    tracker, finder = new_tracker(scene, find_every=10)
    owners: dict[int, set[int]] = {}
    for i in range(90):
        scene[0].x += 1.5  # walking towards each other, never meeting
        scene[1].x -= 1.5
        for track_id, points in step(tracker, scene, i / FPS).items():
            owners.setdefault(track_id, set()).add(who(points, scene))
    assert owners == {1: {0}, 2: {1}}  # two IDs, each always on its own person
    assert finder.calls == 9  # every 10 frames, nothing lost


def test_a_newcomer_is_picked_up_at_the_next_find_and_the_limit_holds():
    scene = [Person(150, 240)]
    tracker, _ = new_tracker(scene, find_every=10, max_tracks=2)
    first_seen = {}
    for i in range(40):
        if i == 13:
            scene.append(Person(480, 240))  # walks in
        if i == 25:
            scene.append(Person(330, 240, height=150))  # a third: over the limit of 2
        for track_id in step(tracker, scene, i / FPS):
            first_seen.setdefault(track_id, i)
    assert first_seen == {1: 0, 2: 20}  # the find of frame 20 picked the newcomer up
    assert len(tracker.followed()) == 2


def test_a_person_who_leaves_is_dropped_after_drop_after_and_ids_are_never_reused():
    scene = [Person(150, 240), Person(480, 240)]
    tracker, finder = new_tracker(scene, find_every=10, drop_after=0.51)
    for i in range(10):
        step(tracker, scene, i / FPS)
    gone = scene.pop()  # person 2 leaves at frame 10
    kept_until = None
    for i in range(10, 40):
        seen = step(tracker, scene, i / FPS)
        assert set(seen) == {1}
        if any(t.id == 2 for t in tracker.tracks):
            kept_until = i
    # Lost in frame 10 (last seen in frame 9); kept, lost, while 0.51 s had not passed, and
    # looked for in every frame meanwhile.
    assert kept_until == 24
    assert finder.calls == 1 + 1 + 15 + 1  # frames 0, 10, 11-25 (one is lost), 35
    scene.append(gone)  # back again, after being dropped: a new ID
    ids = set()
    for i in range(40, 60):
        ids |= set(step(tracker, scene, i / FPS))
    assert ids == {1, 3}


def test_a_person_lost_briefly_is_picked_up_again_under_their_id():
    scene = [Person(150, 240), Person(480, 240)]
    tracker, _ = new_tracker(scene, find_every=10, drop_after=1.0)
    for i in range(10):
        step(tracker, scene, i / FPS)
    hidden = scene.pop()  # behind a pillar for 5 frames
    for i in range(10, 15):
        assert set(step(tracker, scene, i / FPS)) == {1}
    scene.append(hidden)
    assert set(step(tracker, scene, 15 / FPS)) == {1, 2}  # found again at once, same ID


def test_two_finds_of_one_person_make_one_track():
    person = Person(320, 240)
    tracker, _ = new_tracker([person], max_tracks=4)
    step(tracker, [person], 0.0)
    # The finder reports the person twice, the second box a little off (a detector's
    # leftover): it overlaps the track's crop, so no second track starts.
    twin = Found(0.8, (300, 140, 80, 200), CropBox((330, 245), 245))
    born = tracker.acquire([person.found(), twin], 1 / FPS)
    assert born == [] and [t.id for t in tracker.tracks] == [1]


def test_a_track_that_ends_up_on_another_persons_subject_is_merged():
    person = Person(320, 240)
    tracker, _ = new_tracker([person], max_tracks=4)
    step(tracker, [person], 0.0)
    # A find on the person's upper half: its crop overlaps the track's too little to be
    # called the same, so a track starts there, and its landmarks land on the same person.
    upper = Found(0.7, (270, 140, 100, 100), CropBox((320, 190), 130))
    (born,) = tracker.acquire([upper], 1 / FPS)
    assert born.id == 2
    seen = step(tracker, [person], 1 / FPS)
    assert set(seen) == {1} and [t.id for t in tracker.tracks] == [1]  # the older ID stays


def test_the_older_track_takes_the_better_crop_when_merged():
    person = Person(320, 240)
    tracker, _ = new_tracker([person])
    tracker.acquire([person.found()], 0.0)
    older = tracker.tracks[0]
    partial = person.landmarks().copy()
    scores = np.full(K, 0.9)
    scores[K // 2 :] = 0.1  # the older track only follows the upper half
    tracker.crops(FRAME)
    assert tracker.update(older, partial, scores, 0.0)
    (younger,) = tracker.acquire([Found(0.9, (0, 0, 1, 1), CropBox((320, 240), 500))], 0.0)
    tracker.crops(FRAME)
    assert tracker.update(younger, person.landmarks(), np.full(K, 0.9), 0.0)
    gone = tracker.end_frame(0.0)
    assert gone == [younger] and tracker.tracks == [older]
    assert older.box.size == pytest.approx(200 * 1.25)  # the whole person's crop now
    assert older.fresh  # its smoothing restarts from the new crop


def test_the_finder_runs_when_due():
    scene = [Person(150, 240)]
    tracker, finder = new_tracker(scene, find_every=5)
    for i in range(12):
        step(tracker, scene, i / FPS)
    assert finder.calls == 3  # frames 0, 5 and 10
    empty, finder = new_tracker([], find_every=5)
    for i in range(4):
        step(empty, [], i / FPS)
    assert finder.calls == 4  # nobody followed: every frame
    full, finder = new_tracker(scene, find_every=5, max_tracks=1)
    for i in range(12):
        step(full, scene, i / FPS)
    assert finder.calls == 1  # as many followed as allowed: nobody to add


def test_a_newcomer_takes_the_place_of_the_longest_lost_track():
    scene = [Person(100, 240), Person(540, 240)]
    tracker, _ = new_tracker(scene, max_tracks=2, drop_after=10.0)
    step(tracker, scene, 0.0)
    scene[:] = [Person(320, 240)]  # both leave, someone else arrives in the middle
    step(tracker, scene, 1 / FPS)  # both tracks lost, kept for 10 s
    seen = step(tracker, scene, 2 / FPS)  # the finder runs after the loss
    assert set(seen) == {3} and len(tracker.tracks) == 2


def test_stills_start_afresh_after_reset():
    scene = [Person(150, 240), Person(480, 240)]
    tracker, _ = new_tracker(scene)
    step(tracker, scene, 0.0)
    tracker.reset()
    assert tracker.tracks == [] and tracker.finder_due
    assert set(step(tracker, scene, 0.0)) == {3, 4}  # IDs keep counting


def test_matching_is_greedy_by_overlap():
    a = np.array([0, 0, 100, 100.0])
    b = np.array([200, 0, 300, 100.0])
    slightly_right = a + [10, 0, 10, 0]
    assert match_boxes([a, b], [b, slightly_right], 0.3) == [(1, 0), (0, 1)]
    assert match_boxes([a], [b], 0.3) == []
    assert match_boxes([], [a], 0.3) == [] and match_boxes([a], [], 0.3) == []
    # One find between two tracks goes to the one it overlaps most, once.
    assert match_boxes([a, a + [30, 0, 30, 0]], [a + [5, 0, 5, 0]], 0.3) == [(0, 0)]


def test_same_subject_by_overlap_or_by_agreeing_landmarks():
    body = Person(320, 240).landmarks()
    sure = np.full(K, 0.9)
    half = sure.copy()
    half[K // 2 :] = 0.0
    rect = landmark_rect(body, sure, 0.3)
    upper = landmark_rect(body, half, 0.3)
    other = Person(500, 240).landmarks()
    # The upper half's box barely overlaps the whole, but its landmarks coincide.
    assert landmark_agreement((body, sure), (body, half), min_score=0.3) == 1.0
    assert same_subject([rect, upper], [(body, sure), (body, half)], min_iou=0.5, min_score=0.3)
    assert not same_subject(
        [rect, landmark_rect(other, sure, 0.3)],
        [(body, sure), (other, sure)],
        min_iou=0.5,
        min_score=0.3,
    )
    # Three tracks on one subject: both younger ones go into the oldest.
    pairs = same_subject([rect] * 3, [(body, sure)] * 3, min_iou=0.5, min_score=0.3)
    assert pairs == [(0, 1), (0, 2)]
    assert landmark_rect(body, np.zeros(K), 0.3) is None


def test_a_turned_crop_is_matched_by_its_bounding_rectangle():
    corners = box_corners(CropBox((100, 100), 100, rotation=45))
    half = 50 * np.sqrt(2)  # half the diagonal of a 100-pixel square
    np.testing.assert_allclose(corners, [100 - half, 100 - half, 100 + half, 100 + half])
    np.testing.assert_allclose(box_corners(CropBox((100, 100), 100)), [50, 50, 150, 150])


@pytest.mark.parametrize(
    ("find_size", "score", "restarts"),
    [
        (200.0, 0.35, True),  # 1.6x the track's crop, landmarks unsure: it had shrunk
        (200.0, 0.9, False),  # landmarks confident: the track is right, the find is loose
        (140.0, 0.35, False),  # about the track's own size: nothing to regrow
    ],
)
def test_a_track_shrunk_onto_part_of_a_person_regrows_from_a_bigger_find(
    find_size, score, restarts
):
    """Someone entering from the frame's edge is found while half in view; the track's next
    crop frames that half, and the model then fits the whole body into it, so the crop never
    grows back. A matching find that frames them whole, while the track is unsure of its
    landmarks, restarts the track (same ID); a confident track keeps its own crop."""
    part = Person(320, 240, height=100)  # what the track's landmarks cover
    tracker, _ = new_tracker([part], regrow=1.2, regrow_below=0.4)
    tracker.acquire([part.found()], 0.0)
    (track,) = tracker.tracks
    assert tracker.update(track, part.landmarks(), np.full(K, score), 0.0)  # followed on
    small = track.box.size
    assert small == pytest.approx(125.0)  # the landmarks' height x the margin
    # the whole person, overlapping the track's crop enough to match it (IoU >= 0.3)
    whole = Found(0.8, (280.0, 170.0, 80.0, 160.0), CropBox((320.0, 250.0), find_size))
    assert tracker.acquire([whole], 1 / FPS) == []  # no new track either way
    assert [t.id for t in tracker.tracks] == [track.id]
    assert track.box.size == pytest.approx(find_size if restarts else small)
    assert track.fresh is restarts  # a restarted track's smoothing starts again


class FoundOnce(SceneFinder):
    """Finds ``once`` (background, or a person the finder then misses) only in its first run;
    the rest of the scene in every run."""

    def __init__(self, scene: list[Person], once: Person) -> None:
        super().__init__(scene)
        self.once = once

    def find(self, image: np.ndarray) -> list[Found]:
        return super().find(image) + ([self.once.found(0.35)] if self.calls == 1 else [])


@pytest.mark.parametrize("sure", [0.42, 0.8])
def test_a_track_the_finder_never_finds_again_is_kept_only_when_the_model_is_sure(sure):
    person = Person(150, 240)
    other = Person(480, 240, sure=sure)  # 0.42: a tripod's scores; 0.8: a person's
    scene = [person, other]  # the model sees both; the finder finds `other` once
    tracker = MultiTracker(
        FoundOnce([person], other),
        max_tracks=4,
        margin=1.25,
        find_every=3,
        drop_after=1.0,
        lost_below=0.3,
    )
    followed_until = {}
    for i in range(120):
        for track_id in step(tracker, scene, i / FPS):
            followed_until[track_id] = i
    assert followed_until[1] == 119  # the person the finder keeps finding stays
    if sure < tracker.sure_above:
        # Found in frame 0 only (the finder runs every 3rd frame): let go by the run 1 s
        # later, frame 30, so last followed in frame 29; never picked up again.
        assert followed_until[2] == 29
        assert {t.id for t in tracker.tracks} == {1}
    else:
        assert followed_until[2] == 119  # sure of them: kept, though the finder misses them
