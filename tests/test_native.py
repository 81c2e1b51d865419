"""The native LCE delegate (edge/native) in stock runtimes, against LCE's own interpreter.

Real larq models are converted by the real LCE converter; each runs in LCE's interpreter (the
reference) and, in separate processes, in tflite-runtime and ai-edge-litert with our library
loaded through their public load_delegate(). Float outputs must agree to 1e-5 relative (in
practice they are identical), bitpacked-derived outputs (+-1) exactly, and every kernel path
this CPU has (AVX-512, AVX2, POPCNT, portable) and every thread count must give the same bits.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# isort: off
import converters  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

# isort: on
import flatbuffers
import flatbuffers.flexbuffers as flexbuffers
import larq as lq
import larq_compute_engine as lce
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert import schema_py_generated as schema
from larq_compute_engine.tflite.python.interpreter import Interpreter as LceInterpreter

import edge.native as native

RUNNER = Path(__file__).with_name("native_runner.py")
RUNTIMES = ("tflite_runtime", "ai_edge_litert")
BINARY = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False)


# --------------------------------------------------------------------------- models


def _randomise_batchnorm(model: tf.keras.Model, seed: int) -> None:
    """Non-trivial BN statistics (mixed-sign gammas too), as a trained model would have."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            gamma = rng.uniform(0.5, 2.0, n) * rng.choice([-1.0, 1.0], n)
            layer.set_weights(
                [gamma, rng.normal(size=n), rng.normal(size=n), rng.uniform(0.5, 2, n)]
            )


def _randomise_kernels(model: tf.keras.Model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, lq.layers.QuantConv2D):
            layer.set_weights(
                [rng.normal(size=w.shape).astype(np.float32) for w in layer.get_weights()]
            )


def _bconv(filters, kernel, **kwargs):
    kwargs.setdefault("padding", "same")
    kwargs.setdefault("pad_values", 1.0)
    return lq.layers.QuantConv2D(filters, kernel, **BINARY, **kwargs)


def _bn():
    return tf.keras.layers.BatchNormalization()


def layer_suite() -> tf.keras.Model:
    """One model, many independent branches: each covers one op configuration."""
    branches = []

    def branch(shape, body):
        inp = tf.keras.Input(shape)
        branches.append((inp, body(inp)))

    # Channel counts that are not multiples of 32 (padding bits), strides, dilations, kernels.
    branch((9, 11, 3), lambda x: _bn()(_bconv(8, 3)(x)))
    branch((12, 12, 17), lambda x: _bn()(_bconv(40, 3, strides=2)(x)))
    branch((10, 10, 40), lambda x: _bn()(_bconv(17, 1, padding="valid")(x)))
    branch((12, 12, 96), lambda x: _bn()(_bconv(64, 3, dilation_rate=2)(x)))
    branch((13, 13, 64), lambda x: _bn()(_bconv(32, 5, strides=2, padding="valid")(x)))
    branch((11, 9, 32), lambda x: _bn()(_bconv(33, (3, 1), strides=(1, 2))(x)))
    branch((8, 8, 35), lambda x: _bn()(_bconv(24, 3, dilation_rate=(2, 1), padding="valid")(x)))
    # Fused activations: relu, relu6, relu_n1_to_1 (LCE fuses them when there is no BN).
    branch((8, 8, 32), lambda x: tf.keras.layers.ReLU()(_bconv(32, 3)(x)))
    branch((8, 8, 32), lambda x: tf.keras.layers.ReLU(max_value=6.0)(_bconv(32, 3)(x)))
    branch((8, 8, 32), lambda x: tf.clip_by_value(_bconv(32, 3)(x), -1.0, 1.0))
    # Zero padding (pad_values=0) with SAME: LCE corrects the border taps.
    branch((9, 9, 35), lambda x: _bn()(_bconv(24, 3, pad_values=0.0)(x)))
    # Bitpacked output (a binary conv feeding a binary conv), odd widths on both sides.
    branch((10, 10, 40), lambda x: _bn()(_bconv(33, 3)(_bn()(_bconv(64, 3)(x)))))
    branch((10, 10, 17), lambda x: _bn()(_bconv(20, 1)(_bn()(_bconv(45, 3, strides=2)(x)))))
    # Binary max pooling between binary convs, VALID 2x2 and SAME 3x3/2.
    branch(
        (12, 12, 40),
        lambda x: _bn()(_bconv(33, 3)(tf.keras.layers.MaxPool2D(2)(_bn()(_bconv(64, 3)(x))))),
    )
    branch(
        (11, 11, 32),
        lambda x: _bn()(
            _bconv(16, 1)(tf.keras.layers.MaxPool2D(3, 2, padding="same")(_bn()(_bconv(70, 3)(x))))
        ),
    )
    # A binary output (+-1 floats through LceDequantize) from thresholded bitpacked output.
    branch((8, 8, 40), lambda x: lq.quantizers.SteSign()(_bn()(_bconv(50, 3)(x))))
    model = tf.keras.Model([b[0] for b in branches], [b[1] for b in branches])
    _randomise_kernels(model, seed=1)
    _randomise_batchnorm(model, seed=2)
    return model


def grouped_suite() -> tf.keras.Model:
    """Grouped binary convs; LCE's x86 interpreter refuses these, so Keras is the reference."""
    a = tf.keras.Input((8, 8, 64))
    b = tf.keras.Input((7, 7, 128))
    model = tf.keras.Model(
        [a, b], [_bconv(64, 3, groups=2)(a), _bconv(64, 3, groups=4, strides=2)(b)]
    )
    _randomise_kernels(model, seed=3)
    return model


def batch_two() -> tf.keras.Model:
    inp = tf.keras.Input((9, 9, 40), batch_size=2)
    x = _bn()(_bconv(33, 3)(_bn()(_bconv(48, 3)(inp))))
    model = tf.keras.Model(inp, x)
    _randomise_kernels(model, seed=4)
    _randomise_batchnorm(model, seed=5)
    return model


def op_names(content: bytes) -> list[str]:
    model = schema.Model.GetRootAs(content, 0)
    graph = model.Subgraphs(0)
    names = []
    for i in range(graph.OperatorsLength()):
        code = model.OperatorCodes(graph.Operators(i).OpcodeIndex())
        names.append(code.CustomCode().decode() if code.CustomCode() else "builtin")
    return names


def patch_model(
    content: bytes, op_name: str, *, options=None, raw_options=None, rename=None
) -> bytes:
    """Rewrite the custom options (or the name) of the first `op_name` node."""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(content, 0))
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        if code.customCode is None or code.customCode.decode() != op_name:
            continue
        if options is not None:
            current = flexbuffers.Loads(bytes(np.asarray(op.customOptions, dtype=np.uint8)))
            current.update(options)
            op.customOptions = list(flexbuffers.Dumps(current))
        if raw_options is not None:
            op.customOptions = list(raw_options)
        if rename is not None:
            code.customCode = rename.encode()
        break
    else:
        raise AssertionError(f"no {op_name} in the model")
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def int8_model() -> bytes:
    """int8 in, then int8 outputs from LceBconv2d and LceDequantize.

    LCE's converter (with default int8 ranges) makes the LceQuantize read int8; it keeps the
    graph outputs float, so the outputs of the bconv and the dequantize are retyped to int8 with
    a scale and zero point here. LCE's interpreter then runs the same int8 kernels on them."""
    inp = tf.keras.Input((8, 8, 40))
    z = _bn()(_bconv(33, 3)(_bn()(_bconv(48, 3)(inp))))
    w = lq.quantizers.SteSign()(_bconv(20, 1, padding="valid")(z))
    model = tf.keras.Model(inp, [z, w])
    _randomise_kernels(model, seed=6)
    _randomise_batchnorm(model, seed=7)
    content = lce.convert_keras_model(
        model, inference_input_type=tf.int8, experimental_default_int8_range=(-3.0, 3.0)
    )
    flat = schema.ModelT.InitFromObj(schema.Model.GetRootAs(content, 0))
    graph = flat.subgraphs[0]
    for index, scale, zero_point in zip(graph.outputs, (0.37, 0.45), (-3, 5), strict=True):
        tensor = graph.tensors[index]
        tensor.type = schema.TensorType.INT8
        tensor.quantization = schema.QuantizationParametersT()
        tensor.quantization.scale = [scale]
        tensor.quantization.zeroPoint = [zero_point]
    builder = flatbuffers.Builder(1024)
    builder.Finish(flat.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# --------------------------------------------------------------------------- running


def random_inputs(content: bytes, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    graph = schema.Model.GetRootAs(content, 0).Subgraphs(0)
    shapes = [
        tuple(graph.Tensors(graph.Inputs(i)).ShapeAsNumpy()) for i in range(graph.InputsLength())
    ]
    # Some exact zeros: 0.0 must pack as +1.
    return [
        np.where(rng.random(s) < 0.05, 0.0, rng.standard_normal(s)).astype(np.float32)
        for s in shapes
    ]


def lce_outputs(content: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    # The wrapper's own predict takes whole input tensors (the public predict() splits the
    # leading axis into single samples, which a fixed batch of two cannot take).
    wrapper = LceInterpreter(content, num_threads=1).interpreter
    return [np.asarray(y) for y in wrapper.predict(list(inputs))]


class Workspace:
    """Model files, inputs and one runner process per runtime over a batch of cases."""

    def __init__(self, root: Path, library: Path) -> None:
        self.root = root
        self.library = library
        self.cases: list[dict] = []

    def add_model(self, name: str, content: bytes, inputs: list[np.ndarray]) -> tuple[Path, Path]:
        model = self.root / f"{name}.tflite"
        model.write_bytes(content)
        data = self.root / f"{name}.npz"
        np.savez(data, *inputs)
        return model, data

    def run(self, runtime: str, cases: list[dict]) -> dict[str, np.ndarray]:
        job = self.root / f"job-{runtime}-{len(self.cases)}.json"
        result = self.root / f"result-{runtime}-{len(self.cases)}.npz"
        self.cases.extend(cases)
        job.write_text(
            json.dumps({"runtime": runtime, "library": str(self.library), "cases": cases})
        )
        proc = subprocess.run(
            [sys.executable, str(RUNNER), str(job), str(result)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, (
            f"{runtime} runner crashed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
        with np.load(result) as data:
            return {k: data[k] for k in data.files}


def outputs_of(results: dict[str, np.ndarray], key: str, count: int) -> list[np.ndarray]:
    if f"{key}/error" in results:
        raise AssertionError(f"{key}: {results[f'{key}/error']}")
    return [results[f"{key}/{i}"] for i in range(count)]


def assert_matches(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert ours.shape == ref.shape and ours.dtype == ref.dtype, what
    if ref.dtype == np.float32:
        scale = float(np.abs(ref).max()) or 1.0
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6 * scale, err_msg=what)
    else:
        np.testing.assert_array_equal(ours, ref, err_msg=what)


def assert_fused_runs_agree(
    results: dict,
    cases: list[dict],
    reference: list[np.ndarray],
    runtime: str,
    *,
    exact: bool = False,
) -> None:
    """Every case's outputs match LCE's (bit for bit with ``exact``) and equal the unfused
    run's (the case keyed "unfused") exactly."""
    unfused = outputs_of(results, "unfused", len(reference))
    for c in cases:
        ours = outputs_of(results, c["key"], len(reference))
        for i, (o, u, r) in enumerate(zip(ours, unfused, reference, strict=True)):
            assert_matches(o, r, f"{runtime} {c['key']}: output {i} {r.shape}")
            if exact:
                np.testing.assert_array_equal(o, r, err_msg=f"{runtime} {c['key']} vs LCE: {i}")
            np.testing.assert_array_equal(o, u, err_msg=f"{runtime} {c['key']} vs unfused: {i}")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    return native.build(tmp_path_factory.mktemp("native-lib"))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, library) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("native-models"), library)


@pytest.fixture(scope="module")
def layers(workspace):
    """The layer suite, its LCE reference outputs, and a run in each stock runtime."""
    content = lce.convert_keras_model(layer_suite())
    inputs = random_inputs(content, seed=10)
    reference = lce_outputs(content, inputs)
    model, data = workspace.add_model("layers", content, inputs)
    case = {"model": str(model), "inputs": str(data), "num_threads": 2, "repeat": 2}
    results = {runtime: workspace.run(runtime, [dict(case, key="layers")]) for runtime in RUNTIMES}
    return content, reference, results


# --------------------------------------------------------------------------- tests


def test_library_builds_and_names_its_kernel_path(library):
    available = native.simd_paths_available(library)
    # The fastest path this CPU has, unless BINLAND_SIMD forces another (as when the suite
    # runs the way an AVX2-only host would).
    assert native.simd_path(library) == os.environ.get("BINLAND_SIMD", available[0])
    assert "portable" in available
    machine = __import__("platform").machine()
    if machine == "x86_64":
        assert "popcnt" in available or available == ["portable"]
    # A second build of unchanged sources is the same file (cache keyed by source hash).
    assert native.build(library.parent) == library


def test_suite_covers_every_lce_op(layers):
    content, _, _ = layers
    names = set(op_names(content))
    assert {"LceQuantize", "LceBconv2d", "LceBMaxPool2d", "LceDequantize"} <= names


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_layers_match_lce_interpreter(layers, runtime):
    _, reference, results = layers
    ours = outputs_of(results[runtime], "layers", len(reference))
    for i, (o, r) in enumerate(zip(ours, reference, strict=True)):
        assert_matches(o, r, f"{runtime}: output {i} {r.shape}")
    # Bit-exact in practice, not only within tolerance.
    assert sum(np.array_equal(o, r) for o, r in zip(ours, reference, strict=True)) >= len(ours) - 1


def test_every_kernel_path_and_thread_count_gives_identical_bits(layers, workspace, library):
    _, reference, results = layers
    baseline = outputs_of(results["tflite_runtime"], "layers", len(reference))
    case = {
        "model": str(workspace.root / "layers.tflite"),
        "inputs": str(workspace.root / "layers.npz"),
    }
    cases = [
        dict(case, key=f"simd-{path}", options={"simd": path}, num_threads=2)
        for path in native.simd_paths_available(library)
    ]
    # Both ways of reading the windows (the default picks by shape), on every kernel path.
    cases += [
        dict(case, key=f"{conv}-{path}", options={"simd": path, "conv": conv}, num_threads=2)
        for path in native.simd_paths_available(library)
        for conv in ("direct", "im2col")
    ]
    cases += [
        dict(case, key=f"direct-threads-{n}", num_threads=n, options={"conv": "direct"})
        for n in (1, 3)
    ]
    cases += [dict(case, key=f"threads-{n}", num_threads=n) for n in (1, 3)]
    cases.append(dict(case, key="option-threads", num_threads=1, options={"num_threads": "2"}))
    results = workspace.run("tflite_runtime", cases)
    for c in cases:
        for i, (o, b) in enumerate(
            zip(outputs_of(results, c["key"], len(baseline)), baseline, strict=True)
        ):
            np.testing.assert_array_equal(o, b, err_msg=f"{c['key']} output {i}")


@pytest.fixture(scope="module")
def grouped(workspace):
    model = grouped_suite()
    content = lce.convert_keras_model(model)
    inputs = random_inputs(content, seed=11)
    # TFLite orders inputs and outputs its own way; the shapes here are distinct.
    by_shape = {tuple(i.shape[1:]): x for i, x in zip(model.inputs, inputs, strict=False)}
    keras_inputs = [
        next(x for x in inputs if tuple(x.shape[1:]) == tuple(i.shape[1:])) for i in model.inputs
    ]
    assert len(by_shape) == len(inputs)
    expected = {tuple(np.shape(y)): np.asarray(y) for y in model(keras_inputs)}
    path, data = workspace.add_model("grouped", content, inputs)
    return expected, {"key": "grouped", "model": str(path), "inputs": str(data)}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_grouped_convolutions_match_keras(workspace, grouped, runtime):
    expected, case = grouped
    cases = [case] + [
        dict(case, key=f"grouped-{conv}", options={"conv": conv}) for conv in ("direct", "im2col")
    ]
    results = workspace.run(runtime, cases)
    for c in cases:
        ours = outputs_of(results, c["key"], len(expected))
        # Without BN a binary conv is an exact integer sum in float, so Keras is exact too.
        for o in ours:
            np.testing.assert_array_equal(o, expected[o.shape], err_msg=c["key"])


def test_batch_of_two_matches_lce(workspace):
    content = lce.convert_keras_model(batch_two())
    inputs = random_inputs(content, seed=12)
    reference = lce_outputs(content, inputs)
    path, data = workspace.add_model("batch2", content, inputs)
    results = workspace.run(
        "tflite_runtime", [{"key": "b2", "model": str(path), "inputs": str(data)}]
    )
    for o, r in zip(outputs_of(results, "b2", 1), reference, strict=True):
        assert_matches(o, r, "batch of two")


def test_int8_input_and_outputs_match_lce(workspace):
    content = int8_model()
    graph = schema.Model.GetRootAs(content, 0).Subgraphs(0)
    types = [graph.Tensors(graph.Outputs(i)).Type() for i in range(graph.OutputsLength())]
    assert types == [schema.TensorType.INT8] * 2
    shape = tuple(graph.Tensors(graph.Inputs(0)).ShapeAsNumpy())
    x = np.random.default_rng(14).integers(-128, 128, shape).astype(np.int8)
    reference = lce_outputs(content, [x])
    assert all(r.dtype == np.int8 for r in reference)
    # The bconv output has a real spread of int8 values (not saturation); the dequantized
    # one is zero_point -+ round(1 / scale).
    assert max(len(np.unique(r)) for r in reference) > 10
    path, data = workspace.add_model("int8", content, [x])
    for runtime in RUNTIMES:
        results = workspace.run(runtime, [{"key": "i8", "model": str(path), "inputs": str(data)}])
        for o, r in zip(outputs_of(results, "i8", 2), reference, strict=True):
            np.testing.assert_array_equal(o, r, err_msg=runtime)


def test_bad_models_and_options_raise_python_errors(workspace):
    """Unsupported or corrupt ops fail in Python with the delegate's message; nothing crashes."""
    inp = tf.keras.Input((8, 8, 40))
    content = lce.convert_keras_model(tf.keras.Model(inp, _bn()(_bconv(24, 3)(inp))))
    inputs = random_inputs(content, seed=13)
    bad = {
        "pad7": patch_model(content, "LceBconv2d", options={"pad_values": 7}),
        "tanh": patch_model(content, "LceBconv2d", options={"fused_activation_function": 4}),
        "nostride": patch_model(content, "LceBconv2d", raw_options=b"\x00\x01\x02"),
        "wrongchannels": patch_model(content, "LceBconv2d", options={"channels_in": 70}),
        "unknownop": patch_model(content, "LceBconv2d", rename="LceBconvFancy"),
    }
    cases = []
    for name, patched in bad.items():
        path, data = workspace.add_model(f"bad-{name}", patched, inputs)
        cases.append({"key": name, "model": str(path), "inputs": str(data)})
    good_path, good_data = workspace.add_model("good", content, inputs)
    cases.append(
        {
            "key": "badoption",
            "model": str(good_path),
            "inputs": str(good_data),
            "options": {"colour": "blue"},
        }
    )
    cases.append(
        {
            "key": "badfuse",
            "model": str(good_path),
            "inputs": str(good_data),
            "options": {"fuse": "yes"},
        }
    )
    cases.append(
        {
            "key": "badsimd",
            "model": str(good_path),
            "inputs": str(good_data),
            "options": {"simd": "quantum"},
        }
    )
    cases.append(
        {
            "key": "badconv",
            "model": str(good_path),
            "inputs": str(good_data),
            "options": {"conv": "sideways"},
        }
    )
    expected = {
        "pad7": "pad_values must be 0 or 1",
        "tanh": "fused activation 4 is not supported",
        "nostride": "not a flexbuffer map",
        "wrongchannels": "channels_in=70",
        "unknownop": "LceBconvFancy",
        "badoption": "",  # load_delegate's own ValueError; our message goes to stderr
        "badsimd": "",
        "badfuse": "",
        "badconv": "",
    }
    for runtime in RUNTIMES:
        results = workspace.run(runtime, cases)
        for key, text in expected.items():
            assert f"{key}/error" in results, f"{runtime}: {key} ran without an error"
            message = str(results[f"{key}/error"])
            assert text in message, f"{runtime}: {key}: {message}"


def test_cross_build_for_aarch64(tmp_path):
    if shutil.which("aarch64-linux-gnu-gcc") is None:
        pytest.skip(
            "aarch64-linux-gnu-gcc is not installed (apt-get install gcc-aarch64-linux-gnu)"
        )
    lib = native.build(tmp_path, cc="aarch64-linux-gnu-gcc")
    header = lib.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64


def fusion_suite() -> tf.keras.Model:
    """What the delegate fuses: the builtin MUL/ADD (a folded BatchNorm) before an
    LceQuantize, and the quantize of a binary conv's float output done in that conv's
    epilogue, in the shapes a trained hourglass has them."""
    a = tf.keras.Input((10, 10, 40))  # BN (MUL + ADD) -> bconv straight from the graph input
    b = tf.keras.Input((9, 11, 64))  # an HPM block: bconvs feeding BN -> bconv and a concat
    c = tf.keras.Input((8, 8, 32))  # one BN read by a bconv, a concat and the graph output
    d = tf.keras.Input((7, 7, 35))  # an identity BN (a scalar MUL) and a lone ADD of a constant
    ya = _bn()(_bconv(24, 3)(_bn()(a)))
    y1 = _bconv(32, 3)(_bn()(b))
    y2 = _bconv(16, 3)(_bn()(y1))
    y3 = _bconv(16, 3)(_bn()(y2))
    yb = tf.keras.layers.Add()([tf.keras.layers.Concatenate()([y1, y2, y3]), _bn()(b)])
    tc = _bn()(c)
    yc = tf.keras.layers.Concatenate()([_bconv(32, 3)(tc), tc])
    yd1 = _bconv(16, 3)(tf.keras.layers.BatchNormalization(name="identity_bn")(d))
    shift = np.linspace(-1.0, 1.0, 35).astype(np.float32)
    yd2 = _bconv(16, 3)(tf.keras.layers.Lambda(lambda t: t + shift)(d))
    model = tf.keras.Model([a, b, c, d], [ya, yb, yc, yd1, yd2, tc])
    _randomise_kernels(model, seed=16)
    _randomise_batchnorm(model, seed=17)
    model.get_layer("identity_bn").set_weights(
        [np.ones(35), np.zeros(35), np.zeros(35), np.ones(35)]
    )
    return model


@pytest.fixture(scope="module")
def fusion(workspace):
    content = lce.convert_keras_model(fusion_suite())
    inputs = random_inputs(content, seed=18)
    reference = lce_outputs(content, inputs)
    path, data = workspace.add_model("fusion", content, inputs)
    case = {"model": str(path), "inputs": str(data), "num_threads": 2, "repeat": 2, "profile": True}
    return content, reference, case


def _fusions(profile: dict) -> dict[str, int]:
    """How many ops of each fused form the delegate ran, from its profile JSON."""
    counts: dict[str, int] = {}
    for part in profile["partitions"]:
        for op in part["ops"]:
            if op["absorbed"]:
                continue
            label = "+".join([op["op"]] + [f[0] for f in op["fused"]])
            label += " (in place)" if op["in_place"] else ""
            counts[label] = counts.get(label, 0) + 1
    return counts


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_fused_ops_match_lce_and_the_unfused_delegate(fusion, workspace, library, runtime):
    content, reference, case = fusion
    assert {"LceQuantize", "LceBconv2d", "builtin"} <= set(op_names(content))
    cases = [dict(case, key="fused"), dict(case, key="unfused", options={"fuse": "0"})]
    cases += [
        dict(case, key=f"fused-{path}", options={"simd": path}, profile=False)
        for path in native.simd_paths_available(library)
    ]
    # The one-pass epilogue (quantize, concat, ADD) after either way of reading windows.
    cases += [
        dict(
            case,
            key=f"fused-{conv}-{path}",
            options={"simd": path, "conv": conv},
            profile=conv == "direct",
        )
        for path in native.simd_paths_available(library)
        for conv in ("direct", "im2col")
    ]
    cases += [dict(case, key=f"fused-threads-{n}", num_threads=n) for n in (1, 3)]
    results = workspace.run(runtime, cases)
    assert_fused_runs_agree(results, cases, reference, runtime)
    fused = json.loads(str(results["fused/profile"]))
    assert fused["fuse"] == 1 and fused["kernel"] == native.simd_path(library)
    path = native.simd_path(library)
    direct = json.loads(str(results[f"fused-direct-{path}/profile"]))
    bconvs = [op for p in direct["partitions"] for op in p["ops"] if op["op"] == "LceBconv2d"]
    assert bconvs and all(op["direct"] == 1 for op in bconvs), bconvs
    forms = _fusions(fused)
    # MUL+ADD (BatchNorm), a lone MUL (identity BN) and a lone ADD before a quantize, and
    # quantizes done in a bconv's epilogue, all ran.
    assert forms.get("LceQuantize+MUL+ADD", 0) >= 1, forms
    assert forms.get("LceQuantize+MUL", 0) + forms.get("LceBconv2d+MUL+LceQuantize", 0) >= 1, forms
    assert forms.get("LceQuantize+ADD", 0) >= 1, forms
    assert forms.get("LceBconv2d+MUL+ADD+LceQuantize+into", 0) >= 2, forms
    # The HPM block's concat written in place by its three convs (with the skip ADD when the
    # runtime's partitioning puts that ADD in the same partition, else the ADD on its own);
    # the concat with an input that is no conv's is copied.
    in_place = [k for k in forms if k.startswith("CONCATENATION") and k.endswith("(in place)")]
    assert len(in_place) == 1, forms
    assert forms.get("CONCATENATION", 0) == 1, forms
    assert in_place[0] == "CONCATENATION+ADD (in place)" or forms.get("ADD") == 1, forms
    assert _fusions(json.loads(str(results["unfused/profile"]))) == {
        "LceQuantize": 7,
        "LceBconv2d": 7,
    }


def float_ops_suite() -> tf.keras.Model:
    """The builtin float ops the delegate runs between its binary convs: max pools (VALID,
    SAME with windows cut by the border, non-square, with a fused ReLU), nearest-neighbour
    upsampling (Keras's, TF1's align_corners, a non-integer scale) and plain ADDs of two
    activations, each next to a binary conv as in the hourglass."""
    a = tf.keras.Input((12, 12, 40))
    b = tf.keras.Input((6, 7, 32))
    y = _bconv(32, 3)(_bn()(a))
    p1 = tf.keras.layers.MaxPool2D(2)(y)
    p2 = tf.keras.layers.MaxPool2D(3, strides=2, padding="same")(y)
    p3 = tf.keras.layers.ReLU()(tf.keras.layers.MaxPool2D((3, 2), strides=(1, 2))(y))
    z = _bconv(32, 3)(_bn()(p1))
    up = tf.keras.layers.UpSampling2D(2)(z)  # 6x6 -> 12x12
    s = tf.keras.layers.Add()([up, y])  # read through the upsampling's index tables
    zb = _bconv(16, 3)(_bn()(b))
    corners = tf.keras.layers.Lambda(
        lambda t: tf.compat.v1.image.resize_nearest_neighbor(t, (11, 9), align_corners=True)
    )(zb)
    odd = tf.keras.layers.Lambda(lambda t: tf.image.resize(t, (10, 17), method="nearest"))(zb)
    model = tf.keras.Model([a, b], [p2, p3, s, _bconv(16, 3)(_bn()(s)), corners, odd])
    _randomise_kernels(model, seed=26)
    _randomise_batchnorm(model, seed=27)
    return model


def _size_constant_at(content: bytes, size: tuple[int, int]) -> int:
    """Byte offset of the constant output size `size` of a RESIZE_NEAREST_NEIGHBOR."""
    model = schema.Model.GetRootAs(content, 0)
    graph = model.Subgraphs(0)
    for name, inputs, _ in graph_ops(content):
        if name != "RESIZE_NEAREST_NEIGHBOR":
            continue
        buffer = model.Buffers(graph.Tensors(inputs[1]).Buffer())
        if tuple(buffer.DataAsNumpy().view(np.int32)) == size:
            return buffer._tab.Vector(buffer._tab.Offset(4))  # the data vector (field 0)
    raise AssertionError(f"no upsampling to {size}")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_float_ops_between_binary_convs_match_lce(workspace, runtime):
    """Max pool, nearest resize and ADD run by the delegate (an upsampling that only an ADD
    reads, fused into it) give LCE's outputs bit for bit (a max, a copy and one IEEE addition
    each), and the runtime's own (fuse=0)."""
    content = lce.convert_keras_model(float_ops_suite())
    names = {name for name, _, _ in graph_ops(content)}
    assert {"MAX_POOL_2D", "RESIZE_NEAREST_NEIGHBOR", "ADD"} <= names, names
    inputs = random_inputs(content, seed=28)
    reference = lce_outputs(content, inputs)
    path, data = workspace.add_model("float_ops", content, inputs)
    case = {"model": str(path), "inputs": str(data), "num_threads": 2, "repeat": 2, "profile": True}
    cases = [
        dict(case, key="fused"),
        dict(case, key="unfused", options={"fuse": "0"}),
        dict(case, key="fused-threads-3", num_threads=3, profile=False),
    ]
    # A flatbuffer whose upsampling size (11x9) disagrees with its output's shape: the
    # runtime would resize the output, the delegate (whose outputs have fixed shapes) refuses.
    at = _size_constant_at(content, (11, 9))
    bad = content[:at] + np.array([11, 8], np.int32).tobytes() + content[at + 8 :]
    bad_path, _ = workspace.add_model("float_ops_bad_size", bad, inputs)
    cases.append({"key": "bad-size", "model": str(bad_path), "inputs": str(data)})
    results = workspace.run(runtime, cases)
    assert "size input says 11x8 but the output is 11x9" in str(results["bad-size/error"])
    cases.pop()
    assert_fused_runs_agree(results, cases, reference, runtime, exact=True)
    profile = json.loads(str(results["fused/profile"]))
    ran = {op["op"] for p in profile["partitions"] for op in p["ops"]}
    assert {"MAX_POOL_2D", "RESIZE_NEAREST_NEIGHBOR", "ADD"} <= ran, ran
    # The upsampling only the ADD reads is read through; the sum's BatchNorm + quantize for
    # the next binary conv is done as the ADD writes each row.
    forms = _fusions(profile)
    assert forms.get("ADD+MUL+ADD+LceQuantize+RESIZE_NEAREST_NEIGHBOR", 0) == 1, forms


def graph_ops(content: bytes) -> list[tuple[str, list[int], list[int]]]:
    """(name, inputs, outputs) of every node in plan order; builtins by their operator name."""
    model = schema.Model.GetRootAs(content, 0)
    graph = model.Subgraphs(0)
    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = code.CustomCode().decode() if code.CustomCode() else builtin[code.BuiltinCode()]
        ops.append((name, list(op.InputsAsNumpy()), list(op.OutputsAsNumpy())))
    return ops


def _hpm(x, skip_input=None):
    """An HPM block whose skip is a binary 1x1 conv (training's binary_skip wiring): three
    chained BN -> bconvs, their concat, plus the skip conv of skip_input (default: x's BN)."""
    t = _bn()(x)
    y1 = _bconv(32, 3)(t)
    y2 = _bconv(16, 3)(_bn()(y1))
    y3 = _bconv(16, 3)(_bn()(y2))
    skip = _bconv(64, 1)(t if skip_input is None else skip_input)
    return tf.keras.layers.Add()([tf.keras.layers.Concatenate()([y1, y2, y3]), skip])


def shared_bits_suite() -> tf.keras.Model:
    """One bitpacked tensor read by two LceBconv2d nodes, as the binary_skip wiring has it."""
    a = tf.keras.Input((9, 9, 40))  # a bconv's bitpacked output (its BN folded into the
    ya = _hpm(_bconv(48, 3)(_bn()(a)))  # thresholds) read by the block's conv1 and its skip
    b = tf.keras.Input((8, 8, 40))  # one LceQuantize (with its MUL/ADD) read by two bconvs
    tb = _bn()(b)
    yb1, yb2 = _bconv(32, 3)(tb), _bconv(64, 1)(tb)
    c = tf.keras.Input((9, 9, 48))  # the skip with its own BN: its own quantize, as in a
    yc = _hpm(c, skip_input=_bn()(c))  # trained hourglass
    model = tf.keras.Model([a, b, c], [ya, yb1, yb2, yc])
    _randomise_kernels(model, seed=22)
    _randomise_batchnorm(model, seed=23)
    return model


def _late_skips(content: bytes) -> list[int]:
    """The ADDs of a concat and of a binary conv that the plan runs after that concat."""
    ops = graph_ops(content)
    at = {outs[0]: i for i, (_, _, outs) in enumerate(ops)}
    late = []
    for i, (name, inputs, _) in enumerate(ops):
        kinds = {ops[at[t]][0]: at[t] for t in inputs if t in at}
        if name == "ADD" and kinds.get("LceBconv2d", -1) > kinds.get("CONCATENATION", i):
            late.append(i)
    return late


def skip_after_concat(content: bytes) -> bytes:
    """Moves each binary conv that only a concat's ADD reads to just before that ADD, after
    the concat: the order LCE's converter gives an HPM block's binary skip (often, not
    always: its order follows layer names), still a valid plan."""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(content, 0))
    operators = model.subgraphs[0].operators
    ops = graph_ops(content)
    at = {outs[0]: i for i, (_, _, outs) in enumerate(ops)}
    readers: dict[int, int] = {}
    for _, inputs, _ in ops:
        for t in inputs:
            readers[t] = readers.get(t, 0) + 1
    order = list(range(len(ops)))
    for i, (name, inputs, _) in enumerate(ops):
        sources = {ops[at[t]][0]: t for t in inputs if t in at}
        if name != "ADD" or not {"CONCATENATION", "LceBconv2d"} <= set(sources):
            continue
        conv = at[sources["LceBconv2d"]]
        if readers[sources["LceBconv2d"]] == 1 and conv < at[sources["CONCATENATION"]]:
            order.remove(conv)
            order.insert(order.index(i), conv)
    model.subgraphs[0].operators = [operators[i] for i in order]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="module")
def shared_bits(workspace):
    content = skip_after_concat(lce.convert_keras_model(shared_bits_suite()))
    ops = graph_ops(content)
    bconv_readers: dict[int, int] = {}
    for name, inputs, _ in ops:
        if name == "LceBconv2d":
            bconv_readers[inputs[0]] = bconv_readers.get(inputs[0], 0) + 1
    writers = {out: name for name, _, outs in ops for out in outs}
    # A bconv's and a quantize's bitpacked output, each read by two bconvs; both HPM blocks'
    # skip convs after their concat.
    shared = {writers.get(t) for t, n in bconv_readers.items() if n == 2}
    assert shared == {"LceBconv2d", "LceQuantize"}, shared
    assert len(_late_skips(content)) == 2, ops
    inputs = random_inputs(content, seed=24)
    reference = lce_outputs(content, inputs)
    path, data = workspace.add_model("shared-bits", content, inputs)
    case = {"model": str(path), "inputs": str(data), "num_threads": 2, "repeat": 2, "profile": True}
    return reference, case


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_bitpacked_tensor_read_by_two_binary_convs(shared_bits, workspace, runtime):
    """With an HPM block's binary skip conv after the block's concat, the fused concat + skip
    ADD must run after that conv (it once ran at the concat's place and read a skip not yet
    computed: garbage, different on each invoke); the conv then runs first, so the block's
    convs still write the summed output in place. Fused, unfused and LCE agree bit for bit."""
    reference, case = shared_bits
    cases = [dict(case, key="fused"), dict(case, key="unfused", options={"fuse": "0"})]
    cases += [dict(case, key=f"fused-threads-{n}", num_threads=n) for n in (1, 3)]
    results = workspace.run(runtime, cases)
    assert_fused_runs_agree(results, cases, reference, runtime, exact=True)
    forms = _fusions(json.loads(str(results["fused/profile"])))
    assert forms.get("CONCATENATION+ADD (in place)", 0) == 2, forms


def test_bench_profile_times_every_node_once(workspace, fusion, tmp_path):
    """python -m edge.bench --profile: each node of the model in exactly one row, as JSON."""
    _, _, case = fusion
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.bench",
            "--profile",
            "--model",
            case["model"],
            "--json",
            "--frames",
            "2",
            "--warmup",
            "1",
            "--threads",
            "2",
            "--runtime",
            "tflite_runtime",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    content = Path(case["model"]).read_bytes()
    nodes = [n for row in report["nodes"] for n in row["nodes"]]
    assert sorted(nodes) == list(range(len(op_names(content))))
    assert report["kernel"] == native.simd_path() and report["fuse"] is True
    timed = {row["timed"] for row in report["nodes"]}
    assert timed == {"delegate", "by difference"}
    assert {"mean_ms", "delegate_ms", "builtin_ms"} <= set(report["total"])
    table = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.bench",
            "--profile",
            "--model",
            case["model"],
            "--frames",
            "1",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--no-fuse",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert table.returncode == 0, table.stderr[-2000:]
    assert "fusion off" in table.stdout and "by difference" in table.stdout
    float_only = tmp_path / "float.tflite"
    float_only.write_bytes(b"not a model")
    bad = subprocess.run(
        [sys.executable, "-m", "edge.bench", "--profile", "--model", str(float_only)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")


def _hourglass_case(
    workspace, *, size: int, features: int, depth: int, name: str, trained_bn: bool = True
):
    from training.models import build_hourglass

    model = build_hourglass(
        num_stacks=1, depth=depth, features=features, input_size=size, binary=True
    )
    if trained_bn:
        _randomise_batchnorm(model, seed=20)
    content = lce.convert_keras_model(model)
    inputs = random_inputs(content, seed=21)
    reference = lce_outputs(content, inputs)
    path, data = workspace.add_model(name, content, inputs)
    return (
        content,
        reference,
        {"key": name, "model": str(path), "inputs": str(data), "num_threads": 2},
    )


@pytest.mark.parametrize("trained_bn", [True, False], ids=["trained-bn", "fresh-bn"])
def test_small_hourglass_matches_lce(workspace, trained_bn):
    """Fresh BatchNorms are what benchmarks/kernels.py times: the converter merges the identical
    ones, so one MUL feeds a quantize and a float skip conv (fused, and stored for the conv)."""
    name = f"hg-small-{'trained' if trained_bn else 'fresh'}"
    content, reference, case = _hourglass_case(
        workspace, size=64, features=64, depth=2, name=name, trained_bn=trained_bn
    )
    assert "LceBconv2d" in op_names(content)
    for runtime in RUNTIMES:
        results = workspace.run(runtime, [dict(case, profile=True)])
        ours = outputs_of(results, case["key"], len(reference))
        for o, r in zip(ours, reference, strict=True):
            assert_matches(o, r, f"{runtime}: small hourglass")
        forms = _fusions(json.loads(str(results[f"{case['key']}/profile"])))
        # Every block's concat is written in place by its binary convs.
        assert sum(n for k, n in forms.items() if k.endswith("(in place)")) >= 3, forms
        assert any("LceQuantize+into" in k for k in forms), forms


@pytest.mark.slow
def test_paper_hourglass_matches_lce(workspace):
    """The paper's 1-stack binary HPM hourglass at 256x256, 256 features, depth 4."""
    _, reference, case = _hourglass_case(
        workspace, size=256, features=256, depth=4, name="hg-paper"
    )
    for runtime in RUNTIMES:
        ours = outputs_of(workspace.run(runtime, [case]), case["key"], len(reference))
        for o, r in zip(ours, reference, strict=True):
            assert_matches(o, r, f"{runtime}: paper hourglass")


@pytest.mark.pi
def test_layers_on_emulated_raspberry_pi(layers, fusion, workspace, tmp_path):
    """The aarch64 build (NEON and portable kernels) in the aarch64 tflite-runtime under qemu
    (Cortex-A72) gives LCE's x86 outputs, fused ops included, and selects NEON by itself."""
    import pi as pi_lane

    pi = pi_lane.session_pi()
    _, reference, _ = layers
    _, fusion_reference, fusion_case = fusion
    library = native.build(tmp_path, cc=pi_lane.CROSS_CC)
    case = {
        "model": str(workspace.root / "layers.tflite"),
        "inputs": str(workspace.root / "layers.npz"),
        "num_threads": 2,
    }
    cases = [dict(case, key=f"arm-{simd}", options={"simd": simd}) for simd in ("neon", "portable")]
    cases += [
        dict(case, key=f"arm-{simd}-{conv}", options={"simd": simd, "conv": conv})
        for simd in ("neon", "portable")
        for conv in ("direct", "im2col")
    ]
    # No simd option: the delegate picks its kernel itself, and says which in its profile.
    cases.append(dict(case, key="arm-default", profile=True))
    fused = [dict(fusion_case, key="arm-fusion", repeat=1)]
    fused += [dict(fusion_case, key="arm-fusion-portable", options={"simd": "portable"}, repeat=1)]
    fused += [dict(fusion_case, key="arm-unfused", options={"fuse": "0"}, repeat=1)]
    job, result = tmp_path / "job.json", tmp_path / "result.npz"
    job.write_text(
        json.dumps({"runtime": "tflite_runtime", "library": str(library), "cases": cases + fused})
    )
    proc = pi.run([str(RUNNER), str(job), str(result)], pythonpath=[pi.site], timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(result) as data:
        results = {k: data[k] for k in data.files}
    for c in cases:
        ours = outputs_of(results, c["key"], len(reference))
        for i, (o, r) in enumerate(zip(ours, reference, strict=True)):
            assert_matches(o, r, f"{c['key']}: output {i}")
    profile = json.loads(str(results["arm-default/profile"]))
    assert profile["kernel"] == "neon", profile["kernel"]
    bconvs = [
        op for part in profile["partitions"] for op in part["ops"] if op["op"] == "LceBconv2d"
    ]
    assert bconvs and all(op["calls"] == 1 for op in bconvs)
    unfused = outputs_of(results, "arm-unfused", len(fusion_reference))
    for c in fused:
        ours = outputs_of(results, c["key"], len(fusion_reference))
        for i, (o, u, r) in enumerate(zip(ours, unfused, fusion_reference, strict=True)):
            assert_matches(o, r, f"{c['key']}: output {i}")
            np.testing.assert_array_equal(o, u, err_msg=f"{c['key']} vs unfused: output {i}")
    forms = _fusions(json.loads(str(results["arm-fusion/profile"])))
    assert any(k.endswith("(in place)") for k in forms) and "LceQuantize+MUL+ADD" in forms, forms


def test_command_line_builds_and_reports_errors_in_one_line(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "edge.native", "build", "--output", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert Path(ok.stdout.strip()).parent == tmp_path
    bad = subprocess.run(
        [sys.executable, "-m", "edge.native", "build", "--cc", "no-such-compiler"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1
