"""Check that a trained Keras model is one the converters can export, and its metadata.

Opening the model and its sidecar is :mod:`training.artifacts`' (the one loader and sidecar
rule, shared with training.evaluate). The training code saves a tf-keras model (``.keras``, ``.h5`` or a SavedModel folder) whose
outputs are the heatmaps of every hourglass stack, the last one being the final prediction.
Only that last output is exported to the device.
"""

from __future__ import annotations

import tensorflow as tf

from edge.errors import EdgeError
from edge.metadata import LandmarkMetadata
from edge.skeletons import SKELETONS

# The usual landmark count of each skeleton, so an unlabelled model still gets names.
SKELETON_BY_COUNT = {s.num_landmarks: s.name for s in SKELETONS.values()}


class ConversionError(EdgeError):
    """The model cannot be exported as asked (unsupported layer, float16 weights...)."""


def check_float32(model: tf.keras.Model) -> None:
    """Refuse float16/bfloat16 models: the device kernels and the fidelity check assume float32."""
    policies = {getattr(layer, "dtype_policy", None) for layer in _all_layers(model)}
    for policy in policies - {None}:
        compute = getattr(policy, "compute_dtype", "float32")
        if compute in ("float16", "bfloat16"):
            raise ConversionError(
                f"the model computes in {compute} (mixed-precision policy {policy.name!r}); "
                "re-save it with the float32 policy before converting"
            )
    for weight in model.weights:
        if weight.dtype.base_dtype in (tf.float16, tf.bfloat16):
            raise ConversionError(
                f"weight {weight.name} is {weight.dtype.base_dtype.name}; "
                "convert a float32 copy of the model"
            )


def _all_layers(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    return list(model._flatten_layers(include_self=False, recursive=True))


def final_heatmap_model(model: tf.keras.Model) -> tf.keras.Model:
    """A model with the same input whose only output is the last stack's heatmaps (N, H, W, K)."""
    if len(model.inputs) != 1:
        raise ConversionError(f"expected one image input, the model has {len(model.inputs)}")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or None in shape[1:]:
        raise ConversionError(
            f"the model input must be a fixed-size image (N, H, W, C), got {shape}"
        )
    output = model.outputs[-1]
    out_shape = tuple(output.shape)
    if len(out_shape) != 4 or None in out_shape[1:]:
        raise ConversionError(f"the last output must be heatmaps (N, H, W, K), got {out_shape}")
    if len(model.outputs) == 1:
        return model
    return tf.keras.Model(model.inputs, output, name=f"{model.name}_final")


def input_size(model: tf.keras.Model) -> tuple[int, int]:
    _, h, w, _ = model.inputs[0].shape
    return int(w), int(h)


def heatmap_shape(model: tf.keras.Model) -> tuple[int, int, int]:
    """(width, height, landmarks) of the final output."""
    _, h, w, k = model.outputs[-1].shape
    return int(w), int(h), int(k)


def build_metadata(
    model: tf.keras.Model,
    *,
    sidecar: LandmarkMetadata | None,
    weights_format: str,
    skeleton: str | None = None,
    overrides: dict | None = None,
) -> tuple[LandmarkMetadata, list[str]]:
    """The metadata to embed, and notes on where its parts came from.

    Precedence: explicit ``skeleton``/``overrides`` (command-line flags), then the sidecar,
    then a skeleton guessed from the landmark count. Sizes always come from the model itself.
    """
    notes: list[str] = []
    w, h, k = heatmap_shape(model)
    fields = {} if sidecar is None else _sidecar_fields(sidecar)
    if skeleton is None and sidecar is None:
        skeleton = SKELETON_BY_COUNT.get(k)
        if skeleton is None:
            raise ConversionError(
                f"the model predicts {k} landmarks, which matches no known skeleton "
                f"({', '.join(f'{n}: {s.num_landmarks}' for n, s in SKELETONS.items())}); "
                "pass --skeleton or write a .landmarks.json sidecar"
            )
        notes.append(f"no sidecar and no --skeleton: assumed {skeleton} from {k} landmarks")
    fields.update({key: value for key, value in (overrides or {}).items() if value is not None})
    fields.update(input_size=input_size(model), heatmap_size=(w, h), weights_format=weights_format)
    try:
        if skeleton is not None:
            meta = LandmarkMetadata.for_skeleton(skeleton, **fields)
        else:
            meta = LandmarkMetadata(**{**_skeleton_fields(sidecar), **fields})
    except KeyError as exc:
        raise ConversionError(str(exc).strip("\"'")) from None
    if meta.num_outputs != k:
        what = {"segmentation": "classes", "finder": "finder channels"}.get(meta.task, "landmarks")
        raise ConversionError(
            f"the model predicts {k} maps but {meta.skeleton!r} has {meta.num_outputs} {what}"
        )
    if sidecar is not None and tuple(sidecar.input_size) != meta.input_size:
        notes.append(
            f"sidecar says input {tuple(sidecar.input_size)}, the model takes {meta.input_size}: "
            "using the model's"
        )
    return meta, notes


# What a sidecar says about the outputs themselves (segmentation: classes and colours too;
# a finder: classes and its decoding).
_SKELETON_KEYS = (
    "task",
    "skeleton",
    "landmarks",
    "edges",
    "flip_pairs",
    "classes",
    "class_colors",
    "box_classes",
    "finder",
    "format_version",
)


def _skeleton_fields(meta: LandmarkMetadata) -> dict:
    return {key: getattr(meta, key) for key in _SKELETON_KEYS}


def _sidecar_fields(meta: LandmarkMetadata) -> dict:
    keep = (
        "input_mean",
        "input_std",
        "input_color",
        "heatmap_sigma",
        "refine",
        "model_name",
        "model_version",
        "box_margin",
        "extra",
    )
    return {key: getattr(meta, key) for key in keep}
