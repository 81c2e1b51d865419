"""On-device landmark runtime: NumPy, OpenCV and a TFLite runtime; never TensorFlow or larq.

>>> import edge
>>> model = edge.LandmarkModel("pose.tflite")
>>> result = model.predict(frame_bgr)      # an OpenCV BGR uint8 image
>>> result.points, result.scores, result.names
>>> video = edge.LandmarkPipeline(model, tracker=..., smoother=...)  # edge.pipeline
>>> parts = edge.SegmentationModel("faceparts.tflite").predict(frame_bgr)  # class map
"""

import os
import platform
from pathlib import Path

from .codec import HeatmapCodec
from .errors import BackendError, EdgeError, ModelError, OutputError, SourceError
from .metadata import LandmarkMetadata, read_metadata
from .skeletons import SKELETONS, Skeleton, get_skeleton
from .transform import CropBox

__all__ = [
    "BackendError",
    "CropBox",
    "EdgeError",
    "HeatmapCodec",
    "LandmarkMetadata",
    "LandmarkPipeline",
    "LandmarkModel",
    "Landmarks",
    "ModelError",
    "OutputError",
    "SKELETONS",
    "SegmentationModel",
    "SegmentationPipeline",
    "Skeleton",
    "SourceError",
    "cache_dir",
    "cpu_name",
    "get_skeleton",
    "read_metadata",
]


def cache_dir(name: str = "") -> Path:
    """This project's user cache, ``$XDG_CACHE_HOME/binland/NAME`` (else ``~/.cache/...``):
    the native library's builds, benchmark models, test environments. Not created here."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "binland" / name


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), for the machine line of a benchmark
    table; elsewhere what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def __getattr__(name: str):
    # The model API pulls in a TFLite runtime; load it only when asked for.
    if name in ("LandmarkModel", "Landmarks"):
        from . import model

        return getattr(model, name)
    if name == "LandmarkPipeline":
        from .pipeline import LandmarkPipeline

        return LandmarkPipeline
    if name in ("SegmentationModel", "SegmentationPipeline"):
        from . import segmentation

        return getattr(segmentation, name)
    raise AttributeError(name)
