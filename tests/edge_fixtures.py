"""The committed tiny .tflite fixtures (tests/fixtures/, made by tests/make_fixtures.py) and
TensorFlow-free helpers around them: what the edge tests use, so that they run with only
``pip install ".[edge,dev]"``, as on a Raspberry Pi."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
POSE_FLOAT = FIXTURES / "pose_float.tflite"  # MPII-16, stock TFLite ops
POSE_LCE = FIXTURES / "pose_lce.tflite"  # MPII-16, bitpacked LceBconv2d
FACE_FLOAT = FIXTURES / "face_float.tflite"  # iBUG-68, stock TFLite ops
# A finder (metadata task "finder", class person; untrained): what --person-finder PATH takes.
PERSON_FINDER = FIXTURES / "person_finder_float.tflite"
INPUT, HEATMAP, LANDMARKS = 64, 16, 16


def test_inputs(n: int = 8, seed: int = 1) -> np.ndarray:
    """Normalised inputs like the runtime feeds: synthetic RGB images scaled to [0, 1]."""
    from converters.fidelity import sample_images  # NumPy and OpenCV only

    return sample_images((INPUT, INPUT), n, seed).astype(np.float32) / 255.0


test_inputs.__test__ = False  # not a pytest test


def _run_python(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def run_python(code: str, *, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run Python code in a fresh interpreter (for runtimes that must not share a process)."""
    return _run_python(["-c", code], timeout)


def run_python_module(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` in a fresh interpreter, from the repository root."""
    return _run_python(["-m", module, *args], timeout)
