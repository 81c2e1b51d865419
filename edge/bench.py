"""Benchmark a landmark model on this device: ``python -m edge.bench --model pose.tflite``.

For every backend and thread count: inference latency (p50/p90 over ``--frames`` runs after
``--warmup``), frames per second from the mean latency, and the peak resident memory of a
fresh process that loaded the model and ran it. Each configuration runs in its own child
process, so memory numbers don't leak from one into the next. Then the per-frame work
around inference at 640x480 (crop, decode, tracking, smoothing, drawing), which should
stay well under the inference time (target: under 3 ms). Then, for landmark models, the cost
of following 1, 2 and 4 people (``--people``, ``--people-threads``), with real inference, and
the own time of the finder ``edge.live`` would run with the same ``--person-finder`` /
``--face-detector`` (:func:`edge.tracking.finder_spec`).

``--profile`` instead shows where the time of a bitpacked (LCE) model goes, per node and per
op type, in one stock runtime with the native delegate (see ``edge.native.profile``): the
delegate's ops timed inside the delegate, the runtime's builtin ops by difference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .backends import backend_names
from .cli import (
    ArgumentParser,
    add_model_argument,
    add_several_people_arguments,
    add_threads_argument,
    int_in_range,
    resolve_model,
    run_cli,
    thread_count,
)
from .errors import BackendError, EdgeError
from .host import cpu_name
from .multitrack import MAX_TRACKS

OVERHEAD_TARGET_MS = 3.0
# A configuration that has not finished in this long is reported as an error row, not waited
# for: a stalled runtime must not hang the whole benchmark.
CHILD_TIMEOUT_S = 300


def _peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def bench_inference(model_path: str, backend: str, threads: int, frames: int, warmup: int) -> dict:
    """Latency of ``predict_heatmaps`` on a real crop (the demo clip), in this process."""
    from .sources.demo import render_demo_frame
    from .tasks import open_model
    from .transform import full_frame_box, warp_crop

    started = time.perf_counter()
    model = open_model(model_path, backend=backend, num_threads=threads)  # landmarks or parts
    load_s = time.perf_counter() - started
    image = render_demo_frame(40)
    crop, _ = warp_crop(
        image, full_frame_box(image.shape[1], image.shape[0]), model.metadata.input_size
    )
    batch = crop[None]
    for _ in range(warmup):
        model.predict_heatmaps(batch)
    times = np.empty(frames)
    for i in range(frames):
        t0 = time.perf_counter()
        model.predict_heatmaps(batch)
        times[i] = time.perf_counter() - t0
    ms = times * 1e3
    return {
        "backend": model.backend_name,
        "runtime": model.backend_description,
        "threads": threads,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "mean_ms": float(ms.mean()),
        "fps": float(1e3 / ms.mean()),
        "load_s": load_s,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _bench_child(model_path: str, backend: str, threads: int, frames: int, warmup: int) -> dict:
    try:
        return bench_inference(model_path, backend, threads, frames, warmup)
    except EdgeError as exc:
        return {"backend": backend, "threads": threads, "error": str(exc)}


# The child's program: one configuration, its result as the last line of stdout (runtimes may
# print their own lines before it).
_CHILD_CODE = (
    "import json, sys\n"
    "from edge.bench import _bench_child\n"
    "print(json.dumps(_bench_child(*json.loads(sys.argv[1]))), flush=True)\n"
)


def bench_in_child(
    model_path: str,
    backend: str,
    threads: int,
    frames: int,
    warmup: int,
    *,
    timeout_s: float = CHILD_TIMEOUT_S,
) -> dict:
    """:func:`bench_inference` in a fresh Python process, so its peak RSS is its own.

    A plain subprocess with a deadline: a child that crashes or stalls becomes a row with an
    ``error``, never a hang (a process pool waits forever on a worker that never answers).
    """
    args = json.dumps([model_path, backend, threads, frames, warmup])
    failed = {"backend": backend, "threads": threads}
    # The child imports this very package, wherever it was imported from here.
    here = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])),
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD_CODE, args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {**failed, "error": f"no result within {timeout_s:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return {**failed, "error": f"the benchmark process failed: {last}"}
    return json.loads(lines[-1])


def bench_overhead(model, *, frames: int = 200, size: tuple[int, int] = (640, 480)) -> dict:
    """Milliseconds per frame spent around inference, with real heatmaps from ``model``.

    It times :class:`edge.pipeline.LandmarkPipeline` as ``edge.live`` runs it (tracking and
    One Euro smoothing on, no probing), with the network's output computed once and reused,
    plus the overlay drawing. Wall-clock times per stage, plus the process CPU time per
    frame, which other programs competing for the cores do not inflate.
    """
    from .smoothing import OneEuroFilter
    from .sources.demo import DemoSource
    from .timing import StageTimes
    from .tracking import LandmarkTracker, lost_below_of

    meta = model.metadata
    source = DemoSource(size=size, loop=True)
    # edge.live's chain for the model's task: a segmentation chain has nothing to smooth.
    pipeline = model.video_pipeline(
        LandmarkTracker(margin=meta.box_margin, lost_below=lost_below_of(meta)),
        smoother=OneEuroFilter(),
    )
    stages = ("crop", "decode", "tracking", "smoothing", "drawing")
    if not getattr(pipeline, "smoother", None):
        stages = tuple(s for s in stages if s != "smoothing")
    held: list[np.ndarray] = []

    def infer_once(crops: np.ndarray) -> np.ndarray:
        # The first crop's real network output, reused for every later frame.
        if not held:
            held.append(model.predict_heatmaps(crops[:1]))
        return np.repeat(held[0], len(crops), axis=0)

    pipeline.infer = infer_once
    times = StageTimes()
    cpu: list[float] = []  # CPU seconds per frame: immune to other processes on the machine
    warmup = 10
    for i in range(frames + warmup):
        if i == warmup:
            # The first frames fill caches: not counted.
            times, cpu = StageTimes(window=max(frames, 1)), []
        frame = source.read()
        cpu_start = time.process_time()
        result = pipeline.process(frame, times)
        with times.stage("drawing"):
            pipeline.annotate(result, fps=30.0)
        cpu.append(time.process_time() - cpu_start)
    per_stage = {s: times.mean_ms(s) for s in stages}
    totals = np.sum([times.recent(s) for s in stages], axis=0) * 1e3
    return {
        "size": list(size),
        "stages_mean_ms": per_stage,
        "total_mean_ms": float(totals.mean()),
        "total_p50_ms": float(np.percentile(totals, 50)),
        "total_p90_ms": float(np.percentile(totals, 90)),
        "total_cpu_p50_ms": float(np.percentile(cpu, 50)) * 1e3,
        "target_ms": OVERHEAD_TARGET_MS,
    }


# The people benchmark's scene: four demo figures in a 2x2 grid of 320x240 tiles.
PEOPLE_TILE = (320, 240)
PEOPLE_COUNTS = (1, 2, 4)


class _TileFinder:
    """The people benchmark's finder: the first ``count`` tiles of the grid, each found as
    a whole (as edge.live's demo figure is in a whole frame), so that it costs nothing and
    every count sees people of the same size."""

    def __init__(self, count: int) -> None:
        from .finders.base import Found
        from .transform import CropBox

        w, h = PEOPLE_TILE
        self.found = []
        for i in range(count):
            x, y = (i % 2) * w, (i // 2) * h
            box = CropBox((x + (w - 1) / 2, y + (h - 1) / 2), float(max(w, h)))
            self.found.append(Found(1.0, (x, y, w, h), box))

    def find(self, image: np.ndarray) -> list:
        return list(self.found)


def _people_frame(index: int) -> np.ndarray:
    """Four demo figures, each at another point of the clip, in a 2x2 grid."""
    from .sources.demo import render_demo_frame

    tiles = [render_demo_frame(index + 37 * i, PEOPLE_TILE) for i in range(4)]
    return np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])


def bench_people(
    model, *, counts: tuple[int, ...] = PEOPLE_COUNTS, frames: int = 50, finder=None
) -> dict:
    """Milliseconds per frame of ``edge.live --max-people N`` for each N in ``counts``, with
    real inference: :class:`edge.multipipeline.MultiLandmarkPipeline` following N demo figures
    (a 640x480 frame of four 320x240 tiles), One Euro smoothing and the overlay included.
    The tiles are handed over as finds, so no finder's time is in these numbers; ``finder``
    (an :mod:`edge.finders` finder, or None) is timed on its own on the same frame: it runs
    every ``--find-every`` frames while fewer than N are followed, and after a loss."""
    from .multipipeline import STAGES as MULTI_STAGES
    from .multitrack import MultiTracker
    from .smoothing import OneEuroFilter
    from .sources import Frame
    from .timing import StageTimes
    from .tracking import lost_below_of

    meta = model.metadata
    rows = []
    warmup = 5
    for count in counts:
        tracker = MultiTracker(
            _TileFinder(count),
            max_tracks=count,
            margin=meta.box_margin,
            lost_below=lost_below_of(meta),
        )
        pipeline = model.video_pipeline(tracker, smoother=OneEuroFilter())
        times, followed, cpu = StageTimes(), [], []
        for i in range(frames + warmup):
            if i == warmup:
                times, followed, cpu = StageTimes(window=max(frames, 1)), [], []
            frame = Frame(_people_frame(i), i / 30.0, i)
            cpu_start = time.process_time()
            result = pipeline.process(frame, times)
            with times.stage("drawing"):
                pipeline.annotate(result, fps=30.0)
            cpu.append(time.process_time() - cpu_start)
            followed.append(len(result.people))
        stages = [s for s in (*MULTI_STAGES, "drawing") if s in times]
        totals = np.sum([times.recent(s) for s in stages], axis=0) * 1e3
        rows.append(
            {
                "people": count,
                "tracked_mean": float(np.mean(followed)),
                "total_p50_ms": float(np.percentile(totals, 50)),
                "total_mean_ms": float(totals.mean()),
                "inference_mean_ms": times.mean_ms("inference"),
                "around_mean_ms": float(totals.mean()) - times.mean_ms("inference"),
                "fps": float(1e3 / np.percentile(totals, 50)),
                # Process CPU time, which other programs on the machine do not inflate.
                "cpu_p50_ms": float(np.percentile(cpu, 50)) * 1e3,
            }
        )
    report: dict = {"size": [2 * PEOPLE_TILE[0], 2 * PEOPLE_TILE[1]], "rows": rows}
    if finder is not None:
        image = _people_frame(0)
        finder.find(image)  # the first run allocates
        ms, cpu_ms = [], []
        for _ in range(max(frames // 2, 3)):
            t0, c0 = time.perf_counter(), time.process_time()
            finder.find(image)
            ms.append((time.perf_counter() - t0) * 1e3)
            cpu_ms.append((time.process_time() - c0) * 1e3)
        report["finder"] = {
            "name": finder.name,
            "path": None if finder.path is None else str(finder.path),
            "p50_ms": float(np.percentile(ms, 50)),
            "cpu_p50_ms": float(np.percentile(cpu_ms, 50)),
        }
    return report


def _int_list(item: Callable[[str], int]) -> Callable[[str], list[int]]:
    """An argparse type: comma-separated whole numbers, each checked by ``item`` (its bounds:
    --threads has every tool's cap, --people edge.live's --max-people range)."""

    def parse(text: str) -> list[int]:
        values = [item(v.strip()) for v in text.split(",") if v.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"expected numbers like 1,2,4, got {text!r}")
        return values

    parse.__name__ = "list"
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m edge.bench",
        description="Latency, FPS and peak memory of a landmark model per backend and thread "
        "count, plus the per-frame cost of everything around inference.",
    )
    add_model_argument(p)
    p.add_argument(
        "--backends",
        default="all",
        help=f"comma-separated backends to time ({', '.join(backend_names())}), "
        "or 'all' for every installed one",
    )
    p.add_argument(
        "--threads",
        type=_int_list(thread_count),
        default=[1, 2, 4],
        metavar="N[,N...]",
        help="interpreter thread counts to time (default: 1,2,4)",
    )
    p.add_argument("--frames", type=int, default=50, help="timed runs per configuration")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs before timing")
    p.add_argument(
        "--overhead-frames",
        type=int,
        default=200,
        help="frames for the around-inference overhead at 640x480; 0 skips it",
    )
    p.add_argument(
        "--people",
        type=_int_list(int_in_range(1, MAX_TRACKS)),
        default=list(PEOPLE_COUNTS),
        metavar="N[,N...]",
        help="landmark models: also time edge.live --max-people N (--max-faces N) for each N, "
        "with real inference per person (the first backend, --people-threads), and the "
        "finder that picks people up (the one edge.live would run: --person-finder, "
        "--face-detector) on its own",
    )
    p.add_argument(
        "--people-frames",
        type=int,
        default=50,
        help="frames per --people count; 0 skips the people benchmark",
    )
    add_threads_argument(
        p,
        flag="--people-threads",
        default=2,
        help="interpreter threads of the model in the --people benchmark (default: 2, a "
        "Pi's share of its 4 cores beside the camera and the stream); the finder runs with "
        "the threads edge.live gives it",
    )
    add_several_people_arguments(p, counts=False, find_and_drop=False)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    prof = p.add_argument_group(
        "per-op profile (bitpacked models)",
        "--profile times every node of a bitpacked (LCE) model in one stock runtime with the "
        "binland delegate, using the first --threads value, --frames runs and --warmup: the "
        "delegate's ops (with the builtin MUL/ADD it fused) timed inside the delegate, the "
        "runtime's builtin ops (XNNPACK) by difference, as the gaps between the delegate's "
        "partitions. A gap holding several op types is shown as that mix.",
    )
    prof.add_argument(
        "--profile",
        action="store_true",
        help="print the per-node and per-op-type profile instead of the latency table",
    )
    prof.add_argument(
        "--runtime",
        choices=("ai_edge_litert", "tflite_runtime"),
        default=None,
        help="stock runtime for --profile (default: as the tflite backend picks)",
    )
    prof.add_argument(
        "--no-fuse",
        action="store_true",
        help="profile with the delegate's fusion off (each MUL/ADD before a "
        "quantize left to the runtime, every quantize run on its own)",
    )
    prof.add_argument("--top", type=int, default=25, help="slowest nodes to list (default 25)")
    return p


def _backends(spec: str) -> list[str]:
    from .backends import BACKENDS

    if spec == "all":
        return [name for name, cls in BACKENDS.items() if cls.is_available()]
    names = [n.strip() for n in spec.split(",") if n.strip()]
    for n in names:
        if n not in backend_names():
            raise BackendError(f"unknown backend {n!r}; choose from {', '.join(backend_names())}")
    return names


def run(args: argparse.Namespace) -> dict:
    from .metadata import read_metadata
    from .tasks import open_model

    if args.frames < 1 or args.warmup < 0 or args.overhead_frames < 0 or args.people_frames < 0:
        raise EdgeError(
            "--frames must be >= 1, --warmup, --overhead-frames and --people-frames >= 0"
        )
    path = resolve_model(args.model)
    meta = read_metadata(path)
    backends = _backends(args.backends)
    if not backends:
        raise BackendError("no TFLite runtime is installed: pip install tflite-runtime")
    report = {
        "model": str(path),
        "model_size_mb": path.stat().st_size / 1e6,
        "weights_format": meta.weights_format,
        "skeleton": meta.skeleton,
        "input_size": list(meta.input_size),
        "machine": f"{cpu_name()} ({platform.machine()}), {platform.python_version()}",
        "inference": [],
    }
    for backend in backends:
        for threads in args.threads:
            row = bench_in_child(str(path), backend, threads, args.frames, args.warmup)
            report["inference"].append(row)
    if args.overhead_frames:
        model = open_model(path, backend=backends[0], num_threads=1)
        report["overhead"] = bench_overhead(model, frames=args.overhead_frames)
    if args.people_frames and args.people and meta.task != "segmentation":
        model = open_model(path, backend=backends[0], num_threads=args.people_threads)
        finder, failed = _default_finder(
            meta,
            people=max(args.people),
            person_finder=args.person_finder,
            face_detector=args.face_detector,
        )
        report["people"] = bench_people(
            model, counts=tuple(args.people), frames=args.people_frames, finder=finder
        )
        report["people"]["threads"] = args.people_threads
        if failed is not None:
            report["people"]["finder"] = failed
    return report


def _default_finder(
    meta, *, people: int, person_finder: str, face_detector: str
) -> tuple[object | None, dict | None]:
    """The finder edge.live runs with these flags when it follows ``people`` subjects of this
    model's task, built as edge.live and edge.doctor build it
    (:func:`edge.multitrack.multi_tracker_for`), or why there is none."""
    from .multitrack import multi_tracker_for
    from .tracking import subject_of

    try:
        tracker = multi_tracker_for(
            meta, people, person_finder=person_finder, face_detector=face_detector
        )
    except EdgeError as exc:
        name = face_detector if subject_of(meta) == "face" else person_finder
        return None, {"name": name, "error": str(exc)}
    return tracker.finder, None


def run_profile(args: argparse.Namespace) -> dict:
    from .backends.base import is_bitpacked
    from .metadata import model_bytes
    from .native.profile import profile_model

    if args.frames < 1 or args.warmup < 0:
        raise EdgeError("--frames must be >= 1 and --warmup >= 0")
    path = resolve_model(args.model)
    if not is_bitpacked(model_bytes(path)):
        raise EdgeError(f"--profile needs a bitpacked (LCE) model; {path} has no Lce ops")
    report = profile_model(
        path,
        runtime=args.runtime,
        threads=args.threads[0],
        runs=args.frames,
        warmup=args.warmup,
        options={"fuse": "0"} if args.no_fuse else None,
    )
    report["machine"] = f"{platform.machine()}, {platform.python_version()}"
    report["load_average"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return report


def format_table(report: dict) -> str:
    lines = [
        f"model: {report['model']} ({report['model_size_mb']:.3f} MB, {report['weights_format']}, "
        f"{report['skeleton']}, input {report['input_size'][0]}x{report['input_size'][1]}) "
        f"on {report['machine']}",
        "",
        f"{'backend':<8} {'threads':>7} {'p50 ms':>8} {'p90 ms':>8} {'FPS':>7} {'peak RSS MB':>12}"
        "  runtime",
    ]
    for r in report["inference"]:
        if "error" in r:
            lines.append(f"{r['backend']:<8} {r['threads']:>7}  unavailable: {r['error']}")
            continue
        lines.append(
            f"{r['backend']:<8} {r['threads']:>7} {r['p50_ms']:8.2f} {r['p90_ms']:8.2f} "
            f"{r['fps']:7.1f} {r['peak_rss_mb']:12.0f}  {r['runtime']}"
        )
    if "overhead" in report:
        o = report["overhead"]
        parts = ", ".join(f"{k} {v:.2f}" for k, v in o["stages_mean_ms"].items())
        verdict = "OK" if o["total_p50_ms"] < o["target_ms"] else "OVER TARGET"
        lines += [
            "",
            f"per-frame work around inference at {o['size'][0]}x{o['size'][1]}: "
            f"p50 {o['total_p50_ms']:.2f} ms, p90 {o['total_p90_ms']:.2f} ms, mean "
            f"{o['total_mean_ms']:.2f} ms, CPU p50 {o['total_cpu_p50_ms']:.2f} ms "
            f"(target p50 < {o['target_ms']:.0f} ms: {verdict})",
            f"  ms per stage: {parts}",
        ]
    if "people" in report:
        lines += ["", *_people_table(report["people"])]
    return "\n".join(lines)


def _people_table(people: dict) -> list[str]:
    w, h = people["size"]
    lines = [
        f"several people (edge.live --max-people N) at {w}x{h}, {people['threads']} "
        f"thread{'s' if people['threads'] > 1 else ''}, real inference:",
        f"{'people':>6} {'tracked':>8} {'p50 ms':>8} {'inference':>10} {'around':>8} {'FPS':>7}"
        f" {'CPU p50 ms':>11}",
    ]
    for r in people["rows"]:
        lines.append(
            f"{r['people']:>6} {r['tracked_mean']:>8.1f} {r['total_p50_ms']:>8.2f} "
            f"{r['inference_mean_ms']:>10.2f} {r['around_mean_ms']:>8.2f} {r['fps']:>7.1f}"
            f" {r['cpu_p50_ms']:>11.2f}"
        )
    finder = people.get("finder")
    if finder is not None and "error" in finder:
        lines.append(f"finder {finder['name']}: unavailable: {finder['error']}")
    elif finder is not None:
        where = f" ({finder['path']})" if finder["path"] else ""
        lines.append(
            f"finder {finder['name']}{where}: p50 {finder['p50_ms']:.2f} ms a run (CPU "
            f"{finder['cpu_p50_ms']:.2f} ms) at {w}x{h}, every --find-every frames while fewer "
            "than N are followed, and while one is lost"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    from .live import quiet_opencv

    args = build_parser().parse_args(argv)
    quiet_opencv()

    def body() -> None:
        if args.profile:
            from .native.profile import format_profile

            report = run_profile(args)
            load = report["load_average"]
            text = format_profile(report, top=args.top) + (
                f"\nload average {load[0]:.1f}: builtin times are gaps on a shared CPU"
                if load
                else ""
            )
            print(json.dumps(report, indent=2) if args.json else text)
            return
        report = run(args)
        print(json.dumps(report, indent=2) if args.json else format_table(report))

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
