"""The stacked hourglass of the paper, built from any of the three residual block types.

Layout (input 256x256, heatmaps 64x64):

- stem, real-valued entry: 7x7 stride-2 conv 3->64 (with bias) + BN + ReLU, then
  block(64->128), 2x2 max-pool, block(128->128), block(128->features);
- per stack: a Newell hourglass of ``depth`` levels (upper branch: one block; lower branch:
  max-pool, block, the next level or one more block at the bottom, block, nearest 2x upsample;
  the two branches are added), then block -> 1x1 conv + BN + ReLU -> 1x1 conv to K heatmaps;
- between stacks, Newell's re-injection: the next stack's input is the previous input plus
  1x1 convs of the head features and of the heatmaps.

What is binary in the binary network: every conv inside every residual block except the skip
1x1 convs. The stem's 7x7 conv, the skip 1x1 convs, the heads and the re-injection 1x1 convs
are float32. This reproduces the paper's size check for the 1-stack HPM network (256x256,
256 features, 16 landmarks): 6.24 M parameters (trainable ones: conv weights and biases,
BatchNorm gamma and beta), 7.5 G binary MACs, 0.71 G float MACs (stem conv 0.154 G, heads
0.285 G, the two skip 1x1 convs 0.134 G each) and a 1.30 MB LCE flatbuffer. Measured with
larq-compute-engine 0.16: 6,236,048 parameters, 1,297,368 bytes with 51 ``LceBconv2d`` and 5
float ``CONV_2D`` ops; the real-valued twin converts to 24,920,804 bytes. Making the skip convs
binary instead (``binary_skip=True``) gives 0.44 G float MACs and a 1,140,144-byte file
(measured), matching neither.

The released model's wiring (public printouts of the authors' binary MPII model, FACTS.md
section 9) differs in three places, each a switch here, all off by default:
``binary_skip`` (the stem blocks' skip 1x1 convs binary: BN -> sign -> binary conv),
``binary_head`` (each stack's first head conv binary, with a BatchNorm before its sign) and
``heatmap_activation="sigmoid"`` (a Sigmoid on the heatmaps, trained with BCE or MSE, see
losses.py). ``blocks_per_level`` puts that many blocks in a row at each of a level's four
places (Newell's ``nModules``; 1 in the paper's size check). docs/training.md "The paper's size check"
lists parameters, MACs and flatbuffer size of both wirings.

Biases: only the stem conv, the final heatmap conv and the re-injection convs have one; a conv
followed by BatchNorm does not need one (the head's 256-entry bias would not change 6.24 M).

LCE packs 32 channels per word, so binary convs run best with input channels in multiples of
32; with HPM blocks that holds for every conv when ``features`` is a multiple of 128 (the
narrowest conv input is features/4).

Keras returns a bare tensor, not a one-element list, from ``model(x)`` for a 1-stack model;
:func:`stack_outputs` turns either into a list.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .blocks import BLOCK_TYPES, residual_block
from .quantizers import binary_conv, real_conv

STEM_CHANNELS = 64  # the 7x7 conv's output
STEM_BLOCK_CHANNELS = 128  # the first two stem blocks' output


def _check_arguments(
    *, num_stacks: int, depth: int, features: int, num_landmarks: int, input_size: int, block: str
) -> None:
    if block not in BLOCK_TYPES:
        raise ValueError(f"unknown block type {block!r}; choose one of {', '.join(BLOCK_TYPES)}")
    if num_stacks < 1:
        raise ValueError(f"num_stacks must be at least 1, got {num_stacks}")
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    if num_landmarks < 1:
        raise ValueError(f"num_landmarks must be at least 1, got {num_landmarks}")
    divisor = {"hpm": 4, "bottleneck": 2, "wide": 1}[block]
    if features < 1 or features % divisor:
        raise ValueError(
            f"features must be a positive multiple of {divisor} for {block} blocks, got {features}"
        )
    # The stem halves the size twice and each hourglass level once more.
    step = 4 * 2**depth
    if input_size < step or input_size % step:
        raise ValueError(
            f"input_size must be a multiple of {step} (4 * 2**depth) for depth {depth}, "
            f"got {input_size}"
        )


def _hourglass(
    x: tf.Tensor,
    *,
    level: int,
    block: str,
    features: int,
    binary: bool,
    weight_scale: bool,
    name: str,
    blocks: int = 1,
) -> tf.Tensor:
    """One level of Newell's recursive hourglass; ``level`` counts down to 1 at the bottom.

    ``blocks`` residual blocks in a row at each place; the first keeps the one-block name."""
    prefix = f"{name}_level{level}"

    def res(t: tf.Tensor, part: str) -> tf.Tensor:
        for j in range(blocks):
            t = residual_block(
                t,
                block=block,
                channels=features,
                binary=binary,
                weight_scale=weight_scale,
                name=f"{prefix}_{part}" + (f"_{j}" if j else ""),
            )
        return t

    upper = res(x, "up")
    lower = tf.keras.layers.MaxPool2D(2, name=f"{prefix}_pool")(x)
    lower = res(lower, "low1")
    if level > 1:
        lower = _hourglass(
            lower,
            level=level - 1,
            block=block,
            features=features,
            binary=binary,
            weight_scale=weight_scale,
            name=name,
            blocks=blocks,
        )
    else:
        lower = res(lower, "low2")
    lower = res(lower, "low3")
    lower = tf.keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{prefix}_upsample")(
        lower
    )
    return tf.keras.layers.Add(name=f"{prefix}_add")([upper, lower])


def build_hourglass(
    *,
    num_stacks: int = 1,
    depth: int = 4,
    features: int = 256,
    num_landmarks: int = 16,
    input_size: int = 256,
    block: str = "hpm",
    binary: bool = True,
    weight_scale: bool = False,
    binary_skip: bool = False,
    binary_head: bool = False,
    heatmap_activation: str = "linear",
    blocks_per_level: int = 1,
    stem_channels: int = STEM_CHANNELS,
    stem_block_channels: int = STEM_BLOCK_CHANNELS,
    name: str | None = None,
) -> tf.keras.Model:
    """The stacked hourglass as a functional Keras model.

    Input: (N, input_size, input_size, 3) float32. Outputs: a list of ``num_stacks`` float32
    heatmap tensors (N, input_size/4, input_size/4, num_landmarks), linear (no activation), one
    per stack for intermediate supervision; the last one is the prediction.

    ``weight_scale`` (binary only) scales each binary conv's output channels by mean|W|, the
    paper's XNOR-Net weight scale (see quantizers.py). It changes no parameter count.

    The released model's wiring (module docstring; binary networks only): ``binary_skip``,
    ``binary_head`` and ``heatmap_activation="sigmoid"`` (heatmaps in (0, 1) instead of
    linear). ``blocks_per_level`` blocks at each place of every hourglass level.

    ``stem_channels`` (the 7x7 conv's output) and ``stem_block_channels`` (the first two stem
    blocks') narrow the stem, where most of a small network's work is, at a half and a quarter
    of the input size (the finders: 32 and 64); the defaults are the paper's 64 and 128.
    """
    if stem_channels < 1 or stem_block_channels < 1 or stem_block_channels % 4:
        raise ValueError(
            "stem_channels must be positive and stem_block_channels a positive multiple of 4, "
            f"got {stem_channels} and {stem_block_channels}"
        )
    _check_arguments(
        num_stacks=num_stacks,
        depth=depth,
        features=features,
        num_landmarks=num_landmarks,
        input_size=input_size,
        block=block,
    )
    _check_wiring(
        binary=binary,
        binary_skip=binary_skip,
        binary_head=binary_head,
        heatmap_activation=heatmap_activation,
        blocks_per_level=blocks_per_level,
    )
    if name is None:
        kind = ("binary_scaled" if weight_scale else "binary") if binary else "real"
        name = f"hourglass_{block}_{kind}_{num_stacks}stack" + _wiring_suffix(
            binary_skip, binary_head, heatmap_activation, blocks_per_level
        )

    def res(t: tf.Tensor, channels: int, block_name: str) -> tf.Tensor:
        return residual_block(
            t,
            block=block,
            channels=channels,
            binary=binary,
            weight_scale=weight_scale,
            binary_skip=binary_skip,
            name=block_name,
        )

    inputs = tf.keras.Input((input_size, input_size, 3), dtype="float32", name="image")
    x = real_conv(stem_channels, 7, strides=2, use_bias=True, name="stem_conv")(inputs)
    x = tf.keras.layers.BatchNormalization(name="stem_bn")(x)
    x = tf.keras.layers.ReLU(name="stem_relu")(x)
    x = res(x, stem_block_channels, "stem_block1")
    x = tf.keras.layers.MaxPool2D(2, name="stem_pool")(x)
    x = res(x, stem_block_channels, "stem_block2")
    x = res(x, features, "stem_block3")

    outputs = []
    for s in range(num_stacks):
        y = _hourglass(
            x,
            level=depth,
            block=block,
            features=features,
            binary=binary,
            weight_scale=weight_scale,
            name=f"hg{s}",
            blocks=blocks_per_level,
        )
        y = res(y, features, f"stack{s}_block")
        if binary_head:  # the binary unit: BatchNorm, then sign() inside the binary conv
            y = tf.keras.layers.BatchNormalization(name=f"stack{s}_head_in_bn")(y)
            y = binary_conv(features, 1, weight_scale=weight_scale, name=f"stack{s}_head_conv")(y)
        else:
            y = real_conv(features, 1, name=f"stack{s}_head_conv")(y)
        y = tf.keras.layers.BatchNormalization(name=f"stack{s}_head_bn")(y)
        head = tf.keras.layers.ReLU(name=f"stack{s}_head_relu")(y)
        # Full precision (floatx: float32, or float64 for training.config's precision) even
        # under a mixed-precision policy: the loss and the device want it.
        heatmaps = tf.keras.layers.Conv2D(
            num_landmarks, 1, dtype=tf.keras.backend.floatx(), name=f"stack{s}_heatmaps"
        )(head)
        if heatmap_activation == "sigmoid":
            heatmaps = tf.keras.layers.Activation(
                "sigmoid", dtype=tf.keras.backend.floatx(), name=f"stack{s}_sigmoid"
            )(heatmaps)
        outputs.append(heatmaps)
        if s < num_stacks - 1:
            back_features = real_conv(
                features, 1, use_bias=True, name=f"stack{s}_reinject_features"
            )(head)
            back_heatmaps = real_conv(
                features, 1, use_bias=True, name=f"stack{s}_reinject_heatmaps"
            )(heatmaps)
            x = tf.keras.layers.Add(name=f"stack{s}_reinject_add")(
                [x, back_features, back_heatmaps]
            )
    return tf.keras.Model(inputs, outputs, name=name)


HEATMAP_ACTIVATIONS = ("linear", "sigmoid")


def _check_wiring(
    *,
    binary: bool,
    binary_skip: bool,
    binary_head: bool,
    heatmap_activation: str,
    blocks_per_level: int,
) -> None:
    if (binary_skip or binary_head) and not binary:
        raise ValueError("binary_skip and binary_head apply to binary networks (binary=True)")
    if heatmap_activation not in HEATMAP_ACTIVATIONS:
        raise ValueError(
            f"heatmap_activation must be one of {', '.join(HEATMAP_ACTIVATIONS)}, "
            f"got {heatmap_activation!r}"
        )
    if blocks_per_level < 1:
        raise ValueError(f"blocks_per_level must be at least 1, got {blocks_per_level}")


def _wiring_suffix(
    binary_skip: bool, binary_head: bool, heatmap_activation: str, blocks_per_level: int
) -> str:
    """Name tags of the non-default switches ("" for the default wiring)."""
    tags = [
        t
        for t, on in (
            ("bskip", binary_skip),
            ("bhead", binary_head),
            ("sigmoid", heatmap_activation == "sigmoid"),
        )
        if on
    ]
    if blocks_per_level > 1:
        tags.append(f"x{blocks_per_level}")
    return "".join(f"_{t}" for t in tags)


def count_parameters(model: tf.keras.Model, *, include_batchnorm_statistics: bool = False) -> int:
    """The model's parameter count, as papers (and PyTorch's ``parameters()``) count it.

    By default BatchNorm's moving mean and variance are left out (they are statistics, not
    parameters); that is the count of trainable weights, 6.24 M for the paper's network.
    """
    weights = model.weights if include_batchnorm_statistics else model.trainable_weights
    return int(sum(np.prod(w.shape) for w in weights))


def block_parameters(block: str, in_channels: int, channels: int) -> int:
    """Closed-form trainable parameter count of one residual block (BN gamma/beta included).

    With Cin = C (no skip conv): HPM 9 (C^2/2 + C^2/8 + C^2/16) = 6.1875 C^2 conv weights,
    bottleneck C^2/2 + 9 C^2/4 + C^2/2 = 3.25 C^2, wide C^2 + 9 C^2 + C^2 = 11 C^2.
    """
    cin, c = in_channels, channels
    if block == "hpm":
        convs = 9 * (cin * c // 2 + (c // 2) * (c // 4) + (c // 4) * (c // 4))
        bn_channels = cin + c // 2 + c // 4
    elif block == "bottleneck":
        convs = cin * (c // 2) + 9 * (c // 2) ** 2 + (c // 2) * c
        bn_channels = cin + c // 2 + c // 2
    elif block == "wide":
        convs = cin * c + 9 * c * c + c * c
        bn_channels = cin + c + c
    else:
        raise ValueError(f"unknown block type {block!r}; choose one of {', '.join(BLOCK_TYPES)}")
    skip = 0 if cin == c else cin * c + 2 * cin  # BN (gamma, beta) -> 1x1 conv, no bias
    return convs + 2 * bn_channels + skip


def hourglass_parameters(
    *,
    num_stacks: int = 1,
    depth: int = 4,
    features: int = 256,
    num_landmarks: int = 16,
    block: str = "hpm",
    binary: bool = True,
    input_size: int | None = None,
    weight_scale: bool = False,
    binary_skip: bool = False,
    binary_head: bool = False,
    heatmap_activation: str = "linear",
    blocks_per_level: int = 1,
    stem_channels: int = STEM_CHANNELS,
    stem_block_channels: int = STEM_BLOCK_CHANNELS,
) -> int:
    """Closed-form trainable parameter count of :func:`build_hourglass` (no model is built).

    Takes the same keywords as :func:`build_hourglass`, so a model config can be passed as is,
    but ``binary``, ``input_size``, ``weight_scale``, ``binary_skip`` and
    ``heatmap_activation`` do not change the count: binarization changes values, not shapes,
    and convolutions do not depend on the image size. A binary first head conv adds the
    BatchNorm before its sign (2 x features per stack); ``blocks_per_level`` multiplies the
    hourglass's blocks.
    """
    del input_size, weight_scale, binary_skip, heatmap_activation  # see the docstring
    f, k = features, num_landmarks
    c0, c1 = stem_channels, stem_block_channels
    stem = (7 * 7 * 3 * c0 + c0) + 2 * c0
    stem += block_parameters(block, c0, c1)
    stem += block_parameters(block, c1, c1)
    stem += block_parameters(block, c1, f)
    per_block = block_parameters(block, f, f)
    # up, low1, low3 per level, plus low2 at the bottom; blocks_per_level of each
    hourglass = (3 * depth + 1) * blocks_per_level * per_block
    head = per_block + f * f + 2 * f + (f * k + k) + (2 * f if binary and binary_head else 0)
    reinject = (f * f + f) + (k * f + f)
    return stem + num_stacks * (hourglass + head) + (num_stacks - 1) * reinject


def features_for_budget(
    target_params: int,
    *,
    block: str,
    binary: bool = True,
    num_stacks: int = 1,
    depth: int = 4,
    num_landmarks: int = 16,
    input_size: int | None = None,
    multiple_of: int = 4,
    max_features: int = 4096,
) -> int:
    """The ``features`` whose network has the parameter count nearest ``target_params``.

    For comparing block types at an equal parameter budget (the ablation). Candidates are
    multiples of ``multiple_of`` (4 by default: valid for every block type; 32 or 128 keep
    LCE's 32-channel words full). ``binary`` and ``input_size`` are accepted so that the
    :func:`build_hourglass` keywords can be passed through, but do not change the answer
    (see :func:`hourglass_parameters`).
    """
    if target_params <= 0:
        raise ValueError(f"target_params must be positive, got {target_params}")
    need = {"hpm": 4, "bottleneck": 2, "wide": 1}.get(block)
    if need is None:
        raise ValueError(f"unknown block type {block!r}; choose one of {', '.join(BLOCK_TYPES)}")
    if multiple_of < 1 or multiple_of % need:
        raise ValueError(f"multiple_of must be a positive multiple of {need} for {block} blocks")
    best, best_error = multiple_of, None
    # The count grows monotonically with features, so stop once past the target.
    for f in range(multiple_of, max_features + 1, multiple_of):
        n = hourglass_parameters(
            num_stacks=num_stacks,
            depth=depth,
            features=f,
            num_landmarks=num_landmarks,
            block=block,
            binary=binary,
            input_size=input_size,
        )
        error = abs(n - target_params)
        if best_error is None or error < best_error:
            best, best_error = f, error
        if n > target_params:
            break
    return best


def count_macs(model: tf.keras.Model) -> tuple[int, int]:
    """(binary, float) multiply-accumulates of one forward pass over the model's convolutions.

    A conv's MACs are output height * width * kernel size; convs made by ``binary_conv`` count
    as binary (XNOR-popcount on the device), every other conv as float. BatchNorm, adds and
    pooling are not counted, as in the paper (7.5 G binary + 0.71 G float for its network).
    """
    from .quantizers import is_binary_conv

    binary = real = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if not isinstance(layer, tf.keras.layers.Conv2D):
            continue
        _, height, width, _ = layer.output.shape
        macs = int(height) * int(width) * int(np.prod(layer.kernel.shape))
        if is_binary_conv(layer):
            binary += macs
        else:
            real += macs
    return binary, real


def stack_outputs(predictions: tf.Tensor | np.ndarray | list) -> list:
    """The per-stack heatmaps of ``model(x)`` or ``model.predict(x)`` as a list.

    Keras returns a bare tensor, not a one-element list, for a 1-stack model; this makes both
    cases a list whose last element is the final prediction.
    """
    if isinstance(predictions, (list, tuple)):
        return list(predictions)
    return [predictions]
