"""python -m benchmarks.held_out: bad choices and missing labels are one line and exit 2 (the
scoring itself is training.evaluate's, tested in test_evaluate_baselines.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.held_out", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_unknown_tasks_and_missing_labels_are_one_line(tmp_path):
    done = _run("--tasks", "hands")
    assert done.returncode == 2 and done.stderr.startswith("error: --tasks hands")
    assert done.stderr.count("\n") == 1
    done = _run("--tasks", "pose", "--pose", str(tmp_path / "missing.tflite"))
    assert done.returncode == 2 and done.stderr.startswith("error: ")
    assert done.stderr.count("\n") == 1 and "missing.tflite" in done.stderr


def _metrics(key: str, model: float, mean_shape: float, groups: dict) -> dict:
    """The part of training.evaluate's metrics.json that benchmarks.held_out reads."""
    count = "samples" if key == "pck@0.2" else "images"
    return {
        "values": {key: model, count: 10},
        "baseline": {"values": {key: mean_shape}},
        "groups": {
            name: {"samples": 5, "model": {key: m}, "mean_shape": {key: b}}
            for name, (m, b) in groups.items()
        },
    }


@pytest.mark.tensorflow  # matplotlib comes with the train extra
def test_the_plot_puts_each_score_beside_its_mean_shape_and_the_issues_bar(tmp_path):
    import cv2

    from benchmarks.held_out import plot_bars, plot_results

    results = {
        "pose clips": _metrics(
            "pck@0.2", 77.5, 45.6, {"yoga": (70.3, 39.6), "dance": (65.7, 27.2)}
        ),
        "face photos": _metrics("nme", 9.24, 21.95, {"turned": (18.41, 39.81)}),
    }
    bars = plot_bars(results)
    assert [(b["task"], b["name"]) for b in bars] == [
        ("pose", "pose clips"),
        ("pose", "- dance"),  # groups in name order, under their set
        ("pose", "- yoga"),
        ("face", "face photos"),
        ("face", "- turned"),
    ]
    assert [b["bar"] for b in bars[:3]] == [75.0, 60.0, 60.0]  # overall, then per group
    assert bars[2]["model"] == 70.3 and bars[2]["mean_shape"] == 39.6
    # Faces: at most half the mean face's NME in the same crops.
    assert bars[3]["bar"] == 0.5 * 21.95 and bars[4]["bar"] == 0.5 * 39.81
    picture = plot_results(results, tmp_path / "plots" / "held_out.png", "test, valid side")
    image = cv2.imread(str(picture))
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 600
