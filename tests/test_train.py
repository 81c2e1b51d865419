"""Training CLI: config checking, resume after a kill, a two-replica mirrored step, learning."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import training  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow loads
from training.config import ConfigError, load_config, make_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "synthetic_pose.yaml"
# A tiny model and data set: each epoch of the subprocess tests takes a few seconds on 2 cores.
TINY = [
    "model.depth=1",
    "model.features=32",
    "batch_size=4",
    "dataset.options.image_size=64",
    "dataset.train_options.size=64",
    "dataset.val_options.size=8",
]


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    env["CUDA_VISIBLE_DEVICES"] = ""  # tests run on CPU wherever they run
    return env


def _train_cmd(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "training.train",
        "--config",
        str(CONFIG),
        "--out",
        str(out),
        "--verbose",
        "2",
        *TINY,
        *extra,
    ]


def _run(command: list[str], timeout: int) -> subprocess.CompletedProcess:
    """``command`` from the repository's root with the tests' environment, output captured."""
    return subprocess.run(
        command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout
    )


def _history(run: Path) -> list[dict]:
    return [json.loads(t) for t in (run / "history.jsonl").read_text().splitlines() if t]


def test_every_shipped_config_parses():
    names = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))
    assert len(names) >= 6
    for path in (ROOT / "configs").glob("*.yaml"):
        config = load_config(path)
        assert config.input_size % 4 == 0 and config.epochs > 0


def test_bad_config_keys_and_values_are_named():
    with pytest.raises(ConfigError, match="optimizer.*'learnig_rate'.*learning_rate"):
        make_config({"optimizer": {"learnig_rate": 1e-3}})
    with pytest.raises(ConfigError, match="batch_size must be int"):
        make_config({}, ["batch_size=ten"])
    with pytest.raises(ConfigError, match="key=value"):
        make_config({}, ["epochs"])
    assert make_config({}, ["optimizer.learning_rate=2.5e-4"]).optimizer.learning_rate == 2.5e-4


def test_cli_errors_are_one_line(tmp_path):
    cases = [
        (["--config", str(tmp_path / "missing.yaml")], "config file not found"),
        (["--config", str(CONFIG), "--out", str(tmp_path / "r"), "modle.depth=2"], "'modle'"),
        (
            [
                "--config",
                str(ROOT / "configs" / "mpii_binary_hpm.yaml"),
                "--out",
                str(tmp_path / "m"),
            ],
            "mpii",
        ),
        (["--out", str(tmp_path / "nothing"), "--resume"], "nothing to resume"),
    ]
    for argv, needle in cases:
        proc = _run(
            [sys.executable, "-m", "training.train", *argv],
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert lines[-1].startswith("error: ") and needle in lines[-1], proc.stderr
        assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_resume_after_kill_continues_from_the_saved_epoch(tmp_path):
    run = tmp_path / "run"
    steps, epochs = 30, 4
    proc = subprocess.Popen(
        _train_cmd(run, f"epochs={epochs}", f"steps_per_epoch={steps}"),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    state = run / "state.json"
    deadline = time.time() + 240
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up, as with a power cut
    log = proc.communicate()[0]
    assert state.exists(), log
    saved = json.loads(state.read_text())["epoch"]
    assert 1 <= saved < epochs, "the run finished before it could be killed"
    assert not (run / "model.keras").exists()

    resumed = _run(
        [sys.executable, "-m", "training.train", "--out", str(run), "--resume", "--verbose", "2"],
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming from {run / 'checkpoints' / 'epoch'}-{saved} (epoch {saved} of {epochs})" in (
        resumed.stdout
    )
    # Keras counts epochs from the restored one: the first it runs is saved + 1.
    assert f"Epoch {saved + 1}/{epochs}" in resumed.stdout and "Epoch 1/" not in resumed.stdout
    assert [h["epoch"] for h in _history(run)] == list(range(1, epochs + 1))
    final = json.loads(state.read_text())
    # The optimizer's step counter came back from the checkpoint: a fresh optimizer would
    # have counted only the resumed epochs' steps.
    assert final["epoch"] == epochs and final["optimizer_iterations"] == epochs * steps
    assert (run / "model.keras").is_file() and (run / "model.landmarks.json").is_file()

    # Resuming with a different network is refused in one line, and the run's config survives.
    wrong = _run(
        [
            sys.executable,
            "-m",
            "training.train",
            "--out",
            str(run),
            "--resume",
            "epochs=5",
            "model.features=64",
        ],
        timeout=300,
    )
    assert wrong.returncode == 2
    assert wrong.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "does not fit the model" in wrong.stderr and "WARNING" not in wrong.stderr
    assert "features: 32" in (run / "config.yaml").read_text()


def test_mirrored_strategy_runs_one_step_on_two_replicas(tmp_path):
    run = tmp_path / "mirrored"
    script = (
        "import sys, training, tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        "from training.train import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = _train_cmd(run, "epochs=1", "steps_per_epoch=1", "--strategy", "mirrored")[3:]
    proc = _run(
        [sys.executable, "-c", script, *argv],
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 replica(s)" in proc.stdout
    state = json.loads((run / "state.json").read_text())
    assert state == {"epoch": 1, "optimizer_iterations": 1, "steps_per_epoch": 1, "replicas": 2}
    assert (run / "model.keras").is_file()


def _mean_pose_pckh(train_size: int, val_size: int, image_size: int) -> float:
    """Chance level: PCKh of always answering the mean training pose in the crop.

    That is the best a model can do without looking at the image (a constant guess in crop
    coordinates); anything it scores above this comes from reading the pixels.
    """
    from edge.skeletons import MPII16
    from edge.transform import apply_affine, invert_affine
    from training import metrics
    from training.data import iter_samples, open_dataset
    from training.data.augment import crop_sample

    train = open_dataset("synthetic-pose", split="train", size=train_size, image_size=image_size)
    crop_pts = [crop_sample(s, 64, MPII16)[2] for s in iter_samples(train)]
    mean = np.mean(crop_pts, axis=0)
    val = open_dataset("synthetic-pose", split="val", size=val_size, image_size=image_size)
    pred, gt, vis, head = [], [], [], []
    for s in iter_samples(val):
        _, matrix, _, _ = crop_sample(s, 64, MPII16)
        pred.append(apply_affine(invert_affine(matrix), mean))
        gt.append(s.points)
        vis.append(s.visible)
        head.append(s.head_size)
    return metrics.pckh(np.array(pred), np.array(gt), np.array(vis), np.array(head), MPII16).total


@pytest.mark.slow
def test_short_synthetic_run_learns_well_above_chance(tmp_path):
    from training.config import load_config
    from training.train import run

    # The float twin without augmentation learns fastest; this checks the pipeline (crops,
    # targets, loss, decoding, metric) end to end, not how fast 1-bit weights train.
    config = load_config(
        CONFIG, ["epochs=8", "steps_per_epoch=100", "model.binary=false", "augment.enabled=false"]
    )
    t0 = time.time()
    summary = run(config, tmp_path / "learn", verbose=2)
    minutes = (time.time() - t0) / 60
    history = _history(tmp_path / "learn")
    val_size = config.dataset.val_options["size"]
    mean_pose = _mean_pose_pckh(500, val_size, config.dataset.options["image_size"])
    # A uniform random guess in the 64x64 crop hits a joint when it lands inside the PCKh
    # circle, 0.5 * head size (about 0.1 of the crop side here) in radius.
    uniform = _uniform_guess_pckh(val_size, config.dataset.options["image_size"])
    last = history[-1]["val_pckh"]
    print(
        f"\nchance: uniform guess {uniform:.1f}, mean pose {mean_pose:.1f}; val PCKh per epoch "
        f"{[round(h['val_pckh'], 1) for h in history]}; epoch seconds "
        f"{[round(h['epoch_seconds'], 1) for h in history]}; {minutes:.1f} min"
    )
    assert summary["final"]["val_pckh"] == last
    assert uniform < 3 and last > 5 * uniform
    # Above the best image-blind guess too: the model reads the pixels.
    assert last > mean_pose + 6 and last > 1.4 * mean_pose, (mean_pose, last)


def _uniform_guess_pckh(val_size: int, image_size: int) -> float:
    from edge.skeletons import MPII16
    from edge.transform import apply_affine, invert_affine
    from training import metrics
    from training.data import iter_samples, open_dataset
    from training.data.augment import crop_sample

    rng = np.random.default_rng(0)
    val = open_dataset("synthetic-pose", split="val", size=val_size, image_size=image_size)
    pred, gt, vis, head = [], [], [], []
    for s in iter_samples(val):
        _, matrix, _, _ = crop_sample(s, 64, MPII16)
        guess = rng.uniform(-0.5, 63.5, (16, 2))
        pred.append(apply_affine(invert_affine(matrix), guess))
        gt.append(s.points)
        vis.append(s.visible)
        head.append(s.head_size)
    return metrics.pckh(np.array(pred), np.array(gt), np.array(vis), np.array(head), MPII16).total


def test_released_wiring_trains_with_bce_and_saves_sigmoid_heatmaps(tmp_path):
    """The released model's wiring end to end: binary skips and head, Sigmoid + BCE."""
    run = tmp_path / "released"
    proc = _run(
        _train_cmd(
            run,
            "epochs=1",
            "steps_per_epoch=4",
            "model.binary_skip=true",
            "model.binary_head=true",
            "model.heatmap_activation=sigmoid",
            "loss=bce",
        ),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (line,) = _history(run)
    assert np.isfinite(line["loss"]) and "val_pckh" in line
    import tensorflow as tf

    from training.artifacts import load_keras_model

    model = load_keras_model(run / "model.keras")
    assert model.get_layer("stack0_sigmoid").activation is tf.keras.activations.sigmoid
    assert "bskip_bhead_sigmoid" in model.name


def test_a_few_steps_train_with_teacher_scores_as_weights(tmp_path):
    """teacher_scores on, end to end: teacher-labelled MPII records (the label tool's own
    writer, scores included) mixed with drawn figures that have none; a few steps train and
    the run says how many examples had no scores."""
    import cv2
    import yaml

    from training.data import open_dataset
    from training.label import mappings, writers

    figures = open_dataset("synthetic-pose", split="train", size=8, image_size=64, seed=3)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    records = []
    for i in range(8):
        s = figures.load(i)
        assert cv2.imwrite(str(images / f"{i}.jpg"), s.image)
        scores = np.where(s.visible, rng.uniform(0.5, 1.0, 16), rng.uniform(0.0, 0.5, 16))
        head = mappings.head_box(s.points)
        records.append(
            writers.mpii_record(f"{i}.jpg", s.points, s.visible, scores, head, s.box, "fig")
        )
    annot = tmp_path / "train.json"
    annot.write_text(json.dumps(records))
    config = {
        "name": "teacher_scores",
        "dataset": {
            "name": "mpii",
            "path": str(annot),
            "options": {"images": str(images)},
            "val_limit": 4,
            "mix": [{"name": "synthetic-pose", "options": {"size": 8, "image_size": 64}}],
        },
        "model": {"num_stacks": 1, "depth": 1, "features": 32, "block": "hpm", "binary": True},
        "input_size": 64,
        "sigma": 2.0,
        "batch_size": 4,
        "epochs": 1,
        "steps_per_epoch": 3,
        "optimizer": {"name": "adam", "learning_rate": 1.0e-3},
        "teacher_scores": {"use": "weight", "floor": 0.2, "power": 2.0},
    }
    path = tmp_path / "teacher.yaml"
    path.write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    proc = _run(
        [sys.executable, "-m", "training.train", "--config", str(path), "--out", str(run)],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (line,) = _history(run)
    assert np.isfinite(line["loss"]) and "val_pckh" in line
    assert "came from records without teacher scores" in proc.stdout  # the drawn figures
    assert yaml.safe_load((run / "config.yaml").read_text())["teacher_scores"]["use"] == "weight"


def test_validation_set_of_another_format_and_unpaired_skeletons_are_checked(tmp_path):
    """300w-lp -> aflw2000-3d needs dataset.val_name; skeletons must agree, and one without
    left/right pairs cannot be trained with mirrored crops."""
    from training.train import run as train_run

    mismatch = make_config({"dataset": {"name": "synthetic-pose", "val_name": "synthetic-face"}})
    with pytest.raises(ConfigError, match="ibug68.*mpii16"):
        train_run(mismatch, tmp_path / "a")
    (tmp_path / "test").mkdir()
    from scipy.io import savemat

    savemat(tmp_path / "test" / "a.mat", {"pts": np.ones((2, 34)), "visibility": np.ones(34)})
    pifa = make_config(
        {
            "dataset": {
                "name": "pifa",
                "path": str(tmp_path),
                "train_split": "test",
                "val_split": "test",
            }
        }
    )
    with pytest.raises(ConfigError, match="flip_prob: 0"):
        train_run(pifa, tmp_path / "b")


def test_ablation_builds_wiring_variants_and_an_honest_table(tmp_path):
    """python -m benchmarks.ablation --wiring: one binary HPM model per wiring, trained with
    that wiring's overrides, and a table whose sentences call small differences noise."""
    from benchmarks import ablation

    todo = ablation.wiring_variants(
        features=64,
        depth=2,
        input_size=64,
        tasks=["pose"],
        wirings=["paper", "binary_head", "released"],
    )
    assert [v.name for v in todo] == [
        "pose_hpm_binary",
        "pose_hpm_binary_binary_head",
        "pose_hpm_binary_released",
    ]
    assert todo[0].parameters == 446_960 and todo[1].parameters == 446_960 + 2 * 64
    assert todo[2].overrides() == [
        "model.binary_skip=true",
        "model.binary_head=true",
        "model.heatmap_activation=sigmoid",
        "loss=bce",
    ]
    released = make_config({}, todo[2].overrides())  # every wiring is a valid config
    assert released.model.binary_skip and released.model.binary_head and released.loss == "bce"

    def row(v, score):
        metric = {"headline": "pckh@0.5", "pckh@0.5": score, "runtime": "x"}
        return {
            **ablation.asdict(v),
            "name": v.name,
            "kind": v.kind,
            "flatbuffer_bytes": 1e5,
            "keras": metric,
            "tflite": metric,
            "train_minutes": 1.0,
        }

    rows = [row(todo[0], 20.0), row(todo[1], 21.0), row(todo[2], 14.0)]
    meta = {
        "command": "c",
        "machine": "m",
        "date": "d",
        "recipe": "r",
        "eval": "e",
        "note": "",
        "wiring": True,
        "spread": 2.0,
    }
    out = tmp_path / "wiring.md"
    ablation.write_results(rows, meta, out, complete=True)
    text = out.read_text()
    assert text.startswith("# Released-model wiring ablation")
    assert "| pose | hpm | yes | binary_head | 64 | 447,088 |" in text
    assert (
        "binary_head +1.00 (within the 2-point spread); released -6.00 (beyond the 2-point spread)"
    ) in text


def test_saved_model_averages_the_last_checkpoints(tmp_path):
    """average_last=3: model.keras holds the mean of the last three epochs' weights (BatchNorm
    statistics included), and the summary scores that averaged model."""
    import tensorflow as tf

    from training.artifacts import load_keras_model
    from training.landmarks.task import build_model

    run = tmp_path / "averaged"
    proc = _run(
        _train_cmd(run, "epochs=3", "steps_per_epoch=3", "average_last=3"),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the mean of epoch-1, epoch-2, epoch-3" in proc.stdout
    config = load_config(run / "config.yaml")
    per_epoch = []
    for epoch in (1, 2, 3):
        model = build_model(config, 16)
        tf.train.Checkpoint(model=model).restore(str(run / "checkpoints" / f"epoch-{epoch}"))
        per_epoch.append(model.get_weights())
    saved = load_keras_model(run / "model.keras").get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(per_epoch[1], per_epoch[2], strict=True))
    for i, weights in enumerate(saved):
        np.testing.assert_allclose(
            weights, np.mean([w[i] for w in per_epoch], axis=0), rtol=1e-5, atol=1e-6
        )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["averaged"]["checkpoints"] == ["epoch-1", "epoch-2", "epoch-3"]
    assert 0 <= summary["averaged"]["val_pckh"] <= 100
    with pytest.raises(ConfigError, match="average_last"):
        make_config({"epochs": 2, "average_last": 3})


def test_blend_start_saves_a_soup_of_the_fine_tune_and_its_start(tmp_path):
    """blend_start=0.25 with init_from: model.keras holds 0.75 x (the mean of the last two
    epochs) + 0.25 x the starting model, BatchNorm statistics included."""
    import tensorflow as tf

    from training.artifacts import load_keras_model
    from training.landmarks.task import build_model

    start, run = tmp_path / "start", tmp_path / "blended"
    proc = _run(
        _train_cmd(start, "epochs=1", "steps_per_epoch=2"),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = _run(
        _train_cmd(
            run,
            "epochs=2",
            "steps_per_epoch=3",
            "average_last=2",
            f"init_from={start / 'model.keras'}",
            "blend_start=0.25",
        ),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0.75 x the mean of epoch-1, epoch-2 + 0.25 x" in proc.stdout
    config = load_config(run / "config.yaml")
    per_epoch = []
    for epoch in (1, 2):
        model = build_model(config, 16)
        tf.train.Checkpoint(model=model).restore(str(run / "checkpoints" / f"epoch-{epoch}"))
        per_epoch.append(model.get_weights())
    first = load_keras_model(start / "model.keras").get_weights()
    saved = load_keras_model(run / "model.keras").get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(first, per_epoch[1], strict=True))
    for i, weights in enumerate(saved):
        expected = 0.75 * np.mean([w[i] for w in per_epoch], axis=0) + 0.25 * first[i]
        np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-6)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["blended"]["weight"] == 0.25 and 0 <= summary["blended"]["val_pckh"] <= 100
    with pytest.raises(ConfigError, match="blend_start needs init_from"):
        make_config({"blend_start": 0.5})
    with pytest.raises(ConfigError, match="blend_start must be"):
        make_config({"blend_start": 1.0, "init_from": "x.keras"})


def test_init_from_another_skeleton_starts_the_shared_landmarks_learned(tmp_path):
    """A COCO-17 run with init_from an MPII-16 model: the heatmap head's channels of the 12
    limb joints both skeletons name come from the MPII-16 model, the 5 face points start
    fresh, and every other layer is copied whole (issue 24: the bundled model's COCO-17 head
    continues an MPII-16 model)."""
    from edge.skeletons import get_skeleton
    from training.artifacts import load_keras_model
    from training.fit import init_weights
    from training.landmarks.task import build_model

    start, run = tmp_path / "mpii16", tmp_path / "coco17"
    proc = _run(_train_cmd(start, "epochs=1", "steps_per_epoch=2"), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = _run(
        _train_cmd(
            run,
            "epochs=1",
            "steps_per_epoch=1",
            "dataset.options.skeleton=coco17",
            f"init_from={start / 'model.keras'}",
        ),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "stack0_heatmaps: 12 of 17 channels copied by name" in proc.stdout
    assert "fresh: nose, left_eye, right_eye, left_ear, right_ear" in proc.stdout
    meta = json.loads((run / "model.landmarks.json").read_text())
    assert meta["skeleton"] == "coco17"

    mpii, coco = get_skeleton("mpii16").landmarks, get_skeleton("coco17").landmarks
    source = load_keras_model(start / "model.keras")
    model = build_model(load_config(run / "config.yaml"), len(coco))
    fresh_head = [w.copy() for w in model.get_layer("stack0_heatmaps").get_weights()]
    copied = init_weights(model, str(start / "model.keras"), tuple(coco))
    assert copied == sum(1 for layer in model.layers if layer.weights)
    kernel, bias = model.get_layer("stack0_heatmaps").get_weights()
    their_kernel, their_bias = source.get_layer("stack0_heatmaps").get_weights()
    for i, name in enumerate(coco):
        if name in mpii:
            np.testing.assert_array_equal(kernel[..., i], their_kernel[..., mpii.index(name)])
            assert bias[i] == their_bias[mpii.index(name)]
        else:  # no MPII-16 counterpart: the fresh weights, untouched
            np.testing.assert_array_equal(kernel[..., i], fresh_head[0][..., i])
    np.testing.assert_array_equal(
        model.get_layer("stem_conv").get_weights()[0],
        source.get_layer("stem_conv").get_weights()[0],
    )
