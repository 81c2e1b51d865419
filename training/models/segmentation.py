"""The hourglass as a part segmenter: one logit map per class, softmax cross-entropy.

The network is :func:`.hourglass.build_hourglass` itself (stem, stacks, heads, Newell's
re-injection between stacks): its head, a 1x1 conv to K linear maps at heatmap resolution,
becomes a per-pixel classifier when K is the number of classes and the loss is softmax
cross-entropy over those K logits (:func:`segmentation_losses`, one per stack, so every
stack is supervised, as for landmarks). The device upsamples the final logits to image
pixels (:mod:`edge.segmentation`).
"""

from __future__ import annotations

import tensorflow as tf

from .hourglass import build_hourglass


def build_segmenter(*, num_classes: int, name: str | None = None, **hourglass) -> tf.keras.Model:
    """The stacked hourglass with a ``num_classes``-way per-pixel head.

    ``hourglass`` takes :func:`build_hourglass`'s keywords (``num_stacks``, ``depth``,
    ``features``, ``input_size``, ``block``, ``binary``, ...) except ``num_landmarks``.
    Outputs: one (N, S/4, S/4, num_classes) logit tensor per stack, the last one the
    prediction.
    """
    if "num_landmarks" in hourglass:
        raise TypeError("build_segmenter takes num_classes, not num_landmarks")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    model = build_hourglass(num_landmarks=num_classes, **hourglass)
    if name is None:
        name = model.name.replace("hourglass_", "segmenter_", 1)
    return tf.keras.Model(model.inputs, model.outputs, name=name)


def segmentation_losses(num_stacks: int) -> list[tf.keras.losses.Loss]:
    """Softmax cross-entropy over class logits, one loss per stack (intermediate
    supervision); targets are (N, h, w) integer class ids."""
    return [
        tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, name=f"ce_stack{s}")
        for s in range(num_stacks)
    ]
