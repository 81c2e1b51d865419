"""Residual blocks of the hourglass: HPM (the paper's), Newell's bottleneck and a wide bottleneck.

Each factory takes a Keras tensor and returns a Keras tensor (functional API), so a model built
from them is a plain functional graph: it saves and reloads without custom objects and LCE
converts it op by op. Layer names are ``{name}_...`` so ``model.summary()`` reads as the block
structure.

Every conv of a block is preceded by BatchNorm ("pre-activation" order):

- binary: BN -> QuantConv2D, whose input quantizer is sign() (the paper's binary unit);
- real: BN -> ReLU -> Conv2D (FAN's real-valued HPM).

The skip is the identity when the input already has ``channels`` channels, otherwise
BN -> 1x1 conv. By default that 1x1 conv stays real-valued (float32, no bias) in both
variants: the paper's 0.71 G float MACs for the binary network are exactly the 7x7 stem conv,
the two heads' 1x1 convs and the two skip 1x1 convs of the stem blocks, and its 1.30 MB
flatbuffer needs them float (see hourglass.py). Keeping the skip identical in both variants
also makes binary-vs-real ablations differ only in the main path. ``binary_skip=True`` (binary
blocks only) makes it BN -> sign -> binary 1x1 conv instead, as public printouts of the
authors' released binary model show.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from .quantizers import conv

BLOCK_TYPES = ("hpm", "bottleneck", "wide")


def _units(*, binary: bool, weight_scale: bool, name: str) -> Callable[..., tf.Tensor]:
    """A block's conv unit ``unit(x, filters, kernel_size, part)``.

    BN -> (sign) conv when binary, BN -> ReLU -> conv when real; layers are named
    ``{name}_{part}_bn`` and ``{name}_{part}_conv``.
    """

    def unit(x: tf.Tensor, filters: int, kernel_size: int, part: str) -> tf.Tensor:
        x = tf.keras.layers.BatchNormalization(name=f"{name}_{part}_bn")(x)
        if not binary:
            x = tf.keras.layers.ReLU(name=f"{name}_{part}_relu")(x)
        return conv(
            filters,
            kernel_size,
            binary=binary,
            weight_scale=weight_scale,
            name=f"{name}_{part}_conv",
        )(x)

    return unit


def _skip(
    x: tf.Tensor, *, channels: int, name: str, binary: bool = False, weight_scale: bool = False
) -> tf.Tensor:
    if x.shape[-1] == channels:
        return x
    x = tf.keras.layers.BatchNormalization(name=f"{name}_skip_bn")(x)
    return conv(channels, 1, binary=binary, weight_scale=weight_scale, name=f"{name}_skip_conv")(x)


def _check_channels(channels: int, divisor: int, block: str) -> None:
    if channels <= 0 or channels % divisor:
        raise ValueError(
            f"{block} block: channels must be a positive multiple of {divisor}, got {channels}"
        )


def hpm_block(
    x: tf.Tensor,
    *,
    channels: int,
    binary: bool,
    name: str,
    weight_scale: bool = False,
    binary_skip: bool = False,
) -> tf.Tensor:
    """The paper's hierarchical, parallel, multi-scale block.

    Three 3x3 convs in a chain, Cin -> C/2 -> C/4 -> C/4; their outputs are concatenated
    (C/2 + C/4 + C/4 = C channels) and added to the skip. No 1x1 conv inside the block: the
    chain gives receptive fields 3, 5 and 7 at 1x, 1/2x and 1/4x the width.
    """
    _check_channels(channels, 4, "hpm")
    unit = _units(binary=binary, weight_scale=weight_scale, name=name)
    half, quarter = channels // 2, channels // 4
    b1 = unit(x, half, 3, "conv1")
    b2 = unit(b1, quarter, 3, "conv2")
    b3 = unit(b2, quarter, 3, "conv3")
    out = tf.keras.layers.Concatenate(name=f"{name}_concat")([b1, b2, b3])
    skip = _skip(
        x, channels=channels, name=name, binary=binary and binary_skip, weight_scale=weight_scale
    )
    return tf.keras.layers.Add(name=f"{name}_add")([out, skip])


def bottleneck_block(
    x: tf.Tensor,
    *,
    channels: int,
    binary: bool,
    name: str,
    weight_scale: bool = False,
    binary_skip: bool = False,
) -> tf.Tensor:
    """Newell's bottleneck: 1x1 (C/2), 3x3 (C/2), 1x1 (C), added to the skip."""
    _check_channels(channels, 2, "bottleneck")
    unit = _units(binary=binary, weight_scale=weight_scale, name=name)
    half = channels // 2
    y = unit(x, half, 1, "conv1")
    y = unit(y, half, 3, "conv2")
    y = unit(y, channels, 1, "conv3")
    skip = _skip(
        x, channels=channels, name=name, binary=binary and binary_skip, weight_scale=weight_scale
    )
    return tf.keras.layers.Add(name=f"{name}_add")([y, skip])


def wide_block(
    x: tf.Tensor,
    *,
    channels: int,
    binary: bool,
    name: str,
    weight_scale: bool = False,
    binary_skip: bool = False,
) -> tf.Tensor:
    """The "wide" bottleneck: Newell's 1x1 -> 3x3 -> 1x1 with every conv at C channels.

    Kernel sizes stay Newell's, so the only change from :func:`bottleneck_block` is the width:
    it isolates "more channels" from "different structure" in the ablation. With Cin = C it has
    11 C^2 weights against the bottleneck's 3.25 C^2 and HPM's 6.1875 C^2.
    """
    _check_channels(channels, 1, "wide")
    unit = _units(binary=binary, weight_scale=weight_scale, name=name)
    y = unit(x, channels, 1, "conv1")
    y = unit(y, channels, 3, "conv2")
    y = unit(y, channels, 1, "conv3")
    skip = _skip(
        x, channels=channels, name=name, binary=binary and binary_skip, weight_scale=weight_scale
    )
    return tf.keras.layers.Add(name=f"{name}_add")([y, skip])


BlockFn = Callable[..., tf.Tensor]

BLOCKS: dict[str, BlockFn] = {
    "hpm": hpm_block,
    "bottleneck": bottleneck_block,
    "wide": wide_block,
}


def get_block(block: str) -> BlockFn:
    """The factory for a block type name ("hpm", "bottleneck" or "wide")."""
    try:
        return BLOCKS[block]
    except KeyError:
        raise ValueError(
            f"unknown block type {block!r}; choose one of {', '.join(BLOCK_TYPES)}"
        ) from None


def residual_block(
    x: tf.Tensor,
    *,
    block: str,
    channels: int,
    binary: bool,
    name: str,
    weight_scale: bool = False,
    binary_skip: bool = False,
) -> tf.Tensor:
    """Apply the block of type ``block`` (see :data:`BLOCK_TYPES`); ``binary_skip`` makes a
    binary block's skip 1x1 conv (present when the channel count changes) binary too."""
    return get_block(block)(
        x,
        channels=channels,
        binary=binary,
        weight_scale=weight_scale,
        name=name,
        binary_skip=binary_skip,
    )
