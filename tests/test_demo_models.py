"""The bundled demo models (edge/models/*.tflite, made by examples/train_demo.py).

What a user relies on: the files are there, small, bitpacked, labelled with the right
skeleton, runnable by ``edge.LandmarkModel``, and as accurate as
``benchmarks/results/demo_models.md`` says, both on the synthetic validation set (no data
needed) and on each real held-out set against the teacher's labels, beside the mean shape in
the same crop (needs the label runs' folders in data/ or the media folder, neither of which
is committed); and that the report scores sets that chose nothing, with label commands that
reproduce the labels it was measured on.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.cli import BUNDLED
from edge.metadata import custom_op_names, read_metadata
from edge.model import LandmarkModel
from edge.skeletons import get_skeleton

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "benchmarks" / "results" / "demo_models.json"
MEDIA = REPO.parent / "shared" / "media"  # examples/train_demo.py's default --media
EXPECTED = {
    # recipe (examples/train_demo.py's TASKS, edge.cli.BUNDLED's name): (skeleton, landmarks)
    "pose": ("mpii16", 16),
    "pose-coco17": ("coco17", 17),  # opt-in: --model pose-coco17
    "face": ("ibug68", 68),
}


def _entry(task: str) -> dict:
    return json.loads(REPORT.read_text())[task]


def _report(task: str) -> dict:
    report = _entry(task)
    assert isinstance(report.get("real"), list) and "synthetic" in report, (
        f"{REPORT.name} predates the held-out sets of examples/train_demo.py (no list of "
        "'real' sets / no 'synthetic' section): run python examples/train_demo.py"
    )
    return report


# Every real held-out set of the committed report, as (task, set key).
REAL_SETS = [
    (task, section["key"])
    for task in sorted(EXPECTED)
    for section in json.loads(REPORT.read_text())[task]["real"]
]
# Label runs of the committed report, as (task, run name).
LABEL_RUNS = [
    (task, run["name"])
    for task in sorted(EXPECTED)
    for run in json.loads(REPORT.read_text())[task]["labels"]
]


def _real(task: str, key: str) -> tuple[dict, dict, dict]:
    """The report of ``task``, its real set ``key`` and the label run that made its data."""
    report = _report(task)
    section = next(s for s in report["real"] if s["key"] == key)
    return report, section, _label_run(report, section["labels"])


def _label_run(report: dict, name: str) -> dict:
    return next(r for r in report["labels"] if r["name"] == name)


def _tolerance(key: str) -> float:
    return 0.5 if key.startswith("nme") else 1.0


def _open(section: dict, data: str | Path | None = None, **options):
    """The dataset a report section ("real" or "synthetic") was scored on."""
    from training.data.base import open_dataset

    options = {**section.get("options", {}), **options}
    return open_dataset(section["dataset"], data, split=section["split"], **options)


def _reproduce(task: str, section: dict, dataset) -> None:
    """training.evaluate's code path on ``dataset`` gives every number ``section`` reports
    for the .tflite (same data, weights and decoding; only the runtime may differ)."""
    from training.landmarks.evaluate import predict_dataset
    from training.predictor import load_predictor
    from training.scoring import PROTOCOLS, score

    predictor = load_predictor(BUNDLED[task], num_threads=1)
    preds = predict_dataset(predictor, dataset, limit=section.get("limit"), threads=1)
    reported = section["tflite"]
    assert len(preds.points) == reported.get("samples", reported.get("images"))
    for protocol in section.get("protocols") or [PROTOCOLS[section["dataset"]]]:
        result = score(preds, protocol, dataset.skeleton)
        # Every number the report has (scores added since, e.g. nme_inner, are not in it).
        compared = [k for k in result.values if k in reported and k not in ("samples", "images")]
        assert result.headline in compared, (result.headline, sorted(reported))
        for key in compared:
            value = result.values[key]
            assert abs(value - reported[key]) < _tolerance(key), (
                protocol,
                key,
                value,
                reported[key],
            )


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_bundled_model_is_small_bitpacked_and_labelled(task):
    path = BUNDLED[task]
    assert path.is_file(), f"{path} is missing: run python examples/train_demo.py"
    data = path.read_bytes()
    assert len(data) <= 1_500_000
    meta = read_metadata(data)
    skeleton, k = EXPECTED[task]
    assert meta.task == get_skeleton(skeleton).task
    assert meta.skeleton == skeleton
    assert meta.num_landmarks == k
    assert meta.weights_format == "lce"
    assert meta.landmarks == get_skeleton(skeleton).landmarks
    ops = custom_op_names(data)
    assert "LceBconv2d" in ops and "LceQuantize" in ops
    # The committed report describes this very file.
    assert _entry(task)["tflite_bytes"] == len(data)


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_landmark_model_finds_the_landmarks_of_validation_samples(task):
    """LandmarkModel (default backend, the device's predict path) on whole frames of the
    reported synthetic set gives the reported score: the device path and training.evaluate
    agree. (The face model, trained on real faces only, is weak on drawn faces: NME ~21.)"""
    skeleton, k = EXPECTED[task]
    synthetic = _report(task)["synthetic"]
    model = LandmarkModel(BUNDLED[task], num_threads=1)
    dataset = _open(synthetic)
    errors = []
    for i in range(len(dataset)):
        sample = dataset.load(i)
        result = model.predict(sample.image, sample.box)  # readers give BGR, like OpenCV
        assert result.points.shape == (k, 2) and result.names == get_skeleton(skeleton).landmarks
        assert np.all(np.isfinite(result.points))
        err = np.linalg.norm(result.points - sample.points, axis=1)
        norm = (
            sample.head_size
            if task.startswith("pose")
            else np.linalg.norm(sample.points[36] - sample.points[45])
        )
        scored = sample.visible.copy()
        scored[list(get_skeleton(skeleton).excluded_from_mean)] = False  # pelvis, thorax
        errors.append(err[scored] / norm)
    errors = np.concatenate(errors)
    if task.startswith("pose"):
        pckh = 100 * np.mean(errors <= 0.5)
        assert abs(pckh - synthetic["tflite"]["pckh@0.5"]) < 1.0
    else:
        nme = 100 * np.mean(errors)
        assert abs(nme - synthetic["tflite"]["nme"]) < 0.5


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_training_evaluate_reproduces_the_reported_synthetic_number(task):
    """training.evaluate's code path on the reported synthetic set gives the reported score."""
    synthetic = _report(task)["synthetic"]
    _reproduce(task, synthetic, _open(synthetic))


def _label_command(run: dict) -> tuple[list[str], list[str], str | None]:
    """A label run's ``training.label`` command, split: its sources, its options less
    ``--out``, and the ``--out`` it wrote to."""
    args = shlex.split(run["command"])
    args = args[args.index("training.label") + 1 :]
    first = next(i for i, a in enumerate(args) if a.startswith("--"))
    sources, options, out = args[1:first], args[first:], None
    if "--out" in options:
        at = options.index("--out")
        out = options[at + 1]
        del options[at : at + 2]
    return sources, options, out


def _label_task(run: dict) -> str:
    """The ``training.label`` task of a label run's command (pose-coco17's labels are pose's)."""
    args = shlex.split(run["command"])
    return args[args.index("training.label") + 1]


def _label_settings(task: str, options: list[str]) -> dict:
    """What training.label stores with each finished source for these options: a rerun
    resumes the sources made with exactly these settings and labels the others again."""
    from training.label.cli import build_parser
    from training.label.labellers import LabelOptions
    from training.label.labelling import LABELS_VERSION, checked

    args = build_parser().parse_args([task, "source", "--out", "out", *options])
    label_options = checked(LabelOptions(**{**vars(args), "sources": tuple(args.sources)}))
    return label_options.settings(versioned=task in LABELS_VERSION)


def _option(options: list[str], flag: str) -> str | None:
    return options[options.index(flag) + 1] if flag in options else None


@pytest.mark.parametrize(("task", "name"), LABEL_RUNS)
def test_label_commands_resume_the_labels_the_report_used(task, name):
    """Rerunning a label run's reported command labels nothing again: the settings it stores
    are those the report recorded and those of the labels on disk, with the same split file
    and, where the media folder is here, the same sources."""
    from training.label.sources import expand

    report = _report(task)
    run = _label_run(report, name)
    sources, options, out = _label_command(run)
    assert out == run["out"] and _option(options, "--split") == report["split"]
    labelled = _label_task(run)
    settings = _label_settings(labelled, options)
    if run.get("settings") is not None:  # recorded since the entries with several label runs
        assert settings == run["settings"]
    summary_path = REPO / out / f"summary_{labelled}.json"
    if not summary_path.is_file():
        pytest.skip(f"{out} is not here (teacher labels of the media, never committed)")
    summary = json.loads(summary_path.read_text())
    assert summary["settings"] == settings, f"{out} was labelled otherwise: {summary['settings']}"
    assert summary["split_file"] == report["split"]
    assert summary["records"] == run["records"], f"{out} changed since the report was made"
    index = REPO / out / f"sources_{labelled}.json"
    if MEDIA.is_dir() and index.is_file():
        had = {(REPO / e["path"]).resolve() for e in json.loads(index.read_text()).values()}
        now = {p.resolve() for p in expand([str(REPO / s) for s in sources])}
        assert now == had, f"{len(now - had)} new and {len(had - now)} missing sources"


@pytest.mark.tensorflow  # training.config and training.evaluate: the train extra
@pytest.mark.parametrize(("task", "key"), REAL_SETS)
def test_reported_sets_chose_nothing_and_show_the_mean_shape(task, key):
    """A real set is the split's reported side: never the config's ``val_path`` when the
    split has a select side (that side chose the model), and only valid-side samples were
    scored; and beside the .tflite's numbers stands the mean shape in the same crop (for
    every entry made since training.evaluate measures it)."""
    from training.config import load_config

    report, section, run = _real(task, key)
    config = load_config(REPO / report["config"])
    assert report["chosen_on"]
    assert "select" not in Path(section["data"]).parts
    if run.get("select_sources"):
        assert section["data"] != config.dataset.val_path, "the set that chose the model"
    tflite = section["tflite"]
    assert set(tflite.get("sides", {"valid": 0})) == {"valid"}, tflite.get("sides")
    if task == "face":  # scored as benchmarks/held_out.py scores the valid side
        assert section["crop"] == "jitter" and tflite["crop"]["mode"] == "jitter"
        for kind in ("keras", "tflite"):
            for metric in ("nme", "nme_inner"):  # all points and the inner ones
                assert section[kind][metric] < section[kind]["baseline"][metric], (kind, metric)
        groups = tflite["groups"]  # per activity group, adding up to the whole set
        assert groups and sum(g["samples"] for g in groups.values()) == tflite["images"]
        assert all("nme_inner" in g["mean_shape"] for g in groups.values())


def _evaluate(task: str, section: dict, data: Path, out: Path) -> dict:
    """training.evaluate's own function on ``data`` as the report scored ``section`` (crop,
    protocols, limit) for the bundled .tflite: its metrics.json."""
    from training.landmarks.evaluate import evaluate
    from training.task import EvaluateOptions

    evaluate(
        EvaluateOptions(
            model=BUNDLED[task],
            dataset=section["dataset"],
            data=str(data),
            split=section["split"],
            options=dict(section.get("options", {})),
            limit=section.get("limit"),
            threads=1,
            protocols=tuple(section.get("protocols") or ()),
            out=out,
            pictures=0,
            crop=section.get("crop", "exact"),
        )
    )
    return json.loads((out / "metrics.json").read_text())


def _merged(metrics: dict) -> dict:
    values = dict(metrics["values"])
    for extra in metrics.get("also", {}).values():
        for key, value in extra.items():
            values.setdefault(key, value)
    return values


def _assert_close(measured: dict, reported: dict, what: str, tolerance=_tolerance) -> None:
    compared = [k for k in reported if k in measured and isinstance(reported[k], float)]
    for key in compared:
        assert abs(measured[key] - reported[key]) < tolerance(key), (
            what,
            key,
            measured[key],
            reported[key],
        )


@pytest.mark.tensorflow  # training.config and training.evaluate: the train extra
@pytest.mark.parametrize(("task", "key"), REAL_SETS)
def test_training_evaluate_reproduces_the_real_held_out_number(task, key, tmp_path):
    """Every reported number of a real held-out set (against the teacher), the mean shape
    beside it and its per-group rows, from the labels in the run's folder in data/."""
    _, section, run = _real(task, key)
    data = REPO / section["data"]
    summary = REPO / run["out"] / f"summary_{_label_task(run)}.json"
    if not data.exists() or not summary.is_file():
        pytest.skip(
            f"{section['data']} is not here (teacher labels of the media, never committed): "
            f"make it with {run['command']}"
        )
    held_out = json.loads(summary.read_text())["records"]["valid"]
    if held_out != run["records"]["valid"]:
        pytest.skip(
            f"{run['out']} holds {held_out} held-out records, the report "
            f"{run['records']['valid']}: it was labelled differently; relabel with "
            f"{run['command']}"
        )
    metrics = _evaluate(task, section, data, tmp_path)
    reported = section["tflite"]
    values = _merged(metrics)
    assert values.get("samples", values.get("images")) == reported.get(
        "samples", reported.get("images")
    )
    assert metrics["headline"] == reported["headline"] and reported["headline"] in values
    _assert_close(values, reported, "model")
    # The mean shape depends on the data alone: the same to rounding.
    _assert_close(
        _merged(metrics["baseline"]), reported.get("baseline", {}), "mean shape", lambda k: 1e-3
    )
    for group, row in reported.get("groups", {}).items():
        measured = metrics["groups"][group]
        assert measured["samples"] == row["samples"], group
        _assert_close(measured["model"], row["model"], group)
        _assert_close(measured["mean_shape"], row["mean_shape"], group, lambda k: 1e-3)


@pytest.mark.slow
@pytest.mark.tensorflow  # training.config and training.evaluate: the train extra
@pytest.mark.parametrize(("task", "key"), REAL_SETS)
def test_real_held_out_number_reproduces_from_the_media(task, key, tmp_path):
    """Labelling a real set's held-out sources of ../shared/media again, with the report's
    command, gives the labels that its number was measured on (minutes: runs the teacher)."""
    from training.label.sources import expand
    from training.label.teacher_models import MEMBERS, TeacherUnavailable, teacher_model

    _, section, run = _real(task, key)
    sources, options, out = _label_command(run)
    stems = set(run["valid_sources"])
    found = expand([str(REPO / s) for s in sources]) if MEDIA.is_dir() else []
    held_out = [p for p in found if p.stem in stems]
    if len({p.stem for p in held_out}) != len(stems):
        pytest.skip(
            f"the media folder {MEDIA} (never committed) with the run's {len(stems)} "
            "held-out sources is not here"
        )
    try:
        for name in MEMBERS:
            teacher_model(name)
    except TeacherUnavailable as exc:
        pytest.skip(f"teacher models unavailable: {exc}")
    if task == "face" and "--labels-version" not in options:
        # Made before face labels had versions: with the plain mesh table (version 1).
        options += ["--labels-version", "1"]
    labelled = tmp_path / "labels"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.label",
            _label_task(run),
            *map(str, held_out),
            *options,
            "--out",
            str(labelled),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((labelled / f"summary_{_label_task(run)}.json").read_text())
    assert summary["records"]["valid"] == run["records"]["valid"]
    data = labelled / os.path.relpath(section["data"], out)
    # Without the training side here the mean shape is the set's own: only the model's numbers.
    metrics = _evaluate(task, section, data, tmp_path / "eval")
    _assert_close(_merged(metrics), section["tflite"], "model")
