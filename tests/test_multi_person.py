"""Several people (and faces) at once with the bundled models, real finders and real clips:
``edge.live --max-people`` / ``--max-faces``, the JSONL list of people, the per-person
colours, and ``LandmarkModel.predict(image, finder=...)``.

The clips are the project's shared media (../shared/media, never copied into the repository);
BlazePose's person detector and BlazeFace come from the teacher cache that training.label
fills. Without either, the tests that need them skip and say why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.cli import BUNDLED
from edge.draw import track_colour
from edge.host import teacher_dir
from edge.metadata import read_metadata

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
# 40 frames, 1080x1920: a man on the left, a woman on the right, shaking hands.
TWO_PEOPLE = MEDIA / "pose" / "outdoor_two_people_mmhuman3d.mp4"
TWO_FACES = MEDIA / "face" / "webcam_headpose_two_people_intel.gif"  # 56 frames, 480x270


def needs_media(path: Path):
    return pytest.mark.skipif(
        not path.is_file(), reason=f"shared media missing: {path} (see ../shared/media)"
    )


def teacher(name: str) -> Path:
    path = teacher_dir() / f"{name}.tflite"
    if not path.is_file():
        pytest.skip(
            f"no {path.name} in the teacher cache {path.parent}: run `python -m training.label` "
            "once (it fetches the mediapipe wheel) or set BINLAND_TEACHERS"
        )
    return path


def frames(path: Path, count: int | None = None) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while count is None or len(out) < count:
        ok, image = cap.read()
        if not ok:
            break
        out.append(image)
    cap.release()
    return out


def live(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DISPLAY", None)
    return subprocess.run(
        [sys.executable, "-m", "edge.live", "--no-display", "--threads", "1", *map(str, args)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@needs_media(TWO_PEOPLE)
def test_blazepose_finder_finds_both_people_of_a_real_clip():
    from edge.finders import BlazePoseFinder, create_finder

    teacher("pose_detection")
    finder = create_finder("blazepose", subject="person", margin=1.25)
    assert isinstance(finder, BlazePoseFinder)
    image = frames(TWO_PEOPLE, 26)[25]
    found = finder.find(image)
    assert len(found) == 2 and all(f.score > 0.5 for f in found)
    assert found[0].score >= found[1].score  # best first
    # One person each side of the frame, each crop about a body tall (they fill ~60% of it).
    xs = sorted(f.box.center[0] for f in found)
    assert xs[0] < 540 < xs[1]
    for f in found:
        x, y, w, h = f.rect
        assert f.box.size == pytest.approx(w * 1.25) and f.box.rotation == 0
        assert 600 < h < 1300 and 400 < f.box.center[1] < 1200
    assert finder(image) == found[0].box  # the single-person fallback: the best one's crop
    assert finder.find(np.full((480, 640, 3), 127, np.uint8)) == []


@needs_media(TWO_PEOPLE)
def test_live_follows_two_people_each_with_an_id(tmp_path):
    teacher("pose_detection")
    log, video = tmp_path / "people.jsonl", tmp_path / "people.mp4"
    people = ["--max-people", "2", "--jsonl", log, "--output", video, "--segment", "0"]
    proc = live("--model", "pose", "--source", TWO_PEOPLE, *people)
    assert proc.returncode == 0, proc.stderr
    records = read_jsonl(log)
    assert len(records) == 40 == int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT))
    assert "finding" in proc.stdout  # the finder's time is in the summary
    two = [r for r in records if len(r["people"]) == 2]
    assert len(two) >= 30, [len(r["people"]) for r in records]
    for record in records:
        assert "landmarks" not in record and {"frame", "timestamp", "people"} <= set(record)
        ids = [p["id"] for p in record["people"]]
        assert ids == sorted(set(ids))  # by ID, never one ID twice
        for person in record["people"]:
            assert set(person) == {"id", "box", "score", "tracking", "landmarks"}
            names = [p["name"] for p in person["landmarks"]]
            assert tuple(names) == read_metadata(BUNDLED["pose"]).landmarks
    # Each ID stays on its person, on their side of the frame.
    sides = {}
    for record in two:
        for person in record["people"]:
            sides.setdefault(person["id"], set()).add(person["box"]["center"][0] > 540)
    assert len(sides) == 2 and all(len(s) == 1 for s in sides.values()), sides


@needs_media(TWO_PEOPLE)
def test_each_person_is_drawn_in_their_own_colour():
    from edge.model import LandmarkModel
    from edge.multitrack import multi_tracker_for
    from edge.smoothing import OneEuroFilter
    from edge.sources import Frame

    teacher("pose_detection")
    model = LandmarkModel(BUNDLED["pose"], num_threads=1)
    tracker = multi_tracker_for(model.metadata, 2)
    video = model.video_pipeline(tracker, smoother=OneEuroFilter())
    for i, image in enumerate(frames(TWO_PEOPLE, 3)):
        result = video.process(Frame(image, i / 12.0, i))
    assert [p.id for p in result.people] == [1, 2]
    overlay = video.annotate(result, fps=12.0)
    for person in result.people:
        colour = np.array(track_colour(person.id))
        # The skeleton of each person is drawn in their colour, around their own landmarks.
        x0, y0 = np.nanmin(person.points, axis=0).astype(int)
        x1, y1 = np.nanmax(person.points, axis=0).astype(int)
        region = overlay[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1]
        assert (region == colour).all(axis=-1).sum() > 200, person.id
    assert track_colour(1) != track_colour(2)
    record = video.record(result, {"total": 1.0})
    assert [p["id"] for p in record["people"]] == [1, 2] and record["found"] in (None, 2)


@needs_media(TWO_FACES)
def test_live_follows_two_faces(tmp_path):
    teacher("face_detection_short_range")
    log = tmp_path / "faces.jsonl"
    faces = ["--max-faces", "2", "--face-detector", "blazeface", "--jsonl", log]
    proc = live("--model", "face", "--source", TWO_FACES, *faces)
    assert proc.returncode == 0, proc.stderr
    records = read_jsonl(log)
    assert len(records) == 56
    counts = [len(r["people"]) for r in records]
    assert sum(c == 2 for c in counts) > 40, counts
    assert all(len(p["landmarks"]) == 68 for r in records for p in r["people"])
    # The man on the left and the woman on the right keep their IDs.
    left = {p["id"] for r in records for p in r["people"] if p["box"]["center"][0] < 240}
    right = {p["id"] for r in records for p in r["people"] if p["box"]["center"][0] >= 240}
    assert left and right and not left & right


@needs_media(TWO_FACES)
def test_predict_with_a_finder_returns_every_face():
    from edge.model import LandmarkModel, Landmarks

    model = LandmarkModel(BUNDLED["face"], num_threads=1)
    image = frames(TWO_FACES, 1)[0]
    faces = model.predict(image, finder="haar")  # Haar finds both in the first frame
    assert len(faces) == 2 and all(isinstance(f, Landmarks) for f in faces)
    assert all(f.points.shape == (68, 2) for f in faces)
    xs = sorted(float(np.median(f.points[:, 0])) for f in faces)
    assert xs[0] < 240 <= xs[1]  # one face each side
    assert model.predict(image, finder="haar", max_people=1)[0].box == faces[0].box
    single = model.predict(image)  # the single-box call is unchanged
    assert isinstance(single, Landmarks) and single.box.size == 480
    assert model.predict(np.full((120, 160, 3), 90, np.uint8), finder="haar") == []
    with pytest.raises(ValueError, match="a box or a finder"):
        model.predict(image, faces[0].box, finder="haar")


def test_several_faces_refused_for_a_segmentation_model():
    faceparts = BUNDLED["pose"].with_name("faceparts.tflite")
    proc = live("--model", faceparts, "--source", "demo", "--max-faces", "2")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: a segmentation model follows one face: --max-faces more than 1 is for face "
        "landmark models"
    )


@needs_media(TWO_PEOPLE)
def test_one_person_can_fall_back_to_the_person_finder():
    from edge.finders import create_finder
    from edge.metadata import read_metadata
    from edge.tracking import BUNDLED_PERSON_FINDER, search_boxes, tracker_for

    teacher("pose_detection")
    meta = read_metadata(BUNDLED["pose"])
    image = frames(TWO_PEOPLE, 26)[25]
    finder = create_finder("blazepose", subject="person", margin=meta.box_margin)
    tracker = tracker_for(meta, person_finder="blazepose")  # --max-people 1 --person-finder
    assert tracker.box_for(image) == finder(image)
    assert tracker.probe_for(image) is None  # the finder replaces the search boxes
    # The default ("auto"): our bundled 1-bit finder; "none": the search boxes.
    default = tracker_for(meta)
    assert default.detector.path == BUNDLED_PERSON_FINDER
    assert default.box_for(image) == default.detector(image)
    assert tracker_for(meta, person_finder="none").box_for(image) in search_boxes(1080, 1920)


# ------------------------------- benchmarks.multi_person --person-finder (needs training.*)


def multi_person_benchmark(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.multi_person", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.tensorflow
def test_the_benchmark_refuses_a_bad_person_finder_in_one_line(tmp_path):
    out = tmp_path / "report.md"
    for finder, words in (
        (tmp_path / "missing.tflite", "missing.tflite"),
        ("none", "following several people needs a finder"),
        ("blazeface", "blazeface finds faces, not people"),
    ):
        done = multi_person_benchmark("--person-finder", finder, "--out", out)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
        assert words in done.stderr
    # a model that follows no people, or none at all
    for model, words in (
        (BUNDLED["face"], "is a face model (ibug68)"),
        (tmp_path / "missing.tflite", "missing.tflite"),
    ):
        done = multi_person_benchmark("--model", model, "--out", out)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
        assert words in done.stderr
    # edge.live's bounds on its several-people flags hold here too
    for flag, value, words in (
        ("--max-people", "0", "must be at least 1"),
        ("--max-people", "17", "must be at most 16"),
        ("--find-every", "0", "must be"),
        ("--drop-after", "-1", "must be"),
        ("--max-frames", "0", "must be"),
    ):
        done = multi_person_benchmark(flag, value, "--out", out)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
        assert words in done.stderr, done.stderr
    assert not out.exists()


@pytest.mark.tensorflow
@needs_media(TWO_PEOPLE)
def test_the_benchmark_runs_the_person_finder_it_is_given(tmp_path):
    teacher("pose_detection")  # the teacher's side of the score
    from benchmarks.multi_person import MEAN_SHAPE_DATA

    if not MEAN_SHAPE_DATA.is_file():
        pytest.skip(f"no {MEAN_SHAPE_DATA} (python -m training.label pose writes it)")
    finder = "tests/fixtures/person_finder_float.tflite"  # task finder, untrained
    out = tmp_path / "report.md"
    done = multi_person_benchmark(
        "--person-finder", finder, "--clips", TWO_PEOPLE.name, "--max-frames", 2, "--out", out
    )
    assert done.returncode == 0, done.stderr
    assert f"person finder: our 1-bit person finder `{finder}`" in done.stderr
    text = out.read_text()
    assert (
        text.splitlines()[0]
        == f"# Several people, each tracked: with our 1-bit person finder {finder}"
    )
    assert f"--person-finder {finder}` runs it" in text
    assert "interim finder: MediaPipe" not in text and "before the 1-bit finder" not in text
    assert f"| {TWO_PEOPLE.name} | 2 |" in text


FOUR_MEN = MEDIA / "images2" / "body" / "azuresamples_four_men_standing_bw.jpg"


@pytest.mark.tensorflow
@needs_media(FOUR_MEN)
def test_the_tiled_teacher_finds_the_group_its_detector_misses_in_the_whole_frame():
    """--teacher tiles searches as the finders' labels were made: in a photo of four men
    standing side by side BlazePose's detector finds one in the whole frame; the tiles find
    all four, each once (the finder label test's count of the same photo)."""
    teacher("pose_detection"), teacher("pose_landmark_full")
    from benchmarks.multi_person import teacher_people
    from edge.boxes import iou_matrix
    from training.label.finder import SAME_SUBJECT_IOU
    from training.label.pose import BlazePoseTeacher

    image = cv2.imread(str(FOUR_MEN))
    pose_teacher = BlazePoseTeacher(num_threads=1)
    whole = teacher_people(pose_teacher, image, "coco17")
    tiled = teacher_people(pose_teacher, image, "coco17", tiled=True)
    assert len(whole) < 4 and len(tiled) == 4
    overlap = iou_matrix([p.box for p in tiled], [p.box for p in tiled])
    assert (overlap[~np.eye(4, dtype=bool)] <= SAME_SUBJECT_IOU).all()
    # Standing people side by side (a box is the landmarks the teacher sees: one man's legs
    # are not among them, so his is the upper body).
    for p in tiled:
        x0, y0, x1, y1 = p.box
        assert y1 - y0 > 1.5 * (x1 - x0) and y1 - y0 > image.shape[0] / 3
        assert p.visible.sum() >= 10
    lefts = sorted(p.box[0] for p in tiled)
    assert all(b - a > 0.1 * image.shape[1] for a, b in zip(lefts, lefts[1:], strict=False))
    # Everyone the whole-frame search finds is among them.
    assert all(iou_matrix([w.box], [t.box for t in tiled]).max() > 0.5 for w in whole)


def test_a_track_left_on_background_is_measured_in_frames():
    """benchmarks.multi_person's "on background": the longest run of frames one of our IDs is
    listed overlapping no teacher person; a frame it is not listed in ends the run."""
    from benchmarks.multi_person import Person, background_runs

    def person(x0: float, pid: int) -> Person:
        return Person(np.array([x0, 0.0, x0 + 100, 200]), np.zeros((16, 2)), np.ones(16, bool), pid)

    someone = person(0, 0)  # the teacher's person, standing still
    on_them, on_wall = person(10, 1), person(400, 2)
    teacher_frames = [[someone]] * 6
    our_frames = [
        [on_them, on_wall],
        [on_them, on_wall],
        [on_them, on_wall],
        [on_them],  # ID 2 not listed: its run ends
        [on_them, on_wall],
        [on_them],
    ]
    assert background_runs(teacher_frames, our_frames) == {1: 0, 2: 3}
    # with nobody on the teacher's side, every listed frame is on background
    assert background_runs([[]] * 2, [[on_them]] * 2) == {1: 2}


def test_misses_and_false_finds_are_split_by_what_was_there():
    """benchmarks.multi_person's causes: a missed teacher person with one of ours on them at
    an IoU under the match's is "followed, boxes disagree"; one with nothing near is not; a
    false find overlapping a teacher person is "on a person", one on the wall is not."""
    from benchmarks.multi_person import MATCH_IOU, Person, miss_causes
    from edge.multitrack import match_boxes

    def person(x0: float, width: float = 100) -> Person:
        return Person(np.array([x0, 0.0, x0 + width, 200]), np.zeros((16, 2)), np.ones(16, bool))

    matched, loose, alone = person(0), person(300), person(600)
    truth = [matched, loose, alone]
    # ours: one on `matched`, one a third as wide inside `loose` (IoU 1/3), one on the wall
    ours = [person(5), person(300, 33), person(1000)]
    pairs = match_boxes([t.box for t in truth], [o.box for o in ours], MATCH_IOU)
    assert pairs == [(0, 0)]
    assert miss_causes(truth, ours, pairs, tall=truth) == (1, 1)
    # a short teacher person is nobody to miss
    assert miss_causes(truth, ours, pairs, tall=[matched, alone]) == (0, 1)
    assert miss_causes([], ours, [], tall=[]) == (0, 0)
    assert miss_causes(truth, [], [], tall=truth) == (0, 0)


def test_our_box_is_where_the_landmarks_are_in_this_frame():
    """benchmarks.multi_person boxes a person by this frame's landmark positions: a landmark
    the smoother holds at an old position (scoring under its cut) enters the box where it was
    decoded, not where it was held; one scoring under the box cut stays out."""
    from benchmarks.multi_person import BOX_MIN_SCORE, SMOOTH_MIN_SCORE, our_people
    from edge.multipipeline import MultiFrameResult, TrackedLandmarks
    from edge.sources import Frame
    from edge.transform import CropBox

    raw = np.array([[100.0, 100.0], [200.0, 300.0], [150.0, 200.0], [900.0, 900.0]])
    shown = raw.copy()
    shown[0] = [102.0, 101.0]  # smoothed
    shown[2] = [600.0, 200.0]  # held where it was seen with confidence, frames ago
    shown[3] = [150.0, 250.0]  # held; it scores under the box cut anyway
    scores = np.array([0.9, 0.8, (BOX_MIN_SCORE + SMOOTH_MIN_SCORE) / 2, BOX_MIN_SCORE / 2])
    person = TrackedLandmarks(1, CropBox((150.0, 200.0), 300.0), shown, raw, scores, tracking=True)
    frame = Frame(np.zeros((1000, 1000, 3), np.uint8), timestamp=0.0, index=0)
    (ours,) = our_people(MultiFrameResult(frame, [person], None))
    np.testing.assert_allclose(ours.box, [102.0, 101.0, 200.0, 300.0])
    assert ours.visible.tolist() == [True, True, True, False]
    np.testing.assert_array_equal(ours.points, shown)  # the PCK is scored on what is shown
