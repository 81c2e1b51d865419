"""Runs LCE flatbuffers in one stock TFLite runtime with the native delegate, in its own process.

tests/test_native.py starts this as a script, once per runtime: tflite-runtime, ai-edge-litert
and TensorFlow each bundle their own copy of TFLite, so they stay in separate processes. A
delegate crash then fails one test run with a clear return code instead of killing pytest.

Usage: python tests/native_runner.py JOB.json RESULT.npz (a helper script, not a test module)
JOB.json: {"runtime": "tflite_runtime" | "ai_edge_litert", "library": PATH,
           "cases": [{"key": STR, "model": PATH, "inputs": NPZ, "options": {...},
                      "num_threads": INT, "repeat": INT}]}
RESULT.npz: "<key>/<i>" -> output i; "<key>/error" -> the exception text, if one was raised;
            "<key>/profile" -> the delegate's profile JSON when the case sets "profile": true
            (which kernel it selected, each op with its fused nodes and call counts).
"""

from __future__ import annotations

import ctypes
import json
import sys

import numpy as np


def delegate_profile(delegate) -> str:
    """binland_profile_json of the library instance the runtime loaded (no edge import: the
    emulated Pi runs this script without the package)."""
    lib = delegate._library
    lib.binland_profile_json.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.binland_profile_json.restype = ctypes.c_long
    pointer = ctypes.c_void_p(delegate._get_native_delegate_pointer())
    size = lib.binland_profile_json(pointer, None, 0)
    buf = ctypes.create_string_buffer(size + 1)
    lib.binland_profile_json(pointer, buf, size + 1)
    return buf.value.decode()


def run_case(runtime, library: str, case: dict, extras: dict) -> list[np.ndarray]:
    interpreter_cls, load_delegate = runtime
    options = dict(case.get("options", {}))
    if case.get("profile"):
        options["profile"] = "1"
    delegate = load_delegate(library, options)
    with open(case["model"], "rb") as f:
        content = f.read()
    interpreter = interpreter_cls(
        model_content=content,
        experimental_delegates=[delegate],
        num_threads=case.get("num_threads", 2),
    )
    interpreter.allocate_tensors()
    inputs = np.load(case["inputs"])
    for i, detail in enumerate(interpreter.get_input_details()):
        interpreter.set_tensor(detail["index"], inputs[f"arr_{i}"])
    outputs = None
    # Repeated invokes must give the same result (buffers, one-time weight packing).
    for _ in range(case.get("repeat", 1)):
        interpreter.invoke()
        current = [
            interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()
        ]
        if outputs is not None:
            for a, b in zip(outputs, current, strict=True):
                if not np.array_equal(a, b):
                    raise AssertionError("a repeated invoke changed the output")
        outputs = current
    if case.get("profile"):
        extras["profile"] = delegate_profile(delegate)
    return outputs


def main(argv: list[str]) -> int:
    job_path, result_path = argv
    with open(job_path) as f:
        job = json.load(f)
    if job["runtime"] == "tflite_runtime":
        from tflite_runtime.interpreter import Interpreter, load_delegate
    else:
        from ai_edge_litert.interpreter import Interpreter, load_delegate
    results: dict[str, np.ndarray] = {}
    for case in job["cases"]:
        extras: dict[str, str] = {}
        try:
            outputs = run_case((Interpreter, load_delegate), job["library"], case, extras)
            for i, out in enumerate(outputs):
                results[f"{case['key']}/{i}"] = out
            for name, text in extras.items():
                results[f"{case['key']}/{name}"] = np.array(text)
        except Exception as exc:  # the tests assert on the message
            results[f"{case['key']}/error"] = np.array(f"{type(exc).__name__}: {exc}")
    np.savez(result_path, **results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
