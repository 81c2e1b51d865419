"""Training mixes that repeat hard poses: ``dataset.mix`` entries with ``select``."""

from __future__ import annotations

import numpy as np
import pytest

import training  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow loads
from edge.skeletons import MPII16, SKELETONS
from training.config import ConfigError, make_config
from training.data.base import DatasetError, open_dataset
from training.data.select import arm_raise_degrees, select
from training.landmarks.task import open_training_set

J = {name: i for i, name in enumerate(MPII16.landmarks)}


def _standing(left_elbow_offset: tuple[float, float]) -> np.ndarray:
    """A person standing upright (y down); the left elbow at ``offset`` from its shoulder,
    the right arm hanging."""
    p = np.zeros((16, 2), np.float32)
    p[J["thorax"]], p[J["pelvis"]] = (100, 100), (100, 160)
    p[J["right_shoulder"]], p[J["left_shoulder"]] = (80, 104), (120, 104)
    p[J["right_elbow"]] = (80, 140)
    p[J["left_elbow"]] = p[J["left_shoulder"]] + left_elbow_offset
    return p


def test_arm_angle_is_zero_hanging_ninety_sideways_and_180_overhead():
    visible = np.ones(16, bool)
    assert arm_raise_degrees(_standing((0, 36)), visible, MPII16) == pytest.approx(0, abs=1e-3)
    assert arm_raise_degrees(_standing((36, 0)), visible, MPII16) == pytest.approx(90, abs=1e-3)
    assert arm_raise_degrees(_standing((0, -36)), visible, MPII16) == pytest.approx(180, abs=1e-3)
    # The same pose lying on its side: measured against the torso, not the image.
    lying = _standing((36, 0)) @ np.array([[0, 1], [-1, 0]], np.float32)
    assert arm_raise_degrees(lying, visible, MPII16) == pytest.approx(90, abs=1e-3)
    hidden = visible.copy()
    hidden[J["pelvis"]] = False
    assert np.isnan(arm_raise_degrees(_standing((36, 0)), hidden, MPII16))
    with pytest.raises(DatasetError, match="body skeleton"):
        arm_raise_degrees(np.zeros((68, 2)), np.ones(68, bool), SKELETONS["ibug68"])


def test_coco17_arm_angle_uses_the_hips_and_shoulders_midpoints():
    """COCO-17 has no pelvis or thorax: the torso runs from the hips' to the shoulders'
    midpoint, and the same pose gives the same angle as in MPII-16."""
    from edge.skeletons import COCO17, convert_by_name

    for offset, degrees in (((0, 36), 0), ((36, 0), 90), ((0, -36), 180)):
        mpii = _standing(offset)
        mpii[J["right_hip"]], mpii[J["left_hip"]] = (90, 160), (110, 160)
        coco, seen = convert_by_name(mpii, np.ones(16, bool), MPII16, COCO17)
        assert arm_raise_degrees(coco, seen, COCO17) == pytest.approx(degrees, abs=1e-3)
    coco, seen = convert_by_name(_standing((36, 0)), np.ones(16, bool), MPII16, COCO17)
    seen[COCO17.landmarks.index("left_hip")] = False
    assert np.isnan(arm_raise_degrees(coco, seen, COCO17))


def test_a_mix_entry_repeats_only_the_drawn_figures_with_a_raised_arm():
    config = make_config(
        {
            "dataset": {
                "name": "synthetic-pose",
                "train_options": {"size": 120, "image_size": 64},
                "mix": [
                    {
                        "name": "synthetic-pose",
                        "options": {"size": 120, "image_size": 64},
                        "select": {"raised_arm": 90},
                        "repeat": 3,
                    }
                ],
            },
        }
    )
    mixed = open_training_set(config)
    chosen = mixed.parts[1]
    assert 10 <= len(chosen) <= 80  # some figures wave, most do not
    assert len(mixed) == 120 + 3 * len(chosen)
    down_axis = []
    for i in range(len(chosen)):
        p = chosen.load(i).points
        down = p[J["pelvis"]] - p[J["thorax"]]
        # An upper arm raised 90 degrees or more has its elbow level with the shoulder or
        # above it, measured along the torso: a check independent of the angle's arithmetic.
        down_axis.append(
            min((p[J[f"{s}_elbow"]] - p[J[f"{s}_shoulder"]]) @ down for s in ("left", "right"))
        )
    assert max(down_axis) <= 1e-3
    # The records left out include figures with both arms down.
    picked = set(chosen.indices)
    full = open_dataset("synthetic-pose", split="train", size=120, image_size=64)
    left_out = [full.load(i).points for i in range(120) if i not in picked]
    assert any(
        all(
            (p[J[f"{s}_elbow"]] - p[J[f"{s}_shoulder"]]) @ (p[J["pelvis"]] - p[J["thorax"]]) > 0
            for s in ("left", "right")
        )
        for p in left_out
    )


def test_a_mix_entry_without_a_name_selects_from_the_training_set_itself():
    config = make_config(
        {
            "dataset": {
                "name": "synthetic-pose",
                "train_options": {"size": 60, "image_size": 64},
                "mix": [{"select": {"raised_arm": 90}, "repeat": 2}],
            },
        }
    )
    mixed = open_training_set(config)
    training_set, chosen = mixed.parts
    assert chosen.dataset is training_set and 0 < len(chosen) < 60
    assert len(mixed) == 60 + 2 * len(chosen)
    config.dataset.mix = [{"select": {"raised_arm": 90}, "path": "data/elsewhere"}]
    with pytest.raises(ConfigError, match="has no name: without one it is the training set"):
        open_training_set(config)


def test_bad_select_rules_are_one_line_errors():
    pose = open_dataset("synthetic-pose", split="train", size=8, image_size=64)
    with pytest.raises(DatasetError, match=r"unknown select rule\(s\) \['raised_hand'\]"):
        select(pose, {"raised_hand": 90})
    with pytest.raises(DatasetError, match="kept no record"):
        select(pose, {"raised_arm": 181})
    face = open_dataset("synthetic-face", split="train", size=4, image_size=64)
    with pytest.raises(DatasetError, match="body skeleton"):
        select(face, {"raised_arm": 90})
