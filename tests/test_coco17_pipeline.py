"""COCO-17 end to end, as a user trains the bundled pose model's format on their own footage:
teacher labels -> training -> bitpacked conversion -> ``edge.live``, whose JSONL names the
COCO-17 landmarks. Every step is the project's real command-line tool on real frames (OpenCV's
sample photos and a clip panned across one); the network is tiny and trains for a few steps,
so the test checks the plumbing and the names, not accuracy."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from edge_fixtures import run_python_module
from opencv_samples import MESSI, SAMPLES, needs_messi

from edge.skeletons import COCO17
from training.label.teacher_models import TeacherUnavailable

REPO = Path(__file__).resolve().parents[1]
BASKETBALL = SAMPLES / "basketball1.png"


# Each CLI in a fresh interpreter from the repository root; labelling runs the teacher.
_run = functools.partial(run_python_module, timeout=900)


@pytest.fixture(scope="module")
def teacher_available():
    from training.label.pose import BlazePoseTeacher

    try:
        BlazePoseTeacher()
    except TeacherUnavailable as exc:
        pytest.skip(f"pose teacher models unavailable: {exc}")


@needs_messi
def test_coco17_from_labels_to_live_jsonl_names(teacher_available, tmp_path):
    # A short real clip (the photo panned a few pixels a frame) held out, two photos to train.
    image = cv2.imread(str(MESSI))
    clip = tmp_path / "pan.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (500, 342))
    for i in range(8):
        writer.write(np.ascontiguousarray(image[:, 5 * i : 5 * i + 500]))
    writer.release()
    split = tmp_path / "split.yaml"
    split.write_text("valid:\n  pose: [pan]\n")
    data = tmp_path / "labels"
    done = _run(
        "training.label",
        "pose",
        str(clip),
        str(MESSI),
        str(BASKETBALL),
        "--out",
        str(data),
        "--split",
        str(split),
        "--every",
        "2",
    )
    assert done.returncode == 0, done.stderr
    annotations = data / "annotations"

    run = tmp_path / "run"
    done = _run(
        "training.train",
        "--config",
        str(REPO / "configs" / "pose_v2_96.yaml"),
        "--out",
        str(run),
        f"dataset.path={annotations / 'person_keypoints_train.json'}",
        f"dataset.options={{images: {data / 'images'}}}",
        f"dataset.val_path={annotations / 'person_keypoints_valid.json'}",
        # the recipe's drawn figures (COCO-17 limbs), fewer; its other mix entries need data/
        "dataset.mix=[{name: synthetic-pose, options: {size: 16, image_size: 64, skeleton: coco17}}]",
        "model.depth=1",
        "model.features=32",
        "input_size=64",
        "batch_size=4",
        "epochs=1",
        "steps_per_epoch=3",
        "--verbose",
        "2",
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    sidecar = json.loads((run / "model.landmarks.json").read_text())
    assert sidecar["skeleton"] == "coco17" and tuple(sidecar["landmarks"]) == COCO17.landmarks

    model = tmp_path / "pose_coco.tflite"
    done = _run("converters.convert", str(run / "model.keras"), "-o", str(model), "--format", "lce")
    assert done.returncode == 0, done.stderr[-2000:]

    jsonl = tmp_path / "out.jsonl"
    done = _run(
        "edge.live",
        "--model",
        str(model),
        "--source",
        str(clip),
        "--jsonl",
        str(jsonl),
        "--threads",
        "1",
        "--no-smoothing",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 8  # one per frame of the clip
    for record in records:
        names = [point["name"] for point in record["landmarks"]]
        assert names == list(COCO17.landmarks)
