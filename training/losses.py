"""Heatmap loss: mean squared error (or binary cross-entropy) on every stack, with unlabelled
landmarks weighted 0.

Keras hands a loss only ``y_true`` and ``y_pred``, so the per-landmark weights travel inside
``y_true``: :func:`pack_targets` appends the K weights, broadcast over the heatmap, as K more
channels. The same packed target is given to every stack's output, and Keras sums the
per-stack losses, which is the paper's intermediate supervision.

``loss="bce"`` is for networks whose heatmaps end in a Sigmoid (``model.heatmap_activation:
sigmoid``, as in the authors' released binary model): each heatmap cell is a probability and
the Gaussian target's value in [0, 1] its soft label. MSE works with either output.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def pack_targets(heatmaps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(..., h, w, K) heatmaps and (..., K) weights -> (..., h, w, 2K) float32."""
    hm = np.asarray(heatmaps, np.float32)
    w = np.broadcast_to(np.asarray(weights, np.float32)[..., None, None, :], hm.shape)
    return np.concatenate([hm, w], axis=-1)


def unpack_targets(packed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    k = packed.shape[-1] // 2
    return packed[..., :k], packed[..., k:]


class HeatmapMSE(tf.keras.losses.Loss):
    """Per-sample mean over (h, w, K) of weight * (prediction - target)^2.

    Invisible landmarks (weight 0) contribute nothing, so the network is not taught to
    predict an empty map where a joint is merely unannotated.
    """

    def __init__(self, name: str = "heatmap_mse", **kwargs) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        target, weight = unpack_targets(tf.convert_to_tensor(y_true))
        y_pred = tf.cast(y_pred, target.dtype)
        return tf.reduce_mean(weight * tf.square(y_pred - target), axis=[1, 2, 3])


class HeatmapBCE(tf.keras.losses.Loss):
    """Per-sample mean over (h, w, K) of weight * binary cross-entropy(target, prediction).

    The prediction must be a probability (a Sigmoid output); it is clipped to
    [eps, 1 - eps] as Keras's own binary cross-entropy does.
    """

    def __init__(self, name: str = "heatmap_bce", epsilon: float = 1e-7, **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.epsilon = epsilon

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        target, weight = unpack_targets(tf.convert_to_tensor(y_true))
        p = tf.clip_by_value(tf.cast(y_pred, target.dtype), self.epsilon, 1.0 - self.epsilon)
        bce = -(target * tf.math.log(p) + (1.0 - target) * tf.math.log(1.0 - p))
        return tf.reduce_mean(weight * bce, axis=[1, 2, 3])


LOSSES = {"mse": HeatmapMSE, "bce": HeatmapBCE}


def stack_losses(num_stacks: int, loss: str = "mse") -> list[tf.keras.losses.Loss]:
    """One loss per stack output (intermediate supervision); ``loss`` is "mse" or "bce"."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    return [LOSSES[loss](name=f"stack{i}_{loss}") for i in range(num_stacks)]
