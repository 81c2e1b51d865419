"""Which model class runs a converted file: the task its metadata names.

>>> model = open_model("faceparts.tflite", backend="auto", num_threads=2)
>>> pipeline = model.video_pipeline(tracker)          # Landmark-, Segmentation- or FinderPipeline
>>> pipeline.record(pipeline.process(frame), latency) # each task writes its own JSONL record

The one place the device maps a task to its :class:`edge.network.Network` subclass, so
``edge.live`` and ``edge.bench`` run any model without asking which it is. A new task adds
its class here.
"""

from __future__ import annotations

from pathlib import Path

from .finder import FinderModel
from .metadata import read_metadata
from .model import LandmarkModel
from .network import Network
from .segmentation import SegmentationModel

# Metadata task -> the model class; every landmark task ("pose", "face", ...) is LandmarkModel.
MODEL_CLASSES: dict[str, type[Network]] = {
    "segmentation": SegmentationModel,
    "finder": FinderModel,
}


def model_class(task: str) -> type[Network]:
    """The :class:`Network` subclass that runs a model of ``task``."""
    return MODEL_CLASSES.get(task, LandmarkModel)


def open_model(path: str | Path, **options) -> Network:
    """The model at ``path`` as its task's class (``options`` go to its constructor:
    ``backend``, ``num_threads``, backend options)."""
    return model_class(read_metadata(path).task)(path, **options)
