"""The public on-device API: a converted .tflite in, landmarks in image pixels out.

>>> model = LandmarkModel("pose.tflite")            # backend="auto", num_threads=2
>>> result = model.predict(frame_bgr, box)          # box: CropBox, or None for the whole frame
>>> result.points                                   # (K, 2) x, y in frame pixels
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends import create_backend
from .cli import DEFAULT_THREADS
from .codec import HeatmapCodec
from .errors import ModelError
from .metadata import LandmarkMetadata, model_bytes, read_metadata
from .transform import CropBox, normalise_input


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


class LandmarkModel:
    """A landmark model converted by ``python -m converters.convert``, ready to predict.

    ``backend`` is ``"auto"``, ``"lce"`` or ``"tflite"`` (see :mod:`edge.backends`);
    ``backend_options`` go to the backend (e.g. ``runtime="ai_edge_litert"`` for tflite).
    ``refine`` overrides the sub-cell refinement recorded in the metadata (edge.codec).
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
        self.path = Path(path)
        data = model_bytes(self.path)
        try:
            self.metadata: LandmarkMetadata = read_metadata(data)
        except ModelError as exc:
            raise ModelError(f"{self.path}: {exc}") from None
        if self.metadata.task == "segmentation":
            raise ModelError(f"{self.path} is a segmentation model ({self.metadata.skeleton}), "
                             "not a landmark model: load it with edge.SegmentationModel")  # fmt: skip
        self._backend = create_backend(backend, data, num_threads=num_threads, **backend_options)
        self._check_shapes()
        self.codec: HeatmapCodec = self.metadata.codec(refine)
        self._pipeline = None

    def _check_shapes(self) -> None:
        meta = self.metadata
        w, h = meta.input_size
        hw, hh = meta.heatmap_size
        expected_in = (h, w, 3)
        expected_out = (hh, hw, meta.num_landmarks)
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

    @property
    def names(self) -> tuple[str, ...]:
        return self.metadata.landmarks

    def preprocess(self, crops_bgr: np.ndarray) -> np.ndarray:
        """BGR crops (..., H, W, 3), 0-255, to the network's normalised float32 input."""
        meta = self.metadata
        return normalise_input(crops_bgr, meta.input_color, meta.input_mean, meta.input_std)

    def predict_heatmaps(self, crop_batch: np.ndarray) -> np.ndarray:
        """Final heatmaps (N, h, w, K) for BGR crops (N, H, W, 3) already at the input size."""
        crops = np.asarray(crop_batch)
        if crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"expected BGR crops (N, H, W, 3), got shape {crops.shape}")
        return self._backend.run(self.preprocess(crops))

    def predict(self, image_bgr: np.ndarray, box: CropBox | None = None) -> Landmarks:
        """Landmarks of the object in ``box`` (a square crop of the image) in image pixels.

        ``image_bgr`` is an OpenCV image (H, W, 3) uint8 in BGR order; greyscale and BGRA
        images are converted. ``box=None`` uses the whole frame.
        """
        if self._pipeline is None:
            from .pipeline import LandmarkPipeline

            self._pipeline = LandmarkPipeline(self)  # no tracking, no smoothing
        result = self._pipeline.process(_as_bgr(image_bgr), box=box)
        return Landmarks(points=result.points, scores=result.scores,
                         names=self.metadata.landmarks, box=result.box)  # fmt: skip

    def __repr__(self) -> str:
        meta = self.metadata
        return (
            f"LandmarkModel({self.path.name!r}, {meta.skeleton}, input {meta.input_size}, "
            f"{meta.weights_format}, backend={self.backend_description})"
        )


def _as_bgr(image: np.ndarray) -> np.ndarray:
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
