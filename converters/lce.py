"""Bitpacked export with Larq Compute Engine's converter (the paper's 1-bit deployment format)."""

from __future__ import annotations

import larq as lq
import tensorflow as tf

from .keras_model import ConversionError


def binary_conv_layers(model: tf.keras.Model) -> list[lq.layers.QuantConv2D]:
    """QuantConv2D layers with a binarized input, the ones LCE should turn into LceBconv2d."""
    layers = model._flatten_layers(include_self=False, recursive=True)
    return [
        layer
        for layer in layers
        if isinstance(layer, lq.layers.QuantConv2D) and layer.input_quantizer is not None
    ]


def convert_lce(model: tf.keras.Model) -> bytes:
    """LCE flatbuffer (LceQuantize/LceBconv2d custom ops) for a single-output heatmap model."""
    import larq_compute_engine as lce  # imports the MLIR converter; only conversion needs it

    try:
        return bytes(lce.convert_keras_model(model))
    except Exception as exc:  # the MLIR converter reports every failure as a generic error
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"LCE conversion failed: {first[:300]}") from None
