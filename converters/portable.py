"""Float export: the binary network written with standard TFLite builtin ops only.

LCE's bitpacked custom ops run only in LCE's own interpreter (or a stock runtime with the
project's native delegate). This export runs in any stock runtime. It computes exactly what
Keras/larq computes, with the binarization spelled out in ops that every runtime (and XNNPACK)
has:

* input sign, x < 0 -> -1 else +1 (0 -> +1, unlike ``tf.sign``):
  ``2 * floor(clip(x, -1, 0)) + 1``; floor(clip(x, -1, 0)) is 0 for x >= 0 and -1 for x < 0;
* weights: the kernel quantizer applied once to the latent weights, stored as float
  constants (sign with 0 -> +1, or alpha * sign for ``magnitude_aware_sign``);
* ``padding="same"`` with ``pad_values=1``: the shifted sign (values -2 / 0) is zero-padded and
  shifted back by +1, so the border taps count as +1 exactly as LCE's ``pad_values=1``.
"""

from __future__ import annotations

import larq as lq
import numpy as np
import tensorflow as tf

from .keras_model import ConversionError

# Input quantizers whose forward pass is sign(x) with 0 -> +1.
_SIGN_QUANTIZERS = (lq.quantizers.SteSign, lq.quantizers.ApproxSign, lq.quantizers.SwishSign)


def _is_sign(quantizer) -> bool:
    if isinstance(quantizer, _SIGN_QUANTIZERS):
        return True
    return getattr(quantizer, "__name__", None) in ("ste_sign", "approx_sign", "swish_sign")


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    effective = (kernel - 1) * dilation + 1
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class PortableBinaryConv2D(tf.keras.layers.Layer):
    """A larq ``QuantConv2D`` at inference time, as builtin ops (see the module docstring)."""

    def __init__(
        self,
        *,
        kernel: np.ndarray,
        bias: np.ndarray | None,
        strides: tuple[int, int],
        dilation_rate: tuple[int, int],
        padding: str,
        pad_values: float,
        sign_input: bool,
        activation,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kernel = tf.constant(kernel, tf.float32)
        self.bias = None if bias is None else tf.constant(bias, tf.float32)
        self.strides = tuple(strides)
        self.dilation_rate = tuple(dilation_rate)
        self.padding = padding
        self.pad_values = float(pad_values)
        self.sign_input = sign_input
        self.activation = tf.keras.activations.get(activation)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        kh, kw = self.kernel.shape[:2]
        explicit_pad = self.padding == "same" and self.pad_values != 0.0
        if self.sign_input:
            shifted = 2.0 * tf.floor(tf.clip_by_value(x, -1.0, 0.0))  # -2 where x < 0, else 0
            if explicit_pad and self.pad_values == 1.0:
                x = self._pad(shifted, kh, kw, 0.0) + 1.0
            else:
                x = shifted + 1.0
                if explicit_pad:
                    x = self._pad(x, kh, kw, self.pad_values)
        elif explicit_pad:
            x = self._pad(x, kh, kw, self.pad_values)
        conv_padding = "VALID" if explicit_pad else self.padding.upper()
        y = tf.nn.conv2d(
            x,
            self.kernel,
            strides=(1, *self.strides, 1),
            padding=conv_padding,
            dilations=(1, *self.dilation_rate, 1),
        )
        if self.bias is not None:
            y = tf.nn.bias_add(y, self.bias)
        return self.activation(y)

    def _pad(self, x: tf.Tensor, kh: int, kw: int, value: float) -> tf.Tensor:
        _, h, w, _ = x.shape
        ph = _same_padding(int(h), kh, self.strides[0], self.dilation_rate[0])
        pw = _same_padding(int(w), kw, self.strides[1], self.dilation_rate[1])
        if ph == (0, 0) and pw == (0, 0):
            return x
        return tf.pad(x, [[0, 0], list(ph), list(pw), [0, 0]], constant_values=value)


def _portable_conv(layer: lq.layers.QuantConv2D) -> PortableBinaryConv2D:
    if layer.data_format != "channels_last":
        raise ConversionError(
            f"layer {layer.name!r}: only channels_last convolutions are supported"
        )
    if getattr(layer, "groups", 1) != 1:
        raise ConversionError(f"layer {layer.name!r}: grouped QuantConv2D is not supported")
    quantizer = layer.input_quantizer
    if quantizer is not None and not _is_sign(quantizer):
        name = getattr(quantizer, "name", None) or getattr(quantizer, "__name__", quantizer)
        raise ConversionError(
            f"unsupported layer {layer.name!r} (QuantConv2D): input quantizer {name!r} has no "
            "portable form; only sign quantizers (ste_sign, approx_sign, swish_sign) do"
        )
    weights = layer.get_weights()  # latent (real) weights
    kernel = weights[0]
    if layer.kernel_quantizer is not None:
        kernel = np.asarray(layer.kernel_quantizer(tf.constant(kernel)), dtype=np.float32)
    bias = weights[1] if layer.use_bias else None
    return PortableBinaryConv2D(
        kernel=kernel,
        bias=bias,
        strides=layer.strides,
        dilation_rate=layer.dilation_rate,
        padding=layer.padding,
        pad_values=float(tf.keras.backend.get_value(layer.pad_values)),
        sign_input=quantizer is not None,
        activation=layer.activation,
        name=layer.name,
    )


def _check_supported(layer: tf.keras.layers.Layer) -> None:
    """Refuse larq layers this export cannot rewrite, and quant layers hidden inside others."""
    if isinstance(layer, lq.layers.QuantConv2D) or isinstance(layer, tf.keras.Model):
        return
    if type(layer).__module__.startswith("larq.layers"):
        raise ConversionError(
            f"unsupported layer {layer.name!r} ({type(layer).__name__}): the float export "
            "rewrites QuantConv2D only"
        )
    inner = [
        sub
        for sub in layer._flatten_layers(include_self=False, recursive=True)
        if type(sub).__module__.startswith("larq.layers")
    ]
    if inner:
        raise ConversionError(
            f"unsupported layer {layer.name!r} ({type(layer).__name__}): it hides larq layer "
            f"{inner[0].name!r} inside; the float export needs them as separate model layers"
        )


def portable_model(model: tf.keras.Model) -> tf.keras.Model:
    """A copy of a functional model with every larq ``QuantConv2D`` replaced by builtin ops."""
    copied: list[tuple[tf.keras.layers.Layer, tf.keras.layers.Layer]] = []

    def clone(layer: tf.keras.layers.Layer) -> tf.keras.layers.Layer:
        _check_supported(layer)
        if isinstance(layer, lq.layers.QuantConv2D):
            return _portable_conv(layer)
        if isinstance(layer, tf.keras.Model):
            return portable_model(layer)
        new = layer.__class__.from_config(layer.get_config())
        copied.append((layer, new))
        return new

    try:
        clone_of = tf.keras.models.clone_model(model, clone_function=clone)
    except ConversionError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConversionError(f"cannot rebuild the model for the float export: {exc}") from None
    for old, new in copied:
        new.set_weights(old.get_weights())
    return clone_of


def convert_float(model: tf.keras.Model) -> bytes:
    """A float32 flatbuffer of builtin ops for a single-output heatmap model."""
    portable = portable_model(model)
    converter = tf.lite.TFLiteConverter.from_keras_model(portable)
    converter.optimizations = []
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        return bytes(converter.convert())
    except Exception as exc:  # the MLIR converter reports every failure as a generic error
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"TFLite conversion failed: {first[:300]}") from None
