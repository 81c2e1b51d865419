"""Time the paper's binary hourglass three ways, in one run, at the same thread count.

(a) a stock TFLite runtime (ai-edge-litert, tflite-runtime) + our native LCE delegate,
(b) the float twin (same architecture, real-valued weights) under the runtime's XNNPACK,
(c) LCE's own interpreter (reference kernels only on x86).

It also compares (a) with the arithmetic limit of this CPU: the binary MACs divided by the
popcount throughput of the kernel path in use times the cores (see ``popcount_throughput``).

    python -m benchmarks.kernels                  # 256x256, 2 threads, 2 rounds of 20 runs
    python -m benchmarks.kernels --size 128 --runs 5 --rounds 3

Rounds interleave the configurations (each round times every configuration once), so a load
change on a shared machine hits all of them; the table lists each round's ratios.

Each configuration runs in its own process (each runtime bundles its own TFLite). Models are
built with training.models.build_hourglass and cached in ~/.cache/binland/bench.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import RESULTS_DIR, child_env, module_command
from edge import cache_dir, cpu_name

RESULTS = RESULTS_DIR / "kernels.md"
CACHE = cache_dir("bench")


# ------------------------------------------------------------------------ models


def build_models(size: int, features: int, depth: int, rebuild: bool) -> dict:
    """Binary (LCE) and float twin flatbuffers plus MAC counts, cached by configuration."""
    key = f"hourglass-hpm-1stack-{size}px-{features}f-d{depth}"
    folder = CACHE / key
    info_path = folder / "info.json"
    if info_path.exists() and not rebuild:
        return json.loads(info_path.read_text())

    # isort: off
    import converters  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

    # isort: on
    import larq_compute_engine as lce
    import tensorflow as tf
    from tqdm import tqdm

    from training.models import build_hourglass, count_macs

    folder.mkdir(parents=True, exist_ok=True)
    steps = tqdm(total=2, desc="building models", unit="model")
    common = dict(num_stacks=1, depth=depth, features=features, input_size=size, block="hpm")
    binary = build_hourglass(**common, binary=True)
    binary_macs, float_macs = count_macs(binary)
    (folder / "binary.tflite").write_bytes(lce.convert_keras_model(binary))
    steps.update()
    twin = build_hourglass(**common, binary=False)
    converter = tf.lite.TFLiteConverter.from_keras_model(twin)
    (folder / "float.tflite").write_bytes(converter.convert())
    steps.update()
    steps.close()
    info = {
        "key": key,
        "binary": str(folder / "binary.tflite"),
        "float": str(folder / "float.tflite"),
        "binary_macs": int(binary_macs),
        "float_macs": int(float_macs),
        "size": size,
    }
    info_path.write_text(json.dumps(info))
    return info


# ------------------------------------------------------------------------ timing


def _time_loop(run, warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def worker(args: argparse.Namespace) -> int:
    """One configuration, in this process; prints a JSON line with the times in seconds."""
    import numpy as np

    x = np.random.default_rng(0).standard_normal((1, args.size, args.size, 3)).astype(np.float32)
    if args.runtime == "lce":
        from larq_compute_engine.tflite.python.interpreter import Interpreter as LceInterpreter

        wrapper = LceInterpreter(
            Path(args.model).read_bytes(), num_threads=args.threads
        ).interpreter

        def run():
            wrapper.predict([x])

        times = _time_loop(run, args.warmup, args.runs)
    else:
        if args.runtime == "tflite_runtime":
            from tflite_runtime.interpreter import Interpreter, load_delegate
        else:
            from ai_edge_litert.interpreter import Interpreter, load_delegate
        delegates = [load_delegate(args.library)] if args.library else []
        interpreter = Interpreter(
            model_path=args.model, experimental_delegates=delegates, num_threads=args.threads
        )
        interpreter.allocate_tensors()
        index = interpreter.get_input_details()[0]["index"]

        def run():
            interpreter.set_tensor(index, x)
            interpreter.invoke()

        times = _time_loop(run, args.warmup, args.runs)
        del interpreter, delegates  # the delegate prints its BINLAND_PROFILE totals here
    print(json.dumps({"times": times}), flush=True)
    return 0


def run_config(runtime: str, model: str, library: str | None, args) -> dict:
    cmd = module_command(
        "benchmarks.kernels",
        "--worker",
        "--runtime",
        runtime,
        "--model",
        model,
        "--threads",
        str(args.threads),
        "--runs",
        str(args.runs),
        "--warmup",
        str(args.warmup),
        "--size",
        str(args.size),
    )
    if library:
        cmd += ["--library", library]
    env = child_env(dict(os.environ, BINLAND_PROFILE="1", TF_CPP_MIN_LOG_LEVEL="3"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{runtime} on {Path(model).name} failed:\n{proc.stderr[-2000:]}")
    times = json.loads(proc.stdout.strip().splitlines()[-1])["times"]
    binary_ms = delegate_float_ms = 0.0
    for line in proc.stderr.splitlines():
        if line.startswith("binland profile:"):
            # The Lce ops (with the float MUL/ADD/concat work fused into them) count as
            # binary ops; the builtin CONCATENATION/ADD the delegate runs on its own do not.
            if line.split()[2].startswith("Lce"):
                binary_ms += float(line.split()[-3])
            else:
                delegate_float_ms += float(line.split()[-3])
    calls = args.runs + args.warmup
    return {
        "times": times,
        "median_ms": 1e3 * sorted(times)[len(times) // 2],
        "min_ms": 1e3 * min(times),
        "binary_ops_ms": binary_ms / calls if library else None,
        "delegate_float_ms": delegate_float_ms / calls if library else None,
    }


# ------------------------------------------------------------------------ limit


def cpu_clock_ghz() -> float:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("cpu mhz"):
                return float(line.split(":")[1]) / 1e3
    except OSError:
        pass
    return 2.0


def popcount_throughput(path: str) -> tuple[float, str]:
    """Binary MACs per cycle per core that the kernel path can reach at best, and why.

    A binary MAC is one bit of XOR + popcount + accumulate. Per vector of W bits a kernel
    issues a fixed number of vector instructions; we assume two vector instructions per cycle
    (two vector ALU ports, true of recent x86 cores and of the Cortex-A72's NEON units).
    """
    ops_per_cycle = 2
    table = {
        "avx512-vpopcntdq": (512, 3, "vpxord + vpopcntd + vpaddd per 512 bits"),
        "avx2": (
            256,
            6.5,
            "xor + 3/4 of a Harley-Seal carry-save adder tree + 1/4 of a nibble-table count "
            "per 256 bits (26 ops per 4 words; convs under 24 words use the table alone, 8 ops)",
        ),
        "neon": (128, 3, "eor + cnt + add per 128 bits (byte sums widened every 31 words)"),
        "popcnt": (32, 3 / 2, "scalar xor + popcnt + add per 32-bit word, ~2 per cycle"),
        "portable": (32, 12, "popcount by bit tricks, ~12 ops per 32-bit word"),
    }
    bits, ops, why = table.get(path, table["portable"])
    return bits * ops_per_cycle / ops, f"{why}; {ops_per_cycle} vector ops/cycle"


# ------------------------------------------------------------------------ main


def pool(results: list[dict]) -> dict:
    times = sorted(t for r in results for t in r["times"])
    binary = [r["binary_ops_ms"] for r in results if r["binary_ops_ms"] is not None]
    float_ms = [r["delegate_float_ms"] for r in results if r["delegate_float_ms"] is not None]
    return {
        "median_ms": 1e3 * times[len(times) // 2],
        "min_ms": 1e3 * times[0],
        "binary_ops_ms": sum(binary) / len(binary) if binary else None,
        "delegate_float_ms": sum(float_ms) / len(float_ms) if float_ms else None,
        "rounds": results,
    }


def _ratio(name: str, slow: dict, fast: dict) -> str:
    return (
        f"| {name} | {slow['median_ms'] / fast['median_ms']:.1f}x "
        f"| {slow['min_ms'] / fast['min_ms']:.1f}x |"
    )


def force_simd_path(simd: str | None, library: str) -> str:
    """The delegate's kernel path for this run: ``simd`` forced (for this process and the
    child processes that time the models: their delegates read ``BINLAND_SIMD``), or the
    fastest this CPU runs when None. Raises ValueError for a path this CPU cannot run."""
    import edge.native as native

    if simd is not None:
        available = native.simd_paths_available(library)
        if simd not in available:
            raise ValueError(f"--simd {simd}: this CPU runs {', '.join(available)}")
        os.environ["BINLAND_SIMD"] = simd
    return simd or native.simd_path(library)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.kernels",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument("--size", type=int, default=256, help="input size in pixels (default 256)")
    p.add_argument("--features", type=int, default=256, help="hourglass width (default 256)")
    p.add_argument("--depth", type=int, default=4, help="hourglass depth (default 4)")
    p.add_argument("--threads", type=int, default=2, help="threads for every runtime (default 2)")
    p.add_argument("--runs", type=int, default=20, help="timed runs per configuration")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first")
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="interleaved rounds over all configurations (default 2); each round's "
        "ratios are listed, the main table pools the rounds",
    )
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached models")
    p.add_argument(
        "--simd",
        default=None,
        metavar="PATH",
        help="force this kernel path of the delegate (avx512-vpopcntdq, avx2, popcnt, portable; "
        "default: the fastest this CPU runs), e.g. to measure the AVX2 path on an AVX-512 "
        "host; the table names the path that ran",
    )
    p.add_argument("--output", type=Path, default=RESULTS, help="markdown table to write")
    # Internal: one configuration in a child process.
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--runtime", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--library", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        return worker(args)

    import edge.native as native

    library = str(native.ensure_library())
    try:
        simd = force_simd_path(args.simd, library)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = build_models(args.size, args.features, args.depth, args.rebuild)
    configs = [
        ("ai-edge-litert + binland delegate", "ai_edge_litert", info["binary"], library),
        ("tflite-runtime + binland delegate", "tflite_runtime", info["binary"], library),
        ("float twin, ai-edge-litert XNNPACK", "ai_edge_litert", info["float"], None),
        ("float twin, tflite-runtime XNNPACK", "tflite_runtime", info["float"], None),
        ("LCE interpreter", "lce", info["binary"], None),
    ]
    from tqdm import tqdm

    # Rounds interleave the configurations, so a load change on a shared machine hits all of
    # them; each round's ratios are reported, and the pooled times give the main table.
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    per_round: dict[str, list[dict]] = {name: [] for name, *_ in configs}
    steps = tqdm(total=args.rounds * len(configs), desc="timing", unit="config")
    for _ in range(args.rounds):
        for name, runtime, model, lib in configs:
            per_round[name].append(run_config(runtime, model, lib, args))
            steps.update()
    steps.close()
    rows = {name: pool(results) for name, results in per_round.items()}

    clock = cpu_clock_ghz()
    per_cycle, why = popcount_throughput(simd)
    nominal_ms = 1e3 * info["binary_macs"] / (per_cycle * clock * 1e9 * args.threads)
    peak = native.kernel_peak(simd, 1.0, library)  # binary MACs/s, one core, in cache
    limit_ms = 1e3 * info["binary_macs"] / (peak * args.threads)
    ours = rows["ai-edge-litert + binland delegate"]
    twin = rows["float twin, ai-edge-litert XNNPACK"]
    ours_tfl = rows["tflite-runtime + binland delegate"]
    twin_tfl = rows["float twin, tflite-runtime XNNPACK"]
    lce_row = rows["LCE interpreter"]

    cpu = cpu_name()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"# Kernel benchmark: 1-stack binary HPM hourglass, {args.size}x{args.size}",
        "",
        f"CPU: {cpu}, {os.cpu_count()} cores, {clock:.2f} GHz; kernel path `{simd}`; "
        f"{args.threads} threads everywhere; {args.rounds} interleaved rounds of {args.runs} "
        f"timed runs after {args.warmup} warm-up per configuration; load average (1 min) "
        f"{load_start:.1f} at the start, {load:.1f} at the end.",
        f"Model: {info['binary_macs'] / 1e9:.2f} G binary MACs + {info['float_macs'] / 1e9:.2f} G "
        f"float MACs; binary {Path(info['binary']).stat().st_size / 1e6:.2f} MB, float twin "
        f"{Path(info['float']).stat().st_size / 1e6:.1f} MB.",
        "",
        "| configuration | median ms | min ms | binary ops ms | delegate float ops ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        binary_ops = f"{r['binary_ops_ms']:.1f}" if r["binary_ops_ms"] is not None else "-"
        float_ops = f"{r['delegate_float_ms']:.1f}" if r["delegate_float_ms"] is not None else "-"
        lines.append(
            f"| {name} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | {binary_ops} | {float_ops} |"
        )
    lines += [
        "",
        "| ratio | medians | minimums |",
        "|---|---:|---:|",
        _ratio("float twin / ours, ai-edge-litert", twin, ours),
        _ratio("float twin / ours, tflite-runtime", twin_tfl, ours_tfl),
        _ratio("LCE interpreter / ours (ai-edge-litert)", lce_row, ours),
        f"| ours, binary ops only / arithmetic limit | {ours['binary_ops_ms'] / limit_ms:.1f}x | - |",
        f"| ours, whole network / arithmetic limit | {ours['median_ms'] / limit_ms:.1f}x "
        f"| {ours['min_ms'] / limit_ms:.1f}x |",
        "",
        "Per round (medians): float twin / ours in ai-edge-litert, in tflite-runtime; binary "
        "ops / arithmetic limit.",
        "",
        "| round | ai-edge-litert | tflite-runtime | binary ops / limit |",
        "|---|---:|---:|---:|",
    ]
    for k in range(args.rounds):
        o, t = ours["rounds"][k], twin["rounds"][k]
        ot, tt = ours_tfl["rounds"][k], twin_tfl["rounds"][k]
        lines.append(
            f"| {k + 1} | {t['median_ms'] / o['median_ms']:.1f}x "
            f"| {tt['median_ms'] / ot['median_ms']:.1f}x "
            f"| {o['binary_ops_ms'] / limit_ms:.1f}x |"
        )
    lines += [
        "",
        f"Arithmetic limit: {info['binary_macs'] / 1e9:.2f} G binary MACs / ({peak / 1e9:.0f} G "
        f"binary MACs/s per core x {args.threads} cores) = {limit_ms:.2f} ms. The per-core rate "
        f"is measured: the `{simd}` micro-kernel on cache-resident data (edge.native.kernel_peak, "
        f"best burst), i.e. {peak / (clock * 1e9):.0f} binary MACs per cycle at the nominal "
        f"{clock:.2f} GHz. A nominal estimate from the instruction mix ({why}) gives "
        f"{per_cycle:.0f} MACs per cycle, {nominal_ms:.2f} ms; cores that issue more vector "
        "instructions per cycle (or clock higher) beat it, hence the measurement. "
        "'binary ops ms' is the mean time per run inside the delegate in the LCE ops "
        "(BINLAND_PROFILE), including the float work the delegate fused into them: the "
        "BatchNorm MUL/ADD before each quantize, the quantize done in the previous binary "
        "conv's epilogue, and the conv writing into the block's concat (+ skip ADD). 'delegate "
        "float ops ms' is the builtin float ops it ran on their own: the concats and ADDs "
        "not written in place by their convs (with the quantize an ADD does for the next "
        "conv), the max pools and the nearest-neighbour upsampling. The rest of 'ours' is "
        "the runtime's float convolutions (stem, 1x1 skip convs, heads) under XNNPACK.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
