"""The bundled demo models (edge/models/*.tflite, made by examples/train_demo.py).

What a user relies on: the files are there, small, bitpacked, labelled with the right
skeleton, runnable by ``edge.LandmarkModel``, and as accurate as
``benchmarks/results/demo_models.md`` says, both on the synthetic validation set (no data
needed) and on the real held-out clips against the teacher's labels (needs data/real_* or
the media folder, neither of which is committed).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.metadata import custom_op_names, read_metadata
from edge.model import LandmarkModel
from edge.skeletons import get_skeleton

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "edge" / "models"
REPORT = REPO / "benchmarks" / "results" / "demo_models.json"
MEDIA = REPO.parent / "shared" / "media"  # examples/train_demo.py's default --media
EXPECTED = {
    # task: (skeleton, landmarks)
    "pose": ("mpii16", 16),
    "face": ("ibug68", 68),
}


def _entry(task: str) -> dict:
    return json.loads(REPORT.read_text())[task]


def _report(task: str) -> dict:
    report = _entry(task)
    assert "real" in report and "synthetic" in report, (
        f"{REPORT.name} predates the models trained on real footage (no 'real' / "
        "'synthetic' sections): run python examples/train_demo.py"
    )
    return report


def _open(section: dict, data: str | Path | None = None, **options):
    """The dataset a report section ("real" or "synthetic") was scored on."""
    from training.data.base import open_dataset

    options = {**section.get("options", {}), **options}
    return open_dataset(section["dataset"], data, split=section["split"], **options)


def _reproduce(task: str, section: dict, dataset) -> None:
    """training.evaluate's code path on ``dataset`` gives every number ``section`` reports
    for the .tflite (same data, weights and decoding; only the runtime may differ)."""
    from training.landmarks.evaluate import predict_dataset
    from training.predictor import load_predictor
    from training.scoring import PROTOCOLS, score

    predictor = load_predictor(MODELS / f"{task}.tflite", num_threads=1)
    preds = predict_dataset(predictor, dataset, limit=section.get("limit"), threads=1)
    reported = section["tflite"]
    assert len(preds.points) == reported.get("samples", reported.get("images"))
    for protocol in section.get("protocols") or [PROTOCOLS[section["dataset"]]]:
        result = score(preds, protocol, dataset.skeleton)
        # Every number the report has (scores added since, e.g. nme_inner, are not in it).
        compared = [k for k in result.values if k in reported and k not in ("samples", "images")]
        assert result.headline in compared, (result.headline, sorted(reported))
        for key in compared:
            value = result.values[key]
            tolerance = 0.5 if key == "nme" else 1.0
            assert abs(value - reported[key]) < tolerance, (protocol, key, value, reported[key])


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_bundled_model_is_small_bitpacked_and_labelled(task):
    path = MODELS / f"{task}.tflite"
    assert path.is_file(), f"{path} is missing: run python examples/train_demo.py"
    data = path.read_bytes()
    assert len(data) <= 1_500_000
    meta = read_metadata(data)
    skeleton, k = EXPECTED[task]
    assert meta.task == task
    assert meta.skeleton == skeleton
    assert meta.num_landmarks == k
    assert meta.weights_format == "lce"
    assert meta.landmarks == get_skeleton(skeleton).landmarks
    ops = custom_op_names(data)
    assert "LceBconv2d" in ops and "LceQuantize" in ops
    # The committed report describes this very file.
    assert _entry(task)["tflite_bytes"] == len(data)


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_landmark_model_finds_the_landmarks_of_validation_samples(task):
    """LandmarkModel (default backend, the device's predict path) on whole frames of the
    reported synthetic set gives the reported score: the device path and training.evaluate
    agree. (The face model, trained on real faces only, is weak on drawn faces: NME ~21.)"""
    skeleton, k = EXPECTED[task]
    synthetic = _report(task)["synthetic"]
    model = LandmarkModel(MODELS / f"{task}.tflite", num_threads=1)
    dataset = _open(synthetic)
    errors = []
    for i in range(len(dataset)):
        sample = dataset.load(i)
        result = model.predict(sample.image, sample.box)  # readers give BGR, like OpenCV
        assert result.points.shape == (k, 2) and result.names == get_skeleton(skeleton).landmarks
        assert np.all(np.isfinite(result.points))
        err = np.linalg.norm(result.points - sample.points, axis=1)
        norm = (
            sample.head_size
            if task == "pose"
            else np.linalg.norm(sample.points[36] - sample.points[45])
        )
        scored = sample.visible.copy()
        scored[list(get_skeleton(skeleton).excluded_from_mean)] = False  # pelvis, thorax
        errors.append(err[scored] / norm)
    errors = np.concatenate(errors)
    if task == "pose":
        pckh = 100 * np.mean(errors <= 0.5)
        assert abs(pckh - synthetic["tflite"]["pckh@0.5"]) < 1.0
    else:
        nme = 100 * np.mean(errors)
        assert abs(nme - synthetic["tflite"]["nme"]) < 0.5


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_training_evaluate_reproduces_the_reported_synthetic_number(task):
    """training.evaluate's code path on the reported synthetic set gives the reported score."""
    synthetic = _report(task)["synthetic"]
    _reproduce(task, synthetic, _open(synthetic))


def _label_command(report: dict) -> tuple[list[str], str]:
    """The report's ``training.label`` arguments past its sources, less ``--out``, and
    the ``--out`` it wrote to."""
    args = shlex.split(report["labels"]["command"])
    args = args[args.index("training.label") + 1 :]
    first = next(i for i, a in enumerate(args) if a.startswith("--"))
    options, out = args[first:], None
    if "--out" in options:
        at = options.index("--out")
        out = options[at + 1]
        del options[at : at + 2]
    return options, out


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_training_evaluate_reproduces_the_real_held_out_number(task):
    """The real held-out number (against the teacher) from the labels in data/real_*."""
    report = _report(task)
    real = report["real"]
    data = REPO / real["data"]
    _, out = _label_command(report)
    summary = REPO / out / f"summary_{task}.json"
    if not data.exists() or not summary.is_file():
        pytest.skip(
            f"{real['data']} is not here (teacher labels of the media, never committed): "
            f"make it with {report['labels']['command']}"
        )
    held_out = json.loads(summary.read_text())["records"]["valid"]
    if held_out != report["labels"]["records"]["valid"]:
        pytest.skip(
            f"{out} holds {held_out} held-out records, the report "
            f"{report['labels']['records']['valid']}: it was labelled differently; "
            f"relabel with {report['labels']['command']}"
        )
    _reproduce(task, real, _open(real, data))


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_real_held_out_number_reproduces_from_the_media(task, tmp_path):
    """Labelling the held-out clips of ../shared/media again, with the report's command,
    gives the labels that the real number was measured on (minutes: runs the teacher)."""
    from training.label.sources import expand
    from training.label.teacher_models import MEMBERS, TeacherUnavailable, teacher_model

    report = _report(task)
    real = report["real"]
    stems = set(report["labels"]["valid_sources"])
    clips = [p for p in expand([str(MEDIA)]) if p.stem in stems]
    if not MEDIA.is_dir() or len(clips) != len(stems):
        pytest.skip(
            f"the media folder {MEDIA} (never committed) with the report's "
            f"{len(stems)} held-out clips is not here"
        )
    try:
        for name in MEMBERS:
            teacher_model(name)
    except TeacherUnavailable as exc:
        pytest.skip(f"teacher models unavailable: {exc}")
    options, out = _label_command(report)
    if task == "face" and "--labels-version" not in options:
        # Made before face labels had versions: with the plain mesh table (version 1).
        options += ["--labels-version", "1"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.label",
            task,
            *map(str, clips),
            *options,
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / f"summary_{task}.json").read_text())
    assert summary["records"]["valid"] == report["labels"]["records"]["valid"]
    data = tmp_path / os.path.relpath(real["data"], out)
    _reproduce(task, real, _open(real, data))
