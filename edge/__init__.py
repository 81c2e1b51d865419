"""On-device landmark runtime: NumPy, OpenCV and a TFLite runtime; never TensorFlow or larq.

>>> import edge
>>> model = edge.LandmarkModel("pose.tflite")
>>> result = model.predict(frame_bgr)      # an OpenCV BGR uint8 image
>>> result.points, result.scores, result.names
>>> people = model.predict(frame_bgr, finder="blazepose")  # every person: [Landmarks]
>>> video = edge.LandmarkPipeline(model, tracker=..., smoother=...)  # edge.pipeline
>>> crowd = edge.MultiLandmarkPipeline(model, edge.MultiTracker(finder, max_tracks=4, ...))
>>> parts = edge.SegmentationModel("faceparts.tflite").predict(frame_bgr)  # class map
>>> people = edge.FinderModel("person_finder.tflite").find(frame_bgr)  # every person, best first
"""

from .codec import HeatmapCodec
from .errors import BackendError, EdgeError, ModelError, OutputError, SourceError
from .finder_codec import FinderCodec, Found
from .host import cache_dir, cpu_name
from .metadata import LandmarkMetadata, read_metadata
from .skeletons import SKELETONS, Skeleton, get_skeleton
from .transform import CropBox

__all__ = [
    "BackendError",
    "CropBox",
    "EdgeError",
    "Finder",
    "FinderCodec",
    "FinderModel",
    "Found",
    "HeatmapCodec",
    "LandmarkMetadata",
    "LandmarkPipeline",
    "LandmarkModel",
    "Landmarks",
    "ModelError",
    "MultiLandmarkPipeline",
    "MultiTracker",
    "OutputError",
    "SKELETONS",
    "SegmentationModel",
    "SegmentationPipeline",
    "Skeleton",
    "SourceError",
    "cache_dir",
    "cpu_name",
    "create_finder",
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
    if name == "FinderModel":
        from .finder import FinderModel

        return FinderModel
    if name in ("Finder", "create_finder"):
        from . import finders

        return getattr(finders, name)
    if name == "MultiLandmarkPipeline":
        from .multipipeline import MultiLandmarkPipeline

        return MultiLandmarkPipeline
    if name == "MultiTracker":
        from .multitrack import MultiTracker

        return MultiTracker
    if name in ("SegmentationModel", "SegmentationPipeline"):
        from . import segmentation

        return getattr(segmentation, name)
    raise AttributeError(name)
