"""Train, convert, score and bundle the demo models (edge/models/pose.tflite, face.tflite).

    python examples/train_demo.py                       # both: pose ~1 hour, face ~15 minutes
    python examples/train_demo.py --task face --minutes 5 --out runs/demo --no-install

Everything goes through the project's own command-line tools, so this file is also a worked
example of the whole pipeline:

1. ``python -m training.train --config configs/demo_<task>.yaml --out <out>/<task>``
   (a 1-stack binary HPM hourglass on the procedural ``synthetic-pose`` or
   ``synthetic-face`` set);
2. ``python -m converters.convert <out>/<task>/model.keras --format lce`` (bitpacked
   ``LceBconv2d`` ops, landmark metadata embedded);
3. ``python -m training.evaluate`` on the synthetic validation split, once for the Keras model
   and once for the .tflite, so the two numbers show what conversion cost;
4. copy the .tflite to ``edge/models/`` and record the numbers in
   ``benchmarks/results/demo_models.md`` (+ ``.json``).

A run folder that already holds a finished ``model.keras`` is reused (delete it to retrain);
one with checkpoints but no model continues with ``--resume``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as a plain script from anywhere

TASKS = {
    # task: (config, dataset name for training.evaluate, headline metric, better when)
    "pose": ("configs/demo_pose.yaml", "synthetic-pose", "pckh@0.5", "higher"),
    "face": ("configs/demo_face.yaml", "synthetic-face", "nme", "lower"),
}
REPORT = REPO / "benchmarks" / "results" / "demo_models.md"


class DemoError(Exception):
    """A step of the pipeline failed; the message says which and how to rerun it."""


def _env() -> dict:
    env = dict(os.environ)
    # The project's CLIs set this themselves; a child that imports TF first still needs it.
    env.setdefault("TF_USE_LEGACY_KERAS", "1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def _run(args: list[str], what: str) -> float:
    """Run one of the project's CLIs (output streams through); return its wall time in s."""
    command = [sys.executable, "-m", *args]
    print(f"\n$ python -m {' '.join(args)}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=_env(), check=False)
    if done.returncode != 0:
        raise DemoError(f"{what} failed (exit {done.returncode}): python -m {' '.join(args)}")
    return time.perf_counter() - started


def _config(task: str):
    from training.config import load_config

    return load_config(REPO / TASKS[task][0])


def _history(run_dir: Path) -> list[dict]:
    path = run_dir / "history.jsonl"
    if not path.is_file():
        return []
    return [json.loads(t) for t in path.read_text().splitlines() if t.strip()]


def steps_for_budget(task: str, out: Path, minutes: float) -> tuple[int, float]:
    """Steps per epoch that fit the configured epochs into ``minutes`` on this machine.

    A short probe run (2 epochs of 10 steps; the first one pays for graph tracing) measures
    seconds per step and the per-epoch validation time. The epoch count and the learning-rate
    drops stay as configured, so a shorter budget keeps the recipe's shape with fewer steps.
    Returns (steps per epoch, probe seconds).
    """
    config = _config(task)
    probe = out / f"{task}_probe"
    shutil.rmtree(probe, ignore_errors=True)
    seconds = _run(["training.train", "--config", TASKS[task][0], "--out", str(probe),
                    "epochs=2", "steps_per_epoch=10", "--verbose", "2"], "timing probe")  # fmt: skip
    last = _history(probe)[-1]
    shutil.rmtree(probe, ignore_errors=True)
    per_step = last["epoch_seconds"] / 10
    per_epoch_budget = (minutes * 60 - seconds) / config.epochs - last["val_seconds"]
    steps = int(per_epoch_budget / per_step)
    if steps < 10:
        raise DemoError(f"{minutes} minutes leaves {max(steps, 0)} steps per epoch on this "
                        f"machine ({per_step:.2f} s per step); give more --minutes")  # fmt: skip
    print(f"timing probe: {per_step:.2f} s per step, {last['val_seconds']:.1f} s validation "
          f"-> {steps} steps per epoch x {config.epochs} epochs", flush=True)  # fmt: skip
    return steps, seconds


def train(task: str, out: Path, minutes: float | None) -> dict:
    run_dir = out / task
    model = run_dir / "model.keras"
    if model.is_file() and (run_dir / "summary.json").is_file():
        print(f"{model} exists: reusing it (delete {run_dir} to retrain)", flush=True)
        return {"reused": True, "seconds": None}
    if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
        seconds = _run(["training.train", "--out", str(run_dir), "--resume", "--verbose", "2"],
                       "training (resumed)")  # fmt: skip
        return {"reused": False, "seconds": seconds, "resumed": True}
    overrides, probe_seconds = [], 0.0
    if minutes is not None:
        steps, probe_seconds = steps_for_budget(task, out, minutes)
        overrides = [f"steps_per_epoch={steps}"]
    seconds = _run(["training.train", "--config", TASKS[task][0], "--out", str(run_dir),
                    *overrides, "--verbose", "2"], "training")  # fmt: skip
    return {"reused": False, "seconds": seconds + probe_seconds}


def evaluate(task: str, model: Path, out: Path, size: int) -> dict:
    """training.evaluate on the validation split the run validated on, with ``size`` samples."""
    config = _config(task)
    dataset = TASKS[task][1]
    options = {**config.dataset.options, **config.dataset.val_options, "size": size}
    args = ["training.evaluate", "--model", str(model), "--dataset", dataset,
            "--split", config.dataset.val_split, "--out", str(out)]  # fmt: skip
    for key, value in options.items():
        args += ["--option", f"{key}={value}"]
    _run(args, f"evaluating {model.name}")
    report = json.loads((out / "metrics.json").read_text())
    return {"runtime": report["runtime"], "headline": report["headline"], **report["values"]}


def make_demo(task: str, out: Path, *, minutes: float | None, eval_size: int,
              install: bool) -> dict:  # fmt: skip
    run_dir = out / task
    trained = train(task, out, minutes)
    tflite = run_dir / f"{task}.tflite"
    _run(["converters.convert", str(run_dir / "model.keras"), "-o", str(tflite),
          "--format", "lce"], "conversion")  # fmt: skip
    keras_score = evaluate(task, run_dir / "model.keras", run_dir / "eval_keras", eval_size)
    tflite_score = evaluate(task, tflite, run_dir / "eval_tflite", eval_size)
    config = _config(task)
    m = config.model
    history = _history(run_dir)
    train_seconds = sum(h.get("epoch_seconds", 0.0) + h.get("val_seconds", 0.0) for h in history)
    result = {
        "task": task,
        "config": TASKS[task][0],
        "dataset": TASKS[task][1],
        "model": f"{m.num_stacks}-stack {'binary' if m.binary else 'real'} {m.block} hourglass, "
        f"depth {m.depth}, {m.features} features, input {config.input_size}",
        "epochs": config.epochs,
        "steps_per_epoch": _saved_steps(run_dir),
        "batch_size": config.batch_size,
        "train_minutes": round(train_seconds / 60, 1),
        "tflite_bytes": tflite.stat().st_size,
        "eval_samples": eval_size,
        "keras": keras_score,
        "tflite": tflite_score,
        "reused_run": trained["reused"],
    }
    if install:
        target = REPO / "edge" / "models" / f"{task}.tflite"
        shutil.copyfile(tflite, target)
        result["installed"] = str(target.relative_to(REPO))
        print(f"installed {target}", flush=True)
    return result


def _saved_steps(run_dir: Path) -> int | None:
    state = run_dir / "state.json"
    return json.loads(state.read_text()).get("steps_per_epoch") if state.is_file() else None


def write_report(results: dict[str, dict], path: Path) -> None:
    """Merge this run's tasks into ``path`` (.md) and its .json twin, keeping other tasks."""
    json_path = path.with_suffix(".json")
    merged = json.loads(json_path.read_text()) if json_path.is_file() else {}
    merged.update(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(merged, indent=2) + "\n")
    lines = [
        "# Bundled demo models",
        "",
        "Made by `python examples/train_demo.py` (train -> convert `--format lce` -> "
        "`training.evaluate` on the synthetic validation split). Procedural data only: these "
        "numbers say the pipeline works end to end, not how the models do on real photos.",
        "",
        "| task | model | train (min) | .tflite | metric | Keras | .tflite | runtime |",
        "|---|---|---:|---:|---|---:|---:|---|",
    ]
    for task in sorted(merged):
        r = merged[task]
        key = r["keras"]["headline"]
        lines.append(
            f"| {task} | {r['model']}; {r['epochs']} epochs x {r['steps_per_epoch']} steps of "
            f"{r['batch_size']} | {r['train_minutes']} | {r['tflite_bytes'] / 1e6:.3f} MB | "
            f"{key} ({'lower' if key == 'nme' else 'higher'} is better) | "
            f"{r['keras'][key]:.2f} | {r['tflite'][key]:.2f} | {r['tflite']['runtime']} |"
        )
    lines += ["", "Validation: the `val` split of the synthetic set (seed 0), "
              + ", ".join(f"{t}: {merged[t]['eval_samples']} samples" for t in sorted(merged))
              + ". Train minutes are the epochs' wall time on the machine that trained them.",
              ""]  # fmt: skip
    for task in sorted(merged):
        r = merged[task]
        extras = {k: v for k, v in r["tflite"].items() if k not in ("runtime", "headline")}
        lines.append(f"- {task} (.tflite): " + ", ".join(
            f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in extras.items()))  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python examples/train_demo.py",
        description="Train the bundled demo models with the project's own pipeline (train, "
        "convert to a bitpacked LCE .tflite, evaluate Keras and .tflite) and install them in "
        "edge/models/.",
    )
    p.add_argument("--task", choices=("pose", "face", "both"), default="both",
                   help="which demo model to make (default: both)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("runs/demo"),
                   help="folder for the training runs, .tflite files and evaluations "
                   "(default: runs/demo); a finished run there is reused")  # fmt: skip
    p.add_argument("--minutes", type=float, default=None,
                   help="training time per model on this machine: a short probe measures the "
                   "step time and steps_per_epoch is set to fit; approximate, since a busy "
                   "machine can run slower than the probe saw (default: the config as is, "
                   "on a 2-core CPU about an hour for pose, 15 minutes for face)")  # fmt: skip
    p.add_argument("--eval-size", type=int, default=500,
                   help="validation samples scored by training.evaluate (default 500)")  # fmt: skip
    p.add_argument("--no-install", dest="install", action="store_false",
                   help="do not copy the .tflite files to edge/models/ nor update the report")  # fmt: skip
    p.add_argument("--report", type=Path, default=REPORT,
                   help="markdown report to update (a .json twin is written beside it; "
                   "default: benchmarks/results/demo_models.md)")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.minutes is not None and args.minutes <= 0:
        print("error: --minutes must be positive", file=sys.stderr)
        return 2
    if args.eval_size < 1:
        print("error: --eval-size must be at least 1", file=sys.stderr)
        return 2
    out = args.out if args.out.is_absolute() else Path.cwd() / args.out
    tasks = ["pose", "face"] if args.task == "both" else [args.task]
    results = {}
    try:
        for task in tasks:
            results[task] = make_demo(task, out, minutes=args.minutes, eval_size=args.eval_size,
                                      install=args.install)  # fmt: skip
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; rerun the same command to continue from {out}", file=sys.stderr)
        return 130
    if args.install:
        write_report(results, args.report)
        print(f"\nwrote {args.report}")
    for task, r in results.items():
        key = r["keras"]["headline"]
        print(f"{task}: {key} Keras {r['keras'][key]:.2f}, .tflite {r['tflite'][key]:.2f} "
              f"({r['tflite_bytes'] / 1e6:.3f} MB)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
