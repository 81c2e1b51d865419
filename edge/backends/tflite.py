"""A stock TFLite runtime: tflite-runtime, ai-edge-litert (LiteRT) or TensorFlow's own.

Float flatbuffers run as they are (with the runtime's default XNNPACK delegate). Bitpacked
(LCE) flatbuffers need the project's native delegate, which claims the ``Lce*`` custom ops;
without it the runtime stops at "unresolved custom op".
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from importlib import metadata as importlib_metadata
from pathlib import Path
from types import ModuleType

import numpy as np

from ..errors import BackendError
from .base import Backend, is_bitpacked

# Tried in this order; the first that imports is used. BINLAND_TFLITE_RUNTIME forces one.
# ai-edge-litert first: with 2 interpreter threads on a machine whose cores are busy,
# tflite-runtime 2.14 stalled for hundreds of ms per frame where ai-edge-litert did not
# (measured here on the paper model and the demo model, with and without our delegate).
RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")
_DISTRIBUTIONS = {
    "tflite_runtime": "tflite-runtime",
    "ai_edge_litert": "ai-edge-litert",
    "tensorflow": "tensorflow",
}
RUNTIME_ENV = "BINLAND_TFLITE_RUNTIME"

NATIVE_MISSING = (
    "this bitpacked (LCE) model needs the binland native library to run in a stock TFLite "
    "runtime, and there is no C compiler to build it: install one (Debian, Ubuntu, Raspberry "
    "Pi OS: sudo apt install gcc) and run again; or use the LCE interpreter (pip install "
    "larq-compute-engine, x86 only); or convert the model with "
    "`python -m converters.convert --format float` for any runtime"
)


def native_library() -> Path | None:
    """The built native delegate that runs LCE ops in stock runtimes, if there is one."""
    try:
        from .. import native  # built by another part of the project; may be absent
    except ImportError:
        return None
    try:
        path = native.library_path()
    except (AttributeError, OSError):
        return None
    return Path(path) if path is not None and Path(path).is_file() else None


def can_build_native() -> bool:
    """Whether a missing native library can be built here (the sources and a C compiler)."""
    try:
        from .. import native
    except ImportError:
        return False
    return native.compiler() is not None


def native_library_or_build() -> Path:
    """The native library, built into the user cache at first use (one line on stderr says
    so); BackendError with :data:`NATIVE_MISSING` when there is no compiler to build it."""
    found = native_library()
    if found is not None:
        return found
    if not can_build_native():
        raise BackendError(NATIVE_MISSING)
    from .. import native

    try:
        return native.ensure_library(announce=True)
    except BackendError as exc:  # the compiler failed: its last line says why
        lines = str(exc).strip().splitlines()
        raise BackendError(" ".join((lines[0], lines[-1]) if len(lines) > 1 else lines)) from None


def installed_runtimes() -> list[str]:
    return [name for name in RUNTIMES if importlib.util.find_spec(name) is not None]


def interpreter_api(runtime: str) -> tuple[type, object]:
    """(Interpreter class, load_delegate function) of a runtime module name."""
    if runtime == "tflite_runtime":
        module: ModuleType = importlib.import_module("tflite_runtime.interpreter")
        return module.Interpreter, module.load_delegate
    if runtime == "ai_edge_litert":
        module = importlib.import_module("ai_edge_litert.interpreter")
        return module.Interpreter, module.load_delegate
    if runtime == "tensorflow":
        tf = importlib.import_module("tensorflow")
        return tf.lite.Interpreter, tf.lite.experimental.load_delegate
    raise BackendError(f"unknown TFLite runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")


def choose_runtime(runtime: str | None = None) -> str:
    runtime = runtime or os.environ.get(RUNTIME_ENV) or None
    if runtime is not None:
        runtime = runtime.replace("-", "_")
        if runtime not in RUNTIMES:
            raise BackendError(
                f"unknown TFLite runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}"
            )
        if importlib.util.find_spec(runtime) is None:
            raise BackendError(f"TFLite runtime {runtime!r} is not installed")
        return runtime
    found = installed_runtimes()
    if not found:
        raise BackendError(
            "no TFLite runtime is installed: pip install tflite-runtime (or ai-edge-litert)"
        )
    return found[0]


class TFLiteBackend(Backend):
    name = "tflite"

    def __init__(
        self,
        model: bytes,
        *,
        num_threads: int = 2,
        runtime: str | None = None,
        delegate_options: dict[str, str] | None = None,
    ) -> None:
        """``runtime`` forces one of :data:`RUNTIMES`; ``delegate_options`` go to the native
        library's ``load_delegate`` (see ``edge.native.delegate_options``)."""
        super().__init__(model, num_threads=num_threads)
        self.runtime = choose_runtime(runtime)
        interpreter_cls, load_delegate = interpreter_api(self.runtime)
        delegates = []
        self.native = None
        if is_bitpacked(self.model):
            self.native = native_library_or_build()
            try:
                delegates.append(load_delegate(str(self.native), dict(delegate_options or {})))
            except (ValueError, OSError, RuntimeError) as exc:
                raise BackendError(
                    f"cannot load the native library {self.native} into {self.runtime}: {exc}"
                ) from None
        try:
            self._interpreter = interpreter_cls(
                model_content=self.model,
                num_threads=self.num_threads,
                experimental_delegates=delegates or None,
            )
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise BackendError(f"{self.runtime} cannot load this model: {reason}") from None
        inputs = self._interpreter.get_input_details()
        if len(inputs) != 1:
            raise BackendError(f"expected a model with one image input, it has {len(inputs)}")
        self._input = inputs[0]
        self._outputs = self._interpreter.get_output_details()
        self._output = self._outputs[-1]
        version = runtime_version(self.runtime)
        self.description = f"tflite ({self.runtime} {version}" + (
            " + binland native LCE delegate)" if self.native else ")"
        )

    @classmethod
    def is_available(cls) -> bool:
        return bool(installed_runtimes())

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self._input["shape"])

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self._output["shape"])

    @property
    def output_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(int(v) for v in o["shape"]) for o in self._outputs]

    def _run_interpreter(self, x: np.ndarray) -> None:
        self._interpreter.set_tensor(self._input["index"], x)
        try:
            self._interpreter.invoke()
        except RuntimeError as exc:
            raise BackendError(f"{self.runtime} failed while running the model: {exc}") from None

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        self._run_interpreter(x)
        return self._interpreter.get_tensor(self._output["index"])

    def _invoke_all(self, x: np.ndarray) -> list[np.ndarray]:
        self._run_interpreter(x)
        return [self._interpreter.get_tensor(o["index"]) for o in self._outputs]


def runtime_version(runtime: str) -> str:
    try:
        return importlib_metadata.version(_DISTRIBUTIONS[runtime])
    except importlib_metadata.PackageNotFoundError:
        return "?"
