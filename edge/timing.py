"""Per-stage latency bookkeeping for the live loop and the benchmark."""

from __future__ import annotations

import time

import numpy as np

# Samples per stage kept for the percentiles: the last 2 minutes or so at 30 FPS. Counts,
# totals and means cover every frame. A service runs for months: nothing here grows.
WINDOW = 4096


class StageStats:
    """One stage's durations (seconds): count and total over every sample, and the last
    ``window`` samples in a fixed ring buffer for percentiles."""

    __slots__ = ("count", "total", "_ring", "_next")

    def __init__(self, window: int = WINDOW) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.count = 0
        self.total = 0.0
        self._ring = np.zeros(int(window), np.float64)
        self._next = 0

    def add(self, seconds: float) -> None:
        self._ring[self._next] = seconds
        self._next = (self._next + 1) % len(self._ring)
        self.count += 1
        self.total += seconds

    def recent(self) -> np.ndarray:
        """The samples in the window, oldest first (a copy)."""
        if self.count <= len(self._ring):
            return self._ring[: self.count].copy()
        return np.concatenate((self._ring[self._next :], self._ring[: self._next]))

    def __len__(self) -> int:
        return min(self.count, len(self._ring))


class StageTimes:
    """Durations (seconds) per named stage, one sample per frame, in bounded memory:
    percentiles over the last ``window`` frames, means and counts over all of them.

    >>> times = StageTimes()
    >>> with times.stage("inference"):
    ...     model.predict_heatmaps(crops)
    """

    def __init__(self, window: int = WINDOW) -> None:
        self.window = int(window)
        self.stats: dict[str, StageStats] = {}
        self.current: dict[str, float] = {}  # this frame's stages, since new_frame()

    def __contains__(self, name: str) -> bool:
        return name in self.stats

    def new_frame(self) -> None:
        self.current = {}

    def add(self, name: str, seconds: float) -> None:
        seconds = float(seconds)
        stats = self.stats.get(name)
        if stats is None:
            stats = self.stats[name] = StageStats(self.window)
        stats.add(seconds)
        self.current[name] = seconds

    def stage(self, name: str) -> _Stage:
        return _Stage(self, name)

    def recent(self, name: str) -> np.ndarray:
        """The stage's samples in the window (seconds, oldest first); empty if it never ran."""
        stats = self.stats.get(name)
        return stats.recent() if stats is not None else np.zeros(0)

    def count(self, name: str) -> int:
        stats = self.stats.get(name)
        return stats.count if stats is not None else 0

    def percentiles(self, name: str, qs=(50, 90)) -> list[float]:
        """Milliseconds at the given percentiles of the last ``window`` samples (NaN when the
        stage never ran)."""
        values = self.recent(name)
        if not len(values):
            return [float("nan")] * len(qs)
        return [float(v) * 1e3 for v in np.percentile(values, qs)]

    def mean_ms(self, name: str) -> float:
        """Mean over every sample, in milliseconds."""
        stats = self.stats.get(name)
        return stats.total / stats.count * 1e3 if stats is not None else float("nan")

    def summary(self, stages: list[str] | None = None) -> dict[str, dict[str, float]]:
        names = stages or list(self.stats)
        out = {}
        for name in names:
            p50, p90 = self.percentiles(name)
            out[name] = {
                "p50_ms": p50,
                "p90_ms": p90,
                "mean_ms": self.mean_ms(name),
                "count": self.count(name),
            }
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
            self._interval = (
                dt
                if self._interval is None
                else (self.smoothing * self._interval + (1 - self.smoothing) * dt)
            )
        self._last = now
        return self.fps

    @property
    def fps(self) -> float:
        return 0.0 if not self._interval else 1.0 / self._interval
