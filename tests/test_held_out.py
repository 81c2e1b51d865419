"""python -m benchmarks.held_out: bad choices and missing labels are one line and exit 2 (the
scoring itself is training.evaluate's, tested in test_evaluate_baselines.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
