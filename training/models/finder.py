"""The hourglass as a finder: centre heatmaps and box and crop regressions, focal + L1 loss.

The network is :func:`.hourglass.build_hourglass` itself (binary HPM blocks inside; the stem
conv, the skips' 1x1 convs and the heads real-valued), whose last 1x1 conv gives the
``classes + 9`` channels of :mod:`edge.finder_codec` at a quarter of the input size: one
centre-heatmap logit per class, then the box's sub-cell offset and log size and the landmark
crop's offset, log size and rotation (sin, cos). The heatmap logits start at the focal loss's
prior (a cell is a centre with probability 0.01), as CenterNet and RetinaNet start, so the
first steps are not swamped by the background.

The loss (:class:`FinderLoss`, one per stack, every stack supervised) is CenterNet's:
the penalty-reduced focal loss on the heatmaps (Law & Deng, CornerNet; Zhou et al.,
CenterNet) plus ``regression_weight`` times the L1 of the regressions at the objects' centre
cells only (the target's last channel marks them), both over the number of objects.
"""

from __future__ import annotations

import math

import tensorflow as tf

from edge.finder_codec import REGRESSIONS

from .hourglass import build_hourglass

# The focal loss's prior: the heatmap logits start at log(p / (1 - p)) for this p.
PRIOR = 0.01


def build_finder(*, num_classes: int, name: str | None = None, **hourglass) -> tf.keras.Model:
    """The stacked hourglass with a finder head: ``num_classes + 9`` channels per stack.

    ``hourglass`` takes :func:`build_hourglass`'s keywords (``num_stacks``, ``depth``,
    ``features``, ``input_size``, ``block``, ``binary``, ``stem_channels``, ...) except
    ``num_landmarks`` and ``heatmap_activation`` (the heads are linear: logits and
    regressions). Outputs: one (N, S/4, S/4, num_classes + 9) tensor per stack.
    """
    for key in ("num_landmarks", "heatmap_activation"):
        if key in hourglass:
            raise TypeError(f"build_finder takes num_classes, not {key}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    model = build_hourglass(num_landmarks=num_classes + len(REGRESSIONS), **hourglass)
    prior = -math.log((1 - PRIOR) / PRIOR)
    for layer in model.layers:
        if layer.name.endswith("_heatmaps"):  # each stack's last conv (see build_hourglass)
            kernel, bias = layer.get_weights()
            bias = bias.copy()
            bias[:num_classes] = prior
            bias[num_classes + REGRESSIONS.index("crop_cos")] = 1.0  # an upright crop
            layer.set_weights([kernel, bias])
    if name is None:
        name = model.name.replace("hourglass_", "finder_", 1)
    return tf.keras.Model(model.inputs, model.outputs, name=name)


class FinderLoss(tf.keras.losses.Loss):
    """Focal loss on the heatmap logits + ``regression_weight`` x L1 at the centre cells.

    ``y_true`` is :meth:`edge.finder_codec.FinderCodec.encode`'s target (N, G, G, C + 10):
    heatmaps, regressions, the regression weight; ``y_pred`` the network's (N, G, G, C + 9).
    Per-sample values whose batch sum, divided by Keras's batch mean, is the loss over the
    batch's objects (at least one, so an empty frame still learns its background).
    """

    def __init__(
        self,
        num_classes: int = 1,
        regression_weight: float = 1.0,
        name: str = "finder_loss",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.regression_weight = float(regression_weight)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        c = self.num_classes
        y_true = tf.convert_to_tensor(y_true)
        y_pred = tf.cast(y_pred, y_true.dtype)
        heat, logits = y_true[..., :c], y_pred[..., :c]
        centre = tf.cast(heat >= 1.0 - 1e-4, y_true.dtype)
        # log p and log(1 - p) from the logits, without computing p first (stable for large
        # logits).
        log_p, log_not_p = -tf.nn.softplus(-logits), -tf.nn.softplus(logits)
        p = tf.sigmoid(logits)
        positive = -centre * tf.square(1.0 - p) * log_p
        negative = -(1.0 - centre) * tf.pow(1.0 - heat, 4.0) * tf.square(p) * log_not_p
        focal = tf.reduce_sum(positive + negative, axis=[1, 2, 3])
        weight = y_true[..., -1:]
        l1 = tf.reduce_sum(weight * tf.abs(y_pred[..., c:] - y_true[..., c:-1]), axis=[1, 2, 3])
        # Keras averages the per-sample values over the batch: scaling each by the batch size
        # over the batch's objects makes that average the sum over objects.
        batch = tf.cast(tf.shape(y_true)[0], y_true.dtype)
        objects = tf.maximum(tf.reduce_sum(weight), 1.0)
        return (focal + self.regression_weight * l1) * batch / objects

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "regression_weight": self.regression_weight,
        }


def finder_losses(
    num_stacks: int, num_classes: int, regression_weight: float = 1.0
) -> list[tf.keras.losses.Loss]:
    """One :class:`FinderLoss` per stack (intermediate supervision)."""
    return [
        FinderLoss(num_classes, regression_weight, name=f"stack{s}_finder")
        for s in range(num_stacks)
    ]
