"""Scoring a finder that is no network (OpenCV's Haar cascade) on whole labelled frames:
training.finder.evaluate's score_finder, and python -m benchmarks.finder_accuracy around it.

The frames are a real photo of two people (the first frame of a shared clip, ../shared/media,
never copied into the repository); the labels are drawn by hand around their faces, so the
counts below are what a reader checks by eye: who is found, who is missed, which find is
false and which is on a face nobody counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.finders import Found, create_finder
from edge.host import teacher_dir
from edge.transform import CropBox

pytestmark = pytest.mark.tensorflow  # training.* and the benchmark need the train extra

REPO = Path(__file__).resolve().parents[1]
TWO_FACES = REPO.parent / "shared" / "media" / "face" / "webcam_headpose_two_people_intel.gif"
# 480x270: a woman on the left, a man on the right. Each face's extent (x, y, w, h), by eye,
# forehead to chin and cheek to cheek (the man's ear left out).
WOMAN = (73.0, 72.0, 45.0, 70.0)
MAN = (330.0, 62.0, 60.0, 78.0)
SPECK = (200.0, 20.0, 15.0, 20.0)  # on the wall, under a tenth of the frame: never counted


def label(rect) -> Found:
    """A label as the finder label tool writes one: the rectangle and the upright
    landmark crop around it (margin 1.25)."""
    x, y, w, h = rect
    return Found(1.0, rect, CropBox((x + w / 2, y + h / 2), 1.25 * max(w, h)))


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """A face-finder label set of four frames, ``finder_valid.json`` + PNGs (and the label
    run's sources file: three frames from a clip, one from a photo):

    1. both faces labelled (and a speck too small to count)  -> 2 found
    2. the woman labelled, the man among the ignored          -> 1 found, Haar's other find ignored
    3. the woman labelled, the man not at all                 -> 1 found, 1 false
    4. a blank "photo" with the woman's label                 -> 1 missed
    """
    if not TWO_FACES.is_file():
        pytest.skip(f"shared media missing: {TWO_FACES} (see ../shared/media)")
    ok, image = cv2.VideoCapture(str(TWO_FACES)).read()
    assert ok and image.shape == (270, 480, 3)
    root = tmp_path_factory.mktemp("face_finder")
    (root / "valid" / "clip").mkdir(parents=True)
    (root / "valid" / "photo").mkdir(parents=True)
    cv2.imwrite(str(root / "valid" / "clip" / "frame.png"), image)
    cv2.imwrite(str(root / "valid" / "photo" / "blank.png"), np.full_like(image, 128))

    def record(image, objects, ignore=()):
        return {
            "image": f"valid/{image}",
            "source": f"valid/{image.replace('.png', '')}",
            "objects": [label(r).to_dict() for r in objects],
            "ignore": [label(r).to_dict() for r in ignore],
        }

    records = [
        record("clip/frame.png", [WOMAN, MAN, SPECK]),
        record("clip/frame.png", [WOMAN], ignore=[MAN]),
        record("clip/frame.png", [WOMAN]),
        record("photo/blank.png", [WOMAN]),
    ]
    index = {"classes": ["face"], "records": records}
    (root / "finder_valid.json").write_text(json.dumps(index))
    sources = {
        "clip": {"path": "media/two_people.gif", "split": "valid"},
        "photo": {"path": "media/blank.jpg", "split": "valid"},
    }
    (root / "sources_face-finder.json").write_text(json.dumps(sources))
    return root


def test_haar_is_scored_as_a_network_would_be(labelled):
    from training.finder.data import FinderDataset
    from training.finder.evaluate import score_finder

    dataset = FinderDataset(labelled, split="valid")
    haar = create_finder("haar", subject="face")
    assert len(haar.find(dataset.load(0).image)) == 2  # Haar finds both faces in the frame
    result = score_finder(haar, dataset, min_height=0.1, iou=0.5, by_crop=True)
    v = result.values()
    # 5 counted faces (the speck is not one), 4 found; 5 finds: 4 right, 1 false (frame 3),
    # and the one on the ignored man (frame 2) neither.
    assert (v["frames"], v["labels"], v["matched"], v["false"], v["ignored"]) == (4, 5, 4, 1, 1)
    assert v["recall"] == pytest.approx(0.8) and v["precision"] == pytest.approx(0.8)
    # The frame with both faces is the only one with several: both found, nothing false.
    assert v["several_frames"] == 1
    assert v["several/recall"] == 1.0 and v["several/precision"] == 1.0
    # Haar's crops sit near the labels' (its window is about brow to chin).
    assert v["crop_centre_error"] < 0.1 and v["crop_size_error"] < 0.2
    assert v["crop_rotation_error_deg"] == 0.0
    # Matched on the landmark crops instead, the same finds give the same counts here.
    c = result.by_crop.values()
    assert (c["labels"], c["matched"], c["false"]) == (5, 4, 1)
    # One set at a time: the clip's three frames, then the blank photo.
    clip = score_finder(haar, dataset, min_height=0.1, indices=[0, 1, 2]).values()
    assert (clip["recall"], clip["precision"]) == (1.0, pytest.approx(0.8))
    photo = score_finder(haar, dataset, min_height=0.1, indices=[3]).values()
    assert photo["recall"] == 0.0 and np.isnan(photo["precision"])  # no finds at all


def test_a_finder_of_the_other_subject_is_refused(labelled):
    from edge.errors import ModelError
    from training.finder.data import FinderDataset
    from training.finder.evaluate import score_finder

    person = create_finder(
        str(REPO / "tests" / "fixtures" / "person_finder_float.tflite"), subject="person"
    )
    with pytest.raises(ModelError, match="finds people; the dataset's labels are face"):
        score_finder(person, FinderDataset(labelled, split="valid"))


def _bench(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.finder_accuracy", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_benchmark_writes_one_table_per_set(labelled, tmp_path):
    if not (teacher_dir() / "face_detection_short_range.tflite").is_file():
        pytest.skip(f"no face_detection_short_range.tflite in the teacher cache {teacher_dir()}")
    out = tmp_path / "faces.md"
    done = _bench("face", "--data", labelled, "--finder", "none", "--output", out)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "blazeface is the labeller's own first stage" in text
    assert "IoU >= 0.5" in text and "0.1 of the frame's height" in text
    rows = [line.split(" | ") for line in text.splitlines() if "| haar |" in line]
    # set, frames, counted, recall, precision, found / missed / false
    assert [(r[0], r[2], r[3], r[4], r[5], r[6]) for r in rows] == [
        ("| clips", "3", "4", "100.0", "80.0", "4 / 0 / 1"),
        ("| photos", "1", "1", "0.0", "-", "0 / 1 / 0"),
        ("| **all**", "4", "5", "80.0", "80.0", "4 / 1 / 1"),
    ]
    result = json.loads(out.with_suffix(".json").read_text())
    assert [r["name"] for r in result["rows"]] == ["blazeface", "haar"]
    assert result["frames"] == {"clips": 3, "photos": 1, "all": 4}


def test_the_benchmark_fails_in_one_line(labelled, tmp_path):
    for args, words in (
        (["--finder", tmp_path / "missing.tflite"], "missing.tflite not found"),
        (["--finder", REPO / "edge" / "models" / "pose.tflite"], "needs a finder model"),
        (["--data", tmp_path], "no finder_valid.json"),
    ):
        done = _bench("face", "--data", labelled, *args)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
        assert words in done.stderr


def test_the_1bit_finder_scores_the_same_as_a_network_and_as_edge_live_runs_it(tmp_path):
    """One .tflite two ways: training.evaluate's batched predictor and decode, and the
    edge.finders wrapper edge.live runs (decoding every peak: the fixture is untrained)."""
    from dataclasses import replace

    from edge.finders import BinaryFinder
    from training.finder.data import FinderDataset
    from training.finder.evaluate import score_dataset, score_finder
    from training.predictor import load_predictor

    if not TWO_FACES.is_file():
        pytest.skip(f"shared media missing: {TWO_FACES} (see ../shared/media)")
    ok, image = cv2.VideoCapture(str(TWO_FACES)).read()
    cv2.imwrite(str(tmp_path / "frame.png"), image)
    cv2.imwrite(str(tmp_path / "small.png"), cv2.resize(image, (240, 135)))
    people = [label((40.0, 40.0, 175.0, 230.0)), label((250.0, 30.0, 195.0, 240.0))]
    records = [
        {"image": "frame.png", "objects": [p.to_dict() for p in people]},
        {"image": "small.png", "objects": []},
    ]
    index = {"classes": ["person"], "records": records}
    (tmp_path / "finder_valid.json").write_text(json.dumps(index))
    dataset = FinderDataset(tmp_path, split="valid")
    path = REPO / "tests" / "fixtures" / "person_finder_float.tflite"
    predictor = load_predictor(path, num_threads=1)
    codec = replace(predictor.metadata.finder_codec(), min_score=0.0)
    network = score_dataset(predictor, dataset, codec=codec, batch_size=2, by_crop=True)
    live = score_finder(BinaryFinder(path, min_score=0.0, num_threads=1), dataset, by_crop=True)
    a, b = network.values(), live.values()
    assert a["labels"] == b["labels"] == 2
    assert a["matched"] + a["false"] + a["ignored"] == 2 * codec.top_k  # every peak decoded
    for key in ("matched", "false", "ignored", "several_frames"):
        assert a[key] == b[key], key
    assert network.by_crop.values()["false"] == live.by_crop.values()["false"]
