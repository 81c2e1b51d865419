"""``python -m edge.bench`` on a real converted model: every number present and consistent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import tiny_landmark_tflite

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def pose_model(tmp_path_factory) -> Path:
    return tiny_landmark_tflite(tmp_path_factory.getbasetemp() / "models", "mpii16")


def bench(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "edge.bench", *map(str, args)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_bench_json_reports_every_backend_and_thread_count(pose_model):
    from edge.backends import BACKENDS

    proc = bench(
        "--model",
        pose_model,
        "--threads",
        "1,2",
        "--frames",
        "20",
        "--warmup",
        "2",
        "--overhead-frames",
        "100",
        "--people",
        "1,2",
        "--people-frames",
        "8",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["model_size_mb"] == pytest.approx(pose_model.stat().st_size / 1e6)
    assert report["weights_format"] == "float" and report["input_size"] == [64, 64]
    installed = [name for name, cls in BACKENDS.items() if cls.is_available()]
    rows = report["inference"]
    assert [(r["backend"], r["threads"]) for r in rows] == [
        (b, t) for b in installed for t in (1, 2)
    ]
    for r in rows:
        assert "error" not in r, r
        assert 0 < r["p50_ms"] <= r["p90_ms"]
        assert r["fps"] == pytest.approx(1e3 / r["mean_ms"])
        assert 20 < r["peak_rss_mb"] < 2000  # a real process's memory, in MB
    overhead = report["overhead"]
    assert set(overhead["stages_mean_ms"]) == {"crop", "decode", "tracking", "smoothing", "drawing"}
    assert overhead["size"] == [640, 480] and overhead["target_ms"] == 3.0
    # Every stage ran and was timed; whether the total meets the 3 ms target is for
    # python -m benchmarks.speed on a quiet machine (a shared CI machine's other jobs count too).
    assert all(v > 0 for v in overhead["stages_mean_ms"].values()), overhead
    assert 0 < overhead["total_p50_ms"] <= overhead["total_p90_ms"]
    assert overhead["total_cpu_p50_ms"] > 0
    # Following 1 and 2 people: each tracked, the second costing a second inference.
    people = report["people"]
    assert [r["people"] for r in people["rows"]] == [1, 2]
    assert [r["tracked_mean"] for r in people["rows"]] == [1.0, 2.0]
    for r in people["rows"]:
        assert r["inference_mean_ms"] > 0 and r["total_p50_ms"] > 0 and r["cpu_p50_ms"] > 0
    # The finder edge.live would run for several people: MediaPipe's where the teacher cache
    # has it, else the bundled 1-bit finder; with it, the model's threads.
    assert people["threads"] == 2
    finder = people["finder"]
    assert finder["name"] in ("blazepose", "binary")
    assert finder.get("p50_ms", 0) > 0, finder


def test_bench_table_and_errors(pose_model, tmp_path):
    def short_run(frames: int, people_frames: int, *extra) -> subprocess.CompletedProcess:
        """edge.bench on one backend and thread, no overhead run, one person."""
        return bench(
            *("--model", pose_model, "--backends", "tflite", "--threads", "1"),
            *("--frames", frames, "--overhead-frames", "0"),
            *("--people", "1", "--people-frames", people_frames),
            *extra,
        )

    proc = short_run(5, 5)
    assert proc.returncode == 0, proc.stderr
    assert "p50 ms" in proc.stdout and "tflite" in proc.stdout
    assert "per-frame work" not in proc.stdout
    assert "several people (edge.live --max-people N)" in proc.stdout
    assert "2 threads" in proc.stdout
    assert "finder blazepose (" in proc.stdout or "finder binary (" in proc.stdout
    # Our bundled 1-bit finder, named: it is what the people benchmark times.
    ours = short_run(
        3,
        4,
        *("--people-threads", "1", "--person-finder", REPO / "edge/models/person_finder.tflite"),
    )
    assert ours.returncode == 0, ours.stderr
    assert "1 thread, real inference" in ours.stdout
    assert f"finder binary ({REPO / 'edge/models/person_finder.tflite'}): p50 " in ours.stdout
    bad = bench("--model", tmp_path / "missing.tflite")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"error: model file not found: {tmp_path}/missing.tflite"
    ]
    bad = bench("--model", pose_model, "--backends", "cuda")
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown backend 'cuda'")
    # Each count of a list has edge.live's bounds (issue 25: --threads 64 ran 64 threads here).
    for args, message in (
        (["--threads", "1,100000"], "argument --threads: must be at most"),
        (["--threads", "0"], "argument --threads: must be at least 1"),
        (["--people", "1,17"], "argument --people: must be at most 16"),
    ):
        bad = bench("--model", pose_model, *args)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
        assert bad.stderr.startswith("error: " + message), bad.stderr
