"""The teacher's per-point scores as soft targets (issue 24); off unless a config turns it on.

``training.label pose`` stores BlazePose's score of every landmark beside its position
(``scores`` in the COCO and MPII JSON records; a point is ``visible`` when its score is at
least the label tool's ``--min-visibility``, 0.5). The readers load them as
``Sample.scores`` (K,) float32 in [0, 1]; records without them (drawn figures, human-labelled
benchmarks) have ``None``. Config ``teacher_scores`` (:class:`TeacherScoresConfig`) says what
training makes of them:

* ``use: none`` (default): nothing; a visible point weighs 1, a hidden one 0, as always;
* ``use: weight``: a visible point's loss weight is :func:`score_weights` of its score, so a
  joint the teacher was unsure of pulls the student less;
* ``use: target``: a visible point's target heatmap is the Gaussian times that weight (its
  peak is the teacher's confidence), loss weight 1: the student learns to say how sure it is
  in its heatmap peak, which is the score the device decodes.

Hidden points (``visible`` False) keep weight 0 and an empty map in every mode; a record
without scores weighs its visible points 1. :func:`score_weights` is the one place a score
becomes a weight: ``floor + (1 - floor) * score ** power``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

USES = ("none", "weight", "target")


@dataclass
class TeacherScoresConfig:
    use: str = "none"  # none, weight or target (see the module docstring)
    floor: float = 0.0  # the weight of a score of 0 (0 to 1)
    power: float = 1.0  # above 1 weighs the middling scores down harder (> 0)

    @property
    def on(self) -> bool:
        return self.use != "none"


def score_weights(scores: np.ndarray | None, config: TeacherScoresConfig) -> np.ndarray | None:
    """(K,) float32 weights in [floor, 1] from (K,) teacher scores (clipped to [0, 1]):
    ``floor + (1 - floor) * score ** power``; None (a record without scores) gives None."""
    if scores is None:
        return None
    s = np.clip(np.asarray(scores, np.float64).reshape(-1), 0.0, 1.0)
    return (config.floor + (1.0 - config.floor) * s**config.power).astype(np.float32)


def apply_scores(
    heatmaps: np.ndarray,
    weights: np.ndarray,
    scores: np.ndarray | None,
    config: TeacherScoresConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Target heatmaps (h, w, K) and loss weights (K,) (:meth:`edge.codec.HeatmapCodec.encode`'s)
    shaped by (K,) teacher scores in the crop's landmark order; the same two arrays when
    ``config.use`` is none or ``scores`` is None. Points of weight 0 stay 0."""
    w = score_weights(scores, config) if config.on else None
    if w is None:
        return heatmaps, weights
    if config.use == "weight":
        return heatmaps, (weights * w).astype(np.float32)
    return (heatmaps * w[None, None, :]).astype(np.float32), weights
