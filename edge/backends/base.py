"""What every inference backend offers: one image batch in, the final heatmaps out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from ..errors import BackendError
from ..metadata import custom_op_names

# Interpreter threads: a Pi has 4 cores, and the camera, encoder and stream need some. The
# runtime's default, so every model, the deployed service and every CLI's --threads agree.
DEFAULT_THREADS = 2


def is_bitpacked(model: bytes) -> bool:
    """True if the flatbuffer uses LCE's bitpacked custom ops (LceQuantize, LceBconv2d...)."""
    return any(name.startswith("Lce") for name in custom_op_names(model))


class Backend(ABC):
    """An interpreter for one .tflite flatbuffer.

    Subclasses load a runtime lazily in ``__init__`` and implement :meth:`_invoke` for a
    batch of one; :meth:`run` handles batching and shape checks. ``name`` is the registry key
    (``"lce"``, ``"tflite"``); ``description`` says which runtime and options are in use.
    """

    name: ClassVar[str]

    def __init__(self, model: bytes, *, num_threads: int = 2) -> None:
        if num_threads < 1:
            raise BackendError(f"num_threads must be at least 1, got {num_threads}")
        self.model = bytes(model)
        self.num_threads = int(num_threads)
        self.description = self.name

    @classmethod
    @abstractmethod
    def is_available(cls) -> bool:
        """Whether the runtime this backend needs is installed (cheap; imports nothing big)."""

    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """(1, H, W, C) as stored in the model."""

    @property
    @abstractmethod
    def input_dtype(self) -> np.dtype: ...

    @property
    @abstractmethod
    def output_shape(self) -> tuple[int, ...]:
        """(1, h, w, K) of the final heatmaps."""

    @abstractmethod
    def _invoke(self, x: np.ndarray) -> np.ndarray:
        """Run one input of shape ``input_shape``; return the final output."""

    @property
    def output_shapes(self) -> list[tuple[int, ...]]:
        """Every output's shape, in the model's order (a detector has several)."""
        return [self.output_shape]

    def _invoke_all(self, x: np.ndarray) -> list[np.ndarray]:
        """Run one input; return every output in the model's order."""
        return [self._invoke(x)]

    def _batch(self, x: np.ndarray) -> tuple[np.ndarray, bool]:
        x = np.asarray(x)
        single = x.ndim == len(self.input_shape) - 1
        batch = x[None] if single else x
        if batch.shape[1:] != tuple(self.input_shape[1:]):
            raise BackendError(
                f"input shape {x.shape} does not fit the model's input {tuple(self.input_shape)}"
            )
        return batch.astype(self.input_dtype, copy=False), single

    def run(self, x: np.ndarray) -> np.ndarray:
        """Final heatmaps (N, h, w, K) for inputs (N, H, W, C) or one input (H, W, C)."""
        batch, single = self._batch(x)
        out = np.stack([self._invoke(np.ascontiguousarray(item[None]))[0] for item in batch])
        return out[0] if single else out

    def run_all(self, x: np.ndarray) -> list[np.ndarray]:
        """Every output, batch dimension dropped, for one input (H, W, C) or (1, H, W, C):
        what a multi-output model such as a face detector needs."""
        batch, _ = self._batch(x)
        if len(batch) != 1:
            raise BackendError(f"run_all takes one input, got a batch of {len(batch)}")
        return [np.asarray(o)[0] for o in self._invoke_all(np.ascontiguousarray(batch))]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}, {self.num_threads} threads>"
