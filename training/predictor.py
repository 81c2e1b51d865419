"""The one call that differs between a Keras model and its .tflite: a batch in, maps out.

Evaluation and per-epoch validation cut, normalise and decode crops themselves (the device's
own functions); only turning a normalised batch into the final stack's output depends on
the format. A .tflite is opened as the device opens it (:func:`edge.tasks.open_model`: the
digest, task and shape checks), a .keras through :func:`training.artifacts.open_trained`.
"""

from __future__ import annotations

import abc
from pathlib import Path

import numpy as np

from edge.backends.base import DEFAULT_THREADS
from edge.errors import ModelError
from edge.metadata import LandmarkMetadata
from edge.network import Network

from .artifacts import KERAS_SUFFIXES, open_trained


class Predictor(abc.ABC):
    """Turns a batch of normalised crops (N, S, S, 3) into final-stack maps (N, h, w, K):
    a landmark model's heatmaps, a segmentation model's class logits."""

    metadata: LandmarkMetadata
    description: str = ""

    @abc.abstractmethod
    def heatmaps(self, batch: np.ndarray) -> np.ndarray:
        """Final-stack maps for a batch of crops."""


class KerasPredictor(Predictor):
    def __init__(self, model, metadata: LandmarkMetadata) -> None:
        self.model = model
        self.metadata = metadata
        self.description = "keras"

    def heatmaps(self, batch: np.ndarray) -> np.ndarray:
        out = self.model(batch, training=False)
        if isinstance(out, (list, tuple)):
            out = out[-1]  # the last stack is the prediction; earlier ones are for training
        return np.asarray(out, np.float32)


class BackendPredictor(Predictor):
    """A converted .tflite, loaded and checked as on the device, run by one of edge.backends."""

    def __init__(self, network: Network) -> None:
        self.network = network
        self.metadata = network.metadata
        self.description = network.backend_description

    def heatmaps(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.network.run_input(batch), np.float32)


def load_predictor(
    path: str | Path, *, backend: str = "auto", num_threads: int = DEFAULT_THREADS
) -> Predictor:
    """A predictor for a .keras model (with its sidecar metadata), a SavedModel folder or a
    .tflite file; any problem is a one-line :class:`ModelError`."""
    from edge.tasks import open_model

    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if path.suffix == ".tflite":
        return BackendPredictor(open_model(path, backend=backend, num_threads=num_threads))
    if path.is_dir() or path.suffix in KERAS_SUFFIXES:
        return KerasPredictor(*open_trained(path))
    raise ModelError(f"unsupported model file {path.name}: expected .keras, .h5 or .tflite")
