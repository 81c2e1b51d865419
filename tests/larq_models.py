"""Small real Keras/larq landmark models and their converted files, shared by the converter,
backend and metadata tests. Built once per test process (the cache below).

"binary" is the project's hourglass (training.models.build_hourglass: two stacks, depth 1,
64 features, 64x64 input) when it is importable, else a hand-built two-stack larq network of
the same family (stem, binary 3x3 convs with pad_values=1, per-stack heatmap heads). "real" is
the hand-built network with float convolutions: conversion time grows with the layer count
(about 0.1 CPU-second per layer), and the CPUs here are shared.
"""

from __future__ import annotations

import functools
import importlib.util
import subprocess
import tempfile
from pathlib import Path

# isort: off
import converters  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

# isort: on
import larq as lq
import numpy as np
import tensorflow as tf
from edge_fixtures import INPUT, run_python_module

REPO = Path(__file__).resolve().parents[1]
LANDMARKS = 16
_WORK = Path(tempfile.mkdtemp(prefix="binland-models-"))


def randomise_batchnorm(model: tf.keras.Model, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics, as a trained model would have."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            new = []
            for w, name in zip(layer.get_weights(), ("gamma", "beta", "mean", "var"), strict=False):
                if name in ("gamma", "var"):
                    new.append(rng.uniform(0.5, 1.5, w.shape).astype(np.float32))
                else:
                    new.append((rng.standard_normal(w.shape) * 0.3).astype(np.float32))
            layer.set_weights(new)


def _hourglass_builder():
    if importlib.util.find_spec("training.models") is None:
        return None
    import training.models as tm

    return getattr(tm, "build_hourglass", None)


def _hand_built(binary: bool, *, pad_values: float = 1.0, num_landmarks: int = LANDMARKS):
    def conv(filters, x):
        if binary:
            return lq.layers.QuantConv2D(
                filters,
                3,
                padding="same",
                pad_values=pad_values,
                use_bias=False,
                input_quantizer="ste_sign",
                kernel_quantizer="ste_sign",
                kernel_constraint="weight_clip",
            )(x)
        return tf.keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)

    bn = tf.keras.layers.BatchNormalization
    inputs = tf.keras.Input((INPUT, INPUT, 3))
    x = tf.keras.layers.Conv2D(32, 7, strides=2, padding="same")(inputs)
    x = tf.keras.layers.ReLU()(bn()(x))
    x = tf.keras.layers.MaxPool2D()(conv(64, bn()(x)))
    outputs = []
    for _ in range(2):
        y = conv(64, bn()(x))
        y = tf.keras.layers.Add()([x, bn()(y)])
        z = conv(32, bn()(y))
        z = tf.keras.layers.Concatenate()([z, conv(32, bn()(z))])
        y = tf.keras.layers.Add()([y, z])
        outputs.append(tf.keras.layers.Conv2D(num_landmarks, 1)(y))
        x = tf.keras.layers.Add()([y, tf.keras.layers.Conv2D(64, 1)(outputs[-1])])
    return tf.keras.Model(inputs, outputs)


def build_model(binary: bool, *, seed: int = 0) -> tf.keras.Model:
    tf.keras.utils.set_random_seed(seed)
    build = _hourglass_builder()
    if build is not None and binary:
        model = build(
            num_stacks=2,
            depth=1,
            features=64,
            num_landmarks=LANDMARKS,
            input_size=INPUT,
            block="hpm",
            binary=True,
        )
    else:
        model = _hand_built(binary)
    randomise_batchnorm(model, seed)
    return model


@functools.cache
def saved_model(kind: str) -> Path:
    """``kind``: "binary" or "real". A saved .keras file (two outputs, 16 landmarks)."""
    model = build_model(kind == "binary")
    path = _WORK / f"{kind}.keras"
    model.save(path)
    return path


# What the CLI printed for each converted file: (kind, format) -> text.
CLI_OUTPUT: dict[tuple[str, str], str] = {}


@functools.cache
def converted(kind: str, fmt: str) -> Path:
    """The saved model converted by the CLI (in-process, with a 4-input check) to ``fmt``."""
    import contextlib
    import io

    from converters.convert import main

    out = _WORK / f"{kind}_{fmt}.tflite"
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        status = main(
            [str(saved_model(kind)), "-o", str(out), "--format", fmt, "--check-inputs", "4"]
        )
    CLI_OUTPUT[(kind, fmt)] = text.getvalue()
    assert status == 0, text.getvalue()
    return out


@functools.cache
def load_keras(path: Path) -> tf.keras.Model:
    return tf.keras.models.load_model(path, compile=False)


def keras_final(path: Path, x: np.ndarray) -> np.ndarray:
    """The final heatmaps of the saved Keras model (loaded once per process)."""
    out = load_keras(path)(x, training=False)
    return np.asarray(out[-1] if isinstance(out, (list, tuple)) else out)


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m converters.convert ARGS`` in a fresh interpreter."""
    return run_python_module("converters.convert", *args, timeout=timeout)
