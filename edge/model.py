"""The public on-device API: a converted .tflite in, landmarks in image pixels out.

>>> model = LandmarkModel("pose.tflite")            # backend="auto", num_threads=2
>>> result = model.predict(frame_bgr, box)          # box: CropBox, or None for the whole frame
>>> result.points                                   # (K, 2) x, y in frame pixels
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .backends.base import DEFAULT_THREADS
from .codec import HeatmapCodec
from .errors import ModelError
from .network import Network
from .transform import CropBox

if TYPE_CHECKING:
    from .pipeline import LandmarkPipeline
    from .smoothing import OneEuroFilter
    from .tracking import LandmarkTracker


@dataclass(frozen=True, eq=False)
class Landmarks:
    points: np.ndarray  # (K, 2) float, x and y in image pixels (pixel centres are integers)
    scores: np.ndarray  # (K,) heatmap peak values
    names: tuple[str, ...]
    box: CropBox  # the crop the prediction was made in

    def __len__(self) -> int:
        return len(self.names)

    def as_dict(self) -> dict:
        return {
            "points": self.points.tolist(),
            "scores": self.scores.tolist(),
            "names": list(self.names),
            "box": self.box.to_dict(),
        }


class LandmarkModel(Network):
    """A landmark model converted by ``python -m converters.convert``, ready to predict.

    ``backend`` is ``"auto"``, ``"lce"`` or ``"tflite"`` (see :mod:`edge.backends`);
    ``backend_options`` go to the backend (e.g. ``runtime="ai_edge_litert"`` for tflite).
    ``refine`` overrides the sub-cell refinement recorded in the metadata (edge.codec).
    Loading, the checks and the network call are :class:`edge.network.Network`'s.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        backend: str = "auto",
        num_threads: int = DEFAULT_THREADS,
        refine: str | None = None,
        **backend_options,
    ) -> None:
        super().__init__(path, backend=backend, num_threads=num_threads, **backend_options)
        self.codec: HeatmapCodec = self.metadata.codec(refine)

    def _check_task(self) -> None:
        if self.metadata.task == "segmentation":
            raise ModelError(
                f"{self.path} is a segmentation model ({self.metadata.skeleton}), "
                "not a landmark model: load it with edge.SegmentationModel"
            )

    output_kind = "landmarks"

    @property
    def output_channels(self) -> int:
        return self.metadata.num_landmarks

    def _new_pipeline(self) -> LandmarkPipeline:
        from .pipeline import LandmarkPipeline

        return LandmarkPipeline(self)  # no tracking, no smoothing

    def video_pipeline(
        self,
        tracker: LandmarkTracker | None,
        *,
        smoother: OneEuroFilter | None = None,
        min_score: float = 0.3,
        rle: bool = False,
    ) -> LandmarkPipeline:
        """Tracked and smoothed landmarks; ``rle`` is for class maps and has no say here."""
        from .pipeline import LandmarkPipeline

        return LandmarkPipeline(self, tracker=tracker, smoother=smoother, min_score=min_score)

    @property
    def names(self) -> tuple[str, ...]:
        return self.metadata.landmarks

    def predict(self, image_bgr: np.ndarray, box: CropBox | None = None) -> Landmarks:
        """Landmarks of the object in ``box`` (a square crop of the image) in image pixels.

        ``image_bgr`` is an OpenCV image (H, W, 3) uint8 in BGR order; greyscale and BGRA
        images are converted. ``box=None`` uses the whole frame.
        """
        result = self._process(image_bgr, box)
        return Landmarks(
            points=result.points,
            scores=result.scores,
            names=self.metadata.landmarks,
            box=result.box,
        )

    def __repr__(self) -> str:
        meta = self.metadata
        return (
            f"LandmarkModel({self.path.name!r}, {meta.skeleton}, input {meta.input_size}, "
            f"{meta.weights_format}, backend={self.backend_description})"
        )
