"""Choosing records by pose, so a training mix can repeat the poses a model finds hard.

A ``dataset.mix`` entry may carry ``select: {raised_arm: 90}``: the entry then holds only the
records with an upper arm raised at least 90 degrees from the torso (see
:func:`arm_raise_degrees`), and its ``repeat`` says how many extra times they are seen. Why:
in the teacher-labelled footage fewer than one frame in ten has an arm out sideways or
overhead, and the bundled pose model shortened exactly those arms (it put the wrist on the
elbow), on real people and on the drawn demo clip alike.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edge.skeletons import Skeleton

from .base import DatasetError, LandmarkDataset, iter_samples


def arm_raise_degrees(points: np.ndarray, visible: np.ndarray, skeleton: Skeleton) -> float:
    """The larger of the two upper arms' angles from the torso's downward direction (thorax
    to pelvis; on a skeleton without those two, e.g. COCO-17, the shoulders' midpoint to the
    hips'): 0 for an arm hanging at the side, 90 straight out sideways, 180 overhead.
    Measured in the image, so it does not depend on how the person stands in the frame.
    NaN where the torso or neither upper arm is labelled."""
    name = {n: i for i, n in enumerate(skeleton.landmarks)}
    arms = ("right_shoulder", "right_elbow", "left_shoulder", "left_elbow")
    if "pelvis" in name and "thorax" in name:
        torso = [("pelvis",), ("thorax",)]
    else:
        torso = [("left_hip", "right_hip"), ("left_shoulder", "right_shoulder")]
    needed = (*(n for group in torso for n in group), *arms)
    if any(n not in name for n in needed):
        raise DatasetError(f"raised_arm needs a body skeleton with {needed}, not {skeleton.name}")
    ends = []
    for group in torso:  # the lower end (pelvis or hips), then the upper (thorax or shoulders)
        idx = [name[n] for n in group]
        if not all(visible[i] for i in idx):
            return float("nan")
        ends.append(points[idx].mean(axis=0))
    down = ends[0] - ends[1]
    angles = []
    for side in ("right", "left"):
        shoulder, elbow = name[f"{side}_shoulder"], name[f"{side}_elbow"]
        if visible[shoulder] and visible[elbow]:
            upper = points[elbow] - points[shoulder]
            cos = upper @ down / (np.linalg.norm(upper) * np.linalg.norm(down) + 1e-9)
            angles.append(float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))))
    return max(angles) if angles else float("nan")


def _raised_arm(min_degrees: float) -> Callable:
    def keep(sample, skeleton: Skeleton) -> bool:
        return arm_raise_degrees(sample.points, sample.visible, skeleton) >= float(min_degrees)

    return keep


SELECTORS: dict[str, Callable[..., Callable]] = {"raised_arm": _raised_arm}


class SelectedDataset(LandmarkDataset):
    """The records of ``dataset`` at ``indices``, in that order (a view: nothing is copied)."""

    def __init__(self, dataset: LandmarkDataset, indices: list[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)
        self.skeleton = dataset.skeleton

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int):
        return self.dataset.load(self.indices[self._check_index(index)])


def select(dataset: LandmarkDataset, rules: dict) -> SelectedDataset:
    """The records of ``dataset`` that pass every rule in ``rules`` (name -> parameter, names
    from :data:`SELECTORS`); corrupt records are left out and counted in ``dataset.skipped``.
    Reads every record once, so it costs one pass over the images."""
    if not isinstance(rules, dict) or not rules:
        raise DatasetError(f"select needs rules such as {{raised_arm: 90}}, got {rules!r}")
    unknown = set(rules) - set(SELECTORS)
    if unknown:
        raise DatasetError(f"unknown select rule(s) {sorted(unknown)}; known: {sorted(SELECTORS)}")
    tests = [SELECTORS[name](value) for name, value in rules.items()]
    kept = [
        i
        for i in range(len(dataset))
        for sample in iter_samples(dataset, [i])
        if all(test(sample, dataset.skeleton) for test in tests)
    ]
    if not kept:
        raise DatasetError(f"select {rules} kept no record of {len(dataset)}")
    return SelectedDataset(dataset, kept)
