"""The 1-bit finder on the device: every person (or face) in a frame, with its landmark crop.

>>> finder = FinderModel("person_finder.tflite")       # or edge.tasks.open_model(path)
>>> for found in finder.find(frame_bgr):               # best first
...     found.score, found.rect, found.box             # rect: x, y, w, h; box: the crop

A finder model (metadata task ``finder``, written by ``python -m converters.convert`` from a
``training.finder`` run) takes the whole frame letterboxed into its square input and returns
one output grid that :class:`edge.finder_codec.FinderCodec` decodes: per class a centre
heatmap, and at each centre the box and the landmark crop (centre, side, rotation). The
objects come back in frame pixels, each with ``score``, ``rect`` and ``box`` (the fields of
:class:`edge.finders.base.Found`). Loading, the checks and the network call are
:class:`edge.network.Network`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .backends.base import DEFAULT_THREADS
from .errors import ModelError
from .finder_codec import (
    FinderCodec,
    Found,
    letterbox,
    letterbox_input,
    merge_finds,
    tile_boxes,
)
from .network import Network, as_bgr
from .pipeline import start_frame
from .sources import Frame
from .timing import StageTimes
from .transform import CropBox

if TYPE_CHECKING:
    from .multitrack import MultiTracker
    from .smoothing import OneEuroFilter
    from .tracking import LandmarkTracker

STAGES = ("crop", "inference", "decode")


class FinderModel(Network):
    """A finder converted by ``python -m converters.convert``: :meth:`find` returns every
    object in a frame, best first.

    ``min_score``, ``top_k`` and ``nms_iou`` (1: keep overlapping finds) override the
    decoding defaults the metadata records. ``tile_below``: when no find of the whole frame
    scores this much, :meth:`find` looks again in overlapping tiles (:func:`tile_boxes`, each
    half the frame's long side: a subject shows at twice the size), for subjects too small for
    the whole-frame look, at up to 6 more runs of the network in a 4:3 frame; None: never.
    ``backend``, ``num_threads`` and backend options are :class:`~edge.network.Network`'s.
    """

    output_kind = "channels (finder heatmaps and regressions)"

    def __init__(
        self,
        path: str | Path,
        *,
        backend: str = "auto",
        num_threads: int = DEFAULT_THREADS,
        min_score: float | None = None,
        top_k: int | None = None,
        nms_iou: float | None = None,
        tile_below: float | None = None,
        **backend_options,
    ) -> None:
        super().__init__(path, backend=backend, num_threads=num_threads, **backend_options)
        self.codec: FinderCodec = self.metadata.finder_codec()
        self.min_score = self.codec.min_score if min_score is None else float(min_score)
        self.top_k = self.codec.top_k if top_k is None else int(top_k)
        self.nms_iou = self.codec.nms_iou if nms_iou is None else float(nms_iou)
        if not 0.0 <= self.min_score <= 1.0 or self.top_k < 1 or not 0.0 < self.nms_iou <= 1.0:
            raise ModelError(
                f"min_score must be in [0, 1], top_k >= 1 and nms_iou in (0, 1], got "
                f"{min_score}, {top_k}, {nms_iou}"
            )
        if tile_below is not None and not 0.0 <= tile_below <= 1.0:
            raise ModelError(f"tile_below must be in [0, 1], got {tile_below}")
        self.tile_below = tile_below

    def _check_task(self) -> None:
        if self.metadata.task != "finder":
            raise ModelError(
                f"{self.path} is a {self.metadata.task} model ({self.metadata.skeleton}), "
                "not a finder"
            )

    @property
    def output_channels(self) -> int:
        return self.metadata.num_outputs

    @property
    def classes(self) -> tuple[str, ...]:
        """What it finds, e.g. ("person",); a find's ``class_id`` indexes this."""
        return self.metadata.classes

    def find(self, image_bgr: np.ndarray) -> list[Found]:
        """Every object in ``image_bgr`` (H, W, 3 BGR; greyscale and BGRA are converted),
        best first, in image pixels (and in tiles too, see ``tile_below``)."""
        image = as_bgr(image_bgr)
        found = self._look(image, letterbox(image.shape))
        if self.tile_below is None or (found and found[0].score >= self.tile_below):
            return found
        # A tile's finds count only as sure as the whole frame's look failed to be: the tiles
        # show small things large, background included, and their weak finds were mostly
        # false (the face finder's select side: precision 85 -> 71 % keeping them all).
        tiled = [f for f in self._tile_finds(image) if f.score >= self.tile_below]
        return merge_finds(found + tiled, self.nms_iou)

    def _look(self, image: np.ndarray, box: CropBox) -> list[Found]:
        """The finds of one run of the network on the square ``box`` of ``image`` (BGR), in
        image pixels, best first."""
        crop, _ = letterbox_input(image, self.codec.input_size, box)
        return self.decode(self.predict_heatmaps(crop[None])[0], box)

    def _tile_finds(self, image: np.ndarray) -> list[Found]:
        """The finds of one look in each of :func:`tile_boxes`'s tiles of ``image`` (BGR), in
        image pixels, best first; a find a tile cuts (its rectangle reaching a tile edge
        inside the frame) is left to the tile that holds it whole."""
        height, width = image.shape[:2]
        found: list[Found] = []
        for box in tile_boxes(width, height):
            found += [f for f in self._look(image, box) if _whole_in_tile(f, box, width, height)]
        return merge_finds(found, self.nms_iou)

    def letterboxed(self, image_bgr: np.ndarray) -> tuple[np.ndarray, CropBox]:
        """The network's input (S, S, 3: the whole frame letterboxed) and the frame's box,
        which :meth:`decode` maps the finds back through."""
        image = as_bgr(image_bgr)
        frame_box = letterbox(image.shape)
        crop, _ = letterbox_input(image, self.codec.input_size, frame_box)
        return crop, frame_box

    def decode(self, output: np.ndarray, frame_box: CropBox) -> list[Found]:
        """The finds in one network output (its grid, without the batch axis), with this
        model's ``min_score``, ``top_k`` and ``nms_iou``, in frame pixels, best first."""
        return self.codec.decode(
            output, frame_box, min_score=self.min_score, top_k=self.top_k, nms_iou=self.nms_iou
        )

    def predict(self, image_bgr: np.ndarray, box: CropBox | None = None) -> list[Found]:
        """:meth:`find` (a finder always looks at the whole frame: ``box`` must be None)."""
        if box is not None:
            raise ValueError("a finder looks at the whole frame; call find(image)")
        return self.find(image_bgr)

    def _new_pipeline(self) -> FinderPipeline:
        return FinderPipeline(self)

    def video_pipeline(
        self,
        tracker: LandmarkTracker | MultiTracker | None,
        *,
        smoother: OneEuroFilter | None = None,
        min_score: float = 0.3,
        rle: bool = False,
    ) -> FinderPipeline:
        """Every frame searched whole: the finder has no track to keep (``tracker`` is not
        used), no points to smooth and its own score threshold (:attr:`min_score`), so the
        options have no say here."""
        return FinderPipeline(self)

    def __repr__(self) -> str:
        meta = self.metadata
        return (
            f"FinderModel({self.path.name!r}, {'+'.join(meta.classes)}, input "
            f"{meta.input_size}, {meta.weights_format}, backend={self.backend_description})"
        )


def _whole_in_tile(found: Found, tile: CropBox, width: int, height: int) -> bool:
    """Whether ``found``'s rectangle stays off every edge of ``tile`` that lies inside the
    frame (by 1 % of the tile): a subject the tile cuts gets a rectangle of its visible part."""
    half, pad = tile.size / 2.0, 0.01 * tile.size
    x0, y0, x1, y1 = found.corners
    cx, cy = tile.center
    return (
        (cx - half <= 0 or x0 >= cx - half + pad)
        and (cx + half >= width or x1 <= cx + half - pad)
        and (cy - half <= 0 or y0 >= cy - half + pad)
        and (cy + half >= height or y1 <= cy + half - pad)
    )


@dataclass
class FinderResult:
    frame: Frame
    found: list[Found]  # best first, frame pixels
    timings: dict[str, float] = field(default_factory=dict)
    # As LandmarkPipeline's FrameResult, for code that draws or logs any kind.
    box: CropBox | None = None
    points: np.ndarray | None = None
    tracking: bool = False


class FinderPipeline:
    """One frame in, every object found out (what ``edge.live`` runs for a finder model)."""

    def __init__(self, model: FinderModel) -> None:
        self.model = model
        self.meta = model.metadata
        self.infer = model.predict_heatmaps  # edge.bench swaps it for a fixed output

    def reset(self) -> None:
        """Nothing is carried between frames."""

    def process(
        self,
        frame: Frame | np.ndarray,
        times: StageTimes | None = None,
        *,
        box: CropBox | None = None,
        continuous: bool = True,
    ) -> FinderResult:
        frame, timings, stage = start_frame(frame, times)
        model = self.model
        # FinderModel.find's steps, each timed (and the inference swappable: self.infer)
        with stage("crop"):
            crop, frame_box = model.letterboxed(frame.image)
        with stage("inference"):
            output = self.infer(crop[None])[0]
        with stage("decode"):
            found = model.decode(output, frame_box)
        return FinderResult(frame, found, timings)

    def annotate(
        self, result: FinderResult, *, fps: float | None = None, show_box: bool = False
    ) -> np.ndarray:
        """A copy of the frame with each find's rectangle and score (and, with ``show_box``,
        its landmark crop)."""
        import cv2

        from .draw import draw_box, draw_fps

        image = result.frame.image.copy()
        for f in result.found:
            x0, y0, x1, y1 = (int(round(v)) for v in f.corners)
            cv2.rectangle(image, (x0, y0), (x1, y1), (0, 255, 0), 2)
            label = f"{self.meta.classes[f.class_id]} {f.score:.2f}"
            cv2.putText(
                image, label, (x0, max(y0 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 0), 1
            )
            if show_box:
                draw_box(image, f.box)
        if fps is not None:
            draw_fps(image, fps, f"{len(result.found)} found")
        return image

    def record(self, result: FinderResult, latency_ms: dict[str, float]) -> dict:
        """The JSONL record of one frame: every find (class name, score, rect, crop)."""
        frame = result.frame
        return {
            "frame": frame.index,
            "timestamp": round(float(frame.timestamp), 6),
            "found": [
                {**f.to_dict(), "class": self.meta.classes[f.class_id]} for f in result.found
            ],
            "latency_ms": latency_ms,
        }
