"""`edge` must install and work with only the `edge` extra: no TensorFlow, no larq.

The test keeps a virtual environment with the edge extra's dependencies in a cache folder
(outside the clone), reinstalls this checkout into it without dependencies, and runs the
public API and the live CLI from a folder outside the repository, so nothing leaks in from
the development environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import venv
from pathlib import Path

import numpy as np
import pytest
from tiny_models import tiny_pose_tflite

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "binland"

pytestmark = pytest.mark.slow


def _edge_venv() -> Path:
    key = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:12]
    env_dir = CACHE / f"edge-only-{key}"
    python = env_dir / "bin" / "python"
    if not (env_dir / ".deps-ok").is_file():
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
        subprocess.run([python, "-m", "pip", "install", "-q", f"{REPO}[edge]"], check=True)
        (env_dir / ".deps-ok").write_text("ok")
    # Always test this checkout's code, not what the cache held.
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(REPO)],
        check=True,
    )
    return python


@pytest.fixture(scope="module")
def edge_python() -> Path:
    return _edge_venv()


def _run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_edge_imports_and_predicts_without_tensorflow(edge_python, tmp_path):
    model = tiny_pose_tflite(tmp_path / "models")
    image = (np.random.default_rng(0).random((120, 160, 3)) * 255).astype(np.uint8)
    np.save(tmp_path / "frame.npy", image)
    code = f"""
import importlib.util, json, sys
import numpy as np
import edge
assert importlib.util.find_spec("tensorflow") is None, "tensorflow is installed"
assert importlib.util.find_spec("larq") is None, "larq is installed"
m = edge.LandmarkModel({str(model)!r})
r = m.predict(np.load({str(tmp_path / "frame.npy")!r}))
print(json.dumps({{"file": edge.__file__, "n": len(r), "shape": list(r.points.shape),
                  "backend": m.backend_name, "tf": "tensorflow" in sys.modules}}))
"""
    proc = _run(edge_python, "-c", code, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert str(REPO) not in out["file"], "edge was imported from the checkout, not the install"
    assert out["n"] == 16 and out["shape"] == [16, 2] and not out["tf"]


def test_live_cli_runs_in_the_edge_only_environment(edge_python, tmp_path):
    model = tiny_pose_tflite(tmp_path / "models")
    import cv2

    image_path = tmp_path / "frame.png"
    cv2.imwrite(str(image_path), np.full((96, 128, 3), 127, np.uint8))
    out = tmp_path / "out.jsonl"
    proc = _run(edge_python, "-m", "edge.live", "--model", str(model), "--source", str(image_path),
                "--no-display", "--jsonl", str(out), cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 1
