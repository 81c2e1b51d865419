"""The bundled demo models (edge/models/*.tflite, made by examples/train_demo.py).

What a user relies on: the files are there, small, bitpacked, labelled with the right
skeleton, runnable by ``edge.LandmarkModel``, and as accurate as
``benchmarks/results/demo_models.md`` says.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.metadata import custom_op_names, read_metadata
from edge.model import LandmarkModel
from edge.skeletons import get_skeleton

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "edge" / "models"
REPORT = REPO / "benchmarks" / "results" / "demo_models.json"
EXPECTED = {
    # task: (skeleton, dataset, landmarks)
    "pose": ("mpii16", "synthetic-pose", 16),
    "face": ("ibug68", "synthetic-face", 68),
}


def _report(task: str) -> dict:
    return json.loads(REPORT.read_text())[task]


def _val_options(task: str) -> dict:
    """The reader options of the demo config's validation split (what the report scored)."""
    from training.config import load_config

    data = load_config(REPO / _report(task)["config"]).dataset
    return {**data.options, **data.val_options, "size": _report(task)["eval_samples"]}


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_bundled_model_is_small_bitpacked_and_labelled(task):
    path = MODELS / f"{task}.tflite"
    assert path.is_file(), f"{path} is missing: run python examples/train_demo.py"
    data = path.read_bytes()
    assert len(data) < 2_000_000
    meta = read_metadata(data)
    skeleton, _, k = EXPECTED[task]
    assert meta.task == task
    assert meta.skeleton == skeleton
    assert meta.num_landmarks == k
    assert meta.weights_format == "lce"
    assert meta.landmarks == get_skeleton(skeleton).landmarks
    ops = custom_op_names(data)
    assert "LceBconv2d" in ops and "LceQuantize" in ops
    # The committed report describes this very file.
    assert _report(task)["tflite_bytes"] == len(data)


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_landmark_model_finds_the_landmarks_of_validation_samples(task):
    """LandmarkModel (default backend) on real-size frames: most points land near the truth."""
    from training.data.base import open_dataset

    skeleton, dataset_name, k = EXPECTED[task]
    report = _report(task)
    model = LandmarkModel(MODELS / f"{task}.tflite")
    dataset = open_dataset(dataset_name, None, split="val", **{**_val_options(task), "size": 12})
    errors = []
    for i in range(len(dataset)):
        sample = dataset.load(i)
        result = model.predict(sample.image, sample.box)  # readers give BGR, like OpenCV
        assert result.points.shape == (k, 2) and result.names == get_skeleton(skeleton).landmarks
        assert np.all(np.isfinite(result.points))
        err = np.linalg.norm(result.points - sample.points, axis=1)
        norm = sample.head_size if task == "pose" else np.linalg.norm(
            sample.points[36] - sample.points[45])  # fmt: skip
        scored = sample.visible.copy()
        scored[list(get_skeleton(skeleton).excluded_from_mean)] = False  # pelvis, thorax
        errors.append(err[scored] / norm)
    errors = np.concatenate(errors)
    if task == "pose":
        # PCKh@0.5 on a dozen frames; the report's 500-sample figure minus a wide margin.
        pckh = 100 * np.mean(errors <= 0.5)
        assert pckh > report["tflite"]["pckh@0.5"] - 20
    else:
        nme = 100 * np.mean(errors)
        assert nme < report["tflite"]["nme"] + 3


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_training_evaluate_reproduces_the_reported_number(task):
    """training.evaluate's code path on the reported validation set gives the reported score."""
    from training.data.base import open_dataset
    from training.evaluate import PROTOCOLS, load_predictor, predict_dataset, score

    _, dataset_name, _ = EXPECTED[task]
    report = _report(task)
    predictor = load_predictor(MODELS / f"{task}.tflite")
    dataset = open_dataset(dataset_name, None, split="val", **_val_options(task))
    result = score(predict_dataset(predictor, dataset), PROTOCOLS[dataset_name],
                   dataset.skeleton)  # fmt: skip
    key = result.headline
    # Same data, weights and decoding; only the runtime may differ from the report's.
    tolerance = 0.5 if key == "nme" else 1.0
    assert abs(result.values[key] - report["tflite"][key]) < tolerance
