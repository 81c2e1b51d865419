"""Metrics against cases worked out by hand."""

import numpy as np
import pytest

from edge.skeletons import IBUG68, LSP14, MPII16
from training import metrics


def _offset_points(
    k: int, offsets: dict[int, tuple[float, float]]
) -> tuple[np.ndarray, np.ndarray]:
    gt = np.stack([np.arange(k) * 10.0, np.full(k, 50.0)], axis=1)
    pred = gt.copy()
    for i, d in offsets.items():
        pred[i] += d
    return pred, gt


def test_pckh_threshold_is_half_head_size_inclusive():
    # head_size 10 -> threshold 5 px. Joint 0 off by exactly 5 (hit), joint 1 by 3-4-5.1 (miss).
    pred, gt = _offset_points(16, {0: (5.0, 0.0), 1: (3.06, 4.08), 10: (0.0, 6.0)})
    res = metrics.pckh(pred[None], gt[None], np.ones((1, 16), bool), [10.0], MPII16)
    assert res.per_joint[0] == 100.0
    assert res.per_joint[1] == 0.0  # |(3.06, 4.08)| = 5.1 > 5
    assert res.per_joint[10] == 0.0
    # 14 joints in the mean (pelvis, thorax excluded); 12 of them hit.
    assert res.total == pytest.approx(100 * 12 / 14)


def test_pckh_masks_invisible_and_excludes_pelvis_thorax():
    pred, gt = _offset_points(16, {3: (100.0, 0.0), 6: (100.0, 0.0), 7: (100.0, 0.0)})
    visible = np.ones((1, 16), bool)
    visible[0, 3] = False  # the miss on joint 3 is not scored
    res = metrics.pckh(pred[None], gt[None], visible, [10.0], MPII16)
    assert np.isnan(res.per_joint[3]) and res.counts[3] == 0
    assert res.per_joint[6] == 0.0 and res.per_joint[7] == 0.0
    assert res.total == 100.0  # pelvis and thorax misses do not enter the mean


def test_pckh_head_size_per_image():
    # The same 8 px error is a hit for a big head (threshold 10) and a miss for a small one (4).
    gt = np.zeros((2, 16, 2))
    pred = gt + np.array([8.0, 0.0])
    res = metrics.pckh(pred, gt, np.ones((2, 16), bool), [20.0, 8.0], MPII16)
    assert np.all(res.per_joint == 50.0)
    assert res.total == 50.0
    with pytest.raises(ValueError, match="head_size"):
        metrics.pckh(pred, gt, None, [20.0, 0.0], MPII16)


def test_pckh_meter_pools_batches_like_one_call():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, (6, 16, 2))
    pred = gt + rng.normal(0, 4, gt.shape)
    vis = rng.random((6, 16)) > 0.2
    hs = rng.uniform(5, 15, 6)
    meter = metrics.PCKhMeter(MPII16)
    meter.update(pred[:2], gt[:2], vis[:2], hs[:2])
    meter.update(pred[2:], gt[2:], vis[2:], hs[2:])
    whole = metrics.pckh(pred, gt, vis, hs, MPII16)
    assert meter.result().total == pytest.approx(whole.total)
    np.testing.assert_allclose(meter.result().per_joint, whole.per_joint)


def test_pck_torso_uses_right_hip_to_left_shoulder():
    gt = np.zeros((1, 14, 2))
    gt[0, LSP14.landmarks.index("right_hip")] = (0.0, 100.0)
    gt[0, LSP14.landmarks.index("left_shoulder")] = (30.0, 60.0)  # torso = 50
    assert metrics.torso_size(gt, LSP14)[0] == pytest.approx(50.0)
    pred = gt.copy()
    pred[0, 0] += (10.0, 0.0)  # at 0.2 * 50 = 10: a hit
    pred[0, 1] += (0.0, 10.5)  # a miss
    res = metrics.pck_torso(pred, gt, None, LSP14, alpha=0.2)
    assert res.per_joint[0] == 100.0 and res.per_joint[1] == 0.0
    assert res.total == pytest.approx(100 * 13 / 14)


def test_pck_box():
    gt = np.zeros((2, 3, 2))
    pred = gt + np.array([6.0, 0.0])
    res = metrics.pck_box(pred, gt, None, [100.0, 200.0], alpha=0.05)  # thresholds 5 and 10
    assert res.total == 50.0


def test_nme_normalises_by_outer_eye_corners_and_masks():
    gt = np.zeros((1, 68, 2))
    gt[0, 36] = (0.0, 0.0)
    gt[0, 45] = (40.0, 0.0)  # inter-ocular 40
    pred = gt.copy()
    pred[0, 10] += (0.0, 68 * 2.0)  # mean error over 68 points = 2 px
    assert metrics.nme(pred, gt, IBUG68)[0] == pytest.approx(2.0 / 40.0)
    vis = np.ones((1, 68), bool)
    vis[0, 10] = False
    assert metrics.nme(pred, gt, IBUG68, vis)[0] == 0.0


def test_auc_failure_rate_and_ced():
    errors = np.array([0.0, 0.02, 0.04, 0.1])
    auc, fr = metrics.auc_fr(errors, 0.08)
    # integral of CED up to 0.08 = sum(max(0, 0.08 - e)) / n = (0.08 + 0.06 + 0.04 + 0) / 4
    assert auc == pytest.approx((0.08 + 0.06 + 0.04) / 4 / 0.08)
    assert fr == 0.25
    xs, ys = metrics.ced(errors, 0.08, num=5)  # levels 0, .02, .04, .06, .08
    np.testing.assert_allclose(xs, [0, 0.02, 0.04, 0.06, 0.08])
    np.testing.assert_allclose(ys, [0.25, 0.5, 0.75, 0.75, 0.75])
    # A fine trapezoid integral of the CED agrees with the exact formula.
    fx, fy = metrics.ced(errors, 0.08, num=80001)
    assert np.sum((fy[1:] + fy[:-1]) / 2 * np.diff(fx)) / 0.08 == pytest.approx(auc, abs=1e-3)


def test_nme_meter():
    rng = np.random.default_rng(1)
    gt = rng.uniform(0, 100, (5, 68, 2))
    pred = gt + rng.normal(0, 1, gt.shape)
    meter = metrics.NMEMeter(IBUG68)
    meter.update(pred[:3], gt[:3])
    meter.update(pred[3:], gt[3:])
    out = meter.result()
    assert out["count"] == 5
    assert out["nme"] == pytest.approx(metrics.nme(pred, gt, IBUG68).mean())
    assert 0 <= out["auc"] <= 1 and 0 <= out["failure_rate"] <= 1


# ---------------------------------------------------- box-normalised NME, yaw bins, visible only


def test_box_nme_normalises_by_the_root_of_the_landmark_box_area():
    # Ground truth spans x 10..50 and y 20..30: box 40 x 10, sqrt(w h) = 20.
    gt = np.array([[[10.0, 20.0], [50.0, 20.0], [30.0, 30.0], [20.0, 25.0]]])
    assert metrics.box_size(gt)[0] == pytest.approx(20.0)
    pred = gt.copy()
    pred[0, 0] += (3.0, 4.0)  # 5 px
    pred[0, 2] += (0.0, 3.0)  # 3 px; mean over 4 points = 2 px -> 2 / 20
    assert metrics.nme_box(pred, gt)[0] == pytest.approx(0.1)
    # Masked points leave both the mean error and the box: without point 1 the box is
    # x 10..30 and y 20..30, sqrt(20 * 10), and the mean error is 8 / 3.
    vis = np.array([[True, False, True, True]])
    assert metrics.nme_box(pred, gt, vis)[0] == pytest.approx(8 / 3 / np.sqrt(200.0))
    # An image whose points lie on one line has no box area: NaN, not a division by zero.
    flat = np.array([[[0.0, 5.0], [10.0, 5.0], [4.0, 5.0], [7.0, 5.0]]])
    assert np.isnan(metrics.nme_box(flat + 1.0, flat)[0])


def test_nme_by_yaw_bins_and_their_balanced_mean():
    errors = np.array([0.01, 0.02, 0.03, 0.05, 0.04, 0.5, np.nan])
    yaw = np.array([10.0, -30.0, 45.0, -75.0, 95.0, np.nan, 20.0])
    # |yaw| bins [0, 30], (30, 60], above 60; a yaw of exactly 30 is in the first.
    np.testing.assert_array_equal(metrics.yaw_bin(yaw), [0, 0, 1, 2, 2, -1, 0])
    out = metrics.nme_by_yaw(errors, yaw)
    assert out["0-30"] == pytest.approx(0.015) and out["count_0-30"] == 2  # NaN error left out
    assert out["30-60"] == pytest.approx(0.03) and out["count_30-60"] == 1
    assert out["60-90"] == pytest.approx(0.045) and out["count_60-90"] == 2  # 95 counts as 60-90
    assert out["balanced"] == pytest.approx((0.015 + 0.03 + 0.045) / 3)
    assert np.isnan(metrics.nme_by_yaw(errors[:2], yaw[:2])["balanced"])  # empty bins


def test_visible_only_nme_keeps_the_box_of_every_annotated_point():
    # Four points, box 40 x 40 (sqrt 40); point 3 is hidden and badly placed.
    gt = np.array([[[0.0, 0.0], [40.0, 0.0], [0.0, 40.0], [40.0, 40.0]]])
    pred = gt + np.array([[[2.0, 0.0], [0.0, 4.0], [0.0, 0.0], [30.0, 0.0]]])
    annotated = np.ones((1, 4), bool)
    shown = np.array([[True, True, True, False]])
    # Mean over the three visible points: (2 + 4 + 0) / 3 = 2 px, by the 4-point box 40.
    assert metrics.nme_box(pred, gt, shown, norm_visible=annotated)[0] == pytest.approx(0.05)
    # Scoring every point would count the hidden one's 30 px: (2 + 4 + 0 + 30) / 4 / 40.
    assert metrics.nme_box(pred, gt, annotated)[0] == pytest.approx(0.225)
