"""Several people, each tracked: ``edge.live --max-people`` against the teacher, frame by frame.

    python -m benchmarks.multi_person [--clips a.mp4,b.avi] [--max-frames N] [--max-people 4]
        [--model edge/models/pose.tflite] [--mean-shape-data PATH]
        [--person-finder blazepose|auto|PATH]

Runs the bundled pose model (or ``--model``) through :class:`edge.multipipeline.MultiLandmarkPipeline` exactly
as ``python -m edge.live --max-people N --person-finder F`` does (``--find-every`` 3,
``--drop-after`` 1 s, One Euro smoothing; the finder F: BlazePose's person detector unless
``--person-finder`` names another, e.g. our 1-bit finder's .tflite, through the same
:func:`edge.multitrack.multi_tracker_for`) over clips with several people in
``../shared/media/pose`` (read in place, never copied), and scores it against the teacher's
people in every frame: ``training.label``'s BlazePose (``detect_all``: every person its
detector finds, then the 33 landmarks of each, mapped to the model's skeleton, MPII-16 or
COCO-17; people whose landmark model
is unsure, presence < 0.5, are left out). With ``--teacher tiles`` the teacher searches as the
finders' labels were made (the detector also on tiles of the frame, each find refined once,
two finds of one person merged: :func:`teacher_people`), so people its detector misses in the
whole frame (a group's back row) count too. Writes benchmarks/results/multi_person.md.

What it reports, per clip and over all:

* **recall / precision at IoU 0.5** for people taller than a sixth of the frame: the box of a
  person is the box of their confident landmarks (ours: score >= ``--box-min-score``; the
  teacher's: visibility >= 0.5), matched greedily by IoU. Our scores are heatmap peaks, not
  the teacher's visibility, so the cut that makes the two boxes mean the same thing is
  measured, on the pose task's ``select`` clips (single people, none of this benchmark's):
  ``--clips <those> --box-min-score T`` for T from 0.1 to 0.4 gave recall / precision 81 / 52
  at 0.1 and 58 / 37 at 0.3 (benchmarks/results/multi_person_box_cut.md), hence the default
  0.1. The positions are this frame's: edge.live's smoothing holds a landmark scoring under
  its cut (0.3) where it last saw it with confidence, and a held position in the box drags it
  behind a moving person (a wrist held for 20 frames at the x where it was), so those
  landmarks enter the box where they were decoded in this frame (:func:`box_points`; on the
  select clips recall / precision 83.0 / 58.5 against 82.3 / 58.0 with the held ones,
  multi_person_box_cut.md). A prediction on a shorter teacher person is
  neither right nor wrong (ignored);
* **ID switches per 100 frames**: the teacher has no IDs, so its people are linked from frame
  to frame by box IoU (>= 0.3, across gaps of up to 1 s: its detector misses people for
  several frames); a switch is a teacher person matched to another of our IDs than the last
  time (CLEAR-MOT's IDSW);
* **PCK@0.2** of the torso (LSP's: right hip to left shoulder), per matched person and frame,
  over the landmarks the teacher sees, averaged per person; and beside it, as every landmark
  score here, a model that learnt nothing: the training set's **mean shape placed in the same
  crop** (the crop our tracker gave that person in that frame; ``training.validation``'s
  MeanShape, averaged over ``--mean-shape-data``, as ``training.evaluate`` does), scored on the
  same people and frames;
* **frames to acquire** each person who walks in (first seen tall more than 1 s into the
  clip): frames from their first tall frame to our first match; and **time to drop** each
  person who leaves (last seen more than 1 s before the end, after we followed them): seconds
  from their last frame to the last frame the ID they last had is listed (it is then
  forgotten after --drop-after). Only people the teacher sees tall in at least 1 s of frames
  count: its detector's one- and two-frame blips as people enter are no one to acquire. A
  person it misses for over a second counts as leaving and walking in again;
* **seconds on background**: per ID of ours, the longest run of frames it was listed while
  its box overlapped no teacher person (tall or not) by an IoU of 0.1; per clip the longest,
  and how many IDs went over 1 s (a track lingering on background, or following someone the
  teacher's detector missed: the teacher's side is not checked by hand);
* CPU milliseconds per frame of our chain (process time, which other programs on the machine
  do not inflate as they do wall-clock time), in frames where the finder ran and in the
  others, on the CPU named.

With the interim finder (the default, ``--person-finder blazepose``) these are the numbers
*before the 1-bit finder* (issue 27 part 1), in benchmarks/results/multi_person.md. That finder
is the teacher's own person detector, so the detection numbers say how well our landmarks and
tracking follow the people that detector finds, not how good a finder is. With another finder
the report says which, and goes to ``multi_person_<finder>.md`` unless ``--out`` says where.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks import REPO, RESULTS_DIR
from edge import cpu_name
from edge.boxes import iou_matrix, suppress
from edge.cli import (
    ArgumentParser,
    int_in_range,
    non_negative_float,
    positive_int,
    run_cli,
    unit_float,
)
from edge.errors import EdgeError
from edge.multitrack import DEFAULT_DROP_AFTER, DEFAULT_FIND_EVERY, MAX_TRACKS

MEDIA = REPO.parent / "shared" / "media" / "pose"
RESULTS = RESULTS_DIR / "multi_person.md"
# The label tool's labels of real clips (training side of the source-held-out split): the
# people whose mean shape is the baseline, in the model's skeleton, as benchmarks.tracked reads
# them (this MPII-16 file, or person_keypoints_train.json in annotations/ beside it for COCO-17).
MEAN_SHAPE_DATA = REPO / "data" / "pose_v2_clips" / "annot" / "train.json"
SKELETON_NAMES = {"mpii16": "MPII-16", "coco17": "COCO-17"}
CLIPS = (
    "lab_two_people_cam1_pose2sim.mp4",
    "lab_two_people_cam3_pose2sim.mp4",
    "lab_two_people_ntu_mmaction.mp4",
    "office_two_walking_gastnet.avi",
    "outdoor_two_people_mmhuman3d.mp4",
    "office_two_walking_intel.gif",
    "office_three_people_pause_intel.gif",
    "room_one_by_one_high_angle_intel.mp4",
)
MATCH_IOU = 0.5
TALL = 1 / 6  # of the frame's height
LINK_IOU, LINK_GAP_S = 0.3, 1.0  # the teacher's detector misses people for several frames
EDGE_S = 1.0  # walk-ins appear, leavers go, this long after the start or before the end
LIFE_S = 1.0  # a walk-in or leaver is seen (tall) at least this long: not a detector's blip
# Landmarks scoring under SMOOTH_MIN_SCORE are not smoothed (edge.live's default); our box is
# made of those scoring BOX_MIN_SCORE or more (--box-min-score: see the docstring).
SMOOTH_MIN_SCORE, BOX_MIN_SCORE, TEACHER_MIN_VISIBILITY = 0.3, 0.1, 0.5
# One of ours whose box overlaps no teacher person (tall or not) by this much is on background
# (or on someone the teacher's detector missed in that frame).
BACKGROUND_IOU = 0.1
INTERIM_FINDER = "blazepose"  # edge.finders' name of the finder before the 1-bit one


class BenchError(EdgeError):
    """A clip, the mean shape's data or the finder cannot be used."""


@dataclass(eq=False)
class Person:
    box: np.ndarray  # (x0, y0, x1, y1) of the confident landmarks
    points: np.ndarray  # (K, 2) in the model's skeleton (MPII-16 or COCO-17)
    visible: np.ndarray  # (K,) bool
    id: int = -1  # ours: the track's ID; the teacher's: linked by linking()
    crop: np.ndarray | None = None  # ours: the crop the model saw, [cx, cy, side, rotation]


@dataclass
class ClipScore:
    name: str
    frames: int
    fps: float
    tall: int = 0  # teacher people taller than TALL, summed over frames
    hits: int = 0
    predictions: int = 0  # ours, those on short teacher people left out
    switches: int = 0
    pck: dict[int, list[float]] = field(default_factory=dict)  # teacher person -> per frame
    mean_pck: dict[int, list[float]] = field(default_factory=dict)  # the mean shape's, alike
    acquire: list[int | None] = field(default_factory=list)  # frames; None: never
    drop: list[float] = field(default_factory=list)  # seconds
    # per ID of ours: the longest it was listed on background, seconds (background_runs)
    background: list[float] = field(default_factory=list)
    # Why a tall teacher person was missed, or one of ours was a false find (miss_causes):
    # one of ours was on them (IoU >= BACKGROUND_IOU, under MATCH_IOU: the boxes disagree)
    missed_followed: int = 0
    false_on_person: int = 0  # a false find of ours overlapping a teacher person likewise
    our_ms: list[float] = field(default_factory=list)  # CPU ms, frames without the finder
    finder_ms: list[float] = field(default_factory=list)  # CPU ms, frames where it ran


def landmark_box(points: np.ndarray, ok: np.ndarray) -> np.ndarray | None:
    if ok.sum() < 3:
        return None
    p = points[ok]
    return np.concatenate([p.min(axis=0), p.max(axis=0)])


def teacher_people(teacher, image: np.ndarray, skeleton: str, tiled: bool = False) -> list[Person]:
    """Every person the teacher finds in ``image``, in ``skeleton`` (the model's). ``tiled``:
    search as the label tool does for the finders' labels (``training.label person-finder``:
    the detector on the frame and on tiles of it, each ROI's landmarks refined once on the
    whole frame, two finds of one person merged), which finds people the detector misses in
    the whole frame (a group's back row, someone small beside someone near)."""
    from training.label import mappings
    from training.label.finder import SAME_SUBJECT_IOU, FinderLabeller, tiled_rois

    if tiled:
        rois = tiled_rois(teacher, image, FinderLabeller.tile_sides)
    else:
        rois = teacher.detect_all(image)
    found = []
    for roi in rois:
        result = teacher.refined(image, roi) if tiled else teacher.landmarks(image, roi)
        if result.presence < 0.5:
            continue
        points, confidence = mappings.to_skeleton(skeleton, result.points, result.visibility)
        visible = confidence >= TEACHER_MIN_VISIBILITY
        box = landmark_box(points, visible)
        if box is not None:
            found.append((result.presence, Person(box, points, visible)))
    if not tiled:
        return [person for _, person in found]
    # Two ROIs refined onto one person: the more present kept, as the label tool merges them.
    best_first = [person for _, person in sorted(found, key=lambda f: -f[0])]
    keep = suppress(np.array([p.box for p in best_first], np.float64), SAME_SUBJECT_IOU)
    return [best_first[i] for i in keep]


def box_points(tracked) -> np.ndarray:
    """(K, 2) where a tracked person's landmarks are in this frame: the smoothed position
    of each landmark the smoother updated (score >= SMOOTH_MIN_SCORE), the decoded one of each
    it held at an older position (see the module docstring)."""
    updated = np.asarray(tracked.scores) >= SMOOTH_MIN_SCORE
    return np.where(updated[:, None], tracked.points, tracked.raw_points).astype(np.float64)


def our_people(result, min_score: float = BOX_MIN_SCORE) -> list[Person]:
    from training.scoring import box_row

    people = []
    for tracked in result.people:
        points = np.asarray(tracked.points, np.float64)
        here = box_points(tracked)
        ok = (np.asarray(tracked.scores) >= min_score) & np.isfinite(here).all(axis=1)
        box = landmark_box(here, ok)
        if box is not None:
            crop = np.asarray(box_row(tracked.box), np.float64)
            people.append(Person(box, points, ok, tracked.id, crop))
    return people


def load_mean_shape(skeleton: str, path: Path | None = None):
    """The mean shape of the training side's people in ``skeleton``, averaged as
    ``training.evaluate`` averages its baseline (benchmarks.tracked.load_mean, which reads
    ``path`` instead of the default labels when given)."""
    from benchmarks import tracked  # (it imports this module)

    return tracked.load_mean("pose", skeleton, path)[0]


def pck_per_person(ids: list[int], pred, skeleton) -> dict[int, list[float]]:
    """PCK@0.2 of the torso of each row of ``pred`` (training.scoring.Predictions), listed
    by the teacher person ``ids`` gives each row; rows with no torso or no visible point
    score nothing."""
    from training.metrics import pck_torso

    out: dict[int, list[float]] = {}
    for i, person in enumerate(ids):
        rows = slice(i, i + 1)
        result = pck_torso(pred.points[rows], pred.gt[rows], pred.visible[rows], skeleton, 0.2)
        if np.isfinite(result.total):
            out.setdefault(person, []).append(result.total)
    return out


def link(frames: list[list[Person]], gap: int) -> None:
    """Give the teacher's people IDs: each joins the person it overlaps most (IoU >=
    LINK_IOU) among those seen in the last ``gap`` frames, else starts a new one."""
    from edge.multitrack import match_boxes

    recent: dict[int, tuple[int, np.ndarray]] = {}  # id -> (frame, box)
    next_id = 0
    for index, people in enumerate(frames):
        live = [(i, box) for i, (f, box) in recent.items() if index - f <= gap]
        pairs = match_boxes([box for _, box in live], [p.box for p in people], LINK_IOU)
        for li, pi in pairs:
            people[pi].id = live[li][0]
        for person in people:
            if person.id < 0:
                person.id, next_id = next_id, next_id + 1
            recent[person.id] = (index, person.box)


def background_runs(teacher_frames, our_frames) -> dict[int, int]:
    """Per ID of ours, the longest run of consecutive frames in which it was listed while its
    box overlapped no teacher person by BACKGROUND_IOU: a track lingering on background (or on
    someone the teacher missed). A frame it is not listed in ends the run."""
    longest: dict[int, int] = {}
    run: dict[int, int] = {}
    for truth, ours in zip(teacher_frames, our_frames, strict=True):
        overlap = iou_matrix([p.box for p in ours], [t.box for t in truth])
        listed = set()
        for i, p in enumerate(ours):
            listed.add(p.id)
            alone = not truth or float(overlap[i].max()) < BACKGROUND_IOU
            run[p.id] = run.get(p.id, 0) + 1 if alone else 0
            longest[p.id] = max(longest.get(p.id, 0), run[p.id])
        for gone in set(run) - listed:
            run[gone] = 0
    return longest


def miss_causes(
    truth: list[Person], ours: list[Person], pairs, tall: list[Person]
) -> tuple[int, int]:
    """Of the tall teacher people no one of ours matched at MATCH_IOU, how many one of ours
    still overlapped by BACKGROUND_IOU (followed, but the two landmark boxes disagree); and of
    our unmatched people not on a short teacher person, how many overlapped a teacher person
    likewise (a false find on a person, not on background). The rest of the misses had none of
    ours near them; the rest of the false finds were on no one the teacher lists."""
    overlap = iou_matrix([t.box for t in truth], [o.box for o in ours])
    matched_truth = {ti for ti, _ in pairs}
    matched_ours = {oi for _, oi in pairs}
    followed = sum(
        1
        for ti, t in enumerate(truth)
        if t in tall and ti not in matched_truth and ours and overlap[ti].max() >= BACKGROUND_IOU
    )
    on_person = sum(
        1
        for oi in range(len(ours))
        if oi not in matched_ours and truth and overlap[:, oi].max() >= BACKGROUND_IOU
    )
    return followed, on_person


def score_clip(
    name: str,
    fps: float,
    height: int,
    teacher_frames,
    our_frames,
    times,
    mean=None,
    skeleton: str = "mpii16",
) -> ClipScore:
    """The clip's numbers; ``mean``: the MeanShape placed in our crops beside our PCK;
    ``skeleton``: the model's (and so the teacher's people's)."""
    from edge.multitrack import match_boxes
    from edge.skeletons import get_skeleton
    from training.scoring import Predictions

    landmarks = get_skeleton(skeleton)

    score = ClipScore(name, len(teacher_frames), fps)
    matched: list[tuple[Person, Person]] = []  # (teacher, ours) of tall people, every frame
    last_match: dict[int, int] = {}  # teacher person -> our ID it was last matched to
    first_tall: dict[int, int] = {}
    last_seen: dict[int, int] = {}
    seen_frames: dict[int, int] = {}
    acquired: dict[int, int] = {}
    listed: dict[int, int] = {}  # our ID -> last frame listed
    for index, (truth, ours) in enumerate(zip(teacher_frames, our_frames, strict=True)):
        tall = [p for p in truth if p.box[3] - p.box[1] > TALL * height]
        for p in tall:
            first_tall.setdefault(p.id, index)
            last_seen[p.id] = index
            seen_frames[p.id] = seen_frames.get(p.id, 0) + 1
        for p in ours:
            listed[p.id] = index
        pairs = match_boxes([p.box for p in truth], [p.box for p in ours], MATCH_IOU)
        on_short = {oi for ti, oi in pairs if truth[ti] not in tall}
        score.tall += len(tall)
        score.predictions += len(ours) - len(on_short)
        followed, on_person = miss_causes(truth, ours, pairs, tall)
        score.missed_followed += followed
        score.false_on_person += on_person
        for ti, oi in pairs:
            t, o = truth[ti], ours[oi]
            if t not in tall:
                continue
            score.hits += 1
            acquired.setdefault(t.id, index)
            if t.id in last_match and last_match[t.id] != o.id:
                score.switches += 1
            last_match[t.id] = o.id
            matched.append((t, o))
    if matched:
        crops = np.stack([o.crop for _, o in matched])
        pred = Predictions(
            points=np.stack([o.points for _, o in matched]),
            scores=np.ones((len(matched), landmarks.num_landmarks)),
            gt=np.stack([t.points for t, _ in matched]),
            visible=np.stack([t.visible for t, _ in matched]),
            head_size=np.full(len(matched), np.nan),
            box_size=crops[:, 2],
            boxes=crops,
        )
        ids = [t.id for t, _ in matched]
        score.pck = pck_per_person(ids, pred, landmarks)
        if mean is not None:  # the same people and frames, the mean shape in our crop
            score.mean_pck = pck_per_person(ids, mean.place(pred), landmarks)
    margin, life = round(EDGE_S * fps), round(LIFE_S * fps)
    for person, first in first_tall.items():
        if first > margin and seen_frames[person] >= life:  # walked in
            found = acquired.get(person)
            score.acquire.append(None if found is None else found - first)
    for person, last in last_seen.items():
        stayed = seen_frames[person] >= life and person in last_match  # and we followed them
        if stayed and last < len(teacher_frames) - 1 - margin:  # left
            ghost = listed.get(last_match[person], last) - last
            score.drop.append(max(ghost, 0) / fps)
    score.background = [n / fps for n in background_runs(teacher_frames, our_frames).values()]
    score.our_ms = [t["cpu_ms"] for t in times if not t["found"]]
    score.finder_ms = [t["cpu_ms"] for t in times if t["found"]]
    return score


def run_clip(path: Path, args, model, teacher, mean=None) -> ClipScore:
    from edge.multitrack import multi_tracker_for
    from edge.smoothing import OneEuroFilter
    from edge.sources import open_source

    tracker = multi_tracker_for(
        model.metadata,
        args.max_people,
        person_finder=args.person_finder,
        find_every=args.find_every,
        drop_after=args.drop_after,
    )
    pipeline = model.video_pipeline(tracker, smoother=OneEuroFilter(min_score=SMOOTH_MIN_SCORE))
    source = open_source(str(path))
    teacher_frames, our_frames, times = [], [], []
    height = 0
    try:
        while args.max_frames is None or len(our_frames) < args.max_frames:
            frame = source.read()
            if frame is None:
                break
            height = frame.image.shape[0]
            started = time.process_time()
            result = pipeline.process(frame)
            cpu_ms = (time.process_time() - started) * 1e3
            times.append({"cpu_ms": cpu_ms, "found": result.found is not None})
            our_frames.append(our_people(result, args.box_min_score))
            teacher_frames.append(
                teacher_people(
                    teacher, frame.image, model.metadata.skeleton, args.teacher == "tiles"
                )
            )
        fps = source.fps or 30.0
    finally:
        source.close()
    link(teacher_frames, max(1, round(LINK_GAP_S * fps)))
    return score_clip(
        path.name, fps, height, teacher_frames, our_frames, times, mean, model.metadata.skeleton
    )


def _pct(a: float, b: float) -> str:
    return f"{100 * a / b:.1f}" if b else "-"


def _mean(values) -> str:
    values = [v for v in values if v is not None]
    return f"{np.mean(values):.1f}" if values else "-"


def _background(seconds: list[float]) -> str:
    if not seconds:
        return "-"
    return f"{max(seconds):.1f} ({sum(v > LIFE_S for v in seconds)})"


def _person_pck(per_person: dict[int, list[float]]) -> list[float]:
    return [float(np.mean(v)) for v in per_person.values()]


def table(scores: list[ClipScore]) -> list[str]:
    lines = [
        "| clip | frames | teacher people (tall) | recall % | precision % | ID switches / 100 "
        "frames | PCK@0.2 per person | mean shape in the same crop | frames to acquire a "
        "walk-in | s to drop a leaver | s on background (longest; IDs over 1 s) | "
        "CPU ms / frame (mean) | with the finder |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in [*scores, _total(scores)]:
        acquire = ", ".join("never" if a is None else str(a) for a in s.acquire) or "-"
        drop = ", ".join(f"{d:.1f}" for d in s.drop) or "-"
        bold = "**" if s.name == "all" else ""
        lines.append(
            f"| {bold}{s.name}{bold} | {s.frames} | {s.tall} | {_pct(s.hits, s.tall)} | "
            f"{_pct(s.hits, s.predictions)} | {100 * s.switches / max(s.frames, 1):.2f} | "
            f"{_mean(_person_pck(s.pck))} | {_mean(_person_pck(s.mean_pck))} | "
            f"{acquire if s.name != 'all' else _mean(s.acquire)} | "
            f"{drop if s.name != 'all' else _mean(s.drop)} | {_background(s.background)} | "
            f"{_mean(s.our_ms)} | {_mean(s.finder_ms)} |"
        )
    return lines


def _total(scores: list[ClipScore]) -> ClipScore:
    total = ClipScore("all", sum(s.frames for s in scores), 0.0)
    for s in scores:
        total.tall += s.tall
        total.hits += s.hits
        total.predictions += s.predictions
        total.switches += s.switches
        total.missed_followed += s.missed_followed
        total.false_on_person += s.false_on_person
        for values in s.pck.values():
            total.pck[len(total.pck)] = values
        for values in s.mean_pck.values():
            total.mean_pck[len(total.mean_pck)] = values
        total.acquire += s.acquire
        total.drop += s.drop
        total.background += s.background
        total.our_ms += s.our_ms
        total.finder_ms += s.finder_ms
    return total


def finder_of(meta, args):
    """The person finder ``--person-finder`` gives edge.live --max-people (built by the
    pipeline's own :func:`edge.multitrack.multi_tracker_for`, so a bad value is the one-line
    error edge.live gives)."""
    from edge.multitrack import multi_tracker_for

    return multi_tracker_for(meta, args.max_people, person_finder=args.person_finder).finder


def is_interim(finder) -> bool:
    """Whether ``finder`` is the interim finder, BlazePose's person detector from the
    teacher cache (the default, whose report is the committed "before" table)."""
    from edge.finders import BlazePoseFinder
    from edge.host import teacher_dir

    return isinstance(finder, BlazePoseFinder) and finder.path == teacher_dir() / (
        "pose_detection.tflite"
    )


def describe_finder(finder) -> str:
    """What the report calls the finder that ran."""
    from edge.finders import BinaryFinder, BlazePoseFinder

    if isinstance(finder, BinaryFinder):
        return f"our 1-bit person finder `{_shown(finder.path)}`"
    if isinstance(finder, BlazePoseFinder):
        return f"MediaPipe BlazePose's person detector from `{_shown(finder.path)}`"
    return f"{type(finder).__name__} (`edge.finders` {finder.name})"


def _shown(path) -> str:
    where = Path(path).resolve()
    return str(where.relative_to(REPO)) if where.is_relative_to(REPO) else str(path)


def default_out(finder, spec: str) -> Path:
    """The interim finder's report is multi_person.md; another finder's is named after it."""
    if is_interim(finder):
        return RESULTS
    if finder.path is None:
        name = spec
    else:  # runs/person_finder/model.tflite: person_finder
        path = Path(spec)
        name = path.parent.name if path.stem == "model" and path.parent.name else path.stem
    return RESULTS_DIR / f"multi_person_{name}.md"


def _finder_lines(args, model, finder) -> list[str]:
    """The report's title and the paragraphs that depend on the finder that ran."""
    live = (
        f"`python -m edge.live --max-people {args.max_people} --find-every {args.find_every} "
        f"--drop-after {args.drop_after:g}"
    )
    if is_interim(finder):
        return [
            "# Several people, each tracked: before the 1-bit finder",
            "",
            *_header(model),
            f"Ours: {_model_name(args)} as {live}` "
            "runs it, with the **interim finder: MediaPipe BlazePose's person detector** "
            "(`--person-finder blazepose`). The 1-bit finder (issue 27 part 1) replaces it; "
            "these are the numbers to beat.",
            "",
            f"Against: {_against(args, model)} Our finder is the teacher's detector"
            + (
                " on the whole frame, so recall and precision say how well our landmarks and "
                "tracking follow the people that detector finds; a person it misses in a frame "
                "is missing from both sides."
                if args.teacher == "frame"
                else ", which the teacher also runs on tiles: a person found only on a tile is "
                "on the teacher's side alone."
            )
            + " How the numbers are made: the module docstring of benchmarks/multi_person.py.",
            "",
        ]
    what = describe_finder(finder)
    return [
        f"# Several people, each tracked: with {what.replace('`', '')}",
        "",
        *_header(model),
        f"Ours: {_model_name(args)} as {live} --person-finder "
        f"{args.person_finder}` runs it, with the finder: **{what}**. Beside the numbers "
        "before it, with the interim finder (MediaPipe BlazePose's person detector, "
        "benchmarks/results/multi_person.md).",
        "",
        f"Against: {_against(args, model)} Our finder is not the teacher's detector here: a person the "
        "teacher's detector misses in a frame is missing from the teacher's side only, so "
        "following them counts against our precision. How the numbers are made: the module "
        "docstring of benchmarks/multi_person.py.",
        "",
    ]


def _against(args, model) -> str:
    """The report's sentence on how the teacher found the people it scores against."""
    if args.teacher == "tiles":
        return (
            "the teacher in every frame, searched as `training.label person-finder` labels the "
            "finders (`--teacher tiles`: MediaPipe's person detector on the frame and on tiles "
            "of it, each find's BlazePose landmarks refined once on the whole frame, two finds "
            f"of one person merged; mapped to {_skeleton_name(model)})."
        )
    return (
        "the teacher in every frame, `training.label`'s BlazePose (`detect_all`: every person "
        "MediaPipe's person detector finds in the whole frame, then BlazePose's own landmarks, "
        f"mapped to {_skeleton_name(model)})."
    )


def _model_name(args) -> str:
    """How the report names the model: the bundled one, or the --model file."""
    from edge.cli import BUNDLED

    shown = _shown(args.model)
    bundled = Path(args.model).resolve() == Path(BUNDLED["pose"]).resolve()
    return f"the bundled `{shown}`" if bundled else f"`{shown}`"


def _skeleton_name(model) -> str:
    return SKELETON_NAMES.get(model.metadata.skeleton, model.metadata.skeleton)


def _header(model) -> list[str]:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"`python -m benchmarks.multi_person` ({now}) on **{cpu_name()}** "
        f"({platform.machine()}), Python {platform.python_version()}, "
        f"{model.backend_description}, {model.num_threads} thread.",
        "",
    ]


def report(scores: list[ClipScore], args, model, mean=None, finder=None) -> str:
    never = sum(a is None for s in scores for a in s.acquire)
    finder = finder if finder is not None else finder_of(model.metadata, args)
    lines = [
        *_finder_lines(args, model, finder),
        *table(scores),
        "",
        "PCK@0.2 per person: of the torso, over the landmarks the teacher sees, in every frame "
        "a tall teacher person is matched, averaged per person, then over people. Beside it, "
        "a model that learnt nothing: the mean shape of "
        + (
            f"{mean.samples} people of {mean.source} ({_skeleton_name(model)}) placed in the very crop our "
            "tracker gave that person in that frame, scored on the same people and frames."
            if mean is not None
            else "the training set: not computed in this run (no --mean-shape-data)."
        ),
        "",
        f"Walk-ins never acquired: {never}. CPU ms / frame: our chain's process time per "
        "frame (every followed person's crop, inference, decode, tracking and smoothing; no "
        "drawing), in frames where the finder did not run and, last column, where it did; "
        "the machine was shared with a training job (2 cores).",
        "",
    ]
    if is_interim(finder):
        lines += [
            "What limits these numbers with the interim finder: BlazePose's person detector "
            "was made for one person, and often finds one of two people standing close "
            "together; it assumes a whole body, so on people cut off at the waist (close to the "
            "camera) its crops are several times too large, match no track by IoU and start new "
            "ones (ID switches); and our box is our landmarks' box, so a person we follow with "
            "imprecise landmarks counts as missed (and as a false find) at IoU 0.5.",
            "",
        ]
    else:
        lines += [
            "Our box is our landmarks' box, so a person we follow with imprecise landmarks "
            "counts as missed (and as a false find) at IoU 0.5, whatever the finder.",
            "",
        ]
    lines += [
        f"Our box: the landmarks scoring {args.box_min_score:g} or more (`--box-min-score`; "
        "the teacher's: visibility 0.5 or more), where they are in this frame (those the "
        f"smoothing holds, scoring under {SMOOTH_MIN_SCORE:g}, where they were decoded).",
        "",
    ]
    return "\n".join([*lines, *causes_table(scores)])


def causes_table(scores: list[ClipScore]) -> list[str]:
    """Misses and false finds split by whether one of ours / a teacher person was there."""
    lines = [
        f"**Why a miss, why a false find** (per clip; `miss_causes`): of the tall teacher people "
        f"missed at IoU {MATCH_IOU}, the share that one of ours still overlapped by IoU "
        f"{BACKGROUND_IOU} (followed, but our landmarks' box and the teacher's disagree); of our "
        "false finds, the share that overlapped a teacher person likewise (the rest were on no "
        "one the teacher lists: background, or a person its detector missed).",
        "",
        "| clip | missed | of them followed, boxes disagree % | false finds | of them on a "
        "teacher person % |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in [*scores, _total(scores)]:
        missed, false = s.tall - s.hits, s.predictions - s.hits
        bold = "**" if s.name == "all" else ""
        lines.append(
            f"| {bold}{s.name}{bold} | {missed} | {_pct(s.missed_followed, missed)} | {false} | "
            f"{_pct(s.false_on_person, false)} |"
        )
    return [*lines, ""]


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m benchmarks.multi_person",
        description="edge.live --max-people against the BlazePose teacher on clips with "
        "several people; writes benchmarks/results/multi_person.md (with the interim finder, "
        "BlazePose's person detector) or multi_person_FINDER.md (with another, e.g. the 1-bit "
        "finder: --person-finder PATH.tflite).",
    )
    p.add_argument(
        "--clips",
        default=",".join(CLIPS),
        help=f"comma-separated clip names in {MEDIA} (default: the {len(CLIPS)} listed in "
        "the module)",
    )
    # edge.live's bounds on each (edge.cli's types), with this benchmark's defaults
    p.add_argument(
        "--max-frames", type=positive_int, default=None, help="at most N frames per clip"
    )
    p.add_argument(
        "--max-people",
        type=int_in_range(1, MAX_TRACKS),
        default=4,
        help="edge.live --max-people (it follows 1 by default; several people here)",
    )
    p.add_argument(
        "--find-every", type=positive_int, default=DEFAULT_FIND_EVERY, help="edge.live --find-every"
    )
    p.add_argument(
        "--drop-after",
        type=non_negative_float,
        default=DEFAULT_DROP_AFTER,
        help="edge.live --drop-after",
    )
    p.add_argument(
        "--person-finder",
        default=INTERIM_FINDER,
        metavar="blazepose|auto|PATH",
        help="edge.live --person-finder, the finder that picks up people: blazepose "
        "(MediaPipe's person detector from the teacher cache, the interim finder), auto (the "
        "same with several people), or a .tflite: our 1-bit finder, or BlazePose's detector "
        "elsewhere (none is refused, as edge.live refuses it with --max-people above 1)",
    )
    p.add_argument(
        "--teacher",
        choices=("frame", "tiles"),
        default="frame",
        help="how the teacher finds people: frame (its person detector on the whole frame, "
        "as the tables so far) or tiles (also on tiles of the frame, each find refined, as "
        "training.label person-finder labels the finders: people the detector misses in the "
        "whole frame are then on the teacher's side too)",
    )
    p.add_argument(
        "--box-min-score",
        type=unit_float,
        default=BOX_MIN_SCORE,
        metavar="S",
        help="our person's box is the box of their landmarks scoring S or more (default "
        f"{BOX_MIN_SCORE:g}: the cut whose box agrees best with the teacher's on the pose "
        "select clips, benchmarks/results/multi_person_box_cut.md)",
    )
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        metavar="PATH",
        help="the pose model to follow people with, MPII-16 or COCO-17 (default: the bundled "
        "edge/models/pose.tflite); the teacher's people are mapped to its skeleton",
    )
    p.add_argument(
        "--mean-shape-data",
        type=Path,
        default=None,
        metavar="PATH",
        help="the labels (training.label pose) whose people's mean shape, placed in our "
        "crops, stands beside our PCK: an MPII JSON for an MPII-16 model, a COCO JSON for a "
        "COCO-17 one (default: the training side of the held-out clips, "
        f"{MEAN_SHAPE_DATA.relative_to(REPO)} or annotations/person_keypoints_train.json "
        "beside it)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the results file (default: benchmarks/results/multi_person.md with the interim "
        "finder, else multi_person_NAME.md, NAME the finder's file name or name)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from benchmarks import tracked
    from edge.cli import BUNDLED
    from edge.metadata import read_metadata
    from edge.model import LandmarkModel
    from training.label.pose import BlazePoseTeacher

    # A bad --model or --person-finder stops here, before any work (and any runtime's
    # start-up lines).
    args.model = args.model or Path(BUNDLED["pose"])
    meta = read_metadata(args.model)
    if meta.task != "pose" or meta.skeleton not in SKELETON_NAMES:
        raise BenchError(
            f"--model {args.model} is a {meta.task} model ({meta.skeleton}): this benchmark "
            f"follows people with an {' or '.join(SKELETON_NAMES.values())} pose model"
        )
    finder = finder_of(meta, args)
    clips = [MEDIA / name.strip() for name in args.clips.split(",") if name.strip()]
    missing = [str(c) for c in clips if not c.is_file()]
    if missing:
        raise BenchError(f"clips not found: {', '.join(missing)}")
    mean_data = tracked.mean_data("pose", meta.skeleton, args.mean_shape_data)[1]
    if not mean_data.is_file():
        kind = "a COCO JSON" if meta.skeleton == "coco17" else "an MPII JSON"
        raise BenchError(
            f"--mean-shape-data {mean_data} not found: give {kind} written by python -m "
            "training.label pose"
        )
    model = LandmarkModel(args.model, num_threads=1)
    out = args.out or default_out(finder, args.person_finder)
    print(f"person finder: {describe_finder(finder)}", file=sys.stderr)
    mean = load_mean_shape(meta.skeleton, args.mean_shape_data)
    teacher = BlazePoseTeacher(num_threads=1)
    scores = []
    for clip in clips:
        started = time.perf_counter()
        scores.append(run_clip(clip, args, model, teacher, mean))
        s = scores[-1]
        print(
            f"{clip.name}: {s.frames} frames, recall {_pct(s.hits, s.tall)} %, precision "
            f"{_pct(s.hits, s.predictions)} %, {s.switches} ID switches, PCK@0.2 per "
            f"person {_mean(_person_pck(s.pck))} (mean shape {_mean(_person_pck(s.mean_pck))}) "
            f"({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    text = report(scores, args, model, mean, finder)
    out.write_text(text)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args), errors=(OSError,))


if __name__ == "__main__":
    sys.exit(main())
