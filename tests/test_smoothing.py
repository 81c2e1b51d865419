"""One Euro filter: the maths against hand-computed values, and what it does to real motion."""

from __future__ import annotations

import numpy as np
import pytest

from edge.smoothing import OneEuroFilter, smoothing_factor


def test_smoothing_factor_by_hand():
    # tau = 1 / (2 pi * 1 Hz) = 0.159155; alpha = 1 / (1 + 0.159155 / 0.1) = 0.385870
    assert smoothing_factor(1.0, 0.1) == pytest.approx(0.3858695, abs=1e-6)
    assert smoothing_factor(1e9, 0.1) == pytest.approx(1.0, abs=1e-6)


def test_one_euro_steps_by_hand():
    f = OneEuroFilter(min_cutoff=1.0, beta=1.0, d_cutoff=1.0)
    pts = lambda v: np.array([[v, -v]])  # noqa: E731
    np.testing.assert_allclose(f(pts(0.0), 0.0, scale=2.0), pts(0.0))  # first sample passes
    # t=0.1, x=1: speed (1-0)/0.1/2 = 5 object sizes/s; dx_hat = 0.385870 * 5 = 1.929348;
    # cutoff = 1 + 1.929348 = 2.929348 Hz; alpha = 1 / (1 + 1/(2 pi 2.929348) / 0.1) = 0.647957
    np.testing.assert_allclose(f(pts(1.0), 0.1, scale=2.0), pts(0.647957), atol=1e-6)
    # t=0.2, x=1 again: speed 0; dx_hat = (1 - 0.385870) * 1.929348 = 1.184871;
    # cutoff 2.184871 -> alpha 0.578556; x_hat = 0.578556 + 0.421444 * 0.647957 = 0.851634
    np.testing.assert_allclose(f(pts(1.0), 0.2, scale=2.0), pts(0.851634), atol=1e-6)


def test_speed_is_measured_in_object_sizes():
    # The same motion seen twice as large (and twice as far in pixels) is smoothed the same.
    small, large = OneEuroFilter(), OneEuroFilter()
    rng = np.random.default_rng(0)
    path = np.cumsum(rng.normal(0, 1, (50, 3, 2)), axis=0)
    for i, p in enumerate(path):
        out_small = small(p, i / 30, scale=100.0)
        out_large = large(2 * p, i / 30, scale=200.0)
    np.testing.assert_allclose(out_large, 2 * out_small, rtol=1e-9)


def _jitter_and_step(seed: int = 0, fps: float = 30.0):
    """A still landmark with 2 px noise for 2 s, then a 100 px jump (a fast move)."""
    rng = np.random.default_rng(seed)
    n = int(3 * fps)
    truth = np.where(np.arange(n) < 2 * fps, 100.0, 200.0)
    truth = np.stack([truth, np.full(n, 50.0)], axis=1)[:, None, :]  # (n, 1, 2)
    noisy = truth + rng.normal(0, 2.0, truth.shape)
    return truth, noisy, np.arange(n) / fps


def _run(f: OneEuroFilter, noisy, stamps, scale: float) -> np.ndarray:
    return np.stack([f(p, t, scale=scale) for p, t in zip(noisy, stamps, strict=True)])


def test_removes_jitter_at_rest_and_follows_a_fast_step():
    truth, noisy, stamps = _jitter_and_step()
    scale = 400.0  # a person filling a 640x480 frame
    out = _run(OneEuroFilter(), noisy, stamps, scale)  # MediaPipe's 0.05 / 80 / 1.0
    still = slice(20, 60)  # after settling, before the step
    raw_jitter = np.std(np.diff(noisy[still, 0, 0]))
    assert np.std(np.diff(out[still, 0, 0])) < raw_jitter / 2.5
    rms = lambda a: np.sqrt(np.mean((a[still, 0, 0] - 100.0) ** 2))  # noqa: E731
    assert rms(out) < 0.75 * rms(noisy)
    # The 100 px jump (a quarter of the object per frame) is followed at once, not smeared.
    step = 60
    assert np.abs(out[step + 1 : step + 6, 0, 0] - 200.0).max() < 5.0, out[step : step + 6]
    # A lower beta trades lag for more smoothing; beta 0 is a plain low-pass that lags badly.
    calm = _run(OneEuroFilter(beta=20.0), noisy, stamps, scale)
    assert np.std(np.diff(calm[still, 0, 0])) < raw_jitter / 6
    assert abs(calm[step + 2, 0, 0] - 200.0) < 5.0
    lowpass = _run(OneEuroFilter(beta=0.0), noisy, stamps, scale)
    assert abs(lowpass[step + 5, 0, 0] - 200.0) > 90.0


def test_low_confidence_landmarks_are_held_or_hidden():
    f = OneEuroFilter(min_score=0.5)
    p0 = np.array([[10.0, 10.0], [20.0, 20.0]])
    f(p0, 0.0, scores=np.array([0.9, 0.9]))
    moved = np.array([[80.0, 80.0], [21.0, 20.0]])
    out = f(moved, 0.1, scores=np.array([0.1, 0.9]))
    np.testing.assert_allclose(out[0], [10.0, 10.0])  # held, not smeared toward 80
    assert out[1, 0] > 20.0
    hidden = OneEuroFilter(min_score=0.5, hide=True)
    hidden(p0, 0.0, scores=np.array([0.9, 0.9]))
    out = hidden(moved, 0.1, scores=np.array([0.1, 0.9]))
    assert np.isnan(out[0]).all() and np.isfinite(out[1]).all()
    # A landmark never yet confident has nothing to hold: the raw guess passes through.
    fresh = OneEuroFilter(min_score=0.5)
    np.testing.assert_allclose(fresh(moved, 0.0, scores=np.array([0.1, 0.9])), moved)


def test_reappearing_landmark_uses_its_own_elapsed_time():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0, min_score=0.5)
    f(np.array([[0.0, 0.0]]), 0.0, scores=np.array([1.0]))
    f(np.array([[5.0, 5.0]]), 0.1, scores=np.array([0.0]))  # unsure: held at 0
    out = f(np.array([[1.0, 1.0]]), 1.0, scores=np.array([1.0]))
    # dt = 1.0 s since its last update, not 0.9 s: alpha = 1 / (1 + 0.159155) = 0.862697
    np.testing.assert_allclose(out, [[0.862697, 0.862697]], atol=1e-6)


def test_reset_and_bad_parameters():
    f = OneEuroFilter()
    f(np.zeros((2, 2)), 0.0)
    f.reset()
    np.testing.assert_allclose(f(np.ones((2, 2)) * 7, 0.1), 7.0)  # starts afresh
    with pytest.raises(ValueError):
        OneEuroFilter(min_cutoff=0.0)
