"""Inference backends, chosen by name (like face detectors in face-alignment).

>>> from edge.backends import create_backend
>>> backend = create_backend("auto", open("pose.tflite", "rb").read(), num_threads=2)
>>> heatmaps = backend.run(batch)          # (N, H, W, 3) float32 -> (N, h, w, K)

``"lce"``: Larq Compute Engine's interpreter. ``"tflite"``: a stock runtime (tflite-runtime,
ai-edge-litert or TensorFlow), with the project's native delegate for bitpacked models.
``"auto"``: the fastest backend that can run the file.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import BackendError
from ..metadata import model_bytes
from .base import Backend, is_bitpacked
from .lce import LCEBackend
from .tflite import NATIVE_MISSING, TFLiteBackend, can_build_native, native_library

BACKENDS: dict[str, type[Backend]] = {}


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Add a Backend subclass to the registry under its ``name`` (usable as a decorator)."""
    BACKENDS[cls.name] = cls
    return cls


register_backend(LCEBackend)
register_backend(TFLiteBackend)


def backend_names() -> list[str]:
    return ["auto", *BACKENDS]


def auto_backend_name(model: bytes) -> str:
    """The backend ``"auto"`` picks for this flatbuffer, or BackendError if none can run it."""
    tflite_ok = TFLiteBackend.is_available()
    if is_bitpacked(model):
        # LCE's x86 kernels are reference code; a stock runtime with the native delegate
        # (and XNNPACK for the float layers) is faster wherever the library is built, or can
        # be: the backend builds it at first use.
        if tflite_ok and (native_library() is not None or can_build_native()):
            return "tflite"
        if LCEBackend.is_available():
            return "lce"
        raise BackendError(NATIVE_MISSING)
    if tflite_ok:
        return "tflite"
    if LCEBackend.is_available():
        return "lce"
    raise BackendError("no TFLite runtime is installed: pip install tflite-runtime")


def create_backend(
    name: str, model: bytes | str | Path, *, num_threads: int = 2, **options
) -> Backend:
    """A ready backend for a flatbuffer (bytes or path). ``options`` go to the backend class."""
    model = model_bytes(model)
    if name == "auto":
        name = auto_backend_name(model)
    try:
        cls = BACKENDS[name]
    except KeyError:
        raise BackendError(
            f"unknown backend {name!r}; choose one of {', '.join(backend_names())}"
        ) from None
    if not cls.is_available():
        raise BackendError(f"backend {name!r} is not installed")
    return cls(model, num_threads=num_threads, **options)


__all__ = [
    "BACKENDS",
    "Backend",
    "LCEBackend",
    "TFLiteBackend",
    "auto_backend_name",
    "backend_names",
    "create_backend",
    "is_bitpacked",
    "native_library",
    "register_backend",
]
