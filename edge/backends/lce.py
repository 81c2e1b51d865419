"""Larq Compute Engine's own interpreter: runs bitpacked (and float) flatbuffers.

The only place the edge package touches ``larq_compute_engine``. Its Python package imports
TensorFlow on import (for the converter), so the interpreter's extension module, which
depends on nothing but libc/libstdc++, is loaded straight from the installed package instead.
On x86 LCE has reference kernels only; its fast kernels are for 64-bit ARM.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

from ..errors import BackendError
from .base import Backend

_WRAPPER = "larq_compute_engine.tflite.python.interpreter_wrapper_lite"


def _wrapper_path() -> Path | None:
    spec = importlib.util.find_spec("larq_compute_engine")  # finds, does not import
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "tflite" / "python"
    matches = sorted(folder.glob("interpreter_wrapper_lite*.so"))
    return matches[0] if matches else None


def _load_wrapper() -> ModuleType:
    if _WRAPPER in sys.modules:
        return sys.modules[_WRAPPER]
    path = _wrapper_path()
    if path is None:
        raise BackendError(
            "the LCE interpreter is not installed: pip install larq-compute-engine (x86_64 only)"
        )
    loader = importlib.machinery.ExtensionFileLoader(_WRAPPER, str(path))
    spec = importlib.util.spec_from_file_location(_WRAPPER, str(path), loader=loader)
    module = importlib.util.module_from_spec(spec)
    try:
        loader.exec_module(module)
    except ImportError as exc:
        raise BackendError(f"cannot load the LCE interpreter from {path}: {exc}") from None
    sys.modules[_WRAPPER] = module
    return module


class LCEBackend(Backend):
    name = "lce"

    def __init__(self, model: bytes, *, num_threads: int = 2, use_xnnpack: bool = False) -> None:
        """``use_xnnpack`` hands LCE's float ops to XNNPACK. Off by default: on x86 it made the
        paper hourglass about 3x slower in LCE 0.16 (3.4 s against 1.1 s, 2 threads)."""
        super().__init__(model, num_threads=num_threads)
        wrapper = _load_wrapper()
        try:
            # Arguments: model, threads, use_reference_bconv, use_indirect_bgemm, use_xnnpack.
            self._interpreter = wrapper.LiteInterpreter(
                self.model, self.num_threads, False, False, bool(use_xnnpack)
            )
        except (RuntimeError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
            raise BackendError(f"the LCE interpreter cannot load this model: {reason}") from None
        if len(self._interpreter.input_shapes) != 1:
            raise BackendError("expected a model with one image input")
        self.description = "lce (LCE interpreter" + (", XNNPACK)" if use_xnnpack else ")")

    @classmethod
    def is_available(cls) -> bool:
        return _wrapper_path() is not None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self._interpreter.input_shapes[0])

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._interpreter.input_types[0])

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self._interpreter.output_shapes[-1])

    @property
    def output_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(int(v) for v in s) for s in self._interpreter.output_shapes]

    def _invoke_all(self, x: np.ndarray) -> list[np.ndarray]:
        try:
            outputs = self._interpreter.predict([x])
        except RuntimeError as exc:
            raise BackendError(f"the LCE interpreter failed: {exc}") from None
        return [np.asarray(o) for o in outputs]

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        return self._invoke_all(x)[-1]
