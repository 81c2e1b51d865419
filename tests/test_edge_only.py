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
import shutil
import subprocess
import venv
from pathlib import Path

import numpy as np
import pytest
from tiny_models import tiny_pose_tflite

from edge import cache_dir

REPO = Path(__file__).resolve().parents[1]
CACHE = cache_dir()

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


def _run(python: Path, *args: str, cwd: Path, **env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "CC")}
    env.update(env_extra)
    return subprocess.run(
        [str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


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
    proc = _run(
        edge_python,
        "-m",
        "edge.live",
        "--model",
        str(model),
        "--source",
        str(image_path),
        "--no-display",
        "--jsonl",
        str(out),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 1


def test_a_checkout_that_shadows_the_install_finds_or_builds_the_native_library(
    edge_python, tmp_path
):
    """The README's first command: ``pip install .`` then ``python -m edge.live`` from the
    clone's root, where ``edge/`` shadows the installed package and holds no library."""
    clone = tmp_path / "clone"
    shutil.copytree(
        REPO / "edge", clone / "edge", ignore=shutil.ignore_patterns("*.so", "__pycache__")
    )
    live = (
        "-m",
        "edge.live",
        "--source",
        "demo",
        "--no-display",
        "--max-frames",
        "2",
        "--threads",
        "1",
        "--quiet",
    )

    def run(cache: str, **env: str) -> subprocess.CompletedProcess:
        return _run(edge_python, *live, cwd=clone, XDG_CACHE_HOME=str(tmp_path / cache), **env)

    # The same sources as the install: its library, nothing built.
    proc = run("cache-a")
    assert proc.returncode == 0, proc.stderr
    assert "binland:" not in proc.stderr and not (tmp_path / "cache-a").exists()
    # Sources edited since the install: built once into the user cache, with one line.
    with open(clone / "edge" / "native" / "bgemm.c", "a") as f:
        f.write("/* edited after the install */\n")
    first, second = run("cache-b"), run("cache-b")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    says = [line for line in first.stderr.splitlines() if line.startswith("binland:")]
    assert len(says) == 1 and "building the native library" in says[0]
    assert len(list((tmp_path / "cache-b" / "binland" / "native").glob("*.so"))) == 1
    assert "binland:" not in second.stderr
    # No compiler: one line that says what to install, exit 2, no traceback.
    proc = run("cache-c", CC=str(tmp_path / "no-such-compiler"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "sudo apt install gcc" in errors[0]
