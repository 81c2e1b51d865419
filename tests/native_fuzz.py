"""Structure-aware fuzzing of the native LCE delegate (edge/native), and replay of its corpus.

A *case* is a base model (a committed .tflite file) and a list of mutations, each a small
JSON object that changes the model by its structure: an op's flexbuffer custom options (or
their raw bytes), a builtin op's options, a tensor's shape, type or quantization, an op's
inputs, a constant's values, the custom op's name; ``fit_shapes`` then recomputes the shapes
of every op the delegate may take (and of the float convs between them) so that a changed
option or input size reaches the kernels instead of stopping at a shape check. Ops and
tensors are named by op and occurrence ("LceBconv2d#0", "LceQuantize#0:out0"). A case is a
few lines of JSON, rebuilt from its base model to run, so every one the fuzzer ever failed
on is kept in ``tests/fuzz_corpus/`` and replayed by tests/test_native_fuzz.py.

Each case runs in a worker process (a stock runtime, ai-edge-litert or tflite-runtime, with
the delegate loaded through ``load_delegate``): load, allocate, invoke twice. A clean error
(the runtime's ValueError / RuntimeError) is a pass; a dead worker (a signal, a sanitizer
report) or a case that takes longer than ``--case-timeout`` is a failure, written to
``--save`` (default ``tests/fuzz_corpus/new/``) with the report's first lines. A sanitizer
report without a frame of the delegate, or a case that also kills the runtime without the
delegate, is the stock runtime's own failure on a malformed model: listed, not counted.

    python tests/native_fuzz.py fuzz --seconds 120 --sanitize [--save DIR] [--seed N]
    python tests/native_fuzz.py replay [--sanitize | --library LIB] [CASE.json ...]
    python tests/native_fuzz.py make-seed     # rewrites the seed model (needs the train extra)

``--sanitize`` builds the delegate with ``-fsanitize=address,undefined`` (GCC's libasan and
libubsan, nothing else) and preloads libasan (and libstdc++) into the workers (a Python
host is not built with it); any report aborts the worker. Without it each worker's address
space is capped, so a giant allocation fails at once. Without it the library comes from ``--library`` or
``edge.native.build`` into a temporary folder. ``.ci/fuzz_lane.sh`` runs ``replay`` and then
``fuzz`` under the sanitizers. Helper script, not a test module (like native_runner.py).
"""

from __future__ import annotations

import argparse
import copy
import gc
import hashlib
import json
import os
import random
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flatbuffers
import flatbuffers.flexbuffers as flexbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"
SEED_MODEL = CORPUS / "seeds" / "lce_ops.tflite"
# The base models: every op kind the delegate takes, at the sizes the project ships. The
# fuzzer picks the small ones more often (a case of the bundled models takes longer).
BASES = {
    "tests/fuzz_corpus/seeds/lce_ops.tflite": 4,
    "tests/fixtures/pose_lce.tflite": 4,
    "edge/models/pose.tflite": 1,
    "edge/models/face.tflite": 1,
    "edge/models/faceparts.tflite": 1,
}
RUNTIMES = ("ai_edge_litert", "tflite_runtime")

# Sanitizer settings for the workers. Leaks are not checked (the Python host keeps memory
# to its end); an allocation over 1 GB is a failure in itself (the delegate's budget is
# 512 MB), as is any UBSan report (halt_on_error).
ASAN_OPTIONS = (
    "detect_leaks=0:max_allocation_size_mb=1024:allocator_may_return_null=0:"
    "abort_on_error=0:exitcode=66:handle_segv=1:print_summary=1"
)
UBSAN_OPTIONS = "halt_on_error=1:print_stacktrace=1:exitcode=67"
SANITIZE_FLAGS = (
    "-O1",
    "-g",
    "-fno-omit-frame-pointer",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=undefined",
)

BUILTIN = schema.BuiltinOperator
BUILTIN_NAMES = {v: k for k, v in vars(BUILTIN).items() if not k.startswith("_")}
LCE_OPS = ("LceQuantize", "LceDequantize", "LceBconv2d", "LceBMaxPool2d")
# Builtin ops the delegate may take (fusion, pooling, upsampling, sums).
CLAIMABLE = ("ADD", "MUL", "CONCATENATION", "MAX_POOL_2D", "RESIZE_NEAREST_NEIGHBOR")
# Values that break arithmetic: zero, signs, powers of two and their neighbours up to the
# int32 and int64 limits, and the issue's 1e8, 2^29 and 2^31 - 1.
_POWERS = (1, 8, 16, 32, 64, 128, 256, 4096, 1 << 16, 1 << 20, 1 << 29, 1 << 30, 1 << 31)
_OTHERS = (0, 3, 5, 7, 9, 100, 1000, 100_000_000, 2**32 + 1, 2**63 - 1, -(2**63))
EDGE_INTS = tuple(sorted({s * (p + d) for p in _POWERS for d in (-1, 0, 1) for s in (1, -1)}))
EDGE_INTS += _OTHERS
SMALL_INTS = (0, 1, 1, 1, 2, 2, 3, 4, 5, 7, 8, 9, 16, 33, -1)
# Tensor dimensions (int32 in the flatbuffer).
EDGE_DIMS = tuple(v for v in EDGE_INTS if -(2**31) <= v < 2**31)
BCONV_KEYS = (
    "channels_in",
    "dilation_height_factor",
    "dilation_width_factor",
    "fused_activation_function",
    "pad_values",
    "padding",
    "stride_height",
    "stride_width",
)
BMAXPOOL_KEYS = ("filter_height", "filter_width", "padding", "stride_height", "stride_width")
# The builtin options the delegate reads (of the ops it may take), by the schema's field names.
_POOL_FIELDS = ("padding", "strideW", "strideH", "filterWidth", "filterHeight")
BUILTIN_FIELDS = {
    "MAX_POOL_2D": _POOL_FIELDS + ("fusedActivationFunction",),
    "CONCATENATION": ("axis", "fusedActivationFunction"),
    "ADD": ("fusedActivationFunction",),
    "MUL": ("fusedActivationFunction",),
    "RESIZE_NEAREST_NEIGHBOR": ("alignCorners", "halfPixelCenters"),
}
TENSOR_TYPES = (
    schema.TensorType.FLOAT32,
    schema.TensorType.INT32,
    schema.TensorType.INT8,
    schema.TensorType.UINT8,
    schema.TensorType.INT64,
    schema.TensorType.BOOL,
)


# --------------------------------------------------------------------------- cases


def load_model(content: bytes) -> schema.ModelT:
    return schema.ModelT.InitFromObj(schema.Model.GetRootAs(content, 0))


def pack_model(model: schema.ModelT) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def op_name(model: schema.ModelT, op: schema.OperatorT) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    if code.customCode is not None:
        return code.customCode.decode(errors="replace")
    return BUILTIN_NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")


def _options_dict(op: schema.OperatorT) -> dict:
    if op.customOptions is None or len(op.customOptions) == 0:
        return {}
    try:
        value = flexbuffers.Loads(bytes(np.asarray(op.customOptions, dtype=np.uint8)))
    except Exception:  # corrupt bytes (from an earlier raw mutation): start over
        return {}
    return dict(value) if isinstance(value, dict) else {}


def _custom_code(model: schema.ModelT, name: str) -> int:
    for i, code in enumerate(model.operatorCodes):
        if code.customCode is not None and code.customCode.decode(errors="replace") == name:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = BUILTIN.CUSTOM
    code.customCode = name.encode()
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _set_tensor_shape(tensor: schema.TensorT, shape: list[int]) -> None:
    tensor.shape = np.array(shape, dtype=np.int32)
    tensor.shapeSignature = None  # a stale signature would contradict the new shape


def _fits_int32(values: list[int]) -> bool:
    return all(-(2**31) <= v < 2**31 for v in values)


def op_ref(model: schema.ModelT, index: int) -> str:
    """An op by name and occurrence, "LceBconv2d#0": readable in a case, and it survives a
    regenerated base model that keeps the order of the ops."""
    ops = model.subgraphs[0].operators
    name = op_name(model, ops[index])
    return f"{name}#{sum(op_name(model, op) == name for op in ops[:index])}"


def tensor_ref(model: schema.ModelT, index: int) -> str | int:
    """A tensor as the output (else the input) of the first op that writes (reads) it,
    "LceQuantize#0:out0"; a tensor no op touches keeps its index."""
    ops = model.subgraphs[0].operators
    for side in ("out", "in"):
        for i, op in enumerate(ops):
            slots = [int(v) for v in (op.outputs if side == "out" else op.inputs)]
            if index in slots:
                return f"{op_ref(model, i)}:{side}{slots.index(index)}"
    return index


def _op_index(model: schema.ModelT, ref: int | str) -> int:
    if isinstance(ref, int):
        return ref
    name, _, k = ref.rpartition("#")
    matches = [i for i, op in enumerate(model.subgraphs[0].operators) if op_name(model, op) == name]
    if int(k) >= len(matches):
        raise ValueError(f"the model has no op {ref}")
    return matches[int(k)]


def _tensor_index(model: schema.ModelT, ref: int | str) -> int:
    if isinstance(ref, int):
        return ref
    op, _, slot = ref.rpartition(":")
    node = model.subgraphs[0].operators[_op_index(model, op)]
    side = "out" if slot.startswith("out") else "in"
    return int((node.outputs if side == "out" else node.inputs)[int(slot[len(side) :])])


def symbolic(model: schema.ModelT, m: dict) -> dict:
    """``m`` with its op and tensor indices written as references (op_ref, tensor_ref)."""
    m = dict(m)
    if "op" in m:
        m["op"] = op_ref(model, m["op"])
    if isinstance(m.get("tensor"), int) and m["tensor"] >= 0:
        m["tensor"] = tensor_ref(model, m["tensor"])
    return m


def apply_mutation(model: schema.ModelT, m: dict) -> None:
    """Applies one mutation (see the module docstring) to ``model`` in place. Ops and
    tensors are indices or references (op_ref, tensor_ref) into the model as it is now."""
    graph = model.subgraphs[0]
    m = dict(m)
    if "op" in m:
        m["op"] = _op_index(model, m["op"])
    if "tensor" in m:
        m["tensor"] = _tensor_index(model, m["tensor"])
    kind = m["kind"]
    if kind == "custom_options":
        op = graph.operators[m["op"]]
        options = _options_dict(op)
        for key in m.get("drop", []):
            options.pop(key, None)
        options.update(m.get("set", {}))
        op.customOptions = list(flexbuffers.Dumps(options))
    elif kind == "raw_options":
        graph.operators[m["op"]].customOptions = list(bytes.fromhex(m["hex"]))
    elif kind == "rename":
        op = graph.operators[m["op"]]
        op.opcodeIndex = _custom_code(model, m["name"])
        op.builtinOptionsType = 0
        op.builtinOptions = None
        if "inputs" in m:
            op.inputs = np.array(m["inputs"], dtype=np.int32)
    elif kind == "builtin_options":
        options = graph.operators[m["op"]].builtinOptions
        if options is not None:
            for key, value in m["set"].items():
                if hasattr(options, key):
                    setattr(options, key, value)
    elif kind == "shape":
        _set_tensor_shape(graph.tensors[m["tensor"]], m["shape"])
    elif kind == "type":
        graph.tensors[m["tensor"]].type = m["type"]
    elif kind == "quantization":
        q = schema.QuantizationParametersT()
        q.scale = [float(m["scale"])]
        q.zeroPoint = [int(m["zero_point"])]
        graph.tensors[m["tensor"]].quantization = q
    elif kind == "input":
        op = graph.operators[m["op"]]
        inputs = [int(v) for v in op.inputs]
        if m["slot"] < len(inputs):
            inputs[m["slot"]] = m["tensor"]
            op.inputs = np.array(inputs, dtype=np.int32)
    elif kind == "buffer":
        tensor = graph.tensors[m["tensor"]]
        buffer = model.buffers[tensor.buffer]
        dtype = np.dtype(m["dtype"])
        if "values" in m:
            data = np.array(m["values"], dtype=np.float64).astype(dtype)
        else:
            old = np.asarray(buffer.data if buffer.data is not None else [], dtype=np.uint8)
            data = np.full(len(old) // dtype.itemsize, m["fill"], dtype=np.float64).astype(dtype)
        buffer.data = np.frombuffer(data.tobytes(), dtype=np.uint8)
    elif kind == "fit_shapes":
        fit_shapes(model)
    else:
        raise ValueError(f"unknown mutation {kind!r}")


def build_case(case: dict) -> bytes:
    """The mutant's flatbuffer: the base model with the case's mutations applied in order."""
    model = load_model((REPO / case["base"]).read_bytes())
    for m in case["mutations"]:
        apply_mutation(model, m)
    return pack_model(model)


# ---------------------------------------------------------------- shape inference


def _geometry(size: int, filt: int, stride: int, dilation: int, same: bool) -> int:
    """TFLite's output size along one axis (0 when the window does not fit)."""
    stride = max(stride, 1)
    effective = (filt - 1) * max(dilation, 1) + 1
    return (size + stride - 1) // stride if same else max((size - effective) // stride + 1, 0)


def _const_int32(model: schema.ModelT, tensor: schema.TensorT) -> list[int] | None:
    data = model.buffers[tensor.buffer].data
    if data is None or len(data) % 4:
        return None
    return [int(v) for v in np.frombuffer(bytes(np.asarray(data, np.uint8)), dtype=np.int32)]


def fit_shapes(model: schema.ModelT) -> None:
    """Recomputes, in plan order, the output shape of every op whose shape rule is known here
    (the delegate's ops and the float convs between them), from its inputs' shapes and its
    options as they now are, so that a mutated option or input size runs through. Ops it
    cannot compute (or that would give an empty shape) keep their shape."""
    graph = model.subgraphs[0]
    tensors = graph.tensors

    def shape(t: int) -> list[int] | None:
        return None if t < 0 or t >= len(tensors) else [int(v) for v in tensors[t].shape]

    for op in graph.operators:
        name = op_name(model, op)
        ins = [shape(int(t)) for t in op.inputs]
        out: list[int] | None = None
        if not ins or ins[0] is None or len(op.outputs) != 1:
            continue
        x = ins[0]
        if name == "LceQuantize" and x:
            out = x[:-1] + [(x[-1] + 31) // 32]
        elif name == "LceDequantize" and x:
            out = shape(int(op.outputs[0]))  # channels are not in the input; keep the rest
            if out and len(out) == len(x):
                out = x[:-1] + [out[-1]]
        elif name in ("LceBconv2d", "LceBMaxPool2d", "MAX_POOL_2D", "CONV_2D") and len(x) == 4:
            if name.startswith("Lce"):
                o = _options_dict(op)
                same = o.get("padding", 0) in (0, "SAME", "same")
                sh, sw = o.get("stride_height", 1), o.get("stride_width", 1)
                dh, dw = o.get("dilation_height_factor", 1), o.get("dilation_width_factor", 1)
            else:
                b = op.builtinOptions
                if b is None:
                    continue
                same = b.padding == schema.Padding.SAME
                sh, sw = b.strideH, b.strideW
                dh, dw = getattr(b, "dilationHFactor", 1), getattr(b, "dilationWFactor", 1)
            if not all(isinstance(v, int) for v in (sh, sw, dh, dw)):
                continue
            if name in ("LceBconv2d", "CONV_2D"):
                w = ins[1] if len(ins) > 1 else None
                if not w or len(w) != 4:
                    continue
                fh, fw, channels = w[1], w[2], w[0]
            else:
                if name == "LceBMaxPool2d":
                    fh, fw = o.get("filter_height", 1), o.get("filter_width", 1)
                else:
                    fh, fw = op.builtinOptions.filterHeight, op.builtinOptions.filterWidth
                channels = x[3]
                if not (isinstance(fh, int) and isinstance(fw, int)):
                    continue
            if name == "LceBconv2d":
                out_type = tensors[int(op.outputs[0])].type
                channels = (
                    (channels + 31) // 32 if out_type == schema.TensorType.INT32 else channels
                )
            out = [
                x[0],
                _geometry(x[1], fh, sh, dh, same),
                _geometry(x[2], fw, sw, dw, same),
                channels,
            ]
        elif name in ("ADD", "MUL") and len(ins) == 2 and ins[1] is not None:
            out = x if int(np.prod(x or [1])) >= int(np.prod(ins[1] or [1])) else ins[1]
        elif name == "CONCATENATION" and all(s is not None and len(s) == len(x) for s in ins):
            out = x[:-1] + [sum(s[-1] for s in ins)]
        elif name == "RESIZE_NEAREST_NEIGHBOR" and len(ins) == 2 and len(x) == 4:
            size = _const_int32(model, tensors[int(op.inputs[1])])
            if size is not None and len(size) == 2:
                out = [x[0], size[0], size[1], x[3]]
        if out and all(0 < v < 2**31 for v in out):
            _set_tensor_shape(tensors[int(op.outputs[0])], out)


# --------------------------------------------------------------------- mutator


@dataclass
class Targets:
    """What the mutator may touch in one base model: the ops the delegate may take and the
    tensors they read or write (graph inputs only ever get small sizes: a huge input is the
    runtime's own allocation, not the delegate's)."""

    ops: list[int] = field(default_factory=list)
    lce_ops: list[int] = field(default_factory=list)
    builtin_ops: list[int] = field(default_factory=list)
    tensors: list[int] = field(default_factory=list)
    constants: list[int] = field(default_factory=list)
    graph_inputs: set[int] = field(default_factory=set)


def find_targets(model: schema.ModelT) -> Targets:
    graph = model.subgraphs[0]
    t = Targets(graph_inputs={int(v) for v in graph.inputs})
    touched: set[int] = set()
    for i, op in enumerate(graph.operators):
        name = op_name(model, op)
        if name.startswith("Lce"):
            t.lce_ops.append(i)
        elif name in CLAIMABLE:
            t.builtin_ops.append(i)
        else:
            continue
        t.ops.append(i)
        touched.update(int(v) for v in op.inputs if v >= 0)
        touched.update(int(v) for v in op.outputs if v >= 0)
    for index in sorted(touched):
        data = model.buffers[graph.tensors[index].buffer].data
        (t.constants if data is not None and len(data) else t.tensors).append(index)
    return t


def _int_value(rng: random.Random, current: Any) -> Any:
    roll = rng.random()
    if roll < 0.45:
        return rng.choice(SMALL_INTS)
    if roll < 0.85:
        return rng.choice(EDGE_INTS)
    if roll < 0.9 and isinstance(current, int):
        return current + rng.choice((-1, 1))
    return rng.choice(("SAME", "VALID", "", 1.5, True, [1, 2], {"a": 1}, None))


def random_mutation(model: schema.ModelT, targets: Targets, rng: random.Random) -> dict:
    """One mutation of an op the delegate may take, or of a tensor such an op touches; most
    often an Lce op's options or a shape, where the delegate's arithmetic is."""
    graph = model.subgraphs[0]
    kinds = ["custom_options"] * 6 + ["shape"] * 4 + ["builtin_options"] * 2
    kinds += ["raw_options", "rename", "type", "quantization", "input", "buffer"]
    kind = rng.choice(kinds)
    if kind in ("custom_options", "raw_options", "rename") and targets.lce_ops:
        i = rng.choice(targets.lce_ops)
        if kind == "custom_options":
            name = op_name(model, graph.operators[i])
            keys = BMAXPOOL_KEYS if name == "LceBMaxPool2d" else BCONV_KEYS
            current = _options_dict(graph.operators[i])
            key = rng.choice(keys + tuple(current) + ("filter_height", "bogus"))
            if rng.random() < 0.1:
                return {"kind": kind, "op": i, "drop": [key]}
            return {"kind": kind, "op": i, "set": {key: _int_value(rng, current.get(key))}}
        if kind == "raw_options":
            options = graph.operators[i].customOptions
            raw = bytearray(np.asarray(options if options is not None else [], np.uint8))
            for _ in range(rng.randint(1, 4)):
                roll = rng.random()
                if raw and roll < 0.6:
                    raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
                elif raw and roll < 0.8:
                    del raw[rng.randrange(len(raw)) :]
                else:
                    raw += bytes([rng.randrange(256)])
            return {"kind": kind, "op": i, "hex": bytes(raw).hex()}
        name = rng.choice(LCE_OPS + ("LceBconvFancy",))
        inputs = [int(v) for v in graph.operators[i].inputs]
        mutation: dict = {"kind": kind, "op": i, "name": name}
        if name in ("LceQuantize", "LceDequantize", "LceBMaxPool2d") and len(inputs) > 1:
            mutation["inputs"] = inputs[:1]
        return mutation
    if kind == "builtin_options" and targets.builtin_ops:
        i = rng.choice(targets.builtin_ops)
        fields = BUILTIN_FIELDS[op_name(model, graph.operators[i])]
        key = rng.choice(fields)
        if key in ("alignCorners", "halfPixelCenters"):
            value: Any = rng.random() < 0.5
        elif key in ("padding", "fusedActivationFunction"):  # int8 in the schema
            value = rng.choice((0, 1, 2, 3, 4, 5, 6, -1, 127, -128))
        else:
            value = rng.choice(SMALL_INTS + tuple(v for v in EDGE_INTS if -(2**31) <= v < 2**31))
        return {"kind": kind, "op": i, "set": {key: value}}
    if kind == "type" and targets.tensors:
        return {
            "kind": kind,
            "tensor": rng.choice(targets.tensors),
            "type": rng.choice(TENSOR_TYPES),
        }
    if kind == "quantization" and targets.tensors:
        return {
            "kind": kind,
            "tensor": rng.choice(targets.tensors),
            "scale": rng.choice(
                (0.0, -1.0, 1e-30, 1e-8, 0.01, 0.37, 1.0, 1e30, float("inf"), float("nan"))
            ),
            "zero_point": rng.choice((0, 5, -3, 127, -128, 128, -129, 2**31 - 1, -(2**31))),
        }
    if kind == "input" and targets.ops:
        i = rng.choice(targets.ops)
        slots = len(graph.operators[i].inputs)
        pool = targets.tensors + targets.constants
        # Not for builtin ops: the runtime's XNNPACK delegate crashes on a missing input.
        if i in targets.lce_ops:
            pool = pool + [-1]
        return {
            "kind": kind,
            "op": i,
            "slot": rng.randrange(max(slots, 1)),
            "tensor": rng.choice(pool),
        }
    if kind == "buffer" and targets.constants:
        t = rng.choice(targets.constants)
        tensor = graph.tensors[t]
        if (
            tensor.type == schema.TensorType.INT32
            and len(tensor.shape) == 1
            and tensor.shape[0] == 2
        ):
            values = [rng.choice((0, 1, 2, 3, 7, 8, 16, 33, 1000, -1)) for _ in range(2)]
            return {"kind": kind, "tensor": t, "dtype": "int32", "values": values}
        if tensor.type == schema.TensorType.FLOAT32:
            fill = rng.choice((0.0, -1.0, 1e38, -1e38, float("inf"), float("nan")))
            return {"kind": kind, "tensor": t, "dtype": "float32", "fill": fill}
        return {
            "kind": kind,
            "tensor": t,
            "dtype": "int32",
            "fill": rng.choice((0, -1, 2**31 - 1, -(2**31))),
        }
    # A tensor shape: one dimension, or the rank, of a tensor an op of ours touches.
    pool = targets.tensors or list(range(len(graph.tensors)))
    t = rng.choice(pool)
    shape = [int(v) for v in graph.tensors[t].shape]
    if t in targets.graph_inputs:
        if len(shape) == 4:
            side = rng.choice((1, 2, 3, 5, 8, 13, 16, 31, 33, 48))
            shape = [1, side, rng.choice((side, 1, 7, 40)), shape[3]]
        return {"kind": "shape", "tensor": t, "shape": shape}
    roll = rng.random()
    if roll < 0.7 and shape:
        d = rng.randrange(len(shape))
        shape[d] = rng.choice(EDGE_DIMS + (shape[d] + 1, shape[d] - 1, shape[d] * 2))
    elif roll < 0.85 and shape:
        shape = shape[:-1] if rng.random() < 0.5 else shape + [rng.choice((1, 2))]
    else:
        shape = [rng.choice((1, 2, 3, 8, 32, 0)) for _ in range(rng.randint(0, 9))]
    return {"kind": "shape", "tensor": t, "shape": [v for v in shape if -(2**31) <= v < 2**31]}


def random_case(rng: random.Random, bases: dict[str, tuple[schema.ModelT, Targets]]) -> dict:
    names = list(bases)
    base = rng.choices(names, weights=[BASES.get(n, 1) for n in names])[0]
    model, targets = bases[base]
    model = copy.deepcopy(model)
    mutations = []
    for _ in range(rng.choice((1, 1, 2, 2, 3, 5))):
        m = symbolic(model, random_mutation(model, targets, rng))
        try:
            apply_mutation(model, m)
        except (ValueError, TypeError, OverflowError, IndexError):
            continue  # one the model cannot hold (say, a value flexbuffers cannot encode)
        mutations.append(m)
    # Mostly make the shapes follow: the kernels then run on the mutated geometry.
    if rng.random() < 0.6:
        mutations.append({"kind": "fit_shapes"})
    options = {}
    if rng.random() < 0.5:
        options["conv"] = rng.choice(("direct", "im2col", "auto"))
    if rng.random() < 0.3:
        options["fuse"] = rng.choice(("0", "1"))
    return {
        "base": base,
        "mutations": mutations,
        "options": options,
        "num_threads": rng.choice((1, 2, 2, 3)),
        # the garbage collector's order, now and then: the delegate finalized first
        "delegate_first": bool(rng.random() < 0.25),
    }


# ---------------------------------------------------------------------- worker


def worker(runtime: str, library: str) -> int:
    """Runs the cases named on stdin (one JSON line each: model path, delegate options,
    threads, and whether the delegate is finalized before the interpreter) and answers one
    JSON line each: ok, or error with the runtime's message."""
    import ctypes

    if runtime == "tflite_runtime":
        from tflite_runtime.interpreter import Interpreter, load_delegate
    else:
        from ai_edge_litert.interpreter import Interpreter, load_delegate
    lib = ctypes.CDLL(library)
    headroom = int(os.environ.get("BINLAND_FUZZ_MEMORY_MB", "0"))
    if headroom:
        # Without sanitizers (which reserve terabytes of address space for themselves), a
        # giant allocation must fail here rather than slowly take the machine's memory: the
        # address space the process has now, plus the headroom.
        import resource

        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = mapped + (headroom << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    lib.binland_simd_available.restype = ctypes.c_char_p
    simd = lib.binland_simd_available().decode().split(",")
    print(json.dumps({"ready": True, "simd": simd}), flush=True)
    rng = np.random.default_rng(0)
    for line in sys.stdin:
        request = json.loads(line)
        reply: dict = {"status": "ok"}
        delegate = None
        try:
            if not request.get("no_delegate"):
                delegate = load_delegate(library, request.get("options", {}))
            interpreter = Interpreter(
                model_path=request["model"],
                experimental_delegates=[delegate] if delegate else None,
                num_threads=request.get("num_threads", 2),
            )
            interpreter.allocate_tensors()
            for detail in interpreter.get_input_details():
                shape = tuple(int(v) for v in detail["shape"])
                if int(np.prod(shape)) > 1 << 24:
                    raise ValueError("input too large for the fuzzer to fill")
                data = rng.standard_normal(shape) * 3
                interpreter.set_tensor(detail["index"], data.astype(detail["dtype"]))
            for _ in range(2):  # the second invoke runs on the prepared buffers and weights
                interpreter.invoke()
            for detail in interpreter.get_output_details():
                interpreter.get_tensor(detail["index"])
        except (ValueError, RuntimeError) as exc:  # a clean refusal
            reply = {"status": "error", "message": " ".join(str(exc).split())[:400]}
        finally:
            if request.get("delegate_first") and delegate is not None:
                # Python's garbage collector finalizes the objects of a reference cycle in
                # any order: the runtime's Delegate may go before the Interpreter that frees
                # the nodes it ran (a use-after-free in edge/native until the state was
                # reference-counted).
                delegate.__del__()
            interpreter = delegate = None
            gc.collect()
        print(json.dumps(reply), flush=True)
    return 0


class Worker:
    """One worker process; ``run`` sends a case and waits for its answer."""

    def __init__(self, runtime: str, library: Path, env: dict[str, str], log: Path) -> None:
        self.runtime = runtime
        self.log = log
        self._stderr = open(log, "wb")  # noqa: SIM115  (closed in close())
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "worker", runtime, str(library)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            text=True,
            bufsize=1,
        )
        hello = self._read(60.0)
        if not isinstance(hello, dict) or not hello.get("ready"):
            raise RuntimeError(f"{runtime} worker did not start:\n{self.report()}")
        self.simd: list[str] = hello["simd"]

    def _read(self, timeout: float) -> dict | str:
        """The next answer, "timeout", or "eof" (the worker died)."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return "timeout"
        line = self.proc.stdout.readline()
        return json.loads(line) if line else "eof"

    def run(self, request: dict, timeout: float) -> dict:
        """{"status": "ok" | "error" | "crash" | "hang", ...}."""
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        reply = self._read(timeout)
        if isinstance(reply, dict):
            return reply
        if reply == "eof":
            try:  # a sanitizer may still be writing its report
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            return {"status": "hang", "message": f"no answer within {timeout:.0f} s"}
        return {
            "status": "crash",
            "message": f"exit {self.proc.returncode}\n{self.report()}",
            "report": self.report(lines=10_000),
        }

    def report(self, lines: int = 40) -> str:
        """The worker's stderr without the runtime's INFO lines: the sanitizer's summary line
        (or the Python traceback's last line), then the report from its start."""
        self._stderr.flush()
        text = self.log.read_text(errors="replace").splitlines()
        keep = [t for t in text if not t.startswith("INFO:")]
        summary = [t for t in keep if t.startswith("SUMMARY:") or "runtime error:" in t]
        return "\n".join(summary[:2] + keep[:lines])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


def installed_runtimes() -> list[str]:
    import importlib.util

    return [r for r in RUNTIMES if importlib.util.find_spec(r) is not None]


def build_library(out_dir: Path, *, sanitize: bool) -> Path:
    """The delegate built from this checkout's sources, optionally with the sanitizers."""
    import edge.native as native

    if not sanitize:
        return native.build(out_dir)
    cc = native.compiler() or "gcc"
    target = out_dir / "libbinland_lce_sanitized.so"
    flags = [f for f in native.CFLAGS if not f.startswith("-O")] + list(SANITIZE_FLAGS)
    sources = [str(native.PACKAGE_DIR / name) for name in native.SOURCES]
    result = subprocess.run(
        [cc, *flags, "-o", str(target), *sources, *native.LIBS], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"building the sanitized delegate failed:\n{result.stderr[-3000:]}")
    return target


def worker_env(sanitize: bool, cc: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("BINLAND_SIMD", None)
    env.pop("BINLAND_CONV", None)
    env.pop("BINLAND_FUSE", None)
    if sanitize:
        cc = cc or shutil.which("gcc") or "gcc"

        def runtime_library(name: str) -> str:
            found = subprocess.run(
                [cc, f"-print-file-name={name}"], capture_output=True, text=True, check=True
            ).stdout.strip()
            if not os.path.isabs(found):
                raise SystemExit(f"{cc} has no {name} (Debian: apt install gcc)")
            return os.path.realpath(found)

        # libasan first (the Python host is not built with it); libstdc++ with it, so that
        # ASan's interceptor of C++ exceptions finds the real one: without it the runtimes'
        # first exception (every clean error) aborts the process.
        env["LD_PRELOAD"] = " ".join(map(runtime_library, ("libasan.so", "libstdc++.so.6")))
        env["ASAN_OPTIONS"] = ASAN_OPTIONS
        env["UBSAN_OPTIONS"] = UBSAN_OPTIONS
    else:
        # Twice the delegate's budget (LCE_MEMORY_BUDGET) on top of what the worker maps.
        env["BINLAND_FUZZ_MEMORY_MB"] = "1024"
    return env


def dump_case(case: dict) -> str:
    """A case as the corpus keeps it: JSON with one mutation per line."""
    lines = []
    for key, value in case.items():
        if key == "mutations":
            inner = ",\n".join(f"  {json.dumps(m)}" for m in value)
            lines.append(f' "mutations": [\n{inner}\n ]' if value else ' "mutations": []')
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def case_id(case: dict) -> str:
    keys = ("base", "mutations", "options") + (
        ("delegate_first",) if case.get("delegate_first") else ()
    )
    text = json.dumps({k: case[k] for k in keys}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ------------------------------------------------------------------ commands


def _failure(result: dict) -> bool:
    return result["status"] in ("crash", "hang")


def runtime_only(result: dict, library: Path) -> bool:
    """Whether a sanitizer report shows no frame of the delegate: the stock runtime's own code
    failed on the malformed model by itself (say, XNNPACK planning gigabytes for a builtin op
    whose shape the mutation changed). Our library is instrumented, so a bad access of ours is
    reported where it happens, with our frames; a crash in the runtime that our call caused
    (its partitioner, called from our Prepare) has our frames below it. A report with no
    stack (a plain signal, a hang) is never the runtime's by this test."""
    report = result.get("report", "")
    if "SUMMARY:" not in report or "#0 " not in report:
        return False
    import edge.native as native

    ours = [library.name] + [f"{name}:" for name in native.SOURCES]
    return not any(mark in report for mark in ours)


def run_cases(
    cases: list[dict],
    library: Path,
    env: dict[str, str],
    work: Path,
    *,
    runtimes: list[str],
    timeout: float,
) -> list[tuple[dict, str, dict]]:
    """Runs every case in every runtime; (case, runtime, result) for each."""
    out = []
    for runtime in runtimes:
        w = Worker(runtime, library, env, work / f"{runtime}.log")
        try:
            for i, case in enumerate(cases):
                model = work / f"case-{i}.tflite"
                model.write_bytes(build_case(case))
                request = {
                    "model": str(model),
                    "options": case.get("options", {}),
                    "num_threads": case.get("num_threads", 2),
                    "delegate_first": case.get("delegate_first", False),
                }
                result = w.run(request, timeout)
                out.append((case, runtime, result))
                if _failure(result):
                    w.close()
                    w = Worker(runtime, library, env, work / f"{runtime}-{i}.log")
        finally:
            w.close()
    return out


def as_expected(case: dict, result: dict) -> bool:
    """A case may say what must happen: "expect" (a clean error whose message holds this
    text) or "expect_status" ("ok": the model runs). Without either, any clean end will do."""
    if "expect_status" in case and result["status"] != case["expect_status"]:
        return False
    expect = case.get("expect")
    return expect is None or (result["status"] == "error" and expect in result.get("message", ""))


def load_corpus(paths: list[Path] | None = None) -> list[dict]:
    files = paths or sorted(CORPUS.glob("*.json"))
    cases = []
    for path in files:
        case = json.loads(path.read_text())
        case["file"] = str(path)
        cases.append(case)
    return cases


def cmd_replay(args) -> int:
    with tempfile.TemporaryDirectory(prefix="binland-fuzz-") as tmp:
        work = Path(tmp)
        library = (
            Path(args.library) if args.library else build_library(work, sanitize=args.sanitize)
        )
        env = worker_env(args.sanitize)
        cases = load_corpus([Path(p) for p in args.cases] or None)
        results = run_cases(
            cases, library, env, work, runtimes=installed_runtimes(), timeout=args.case_timeout
        )
        failed = 0
        for case, runtime, result in results:
            if args.sanitize and _failure(result) and runtime_only(result, library):
                result["status"] = "runtime"  # the stock runtime's own code, not ours
            bad = _failure(result) or not as_expected(case, result)
            failed += bad
            status = "FAIL" if bad else result["status"]
            print(
                f"{status:5} {runtime:14} {Path(case['file']).name}: "
                f"{result.get('message', '')[:200]}"
            )
        print(f"replay: {len(results)} runs of {len(cases)} cases, {failed} failed")
        return 1 if failed else 0


def cmd_fuzz(args) -> int:
    rng = random.Random(args.seed)
    save = Path(args.save)  # created at the first failure
    bases = {}
    for base in BASES:
        model = load_model((REPO / base).read_bytes())
        bases[base] = (model, find_targets(model))
    runtimes = installed_runtimes()
    with tempfile.TemporaryDirectory(prefix="binland-fuzz-") as tmp:
        work = Path(tmp)
        library = (
            Path(args.library) if args.library else build_library(work, sanitize=args.sanitize)
        )
        env = worker_env(args.sanitize)
        started = time.monotonic()
        workers = {r: Worker(r, library, env, work / f"{r}.log") for r in runtimes}
        counts = {"ok": 0, "error": 0, "crash": 0, "hang": 0, "runtime": 0}
        n = 0
        try:
            while time.monotonic() - started < args.seconds and (
                args.cases is None or n < args.cases
            ):
                case = random_case(rng, bases)
                runtime = runtimes[n % len(runtimes)]
                w = workers[runtime]
                if rng.random() < 0.3:
                    case["options"]["simd"] = rng.choice(w.simd)
                model = work / "mutant.tflite"
                try:
                    model.write_bytes(build_case(case))
                except Exception as exc:  # a mutation the flatbuffer cannot hold
                    print(f"skipped (cannot pack: {type(exc).__name__}: {exc})", flush=True)
                    continue
                n += 1
                request = {
                    "model": str(model),
                    "options": case["options"],
                    "num_threads": case["num_threads"],
                    "delegate_first": case.get("delegate_first", False),
                }
                result = w.run(request, args.case_timeout)
                if _failure(result):
                    w.close()
                    w = workers[runtime] = Worker(
                        runtime, library, env, work / f"{runtime}-{n}.log"
                    )
                    if runtime_only(result, library):
                        result["status"] = "runtime"
                    else:
                        # A model that also kills the stock runtime without our library is
                        # the runtime's failure too.
                        alone = w.run({**request, "no_delegate": True}, args.case_timeout)
                        if _failure(alone):
                            result["status"] = "runtime"
                            w.close()
                            w = workers[runtime] = Worker(
                                runtime, library, env, work / f"{runtime}-{n}-alone.log"
                            )
                counts[result["status"]] += 1
                if result["status"] == "runtime":  # listed, not kept: not the delegate's
                    summary = next(
                        (t for t in result["message"].splitlines() if t.startswith("SUMMARY:")),
                        result["message"].splitlines()[0],
                    )
                    print(f"runtime's own failure ({runtime}), not counted: {summary}")
                    print(f"  case: {json.dumps(case)}", flush=True)
                elif _failure(result):
                    case["found"] = f"{result['status']} in {runtime}: {result['message'][:2000]}"
                    path = save / f"{result['status']}-{case_id(case)}.json"
                    save.mkdir(parents=True, exist_ok=True)
                    path.write_text(dump_case(case))
                    print(f"FAILURE {path}:\n{result['message'][:3000]}", flush=True)
        finally:
            for w in workers.values():
                w.close()
        seconds = time.monotonic() - started
        print(
            f"fuzz: {n} cases in {seconds:.0f} s ({', '.join(runtimes)}; sanitizers "
            f"{'on' if args.sanitize else 'off'}): {counts['ok']} ran, {counts['error']} "
            f"refused cleanly, {counts['crash']} crashed, {counts['hang']} hung; {counts['runtime']} "
            "also failed in the runtime without the delegate (not counted)"
        )
        return 1 if counts["crash"] or counts["hang"] else 0


def make_seed() -> bytes:
    """The seed model: every LCE op and option kind the bundled models lack (bitpacked
    output and thresholds, LceBMaxPool2d, LceDequantize, VALID padding, zero padding,
    strides, dilations, groups, fused activations), at a few pixels a side."""
    # isort: off
    import converters  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

    # isort: on
    import larq as lq
    import larq_compute_engine as lce
    import tensorflow as tf

    binary = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False)

    def bconv(filters, kernel, **kwargs):
        kwargs.setdefault("padding", "same")
        kwargs.setdefault("pad_values", 1.0)
        return lq.layers.QuantConv2D(filters, kernel, **binary, **kwargs)

    bn = tf.keras.layers.BatchNormalization
    a = tf.keras.Input((8, 8, 40))
    b = tf.keras.Input((7, 7, 64))
    x = bn()(bconv(33, 3)(tf.keras.layers.MaxPool2D(2)(bn()(bconv(64, 3)(a)))))
    y = bn()(bconv(24, 3, pad_values=0.0, dilation_rate=2)(a))
    z = lq.quantizers.SteSign()(bn()(bconv(40, 3, strides=2, padding="valid")(a)))
    g = tf.keras.layers.ReLU()(bconv(64, 3, groups=2)(b))
    p = bn()(bconv(16, 1)(tf.keras.layers.MaxPool2D(3, 2, padding="same")(bn()(bconv(32, 3)(b)))))
    model = tf.keras.Model([a, b], [x, y, z, g, p])
    rng = np.random.default_rng(25)
    for layer in model.layers:
        weights = layer.get_weights()
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            n = weights[0].shape[0]
            gamma = rng.uniform(0.5, 2.0, n) * rng.choice([-1.0, 1.0], n)
            layer.set_weights(
                [gamma, rng.normal(size=n), rng.normal(size=n), rng.uniform(0.5, 2, n)]
            )
        elif weights:
            layer.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in weights])
    return lce.convert_keras_model(model)


def main(argv: list[str]) -> int:
    if argv[:1] == ["worker"]:
        return worker(argv[1], argv[2])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("fuzz", "replay"):
        p = sub.add_parser(name)
        p.add_argument(
            "--sanitize",
            action="store_true",
            help="build with -fsanitize=address,undefined and preload libasan",
        )
        p.add_argument("--library", help="a delegate library to use instead of building one")
        p.add_argument(
            "--case-timeout",
            type=float,
            default=30.0,
            help="seconds a case may take before it counts as a hang",
        )
    fuzz = sub.choices["fuzz"]
    fuzz.add_argument("--seconds", type=float, default=120.0)
    fuzz.add_argument("--seed", type=int, default=None)
    fuzz.add_argument("--cases", type=int, default=None, help="stop after this many cases")
    fuzz.add_argument(
        "--save",
        default=str(CORPUS / "new"),
        help="where failing cases are written (copy them into tests/fuzz_corpus/)",
    )
    sub.choices["replay"].add_argument("cases", nargs="*", help="case files (default: corpus)")
    sub.add_parser("make-seed")
    args = parser.parse_args(argv)
    if args.command == "make-seed":
        SEED_MODEL.parent.mkdir(parents=True, exist_ok=True)
        SEED_MODEL.write_bytes(make_seed())
        print(f"wrote {SEED_MODEL} ({SEED_MODEL.stat().st_size} bytes)")
        return 0
    if args.command == "fuzz" and args.seed is None:
        args.seed = int(time.time())
        print(f"fuzz: seed {args.seed}")
    return cmd_fuzz(args) if args.command == "fuzz" else cmd_replay(args)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main(sys.argv[1:]))
