"""One Euro filter over all landmarks at once (Casiez, Roussel & Vogel, CHI 2012).

Each coordinate is low-pass filtered with a cutoff that rises with its speed: at rest the
cutoff is ``min_cutoff`` Hz and jitter is removed; when the point moves fast the cutoff
grows by ``beta`` per unit of speed and lag disappears. Per update, with ``dt`` the real
time since the last update::

    alpha(fc)   = 1 / (1 + 1 / (2 * pi * fc * dt))
    dx          = (x - x_prev) / dt / scale              # speed in object sizes per second
    dx_hat      = alpha(d_cutoff) * dx + (1 - alpha(d_cutoff)) * dx_hat_prev
    fc          = min_cutoff + beta * |dx_hat|
    x_hat       = alpha(fc) * x + (1 - alpha(fc)) * x_hat_prev

``x_prev`` is the previous *raw* value, as in the authors' reference code and MediaPipe.
Speed is measured in object-relative units (pixels divided by ``scale``, the crop size), so
one set of parameters behaves the same for a person near the camera and far from it; the
defaults (min_cutoff 0.05, beta 80, d_cutoff 1.0) are MediaPipe's tuned pose values in
those units. The positions themselves stay in pixels.

Landmarks whose score is below ``min_score`` are not fed to the filter: their last smoothed
position is *held* (or, with ``hide=True``, reported as NaN) instead of dragging the filter
toward an unreliable guess (a landmark never yet seen with confidence is passed through
raw, as there is nothing to hold). Each landmark keeps its own clock, so a point that reappears
after a gap is filtered with the true elapsed time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def smoothing_factor(cutoff: np.ndarray | float, dt: np.ndarray | float) -> np.ndarray:
    """alpha = 1 / (1 + tau / dt) with tau = 1 / (2 pi cutoff)."""
    tau = 1.0 / (2.0 * np.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / np.asarray(dt, dtype=np.float64))


@dataclass
class OneEuroFilter:
    """Smooths (K, 2) landmark arrays. Call :meth:`reset` when the subject is lost."""

    min_cutoff: float = 0.05
    beta: float = 80.0
    d_cutoff: float = 1.0
    min_score: float = 0.0
    hide: bool = False

    def __post_init__(self) -> None:
        if self.min_cutoff <= 0 or self.d_cutoff <= 0 or self.beta < 0:
            raise ValueError("min_cutoff and d_cutoff must be > 0 and beta >= 0")
        self.reset()

    def reset(self) -> None:
        self._raw: np.ndarray | None = None  # previous raw value (K, 2)
        self._smooth: np.ndarray | None = None  # previous filtered value (K, 2)
        self._speed: np.ndarray | None = None  # previous filtered speed (K, 2)
        self._time: np.ndarray | None = None  # timestamp of each landmark's last update (K,)
        self._seen: np.ndarray | None = None  # landmark has been updated at least once (K,)

    def __call__(
        self,
        points: np.ndarray,
        timestamp: float,
        *,
        scale: float = 1.0,
        scores: np.ndarray | None = None,
    ) -> np.ndarray:
        """Filtered copy of ``points`` (K, 2) observed at ``timestamp`` seconds.

        ``scale`` is the object's size in pixels (the crop box side). Returns float64 (K, 2);
        with ``hide=True`` rows of low-confidence landmarks are NaN.
        """
        x = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        k = len(x)
        if self._raw is None or len(self._raw) != k:
            self._raw = np.zeros((k, 2))
            self._smooth = np.full((k, 2), np.nan)
            self._speed = np.zeros((k, 2))
            self._time = np.zeros(k)
            self._seen = np.zeros(k, dtype=bool)
        valid = np.isfinite(x).all(axis=1)
        if scores is not None:
            valid &= np.asarray(scores, dtype=np.float64).reshape(k) >= self.min_score
        fresh = valid & ~self._seen
        dt = timestamp - self._time
        # A repeated or backwards timestamp gives no usable speed; treat it as a fresh start.
        update = valid & self._seen & (dt > 0)
        restart = fresh | (valid & self._seen & (dt <= 0))

        if update.any():
            dtu = dt[update][:, None]
            speed = (x[update] - self._raw[update]) / dtu / max(float(scale), 1e-9)
            a_d = smoothing_factor(self.d_cutoff, dtu)
            speed_hat = a_d * speed + (1 - a_d) * self._speed[update]
            cutoff = self.min_cutoff + self.beta * np.abs(speed_hat)
            a = smoothing_factor(cutoff, dtu)
            self._smooth[update] = a * x[update] + (1 - a) * self._smooth[update]
            self._speed[update] = speed_hat
        if restart.any():
            self._smooth[restart] = x[restart]
            self._speed[restart] = 0.0
        moved = update | restart
        self._raw[moved] = x[moved]
        self._time[moved] = timestamp
        self._seen |= moved

        out = self._smooth.copy()
        if self.hide:
            out[~valid] = np.nan
        else:
            # Nothing to hold yet: show the raw guess (drawn as unsure) rather than nothing.
            unseen = ~self._seen
            out[unseen] = x[unseen]
        return out
