"""The converter CLI on real small larq models: LCE fidelity, float export, errors."""

from __future__ import annotations

import larq_models as lm
import numpy as np
import pytest
import tensorflow as tf
from edge_fixtures import test_inputs  # the models here take the fixtures' inputs
from larq_models import converted, keras_final, run_cli, saved_model

from converters.convert import main
from converters.fidelity import compare
from edge.backends import create_backend
from edge.codec import HeatmapCodec
from edge.metadata import custom_op_names, read_metadata

CODEC = HeatmapCodec(input_size=(lm.INPUT, lm.INPUT), heatmap_size=(lm.INPUT // 4, lm.INPUT // 4))


def _assert_agree(reference: np.ndarray, candidate: np.ndarray, what: str = "") -> None:
    """Heatmaps within 1e-3 of the range and >= 99% of landmarks decoding identically.

    A binary net turns a rounding difference right at a sign() threshold into a flipped bit,
    so a rare input may differ visibly; 90% of inputs must match to 1e-3 (see fidelity.CLOSE).
    """
    report = compare(reference, candidate, CODEC, what)
    assert report.inputs_close >= 0.9 * report.num_inputs, report.summary()
    assert report.same_landmarks >= 0.99, report.summary()


@pytest.mark.parametrize("kind", ["binary", "real"])
def test_lce_interpreter_matches_keras(kind):
    path = converted(kind, "lce")
    data = path.read_bytes()
    ops = custom_op_names(data)
    if kind == "binary":
        assert "LceBconv2d" in ops and "LceQuantize" in ops
    else:
        assert not any(op.startswith("Lce") for op in ops)
    x = test_inputs(16)
    reference = keras_final(saved_model(kind), x)
    heatmaps = create_backend("lce", data, num_threads=2).run(x)
    assert heatmaps.shape == (16, 16, 16, lm.LANDMARKS)
    _assert_agree(reference, heatmaps, "lce")


def test_float_export_has_only_builtin_ops_and_matches_lce_in_both_stock_runtimes():
    lce_data = converted("binary", "lce").read_bytes()
    float_data = converted("binary", "float").read_bytes()
    assert custom_op_names(float_data) == []
    meta = read_metadata(float_data)
    assert meta.weights_format == "float" and read_metadata(lce_data).weights_format == "lce"
    x = test_inputs(16)
    lce_maps = create_backend("lce", lce_data).run(x)
    for runtime in ("tflite_runtime", "ai_edge_litert"):
        backend = create_backend("tflite", float_data, runtime=runtime)
        assert runtime in backend.description
        _assert_agree(lce_maps, backend.run(x), runtime)
    # The bitpacked file is much smaller: that is the point of the LCE format.
    assert len(lce_data) * 4 < len(float_data)


def test_cli_prints_fidelity_ops_and_size():
    out = converted("binary", "lce")
    text = lm.CLI_OUTPUT[("binary", "lce")]
    assert "LceBconv2d x" in text
    assert "landmarks identical" in text and "of the heatmap range" in text
    assert f"{out.stat().st_size / 1e6:.3f} MB" in text
    assert "assumed mpii16 from 16 landmarks" in text


def test_sidecar_metadata_and_flags_override_it(tmp_path):
    src = saved_model("real")
    model_path = tmp_path / "face.keras"
    model_path.write_bytes(src.read_bytes())
    from edge.metadata import LandmarkMetadata

    sidecar = LandmarkMetadata.for_skeleton(
        "mpii16",
        input_size=(1, 1),
        heatmap_size=(1, 1),
        model_name="from-sidecar",
        model_version="7",
        input_mean=(1.0, 2.0, 3.0),
        box_margin=1.4,
        heatmap_sigma=2.0,
        refine="dark",
    )
    (tmp_path / "face.keras.landmarks.json").write_text(sidecar.to_json())
    out = tmp_path / "face.tflite"
    argv = [
        str(model_path),
        "-o",
        str(out),
        "--check-inputs",
        "0",
        "--name",
        "flagged",
        "--input-std",
        "58,57,57",
        "--input-color",
        "BGR",
    ]
    assert main(argv) == 0
    meta = read_metadata(out)
    assert meta.model_name == "flagged" and meta.model_version == "7"
    assert meta.input_mean == (1.0, 2.0, 3.0) and meta.input_std == (58.0, 57.0, 57.0)
    assert meta.input_color == "BGR" and meta.box_margin == 1.4
    # What training recorded about its targets reaches the runtime's decoder.
    assert (meta.heatmap_sigma, meta.refine) == (2.0, "dark")
    # Sizes always come from the network, not the sidecar.
    assert meta.input_size == (lm.INPUT, lm.INPUT) and meta.heatmap_size == (16, 16)


def _float16_model(path):
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inputs = tf.keras.Input((32, 32, 3))
        outputs = tf.keras.layers.Conv2D(16, 3, padding="same")(inputs)
        tf.keras.Model(inputs, outputs).save(path)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")


def _ternary_model(path):
    import larq as lq

    inputs = tf.keras.Input((32, 32, 3))
    x = lq.layers.QuantConv2D(
        32, 3, padding="same", input_quantizer="ste_tern", kernel_quantizer="ste_sign"
    )(inputs)
    tf.keras.Model(inputs, tf.keras.layers.Conv2D(16, 1)(x)).save(path)


def _unknown_count_model(path):
    inputs = tf.keras.Input((32, 32, 3))
    tf.keras.Model(inputs, tf.keras.layers.Conv2D(5, 3, padding="same")(inputs)).save(path)


@pytest.mark.parametrize(
    "case, extra, expected",
    [
        ("missing", [], "not found"),
        ("garbage", [], "cannot load"),
        ("tflite", [], "expected a .keras or .h5"),
        ("float16", [], "float16"),
        ("ternary", ["--format", "float"], "unsupported layer"),
        ("landmarks5", [], "matches no known skeleton"),
        ("bad-flag", ["--input-mean", "1,2"], "expected 1 or 3 numbers"),
    ],
)
def test_broken_inputs_exit_2_with_one_line(tmp_path, case, extra, expected):
    path = tmp_path / "model.keras"
    if case == "garbage":
        path.write_bytes(b"this is not a keras archive" * 10)
    elif case == "tflite":
        path = tmp_path / "model.tflite"
        path.write_bytes(converted("real", "lce").read_bytes())
    elif case == "float16":
        _float16_model(path)
    elif case == "ternary":
        _ternary_model(path)
    elif case == "landmarks5":
        _unknown_count_model(path)
    elif case == "bad-flag":
        path = saved_model("real")
    result = run_cli(str(path), "-o", str(tmp_path / "out.tflite"), *extra)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and expected in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.tflite").exists()


def test_sidecar_json_written_by_training_is_read_next_to_the_model(tmp_path):
    # The sidecar may also drop the model's suffix: pose.landmarks.json next to pose.keras.
    model_path = tmp_path / "pose.keras"
    model_path.write_bytes(saved_model("real").read_bytes())
    from edge.metadata import LandmarkMetadata

    meta = LandmarkMetadata.for_skeleton(
        "mpii16", input_size=(256, 256), heatmap_size=(64, 64), model_name="sidecar-name"
    )
    (tmp_path / "pose.landmarks.json").write_text(meta.to_json())
    assert main([str(model_path), "--check-inputs", "0"]) == 0
    assert read_metadata(tmp_path / "pose.tflite").model_name == "sidecar-name"


def _mixed_binary_model() -> tf.keras.Model:
    """Every QuantConv2D variant the float export rewrites: strides, dilation, valid padding,
    zero padding, bias, magnitude-aware weights."""
    import larq as lq

    sign = {"input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign"}
    inputs = tf.keras.Input((30, 30, 3))
    x = tf.keras.layers.Conv2D(32, 3, padding="same")(inputs)
    x = tf.keras.layers.BatchNormalization()(x)
    x = lq.layers.QuantConv2D(64, 3, strides=2, padding="same", pad_values=1.0, **sign)(x)
    x = tf.keras.layers.BatchNormalization()(x)
    x = lq.layers.QuantConv2D(
        64,
        5,
        padding="same",
        pad_values=1.0,
        dilation_rate=2,
        input_quantizer="approx_sign",
        kernel_quantizer="magnitude_aware_sign",
        use_bias=True,
    )(x)
    x = tf.keras.layers.BatchNormalization()(x)
    x = lq.layers.QuantConv2D(32, 3, padding="same", pad_values=0.0, **sign)(x)
    x = tf.keras.layers.BatchNormalization()(x)
    x = lq.layers.QuantConv2D(32, 3, padding="valid", activation="relu", **sign)(x)
    outputs = tf.keras.layers.Conv2D(14, 1)(x)
    model = tf.keras.Model(inputs, outputs)
    for layer in model.layers:  # latent weights away from zero so sign() is well defined
        if isinstance(layer, lq.layers.QuantConv2D):
            w = layer.get_weights()
            layer.set_weights([w[0] + np.sign(w[0]) * 0.01, *w[1:]])
    lm.randomise_batchnorm(model, seed=5)
    return model


def test_float_and_lce_exports_cover_every_quantconv_variant():
    from converters.lce import binary_conv_layers, convert_lce
    from converters.portable import convert_float
    from converters.tflite_metadata import op_counts

    model = _mixed_binary_model()
    x = np.random.default_rng(2).standard_normal((12, 30, 30, 3)).astype(np.float32)
    reference = model(x, training=False).numpy()
    codec = HeatmapCodec(input_size=(26, 26), heatmap_size=(13, 13))  # output is 13x13
    float_data, lce_data = convert_float(model), convert_lce(model)
    assert custom_op_names(float_data) == []
    # Every variant, the pad_values=0 layer included, becomes a bitpacked convolution.
    assert op_counts(lce_data)["LceBconv2d"] == len(binary_conv_layers(model))
    for data, backend in ((float_data, "tflite"), (lce_data, "lce")):
        report = compare(reference, create_backend(backend, data).run(x), codec, backend)
        assert report.inputs_close >= 0.9 * report.num_inputs, report.summary()
        assert report.same_landmarks >= 0.99, report.summary()


@pytest.mark.parametrize("saved_as", ["model.h5", "saved_model_dir"])
def test_h5_and_savedmodel_folders_convert_too(tmp_path, saved_as):
    model = lm._hand_built(binary=True)
    lm.randomise_batchnorm(model, seed=4)
    path = tmp_path / saved_as
    model.save(path)
    out = tmp_path / "out.tflite"
    assert main([str(path), "-o", str(out), "--check-inputs", "0"]) == 0
    assert "LceBconv2d" in custom_op_names(out.read_bytes())
    x = test_inputs(4)
    _assert_agree(model(x, training=False)[-1].numpy(), create_backend("lce", out).run(x))


# The released model's wiring switches (training.models.build_hourglass), one at a time and
# all together: each must become LCE's bitpacked ops and run in both stock runtimes with the
# native delegate, with outputs equal to Keras within the fidelity bar above.
WIRINGS = {
    "default": {},
    "binary_skip": {"binary_skip": True},
    "binary_head": {"binary_head": True},
    "sigmoid": {"heatmap_activation": "sigmoid"},
    "two_blocks_per_level": {"blocks_per_level": 2},
    "released": {"binary_skip": True, "binary_head": True, "heatmap_activation": "sigmoid"},
}


@pytest.mark.parametrize(
    "wiring",
    # All switches at once on every run; each one alone (about 20 s each) in the slow lane.
    [w if w == "released" else pytest.param(w, marks=pytest.mark.slow) for w in WIRINGS],
)
def test_wiring_variant_converts_to_lce_ops_and_runs_in_stock_runtimes(tmp_path, wiring):
    from converters.lce import binary_conv_layers
    from converters.tflite_metadata import op_counts
    from edge import native
    from training.models import build_hourglass

    native.ensure_library()  # compiles once into the user cache if the install did not
    tf.keras.utils.set_random_seed(3)
    model = build_hourglass(
        num_stacks=1,
        depth=1,
        features=64,
        num_landmarks=lm.LANDMARKS,
        input_size=lm.INPUT,
        **WIRINGS[wiring],
    )
    lm.randomise_batchnorm(model, seed=3)
    x = test_inputs(12)
    if "heatmap_activation" in WIRINGS[wiring]:
        # Random weights drive the logits to hundreds, where the Sigmoid is flat at 1.0 and
        # argmax ties decide the landmark; scale them to a trained head's range (|z| <= 6).
        head = model.get_layer("stack0_heatmaps")
        logits = tf.keras.Model(model.input, head.output)(x, training=False).numpy()
        head.set_weights([w * (6.0 / np.abs(logits).max()) for w in head.get_weights()])
    path, out = tmp_path / "model.keras", tmp_path / "model.tflite"
    model.save(path)
    assert main([str(path), "-o", str(out), "--format", "lce", "--check-inputs", "0"]) == 0
    data = out.read_bytes()
    ops = op_counts(data)
    binary = binary_conv_layers(model)
    assert ops["LceBconv2d"] == len(binary)
    float_convs = sum(isinstance(lyr, tf.keras.layers.Conv2D) for lyr in model.layers) - len(binary)
    assert ops.get("CONV_2D", 0) == float_convs
    if "heatmap_activation" in WIRINGS[wiring]:
        assert ops["LOGISTIC"] == 1
    reference = model(x, training=False).numpy()
    for runtime in ("tflite_runtime", "ai_edge_litert"):
        backend = create_backend("tflite", data, runtime=runtime)
        assert "native LCE delegate" in backend.description
        _assert_agree(reference, backend.run(x), f"{wiring} in {runtime}")
