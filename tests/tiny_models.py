"""Tiny real landmark .tflite files for the live-pipeline tests: the committed fixtures.

Untrained networks of the project's kind (64x64 input, 16x16 heatmaps), converted by the real
converter CLI (``--format float``), so each file carries the landmark metadata that
``edge.live`` reads, exactly like a trained model does.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tiny_landmark_tflite(folder: Path, skeleton: str = "mpii16") -> Path:
    """A tiny float model for ``skeleton`` in ``folder``: a copy of the committed fixture
    (tests/fixtures/, made by tests/make_fixtures.py), so no TensorFlow is needed."""
    import shutil

    from edge_fixtures import FACE_FLOAT, POSE_FLOAT

    fixtures = {"mpii16": POSE_FLOAT, "ibug68": FACE_FLOAT}
    if skeleton not in fixtures:
        raise ValueError(f"no committed fixture for {skeleton!r}; have {sorted(fixtures)}")
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"tiny_{skeleton}.tflite"
    if not out.is_file():
        shutil.copyfile(fixtures[skeleton], out)
    return out


def tiny_pose_tflite(folder: Path) -> Path:
    """The tiny MPII-16 pose model (see :func:`tiny_landmark_tflite`)."""
    return tiny_landmark_tflite(folder, "mpii16")
