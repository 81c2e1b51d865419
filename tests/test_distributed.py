"""Multi-worker training: two real worker processes on loopback, TF_CONFIG checks, sharding.

The workers are real ``python -m training.train --strategy multiworker`` processes on CPU,
each with its own TF_CONFIG, talking over gRPC on ports picked free at run time. Timeouts
are generous (minutes): on a busy 2-core machine the first epoch alone, which traces the
training step on both workers, takes about a minute.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import training  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow loads
from training.distribute import ClusterError, parse_tf_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "synthetic_pose.yaml"
TINY = [
    "model.depth=1",
    "model.features=32",
    "batch_size=4",  # the global batch: 2 per worker
    "dataset.options.image_size=64",
    "dataset.train_options.size=64",
    "dataset.val_options.size=8",
    "deterministic=true",
]
# The loss per epoch of 2 workers against 1, same global batch, same seed, on the float
# model in float64 (model.binary=false, precision=float64). The two runs differ only in
# rounding (fused BatchNorm on one device, synchronised BatchNorm over two, the gradient
# summed in two halves), and training amplifies that rounding from step to step by a factor
# that depends on the CPU: in float32 the curves differed by up to 8e-4 relative after 3
# epochs on an AVX-512 host and 7.4e-3 on an AVX2 host, an amplification of about 1e4-1e5
# over float32's 6e-8 epsilon. float64's epsilon is 1.1e-16, so the same amplification leaves
# ~1e-11; 1e-6 is far above that on any host and far below what the bound is for: a worker
# training on the other's records, or normalising by its own half batch only, changes the
# loss by percent. (A binary model turns rounding into sign flips, so it is not used here.)
LOSS_RTOL = 1e-6
# Seconds for one run of the workers; they take about 1.5 minutes here. An emulated CPU
# (.ci/avx2_qemu.sh) is several times slower and says by how much in BINLAND_TEST_SLOWDOWN.
TIMEOUT = 600 * float(os.environ.get("BINLAND_TEST_SLOWDOWN", "1"))


def _free_ports(n: int) -> list[int]:
    """Ports the kernel hands out now; kept open together so the n are distinct."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _env(tf_config: dict | None = None, **extra: str) -> dict:
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        TF_USE_LEGACY_KERAS="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="",
        **extra,
    )
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def _cmd(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "training.train",
        "--config",
        str(CONFIG),
        "--out",
        str(out),
        "--verbose",
        "2",
        *TINY,
        *extra,
    ]


class Cluster:
    """Two workers on loopback; worker 0 is the chief. Logs go to files (no pipe can fill)."""

    def __init__(self, tmp: Path, out: Path, *extra: str) -> None:
        addresses = [f"127.0.0.1:{p}" for p in _free_ports(2)]
        self.tmp, self.out, self.extra = tmp, out, extra
        self.configs = [
            {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}}
            for i in range(2)
        ]
        self.scratch = [tmp / f"tmp{i}" for i in range(2)]  # each worker's TMPDIR
        for d in self.scratch:
            d.mkdir(exist_ok=True)
        self.procs: list[subprocess.Popen | None] = [None, None]
        self.logs: list[Path] = [tmp / "w0.log", tmp / "w1.log"]
        self.starts = 0

    def start(self, i: int) -> None:
        """Start (or restart: the same command and TF_CONFIG) worker ``i``."""
        self.starts += 1
        self.logs[i] = self.tmp / f"w{i}.{self.starts}.log"
        with open(self.logs[i], "w") as log:
            self.procs[i] = subprocess.Popen(
                _cmd(self.out, *self.extra, "--strategy", "multiworker"),
                cwd=ROOT,
                env=_env(self.configs[i], TMPDIR=str(self.scratch[i])),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait(self, i: int, timeout: float = TIMEOUT) -> int:
        try:
            return self.procs[i].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"worker {i} still running after {timeout} s:\n{self.log(i)}")

    def log(self, i: int) -> str:
        return self.logs[i].read_text()

    def stop(self) -> None:
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture
def cluster_factory(tmp_path):
    made: list[Cluster] = []

    def make(out: Path, *extra: str) -> Cluster:
        made.append(Cluster(tmp_path, out, *extra))
        return made[-1]

    yield make
    for c in made:
        c.stop()


def _digest(line_source: str) -> str:
    lines = [t for t in line_source.splitlines() if "weights sha256 " in t]
    assert lines, line_source
    return lines[-1].split("weights sha256 ")[1].split()[0]


def _losses(run: Path) -> list[float]:
    lines = [json.loads(t) for t in (run / "history.jsonl").read_text().splitlines() if t]
    assert [d["epoch"] for d in lines] == list(range(1, len(lines) + 1))
    return [d["loss"] for d in lines]


def _saved_digest(model_path: Path) -> str:
    from training.artifacts import load_keras_model
    from training.fit import weights_digest

    return weights_digest(load_keras_model(model_path).get_weights())


@pytest.mark.slow
def test_two_workers_match_one_and_only_the_chief_writes(tmp_path, cluster_factory):
    float_model = ["model.binary=false", "precision=float64", "epochs=3", "steps_per_epoch=2"]
    multi = tmp_path / "multi"
    cluster = cluster_factory(multi, *float_model)
    cluster.start(0)
    cluster.start(1)
    codes = [cluster.wait(0), cluster.wait(1)]
    assert codes == [0, 0], cluster.log(0) + cluster.log(1)
    assert "2 replica(s) x 2" in cluster.log(0)

    # The chief alone wrote: the run folder holds the chief's files only, and the other
    # worker left nothing in its scratch folder (its collective saves went there).
    names = sorted(str(p.relative_to(multi)) for p in multi.rglob("*") if p.is_file())
    assert "model.keras" in names and "model.landmarks.json" in names
    assert not [n for n in names if "worker" in n or n.startswith("backup")], names
    assert list(cluster.scratch[1].rglob("*")) == []
    assert "the chief saves the model" in cluster.log(1) and "saved " not in cluster.log(1)

    # Equal final weights on both workers, and the saved model is those weights.
    assert (
        _digest(cluster.log(0)) == _digest(cluster.log(1)) == _saved_digest(multi / "model.keras")
    )

    single = tmp_path / "single"
    proc = subprocess.run(
        _cmd(single, *float_model),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 replica(s)" in proc.stdout
    ours, reference = _losses(multi), _losses(single)
    assert len(ours) == len(reference) == 3
    np.testing.assert_allclose(ours, reference, rtol=LOSS_RTOL)
    assert reference[-1] < 0.8 * reference[0]  # it trained: the curves are not both flat


@pytest.mark.slow
def test_a_killed_worker_restarts_and_training_completes_from_the_backup(tmp_path, cluster_factory):
    epochs, steps = 4, 6
    run = tmp_path / "run"
    cluster = cluster_factory(run, f"epochs={epochs}", f"steps_per_epoch={steps}")
    cluster.start(0)
    cluster.start(1)
    backup = run / "backup" / "chief" / "checkpoint"  # Keras's backup of a finished epoch
    deadline = time.time() + TIMEOUT
    while not backup.exists() and cluster.procs[0].poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert backup.exists(), cluster.log(0)
    cluster.procs[1].send_signal(signal.SIGKILL)  # no chance to clean up
    cluster.wait(1)
    assert json.loads((run / "state.json").read_text())["epoch"] < epochs, "finished too soon"

    # The chief notices the lost peer and stops with one line, as TF's guide expects: every
    # worker that stopped is restarted with its own command.
    code = cluster.wait(0)
    first_log = cluster.log(0)
    assert code == 2, first_log
    last = first_log.strip().splitlines()[-1]
    # (TensorFlow's error names the lost task, here worker 1, when it knows it.)
    assert last.startswith("error: lost contact with ") and "backup" in last, first_log
    assert "Traceback" not in first_log
    cluster.start(1)
    cluster.start(0)
    codes = [cluster.wait(0), cluster.wait(1)]
    assert codes == [0, 0], cluster.log(0) + cluster.log(1)

    log = cluster.log(0)
    assert "restarted: continuing from the backup" in log
    assert "Epoch 1/" not in log and f"Epoch {epochs}/{epochs}" in log  # from the backup on
    state = json.loads((run / "state.json").read_text())
    # The optimizer's step counter came back from the backup, so the schedule continued.
    assert state["epoch"] == epochs and state["optimizer_iterations"] == epochs * steps
    assert len(_losses(run)) == epochs
    assert not (run / "backup").exists()  # Keras drops the backup once training finished
    assert _digest(log) == _digest(cluster.log(1)) == _saved_digest(run / "model.keras")


def test_bad_tf_config_is_one_line_and_a_nonzero_exit(tmp_path):
    cases = [
        ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": ', "not valid JSON"),
        ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}}', 'no "task"'),
        (None, "needs TF_CONFIG"),
    ]
    for text, needle in cases:
        env = _env()
        if text is not None:
            env["TF_CONFIG"] = text
        proc = subprocess.run(
            _cmd(tmp_path / "r", "--strategy", "multiworker"),
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert lines[-1].startswith("error: ") and needle in lines[-1], proc.stderr
        assert "Traceback" not in proc.stderr
        assert not (tmp_path / "r").exists()  # nothing written


def test_tf_config_parsing():
    two = {"worker": ["h1:1", "h2:2"]}
    task = parse_tf_config(json.dumps({"cluster": two, "task": {"type": "worker", "index": 1}}))
    assert (task.type, task.index, task.num_workers, task.is_chief) == ("worker", 1, 2, False)
    assert parse_tf_config(
        json.dumps({"cluster": two, "task": {"type": "worker", "index": 0}})
    ).is_chief
    with_chief = {"chief": ["h0:1"], "worker": ["h1:1"]}
    assert not parse_tf_config(
        json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}})
    ).is_chief
    chief = parse_tf_config(
        json.dumps({"cluster": with_chief, "task": {"type": "chief", "index": 0}})
    )
    assert chief.is_chief and chief.num_workers == 2
    bad = [
        ("[1, 2]", "JSON object"),
        ('{"task": {"type": "worker", "index": 0}}', 'no "cluster"'),
        (json.dumps({"cluster": {"ps": ["h:1"]}, "task": {"type": "ps", "index": 0}}), "'ps' job"),
        (
            json.dumps({"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", "index": 0}}),
            "host:port",
        ),
        (json.dumps({"cluster": two, "task": {"type": "chief", "index": 0}}), "not a job"),
        (json.dumps({"cluster": two, "task": {"type": "worker", "index": 2}}), "index 2"),
        (json.dumps({"cluster": two, "task": {"type": "worker"}}), "index None"),
        ("", "needs TF_CONFIG"),
    ]
    for text, needle in bad:
        with pytest.raises(ClusterError, match=needle):
            parse_tf_config(text)


def test_worker_shards_together_make_the_global_batch():
    """Batch k of n per-worker pipelines holds the records and draws of global batch k."""
    from edge.codec import HeatmapCodec
    from training.data import DatasetError, open_dataset
    from training.data.augment import AugmentConfig, Normalisation
    from training.data.pipeline import training_dataset

    ds = open_dataset("synthetic-pose", split="train", size=12, seed=0, image_size=64)
    codec = HeatmapCodec((32, 32), (8, 8), sigma=1.5)

    def batches(shard, batch_size, n):
        data = training_dataset(
            ds,
            codec=codec,
            normalise=Normalisation(),
            augment=AugmentConfig(),
            batch_size=batch_size,
            num_stacks=1,
            seed=3,
            deterministic=True,
            shard=shard,
        )
        return [images.numpy() for images, _ in data.take(n)]

    whole = batches((0, 1), 4, 5)  # 5 batches of 4: crosses a pass over the 12 records
    parts = [batches((i, 2), 2, 5) for i in range(2)]
    for k in range(5):
        # Worker i holds positions i, i + 2, ... of the stream: interleave them back.
        merged = np.stack([parts[j % 2][k][j // 2] for j in range(4)])
        np.testing.assert_array_equal(merged, whole[k])
    with pytest.raises(DatasetError, match="input pipeline 2 of 2"):
        batches((2, 2), 2, 1)
