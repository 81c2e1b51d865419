"""What every converted model of this project shares on the device, whatever its task.

:class:`Network` loads a .tflite written by ``python -m converters.convert``: its bytes and
metadata record, the integrity check against the digest the converter recorded, the task
check, the backend, the shape check against the metadata, the
input contract (:func:`edge.transform.normalise_input`) and the raw network call.
:class:`edge.model.LandmarkModel` and :class:`edge.segmentation.SegmentationModel` subclass
it and add only what differs: the output channels and task they accept, and ``predict``.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .backends import create_backend
from .backends.base import DEFAULT_THREADS
from .errors import ModelError
from .metadata import LandmarkMetadata, model_bytes, read_metadata, verify_digest
from .transform import CropBox, normalise_input

if TYPE_CHECKING:
    from .multitrack import MultiTracker
    from .smoothing import OneEuroFilter
    from .sources import Frame
    from .timing import StageTimes
    from .tracking import LandmarkTracker


class VideoPipeline(Protocol):
    """What ``edge.live`` runs per frame, whatever the task: each pipeline draws its own
    overlay and writes its own JSONL record, so the loop never asks which task it runs."""

    def process(self, frame: Frame, times: StageTimes | None = None, *, continuous: bool = True):
        """One frame through the chain; the result is the task's own."""

    def annotate(self, result, *, fps: float | None = None, show_box: bool = False) -> np.ndarray:
        """A copy of the frame with the result drawn over it."""

    def record(self, result, latency_ms: dict[str, float]) -> dict:
        """The frame's JSONL record."""


class Network(abc.ABC):
    """A converted model, loaded and checked (see the module docstring).

    ``backend`` is ``"auto"``, ``"lce"`` or ``"tflite"`` (see :mod:`edge.backends`);
    ``backend_options`` go to the backend (e.g. ``runtime="ai_edge_litert"`` for tflite).
    Subclasses say which task they accept (:meth:`_check_task`), how many channels the
    network returns (:attr:`output_channels`) and which pipeline ``predict`` runs.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        backend: str = "auto",
        num_threads: int = DEFAULT_THREADS,
        **backend_options,
    ) -> None:
        self.path = Path(path)
        data = model_bytes(self.path)
        try:
            self.metadata: LandmarkMetadata = read_metadata(data)
            # Corrupt weights would run and give wrong landmarks without a word; a model from
            # before digests (None) loads unchecked, and edge.doctor says so.
            self.digest: str | None = verify_digest(data)
        except ModelError as exc:
            raise ModelError(f"{self.path}: {exc}") from None
        self._check_task()
        self._backend = create_backend(backend, data, num_threads=num_threads, **backend_options)
        self._check_shapes()
        self._pipeline = None

    @abc.abstractmethod
    def _check_task(self) -> None:
        """Raise a one-line :class:`ModelError` when the metadata's task is not this class's."""

    @property
    @abc.abstractmethod
    def output_channels(self) -> int:
        """Channels of the network's output: landmarks, or classes."""

    @abc.abstractmethod
    def _new_pipeline(self):
        """The per-frame chain ``predict`` runs, without tracking."""

    def _check_shapes(self) -> None:
        meta = self.metadata
        w, h = meta.input_size
        hw, hh = meta.heatmap_size
        expected_in = (h, w, 3)
        expected_out = (hh, hw, self.output_channels)
        if tuple(self._backend.input_shape[1:]) != expected_in:
            raise ModelError(
                f"{self.path}: the network takes {self._backend.input_shape[1:]} but its "
                f"metadata says {expected_in}"
            )
        if tuple(self._backend.output_shape[1:]) != expected_out:
            raise ModelError(
                f"{self.path}: the network returns {self._backend.output_shape[1:]} but its "
                f"metadata says {expected_out}"
            )

    @property
    def backend_name(self) -> str:
        """Registry name of the backend in use ("lce" or "tflite")."""
        return self._backend.name

    @property
    def backend_description(self) -> str:
        """Which runtime, version and delegates, e.g. "tflite (tflite_runtime 2.14.0)"."""
        return self._backend.description

    @property
    def num_threads(self) -> int:
        return self._backend.num_threads

    def preprocess(self, crops_bgr: np.ndarray) -> np.ndarray:
        """BGR crops (..., H, W, 3), 0-255, to the network's normalised float32 input."""
        meta = self.metadata
        return normalise_input(crops_bgr, meta.input_color, meta.input_mean, meta.input_std)

    def predict_heatmaps(self, crop_batch: np.ndarray) -> np.ndarray:
        """The network's output (N, h, w, C) for BGR crops (N, H, W, 3) already at the input
        size: a landmark model's heatmaps, a segmentation model's class logits (one name, so
        edge.bench times both alike)."""
        crops = np.asarray(crop_batch)
        if crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"expected BGR crops (N, H, W, 3), got shape {crops.shape}")
        return self.run_input(self.preprocess(crops))

    def run_input(self, batch: np.ndarray) -> np.ndarray:
        """The network on a batch already in its input contract (:meth:`preprocess`'s
        output): training.evaluate normalises and batches its crops itself, and scores a
        .tflite through this, with the same load-time checks as the device."""
        return self._backend.run(batch)

    @property
    def output_description(self) -> str:
        """What the network returns, for a log line: "16 landmarks", "11 classes"."""
        return f"{self.output_channels} {self.output_kind}"

    output_kind: str = "outputs"  # the subclass names its channels

    @abc.abstractmethod
    def video_pipeline(
        self,
        tracker: LandmarkTracker | MultiTracker | None,
        *,
        smoother: OneEuroFilter | None = None,
        min_score: float = 0.3,
        rle: bool = False,
    ) -> VideoPipeline:
        """The per-frame chain for a video, with its tracker (a
        :class:`~edge.multitrack.MultiTracker`: several subjects, where the task has them).
        ``edge.live`` passes every model the same options, so each task takes the ones it has
        a use for: a smoother and a score threshold for points, run lengths (``rle``) for
        class maps."""

    def _process(self, image_bgr: np.ndarray, box: CropBox | None):
        """One image through :meth:`_new_pipeline`'s chain (created on first use)."""
        if self._pipeline is None:
            self._pipeline = self._new_pipeline()
        return self._pipeline.process(as_bgr(image_bgr), box=box)


def as_bgr(image: np.ndarray) -> np.ndarray:
    """An image as (H, W, 3): greyscale repeated, BGRA's alpha dropped."""
    image = np.asarray(image)
    if image.size == 0:
        raise ValueError(f"empty image of shape {image.shape}")
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=-1)
    if image.ndim == 3 and image.shape[-1] == 4:
        return np.ascontiguousarray(image[..., :3])
    if image.ndim == 3 and image.shape[-1] == 3:
        return image
    if image.ndim == 3 and image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    raise ValueError(f"expected an image (H, W), (H, W, 3) or (H, W, 4), got shape {image.shape}")
