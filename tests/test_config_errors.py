"""Bad training configs are one-line errors, never a traceback, a NaN model or a folder
outside runs/ (issue 25: found by trying to break `python -m training.train`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from training.config import ConfigError, load_config, make_config

REPO = Path(__file__).resolve().parents[1]
BASE = {"dataset": {"name": "synthetic-pose"}}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("name=/abs/path", "plain name"),  # wrote its run folder outside runs/
        ("name=..", "plain name"),
        ("seed=-1", "seed must be 0 or more"),
        ("box_margin=-1", "box_margin must be a positive number"),
        ("box_margin=.nan", "box_margin must be a positive number"),
        ("model.features=0", "must be at least 1"),
        ("model.depth=-2", "must be at least 1"),
        ("optimizer.learning_rate=.inf", "learning_rate must be a positive number"),  # NaN model
        ("optimizer.learning_rate=-0.001", "learning_rate must be a positive number"),
        ("optimizer.schedule=[[2, .nan]]", "learning rate > 0"),
        ("optimizer.schedule=[[-1, 0.1]]", "epoch >= 0"),
        ("a=" + "[" * 3000 + "]" * 3000, "nested too deeply"),
        # augmentation the draws would turn into NaN pixels or a failure mid-run
        ("augment.noise_prob=1.5", "augment.noise_prob is a probability"),
        ("augment.shift_sigma=.nan", "augment.shift_sigma must be a number of 0 or more"),
        ("augment.dark_min=0", "augment.dark_min must be above 0"),
        ("augment.jpeg_quality_min=95", "augment.jpeg_quality_min must be 1 to 90"),
        ("augment.background_prob=1.5", "augment.background_prob is a probability"),
        ("augment.background_prob=.nan", "augment.background_prob is a probability"),
        ("augment.background_prob=often", "augment.background_prob must be float"),
        ("augment.neighbour_prob=2", "augment.neighbour_prob is a probability"),
        ("augment.neighbour_front_prob=-0.1", "augment.neighbour_front_prob is a probability"),
        ("augment.neighbour_scale_min=0", "augment.neighbour_scale_min must be above 0"),
        ("augment.neighbour_scale_min=2", "at most neighbour_scale_max, got 2.0 and 1.25"),
        # the teacher's per-point scores as weights or soft targets (issue 24)
        ("teacher_scores.use=soft", "teacher_scores.use must be none, weight or target"),
        ("teacher_scores.use=off", "YAML reads yes/no/on/off as true/false: quote the value"),
        ("teacher_scores.floor=1.5", "teacher_scores.floor must be between 0 and 1"),
        ("teacher_scores.floor=.nan", "teacher_scores.floor must be between 0 and 1"),
        ("teacher_scores.power=0", "teacher_scores.power must be a positive number"),
        ("teacher_scores.power=.inf", "teacher_scores.power must be a positive number"),
        ("teacher_scores.weight=1", "unknown config key teacher_scores.'weight'"),
    ],
)
def test_bad_values_are_refused_in_one_line(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as caught:
        make_config(BASE, [override])
    assert "\n" not in str(caught.value)


def test_background_swaps_are_for_landmark_models_only():
    # A part segmentation's class map (or a finder's boxes) would not follow the new background.
    make_config(BASE, ["augment.background_prob=0.5"])  # landmarks: fine
    with pytest.raises(ConfigError, match="background_prob applies to task: landmarks") as caught:
        make_config(BASE, ["task=segmentation", "augment.background_prob=0.5"])
    assert "\n" not in str(caught.value)
    # Nor would they know a person pasted beside the one they are about.
    make_config(BASE, ["augment.neighbour_prob=0.3"])
    with pytest.raises(ConfigError, match="neighbour_prob applies to task: landmarks"):
        make_config(BASE, ["task=finder", "augment.neighbour_prob=0.3"])


@pytest.mark.parametrize(
    ("task", "override", "message"),
    [
        ("segmentation", "sigma=2.0", "sigma is for task: landmarks"),
        ("finder", "refine=dark", "refine is for task: landmarks"),
        ("segmentation", "loss=bce", "task: segmentation trains class logits"),
        ("segmentation", "model.heatmap_activation=sigmoid", "task: segmentation trains class"),
    ],
)
def test_a_landmark_only_key_in_another_task_is_refused_not_ignored(task, override, message):
    make_config(BASE, [override.replace("loss=bce", "sigma=2.0")])  # landmarks: fine
    with pytest.raises(ConfigError, match=message) as caught:
        make_config(BASE, [f"task={task}", override])
    assert "\n" not in str(caught.value)


def test_teacher_scores_are_off_by_default_and_for_landmark_models_only():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        assert load_config(path).teacher_scores.use == "none", path.name  # all train as before
    on = make_config(BASE, ["teacher_scores={use: weight, floor: 0.2, power: 3}"])
    assert (on.teacher_scores.use, on.teacher_scores.floor, on.teacher_scores.power) == (
        "weight",
        0.2,
        3.0,
    )
    with pytest.raises(ConfigError, match="teacher_scores applies to task: landmarks") as caught:
        make_config(BASE, ["task=segmentation", "teacher_scores.use=target"])
    assert "\n" not in str(caught.value)


def test_every_shipped_segmentation_and_finder_config_still_loads():
    for name in ("faceparts", "person_finder", "face_finder"):
        assert load_config(REPO / "configs" / f"{name}.yaml").task != "landmarks"


def test_a_config_file_that_is_not_utf8_or_nested_too_deeply(tmp_path):
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(latin)
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: x\nmodel: " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(deep)


def test_the_command_line_says_it_in_one_line_and_exits_2(tmp_path):
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    for args in (
        ["--config", str(latin)],
        ["--config", str(REPO / "configs" / "synthetic_pose.yaml"), "optimizer.learning_rate=.inf"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "training.train", *args, "--out", str(tmp_path / "run")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 2, done.stderr[-2000:]
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
        assert not (tmp_path / "run").exists()


def test_out_naming_a_file_and_a_missing_init_from_are_one_line(tmp_path):
    config = str(REPO / "configs" / "synthetic_pose.yaml")
    afile = tmp_path / "a_file"
    afile.write_text("not a run folder")
    tiny = ["model.depth=1", "model.features=32", "input_size=64", "epochs=1", "steps_per_epoch=1"]
    cases = [
        (["--config", config, "--out", str(afile), *tiny], "is a file"),
        (
            [
                "--config",
                config,
                "--out",
                str(tmp_path / "run"),
                *tiny,
                f"init_from={tmp_path / 'missing.keras'}",
            ],
            "does not exist",
        ),
    ]
    for args, message in cases:
        done = subprocess.run(
            [sys.executable, "-m", "training.train", *args],
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},  # TensorFlow's own start-up lines
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 2, done.stderr[-2000:]
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert afile.read_text() == "not a run folder"
