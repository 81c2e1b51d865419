"""The one place where the binarization choices live.

Every binary convolution of the project is a larq ``QuantConv2D`` made by :func:`binary_conv`,
so changing how the network is binarized means changing this file only.

Why these settings:

- ``input_quantizer="ste_sign"``: sign() of the input in the forward pass, straight-through
  gradient clipped to zero where |x| > 1 (the paper's activation binarization, no activation
  scale). It is also what LCE needs to emit ``LceQuantize`` + ``LceBconv2d``.
- ``kernel_quantizer="ste_sign"``: weights are exactly +-1 in the forward pass; the latent real
  weights are what the optimizer updates. This is the default (``weight_scale=False``).
- ``weight_scale=True`` uses larq's ``magnitude_aware_sign`` instead: sign(W) times the
  XNOR-Net per-output-channel scale alpha = mean|W|, as in the paper. BatchNorm before the next
  conv would absorb a per-channel factor, but a block's binary outputs are added to its skip
  first, so alpha sets how much each binary channel weighs against the skip. LCE folds alpha
  into ``LceBconv2d``'s per-channel output multiplier: the device cost is the same.
- ``kernel_constraint="weight_clip"``: keeps latent weights in [-1, 1], where the
  straight-through gradient of sign() is non-zero (larq's guide).
- ``padding="same"`` with ``pad_values=1.0``: zero padding cannot be expressed with +-1 bits;
  padding with +1 is what ``LceBconv2d`` computes (``pad_values=1``), so Keras and the device
  agree bit for bit at the image border.
- ``use_bias=False``: the output of a binary conv only reaches a BatchNorm (before the next
  conv or in a head) or an add whose result does, so a bias adds nothing; it would also only
  be folded into ``LceBconv2d``'s per-channel bias by the converter.
"""

from __future__ import annotations

import larq as lq
import tensorflow as tf

# Keyword arguments shared by every binary convolution (see the module docstring for why).
BINARY_CONV_KWARGS: dict = {
    "input_quantizer": "ste_sign",
    "kernel_quantizer": "ste_sign",
    "kernel_constraint": "weight_clip",
    "padding": "same",
    "pad_values": 1.0,
    "use_bias": False,
}


def binary_conv(
    filters: int,
    kernel_size: int,
    *,
    strides: int = 1,
    weight_scale: bool = False,
    name: str | None = None,
) -> lq.layers.QuantConv2D:
    """A binary convolution: sign(input) (*) sign(kernel), converted by LCE to ``LceBconv2d``.

    ``weight_scale`` multiplies each output channel by mean|W| of its kernel (see above).
    """
    kwargs = dict(BINARY_CONV_KWARGS)
    if weight_scale:
        kwargs["kernel_quantizer"] = "magnitude_aware_sign"
    return lq.layers.QuantConv2D(filters, kernel_size, strides=strides, name=name, **kwargs)


def real_conv(
    filters: int,
    kernel_size: int,
    *,
    strides: int = 1,
    use_bias: bool = False,
    name: str | None = None,
) -> tf.keras.layers.Conv2D:
    """A float32 convolution with "same" padding (the real-valued twin of :func:`binary_conv`)."""
    return tf.keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=use_bias, name=name
    )


def conv(
    filters: int,
    kernel_size: int,
    *,
    binary: bool,
    weight_scale: bool = False,
    strides: int = 1,
    name: str | None = None,
) -> tf.keras.layers.Layer:
    """:func:`binary_conv` or a bias-free :func:`real_conv`, the two variants of a block's conv.

    ``weight_scale`` only applies to binary convs.
    """
    if binary:
        return binary_conv(
            filters, kernel_size, strides=strides, weight_scale=weight_scale, name=name
        )
    return real_conv(filters, kernel_size, strides=strides, name=name)


def is_binary_conv(layer: tf.keras.layers.Layer) -> bool:
    """True for a conv made by :func:`binary_conv` (quantized input and kernel)."""
    return (
        isinstance(layer, lq.layers.QuantConv2D)
        and layer.input_quantizer is not None
        and layer.kernel_quantizer is not None
    )
