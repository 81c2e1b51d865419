"""Part segmentation on the device: the sibling of :class:`edge.model.LandmarkModel`.

>>> model = SegmentationModel("faceparts.tflite")
>>> parts = model.predict(frame_bgr, box)          # box: CropBox, or None for the whole frame
>>> parts.class_map                                # (H, W) uint8 class ids in frame pixels
>>> parts.areas()                                  # {"skin": 5120, "left_eye": 210, ...}
>>> video = SegmentationPipeline(model, tracker=LandmarkTracker(margin=model.metadata.box_margin))
>>> result = video.process(frame)                  # crop -> infer -> class map -> track

The network returns one logit map per class at heatmap resolution for a square crop. The
crop is cut by :func:`edge.transform.warp_crop` exactly as for landmarks; the logits are
mapped back through the same image -> crop affine (plus the crop -> heatmap cell step of
:mod:`edge.codec`'s convention) with bilinear interpolation, and each frame pixel takes the
class of the largest interpolated logit. Pixels outside the crop are background.

Tracking reuses :class:`edge.tracking.LandmarkTracker`: the "landmarks" of a class map are
the four corners of the box around the pixels of the metadata's ``box_classes`` (the face
without hair), scored by the network's mean confidence there; the next crop is that box
times ``box_margin``, the same square training cropped around its labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .errors import ModelError
from .metadata import LandmarkMetadata
from .network import Network
from .pipeline import pick_crop, start_frame  # the steps every per-frame chain shares
from .sources import Frame
from .timing import StageTimes
from .transform import CropBox, apply_affine, invert_affine

if TYPE_CHECKING:
    from .multitrack import MultiTracker
    from .smoothing import OneEuroFilter
    from .tracking import LandmarkTracker

# A class map with fewer pixels of the box classes than this says nothing about the subject.
MIN_BOX_PIXELS = 16
STAGES = ("crop", "inference", "decode", "tracking")


def crop_to_heatmap(meta: LandmarkMetadata) -> np.ndarray:
    """The 2x3 affine from crop pixels to heatmap cells: cell j covers crop pixels around
    ``(j + 0.5) * stride - 0.5`` (the convention of :mod:`edge.codec`)."""
    sx = meta.input_size[0] / meta.heatmap_size[0]
    sy = meta.input_size[1] / meta.heatmap_size[1]
    return np.array([[1 / sx, 0.0, 0.5 / sx - 0.5], [0.0, 1 / sy, 0.5 / sy - 0.5]])


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    return (np.vstack([outer, [0, 0, 1]]) @ np.vstack([inner, [0, 0, 1]]))[:2]


def class_map_in_image(
    logits: np.ndarray,
    image_to_crop: np.ndarray,
    meta: LandmarkMetadata,
    image_shape: tuple[int, ...],
) -> np.ndarray:
    """(H, W) uint8 class ids in image pixels from one crop's logits (h, w, C).

    Only the crop's footprint on the image is interpolated (the rest is background, class
    0), so the cost follows the face's size, not the frame's.
    """
    height, width = image_shape[:2]
    class_map = np.zeros((height, width), np.uint8)
    to_cells = _compose(crop_to_heatmap(meta), image_to_crop)
    cw, ch = meta.input_size
    corners = np.array([[-0.5, -0.5], [cw - 0.5, -0.5], [-0.5, ch - 0.5], [cw - 0.5, ch - 0.5]])
    footprint = apply_affine(invert_affine(image_to_crop), corners)
    x0, y0 = np.maximum(np.floor(footprint.min(axis=0)).astype(int), 0)
    x1 = min(int(np.ceil(footprint[:, 0].max())) + 1, width)
    y1 = min(int(np.ceil(footprint[:, 1].max())) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return class_map
    # Frame pixel (x0 + u, y0 + v) -> heatmap cell: WARP_INVERSE_MAP takes dst -> src.
    roi_to_cells = _compose(to_cells, np.array([[1.0, 0, x0], [0, 1.0, y0]]))
    size = (x1 - x0, y1 - y0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    up = cv2.warpAffine(
        np.ascontiguousarray(logits, np.float32),
        roi_to_cells,
        size,
        flags=flags,
        borderMode=cv2.BORDER_REPLICATE,
    )
    if up.ndim == 2:  # OpenCV drops a single channel's axis
        up = up[..., None]
    # Which frame pixels lie inside the crop itself (its corners may be off the frame).
    inside = cv2.warpAffine(
        np.ones((ch, cw), np.uint8),
        _compose(image_to_crop, np.array([[1.0, 0, x0], [0, 1.0, y0]])),
        size,
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    class_map[y0:y1, x0:x1] = np.where(inside > 0, np.argmax(up, axis=-1), 0).astype(np.uint8)
    return class_map


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float32)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def box_confidence(logits: np.ndarray, box_classes: tuple[int, ...]) -> float:
    """Mean top-class probability over the heatmap cells whose class is a box class (0 when
    there are none): how sure the network is of the subject it tracks."""
    p = softmax(logits)
    chosen = p.argmax(axis=-1)
    cells = np.isin(chosen, box_classes)
    return float(p.max(axis=-1)[cells].mean()) if cells.any() else 0.0


def box_points(class_map: np.ndarray, box_classes: tuple[int, ...]) -> np.ndarray | None:
    """(4, 2) corners of the box around the pixels of ``box_classes``, or None when fewer
    than :data:`MIN_BOX_PIXELS` of them. Training crops around the same corners, so
    ``box_from_points(box_points(...), margin=box_margin)`` is the model's crop."""
    ys, xs = np.nonzero(np.isin(class_map, box_classes))
    if len(xs) < MIN_BOX_PIXELS:
        return None
    x0, x1, y0, y1 = float(xs.min()), float(xs.max()), float(ys.min()), float(ys.max())
    return np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]])


def part_areas(class_map: np.ndarray, classes: tuple[str, ...]) -> dict[str, int]:
    """Pixels per class (background left out)."""
    counts = np.bincount(class_map.reshape(-1), minlength=len(classes))
    return {name: int(counts[i]) for i, name in enumerate(classes) if i > 0}


def run_lengths(class_map: np.ndarray) -> list[int]:
    """The class map in row-major order as [class, run length, class, run length, ...]."""
    flat = class_map.reshape(-1)
    if flat.size == 0:
        return []
    starts = np.r_[0, np.nonzero(np.diff(flat))[0] + 1]
    lengths = np.diff(np.r_[starts, flat.size])
    return np.column_stack([flat[starts], lengths]).reshape(-1).astype(int).tolist()


def decode_run_lengths(runs: list[int], shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`run_lengths`."""
    pairs = np.asarray(runs, np.int64).reshape(-1, 2)
    flat = np.repeat(pairs[:, 0], pairs[:, 1]).astype(np.uint8)
    if flat.size != shape[0] * shape[1]:
        raise ValueError(f"run lengths cover {flat.size} pixels, not {shape[0]} x {shape[1]}")
    return flat.reshape(shape)


def draw_parts(image: np.ndarray, class_map: np.ndarray, colors_rgb, alpha: float = 0.5) -> None:
    """Blend each non-background class's colour over ``image`` (BGR, in place)."""
    lut = np.asarray(colors_rgb, np.float32)[:, ::-1]  # RGB -> BGR
    painted = class_map > 0
    if painted.any():
        over = lut[class_map[painted]]
        image[painted] = np.clip(image[painted] * (1 - alpha) + over * alpha, 0, 255).astype(
            np.uint8
        )


@dataclass(frozen=True, eq=False)
class Segmentation:
    class_map: np.ndarray  # (H, W) uint8 class ids in image pixels
    confidence: float  # mean top-class probability over the subject's cells
    classes: tuple[str, ...]
    box: CropBox  # the crop the prediction was made in

    def areas(self) -> dict[str, int]:
        return part_areas(self.class_map, self.classes)


class SegmentationModel(Network):
    """A part-segmentation model converted by ``python -m converters.convert``.

    Loads like :class:`~edge.model.LandmarkModel` (``backend``, ``num_threads``, backend
    options; both are :class:`edge.network.Network`) and refuses a landmark model with a
    one-line :class:`ModelError`.
    """

    def _check_task(self) -> None:
        if self.metadata.task != "segmentation":
            raise ModelError(
                f"{self.path} is a {self.metadata.task} landmark model "
                f"({self.metadata.skeleton}), not a segmentation model"
            )

    output_kind = "classes"

    @property
    def output_channels(self) -> int:
        return self.metadata.num_classes

    def _new_pipeline(self) -> SegmentationPipeline:
        return SegmentationPipeline(self)

    def video_pipeline(
        self,
        tracker: LandmarkTracker | MultiTracker | None,
        *,
        smoother: OneEuroFilter | None = None,
        min_score: float = 0.3,
        rle: bool = False,
    ) -> SegmentationPipeline:
        """A tracked class map per frame; a class map has no points to smooth or threshold,
        so ``smoother`` and ``min_score`` have no say here. One face: a
        :class:`~edge.multitrack.MultiTracker` is refused in one line."""
        from .tracking import LandmarkTracker

        if tracker is not None and not isinstance(tracker, LandmarkTracker):
            raise ModelError(
                f"{self.path.name} is a segmentation model, which follows one face: "
                "--max-faces more than 1 is for face landmark models"
            )
        return SegmentationPipeline(self, tracker=tracker, rle=rle)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.metadata.classes

    def predict(self, image_bgr: np.ndarray, box: CropBox | None = None) -> Segmentation:
        """The class map of ``box`` (None: the whole frame) in image pixels."""
        result = self._process(image_bgr, box)
        return Segmentation(result.class_map, result.confidence, self.classes, result.box)

    def __repr__(self) -> str:
        meta = self.metadata
        return (
            f"SegmentationModel({self.path.name!r}, {meta.num_classes} classes, input "
            f"{meta.input_size}, {meta.weights_format}, backend={self.backend_description})"
        )


@dataclass
class SegmentationResult:
    frame: Frame
    box: CropBox | None  # the crop used; None when nothing was looked for
    class_map: np.ndarray | None  # (H, W) uint8 in frame pixels
    confidence: float  # see box_confidence
    tracking: bool  # whether the next frame's crop comes from this class map
    timings: dict[str, float] = field(default_factory=dict)
    # As LandmarkPipeline's FrameResult, for code that draws or logs either kind.
    points: np.ndarray | None = None


class SegmentationPipeline:
    """One frame in, a class map in frame pixels out: crop -> infer -> decode -> track.

    ``tracker``: a :class:`~edge.tracking.LandmarkTracker` fed the corners of the subject's
    pixels (see the module docstring); None: every frame uses the ``box`` given to
    :meth:`process`, else the whole frame.
    """

    def __init__(
        self,
        model: SegmentationModel,
        *,
        tracker: LandmarkTracker | None = None,
        alpha: float = 0.5,
        rle: bool = False,
    ) -> None:
        self.model = model
        self.meta = model.metadata
        self.tracker = tracker
        self.alpha = alpha
        self.rle = rle  # records carry the run-length class map too
        self.infer = model.predict_heatmaps  # edge.bench swaps it for a fixed output

    def reset(self) -> None:
        if self.tracker is not None:
            self.tracker.reset()

    def process(
        self,
        frame: Frame | np.ndarray,
        times: StageTimes | None = None,
        *,
        box: CropBox | None = None,
        continuous: bool = True,
    ) -> SegmentationResult:
        frame, timings, stage = start_frame(frame, times)
        image, tracker = frame.image, self.tracker
        with stage("crop"):
            box, crop, to_crop = pick_crop(image, tracker, box, continuous, self.meta.input_size)
        if box is None:
            return SegmentationResult(frame, None, None, 0.0, False, timings)
        with stage("inference"):
            logits = self.infer(crop[None])[0]
        with stage("decode"):
            class_map = class_map_in_image(logits, to_crop, self.meta, image.shape)
            confidence = box_confidence(logits, self.meta.box_classes)
        tracking = False
        if tracker is not None and continuous:
            with stage("tracking"):
                corners = box_points(class_map, self.meta.box_classes)
                if corners is None:
                    corners, scores = np.zeros((4, 2)), np.zeros(4)
                else:
                    scores = np.full(4, confidence)
                tracking = tracker.update(corners, scores)
        return SegmentationResult(frame, box, class_map, confidence, tracking, timings)

    def annotate(
        self, result: SegmentationResult, *, fps: float | None = None, show_box: bool = False
    ) -> np.ndarray:
        """A copy of the frame with the coloured class map blended over it."""
        from .draw import draw_box, draw_fps

        image = result.frame.image.copy()
        if result.class_map is not None:
            draw_parts(image, result.class_map, self.meta.class_colors, self.alpha)
            if show_box and result.box is not None:
                draw_box(image, result.box)
        if fps is not None:
            draw_fps(image, fps, "" if result.class_map is not None else "no subject")
        return image

    def record(
        self, result: SegmentationResult, latency_ms: dict[str, float], *, rle: bool | None = None
    ) -> dict:
        """The JSONL record of one frame: per-class pixel areas (and the run-length class map,
        with ``rle``; None: the pipeline's own setting)."""
        rle = self.rle if rle is None else rle
        frame = result.frame
        rec: dict = {
            "frame": frame.index,
            "timestamp": round(float(frame.timestamp), 6),
            "box": None if result.box is None else result.box.to_dict(),
            "tracking": result.tracking,
            "confidence": round(result.confidence, 4),
            "areas": None,
            "latency_ms": latency_ms,
        }
        if result.class_map is not None:
            rec["areas"] = part_areas(result.class_map, self.meta.classes)
            if rle:
                rec["size"] = [int(result.class_map.shape[1]), int(result.class_map.shape[0])]
                rec["rle"] = run_lengths(result.class_map)
        return rec
