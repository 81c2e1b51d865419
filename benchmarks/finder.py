"""The 1-bit finders against MediaPipe's detectors: time and size, in one interleaved run.

    python -m benchmarks.finder                    # the bundled finders, or untrained ones
    python -m benchmarks.finder --person runs/person_finder/model.tflite --rounds 5

The finder issue's budget: the person finder at most a third of BlazePose's person detector's
time here (2 threads), and at most 0.5 MB. Each finder is timed beside its teacher's detector
(the person finder beside ``pose_detection.tflite``, the face finder beside BlazeFace's
``face_detection_short_range.tflite``) with the timer of :mod:`benchmarks.kernels`: every
model in its own process, ours in a stock runtime with the binland delegate, MediaPipe's under
the runtime's XNNPACK, rounds interleaving all of them so a change of load hits them alike.

A finder file not given is ``edge/models/<kind>_finder.tflite`` when it exists, else an
untrained network of ``configs/<kind>_finder.yaml`` (built, its BatchNorm statistics drawn as
training leaves them, and converted by the project's converter; cached in
``~/.cache/binland/bench``): time and size do not depend on the weights. The table, with the
host's CPU and kernel path, goes to ``benchmarks/results/finder.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import (
    REPO,
    RESULTS_DIR,
    child_env,
    kernels,
    module_command,
    uptime,
    write_result,
)
from edge import cache_dir, cpu_name
from edge.cli import ArgumentParser, int_in_range, run_cli
from edge.errors import EdgeError

RESULTS = RESULTS_DIR / "finder.md"
CACHE = cache_dir("bench")
KINDS = ("person", "face")
# Each finder's teacher detector (the MediaPipe file in the teacher cache).
DETECTORS = {"person": "pose_detection", "face": "face_detection_short_range"}
TIME_BUDGET = 3.0  # the finder at least this many times faster than its detector
SIZE_BUDGET = 500_000  # bytes


class BenchError(EdgeError):
    """A model is missing or a timing run failed."""


def _randomise_batchnorm(model, seed: int = 0) -> None:
    """BatchNorm statistics as training leaves them (all different): with the fresh ones the
    converter merges identical constants, and the file would come out smaller than a
    trained model's."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            gamma = rng.uniform(0.5, 2.0, n) * rng.choice([-1.0, 1.0], n, p=[0.1, 0.9])
            layer.set_weights(
                [gamma, rng.normal(size=n), rng.normal(size=n), rng.uniform(0.5, 2.0, n)]
            )


def _build_worker(config: Path, out: Path) -> int:
    """Child process: the untrained finder of ``config`` converted to ``out`` (LCE)."""
    # isort: off
    import converters  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

    # isort: on
    from converters import convert
    from training.artifacts import save_trained
    from training.config import load_config
    from training.finder.task import finder_metadata
    from training.tasks import task_for_config

    cfg = load_config(config)
    task = task_for_config(cfg)
    classes = tuple(cfg.finder.classes)
    model = task.build_model(cfg, len(classes))
    _randomise_batchnorm(model)
    keras = out.with_suffix(".keras")
    save_trained(model, finder_metadata(cfg, classes), keras)
    with contextlib.redirect_stdout(sys.stderr):
        status = convert.main([str(keras), "-o", str(out), "--check-inputs", "0"])
    keras.unlink()
    keras.with_suffix(".landmarks.json").unlink()
    return status


def untrained_finder(kind: str, rebuild: bool) -> Path:
    """The untrained finder of configs/<kind>_finder.yaml, converted (cached by the config's
    content)."""
    config = REPO / "configs" / f"{kind}_finder.yaml"
    digest = hashlib.sha256(config.read_bytes()).hexdigest()[:12]
    out = CACHE / f"finder-{kind}-{digest}.tflite"
    if out.is_file() and not rebuild:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"building an untrained {kind} finder from {config.name} (nice 19)", file=sys.stderr)
    cmd = [
        "nice",
        "-n",
        "19",
        *module_command("benchmarks.finder", "--build-worker", str(config), str(out)),
    ]
    env = child_env(dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if subprocess.run(cmd, env=env).returncode != 0 or not out.is_file():
        raise BenchError(f"building the untrained {kind} finder failed (see above)")
    return out


def budget_verdicts(rows: list[dict], kinds: list[str]) -> list[str]:
    """The budget lines, and each finder row's ratios to its detector. The time budget
    passes only when both the medians' and the fastest runs' ratios reach it: on a shared
    machine one of the two can flatter either model."""
    out = []
    for kind in kinds:
        finder, detector = (r for r in rows if r["kind"] == kind)
        finder["ratio"] = detector["median_ms"] / finder["median_ms"]
        finder["ratio_min"] = detector["min_ms"] / finder["min_ms"]
        rounds = [d / f for d, f in zip(detector["per_round"], finder["per_round"], strict=True)]
        fast = min(finder["ratio"], finder["ratio_min"]) >= TIME_BUDGET
        small = finder["size_bytes"] <= SIZE_BUDGET
        out.append(
            f"{kind} finder: {'PASS' if fast else 'FAIL'} time, {finder['ratio']:.2f}x faster "
            f"than {DETECTORS[kind]} by the medians ({finder['median_ms']:.2f} vs "
            f"{detector['median_ms']:.2f} ms), {finder['ratio_min']:.2f}x by the fastest runs "
            f"({finder['min_ms']:.2f} vs {detector['min_ms']:.2f} ms); per round "
            f"{', '.join(f'{x:.2f}x' for x in rounds)}; budget {TIME_BUDGET:g}x"
            + (
                " (set for the person finder; the issue gives the face finder none)"
                if kind == "face"
                else ""
            )
        )
        out.append(
            f"{kind} finder: {'PASS' if small else 'FAIL'} size, {finder['size_bytes']:,} "
            f"bytes (budget {SIZE_BUDGET:,})"
        )
    return out


def render(result: dict) -> str:
    lines = [
        "# The 1-bit finders against MediaPipe's detectors",
        "",
        f"CPU: {result['cpu']}, {result['cores']} cores; ISA / kernel path of the binland "
        f"delegate: `{result['simd']}`; {result['threads']} threads for every model, runtime "
        f"`{result['runtime']}` (the finders: + the binland native delegate; MediaPipe's "
        f"detectors: the runtime's XNNPACK); {result['rounds']} interleaved rounds of "
        f"{result['runs']} timed runs after {result['warmup']} warm-up per model, one process "
        f"each (benchmarks.kernels' timer), pooled. {result['date']}.",
        "",
        f"Load before: `{result['uptime_before']}`  ",
        f"Load after: `{result['uptime_after']}`",
        "",
        "| model | file | input | median ms | min ms | detector / finder (median) | "
        "detector / finder (min) | size MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        ratio = "-" if r.get("ratio") is None else f"{r['ratio']:.2f}x"
        ratio_min = "-" if r.get("ratio_min") is None else f"{r['ratio_min']:.2f}x"
        lines.append(
            f"| {r['name']} | {r['file']} | {r['size']} | {r['median_ms']:.2f} | "
            f"{r['min_ms']:.2f} | {ratio} | {ratio_min} | {r['size_bytes'] / 1e6:.3f} |"
        )
    lines += [
        "",
        "Per round (medians, ms):",
        "",
        "| model | " + " | ".join(f"round {k + 1}" for k in range(result["rounds"])) + " |",
        "|---|" + "---:|" * result["rounds"],
    ]
    for r in result["rows"]:
        lines.append(f"| {r['name']} | " + " | ".join(f"{m:.2f}" for m in r["per_round"]) + " |")
    lines += ["", "## Budget (the finder issue)", ""]
    for line in result["verdicts"]:
        lines.append(f"- {line}")
    lines.append("")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m benchmarks.finder",
        description="Time the 1-bit person and face finders against MediaPipe's person "
        "detector and BlazeFace (2 threads, interleaved rounds, one process per model) and "
        "check the finder issue's budget: at most a third of the detector's time and 0.5 MB. "
        "Writes benchmarks/results/finder.md.",
    )
    for kind in KINDS:
        p.add_argument(
            f"--{kind}",
            type=Path,
            default=None,
            metavar="TFLITE",
            help=f"the {kind} finder (default: edge/models/{kind}_finder.tflite, else an "
            f"untrained network of configs/{kind}_finder.yaml)",
        )
    p.add_argument(
        "--only",
        choices=KINDS,
        default=None,
        help="time only this finder and its detector (default: both)",
    )
    p.add_argument(
        "--threads", type=int_in_range(1, 64), default=2, help="threads for every model (2)"
    )
    p.add_argument("--runs", type=int_in_range(1, 100000), default=20, help="timed runs (20)")
    p.add_argument("--warmup", type=int_in_range(0, 1000), default=3, help="untimed runs (3)")
    p.add_argument("--rounds", type=int_in_range(1, 100), default=3, help="interleaved rounds (3)")
    p.add_argument(
        "--runtime",
        choices=("ai_edge_litert", "tflite_runtime"),
        default="ai_edge_litert",
        help="the stock runtime every model runs in (default ai_edge_litert)",
    )
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached untrained finders")
    p.add_argument("--output", type=Path, default=RESULTS, help="markdown table to write")
    p.add_argument("--build-worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    return p


def _finder_file(kind: str, given: Path | None, rebuild: bool) -> tuple[Path, str]:
    if given is not None:
        if not given.is_file():
            raise BenchError(f"--{kind}: {given} not found")
        return given, str(given)
    bundled = REPO / "edge" / "models" / f"{kind}_finder.tflite"
    if bundled.is_file():
        return bundled, f"edge/models/{bundled.name}"
    return untrained_finder(kind, rebuild), f"untrained configs/{kind}_finder.yaml"


def run(args: argparse.Namespace) -> int:
    import edge.native as native
    from edge.host import teacher_dir
    from edge.metadata import read_metadata

    kinds = [args.only] if args.only else list(KINDS)
    rows = []
    for kind in kinds:
        detector = teacher_dir() / f"{DETECTORS[kind]}.tflite"
        if not detector.is_file():
            raise BenchError(
                f"{detector} not found: run python -m training.label once (it fetches "
                "MediaPipe's models) or set BINLAND_TEACHERS"
            )
        path, shown = _finder_file(kind, getattr(args, kind), args.rebuild)
        meta = read_metadata(path)
        if meta.task != "finder":
            raise BenchError(f"{path} is a {meta.task} model, not a finder")
        rows.append(
            {
                "name": f"{kind} finder (1-bit)",
                "kind": kind,
                "file": shown,
                "model": str(path),
                "size": meta.input_size[0],
                "library": True,
            }
        )
        # BlazeFace 128x128, the pose detector 224x224: the detector's own input.
        from edge.backends import create_backend

        size = int(create_backend("tflite", detector, num_threads=1).input_shape[1])
        rows.append(
            {
                "name": f"{DETECTORS[kind]} (MediaPipe, float)",
                "kind": kind,
                "file": f"teacher cache/{detector.name}",
                "model": str(detector),
                "size": size,
                "library": False,
            }
        )
    library = str(native.ensure_library())
    from tqdm import tqdm

    uptime_before = uptime()
    per_round: dict[str, list[dict]] = {r["name"]: [] for r in rows}
    steps = tqdm(total=args.rounds * len(rows), desc="timing", unit="model")
    for _ in range(args.rounds):
        for r in rows:
            timer = argparse.Namespace(
                threads=args.threads, runs=args.runs, warmup=args.warmup, size=r["size"]
            )
            try:
                per_round[r["name"]].append(
                    kernels.run_config(
                        args.runtime, r["model"], library if r["library"] else None, timer
                    )
                )
            except RuntimeError as exc:
                raise BenchError(" ".join(str(exc).split())[:400]) from None
            steps.update()
    steps.close()
    uptime_after = uptime()
    for r in rows:
        pooled = kernels.pool(per_round[r["name"]])
        r.update(
            median_ms=pooled["median_ms"],
            min_ms=pooled["min_ms"],
            per_round=[x["median_ms"] for x in per_round[r["name"]]],
            size_bytes=Path(r["model"]).stat().st_size,
        )
    verdicts = budget_verdicts(rows, kinds)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "simd": native.simd_path(library),
        "threads": args.threads,
        "runtime": args.runtime,
        "rounds": args.rounds,
        "runs": args.runs,
        "warmup": args.warmup,
        "uptime_before": uptime_before,
        "uptime_after": uptime_after,
        "rows": rows,
        "verdicts": verdicts,
    }
    write_result(args.output, render(result), result)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.build_worker is not None:
        return _build_worker(*args.build_worker)
    return run_cli(lambda: run(args), errors=(OSError,))


if __name__ == "__main__":
    sys.exit(main())
