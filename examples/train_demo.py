"""Label, train, convert, score and bundle the demo models (edge/models/pose.tflite, face.tflite)
and the opt-in COCO-17 pose model (edge/models/pose_coco17.tflite).

    python examples/train_demo.py                     # both; labels ../shared/media first
    python examples/train_demo.py --task face --media /data/media --out runs/try --no-install
    python examples/train_demo.py --task pose-coco17  # about 4.3 hours of training on 2 cores

The models learn from real footage labelled by teacher models (BlazePose for bodies,
MediaPipe's face mesh for faces), mixed with procedural figures where the config says so.
Everything goes through the project's own command-line tools, so this file is also a worked
example of the whole pipeline. Each task's recipe is one entry of ``TASKS``: its config (and
earlier stages), its split file, its label runs and its real held-out sets.

0. ``python -m training.label pose|face <media>/... --out data/<folder> --split <split file>
   ...``, once per label run of the task (face: the clips into data/face_v2_clips, the photos
   into data/face_v2_photos): teacher labels for every clip and photo, whole sources held out
   (``configs/splits/held_out_sources.yaml``: a reported ``valid`` side, a model-choosing
   ``select`` side; pose still uses the first models' ``configs/splits/real_media.yaml``).
   The label tool resumes on its own, so a second run only reads back what it wrote
   (``--skip-label`` skips the step, after checking that the labels on disk were made with
   the recipe's settings);
1. ``python -m training.train --config <config> --out <out>/<config name>``: face
   ``configs/face_v2.yaml`` (a 1-stack binary HPM hourglass, 128 features); pose trains three
   stages, each starting from the one before (``init_from=``): ``configs/real_pose_96.yaml``
   (96 px), ``configs/real_pose.yaml`` (128 px) and ``configs/real_pose_arms.yaml`` (raised
   arms shown more often, blended with stage 2's weights);
2. ``python -m converters.convert <run>/model.keras --format lce`` (bitpacked ``LceBconv2d``
   ops, landmark metadata embedded); pose-coco17 first measures the tracker's lost cut on
   its config's ``val_path``, the select clips (``training.evaluate --calibrate-tracking``),
   which the conversion embeds;
3. ``python -m training.evaluate`` for the Keras model and the .tflite on
   - each real held-out set, against the teacher's labels (pose: PCK@0.2 of the torso and
     PCKh@0.5; faces: NME, inner-point NME, AUC@0.08, FR@0.08), with the training set's mean
     shape in the same crop beside every number (docs/validation.md) and, where the labels
     have a sources index, per activity group. Face: the ``valid`` side of the clips and of
     the photos, with ``--crop jitter`` (the crop moved as the device's tracker moves it),
     never the config's ``val_path`` (the ``select`` side that chose the model). A few
     side-by-side pictures go under ``<run>/eval_real_<set>_tflite/`` (they show the media:
     never commit them);
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

from edge.cli import (  # noqa: E402
    BUNDLED,
    ArgumentParser,
    HelpFormatter,
    add_threads_argument,
    positive_int,
)

# Each task's recipe. "labels": the training.label runs, each into its own folder ("out"):
# sources under --media, then its options past --out and --split. "real": the held-out sets
# the report scores, each from one label run ("labels"), with training.evaluate's dataset,
# data, split, protocols (empty: the dataset's own) and crop. "chosen_on": which set chose
# the model (never one of the "real" sets when the split has a select side).
TASKS = {
    "pose": {
        "config": "configs/real_pose_arms.yaml",
        # Trained first, in order; each starts from the model of the one before (96 px, then
        # 128 px, then the config above: the raised-arm fine-tune).
        "stages": ("configs/real_pose_96.yaml", "configs/real_pose.yaml"),
        # The procedural set the earlier demo models were scored on (its validation split).
        "synthetic_config": "configs/demo_pose.yaml",
        "teacher": "BlazePose (pose_landmark_full) mapped to MPII-16",
        "split": "configs/splits/real_media.yaml",  # whole clips held out
        "chosen_on": "the held-out clips it reports (configs/splits/real_media.yaml has no "
        "select side; the arm-stage candidates were compared on them: "
        "benchmarks/results/arms.md)",
        "labels": (
            {
                "name": "media",
                "out": "data/real_pose",
                "sources": ("pose", "images"),
                "options": ("--every", "2", "--max-per-source", "150"),
            },
        ),
        "real": (
            {
                "name": "held-out clips",
                "key": "clips",
                "labels": "media",
                "dataset": "mpii",
                "data": "data/real_pose",
                "split": "val",
                # PCK@0.2 of the torso first (the headline), then PCKh.
                "protocols": ("pck_torso", "pckh"),
                "crop": "exact",
            },
        ),
    },
    # The opt-in COCO-17 pose model (--model pose-coco17): the same label tool task as
    # "pose" on the source-held-out split; three stages, the wider network's probe, its long
    # run (v11) and 20 more epochs of it (v13); its lost cut measured on the select clips
    # before conversion.
    "pose-coco17": {
        "label_task": "pose",
        "config": "configs/pose_v13_128f_d4_more.yaml",
        "stages": ("configs/pose_probe_128f_d4.yaml", "configs/pose_v11_128f_d4.yaml"),
        "synthetic_config": "configs/demo_pose.yaml",
        "synthetic_options": {"skeleton": "coco17"},  # its 12 limb joints, drawn
        "teacher": "BlazePose (pose_landmark_full) mapped to COCO-17",
        "split": "configs/splits/held_out_sources.yaml",
        "calibrate_tracking": True,
        "chosen_on": "the select side of configs/splits/held_out_sources.yaml (3 clips, 7 "
        "photo sources), against v10, v11 and v12: benchmarks/results/pose_v2_candidates.md; "
        "the valid side reported here chose nothing",
        "labels": (
            {
                "name": "clips",
                "out": "data/pose_v2_clips",
                "sources": ("pose",),
                "options": ("--every", "1", "--max-per-source", "400"),
            },
            {
                "name": "photos",
                "out": "data/pose_v2_photos",
                "sources": ("images", "images2/body"),
                "options": (),
            },
        ),
        "real": tuple(
            {
                "name": f"pose {kind}",
                "key": kind,
                "labels": kind,
                "dataset": "coco",
                # The reader finds images/ beside annotations/ (the label tool's layout).
                "data": f"data/pose_v2_{kind}/annotations/person_keypoints_valid.json",
                "split": "all",
                "protocols": ("pck_torso",),
                "crop": "jitter",  # as benchmarks/held_out.py scores the valid side
            }
            for kind in ("clips", "photos")
        ),
    },
    "face": {
        "config": "configs/face_v2.yaml",
        "synthetic_config": "configs/demo_face.yaml",
        "teacher": "MediaPipe face mesh mapped to iBUG-68 (labels version 2)",
        "split": "configs/splits/held_out_sources.yaml",
        "chosen_on": "the select side of configs/splits/held_out_sources.yaml (3 clips, 5 "
        "photo sources), against the bundled v1: benchmarks/results/face_v2_candidates.md; "
        "the valid side reported here chose nothing",
        "labels": (
            {
                "name": "clips",
                "out": "data/face_v2_clips",
                "sources": ("face", "pose/webcam_*"),
                "options": (
                    *("--every", "1", "--max-per-source", "400"),
                    *("--box-px", "96", "--labels-version", "2"),
                ),
            },
            {
                "name": "photos",
                "out": "data/face_v2_photos",
                "sources": ("images", "images2/face"),
                "options": (
                    *("--every", "2", "--max-per-source", "0"),
                    *("--box-px", "96", "--labels-version", "2"),
                ),
            },
        ),
        "real": tuple(
            {
                "name": f"face {kind}",
                "key": kind,
                "labels": kind,
                "dataset": "300w",
                "data": f"data/face_v2_{kind}/valid",
                "split": "all",
                "protocols": (),  # the dataset's own: NME (+ inner points), AUC@0.08, FR@0.08
                "crop": "jitter",  # as benchmarks/held_out.py scores the valid side
            }
            for kind in ("clips", "photos")
        ),
    },
}
DEFAULT_MEDIA = Path(os.path.normpath(REPO / ".." / "shared" / "media"))
REPORT = REPO / "benchmarks" / "results" / "demo_models.md"
PICTURES = 6  # side-by-side pictures of each real held-out set (the .tflite's evaluation)
LOWER_IS_BETTER = ("nme", "nme_inner", "fr@0.08")
# The keys of an evaluation record that are not metrics.
NOT_METRICS = (
    "runtime",
    "headline",
    "samples",
    "images",
    "skipped",
    "baseline",
    "clearly_beaten",
    "groups",
    "sides",
)


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


def label_task(task: str) -> str:
    """The ``training.label`` task (and its files' suffix) of a recipe: pose-coco17 -> pose."""
    return TASKS[task].get("label_task", task)


# --- step 0: teacher labels -------------------------------------------------------------


def label_runs(task: str) -> tuple[dict, ...]:
    """The task's ``training.label`` runs (each: name, out, sources, options)."""
    return TASKS[task]["labels"]


def label_args(task: str, run: dict, media: Path, out: Path | None = None) -> list[str]:
    """``training.label`` arguments that label ``media`` for label run ``run`` of ``task``
    into ``out`` (default: the run's own folder)."""
    out = REPO / (run["out"] if out is None else out)
    sources = [_shown(media / s) for s in run["sources"]]
    return [
        "training.label",
        label_task(task),
        *sources,
        "--out",
        _shown(out),
        "--split",
        TASKS[task]["split"],
        *run["options"],
    ]


def label_summary(task: str, run: dict) -> dict | None:
    """The label tool's ``summary_<task>.json`` of a label run (counts, records per side,
    settings), or None."""
    path = REPO / run["out"] / f"summary_{label_task(task)}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def recipe_settings(args: list[str]) -> dict:
    """The settings ``training.label`` stores with every finished source (``parts/``) for
    these arguments: a rerun resumes the sources labelled with exactly these and labels
    the others again."""
    from training.label.cli import build_parser as label_parser
    from training.label.labellers import LabelOptions
    from training.label.labelling import LABELS_VERSION, checked

    parsed = label_parser().parse_args(args[1:])  # past "training.label"
    options = checked(LabelOptions(**{**vars(parsed), "sources": tuple(parsed.sources)}))
    return options.settings(versioned=options.task in LABELS_VERSION)


def labels_mismatch(task: str, run: dict, media: Path | None) -> str | None:
    """Why the labels in the run's folder are not what the recipe's command makes (other
    settings, another split file, other sources: a rerun would label them again), or None
    when rerunning it would only resume. The sources are compared when ``media`` is given."""
    summary = label_summary(task, run)
    if summary is None:
        return f"{run['out']} has no summary_{label_task(task)}.json"
    args = label_args(task, run, media or DEFAULT_MEDIA)
    wanted = recipe_settings(args)
    if summary.get("settings") != wanted:
        return (
            f"{run['out']} was labelled with {summary.get('settings')}, the recipe's are {wanted}"
        )
    if summary.get("split_file") != TASKS[task]["split"]:
        return f"{run['out']} was split by {summary.get('split_file')}, not {TASKS[task]['split']}"
    if media is None:
        return None
    from training.label.sources import expand

    index = REPO / run["out"] / f"sources_{label_task(task)}.json"
    if not index.is_file():
        return f"{run['out']} has no sources_{label_task(task)}.json"
    had = {str((REPO / e["path"]).resolve()) for e in json.loads(index.read_text()).values()}
    now = {str(p.resolve()) for p in expand([str(REPO / s) for s in args[2 : args.index("--out")]])}
    if had != now:
        return (
            f"{run['out']} was labelled from {len(had)} sources, the recipe's command finds "
            f"{len(now)} ({len(now - had)} new, {len(had - now)} gone)"
        )
    return None


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
        missing = [r["out"] for t in tasks for r in label_runs(t) if label_summary(t, r) is None]
        if missing:
            why = "--skip-label was given" if skip_label else f"{_shown(DEFAULT_MEDIA)} is absent"
            raise DemoError(
                f"no labels in {', '.join(missing)} and {why}: pass --media DIR "
                "(the folder with pose/, face/, images/ and images2/)"
            )
        if media is None:
            print(
                f"no media folder ({_shown(DEFAULT_MEDIA)}): using the labels already in "
                f"{', '.join(r['out'] for t in tasks for r in label_runs(t))}",
                flush=True,
            )
            return None
    if skip_label:
        return media
    for task in tasks:
        # A missing folder would make the label tool rewrite the dataset without it.
        for run in label_runs(task):
            for source in run["sources"]:
                folder = (media / source).parent if "*" in source else media / source
                if not folder.is_dir():
                    raise DemoError(
                        f"--media {_shown(media)} has no {_shown(folder)}/ folder (it "
                        "needs pose/, face/, images/ and images2/, see its SOURCES.md)"
                    )
    return media


def label(task: str, media: Path | None, *, run: bool = True) -> list[dict]:
    """Step 0: each label run of ``task`` on ``media`` (the tool resumes, so this is quick
    when done before) unless ``run`` is false or there is no media, in which case the labels
    on disk must be what the recipe makes; return the report's label records."""
    records = []
    for spec in label_runs(task):
        args = label_args(task, spec, media or DEFAULT_MEDIA)
        if run and media is not None:
            _step(task, f"labelling {spec['name']} into {spec['out']} (resumes where it stopped)")
            _run(args, "labelling")
        else:
            why = labels_mismatch(task, spec, media)
            if why is not None:
                raise DemoError(
                    f"{why}: these are not the recipe's labels; make them with "
                    f"python -m {shlex.join(args)}"
                )
        summary = label_summary(task, spec)
        if summary is None:
            raise DemoError(
                f"the label tool wrote no {spec['out']}/summary_{label_task(task)}.json"
            )
        counts = summary.get("counts", {})
        records.append(
            {
                "name": spec["name"],
                "out": spec["out"],
                "command": f"python -m {shlex.join(args)}",
                "settings": summary.get("settings"),
                "records": summary.get("records", {}),
                "counts": {k: v for k, v in counts.items() if k != "sources resumed"},
                "valid_sources": summary.get("valid_sources", []),
                "select_sources": summary.get("select_sources", []),
            }
        )
    return records


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


def real_sets(task: str) -> list[dict]:
    """The real held-out sets the report scores (see ``TASKS``), each with its reference.

    A set on the split's ``select`` side (or the config's ``val_path`` when the split has
    one) is refused: the numbers that chose a model predict nothing (docs/validation.md)."""
    config = _config(task)
    sets = []
    for spec in TASKS[task]["real"]:
        data = Path(spec["data"])
        chose = "select" in data.parts or data.stem.endswith("select")
        if chose or (spec["data"] == config.dataset.val_path and "select" in _split_sides(task)):
            raise DemoError(
                f"{task}: the real set {spec['data']} is what chose the model (the split's "
                "select side or the config's val_path): report the valid side"
            )
        sets.append(
            {
                **spec,
                "protocols": list(spec["protocols"]),
                "reference": TASKS[task]["teacher"],
            }
        )
    return sets


def _split_sides(task: str) -> set[str]:
    """The held-out sides the task's split file has for it (valid, select)."""
    from training.splits import load_split

    split = load_split(REPO / TASKS[task]["split"])
    return {side for side in ("valid", "select") if getattr(split, side).get(label_task(task))}


def synthetic_set(task: str, size: int) -> dict:
    """The synthetic validation split the earlier demo models reported (so numbers compare)."""
    relative = TASKS[task]["synthetic_config"]
    data = _load_config(relative).dataset
    return {
        "dataset": data.name,
        "split": data.val_split,
        "config": relative,
        "options": {
            **data.options,
            **data.val_options,
            **TASKS[task].get("synthetic_options", {}),
            "size": size,
        },
    }


def _relative_paths(text):
    """``text`` (a string, or a dict of them) with this checkout's absolute paths made
    relative, so the committed report does not name the machine's folders."""
    if isinstance(text, dict):
        return {k: _relative_paths(v) for k, v in text.items()}
    return text.replace(f"{REPO}{os.sep}", "") if isinstance(text, str) else text


def _merged_values(section: dict) -> dict:
    """A metrics.json section's ``values`` with the further protocols' (``also``) merged in
    (their ``samples`` agree)."""
    values = dict(section["values"])
    for extra in section.get("also", {}).values():
        for key, value in extra.items():
            values.setdefault(key, value)
    return values


def evaluate(
    model: Path,
    out: Path,
    dataset: dict,
    *,
    pictures: int = 0,
    limit: int | None = None,
    threads: int = 2,
    extra: tuple[str, ...] = (),
) -> dict:
    """``training.evaluate`` of ``model`` on ``dataset`` (a :func:`real_sets` entry or
    :func:`synthetic_set`; without a ``split`` key, the command's default split), with
    ``extra`` arguments after the rest; returns the runtime, headline and every number,
    protocols past the first merged in, and beside them the mean shape's in the same crop
    (``baseline``) and, with a sources index, the sides of the split and the per-group
    numbers."""
    args = ["training.evaluate", "--model", _shown(model), "--dataset", dataset["dataset"]]
    if dataset.get("split"):
        args += ["--split", dataset["split"]]
    args += ["--out", _shown(out), "--pictures", str(pictures), "--threads", str(threads)]
    if dataset.get("data"):
        args += ["--data", dataset["data"]]
    if dataset.get("crop"):
        args += ["--crop", dataset["crop"]]
    for key, value in dataset.get("options", {}).items():
        args += ["--option", f"{key}={value}"]
    for protocol in dataset.get("protocols", ()):
        args += ["--protocol", protocol]
    if limit is not None:
        args += ["--limit", str(limit)]
    args += extra
    metrics = out / "metrics.json"
    metrics.unlink(missing_ok=True)  # never report an earlier run's numbers
    _run(args, f"evaluating {model.name}")
    report = json.loads(metrics.read_text())
    result = {
        "runtime": report["runtime"],
        "headline": report["headline"],
        **_merged_values(report),
        "skipped": report.get("skipped", 0),
        "baseline": _merged_values(report["baseline"]),
        "clearly_beaten": report["baseline"].get("clearly_beaten"),
        "baseline_from": _relative_paths(report["baseline"].get("from")),
        "crop": _relative_paths(report.get("crop", {"mode": "exact"})),
    }
    if "sides" in report:
        result["sides"] = report["sides"]
        result["groups"] = {
            name: {k: g[k] for k in ("samples", "model", "mean_shape", "clearly_better")}
            for name, g in report.get("groups", {}).items()
        }
    return result


def _check_sides(task: str, name: str, result: dict) -> None:
    """Refuse a real set whose scored samples come from anywhere but the reported side."""
    other = {side: n for side, n in result.get("sides", {}).items() if side != "valid"}
    if other:
        raise DemoError(
            f"{task}: {name} scored samples of {other} besides the valid side: "
            "the report scores held-out sources that chose nothing"
        )


def score_models(
    task: str,
    models: dict[str, Path],
    eval_root: Path,
    *,
    eval_size: int,
    limit: int | None = None,
    threads: int = 2,
) -> dict:
    """The report's "real" (a list: one entry per held-out set) and "synthetic" sections for
    ``models`` ({"keras": path, "tflite": path}); evaluations go to
    ``eval_root/eval_real_<set>_<kind>/`` and ``eval_root/eval_synthetic_<kind>/``. ``limit``
    cuts each real set short (for a quick look; the report's numbers use all of it)."""
    real = [{**spec, "limit": limit} for spec in real_sets(task)]
    synthetic = synthetic_set(task, eval_size)
    for kind, model in models.items():
        pictures = PICTURES if kind == "tflite" else 0
        for spec in real:
            _step(
                task,
                f"scoring {kind} on the real {spec['name']} ({spec['crop']} crop; reference: "
                f"{spec['reference']})",
            )
            folder = eval_root / f"eval_real_{spec['key']}_{kind}"
            spec[kind] = evaluate(
                model, folder, spec, pictures=pictures, limit=limit, threads=threads
            )
            _check_sides(task, spec["name"], spec[kind])
            if pictures:
                spec["pictures"] = _shown(folder)
        _step(task, f"scoring {kind} on the synthetic validation split ({eval_size} samples)")
        synthetic[kind] = evaluate(
            model, eval_root / f"eval_synthetic_{kind}", synthetic, threads=threads
        )
    return {"real": real, "synthetic": synthetic}


def calibrate_tracking(task: str, run_dir: Path) -> None:
    """Record the tracker's lost cut in the Keras model's sidecar (the converter embeds it),
    measured as ``training.evaluate --calibrate-tracking`` does: crop jitter on the config's
    ``val_path``, the select side that chose the model (never a reported set)."""
    data = _config(task).dataset
    _step(task, f"measuring the tracker's lost cut on {data.val_path}")
    select = {
        "dataset": data.val_name or data.name,
        "data": data.val_path,
        "crop": "jitter",
        "options": {**data.options, **data.val_options},
    }
    evaluate(
        run_dir / "model.keras",
        run_dir / "eval_calibrate_tracking",
        select,
        extra=("--calibrate-tracking",),
    )


# --- the whole pipeline -----------------------------------------------------------------


def make_demo(
    task: str,
    out: Path,
    labels: list[dict],
    *,
    minutes: float | None,
    eval_size: int,
    threads: int,
    install: bool,
    limit: int | None = None,
) -> dict:
    """Steps 1-4 for one task; ``limit`` cuts the real held-out sets short (a quick check)."""
    config = _config(task)
    run_dir = out / config.name
    trained = train(task, out, minutes)
    tflite = run_dir / BUNDLED[task].name
    if TASKS[task].get("calibrate_tracking"):
        calibrate_tracking(task, run_dir)
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
        "split": TASKS[task]["split"],
        "chosen_on": TASKS[task]["chosen_on"],
        "labels": labels,
        **scores,
        "reused_run": trained["reused"],
    }
    if install:
        target = BUNDLED[task]
        shutil.copyfile(tflite, target)
        result["installed"] = str(target.relative_to(REPO))
        print(f"installed {target}", flush=True)
    return result


# --- the report -------------------------------------------------------------------------


def _number(value) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _better(key: str) -> str:
    return "lower" if key in LOWER_IS_BETTER else "higher"


def _metric_keys(section: dict) -> list[str]:
    tflite = section["tflite"]
    keys = [tflite["headline"]]
    return keys + [k for k in tflite if k not in (*keys, *NOT_METRICS) and _is_metric(tflite[k])]


def _is_metric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _samples(result: dict):
    return result.get("samples", result.get("images"))


def _ratio(model, mean, key: str) -> str:
    """model / mean shape for a normalised error (NME): issue 24's face bar is 0.5."""
    if not key.startswith("nme") or not mean or model is None:
        return ""
    return f"{model / mean:.2f}"


def _set_rows(task: str, where: str, section: dict) -> list[str]:
    rows = []
    keras, tflite = section.get("keras", {}), section["tflite"]
    base = tflite.get("baseline", {})
    for key in _metric_keys(section):
        rows.append(
            f"| {task} | {where} | {_samples(tflite)} | {key} ({_better(key)} is better) | "
            f"{_number(keras.get(key))} | {_number(tflite[key])} | {_number(base.get(key))} | "
            f"{_ratio(tflite[key], base.get(key), key)} |"
        )
    return rows


def _group_rows(task: str, section: dict) -> list[str]:
    """Per activity group: the headline (and a face's inner points), .tflite beside the
    mean shape, and their ratio for errors."""
    tflite = section["tflite"]
    keys = [tflite["headline"], *(["nme_inner"] if "nme_inner" in tflite else [])]
    rows = []
    for group, g in sorted(tflite.get("groups", {}).items()):
        model = " / ".join(_number(g["model"].get(k)) for k in keys)
        mean = " / ".join(_number(g["mean_shape"].get(k)) for k in keys)
        ratio = " / ".join(_ratio(g["model"].get(k), g["mean_shape"].get(k), k) for k in keys)
        rows.append(
            f"| {task} | {section['name']} | {group} | {g['samples']} | {' / '.join(keys)} | "
            f"{model} | {mean} | {ratio} |"
        )
    return rows


def _crop_text(section: dict) -> str:
    crop = section["tflite"].get("crop") or {"mode": section.get("crop", "exact")}
    if crop.get("mode") != "jitter":
        return "exact crop (the labels' box)"
    if crop.get("measured"):
        return (
            f"crop jitter (seed {crop.get('seed')}) measured on {crop.get('pairs')} frame "
            f"pairs of {crop.get('clips')} clips: centre shift median "
            f"{100 * crop['shift_median']:.1f} %, p90 {100 * crop['shift_p90']:.1f} % of the box"
        )
    return f"crop jitter (seed {crop.get('seed')}) from the fallback constants (no clips)"


def write_report(results: dict[str, dict], path: Path) -> None:
    """Merge this run's tasks into ``path`` (.md) and its .json twin, keeping other tasks
    made the same way (entries of earlier layouts, without a list of real sets, are
    dropped)."""
    json_path = path.with_suffix(".json")
    merged = json.loads(json_path.read_text()) if json_path.is_file() else {}
    for task in [t for t, r in merged.items() if not isinstance(r.get("real"), list)]:
        if task in results:
            continue
        print(
            f"note: dropped the earlier {task} entry from {_shown(json_path)} (an older "
            f"layout); rerun with --task {task} to score it again",
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
        "annotation, on every labelled frame and photo of whole sources held out from "
        "training; each task's split file, crop and the set that chose its model are listed "
        "below. **Mean shape**: the training set's mean shape placed in the same crop, a "
        "model that learnt nothing but the crop box ([docs/validation.md]"
        "(../../docs/validation.md); ratio = .tflite / mean shape for NME, issue 24's face "
        "bar is 0.5; – = not measured when the entry was made). **Synthetic** is the procedural "
        "validation split the earlier, drawings-only demo models were scored on.",
        "",
        "| task | set | samples | metric | Keras | .tflite | mean shape | ratio |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for task in sorted(merged):
        r = merged[task]
        for section in r["real"]:
            lines += _set_rows(task, f"real: {section['name']}", section)
        s = r["synthetic"]
        lines += _set_rows(task, f"synthetic: {s['dataset']}/{s['split']}", s)
    groups = [row for t in sorted(merged) for s in merged[t]["real"] for row in _group_rows(t, s)]
    if groups:
        lines += [
            "",
            "Per activity group (the label tool's `sources_<task>.json`), .tflite:",
            "",
            "| task | set | group | samples | metric | .tflite | mean shape | ratio |",
            "|---|---|---|---:|---|---:|---:|---:|",
            *groups,
        ]
    lines.append("")
    for task in sorted(merged):
        r = merged[task]
        before = "".join(
            f"after `{st['config']}` (input {st['input_size']}, {st['epochs']} "
            f"epochs x {st['steps_per_epoch']} steps), "
            for st in r.get("stages", [])
        )
        note = f" ({r['note']})" if r.get("note") else ""
        lines += [
            f"- **{task}**: {r['model']} (`{r['config']}`); {before}{r['epochs']} epochs x "
            f"{r['steps_per_epoch']} steps of {r['batch_size']} ({r['steps']} steps), "
            f"{r['train_minutes']} min of training in all; .tflite {r['tflite_bytes']:,} "
            f"bytes{note}, run by {r['real'][0]['tflite']['runtime']}.",
            f"  Held out by `{r['split']}`; chosen on {r['chosen_on']}.",
        ]
        for run in r["labels"]:
            records = run.get("records", {})
            sides = ", ".join(
                f"{records[k]} {k}" for k in ("train", "select", "valid") if k in records
            )
            lines.append(
                f"  Labels ({run['name']}): {sides} records, teacher {r['real'][0]['reference']}, "
                f"from `{run['command']}`."
            )
        for section in r["real"]:
            lines.append(f"  {section['name']}: `{section['data']}`, {_crop_text(section)}.")
    pictures = [
        s["pictures"] for _, r in sorted(merged.items()) for s in r["real"] if s.get("pictures")
    ]
    if pictures:
        lines += [
            "",
            "Side-by-side pictures (teacher | model) of held-out samples are written "
            f"to {', '.join(f'`{p}/`' for p in pictures)} by the run (`training.evaluate "
            "--pictures N --out DIR` writes them to DIR); they show people from the media and "
            "are not committed.",
        ]
    path.write_text("\n".join(lines) + "\n")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python examples/train_demo.py",
        description="Make the bundled demo models with the project's own pipeline: label the "
        "real media with the teacher models, train, convert to a bitpacked LCE .tflite, score "
        "Keras and .tflite on the real held-out sets (beside the mean shape in the same crop) "
        "and the synthetic validation set, and "
        "install them in edge/models/ with the report benchmarks/results/demo_models.md.",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--task",
        choices=("pose", "face", "both", "pose-coco17"),
        default="both",
        help="which demo model to make (both: pose and face; pose-coco17: the opt-in COCO-17 "
        "pose model)",
    )
    p.add_argument(
        "--media",
        type=Path,
        default=None,
        metavar="DIR",
        help="the real media folder (pose/, face/, images/, images2/; see its SOURCES.md) "
        f"(default: {_shown(DEFAULT_MEDIA)} when it exists; without it, the labels "
        "already in data/ are used)",
    )
    p.add_argument(
        "--skip-label",
        action="store_true",
        help="use the labels already in each label run's folder (data/face_v2_clips, ...) "
        "instead of running the label tool (which resumes, so running it again costs only a "
        "read-back); they must have been made with the recipe's settings and split file",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs"),
        metavar="DIR",
        help="folder for the training runs (<out>/<config name>, e.g. "
        "runs/face_v2), .tflite files and evaluations; a finished run there is "
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
        help="synthetic validation samples scored (the real held-out sets are always scored whole)",
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
        for name, section in [*((s["name"], s) for s in r["real"]), ("synthetic", r["synthetic"])]:
            tflite = section["tflite"]
            for key in [tflite["headline"], *(["nme_inner"] if "nme_inner" in tflite else [])]:
                print(
                    f"{task} {name}: {key} Keras {_number(section['keras'][key])}, .tflite "
                    f"{_number(tflite[key])}, mean shape {_number(tflite['baseline'].get(key))}"
                )
        pictures = ", ".join(s["pictures"] for s in r["real"] if s.get("pictures"))
        print(f"{task}: {r['tflite_bytes'] / 1e6:.3f} MB; pictures in {pictures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
