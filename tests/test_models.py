"""The landmark networks: block wiring, binarization in the forward pass, parameter counts, and
the paper's size check (6.24 M parameters, 7.5 G binary + 0.71 G float MACs, 1.30 MB LCE file).
"""

from __future__ import annotations

import time
from pathlib import Path

# isort: off
import training  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

# isort: on
import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from training.models import (
    BLOCK_TYPES,
    block_parameters,
    build_hourglass,
    count_macs,
    count_parameters,
    features_for_budget,
    hourglass_parameters,
    is_binary_conv,
    residual_block,
    stack_outputs,
)


def block_model(
    block: str, *, cin: int, channels: int, binary: bool, size: int = 8, weight_scale: bool = False
):
    x = tf.keras.Input((size, size, cin), name="x")
    y = residual_block(
        x, block=block, channels=channels, binary=binary, weight_scale=weight_scale, name="b"
    )
    return tf.keras.Model(x, y)


def randomise(model: tf.keras.Model, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and conv weights, as a trained model would have."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape),
                    rng.normal(0, 0.3, beta.shape),
                    rng.normal(0, 0.3, mean.shape),
                    rng.uniform(0.5, 1.5, var.shape),
                ]
            )


def inputs_of(layer: tf.keras.layers.Layer) -> list:
    """The layers whose outputs feed ``layer`` (Keras tensors carry their history)."""
    tensors = layer.input if isinstance(layer.input, list) else [layer.input]
    return [t._keras_history.layer for t in tensors]


# ---------------------------------------------------------------- HPM block wiring


@pytest.mark.parametrize("binary", [True, False])
def test_hpm_block_splits_channels_in_half_quarter_quarter_and_concatenates(binary):
    model = block_model("hpm", cin=32, channels=64, binary=binary)
    convs = [model.get_layer(f"b_conv{i}_conv") for i in (1, 2, 3)]
    assert [c.kernel.shape.as_list() for c in convs] == [
        [3, 3, 32, 32],
        [3, 3, 32, 16],
        [3, 3, 16, 16],
    ]
    # A chain: each conv reads the previous conv's output through its own BatchNorm.
    assert inputs_of(convs[1]) == [model.get_layer("b_conv2_bn" if binary else "b_conv2_relu")]
    assert inputs_of(model.get_layer("b_conv2_bn")) == [convs[0]]
    assert inputs_of(model.get_layer("b_conv3_bn")) == [convs[1]]
    concat = model.get_layer("b_concat")
    assert inputs_of(concat) == convs
    assert concat.output.shape[-1] == 64
    # No 1x1 conv in the main path; the only 1x1 conv is the skip's.
    one_by_one = [
        lyr.name
        for lyr in model.layers
        if isinstance(lyr, tf.keras.layers.Conv2D) and lyr.kernel.shape[0] == 1
    ]
    assert one_by_one == ["b_skip_conv"]
    assert all(is_binary_conv(c) == binary for c in convs)


def test_binary_unit_is_batchnorm_then_sign_conv_and_real_unit_has_relu():
    binary = block_model("hpm", cin=64, channels=64, binary=True)
    real = block_model("hpm", cin=64, channels=64, binary=False)
    conv = binary.get_layer("b_conv1_conv")
    assert isinstance(conv, lq.layers.QuantConv2D)
    assert isinstance(inputs_of(conv)[0], tf.keras.layers.BatchNormalization)
    assert not any(isinstance(lyr, tf.keras.layers.ReLU) for lyr in binary.layers)
    assert type(real.get_layer("b_conv1_conv")) is tf.keras.layers.Conv2D
    assert isinstance(inputs_of(real.get_layer("b_conv1_conv"))[0], tf.keras.layers.ReLU)
    assert inputs_of(real.get_layer("b_conv1_relu")) == [real.get_layer("b_conv1_bn")]


@pytest.mark.parametrize("block", BLOCK_TYPES)
def test_skip_is_identity_when_channels_match_else_batchnorm_then_1x1(block):
    same = block_model(block, cin=64, channels=64, binary=True)
    add = same.get_layer("b_add")
    assert same.get_layer("x") in inputs_of(add)
    assert not any("skip" in lyr.name for lyr in same.layers)

    changed = block_model(block, cin=32, channels=64, binary=True)
    skip_conv = changed.get_layer("b_skip_conv")
    assert skip_conv.kernel.shape.as_list() == [1, 1, 32, 64]
    assert not is_binary_conv(skip_conv) and not skip_conv.use_bias
    assert inputs_of(skip_conv) == [changed.get_layer("b_skip_bn")]
    assert inputs_of(changed.get_layer("b_skip_bn")) == [changed.get_layer("x")]
    assert skip_conv in inputs_of(changed.get_layer("b_add"))


def _zero_main_convs(model):
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.Conv2D) and "skip" not in layer.name:
            layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])


@pytest.mark.parametrize("block", BLOCK_TYPES)
def test_zeroed_main_path_leaves_exactly_the_identity_skip(block):
    model = block_model(block, cin=64, channels=64, binary=False)
    randomise(model)
    _zero_main_convs(model)
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 64)).astype(np.float32)
    np.testing.assert_array_equal(model(x, training=False).numpy(), x)


@pytest.mark.parametrize("block", BLOCK_TYPES)
def test_zeroed_main_path_leaves_batchnorm_then_1x1_skip(block):
    model = block_model(block, cin=32, channels=64, binary=False)
    randomise(model)
    _zero_main_convs(model)
    x = np.random.default_rng(2).normal(size=(2, 8, 8, 32)).astype(np.float32)
    gamma, beta, mean, var = model.get_layer("b_skip_bn").get_weights()
    eps = model.get_layer("b_skip_bn").epsilon
    normalised = (x - mean) / np.sqrt(var + eps) * gamma + beta
    (kernel,) = model.get_layer("b_skip_conv").get_weights()
    expected = np.einsum("nhwc,cd->nhwd", normalised, kernel[0, 0])
    np.testing.assert_allclose(model(x, training=False).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_hpm_concatenation_order_is_conv1_conv2_conv3():
    model = block_model("hpm", cin=64, channels=64, binary=False)
    randomise(model)
    _zero_main_convs(model)
    rng = np.random.default_rng(3)
    conv1 = model.get_layer("b_conv1_conv")
    conv1.set_weights([rng.normal(size=conv1.kernel.shape).astype(np.float32)])
    x = rng.normal(size=(1, 8, 8, 64)).astype(np.float32)
    residual = model(x, training=False).numpy() - x
    # conv2 and conv3 are zero, so only the first C/2 channels (conv1's) may differ from x.
    assert np.abs(residual[..., :32]).mean() > 0.1
    np.testing.assert_allclose(residual[..., 32:], 0, atol=1e-5)


def test_binary_block_output_is_concat_of_conv_outputs_plus_input():
    model = block_model("hpm", cin=64, channels=64, binary=True)
    randomise(model)
    probe = tf.keras.Model(
        model.input, [model.output] + [model.get_layer(f"b_conv{i}_conv").output for i in (1, 2, 3)]
    )
    x = np.random.default_rng(4).normal(size=(2, 8, 8, 64)).astype(np.float32)
    out, c1, c2, c3 = (t.numpy() for t in probe(x, training=False))
    np.testing.assert_allclose(out, np.concatenate([c1, c2, c3], axis=-1) + x, rtol=1e-6)


# ---------------------------------------------------------------- binarization in the forward pass


def _sign(v):
    return np.where(v >= 0, 1.0, -1.0)  # larq's sign: 0 -> +1


def test_binary_conv_computes_with_plus_minus_one_inputs_and_weights():
    """A real forward pass: the conv's output equals the conv of sign(input) and sign(kernel)
    with +1 padding, so every value is an integer of the parity of K = 3*3*Cin."""
    model = block_model("hpm", cin=32, channels=64, binary=True)
    randomise(model)
    conv = model.get_layer("b_conv1_conv")
    probe = tf.keras.Model(model.input, [conv.input, conv.output])
    x = np.random.default_rng(5).normal(size=(2, 8, 8, 32)).astype(np.float32)
    conv_in, conv_out = (t.numpy() for t in probe(x, training=False))

    latent = conv.kernel.numpy()
    assert np.abs(conv_in).min() < 0.99 and np.unique(np.abs(latent)).size > 100  # real values
    assert set(np.unique(conv.kernel_quantizer(tf.convert_to_tensor(conv.kernel)).numpy())) == {
        -1.0,
        1.0,
    }

    k = 3 * 3 * 32
    assert np.array_equal(conv_out, np.round(conv_out))
    assert np.all(np.mod(conv_out, 2) == k % 2) and np.abs(conv_out).max() <= k

    padded = np.pad(_sign(conv_in), ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=1.0)
    expected = np.zeros_like(conv_out)
    for dy in range(3):
        for dx in range(3):
            window = padded[:, dy : dy + 8, dx : dx + 8, :]
            expected += np.einsum("nhwc,cd->nhwd", window, _sign(latent[dy, dx]))
    np.testing.assert_array_equal(conv_out, expected)


@pytest.mark.parametrize("block", ["hpm", "bottleneck"])
def test_weight_scale_multiplies_each_output_channel_by_mean_abs_weight(block):
    """weight_scale=True is the paper's XNOR-Net alpha: sign(W) * mean|W| per output channel,
    so the conv output is the +-1 conv scaled per channel; parameter counts do not change."""
    plain = block_model(block, cin=32, channels=64, binary=True)
    scaled = block_model(block, cin=32, channels=64, binary=True, weight_scale=True)
    randomise(scaled)
    assert count_parameters(plain) == count_parameters(scaled)
    convs = [lyr for lyr in scaled.layers if is_binary_conv(lyr)]
    assert len(convs) == 3
    x = np.random.default_rng(7).normal(size=(2, 8, 8, 32)).astype(np.float32)
    for conv in convs:
        assert conv.padding == "same" and conv.pad_values == 1.0 and not conv.use_bias
        probe = tf.keras.Model(scaled.input, [conv.input, conv.output])
        conv_in, conv_out = (t.numpy() for t in probe(x, training=False))
        latent = conv.kernel.numpy()
        alpha = np.abs(latent).mean(axis=(0, 1, 2))
        unscaled = tf.nn.conv2d(
            tf.pad(_sign(conv_in), [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=1.0)
            if latent.shape[0] == 3
            else _sign(conv_in),
            _sign(latent),
            strides=1,
            padding="VALID",
        ).numpy()
        assert np.array_equal(unscaled, np.round(unscaled))  # an integer +-1 convolution
        np.testing.assert_allclose(conv_out, unscaled * alpha, rtol=1e-5, atol=1e-4)


def test_weight_scale_reaches_every_binary_conv_of_the_network_and_the_config():
    import larq as lq

    from training.config import ModelConfig
    from training.models import BINARY_CONV_KWARGS

    def kernel_quantizers(model: tf.keras.Model) -> set[str]:
        return {type(c.kernel_quantizer).__name__ for c in model.layers if is_binary_conv(c)}

    model = build_hourglass(num_stacks=1, depth=2, features=64, input_size=64, weight_scale=True)
    assert kernel_quantizers(model) == {"MagnitudeAwareSign"}
    assert "scaled" in model.name
    plain = build_hourglass(num_stacks=1, depth=2, features=64, input_size=64)
    assert (
        kernel_quantizers(plain)
        == {"SteSign"}
        == {type(lq.quantizers.get(BINARY_CONV_KWARGS["kernel_quantizer"])).__name__}
    )
    assert ModelConfig().weight_scale is False  # the default stays plain ste_sign


def test_real_block_convs_are_not_binarized():
    model = block_model("hpm", cin=32, channels=64, binary=False)
    randomise(model)
    conv = model.get_layer("b_conv1_conv")
    probe = tf.keras.Model(model.input, conv.output)
    out = probe(np.random.default_rng(6).normal(size=(1, 8, 8, 32)).astype(np.float32)).numpy()
    assert not np.array_equal(out, np.round(out))


def test_binary_network_binarizes_every_block_conv_except_the_skips():
    model = build_hourglass(num_stacks=2, depth=2, features=64, input_size=64, binary=True)
    convs = [lyr for lyr in model.layers if isinstance(lyr, tf.keras.layers.Conv2D)]
    binary = {c.name for c in convs if is_binary_conv(c)}
    real = {c.name for c in convs if not is_binary_conv(c)}
    # stem conv, 2 stem skips, per stack head + heatmaps, re-injection (2 convs) once
    assert real == {
        "stem_conv",
        "stem_block1_skip_conv",
        "stem_block3_skip_conv",
        "stack0_head_conv",
        "stack0_heatmaps",
        "stack1_head_conv",
        "stack1_heatmaps",
        "stack0_reinject_features",
        "stack0_reinject_heatmaps",
    }
    # 3 stem blocks + per stack (3 * depth + 1) hourglass blocks + 1 head block, 3 convs each
    assert len(binary) == 3 * (3 + 2 * (3 * 2 + 1 + 1))
    for c in convs:
        if is_binary_conv(c):
            assert c.padding == "same" and c.pad_values == 1.0 and not c.use_bias
    real_twin = build_hourglass(num_stacks=2, depth=2, features=64, input_size=64, binary=False)
    assert not any(is_binary_conv(lyr) for lyr in real_twin.layers)


# ---------------------------------------------------------------- parameter counts


def hand_count(block: str, cin: int, c: int) -> int:
    """Trainable parameters derived by hand: conv weights, plus gamma and beta of each BN."""
    skip = 0 if cin == c else cin * c + 2 * cin
    if block == "hpm":  # 3x3: cin->c/2, c/2->c/4, c/4->c/4; BN over cin, c/2, c/4
        return 9 * (cin * c // 2 + c * c // 8 + c * c // 16) + 2 * (cin + c // 2 + c // 4) + skip
    if block == "bottleneck":  # 1x1 cin->c/2, 3x3 c/2->c/2, 1x1 c/2->c; BN over cin, c/2, c/2
        return cin * c // 2 + 9 * c * c // 4 + c * c // 2 + 2 * (cin + c) + skip
    # wide: 1x1 cin->c, 3x3 c->c, 1x1 c->c; BN over cin, c, c
    return cin * c + 10 * c * c + 2 * (cin + 2 * c) + skip


def test_hand_counts_at_256_channels():
    assert hand_count("hpm", 256, 256) == 405_504 + 896
    assert hand_count("bottleneck", 256, 256) == 212_992 + 1024
    assert hand_count("wide", 256, 256) == 720_896 + 1536


@pytest.mark.parametrize("block", BLOCK_TYPES)
@pytest.mark.parametrize("cin,channels", [(64, 64), (32, 64), (128, 96)])
@pytest.mark.parametrize("binary", [True, False])
def test_block_parameter_count_matches_hand_formula(block, cin, channels, binary):
    model = block_model(block, cin=cin, channels=channels, binary=binary, size=4)
    assert count_parameters(model) == hand_count(block, cin, channels)
    assert block_parameters(block, cin, channels) == hand_count(block, cin, channels)
    bn_stats = sum(np.prod(w.shape) for w in model.non_trainable_weights)
    assert count_parameters(model, include_batchnorm_statistics=True) == (
        hand_count(block, cin, channels) + bn_stats
    )


@pytest.mark.parametrize("block", BLOCK_TYPES)
def test_closed_form_hourglass_count_matches_built_model(block):
    model = build_hourglass(
        num_stacks=2, depth=2, features=48, num_landmarks=5, input_size=32, block=block
    )
    assert count_parameters(model) == hourglass_parameters(
        num_stacks=2, depth=2, features=48, num_landmarks=5, block=block
    )


@pytest.mark.parametrize("block", BLOCK_TYPES)
def test_features_for_budget_picks_the_nearest_count(block):
    target = 2_000_000
    f = features_for_budget(target, block=block, depth=2)

    def error(features):
        return abs(hourglass_parameters(depth=2, features=features, block=block) - target)

    assert error(f) <= error(f - 4) and error(f) <= error(f + 4)
    assert error(f) / target < 0.05
    assert f % 4 == 0


def test_features_for_budget_recovers_the_paper_width():
    assert features_for_budget(6_236_048, block="hpm") == 256
    paper = {"num_stacks": 1, "depth": 4, "num_landmarks": 16, "input_size": 256}
    assert features_for_budget(6_236_048, block="hpm", binary=False, **paper) == 256
    assert hourglass_parameters(features=256, block="hpm", binary=False, **paper) == 6_236_048
    assert features_for_budget(6_236_048, block="hpm", multiple_of=32) == 256
    with pytest.raises(ValueError, match="multiple of 4"):
        features_for_budget(1_000_000, block="hpm", multiple_of=6)


# ---------------------------------------------------------------- the hourglass


def test_outputs_are_one_float32_heatmap_per_stack():
    model = build_hourglass(num_stacks=3, depth=2, features=32, num_landmarks=7, input_size=32)
    assert model.input.shape.as_list() == [None, 32, 32, 3] and model.input.dtype == tf.float32
    assert [o.shape.as_list() for o in model.outputs] == [[None, 8, 8, 7]] * 3
    assert all(o.dtype == tf.float32 for o in model.outputs)
    x = np.random.default_rng(7).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    preds = stack_outputs(model(x, training=False))
    assert len(preds) == 3 and preds[-1].shape == (2, 8, 8, 7)
    # Linear heads: negative heatmap values exist (no ReLU/sigmoid on the output).
    assert float(tf.reduce_min(preds[-1])) < 0
    one = build_hourglass(num_stacks=1, depth=2, features=32, input_size=32)
    assert len(stack_outputs(one(x))) == 1


def test_stacks_are_joined_by_1x1_reinjection():
    model = build_hourglass(num_stacks=2, depth=2, features=32, input_size=64, binary=False)
    add = model.get_layer("stack0_reinject_add")
    assert {lyr.name for lyr in inputs_of(add)} == {
        "stem_block3_add",
        "stack0_reinject_features",
        "stack0_reinject_heatmaps",
    }
    assert inputs_of(model.get_layer("stack0_reinject_heatmaps")) == [
        model.get_layer("stack0_heatmaps")
    ]
    assert inputs_of(model.get_layer("stack0_reinject_features")) == [
        model.get_layer("stack0_head_relu")
    ]
    # The second hourglass reads the re-injected sum.
    assert inputs_of(model.get_layer("hg1_level2_up_conv1_bn")) == [add]


def test_hourglass_recursion_has_three_blocks_per_level_plus_one_at_the_bottom():
    model = build_hourglass(depth=3, features=32, input_size=64)
    # Block adds are "hg0_level{n}_{part}_add"; the level's own add is "hg0_level{n}_add".
    hg_blocks = sorted(
        lyr.name[: -len("_add")]
        for lyr in model.layers
        if lyr.name.startswith("hg0_level")
        and lyr.name.endswith("_add")
        and lyr.name.count("_") == 3
    )
    assert hg_blocks == sorted(
        [f"hg0_level{lv}_{part}" for lv in (1, 2, 3) for part in ("up", "low1", "low3")]
        + ["hg0_level1_low2"]
    )
    assert model.get_layer("hg0_level1_upsample").output.shape[1:3] == (4, 4)


def test_saved_binary_model_reloads_with_identical_outputs(tmp_path: Path):
    model = build_hourglass(num_stacks=2, depth=2, features=32, input_size=32, binary=True)
    randomise(model)
    path = tmp_path / "hg.keras"
    model.save(path)
    reloaded = tf.keras.models.load_model(path, compile=False)
    x = np.random.default_rng(8).uniform(size=(1, 32, 32, 3)).astype(np.float32)
    for a, b in zip(model(x, training=False), reloaded(x, training=False), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"block": "resnet"}, "unknown block type"),
        ({"features": 30}, "multiple of 4"),
        ({"input_size": 100}, "multiple of 64"),
        ({"num_stacks": 0}, "num_stacks"),
        ({"depth": 0}, "depth"),
        ({"num_landmarks": 0}, "num_landmarks"),
    ],
)
def test_bad_arguments_raise_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_hourglass(**kwargs)


# ---------------------------------------------------------------- the paper's size check


@pytest.fixture(scope="module")
def paper_model():
    start = time.perf_counter()
    model = build_hourglass()  # 1 stack, depth 4, 256 features, 16 landmarks, 256x256, HPM, binary
    print(f"built the paper model in {time.perf_counter() - start:.1f} s")
    return model


def test_paper_network_has_6_24_million_parameters(paper_model):
    assert count_parameters(paper_model) == 6_236_048
    assert round(count_parameters(paper_model) / 1e6, 2) == 6.24
    assert hourglass_parameters() == 6_236_048
    assert paper_model.outputs[0].shape.as_list() == [None, 64, 64, 16]


def test_paper_network_has_7_5_g_binary_and_0_71_g_float_macs(paper_model):
    binary, real = count_macs(paper_model)
    assert round(binary / 1e9, 1) == 7.5
    assert round(real / 1e9, 2) == 0.71


@pytest.mark.slow
def test_paper_network_converts_to_a_1_30_mb_bitpacked_flatbuffer(paper_model):
    import larq_compute_engine as lce

    from converters.tflite_metadata import op_counts

    start = time.perf_counter()
    flatbuffer = lce.convert_keras_model(paper_model)
    print(f"converted in {time.perf_counter() - start:.1f} s: {len(flatbuffer)} bytes")
    assert round(len(flatbuffer) / 1e6, 2) == 1.30
    ops = op_counts(flatbuffer)
    binary_convs = sum(is_binary_conv(lyr) for lyr in paper_model.layers)
    assert binary_convs == 51
    assert ops["LceBconv2d"] == binary_convs
    # Float convs left: the stem, the two stem skips, the head and the heatmap conv.
    assert ops["CONV_2D"] == 5


@pytest.mark.slow
def test_float_twin_converts_to_24_9_mb():
    import larq_compute_engine as lce

    from converters.tflite_metadata import op_counts

    model = build_hourglass(binary=False)
    flatbuffer = lce.convert_keras_model(model)
    assert round(len(flatbuffer) / 1e6, 1) == 24.9
    assert "LceBconv2d" not in op_counts(flatbuffer)


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCK_TYPES)
def test_small_binary_network_converts_every_binary_conv_to_lce_bconv2d(block):
    import larq_compute_engine as lce

    from converters.tflite_metadata import op_counts

    model = build_hourglass(depth=1, features=64, input_size=32, block=block, binary=True)
    ops = op_counts(lce.convert_keras_model(model))
    # 3 stem blocks + 4 hourglass blocks + 1 head block, 3 binary convs each (1x1 ones too)
    assert ops["LceBconv2d"] == sum(is_binary_conv(lyr) for lyr in model.layers) == 3 * 8
    assert ops["CONV_2D"] == 5


@pytest.mark.slow
def test_training_step_updates_latent_binary_weights_and_keeps_them_clipped():
    """The straight-through estimator passes gradients to the latent weights, and weight_clip
    holds them in [-1, 1] even with a step large enough to throw them far outside."""
    from training.losses import pack_targets, stack_losses

    tf.keras.utils.set_random_seed(0)
    model = build_hourglass(num_stacks=2, depth=1, features=32, num_landmarks=3, input_size=16)
    binary = [lyr for lyr in model.layers if is_binary_conv(lyr)]
    before = [lyr.kernel.numpy().copy() for lyr in binary]
    model.compile(optimizer=tf.keras.optimizers.SGD(100.0), loss=stack_losses(2))
    rng = np.random.default_rng(9)
    x = rng.uniform(size=(4, 16, 16, 3)).astype(np.float32)
    y = pack_targets(rng.uniform(size=(4, 4, 4, 3)), np.ones((4, 3)))
    model.fit(x, [y, y], batch_size=4, epochs=1, verbose=0)
    for layer, old in zip(binary, before, strict=True):
        new = layer.kernel.numpy()
        assert not np.array_equal(new, old), layer.name
        assert np.abs(new).max() <= 1.0, layer.name


# ---------------------------------------------------------------- the released model's wiring


def _float_convs(model: tf.keras.Model) -> set[str]:
    return {
        lyr.name
        for lyr in model.layers
        if isinstance(lyr, tf.keras.layers.Conv2D) and not is_binary_conv(lyr)
    }


SMALL = {"num_stacks": 2, "depth": 2, "features": 64, "num_landmarks": 5, "input_size": 64}


def test_wiring_switches_default_to_the_paper_size_check_network():
    from training.config import ModelConfig

    config = ModelConfig()
    assert (config.binary_skip, config.binary_head) == (False, False)
    assert (config.heatmap_activation, config.blocks_per_level) == ("linear", 1)
    assert build_hourglass(**SMALL).name == "hourglass_hpm_binary_2stack"


def test_binary_skip_makes_the_stem_skip_convs_binary_and_moves_their_macs():
    base, skip = build_hourglass(**SMALL), build_hourglass(**SMALL, binary_skip=True)
    moved = {"stem_block1_skip_conv", "stem_block3_skip_conv"}
    assert _float_convs(skip) == _float_convs(base) - moved
    conv = skip.get_layer("stem_block1_skip_conv")
    assert conv.kernel.shape.as_list() == [1, 1, 64, 128] and conv.pad_values == 1.0
    assert inputs_of(conv) == [skip.get_layer("stem_block1_skip_bn")]
    assert count_parameters(skip) == count_parameters(base) == hourglass_parameters(**SMALL)
    # 64x64 input: stem_block1's skip 64->128 at 32x32, stem_block3's 128->64 at 16x16.
    skip_macs = 32 * 32 * 64 * 128 + 16 * 16 * 128 * 64
    (bb, bf), (sb, sf) = count_macs(base), count_macs(skip)
    assert (sb - bb, bf - sf) == (skip_macs, skip_macs) == (10_485_760, 10_485_760)
    assert "bskip" in skip.name
    with pytest.raises(ValueError, match="binary networks"):
        build_hourglass(**SMALL, binary=False, binary_skip=True)


def test_binary_head_is_batchnorm_then_a_binary_1x1_conv_and_adds_its_batchnorm():
    base, head = build_hourglass(**SMALL), build_hourglass(**SMALL, binary_head=True)
    assert _float_convs(head) == _float_convs(base) - {"stack0_head_conv", "stack1_head_conv"}
    conv = head.get_layer("stack1_head_conv")
    assert is_binary_conv(conv) and conv.kernel.shape.as_list() == [1, 1, 64, 64]
    assert inputs_of(conv) == [head.get_layer("stack1_head_in_bn")]
    assert inputs_of(head.get_layer("stack1_head_in_bn")) == [head.get_layer("stack1_block_add")]
    # One more BatchNorm (gamma, beta over 64 channels) per stack.
    extra = 2 * 2 * 64
    assert count_parameters(head) == count_parameters(base) + extra
    assert count_parameters(head) == hourglass_parameters(**SMALL, binary_head=True)
    head_macs = 2 * 16 * 16 * 64 * 64  # two stacks, 16x16 heatmaps, 64 -> 64
    (bb, bf), (hb, hf) = count_macs(base), count_macs(head)
    assert (hb - bb, bf - hf) == (head_macs, head_macs) == (2_097_152, 2_097_152)


def test_sigmoid_heatmaps_lie_in_zero_one_and_feed_the_reinjection():
    model = build_hourglass(**SMALL, heatmap_activation="sigmoid")
    assert count_parameters(model) == hourglass_parameters(**SMALL)
    x = np.random.default_rng(10).uniform(size=(2, 64, 64, 3)).astype(np.float32)
    for out in stack_outputs(model(x, training=False)):
        v = out.numpy()
        # Untrained logits reach hundreds, where float32 sigmoid rounds to 0 and 1.
        assert v.min() >= 0.0 and v.max() <= 1.0 and v.dtype == np.float32
        assert np.any((v > 0) & (v < 1))
    assert inputs_of(model.get_layer("stack0_reinject_heatmaps")) == [
        model.get_layer("stack0_sigmoid")
    ]
    with pytest.raises(ValueError, match="heatmap_activation"):
        build_hourglass(**SMALL, heatmap_activation="softmax")


def test_blocks_per_level_repeats_each_hourglass_block():
    two = build_hourglass(**SMALL, blocks_per_level=2)
    adds = [
        lyr.name
        for lyr in two.layers
        if lyr.name.startswith("hg0_level2_up") and lyr.name.endswith("_add")
    ]
    assert adds == ["hg0_level2_up_add", "hg0_level2_up_1_add"]
    per_block = block_parameters("hpm", 64, 64)
    hourglass_blocks = 2 * (3 * 2 + 1)  # two stacks, 3 per level + 1 at the bottom
    assert count_parameters(two) - count_parameters(build_hourglass(**SMALL)) == (
        hourglass_blocks * per_block
    )
    assert count_parameters(two) == hourglass_parameters(**SMALL, blocks_per_level=2)
    with pytest.raises(ValueError, match="blocks_per_level"):
        build_hourglass(**SMALL, blocks_per_level=0)


def test_paper_network_in_the_released_wiring_has_its_own_counts():
    """The size check for the released model's wiring (binary skips, binary first head conv,
    Sigmoid): the paper's network, with the float MACs that remain the stem 7x7 conv and the
    final heatmap conv. docs/training.md's size check table lists these beside the paper's wiring."""
    released = build_hourglass(binary_skip=True, binary_head=True, heatmap_activation="sigmoid")
    assert count_parameters(released) == 6_236_048 + 2 * 256 == 6_236_560
    binary, real = count_macs(released)
    stem, heatmaps = 128 * 128 * 7 * 7 * 3 * 64, 64 * 64 * 256 * 16
    assert real == stem + heatmaps == 170_917_888
    assert binary == 7_505_510_400 + 2 * 134_217_728 + 268_435_456 == 8_042_381_312


@pytest.mark.slow
def test_paper_network_in_the_released_wiring_converts_to_0_89_mb():
    import larq_compute_engine as lce

    from converters.tflite_metadata import op_counts

    released = build_hourglass(binary_skip=True, binary_head=True, heatmap_activation="sigmoid")
    flatbuffer = lce.convert_keras_model(released)
    assert round(len(flatbuffer) / 1e6, 2) == 0.89
    ops = op_counts(flatbuffer)
    assert ops["LceBconv2d"] == 51 + 2 + 1 and ops["CONV_2D"] == 2 and ops["LOGISTIC"] == 1


def test_heatmap_bce_against_a_hand_computed_case_and_weights():
    from training.losses import HeatmapBCE, HeatmapMSE, pack_targets, stack_losses

    # One sample, 1x2 heatmap, 2 landmarks; landmark 1 is unlabelled (weight 0).
    target = np.array([[[[1.0, 0.3], [0.0, 0.9]]]])
    pred = np.array([[[[0.8, 0.01], [0.4, 0.99]]]], np.float32)
    packed = pack_targets(target, np.array([[1.0, 0.0]]))
    # Landmark 0 only: -ln 0.8 and -ln 0.6, averaged over all 4 (h, w, K) cells.
    expected = (-np.log(0.8) - np.log(0.6)) / 4
    assert float(HeatmapBCE()(packed, pred)) == pytest.approx(expected, rel=1e-5)
    mse = ((0.8 - 1.0) ** 2 + (0.4 - 0.0) ** 2) / 4
    assert float(HeatmapMSE()(packed, pred)) == pytest.approx(mse, rel=1e-5)
    # Saturated probabilities are clipped, not log(0).
    assert np.isfinite(float(HeatmapBCE()(packed, np.array([[[[0.0, 1.0], [1.0, 0.0]]]]))))
    assert [type(x).__name__ for x in stack_losses(2, "bce")] == ["HeatmapBCE"] * 2
    with pytest.raises(ValueError, match="unknown loss"):
        stack_losses(1, "l1")


def test_config_checks_the_wiring_switches():
    from training.config import ConfigError, make_config

    config = make_config(
        {
            "model": {
                "binary_skip": True,
                "binary_head": True,
                "heatmap_activation": "sigmoid",
                "blocks_per_level": 2,
            },
            "loss": "bce",
        }
    )
    assert config.model.binary_head and config.loss == "bce"
    for bad, message in [
        ({"loss": "bce"}, "needs probabilities"),
        ({"model": {"binary": False, "binary_head": True}}, "binary networks"),
        ({"model": {"heatmap_activation": "tanh"}}, "heatmap_activation"),
        ({"model": {"blocks_per_level": 0}}, "blocks_per_level"),
        ({"loss": "l1"}, "loss must be"),
    ]:
        with pytest.raises(ConfigError, match=message):
            make_config(bad)
