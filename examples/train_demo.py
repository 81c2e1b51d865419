"""Label, train, convert, score and bundle the demo models (edge/models/pose.tflite, face.tflite).

    python examples/train_demo.py                     # both; labels ../shared/media first
    python examples/train_demo.py --task face --media /data/media --out runs/try --no-install

The models learn from real footage labelled by teacher models (BlazePose for bodies,
MediaPipe's face mesh for faces), mixed with procedural figures where the config says so.
Everything goes through the project's own command-line tools, so this file is also a worked
example of the whole pipeline:

0. ``python -m training.label pose|face <media>/... --out data/real_<task>
   --split configs/splits/real_media.yaml ...``: teacher labels for every clip and photo of
   the media folder, whole clips held out for validation. The label tool resumes on its own,
   so a second run only reads back what it wrote (``--skip-label`` skips the step);
1. ``python -m training.train --config configs/real_<task>.yaml --out <out>/real_<task>``
   (a 1-stack binary HPM hourglass); pose trains three stages, each starting from the one
   before (``init_from=``): ``configs/real_pose_96.yaml`` (96 px), ``configs/real_pose.yaml``
   (128 px) and ``configs/real_pose_arms.yaml`` (raised arms shown more often, blended with
   stage 2's weights), into ``<out>/<config name>``;
2. ``python -m converters.convert <run>/model.keras --format lce`` (bitpacked ``LceBconv2d``
   ops, landmark metadata embedded);
3. ``python -m training.evaluate`` for the Keras model and the .tflite on
   - the real held-out clips, against the teacher's labels (pose: PCK@0.2 of the torso and
     PCKh@0.5; faces: NME, AUC@0.08, FR@0.08), with a few side-by-side pictures written
     under ``<run>/eval_real_tflite/`` (they show the media: never commit them);
   - the synthetic validation set the earlier, procedural-only demo models were scored on
     (``configs/demo_<task>.yaml``), so old and new numbers compare;
4. copy the .tflite to ``edge/models/`` and record the numbers in
   ``benchmarks/results/demo_models.md`` (+ ``.json``).

A run folder that already holds a finished ``model.keras`` is reused (delete it to retrain);
one with checkpoints but no model continues with ``--resume``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as a plain script from anywhere

from edge.cli import ArgumentParser, HelpFormatter, add_threads_argument, positive_int  # noqa: E402

TASKS = {
    "pose": {
        "config": "configs/real_pose_arms.yaml",
        # Trained first, in order; each starts from the model of the one before (96 px, then
        # 128 px, then the config above: the raised-arm fine-tune).
        "stages": ("configs/real_pose_96.yaml", "configs/real_pose.yaml"),
        # The procedural set the earlier demo models were scored on (its validation split).
        "synthetic_config": "configs/demo_pose.yaml",
        # Scored against the teacher: PCK@0.2 of the torso first (the headline), then PCKh.
        "protocols": ("pck_torso", "pckh"),
        "teacher": "BlazePose (pose_landmark_full) mapped to MPII-16",
        # training.label: sources under --media, then its options past --out and --split.
        "sources": ("pose", "images"),
        "label_options": ("--every", "2", "--max-per-source", "150"),
    },
    "face": {
        "config": "configs/real_face.yaml",
        "synthetic_config": "configs/demo_face.yaml",
        "protocols": (),  # the dataset's own: NME, AUC@0.08, FR@0.08
        "teacher": "MediaPipe face mesh mapped to iBUG-68",
        "sources": ("face", "images", "pose/webcam_*"),
        "label_options": ("--every", "2", "--max-per-source", "150", "--box-px", "96"),
    },
}
SPLIT_FILE = "configs/splits/real_media.yaml"  # whole clips held out for validation
DEFAULT_MEDIA = Path(os.path.normpath(REPO / ".." / "shared" / "media"))
REPORT = REPO / "benchmarks" / "results" / "demo_models.md"
PICTURES = 6  # side-by-side pictures of the real held-out set (the .tflite's evaluation)
LOWER_IS_BETTER = ("nme", "fr@0.08")


class DemoError(Exception):
    """A step of the pipeline failed; the message says which and how to rerun it."""


def _env() -> dict:
    env = dict(os.environ)
    # The project's CLIs set this themselves; a child that imports TF first still needs it.
    env.setdefault("TF_USE_LEGACY_KERAS", "1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def _shown(path: Path | str) -> str:
    """``path`` as the commands and the report show it: relative to the repository when
    it lies beside it (``../shared/media``, ``runs/real_pose``), else absolute."""
    path = Path(os.path.abspath(path))
    relative = os.path.relpath(path, REPO)
    return str(path) if relative.startswith(os.path.join(os.pardir, os.pardir)) else relative


def _run(args: list[str], what: str) -> float:
    """Run one of the project's CLIs (output streams through); return its wall time in s."""
    command = [sys.executable, "-m", *args]
    print(f"\n$ python -m {shlex.join(args)}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=_env(), check=False)
    if done.returncode != 0:
        raise DemoError(f"{what} failed (exit {done.returncode}): python -m {shlex.join(args)}")
    return time.perf_counter() - started


def _step(task: str, text: str) -> None:
    print(f"\n=== {task}: {text}", flush=True)


def _load_config(relative: str):
    from training.config import ConfigError, load_config

    try:
        return load_config(REPO / relative)
    except (ConfigError, OSError) as exc:
        raise DemoError(f"cannot read {relative}: {exc}") from None


def _config(task: str):
    return _load_config(TASKS[task]["config"])


# --- step 0: teacher labels -------------------------------------------------------------


def label_dir(task: str) -> Path:
    """Where ``training.label`` writes the task's dataset: the folder that holds the
    config's training and validation paths (data/real_pose; data/real_face for train/ and
    valid/)."""
    data = _config(task).dataset
    paths = [data.path, data.val_path or data.path]
    if not all(paths):
        raise DemoError(f"{TASKS[task]['config']}: dataset.path is not set")
    return Path(os.path.commonpath(paths))


def label_args(task: str, media: Path, out: Path | None = None) -> list[str]:
    """``training.label`` arguments that label ``media`` for ``task`` into ``out``."""
    spec = TASKS[task]
    out = REPO / (label_dir(task) if out is None else out)
    sources = [_shown(media / s) for s in spec["sources"]]
    return [
        "training.label",
        task,
        *sources,
        "--out",
        _shown(out),
        "--split",
        SPLIT_FILE,
        *spec["label_options"],
    ]


def label_summary(task: str, out: Path | None = None) -> dict | None:
    """The label tool's ``summary_<task>.json`` (counts, records per split), or None."""
    path = REPO / (label_dir(task) if out is None else out) / f"summary_{task}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def find_media(given: Path | None, tasks: list[str], skip_label: bool) -> Path | None:
    """The media folder to label from, or None when there is none but the labels already
    exist (then step 0 is skipped). Raises DemoError when the labels can't be had."""
    if given is not None:
        media = Path(os.path.abspath(given))
        if not media.is_dir():
            raise DemoError(f"--media {given}: no such folder")
    else:
        media = DEFAULT_MEDIA if DEFAULT_MEDIA.is_dir() else None
    if skip_label or media is None:
        missing = [str(label_dir(t)) for t in tasks if label_summary(t) is None]
        if missing:
            why = "--skip-label was given" if skip_label else f"{_shown(DEFAULT_MEDIA)} is absent"
            raise DemoError(
                f"no labels in {', '.join(missing)} and {why}: pass --media DIR "
                "(the folder with pose/, face/ and images/)"
            )
        if media is None:
            print(
                f"no media folder ({_shown(DEFAULT_MEDIA)}): using the labels already in "
                f"{', '.join(str(label_dir(t)) for t in tasks)}",
                flush=True,
            )
            return None
    if skip_label:
        return media
    for task in tasks:
        # A missing folder would make the label tool rewrite the dataset without it.
        for source in TASKS[task]["sources"]:
            folder = (media / source).parent if "*" in source else media / source
            if not folder.is_dir():
                raise DemoError(
                    f"--media {_shown(media)} has no {folder.name}/ folder (it "
                    "needs pose/, face/ and images/, see its SOURCES.md)"
                )
    return media


def label(task: str, media: Path | None, *, run: bool = True) -> dict:
    """Step 0: label ``media`` (the tool resumes, so this is quick when done before) unless
    ``run`` is false or there is no media; return the report's label record."""
    args = label_args(task, media or DEFAULT_MEDIA)
    if run and media is not None:
        _step(task, f"labelling {_shown(media)} with the teacher (resumes where it stopped)")
        _run(args, "labelling")
    summary = label_summary(task)
    if summary is None:
        raise DemoError(f"the label tool wrote no {label_dir(task)}/summary_{task}.json")
    return {
        "command": f"python -m {shlex.join(args)}",
        "records": summary.get("records", {}),
        "counts": {k: v for k, v in summary.get("counts", {}).items() if k != "sources resumed"},
        "valid_sources": summary.get("valid_sources", []),
    }


# --- step 1: training -------------------------------------------------------------------


def _history(run_dir: Path) -> list[dict]:
    path = run_dir / "history.jsonl"
    if not path.is_file():
        return []
    return [json.loads(t) for t in path.read_text().splitlines() if t.strip()]


def _state(run_dir: Path) -> dict:
    path = run_dir / "state.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def steps_for_budget(relative: str, out: Path, minutes: float) -> tuple[int, float]:
    """Steps per epoch that fit the configured epochs of config ``relative`` into
    ``minutes`` on this machine.

    A short probe run (2 epochs of 10 steps; the first one pays for graph tracing) measures
    seconds per step and the per-epoch validation time. The epoch count and the learning-rate
    drops stay as configured, so a shorter budget keeps the recipe's shape with fewer steps.
    Returns (steps per epoch, probe seconds).
    """
    config = _load_config(relative)
    probe = out / f"{config.name}_probe"
    shutil.rmtree(probe, ignore_errors=True)
    # init_from is irrelevant to the step time, and its model may not exist yet.
    seconds = _run(
        [
            "training.train",
            "--config",
            relative,
            "--out",
            str(probe),
            "epochs=2",
            "steps_per_epoch=10",
            "init_from=null",
            "--verbose",
            "2",
        ],
        "timing probe",
    )
    last = _history(probe)[-1]
    shutil.rmtree(probe, ignore_errors=True)
    per_step = last["epoch_seconds"] / 10
    per_epoch_budget = (minutes * 60 - seconds) / config.epochs - last["val_seconds"]
    steps = int(per_epoch_budget / per_step)
    if steps < 10:
        raise DemoError(
            f"{minutes} minutes leaves {max(steps, 0)} steps per epoch on this "
            f"machine ({per_step:.2f} s per step); give more --minutes"
        )
    print(
        f"timing probe: {per_step:.2f} s per step, {last['val_seconds']:.1f} s validation "
        f"-> {steps} steps per epoch x {config.epochs} epochs",
        flush=True,
    )
    return steps, seconds


def train_config(
    task: str, relative: str, out: Path, minutes: float | None, init_from: Path | None = None
) -> dict:
    """Train config ``relative`` into ``out/<its name>`` (reused when finished, resumed when
    interrupted); ``init_from`` replaces the config's own starting model."""
    config = _load_config(relative)
    run_dir = out / config.name
    model = run_dir / "model.keras"
    if model.is_file() and (run_dir / "summary.json").is_file():
        print(
            f"{_shown(model)} exists: reusing it (delete {_shown(run_dir)} to retrain)", flush=True
        )
        return {"reused": True, "seconds": None}
    if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
        _step(task, f"training continues in {_shown(run_dir)} (--resume)")
        seconds = _run(
            ["training.train", "--out", str(run_dir), "--resume", "--verbose", "2"],
            "training (resumed)",
        )
        return {"reused": False, "seconds": seconds, "resumed": True}
    start = init_from or (REPO / config.init_from if config.init_from else None)
    if start is not None and not start.is_file():
        raise DemoError(
            f"{relative} starts from {_shown(start)}, which does not exist: train that model first"
        )
    overrides, probe_seconds = [], 0.0
    if init_from is not None:
        overrides.append(f"init_from={init_from}")
    if minutes is not None:
        steps, probe_seconds = steps_for_budget(relative, out, minutes)
        overrides.append(f"steps_per_epoch={steps}")
    _step(task, f"training {relative} into {_shown(run_dir)}")
    seconds = _run(
        [
            "training.train",
            "--config",
            relative,
            "--out",
            str(run_dir),
            *overrides,
            "--verbose",
            "2",
        ],
        "training",
    )
    return {"reused": False, "seconds": seconds + probe_seconds}


def _stage_configs(task: str) -> tuple[str, ...]:
    """The configs a task trains, in order: its earlier stages, then its own config."""
    return (*TASKS[task].get("stages", ()), TASKS[task]["config"])


def train(task: str, out: Path, minutes: float | None) -> dict:
    """The task's training stages in order, each starting from the model of the one before
    (pose: 96 px, the same network continued at 128 px, then the raised-arm fine-tune).
    ``minutes`` is the budget of each stage."""
    start, trained = None, {}
    for relative in _stage_configs(task):
        trained = train_config(task, relative, out, minutes, init_from=start)
        start = out / _load_config(relative).name / "model.keras"
    return trained


def _stage_summary(relative: str, out: Path) -> dict:
    """What an earlier stage was: its config, input size and training length."""
    config = _load_config(relative)
    state = _state(out / config.name)
    return {
        "config": relative,
        "input_size": config.input_size,
        "epochs": config.epochs,
        "steps_per_epoch": state.get("steps_per_epoch"),
        "steps": state.get("optimizer_iterations"),
    }


def _stage_history(task: str, out: Path) -> list[dict]:
    """Every epoch of every stage of the task's training, in order."""
    return [
        h for relative in _stage_configs(task) for h in _history(out / _load_config(relative).name)
    ]


# --- step 3: evaluation -----------------------------------------------------------------


def real_set(task: str) -> dict:
    """The real held-out set, as the config names it (dataset.name, val_path or path,
    val_split), and the protocols it is scored with."""
    data = _config(task).dataset
    return {
        "dataset": data.name,
        "data": data.val_path or data.path,
        "split": data.val_split,
        "protocols": list(TASKS[task]["protocols"]),
        "reference": TASKS[task]["teacher"],
    }


def synthetic_set(task: str, size: int) -> dict:
    """The synthetic validation split the earlier demo models reported (so numbers compare)."""
    relative = TASKS[task]["synthetic_config"]
    data = _load_config(relative).dataset
    return {
        "dataset": data.name,
        "split": data.val_split,
        "config": relative,
        "options": {**data.options, **data.val_options, "size": size},
    }


def evaluate(
    model: Path,
    out: Path,
    dataset: dict,
    *,
    pictures: int = 0,
    limit: int | None = None,
    threads: int = 2,
) -> dict:
    """``training.evaluate`` of ``model`` on ``dataset`` (a :func:`real_set` or
    :func:`synthetic_set`); returns the runtime, headline and every number, protocols past
    the first merged in (their ``samples`` agree)."""
    args = [
        "training.evaluate",
        "--model",
        _shown(model),
        "--dataset",
        dataset["dataset"],
        "--split",
        dataset["split"],
        "--out",
        _shown(out),
        "--pictures",
        str(pictures),
        "--threads",
        str(threads),
    ]
    if dataset.get("data"):
        args += ["--data", dataset["data"]]
    for key, value in dataset.get("options", {}).items():
        args += ["--option", f"{key}={value}"]
    for protocol in dataset.get("protocols", ()):
        args += ["--protocol", protocol]
    if limit is not None:
        args += ["--limit", str(limit)]
    metrics = out / "metrics.json"
    metrics.unlink(missing_ok=True)  # never report an earlier run's numbers
    _run(args, f"evaluating {model.name}")
    report = json.loads(metrics.read_text())
    values = dict(report["values"])
    for extra in report.get("also", {}).values():
        for key, value in extra.items():
            values.setdefault(key, value)
    return {
        "runtime": report["runtime"],
        "headline": report["headline"],
        **values,
        "skipped": report.get("skipped", 0),
    }


def score_models(
    task: str,
    models: dict[str, Path],
    eval_root: Path,
    *,
    eval_size: int,
    limit: int | None = None,
    threads: int = 2,
) -> dict:
    """The report's "real" and "synthetic" sections for ``models`` ({"keras": path,
    "tflite": path}); evaluations go to ``eval_root/eval_<set>_<kind>/``. ``limit`` cuts the
    real set short (for a quick look; the report's numbers use all of it)."""
    real = {**real_set(task), "limit": limit}
    synthetic = synthetic_set(task, eval_size)
    for kind, model in models.items():
        pictures = PICTURES if kind == "tflite" else 0
        _step(task, f"scoring {kind} on the real held-out clips (reference: {real['reference']})")
        real[kind] = evaluate(
            model,
            eval_root / f"eval_real_{kind}",
            real,
            pictures=pictures,
            limit=limit,
            threads=threads,
        )
        if pictures:
            real["pictures"] = _shown(eval_root / f"eval_real_{kind}")
        _step(task, f"scoring {kind} on the synthetic validation split ({eval_size} samples)")
        synthetic[kind] = evaluate(
            model, eval_root / f"eval_synthetic_{kind}", synthetic, threads=threads
        )
    return {"real": real, "synthetic": synthetic}


# --- the whole pipeline -----------------------------------------------------------------


def make_demo(
    task: str,
    out: Path,
    labels: dict,
    *,
    minutes: float | None,
    eval_size: int,
    threads: int,
    install: bool,
    limit: int | None = None,
) -> dict:
    """Steps 1-4 for one task; ``limit`` cuts the real held-out set short (a quick check)."""
    config = _config(task)
    run_dir = out / config.name
    trained = train(task, out, minutes)
    tflite = run_dir / f"{task}.tflite"
    _step(task, "converting to a bitpacked .tflite")
    _run(
        ["converters.convert", str(run_dir / "model.keras"), "-o", str(tflite), "--format", "lce"],
        "conversion",
    )
    scores = score_models(
        task,
        {"keras": run_dir / "model.keras", "tflite": tflite},
        run_dir,
        eval_size=eval_size,
        limit=limit,
        threads=threads,
    )
    m = config.model
    history = _stage_history(task, out)
    train_seconds = sum(h.get("epoch_seconds", 0.0) + h.get("val_seconds", 0.0) for h in history)
    state = _state(run_dir)
    result = {
        "task": task,
        "config": TASKS[task]["config"],
        "model": f"{m.num_stacks}-stack {'binary' if m.binary else 'real'} {m.block} hourglass, "
        f"depth {m.depth}, {m.features} features, input {config.input_size}",
        "stages": [_stage_summary(relative, out) for relative in TASKS[task].get("stages", ())],
        "epochs": config.epochs,
        "steps_per_epoch": state.get("steps_per_epoch"),
        "steps": state.get("optimizer_iterations"),
        "batch_size": config.batch_size,
        "train_minutes": round(train_seconds / 60, 1),
        "tflite_bytes": tflite.stat().st_size,
        "labels": labels,
        **scores,
        "reused_run": trained["reused"],
    }
    if install:
        target = REPO / "edge" / "models" / f"{task}.tflite"
        shutil.copyfile(tflite, target)
        result["installed"] = str(target.relative_to(REPO))
        print(f"installed {target}", flush=True)
    return result


def _number(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _metric_keys(section: dict) -> list[str]:
    tflite = section["tflite"]
    keys = [tflite["headline"]]
    keys += [
        k for k in tflite if k not in (*keys, "runtime", "headline", "samples", "images", "skipped")
    ]
    return keys


def write_report(results: dict[str, dict], path: Path) -> None:
    """Merge this run's tasks into ``path`` (.md) and its .json twin, keeping other tasks
    made the same way (entries of the earlier, synthetic-only layout are dropped)."""
    json_path = path.with_suffix(".json")
    merged = json.loads(json_path.read_text()) if json_path.is_file() else {}
    for task in [t for t, r in merged.items() if "real" not in r and t not in results]:
        print(
            f"note: dropped the earlier {task} entry from {_shown(json_path)}; rerun with "
            f"--task {task} to score it on real footage",
            file=sys.stderr,
        )
        del merged[task]
    merged.update(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(merged, indent=2) + "\n")
    lines = [
        "# Bundled demo models",
        "",
        "Made by `python examples/train_demo.py` (teacher labels -> train -> convert "
        "`--format lce` -> `training.evaluate`). **Real** numbers are against the teacher's "
        "labels (BlazePose for bodies, MediaPipe's face mesh for faces), not human "
        "annotation, on every labelled frame of whole held-out clips "
        "(`configs/splits/real_media.yaml`). **Synthetic** is the procedural validation split "
        "the earlier, drawings-only demo models were scored on.",
        "",
        "| task | set | samples | metric | Keras | .tflite |",
        "|---|---|---:|---|---:|---:|",
    ]
    for task in sorted(merged):
        r = merged[task]
        for name in ("real", "synthetic"):
            s = r[name]
            where = (
                f"real: {len(r['labels'].get('valid_sources', []))} held-out clips"
                if name == "real"
                else f"synthetic: {s['dataset']}/{s['split']}"
            )
            samples = s["tflite"].get("samples", s["tflite"].get("images"))
            for key in _metric_keys(s):
                better = "lower" if key in LOWER_IS_BETTER else "higher"
                lines.append(
                    f"| {task} | {where} | {samples} | {key} ({better} is better) | "
                    f"{_number(s['keras'].get(key))} | {_number(s['tflite'][key])} |"
                )
    lines.append("")
    for task in sorted(merged):
        r = merged[task]
        records = r["labels"].get("records", {})
        before = "".join(
            f"after `{st['config']}` (input {st['input_size']}, {st['epochs']} "
            f"epochs x {st['steps_per_epoch']} steps), "
            for st in r.get("stages", [])
        )
        lines += [
            f"- **{task}**: {r['model']} (`{r['config']}`); {before}{r['epochs']} epochs x "
            f"{r['steps_per_epoch']} steps of {r['batch_size']} ({r['steps']} steps), "
            f"{r['train_minutes']} min of training in all; .tflite {r['tflite_bytes']:,} "
            f"bytes, run by {r['real']['tflite']['runtime']}.",
            f"  Labels: {records.get('train')} training / {records.get('valid')} held-out "
            f"records, teacher {r['real']['reference']}, from `{r['labels']['command']}`.",
        ]
    pictures = [
        r["real"]["pictures"] for _, r in sorted(merged.items()) if r["real"].get("pictures")
    ]
    if pictures:
        lines += [
            "",
            "Side-by-side pictures (teacher | model) of held-out frames are written "
            f"to {', '.join(f'`{p}/`' for p in pictures)} by the run; they show people "
            "from the media and are not committed.",
        ]
    path.write_text("\n".join(lines) + "\n")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python examples/train_demo.py",
        description="Make the bundled demo models with the project's own pipeline: label the "
        "real media with the teacher models, train, convert to a bitpacked LCE .tflite, score "
        "Keras and .tflite on the real held-out clips and the synthetic validation set, and "
        "install them in edge/models/ with the report benchmarks/results/demo_models.md.",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--task", choices=("pose", "face", "both"), default="both", help="which demo model to make"
    )
    p.add_argument(
        "--media",
        type=Path,
        default=None,
        metavar="DIR",
        help="the real media folder (pose/, face/, images/; see its SOURCES.md) "
        f"(default: {_shown(DEFAULT_MEDIA)} when it exists; without it, the labels "
        "already in data/ are used)",
    )
    p.add_argument(
        "--skip-label",
        action="store_true",
        help="use the labels already in data/real_* instead of running the label "
        "tool (which resumes, so running it again costs only a read-back)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs"),
        metavar="DIR",
        help="folder for the training runs (<out>/<config name>, e.g. "
        "runs/real_pose), .tflite files and evaluations; a finished run there is "
        "reused, an interrupted one resumed",
    )
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        metavar="M",
        help="training time per model on this machine: a short probe measures the "
        "step time and steps_per_epoch is set to fit; approximate, since a busy "
        "machine can run slower than the probe saw (default: the config as is)",
    )
    p.add_argument(
        "--eval-size",
        type=positive_int,
        default=500,
        metavar="N",
        help="synthetic validation samples scored (the real held-out set is always scored whole)",
    )
    add_threads_argument(
        p, help="interpreter threads for the .tflite evaluations (1 on a busy machine)"
    )
    p.add_argument(
        "--no-install",
        dest="install",
        action="store_false",
        help="do not copy the .tflite files to edge/models/ nor update the report "
        "(default: do both)",
    )
    p.add_argument(
        "--report",
        type=Path,
        default=REPORT,
        metavar="FILE.md",
        help="markdown report to update (a .json twin is written beside it; "
        "default: benchmarks/results/demo_models.md)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.minutes is not None and args.minutes <= 0:
        print("error: --minutes must be positive", file=sys.stderr)
        return 2
    out = Path(os.path.abspath(args.out))
    tasks = ["pose", "face"] if args.task == "both" else [args.task]
    results = {}
    try:
        media = find_media(args.media, tasks, args.skip_label)
        # Step 0 for every task first, so a labelling problem shows before hours of training.
        labels = {task: label(task, media, run=not args.skip_label) for task in tasks}
        for task in tasks:
            results[task] = make_demo(
                task,
                out,
                labels[task],
                minutes=args.minutes,
                eval_size=args.eval_size,
                threads=args.threads,
                install=args.install,
            )
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
        for name in ("real", "synthetic"):
            key = r[name]["tflite"]["headline"]
            print(
                f"{task} {name}: {key} Keras {_number(r[name]['keras'][key])}, .tflite "
                f"{_number(r[name]['tflite'][key])}"
            )
        print(f"{task}: {r['tflite_bytes'] / 1e6:.3f} MB; pictures in {r['real'].get('pictures')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
