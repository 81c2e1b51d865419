"""Soak test: does ``edge.live`` keep its memory flat over a long run?

    python -m benchmarks.soak --minutes 5

Runs ``python -m edge.live --source demo --loop --no-display`` (the bundled pose model, the
looping demo clip, serving the MJPEG stream on loopback while a viewer comes and goes every
few seconds) for N minutes, and samples its resident memory (VmRSS in /proc/PID/status) and
the number of frames done. Frames are counted from the JSONL log, written into a pipe that
this script reads, so the count costs no disk and the JSONL writer runs as in a service.
After a warm-up it fits resident bytes against frames by least squares: the slope is the
memory kept per frame, which must be near zero for a service that runs for months (issue 10:
193 bytes a frame before the stage statistics were bounded). Prints a table and writes
benchmarks/results/soak.md, with the machine's load noted; exits 1 when the slope is over
--limit bytes per frame.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks import REPO, RESULTS_DIR, child_env
from edge import cpu_name

RESULTS = RESULTS_DIR / "soak.md"


def rss_bytes(pid: int) -> int | None:
    """Resident memory of a process from /proc (None once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


class LineCounter(threading.Thread):
    """Counts the lines written into a named pipe (one JSONL record per frame)."""

    def __init__(self, fifo: Path) -> None:
        super().__init__(name="jsonl-counter", daemon=True)
        self.fifo, self.lines = fifo, 0

    def run(self) -> None:
        with open(self.fifo, "rb", buffering=0) as f:  # waits for edge.live to open it
            while chunk := f.read(1 << 16):
                self.lines += chunk.count(b"\n")


class Viewer(threading.Thread):
    """A browser that comes and goes: every ``every`` seconds it opens the MJPEG stream,
    reads a few frames, hangs up, and fetches one snapshot."""

    def __init__(self, url: str, every: float) -> None:
        super().__init__(name="viewer", daemon=True)
        self.url, self.every = url.rstrip("/"), every
        self.visits = self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            try:
                with urllib.request.urlopen(f"{self.url}/stream.mjpg", timeout=10) as stream:
                    for _ in range(5):
                        stream.readline()  # boundary
                        headers = {}
                        while (line := stream.readline().strip()) != b"":
                            key, _, value = line.decode().partition(":")
                            headers[key.strip().lower()] = value.strip()
                        stream.read(int(headers["content-length"]) + 2)
                with urllib.request.urlopen(f"{self.url}/frame.jpg", timeout=10) as snap:
                    snap.read()
                self.visits += 1
            except (OSError, KeyError, ValueError):
                self.failures += 1


def fit_bytes_per_frame(samples: list[tuple[float, int, int]], warmup_s: float) -> float:
    """Least-squares slope of resident bytes against frames, over samples after warm-up."""
    after = [(frames, rss) for t, frames, rss in samples if t >= warmup_s]
    if len(after) < 3 or after[-1][0] == after[0][0]:
        raise SystemExit("error: too few samples after the warm-up; run for longer")
    frames, rss = np.array(after, dtype=np.float64).T
    slope, _ = np.polyfit(frames, rss, 1)
    return float(slope)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--minutes", type=float, default=5.0, help="how long to run (default 5)")
    p.add_argument(
        "--warmup",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds left out of the fit (default: a fifth of the run, at most 60)",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds between samples (default 10)",
    )
    p.add_argument("--model", default="pose", help="edge.live --model (default: bundled pose)")
    p.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    p.add_argument(
        "--no-serve",
        action="store_true",
        help="no MJPEG server and no viewer: only the JSONL output",
    )
    p.add_argument(
        "--viewer-every",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between a viewer's visits to the stream (default 5)",
    )
    p.add_argument(
        "--limit",
        type=float,
        default=16.0,
        help="bytes per frame above which the run fails (default 16)",
    )
    p.add_argument("--output", type=Path, default=RESULTS, help=f"report (default {RESULTS})")
    args = p.parse_args(argv)
    duration = args.minutes * 60
    warmup = args.warmup if args.warmup is not None else min(60.0, duration / 5)
    if duration <= warmup + 3 * args.interval:
        p.error("--minutes is too short for the warm-up and three samples")

    with tempfile.TemporaryDirectory(prefix="binland-soak-") as tmp:
        fifo = Path(tmp) / "frames.jsonl"
        os.mkfifo(fifo)
        counter = LineCounter(fifo)
        counter.start()
        command = [
            sys.executable,
            "-m",
            "edge.live",
            "--source",
            "demo",
            "--loop",
            "--no-display",
            "--model",
            args.model,
            "--threads",
            str(args.threads),
            "--jsonl",
            str(fifo),
        ]
        if not args.no_serve:
            command += ["--serve", "127.0.0.1:0"]
        log = open(Path(tmp) / "live.log", "w+")  # noqa: SIM115 - closed below
        env = child_env()
        child = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
        load_start = os.getloadavg()
        samples: list[tuple[float, int, int]] = []
        viewer = None
        started = time.monotonic()
        print(f"{'seconds':>8} {'frames':>9} {'FPS':>7} {'RSS MiB':>9}")
        try:
            while time.monotonic() - started < duration:
                time.sleep(args.interval - (time.monotonic() - started) % args.interval)
                if child.poll() is not None:
                    log.seek(0)
                    tail = log.read().strip().splitlines()[-1:] or ["(no output)"]
                    print(
                        f"error: edge.live exited with {child.returncode}: {tail[0]}",
                        file=sys.stderr,
                    )
                    return 2
                if viewer is None and not args.no_serve:
                    log.seek(0)
                    url = re.search(r"serving (http://\S+)", log.read())
                    if url:
                        viewer = Viewer(url.group(1), args.viewer_every)
                        viewer.start()
                t, frames, rss = time.monotonic() - started, counter.lines, rss_bytes(child.pid)
                if rss is None:
                    continue
                fps = (frames - samples[-1][1]) / (t - samples[-1][0]) if samples else frames / t
                samples.append((t, frames, rss))
                print(f"{t:8.0f} {frames:9d} {fps:7.1f} {rss / 2**20:9.2f}", flush=True)
        finally:
            if viewer is not None:
                viewer.stop.set()
            child.send_signal(signal.SIGINT)  # stops after this frame, files complete
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            counter.join(timeout=10)
            log.seek(0)
            live_log = log.read()
            log.close()
        load_end = os.getloadavg()

    slope = fit_bytes_per_frame(samples, warmup)
    after = [s for s in samples if s[0] >= warmup]
    fit_frames = after[-1][1] - after[0][1]
    growth = after[-1][2] - after[0][2]
    model_line = next((line for line in live_log.splitlines() if line.startswith("model:")), "")
    verdict = "PASS" if slope < args.limit else "FAIL"
    print(
        f"\n{slope:.2f} bytes per frame after a {warmup:.0f} s warm-up "
        f"({fit_frames} frames, RSS {growth / 2**20:+.2f} MiB): {verdict} "
        f"(limit {args.limit:g})"
    )
    if viewer is not None:
        print(f"viewer: {viewer.visits} visits, {viewer.failures} failed")

    shown = " ".join(["python -m benchmarks.soak", *(argv if argv is not None else sys.argv[1:])])
    rows = "\n".join(
        f"| {t:.0f} | {frames} | {rss / 2**20:.2f} |" + (" warm-up |" if t < warmup else " |")
        for t, frames, rss in samples
    )
    served = (
        "no MJPEG server"
        if args.no_serve
        else f"MJPEG stream on loopback, a viewer visiting every {args.viewer_every:g} s "
        f"({viewer.visits if viewer else 0} visits, {viewer.failures if viewer else 0} "
        "failed)"
    )
    report = f"""# Soak: memory of `edge.live` over a long run

`{shown}`, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.

`edge.live` on the looping demo clip, {args.threads} interpreter thread(s), JSONL to a pipe,
{served}.

- **{slope:.2f} bytes per frame** (least-squares slope of resident memory against frames
  after a {warmup:.0f} s warm-up, over {fit_frames} frames; resident memory
  {growth / 2**20:+.2f} MiB): **{verdict}** against the limit of {args.limit:g}.
  Before the stage statistics were bounded it was 193 bytes per frame (issue 10).
- {samples[-1][1]} frames in {samples[-1][0]:.0f} s ({samples[-1][1] / samples[-1][0]:.1f} FPS).
- {model_line.removeprefix("model: ") or "model: ?"}
- Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()};
  load average (1 min) {load_start[0]:.2f} at the start and {load_end[0]:.2f} at the end
  (the cores are shared with other jobs, so the frame rate says little).

| seconds | frames | RSS MiB | |
|---:|---:|---:|---|
{rows}
"""
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(f"wrote {args.output}")
    return 0 if slope < args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
