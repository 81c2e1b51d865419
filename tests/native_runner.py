"""Runs LCE flatbuffers in one stock TFLite runtime with the native delegate, in its own process.

tests/test_native.py starts this as a script, once per runtime: tflite-runtime, ai-edge-litert
and TensorFlow each bundle their own copy of TFLite, so they stay in separate processes. A
delegate crash then fails one test run with a clear return code instead of killing pytest.

Usage: python tests/native_runner.py JOB.json RESULT.npz (a helper script, not a test module)
JOB.json: {"runtime": "tflite_runtime" | "ai_edge_litert", "library": PATH,
           "cases": [{"key": STR, "model": PATH, "inputs": NPZ, "options": {...},
                      "num_threads": INT, "repeat": INT}]}
RESULT.npz: "<key>/<i>" -> output i; "<key>/error" -> the exception text, if one was raised.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def run_case(runtime, library: str, case: dict) -> list[np.ndarray]:
    interpreter_cls, load_delegate = runtime
    delegate = load_delegate(library, case.get("options", {}))
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
        try:
            for i, out in enumerate(run_case((Interpreter, load_delegate), job["library"], case)):
                results[f"{case['key']}/{i}"] = out
        except Exception as exc:  # the tests assert on the message
            results[f"{case['key']}/error"] = np.array(f"{type(exc).__name__}: {exc}")
    np.savez(result_path, **results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
