"""The public on-device API: a converted .tflite in, landmarks in image pixels out.

>>> model = LandmarkModel("pose.tflite")            # backend="auto", num_threads=2
>>> result = model.predict(frame_bgr, box)          # box: CropBox, or None for the whole frame
>>> result.points                                   # (K, 2) x, y in frame pixels
>>> people = model.predict(frame_bgr, finder="blazepose")  # every person found: [Landmarks]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, overload

import numpy as np

from .backends.base import DEFAULT_THREADS
from .codec import HeatmapCodec, mirror_average
from .errors import ModelError
from .network import Network, as_bgr
from .skeletons import flip_permutation
from .transform import CropBox

if TYPE_CHECKING:
    from .finders.base import Finder
    from .multipipeline import MultiLandmarkPipeline
    from .multitrack import MultiTracker
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
    ``flip_test``: each crop is also run mirrored and the two heatmaps averaged
    (:func:`edge.codec.mirror_average`): two inferences a crop, for a point or so of accuracy
    (docs/measured.md); the skeleton needs left/right pairs.
    Loading, the checks and the network call are :class:`edge.network.Network`'s.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        backend: str = "auto",
        num_threads: int = DEFAULT_THREADS,
        refine: str | None = None,
        flip_test: bool = False,
        **backend_options,
    ) -> None:
        super().__init__(path, backend=backend, num_threads=num_threads, **backend_options)
        self.codec: HeatmapCodec = self.metadata.codec(refine)
        self.flip_test = flip_test
        # The mirror's channel order, from the model's own left/right pairs (its metadata).
        self._flip = flip_permutation(self.metadata.num_landmarks, self.metadata.flip_pairs)
        if flip_test and not self.metadata.flip_pairs:
            raise ModelError(
                f"{self.path}: the flip test needs left/right landmark pairs, and "
                f"{self.metadata.skeleton} has none"
            )
        self._finders: dict[str, Finder] = {}  # predict's finders by name, loaded once

    def _check_task(self) -> None:
        if self.metadata.task == "segmentation":
            raise ModelError(
                f"{self.path} is a segmentation model ({self.metadata.skeleton}), "
                "not a landmark model: load it with edge.SegmentationModel"
            )
        if self.metadata.task == "finder":
            raise ModelError(
                f"{self.path} is a finder ({', '.join(self.metadata.classes)}), not a landmark "
                "model: load it with edge.FinderModel, or give it to --person-finder / "
                "--face-detector"
            )

    output_kind = "landmarks"

    def predict_heatmaps(self, crop_batch: np.ndarray) -> np.ndarray:
        """The heatmaps (N, h, w, K) of BGR crops (N, H, W, 3); with ``flip_test`` the mean of
        the crops' and their mirrors' (mirrored back, left and right swapped)."""
        heatmaps = super().predict_heatmaps(crop_batch)
        if not self.flip_test:
            return heatmaps
        mirrored = super().predict_heatmaps(
            np.ascontiguousarray(np.asarray(crop_batch)[:, :, ::-1])
        )
        return mirror_average(heatmaps, mirrored, self._flip)

    @property
    def output_channels(self) -> int:
        return self.metadata.num_landmarks

    def _new_pipeline(self) -> LandmarkPipeline:
        from .pipeline import LandmarkPipeline

        return LandmarkPipeline(self)  # no tracking, no smoothing

    def video_pipeline(
        self,
        tracker: LandmarkTracker | MultiTracker | None,
        *,
        smoother: OneEuroFilter | None = None,
        min_score: float = 0.3,
        rle: bool = False,
    ) -> LandmarkPipeline | MultiLandmarkPipeline:
        """Tracked and smoothed landmarks: one subject with a
        :class:`~edge.tracking.LandmarkTracker`, several (each with its ID) with a
        :class:`~edge.multitrack.MultiTracker`. ``rle`` is for class maps and has no say."""
        from .multitrack import MultiTracker

        if isinstance(tracker, MultiTracker):
            from .multipipeline import MultiLandmarkPipeline

            return MultiLandmarkPipeline(self, tracker, smoother=smoother, min_score=min_score)
        from .pipeline import LandmarkPipeline

        return LandmarkPipeline(self, tracker=tracker, smoother=smoother, min_score=min_score)

    @property
    def names(self) -> tuple[str, ...]:
        return self.metadata.landmarks

    @overload
    def predict(self, image_bgr: np.ndarray, box: CropBox | None = None) -> Landmarks: ...

    @overload
    def predict(
        self,
        image_bgr: np.ndarray,
        box: None = None,
        *,
        finder: Finder | str,
        max_people: int | None = None,
    ) -> list[Landmarks]: ...

    def predict(
        self,
        image_bgr: np.ndarray,
        box: CropBox | None = None,
        *,
        finder: Finder | str | None = None,
        max_people: int | None = None,
    ) -> Landmarks | list[Landmarks]:
        """Landmarks of the object in ``box`` (a square crop of the image) in image pixels.

        ``image_bgr`` is an OpenCV image (H, W, 3) uint8 in BGR order; greyscale and BGRA
        images are converted. ``box=None`` uses the whole frame.

        With a ``finder`` (an :mod:`edge.finders` name such as ``"blazepose"`` or ``"haar"``,
        a .tflite path, or a :class:`~edge.finders.base.Finder`) it returns a list instead:
        the landmarks of every subject the finder finds (at most ``max_people``), in the
        finder's order (best first), two finds of one subject counted once; [] when it
        finds nobody.
        """
        if finder is None:
            result = self._process(image_bgr, box)
            return Landmarks(
                points=result.points,
                scores=result.scores,
                names=self.metadata.landmarks,
                box=result.box,
            )
        if box is not None:
            raise ValueError("predict takes a box or a finder, not both")
        from .multipipeline import MultiLandmarkPipeline
        from .multitrack import MultiTracker
        from .tracking import lost_below_of

        tracker = MultiTracker(
            self._finder(finder),
            max_tracks=max_people,
            margin=self.metadata.box_margin,
            lost_below=lost_below_of(self.metadata),
        )
        stills = MultiLandmarkPipeline(self, tracker)
        people = stills.process(as_bgr(image_bgr), continuous=False).people
        return [Landmarks(p.points, p.scores, self.metadata.landmarks, p.box) for p in people]

    def _finder(self, finder: Finder | str) -> Finder:
        """A finder object; a name or path is loaded once per model."""
        if not isinstance(finder, str):
            return finder
        if finder not in self._finders:
            from .finders import create_finder
            from .tracking import subject_of

            found = create_finder(
                finder, subject=subject_of(self.metadata), margin=self.metadata.box_margin
            )
            if found is None:
                raise ModelError("predict's finder cannot be 'none': pass a finder, or a box")
            self._finders[finder] = found
        return self._finders[finder]

    def __repr__(self) -> str:
        meta = self.metadata
        return (
            f"LandmarkModel({self.path.name!r}, {meta.skeleton}, input {meta.input_size}, "
            f"{meta.weights_format}, backend={self.backend_description})"
        )
