"""Per-stage latency bookkeeping for the live loop and the benchmark."""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np


class StageTimes:
    """Durations (seconds) per named stage, one sample per frame.

    >>> times = StageTimes()
    >>> with times.stage("inference"):
    ...     model.predict_heatmaps(crops)
    """

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.current: dict[str, float] = {}  # this frame's stages, since new_frame()

    def new_frame(self) -> None:
        self.current = {}

    def add(self, name: str, seconds: float) -> None:
        self.samples[name].append(float(seconds))
        self.current[name] = float(seconds)

    def stage(self, name: str) -> _Stage:
        return _Stage(self, name)

    def percentiles(self, name: str, qs=(50, 90)) -> list[float]:
        """Milliseconds at the given percentiles (NaN when the stage never ran)."""
        values = self.samples.get(name)
        if not values:
            return [float("nan")] * len(qs)
        return [float(v) * 1e3 for v in np.percentile(values, qs)]

    def mean_ms(self, name: str) -> float:
        values = self.samples.get(name)
        return float(np.mean(values)) * 1e3 if values else float("nan")

    def summary(self, stages: list[str] | None = None) -> dict[str, dict[str, float]]:
        names = stages or list(self.samples)
        out = {}
        for name in names:
            p50, p90 = self.percentiles(name)
            out[name] = {"p50_ms": p50, "p90_ms": p90, "mean_ms": self.mean_ms(name),
                         "count": len(self.samples.get(name, []))}  # fmt: skip
        return out

    def table(self, stages: list[str] | None = None) -> str:
        rows = self.summary(stages)
        width = max([len(n) for n in rows] + [5])
        lines = [f"  {'stage':<{width}}  {'p50 ms':>8}  {'p90 ms':>8}"]
        for name, r in rows.items():
            lines.append(f"  {name:<{width}}  {r['p50_ms']:8.2f}  {r['p90_ms']:8.2f}")
        return "\n".join(lines)


class _Stage:
    def __init__(self, times: StageTimes, name: str) -> None:
        self.times, self.name = times, name

    def __enter__(self) -> _Stage:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.times.add(self.name, time.perf_counter() - self.start)


class RateMeter:
    """Frames per second as an exponential moving average of frame intervals."""

    def __init__(self, smoothing: float = 0.9) -> None:
        self.smoothing = smoothing
        self._last: float | None = None
        self._interval: float | None = None

    def tick(self, now: float | None = None) -> float:
        now = time.perf_counter() if now is None else now
        if self._last is not None:
            dt = max(now - self._last, 1e-9)
            self._interval = dt if self._interval is None else (
                self.smoothing * self._interval + (1 - self.smoothing) * dt
            )  # fmt: skip
        self._last = now
        return self.fps

    @property
    def fps(self) -> float:
        return 0.0 if not self._interval else 1.0 / self._interval
