"""On-device landmark runtime: NumPy, OpenCV and a TFLite runtime; never TensorFlow or larq.

>>> import edge
>>> model = edge.LandmarkModel("pose.tflite")
>>> result = model.predict(frame_bgr)      # an OpenCV BGR uint8 image
>>> result.points, result.scores, result.names
>>> video = edge.LandmarkPipeline(model, tracker=..., smoother=...)  # edge.pipeline
>>> parts = edge.SegmentationModel("faceparts.tflite").predict(frame_bgr)  # class map
"""

from .codec import HeatmapCodec
from .errors import BackendError, EdgeError, ModelError, OutputError, SourceError
from .host import cache_dir, cpu_name
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
