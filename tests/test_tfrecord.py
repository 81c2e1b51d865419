"""Sharded TFRecord export and its reader: exact round trip, TensorFlow's own reader agrees,
damaged records are skipped and counted, and the training pipeline reads it per worker."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import training  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow loads
from training.data import (
    CorruptSample,
    DatasetError,
    LandmarkDataset,
    Sample,
    iter_samples,
    open_dataset,
)
from training.data.tfrecord import INDEX, export, shard_name

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def source():
    return open_dataset("synthetic-face", split="train", size=7, seed=0, image_size=64)


@pytest.fixture(scope="module")
def exported(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("tfr")
    export(source, out, shards=3, image_format="png", source="synthetic-face test")
    return out


def test_round_trip_is_exact_and_shards_are_even(source, exported):
    index = json.loads((exported / INDEX).read_text())
    assert index["records"] == 7 and [s["records"] for s in index["shards"]] == [3, 2, 2]
    ds = open_dataset("tfrecord", exported)
    assert len(ds) == 7 and ds.skeleton.name == source.skeleton.name
    # Record i went to shard i % 3: the reader lists shard 0's records first.
    order = [i for s in range(3) for i in range(s, 7, 3)]
    for j, i in enumerate(order):
        a, b = source.load(i), ds.load(j)
        np.testing.assert_array_equal(a.image, b.image)  # png: exact pixels
        np.testing.assert_array_equal(a.points, b.points)
        np.testing.assert_array_equal(a.visible, b.visible)
        assert a.box.center == pytest.approx(b.box.center) and a.box.size == pytest.approx(
            b.box.size
        )
        assert a.id == b.id and a.head_size == b.head_size


class _Scored(LandmarkDataset):
    """``source``'s records, the even ones with teacher scores (as the label tool's)."""

    def __init__(self, source: LandmarkDataset) -> None:
        self.source, self.skeleton = source, source.skeleton

    def __len__(self) -> int:
        return 4

    def load(self, index: int) -> Sample:
        s = self.source.load(index)
        scores = np.linspace(0.0, 1.0, len(s.points)) if index % 2 == 0 else None
        return dataclasses.replace(s, scores=scores)


def test_teacher_scores_survive_the_export(source, tmp_path):
    scored = _Scored(source)
    export(scored, tmp_path, shards=1, image_format="png")
    ds = open_dataset("tfrecord", tmp_path)
    for i in range(4):
        a, b = scored.load(i), ds.load(i)
        if a.scores is None:
            assert b.scores is None
        else:
            np.testing.assert_array_equal(a.scores, b.scores)
    assert ds.bad_scores.count == 0


def test_tensorflows_own_reader_reads_the_same_records(exported):
    import tensorflow as tf

    files = sorted(str(p) for p in exported.glob("*.tfrecord"))
    spec = {"points": tf.io.VarLenFeature(tf.float32), "id": tf.io.FixedLenFeature([], tf.string)}
    ours = open_dataset("tfrecord", exported)
    records = list(tf.data.TFRecordDataset(files))  # checks TFRecord's CRC-32C on every record
    assert len(records) == len(ours)
    for j, raw in enumerate(records):
        parsed = tf.io.parse_single_example(raw, spec)
        sample = ours.load(j)
        assert parsed["id"].numpy().decode() == sample.id
        np.testing.assert_array_equal(
            tf.sparse.to_dense(parsed["points"]).numpy(), sample.points.ravel()
        )


def test_damaged_records_are_skipped_and_counted(exported, tmp_path):
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for p in exported.iterdir():
        (damaged / p.name).write_bytes(p.read_bytes())
    first = damaged / shard_name(0, 3)
    data = bytearray(first.read_bytes())
    # Inside record 0's PNG bytes, wherever the Example's other features put them.
    data[data.index(b"\x89PNG") + 100] ^= 0xFF
    first.write_bytes(bytes(data))
    last = damaged / shard_name(2, 3)
    last.write_bytes(last.read_bytes()[:-10])  # its last record is cut short

    ds = open_dataset("tfrecord", damaged)
    assert len(ds) == 6 and ds.skipped.count == 1  # the truncated record is not offered
    with pytest.raises(CorruptSample, match="damaged|not a landmark Example|does not decode"):
        ds.load(0)
    assert len(list(iter_samples(ds))) == 5 and ds.skipped.count == 2
    with pytest.raises(DatasetError, match="no index.json"):
        open_dataset("tfrecord", tmp_path)


def test_workers_read_disjoint_shares_through_the_training_pipeline(exported):
    from edge.codec import HeatmapCodec
    from training.data.augment import AugmentConfig, Normalisation
    from training.data.pipeline import training_dataset

    ds = open_dataset("tfrecord", exported)
    codec = HeatmapCodec((32, 32), (8, 8), sigma=1.5)
    seen = []
    for worker in range(2):
        data = training_dataset(
            ds,
            codec=codec,
            normalise=Normalisation(),
            augment=AugmentConfig(enabled=False),
            batch_size=1,
            num_stacks=1,
            deterministic=True,
            shard=(worker, 2),
        )
        seen.append({float(images.numpy().sum()) for images, _ in data.take(3)})
    assert seen[0] and seen[1] and not seen[0] & seen[1]  # no record read by both


def test_cli_exports_and_explains_errors(tmp_path):
    out = tmp_path / "cli"
    cmd = [
        sys.executable,
        "-m",
        "training.data.tfrecord",
        "synthetic-pose",
        "--option",
        "size=4",
        "--option",
        "image_size=64",
        "--out",
        str(out),
        "--shards",
        "2",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 4 records in 2 shards" in proc.stdout
    assert len(open_dataset("tfrecord", out)) == 4
    bad = subprocess.run(
        [*cmd[:3], "nosuchset", "--out", str(tmp_path / "x")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: ")
