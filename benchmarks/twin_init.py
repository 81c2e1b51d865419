"""Does a real-valued twin help its binary student? The same step budget, two recipes.

The real-to-binary recipe (Bulat's later work): train the network real-valued first, then
start the binary network from its weights. Compared here, at one total number of steps:

- ``binary``: the binary network trained from scratch for all the steps;
- ``twin -> binary``: the real-valued twin (``model.binary=false``) for half the steps, then
  the binary network, initialised from it (``init_from``), for the other half.

Both use the bundled pose model's first-stage config (``configs/real_pose_96.yaml``: real
footage labelled by the teacher plus procedural figures) with a shorter schedule, and both
are scored by ``training.evaluate`` on the real held-out clips (PCK@0.2 of the torso against
the teacher, Keras model). Every step is one of the project's CLIs in its own process::

    python -m benchmarks.twin_init                       # about 20 minutes on a 2-core CPU
    python -m benchmarks.twin_init --steps 2400 --out runs/twin_init_long

The table goes to ``benchmarks/results/twin_init.md`` (+ ``.json``). A finished run folder is
reused, so an interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import REPO, RESULTS_DIR, child_env
from edge.cli import ArgumentParser, HelpFormatter, run_cli
from edge.errors import EdgeError

CONFIG = "configs/real_pose_96.yaml"
RESULTS = RESULTS_DIR / "twin_init.md"
EPOCH_STEPS = 150  # steps per epoch: one validation (and learning-rate step) per 150 steps


class BenchError(EdgeError):
    """A step failed; the message says which."""


def _python(args: list[str], what: str) -> float:
    env = child_env(dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, check=False)
    if done.returncode:
        raise BenchError(f"{what} failed (exit {done.returncode}): python -m {' '.join(args)}")
    return time.perf_counter() - t0


def train(out: Path, epochs: int, *overrides: str) -> float | None:
    """``training.train`` of CONFIG into ``out`` for ``epochs`` of EPOCH_STEPS; the learning
    rate drops 4x for the last quarter of the epochs. None: reused a finished run."""
    if (out / "model.keras").is_file() and (out / "summary.json").is_file():
        return None
    drop = max(1, epochs - max(1, epochs // 4))
    return _python(
        [
            "training.train",
            "--config",
            CONFIG,
            "--out",
            str(out),
            "--verbose",
            "2",
            f"epochs={epochs}",
            f"steps_per_epoch={EPOCH_STEPS}",
            f"optimizer.schedule=[[{drop}, 5.0e-4]]",
            *overrides,
        ],
        f"training {out.name}",
    )


def evaluate(model: Path, data: str, threads: int) -> dict:
    out = model.parent / "eval_real"
    _python(
        [
            "training.evaluate",
            "--model",
            str(model),
            "--dataset",
            "mpii",
            "--data",
            data,
            "--split",
            "val",
            "--protocol",
            "pck_torso",
            "--protocol",
            "pckh",
            "--out",
            str(out),
            "--threads",
            str(threads),
        ],
        f"evaluating {model.parent.name}",
    )
    report = json.loads((out / "metrics.json").read_text())
    values = dict(report["values"])
    for extra in report.get("also", {}).values():
        values.update({k: v for k, v in extra.items() if k not in values})
    return values


def write_table(rows: list[dict], meta: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    lines = [
        "# Real-valued twin -> binary student, at one step budget",
        "",
        f"Made by `python -m benchmarks.twin_init --steps {meta['steps']}` on "
        f"{meta['date']}; load average {meta['load_before']} before, {meta['load_after']} "
        f"after (2 cores). Config `{CONFIG}` (1-stack binary HPM hourglass, 96 px, batch "
        f"{meta['batch_size']}), {meta['steps']} steps in all, seed 0. Scored by "
        "`training.evaluate` (Keras) on the real held-out clips against the teacher's labels "
        f"({rows[0]['samples']} frames).",
        "",
        "| recipe | real-valued steps | binary steps | PCK@0.2 torso | PCKh@0.5 | train min |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['recipe']} | {r['real_steps']} | {r['binary_steps']} | "
            f"{r['pck@0.2']:.1f} | {r['pckh@0.5']:.1f} | {r['minutes']} |"
        )
    lines += ["", meta["reading"], ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(
        prog="python -m benchmarks.twin_init",
        description=__doc__.split("\n")[0],
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--steps",
        type=int,
        default=1200,
        metavar="N",
        help="training steps per recipe, a multiple of 300 (the twin recipe "
        "splits them in two halves of whole 150-step epochs)",
    )
    p.add_argument(
        "--data",
        default="data/real_pose",
        metavar="DIR",
        help="teacher labels (python -m training.label pose ...; see docs/training.md)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/twin_init"),
        metavar="DIR",
        help="run folders (reused when finished)",
    )
    p.add_argument("--threads", type=int, default=2, metavar="N", help="evaluation threads")
    p.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        metavar="FILE.md",
        help="table to write (a .json twin beside it)",
    )
    args = p.parse_args(argv)
    if args.steps < 2 * EPOCH_STEPS or args.steps % (2 * EPOCH_STEPS):
        raise BenchError(f"--steps must be a positive multiple of {2 * EPOCH_STEPS}")
    if not (REPO / args.data).is_dir():
        raise BenchError(
            f"{args.data}: no teacher labels; make them with python -m "
            "training.label pose (docs/training.md, 'Train on your own footage')"
        )
    from training.config import load_config

    epochs = args.steps // EPOCH_STEPS
    out = args.out.resolve()
    load_before = round(os.getloadavg()[0], 1)
    timed = {
        "binary": train(out / "binary", epochs),
        "twin": train(out / "twin", epochs // 2, "model.binary=false"),
    }
    timed["student"] = train(
        out / "student", epochs // 2, f"init_from={out / 'twin' / 'model.keras'}"
    )
    minutes = {k: "-" if v is None else round(v / 60, 1) for k, v in timed.items()}
    binary = evaluate(out / "binary" / "model.keras", args.data, args.threads)
    twin = evaluate(out / "twin" / "model.keras", args.data, args.threads)
    student = evaluate(out / "student" / "model.keras", args.data, args.threads)
    half = args.steps // 2
    rows = [
        {
            "recipe": "binary from scratch",
            "real_steps": 0,
            "binary_steps": args.steps,
            "minutes": minutes["binary"],
            **binary,
        },
        {
            "recipe": "real-valued twin alone (not binary: for reference)",
            "real_steps": half,
            "binary_steps": 0,
            "minutes": minutes["twin"],
            **twin,
        },
        {
            "recipe": "twin -> binary student",
            "real_steps": half,
            "binary_steps": half,
            "minutes": minutes["student"],
            **student,
        },
    ]
    gain = student["pck@0.2"] - binary["pck@0.2"]
    reading = (
        f"Reading: at this budget the twin's start is worth {gain:+.1f} PCK@0.2 points "
        "to the binary network. One seed and a short budget: differences of about a "
        "point are within run-to-run noise."
    )
    meta = {
        "steps": args.steps,
        "date": time.strftime("%Y-%m-%d"),
        "load_before": load_before,
        "load_after": round(os.getloadavg()[0], 1),
        "batch_size": load_config(REPO / CONFIG).batch_size,
        "reading": reading,
    }
    write_table(rows, meta, args.results)
    print(args.results.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, interrupted="interrupted; rerun to continue (finished runs are reused)"))
