"""Compare builds of the native delegate on the paper model, interleaved with its float twin.

Every round times each build (a few runs each) and then the float twin, all in this one
process and one runtime (ai-edge-litert), so a build and the twin it is divided by always see
the same machine. This 2-vCPU development VM switches, for tens of seconds at a time, into a
state where the binary model is ~25 % slower and the float twin ~6 % slower; rounds are
classed "fast" or "slow" by the first build's time, and the table gives each build's median
time and twin/ours ratio in each state.

    python -m benchmarks.delegate_ab current                      # this checkout's sources
    python -m benchmarks.delegate_ab /tmp/old/libbinland_lce-*.so current --seconds 300
    python -m benchmarks.delegate_ab OLD.so current --simd avx2 --threads 1 --clock cpu

On a machine that other processes keep busy, wall times mostly measure them: `--clock cpu`
(with `--threads 1`, where the delegate and XNNPACK run on the calling thread) times each run
by that thread's CPU time instead, which waiting for a core does not inflate. Builds loaded
later in the process have measured a few % slower than the same build loaded first, so an A/B
that close is run in both orders.

A build is a library path, or ``current`` (the working tree's sources, built into the user
cache as ``edge.native.ensure_library`` does). To build another revision:
``git worktree add /tmp/old <rev> && (cd /tmp/old && python -m edge.native build --output
/tmp/old-lib)``. Models come from ``benchmarks.kernels``'s cache (built on first use).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchmarks import RESULTS_DIR
from benchmarks.kernels import build_models
from edge import cpu_name
from edge.cli import ArgumentParser

RESULTS = RESULTS_DIR / "delegate_ab.md"


def build_arg(text: str) -> str:
    """A library file that exists, or 'current' (checked on the command line, before any
    slow work)."""
    if text != "current" and not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"no such library: {text} (or 'current')")
    return text


def positive(kind: type):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def resolve(build: str) -> str:
    if build == "current":
        import edge.native

        return str(edge.native.ensure_library())
    return build


def measure(libraries: list[str], models: dict, args) -> list[list[float]]:
    """Rows of per-round medians in ms: one column per library, then the float twin."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, load_delegate
    from tqdm import tqdm

    x = np.random.default_rng(0).standard_normal((1, args.size, args.size, 3)).astype(np.float32)

    def ready(path: str, delegates: list) -> Interpreter:
        it = Interpreter(
            model_path=path, experimental_delegates=delegates, num_threads=args.threads
        )
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        for _ in range(3):
            it.invoke()
        return it

    options = {"simd": args.simd} if args.simd else {}
    delegates = [load_delegate(lib, options) for lib in libraries]
    ours = [ready(models["binary"], [d]) for d in delegates]
    twin = ready(models["float"], [])

    clock = time.thread_time if args.clock == "cpu" else time.perf_counter

    def median_ms(it: Interpreter, runs: int) -> float:
        times = []
        for _ in range(runs):
            start = clock()
            it.invoke()
            times.append(clock() - start)
        return 1e3 * float(np.median(times))

    rows = []
    start, shown = time.monotonic(), 0
    with tqdm(total=int(args.seconds), unit="s", desc="timing", leave=False) as bar:
        while time.monotonic() - start < args.seconds:
            rows.append([median_ms(it, args.runs) for it in ours] + [median_ms(twin, 3)])
            elapsed = int(min(args.seconds, time.monotonic() - start))
            bar.update(elapsed - shown)
            shown = elapsed
    del ours, twin, delegates
    return rows


def table(names: list[str], rows: list[list[float]], slow_factor: float) -> tuple[str, dict]:
    """Markdown table of per-state medians, and {(state, name): twin/build ratio}. A round
    is "slow" when the first build took more than slow_factor x its 10th-percentile round."""
    import numpy as np

    data = np.asarray(rows)
    reference = data[:, 0]
    fast_ms = float(np.percentile(reference, 10))
    slow = reference > slow_factor * fast_ms
    lines = [
        "| state | rounds | build | median ms | float twin ms | twin / build | vs first |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    summary = {}
    for state, mask in (("fast", ~slow), ("slow", slow)):
        if not mask.any():
            continue
        med = np.median(data[mask], axis=0)
        for i, name in enumerate(names):
            ratio = med[-1] / med[i]
            summary[(state, name)] = ratio
            lines.append(
                f"| {state} | {int(mask.sum())} | {name} | {med[i]:.2f} | {med[-1]:.2f} | "
                f"{ratio:.2f}x | {med[i] / med[0]:.3f} |"
            )
    return "\n".join(lines), summary


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m benchmarks.delegate_ab",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    p.add_argument(
        "builds",
        nargs="+",
        type=build_arg,
        help="library paths, or 'current' (the first is the reference)",
    )
    p.add_argument(
        "--seconds",
        type=positive(float),
        default=240.0,
        help="how long to keep timing (default 240)",
    )
    p.add_argument(
        "--runs", type=positive(int), default=12, help="runs per build per round (default 12)"
    )
    p.add_argument(
        "--slow-factor",
        type=float,
        default=1.15,
        help="a round is 'slow' when the first build takes more than this times its "
        "10th-percentile round (default 1.15)",
    )
    p.add_argument(
        "--size", type=int, default=256, help="input size of the paper model (default 256)"
    )
    p.add_argument(
        "--threads", type=positive(int), default=2, help="interpreter threads (default 2)"
    )
    p.add_argument(
        "--simd",
        choices=("avx512-vpopcntdq", "avx2", "popcnt", "neon", "portable"),
        help="force this kernel path in every build (the delegate's simd option)",
    )
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall (default), or cpu: the calling thread's CPU time, with --threads 1",
    )
    p.add_argument("--output", type=Path, default=RESULTS, help="markdown file to write")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu times the calling thread only: use it with --threads 1")
    libraries = [resolve(b) for b in args.builds]
    names = [b if b == "current" else Path(b).name for b in args.builds]
    info = build_models(args.size, 256, 4, rebuild=False)
    models = {"binary": info["binary"], "float": info["float"]}
    load_before = os.getloadavg()[0]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = measure(libraries, models, args)
    text, _ = table(names, rows, args.slow_factor)
    flags = f" --threads {args.threads}" if args.threads != 2 else ""
    flags += f" --simd {args.simd}" if args.simd else ""
    flags += " --clock cpu" if args.clock == "cpu" else ""
    header = (
        f"# Delegate builds A/B: paper model {args.size}x{args.size}, ai-edge-litert, "
        f"{args.threads} thread{'s' if args.threads > 1 else ''}"
        f"{', kernel path ' + args.simd if args.simd else ''}"
        f"{', thread CPU time' if args.clock == 'cpu' else ''}\n\n"
        f"`python -m benchmarks.delegate_ab {' '.join(args.builds)} --seconds {args.seconds:g}"
        f"{flags}` "
        f"at {started} on {cpu_name()}; {len(rows)} rounds of {args.runs} runs per build and 3 "
        f"of the float twin; load average (1 min) {load_before:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end (the benchmark's own {args.threads} "
        f"thread{'s' if args.threads > 1 else ''} count).\n\n"
    )
    print(header + text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(header + text + "\n")
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
