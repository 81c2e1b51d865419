"""Evaluation: a .keras model and its converted .tflite scored through the same code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import training  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow loads
from edge.skeletons import MPII16
from training.scoring import Predictions, score

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    return dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        TF_USE_LEGACY_KERAS="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="",
    )


def _cli(*argv: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_pckh_score_counts_hits_by_head_size():
    gt = np.zeros((2, 16, 2))
    pred = gt.copy()
    pred[0, :8, 0] = 4.0  # image 0: head size 10, errors of 4 are hits (<= 5)
    pred[1, :8, 0] = 6.0  # image 1: head size 10, errors of 6 are misses
    visible = np.ones((2, 16), bool)
    p = Predictions(pred, np.ones((2, 16)), gt, visible, np.array([10.0, 10.0]), np.ones(2))
    result = score(p, "pckh", MPII16)
    # Joints 0-7 miss in image 1 only; pelvis (6) and thorax (7) are left out of the total.
    assert result.per_joint["right_ankle"] == 50.0 and result.per_joint["head_top"] == 100.0
    assert result.values["pckh@0.5"] == pytest.approx(100 * (14 + 8) / 28)
    assert result.curve_y[-1] == pytest.approx(result.values["pckh@0.5"])


def test_nme_score_is_in_percent_of_the_outer_eye_corner_distance():
    from edge.skeletons import IBUG68

    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 200, (3, 68, 2))
    gt[:, 36], gt[:, 45] = (50.0, 100.0), (150.0, 100.0)  # outer eye corners 100 px apart
    pred = gt + np.array([3.0, 4.0])  # every point 5 px off: NME 5 %
    pred[2] = gt[2] + np.array([0.0, 10.0])  # one face 10 px off: a failure at 0.08
    p = Predictions(
        pred, np.ones((3, 68)), gt, np.ones((3, 68), bool), np.full(3, np.nan), np.ones(3)
    )
    result = score(p, "nme", IBUG68)
    assert result.values["nme"] == pytest.approx((5 + 5 + 10) / 3)
    assert result.values["fr@0.08"] == pytest.approx(100 / 3)
    assert result.values["auc@0.08"] == pytest.approx(100 * (0.03 + 0.03 + 0) / 3 / 0.08)
    assert result.per_joint == {} and result.curve_y[-1] == pytest.approx(200 / 3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny model trained for 2 epochs, then converted to a bitpacked .tflite."""
    run = tmp_path_factory.mktemp("eval") / "run"
    proc = _cli(
        "training.train",
        "--config",
        str(ROOT / "configs" / "synthetic_pose.yaml"),
        "--out",
        str(run),
        "--verbose",
        "0",
        "epochs=2",
        "steps_per_epoch=20",
        "model.depth=1",
        "model.features=32",
        "batch_size=8",
        "dataset.options.image_size=64",
        "dataset.val_options.size=8",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = _cli("converters.convert", str(run / "model.keras"), "-o", str(run / "model.tflite"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run


def _evaluate(model: Path, out: Path) -> dict:
    proc = _cli(
        "training.evaluate",
        "--model",
        str(model),
        "--dataset",
        "synthetic-pose",
        "--option",
        "size=24",
        "--option",
        "image_size=64",
        "--flip-test",
        "--backend",
        "lce",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pckh@0.5" in proc.stdout and "right_ankle" in proc.stdout
    assert (out / "curve.png").stat().st_size > 1000
    return json.loads((out / "metrics.json").read_text())


def test_keras_and_tflite_go_through_the_same_evaluation(trained, tmp_path):
    keras = _evaluate(trained / "model.keras", tmp_path / "keras")
    lite = _evaluate(trained / "model.tflite", tmp_path / "tflite")
    assert keras["runtime"] == "keras" and "LCE interpreter" in lite["runtime"]
    assert keras["values"]["samples"] == lite["values"]["samples"] == 24
    # LCE's conversion is exact up to float rounding, so the scores agree closely.
    assert abs(keras["values"]["pckh@0.5"] - lite["values"]["pckh@0.5"]) <= 2.0
    assert keras["per_joint"].keys() == lite["per_joint"].keys()


class _DotDataset:
    """Images with one bright Gaussian dot at a sub-pixel spot; every landmark is on the dot."""

    skeleton = MPII16

    def __init__(self, spots):
        from training.data.base import SkipCounter

        self.spots = spots
        self.skipped = SkipCounter("dots")

    def __len__(self):
        return len(self.spots)

    def load(self, i):
        from edge.transform import CropBox
        from training.data.base import Sample

        x, y = self.spots[i]
        yy, xx = np.mgrid[0:120, 0:160]
        dot = 255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 3.0**2))
        image = np.repeat(dot[..., None], 3, axis=-1).astype(np.uint8)
        points = np.tile([x, y], (16, 1))
        # An off-centre box: the crop is not symmetric about the dot.
        return Sample(image, points, np.ones(16, bool), CropBox((70.3, 58.6), 96.0), 10.0, str(i))


class _DotFinder:
    """A perfect 'model' for those images: Gaussian heatmaps on the dot's brightness centroid,
    for whatever crop it is given, mirrored or not."""

    from edge.metadata import LandmarkMetadata

    metadata = LandmarkMetadata.for_skeleton(
        "mpii16", input_size=(64, 64), heatmap_size=(16, 16), refine="dark"
    )
    del LandmarkMetadata

    def heatmaps(self, batch):
        codec = self.metadata.codec()
        out = []
        for crop in batch:
            w = crop.sum(axis=-1)
            w = np.where(w > 0.2 * w.max(), w, 0.0)
            ys, xs = np.mgrid[0 : w.shape[0], 0 : w.shape[1]]
            centre = [(xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()]
            out.append(codec.encode(np.tile(centre, (16, 1)))[0])
        return np.stack(out)


def test_flip_test_mirrors_heatmaps_back_onto_the_crop():
    """With a perfect model, flip test must land on the same sub-pixel spot as the plain
    prediction: mirroring the heatmaps back one pixel (or one cell) off would shift it."""
    from training.landmarks.evaluate import predict_dataset

    data = _DotDataset([(60.3, 50.7), (81.8, 64.2), (47.5, 39.9)])
    plain = predict_dataset(_DotFinder(), data, batch_size=3, threads=1)
    flipped = predict_dataset(_DotFinder(), data, batch_size=3, flip_test=True, threads=1)
    crop_px = 96.0 / 64  # image pixels per crop pixel
    np.testing.assert_allclose(plain.points, plain.gt, atol=0.15 * crop_px)
    np.testing.assert_allclose(flipped.points, plain.gt, atol=0.15 * crop_px)


def test_evaluate_cli_errors_are_one_line(tmp_path):
    proc = _cli(
        "training.evaluate", "--model", str(tmp_path / "nope.keras"), "--dataset", "synthetic-pose"
    )
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: model file not found")
    proc = _cli(
        "training.evaluate",
        "--model",
        str(tmp_path / "m.tflite"),
        "--dataset",
        "mpii",
        "--data",
        str(tmp_path / "no_such_dir"),
    )
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in proc.stderr


def test_face_protocols_are_picked_per_dataset():
    from training.landmarks.evaluate import DEFAULT_SPLITS
    from training.scoring import PROTOCOLS

    assert PROTOCOLS["aflw2000-3d"] == PROTOCOLS["300w-lp"] == PROTOCOLS["aflw"] == "nme_box"
    assert PROTOCOLS["pifa"] == "nme_visible" and PROTOCOLS["300w"] == "nme"
    assert DEFAULT_SPLITS["aflw2000-3d"] == "test" and DEFAULT_SPLITS["pifa"] == "test"


def test_box_nme_score_reports_yaw_bins_and_visible_only_nme():
    from edge.skeletons import IBUG68

    # Three faces, each a 100 x 100 box (sqrt(w h) = 100); every point 3 px off on two
    # faces, 6 px on the third; yaws in three bins.
    gt = np.zeros((3, 68, 2))
    gt[:, :, 0] = np.linspace(0, 100, 68)
    gt[:, :, 1] = np.linspace(0, 100, 68)[::-1]
    pred = gt + np.array([0.0, 3.0])
    pred[2] = gt[2] + np.array([6.0, 0.0])
    occluded = np.zeros((3, 68), bool)
    occluded[2, :34] = True
    pred[2, :34] += 50.0  # hidden points far off: only the box protocol counts them
    p = Predictions(
        pred,
        np.ones((3, 68)),
        gt,
        np.ones((3, 68), bool),
        np.full(3, np.nan),
        np.ones(3),
        yaw=np.array([5.0, -40.0, 80.0]),
        occluded=occluded,
    )
    box = score(p, "nme_box", IBUG68)
    hidden = np.hypot(56.0, 50.0)
    third = (34 * hidden + 34 * 6.0) / 68
    assert box.headline == "nme" and box.values["images"] == 3
    assert box.values["nme"] == pytest.approx((3 + 3 + third) / 3)
    assert box.values["nme_yaw_0-30"] == pytest.approx(3.0)
    assert box.values["nme_yaw_30-60"] == pytest.approx(3.0)
    assert box.values["nme_yaw_60-90"] == pytest.approx(third)
    assert box.values["nme_balanced"] == pytest.approx((3 + 3 + third) / 3)
    assert box.values["fr@0.07"] == pytest.approx(100 / 3)
    visible = score(p, "nme_visible", IBUG68)
    assert visible.values["nme"] == pytest.approx((3 + 3 + 6) / 3)
    assert visible.values["nme_yaw_60-90"] == pytest.approx(6.0)
    assert visible.values["auc@0.07"] == pytest.approx(100 * (0.04 + 0.04 + 0.01) / 3 / 0.07)


def test_evaluate_cli_scores_aflw2000_3d_by_box_and_yaw(tmp_path):
    """The whole path on files in AFLW2000-3D's format: reader, crop, the committed tiny face
    model (untrained, so the numbers are large), box NME and the three yaw bins."""
    import cv2
    from edge_fixtures import FACE_FLOAT
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    for i, yaw in enumerate((10.0, -45.0, 70.0, 20.0)):
        cv2.imwrite(
            str(tmp_path / f"image{i:05d}.jpg"), rng.integers(0, 255, (120, 120, 3), dtype=np.uint8)
        )
        pts = np.vstack([rng.uniform(30, 90, (2, 68)), np.zeros((1, 68))])
        pose = [[0.0, np.radians(yaw), 0.0, 0.0, 0.0, 0.0, 1.0]]
        savemat(tmp_path / f"image{i:05d}.mat", {"pt3d_68": pts, "Pose_Para": pose})
    (tmp_path / "image00009.mat").write_text("broken")
    out = tmp_path / "eval"
    proc = _cli(
        "training.evaluate",
        "--model",
        str(FACE_FLOAT),
        "--dataset",
        "aflw2000-3d",
        "--data",
        str(tmp_path),
        "--out",
        str(out),
        "--pictures",
        "0",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "on aflw2000-3d/test" in proc.stdout and "1 corrupt skipped" in proc.stdout
    report = json.loads((out / "metrics.json").read_text())
    values = report["values"]
    assert report["protocol"] == "nme_box" and values["images"] == 4
    assert [values[f"images_yaw_{b}"] for b in ("0-30", "30-60", "60-90")] == [2, 1, 1]
    bins = [values[f"nme_yaw_{b}"] for b in ("0-30", "30-60", "60-90")]
    assert values["nme_balanced"] == pytest.approx(np.mean(bins))


def test_calibrate_tracking_records_the_models_lost_cut_and_edge_live_takes_it(tmp_path):
    """training.evaluate --calibrate-tracking records the 5th percentile of the model's mean
    landmark score on the scored crops in the .tflite; edge.live --lost-below auto (its
    default) loses the track by that cut, and a number given on the command line wins."""
    import shutil

    from edge_fixtures import POSE_FLOAT

    from edge.metadata import read_metadata, verify_digest
    from training.lost_cut import record_lost_cut

    model = tmp_path / "pose.tflite"
    shutil.copy(POSE_FLOAT, model)
    out = tmp_path / "eval"
    proc = _cli(
        "training.evaluate",
        *("--model", str(model), "--dataset", "synthetic-pose", "--split", "val"),
        *("--option", "size=24", "--out", str(out), "--pictures", "0"),
        *("--crop", "jitter", "--calibrate-tracking"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    measured = json.loads((out / "metrics.json").read_text())["tracking"]
    recorded = read_metadata(model).extra["tracking"]
    assert recorded == measured and measured["samples"] == 24 and measured["percentile"] == 5
    assert f"recorded the lost cut {measured['lost_below']:.3f} in {model}" in proc.stdout
    assert verify_digest(model) is not None  # the rewritten model still checks out
    size = model.stat().st_size
    record_lost_cut(model, measured)  # recording again replaces the old record's payload
    assert model.stat().st_size - size < 64  # (only the emptied buffers' slots remain)

    # Refused before any scoring: crops that are not the tracker's, or flip-test scores.
    for flags, words in (
        ((), "add --crop jitter"),
        (("--crop", "jitter", "--flip-test"), "drop --flip-test"),
    ):
        done = _cli(
            "training.evaluate",
            *("--model", str(model), "--dataset", "synthetic-pose", "--split", "val"),
            *("--option", "size=4", "--calibrate-tracking", *flags),
        )
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert words in done.stderr

    def tracking(*flags: str) -> list[bool]:
        log = tmp_path / f"live{len(list(tmp_path.glob('live*.jsonl')))}.jsonl"  # a new file
        done = _cli(
            "edge.live",
            *("--model", str(model), "--source", "demo", "--max-frames", "4"),
            *("--no-display", "--quiet", "--person-finder", "none", "--jsonl", str(log)),
            *flags,
        )
        assert done.returncode == 0, done.stderr
        return [json.loads(line)["tracking"] for line in log.read_text().splitlines()]

    record_lost_cut(model, {**measured, "lost_below": 1e9})  # nothing scores that high
    lost = tracking()
    assert lost and not any(lost)
    record_lost_cut(model, {**measured, "lost_below": -1e9})  # everything does
    assert tracking() == [True] * len(lost)
    assert tracking("--lost-below", "1e6") == lost  # the command line wins
