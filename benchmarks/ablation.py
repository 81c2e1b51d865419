"""Block ablation at equal parameter budgets: does the HPM block help a binary network?

The paper's claim (Bulat & Tzimiropoulos, TPAMI 2020, Table 1): with binary weights and
activations, the hierarchical, parallel, multi-scale (HPM) block beats Newell's bottleneck at
the same number of parameters, and narrows the gap to the real-valued network.

This script trains, with one recipe and one epoch count for all:

- synthetic-pose: HPM and bottleneck hourglasses, each binary and real-valued (4 models);
  the bottleneck's ``features`` is chosen by ``training.models.features_for_budget`` so its
  parameter count matches the HPM network's;
- synthetic-face: the HPM hourglass, binary and real-valued (2 models);

then converts each (``--format lce`` for binary, ``--format float`` for real-valued) and scores
the Keras model and the flatbuffer with ``training.evaluate``. Every step is one of the
project's CLIs in its own process, one at a time::

    python -m benchmarks.ablation                       # about 45 minutes on a 2-core CPU
    python -m benchmarks.ablation --epochs 4 --steps-per-epoch 50 --out runs/ablation_quick

``--wiring`` runs the released model's wiring variants instead (training.models.build_hourglass:
binary skip 1x1 convs, a binary first head conv, a Sigmoid output with BCE or MSE, blocks per
hourglass level): the binary HPM network of each task once per named wiring (see
:data:`WIRINGS`), everything else as above, into ``benchmarks/results/ablation_wiring.md``::

    python -m benchmarks.ablation --wiring paper binary_skip binary_head released --tasks pose

Results go to ``benchmarks/results/ablation.md`` and ``.json``, rewritten after every model, so
an interrupted run still leaves a (partial, marked) table; rerunning continues where it
stopped (a model whose run folder has ``model.keras`` is not retrained).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from benchmarks import REPO, RESULTS_DIR, child_env

RESULTS = RESULTS_DIR / "ablation.md"
BASE_CONFIGS = {"pose": "configs/synthetic_pose.yaml", "face": "configs/synthetic_face.yaml"}
DATASETS = {"pose": "synthetic-pose", "face": "synthetic-face"}
BINARY_LABELS = {"binary": "yes", "binary_scaled": "yes, x mean abs W", "real": "no"}
WIRING_RESULTS = RESULTS_DIR / "ablation_wiring.md"
# The released model's wiring switches (config keys -> values), each alone and all together.
# "paper" is the default network of the paper's size check.
WIRINGS: dict[str, dict] = {
    "paper": {},
    "binary_skip": {"model.binary_skip": True},
    "binary_head": {"model.binary_head": True},
    "sigmoid_mse": {"model.heatmap_activation": "sigmoid"},
    "sigmoid_bce": {"model.heatmap_activation": "sigmoid", "loss": "bce"},
    "released": {
        "model.binary_skip": True,
        "model.binary_head": True,
        "model.heatmap_activation": "sigmoid",
        "loss": "bce",
    },
    "two_blocks": {"model.blocks_per_level": 2},
}


class AblationError(Exception):
    """A step failed; the message names the command and its log."""


@dataclass
class Variant:
    task: str  # "pose" or "face"
    block: str
    binary: bool
    features: int
    parameters: int = 0
    weight_scale: bool = False  # binary convs times mean|W| per channel (the paper's alpha)
    wiring: str = "paper"  # a key of WIRINGS

    @property
    def kind(self) -> str:
        return ("binary_scaled" if self.weight_scale else "binary") if self.binary else "real"

    @property
    def name(self) -> str:
        tail = "" if self.wiring == "paper" else f"_{self.wiring}"
        return f"{self.task}_{self.block}_{self.kind}{tail}"

    def overrides(self) -> list[str]:
        """The wiring's config overrides, as key=value (YAML values)."""
        return [
            f"{k}={str(v).lower() if isinstance(v, bool) else v}"
            for k, v in WIRINGS[self.wiring].items()
        ]


def _env() -> dict:
    env = child_env()
    env.setdefault("TF_USE_LEGACY_KERAS", "1")
    return env


def variants(
    *, features: int, depth: int, input_size: int, tasks: list[str], weight_scale: bool = False
) -> list[Variant]:
    """The models to train; the bottleneck width is solved for the HPM network's budget."""
    from edge.skeletons import get_skeleton
    from training.models import features_for_budget, hourglass_parameters

    out = []
    for task in tasks:
        k = get_skeleton("mpii16" if task == "pose" else "ibug68").num_landmarks
        common = {"num_stacks": 1, "depth": depth, "num_landmarks": k, "input_size": input_size}
        budget = hourglass_parameters(block="hpm", features=features, **common)
        blocks = ["hpm", "bottleneck"] if task == "pose" else ["hpm"]
        # Binary models first: the binary HPM-vs-bottleneck pair is the claim under test.
        for binary in (True, False):
            for block in blocks:
                f = features
                if block != "hpm":
                    f = features_for_budget(budget, block=block, multiple_of=2, **common)
                n = hourglass_parameters(block=block, features=f, **common)
                out.append(Variant(task, block, binary, f, n, weight_scale and binary))
    return out


def wiring_variants(
    *,
    features: int,
    depth: int,
    input_size: int,
    tasks: list[str],
    wirings: list[str],
    weight_scale: bool = False,
) -> list[Variant]:
    """The binary HPM network of each task in each wiring (parameters differ where a wiring
    adds layers: a binary head's BatchNorm, more blocks per level)."""
    from edge.skeletons import get_skeleton
    from training.models import hourglass_parameters

    out = []
    for task in tasks:
        k = get_skeleton("mpii16" if task == "pose" else "ibug68").num_landmarks
        for wiring in wirings:
            model = {
                key.split(".", 1)[1]: v
                for key, v in WIRINGS[wiring].items()
                if key.startswith("model.")
            }
            n = hourglass_parameters(
                num_stacks=1,
                depth=depth,
                features=features,
                num_landmarks=k,
                block="hpm",
                binary=True,
                **model,
            )
            out.append(Variant(task, "hpm", True, features, n, weight_scale, wiring))
    return out


def frozen_config(task: str, out: Path, overrides: list[str], epochs: int | None) -> Path:
    """The base config with the shared recipe overrides, written once so every model of a task
    trains on exactly the same settings even if configs/ changes during the run. ``epochs``
    (None: the base config's) rescales the learning-rate schedule with it."""
    from training.config import dump_config, load_config

    path = out / f"recipe_{task}.yaml"
    if not path.is_file():
        out.mkdir(parents=True, exist_ok=True)
        config = load_config(REPO / BASE_CONFIGS[task], overrides)
        if epochs is not None and epochs != config.epochs:
            # Keep the learning-rate drops at the same fraction of the run.
            ratio = epochs / config.epochs
            config.optimizer.schedule = [
                [max(1, round(e * ratio)), lr] for e, lr in config.optimizer.schedule
            ]
            config.epochs = epochs
        dump_config(config, path)
    return path


def _run_logged(args: list[str], log: Path, what: str) -> float:
    started = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"\n$ python -m {' '.join(args)}\n")
        f.flush()
        done = subprocess.run(
            [sys.executable, "-m", *args],
            cwd=REPO,
            env=_env(),
            stdout=f,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        raise AblationError(f"{what} failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - started


def train(variant: Variant, config: Path, run_dir: Path, bar) -> float:
    """Train in a child process; the bar follows its history.jsonl one epoch at a time."""
    log = run_dir.parent / f"{variant.name}.log"
    if (run_dir / "model.keras").is_file() and (run_dir / "summary.json").is_file():
        bar.set_postfix_str("reused")
        return json.loads((run_dir / "train_seconds.json").read_text())["seconds"]
    shutil.rmtree(run_dir, ignore_errors=True)
    args = [
        "training.train",
        "--config",
        str(config),
        "--out",
        str(run_dir),
        "--verbose",
        "0",
        f"model.block={variant.block}",
        f"model.binary={str(variant.binary).lower()}",
        f"model.features={variant.features}",
        f"name={variant.name}",
        f"model.weight_scale={str(variant.weight_scale).lower()}",
        *variant.overrides(),
    ]
    started = time.perf_counter()
    with open(log, "w") as f:
        f.write(f"$ python -m {' '.join(args)}\n")
        f.flush()
        child = subprocess.Popen(
            [sys.executable, "-m", *args], cwd=REPO, env=_env(), stdout=f, stderr=subprocess.STDOUT
        )
        seen = 0
        while child.poll() is None:
            time.sleep(2)
            seen = _follow(run_dir, bar, seen)
        _follow(run_dir, bar, seen)
    if child.returncode != 0:
        raise AblationError(f"training {variant.name} failed (exit {child.returncode}); see {log}")
    seconds = time.perf_counter() - started
    (run_dir / "train_seconds.json").write_text(json.dumps({"seconds": seconds}))
    return seconds


def _follow(run_dir: Path, bar, seen: int) -> int:
    path = run_dir / "history.jsonl"
    if not path.is_file():
        return seen
    lines = [json.loads(t) for t in path.read_text().splitlines() if t.strip()]
    if len(lines) > seen:
        bar.update(len(lines) - seen)
        last = lines[-1]
        val = {k: v for k, v in last.items() if k.startswith("val_") and k != "val_seconds"}
        bar.set_postfix_str(
            f"loss {last['loss']:.4f} " + " ".join(f"{k} {v:.2f}" for k, v in val.items())
        )
    return len(lines)


def evaluate(
    model: Path, task: str, options: dict, out: Path, log: Path, backend: str = "auto"
) -> dict:
    args = [
        "training.evaluate",
        "--model",
        str(model),
        "--dataset",
        DATASETS[task],
        "--split",
        "val",
        "--out",
        str(out),
        "--backend",
        backend,
    ]
    for key, value in options.items():
        args += ["--option", f"{key}={value}"]
    _run_logged(args, log, f"evaluating {model}")
    report = json.loads((out / "metrics.json").read_text())
    return {"runtime": report["runtime"], "headline": report["headline"], **report["values"]}


def run_variant(
    variant: Variant, config: Path, out: Path, eval_options: dict, bar, backend: str = "auto"
) -> dict:
    run_dir = out / variant.name
    seconds = train(variant, config, run_dir, bar)
    log = out / f"{variant.name}.log"
    fmt = "lce" if variant.binary else "float"
    flatbuffer = run_dir / f"{variant.name}.tflite"
    bar.set_description(f"{variant.name}: converting")
    _run_logged(
        [
            "converters.convert",
            str(run_dir / "model.keras"),
            "-o",
            str(flatbuffer),
            "--format",
            fmt,
        ],
        log,
        f"converting {variant.name}",
    )
    bar.set_description(f"{variant.name}: evaluating")
    keras = evaluate(
        run_dir / "model.keras", variant.task, eval_options, run_dir / "eval_keras", log
    )
    lite = evaluate(flatbuffer, variant.task, eval_options, run_dir / "eval_tflite", log, backend)
    return {
        **asdict(variant),
        "name": variant.name,
        "kind": variant.kind,
        "format": fmt,
        "overrides": variant.overrides(),
        "flatbuffer_bytes": flatbuffer.stat().st_size,
        "keras": keras,
        "tflite": lite,
        "train_minutes": round(seconds / 60, 2),
    }


def _metric(row: dict, which: str) -> float:
    return float(row[which][row[which]["headline"]])


def wiring_interpretation(rows: list[dict], spread: float | None) -> list[str]:
    """Each wiring against the paper's wiring of the same task, in plain sentences. With a
    ``spread`` (a run-to-run spread the caller knows of) each difference is said to lie
    within it or beyond it; no difference is called better or worse."""
    lines = []
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = {r.get("wiring", "paper"): r for r in rows if r["task"] == task}
        if "paper" not in mine or len(mine) < 2:
            continue
        base = _metric(mine["paper"], "keras")
        key = mine["paper"]["keras"]["headline"]
        parts = []
        for wiring, row in mine.items():
            if wiring == "paper":
                continue
            delta = _metric(row, "keras") - base
            verdict = ""
            if spread is not None:
                side = "within" if abs(delta) <= spread else "beyond"
                verdict = f" ({side} the {spread:g}-point spread)"
            parts.append(f"{wiring} {delta:+.2f}{verdict}")
        lines.append(
            f"{task.capitalize()} ({key}, Keras), each wiring minus the paper's "
            f"wiring ({base:.2f}): " + "; ".join(parts) + "."
        )
    return lines


def interpretation(rows: list[dict]) -> list[str]:
    """Plain sentences computed from the numbers (no claim the table does not show)."""
    if any(r.get("wiring", "paper") != "paper" for r in rows):
        return []  # a wiring run: see wiring_interpretation
    by = {r["name"]: r for r in rows}
    lines = []
    binary = next((r["kind"] for r in rows if r["binary"]), "binary")
    names = [
        f"pose_hpm_{binary}",
        f"pose_bottleneck_{binary}",
        "pose_hpm_real",
        "pose_bottleneck_real",
    ]
    if all(n in by for n in names):
        hb, bb, hr, br = (_metric(by[n], "keras") for n in names)
        verdict = "beats" if hb > bb else "does not beat"
        gap_h, gap_b = hr - hb, br - bb
        if abs(gap_h - gap_b) < 1.0:  # a point of PCKh is within one run's noise here
            gaps = "about the same gap"
        elif gap_h < gap_b:
            gaps = "so HPM narrows the binary-real gap"
        else:
            gaps = "so HPM does not narrow the binary-real gap"
        lines.append(
            f"Pose (PCKh@0.5, higher is better): binary HPM {verdict} binary bottleneck "
            f"({hb:.1f} vs {bb:.1f}, {hb - bb:+.1f}). Gap to the real-valued network of the "
            f"same block: HPM {gap_h:.1f} points, bottleneck {gap_b:.1f} points: {gaps}."
        )
    if f"face_hpm_{binary}" in by and "face_hpm_real" in by:
        fb, fr = _metric(by[f"face_hpm_{binary}"], "keras"), _metric(by["face_hpm_real"], "keras")
        lines.append(
            f"Face (NME %, lower is better): binary HPM {fb:.2f} against real-valued "
            f"HPM {fr:.2f} ({fb - fr:+.2f})."
        )
    return lines


def write_results(rows: list[dict], meta: dict, path: Path, complete: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(
        json.dumps({**meta, "complete": complete, "rows": rows}, indent=2) + "\n"
    )
    status = "" if complete else " (PARTIAL: the run stopped before every model finished)"
    wiring = any(r.get("wiring", "paper") != "paper" for r in rows) or meta.get("wiring")
    title = (
        "Released-model wiring ablation" if wiring else "Block ablation at equal parameter budgets"
    )
    lines = [
        f"# {title}{status}",
        "",
        f"Made by `{meta['command']}` on {meta['machine']}, {meta['date']}.",
        f"Recipe (same for every model): {meta['recipe']}.",
        f"Scored with `training.evaluate` on the `val` split of the synthetic set "
        f"({meta['eval']}); Keras and flatbuffer go through the same crop, decoding and "
        "metric. Binary models are converted with `--format lce` (bitpacked), real-valued ones "
        "with `--format float`. Parameters are trainable ones (conv weights and biases, "
        "BatchNorm gamma and beta), as the paper counts them; "
        + (
            "a wiring changes them only where it adds layers (a binary head's BatchNorm, more "
            "blocks per level)."
            if wiring
            else "the bottleneck's width is chosen by "
            "`training.models.features_for_budget` to match the HPM network's."
        ),
        "",
        "| task | block | binary | " + ("wiring | " if wiring else "") + "features | "
        "parameters | flatbuffer | metric | Keras | flatbuffer | train min |",
        "|---|---|---|" + ("---|" if wiring else "") + "---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        key = r["keras"]["headline"]
        binary = BINARY_LABELS[r.get("kind", "binary" if r["binary"] else "real")]
        how = f"{r.get('wiring', 'paper')} | " if wiring else ""
        lines.append(
            f"| {r['task']} | {r['block']} | {binary} | {how}{r['features']} "
            f"| {r['parameters']:,} | {r['flatbuffer_bytes'] / 1e6:.3f} MB | {key} | "
            f"{_metric(r, 'keras'):.2f} | {_metric(r, 'tflite'):.2f} | {r['train_minutes']:.1f} |"
        )
    if wiring:
        lines += [
            "",
            "Wirings (config overrides): "
            + "; ".join(
                f"{w}: {', '.join(f'{k}={v}' for k, v in WIRINGS[w].items()) or 'none'}"
                for w in dict.fromkeys(r.get("wiring", "paper") for r in rows)
            )
            + ".",
        ]
    lines += ["", *interpretation(rows), *wiring_interpretation(rows, meta.get("spread")), ""]
    if meta.get("note"):
        lines += [meta["note"], ""]
    path.write_text("\n".join(lines))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.ablation",
        description="Train real and binary HPM and bottleneck hourglasses at equal parameter "
        "budgets on the synthetic sets, convert and evaluate each, and write a table.",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/ablation"),
        help="folder for the runs, flatbuffers and logs (default: runs/ablation); "
        "finished models there are reused",
    )
    p.add_argument(
        "--tasks",
        nargs="+",
        choices=("pose", "face"),
        default=["pose", "face"],
        help="which sets to run (default: both)",
    )
    p.add_argument(
        "--features",
        type=int,
        default=64,
        help="HPM features; sets the parameter budget (default 64)",
    )
    p.add_argument("--depth", type=int, default=2, help="hourglass depth (default 2)")
    p.add_argument("--input-size", type=int, default=64, help="input crop size (default 64)")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs per model (default: the base config's; its learning-rate drops "
        "are rescaled to keep their place in the run)",
    )
    p.add_argument(
        "--steps-per-epoch", type=int, default=100, help="training steps per epoch (default 100)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="training seed (weight init, shuffles, augmentation; default 0): rerun "
        "with another seed and --out to see run-to-run spread",
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=None,
        metavar="NAME",
        help="train only these, e.g. pose_hpm_binary pose_bottleneck_binary (default: all)",
    )
    p.add_argument(
        "--weight-scale",
        action="store_true",
        help="binary models scale each binary conv's output channels by mean|W| "
        "(larq's magnitude_aware_sign, the paper's XNOR-Net alpha); model names "
        "end in _binary_scaled (default: plain ste_sign weights)",
    )
    p.add_argument(
        "--wiring",
        nargs="+",
        default=None,
        choices=list(WIRINGS),
        metavar="WIRING",
        help="train the binary HPM network in these wirings instead of the block "
        f"variants ({', '.join(WIRINGS)}); results default to "
        "benchmarks/results/ablation_wiring.md",
    )
    p.add_argument(
        "--spread",
        type=float,
        default=None,
        help="run-to-run spread of the headline metric at this budget (e.g. from a "
        "second seed); wiring differences within it are reported as noise",
    )
    p.add_argument(
        "--eval-size",
        type=int,
        default=300,
        help="validation samples scored per model (default 300)",
    )
    p.add_argument(
        "--eval-backend",
        default="auto",
        choices=("auto", "lce", "tflite"),
        help="runtime that scores the flatbuffers (training.evaluate --backend; "
        "default auto: a stock runtime with the native library where it is built)",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=None,
        help="markdown table to write; a .json twin goes beside it "
        "(default: benchmarks/results/ablation.md, or ablation_wiring.md with "
        "--wiring)",
    )
    p.add_argument(
        "--note",
        default="",
        help="a sentence appended to the markdown (e.g. why the run was shortened)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.results is None:
        args.results = WIRING_RESULTS if args.wiring else RESULTS
    for flag in ("features", "depth", "input_size", "epochs", "steps_per_epoch", "eval_size"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            print(f"error: --{flag.replace('_', '-')} must be positive", file=sys.stderr)
            return 2
    import platform

    from tqdm import tqdm

    import training  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TF)
    from training.config import ConfigError

    out = args.out if args.out.is_absolute() else Path.cwd() / args.out
    recipe_overrides = [
        f"input_size={args.input_size}",
        f"model.depth={args.depth}",
        "model.num_stacks=1",
        f"steps_per_epoch={args.steps_per_epoch}",
        f"seed={args.seed}",
    ]
    try:
        if args.wiring:
            todo = wiring_variants(
                features=args.features,
                depth=args.depth,
                input_size=args.input_size,
                tasks=args.tasks,
                wirings=args.wiring,
                weight_scale=args.weight_scale,
            )
        else:
            todo = variants(
                features=args.features,
                depth=args.depth,
                input_size=args.input_size,
                tasks=args.tasks,
                weight_scale=args.weight_scale,
            )
        if args.models:
            unknown = sorted(set(args.models) - {v.name for v in todo})
            if unknown:
                raise ValueError(
                    f"unknown model {unknown[0]!r}; choose from " + ", ".join(v.name for v in todo)
                )
            todo = [v for v in todo if v.name in args.models]
        configs = {t: frozen_config(t, out, recipe_overrides, args.epochs) for t in args.tasks}
    except (ValueError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    recipe = yaml.safe_load(configs[args.tasks[0]].read_text())
    opt = recipe["optimizer"]
    epochs = recipe["epochs"]
    shown = list(argv if argv is not None else sys.argv[1:])
    if "--note" in shown[:-1]:  # the note is printed under the table; keep the command short
        shown[shown.index("--note") + 1] = '"(the note below)"'
    meta = {
        "command": "python -m benchmarks.ablation " + " ".join(shown),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "date": time.strftime("%Y-%m-%d"),
        "recipe": f"1 stack, depth {args.depth}, input {args.input_size}, sigma "
        f"{recipe['sigma']}, batch {recipe['batch_size']}, {epochs} epochs x "
        f"{args.steps_per_epoch} steps, {opt['name']} lr {opt['learning_rate']} with drops "
        f"{opt['schedule']}, augmentation {'on' if recipe['augment']['enabled'] else 'off'}, "
        f"seed {args.seed}; "
        f"base configs {', '.join(BASE_CONFIGS[t] for t in args.tasks)}",
        "eval": f"{args.eval_size} samples, seed 0; flatbuffers run by the "
        f"{args.eval_backend} backend",
        "note": args.note,
        "wiring": bool(args.wiring),
        "spread": args.spread,
    }
    rows: list[dict] = []
    models = tqdm(todo, desc="ablation", unit="model", position=0)
    try:
        for variant in models:
            task_recipe = yaml.safe_load(configs[variant.task].read_text())
            options = {**task_recipe["dataset"]["options"], "size": args.eval_size, "seed": 0}
            with tqdm(
                total=task_recipe["epochs"],
                desc=f"{variant.name}: training",
                unit="epoch",
                position=1,
                leave=True,
            ) as bar:
                rows.append(
                    run_variant(
                        variant, configs[variant.task], out, options, bar, args.eval_backend
                    )
                )
            r = rows[-1]
            key = r["keras"]["headline"]
            tqdm.write(
                f"{variant.name}: {r['parameters']:,} parameters, "
                f"{r['flatbuffer_bytes'] / 1e6:.3f} MB, {key} Keras "
                f"{r['keras'][key]:.2f} / flatbuffer {r['tflite'][key]:.2f}, "
                f"{r['train_minutes']:.1f} min"
            )
            write_results(rows, meta, args.results, complete=len(rows) == len(todo))
    except AblationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; {len(rows)} model(s) in {args.results}; rerun to continue",
            file=sys.stderr,
        )
        return 130
    print(f"wrote {args.results} and {args.results.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
