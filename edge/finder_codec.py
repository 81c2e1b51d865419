"""Finder codec: every person (or face) in a frame <-> a CenterNet-style output grid.

One convention for training (targets), evaluation and the device (decoding), in the style of
mmpose's codecs: :meth:`FinderCodec.encode` is paired with :meth:`FinderCodec.decode`.

The finder sees the whole frame *letterboxed* into its square input: the frame is centred in
the smallest square that holds it (:func:`letterbox`, :func:`edge.transform.full_frame_box`),
and that square is cut at the input size by the crop affine of :mod:`edge.transform`
(:func:`letterbox_input`, which first shrinks a frame far larger than the input). Its output is a grid at
``stride`` times lower resolution (cell ``j`` centred on input pixel ``(j + 0.5) * stride -
0.5``, :mod:`edge.codec`'s convention), with these channels per cell (``C`` classes):

====================  ===========================================================================
channels              what a cell holds (regressions are read only at an object's centre cell)
====================  ===========================================================================
``0 .. C-1``          centre heatmap per class, as logits (decoding applies the sigmoid)
``C, C+1``            the box centre's sub-cell offset (x, y) from the cell centre, in cells
``C+2, C+3``          the box's log(width / stride), log(height / stride)
``C+4, C+5``          the landmark crop's centre minus the box centre (x, y), over the box scale
                      ``sqrt(width * height)``
``C+6``               log(crop side / box scale)
``C+7, C+8``          sin and cos of the crop's rotation (:class:`edge.transform.CropBox`'s
                      degrees: a positive angle turns the content counter-clockwise in the crop)
====================  ===========================================================================

The *box* is the object's axis-aligned rectangle ``(x, y, w, h)``: ``x, y`` its top-left pixel
*edge* in the project's pixel-centre convention (an image of width W spans [-0.5, W - 0.5]),
so its centre is ``(x + w / 2, y + h / 2)``. The *crop* is the square, possibly rotated,
:class:`~edge.transform.CropBox` a landmark model needs around the object: for people the ROI
BlazePose makes from its alignment points, for faces the face mesh's ROI.

Training targets (:meth:`FinderCodec.encode`) add one channel, the regression weight: 1 at
each object's centre cell, 0 elsewhere; the heatmap targets are Gaussians of peak 1 at the
centre cell (sigma grows with the object, ``sigma_scale * sqrt(w * h) / stride`` cells, at
least ``min_sigma``), the element-wise maximum where objects overlap.

Decoding (:meth:`FinderCodec.decode`) keeps the cells that are the maximum of their 3x3
neighbourhood and score at least ``min_score``, the best ``top_k`` of them, drops a find whose
box overlaps a better find of its class by more than ``nms_iou`` (one body can raise two
peaks), and maps each back to image pixels through the letterbox. Pure NumPy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .boxes import suppress
from .finders.base import Found
from .transform import CropBox, crop_matrix, full_frame_box, invert_affine

# Decoding's non-maximum suppression default (FinderCodec.nms_iou). Chosen on the select side
# of the person finder's labels (121 frames; the bundled finder, min_score 0.3): IoU 1 (off)
# recall 68.7 / precision 70.5, 0.6 68.7 / 79.1, 0.5 68.2 / 80.8, 0.4 68.2 / 81.8: the most
# precision at no cost in recall.
NMS_IOU = 0.6
# Regression channels after the C heatmaps, in order (the metadata records them too).
REGRESSIONS = (
    "offset_x",
    "offset_y",
    "log_width",
    "log_height",
    "crop_dx",
    "crop_dy",
    "log_crop_size",
    "crop_sin",
    "crop_cos",
)


def map_boxes(
    matrix: np.ndarray,
    corners: np.ndarray,
    centres: np.ndarray,
    sizes: np.ndarray,
    rotations: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """N objects through the 2x3 similarity ``matrix`` (scale, shift, a turn, optionally a
    mirror): their rectangles' ``corners`` (N, 4) x0, y0, x1, y1 and their crops' ``centres``
    (N, 2), ``sizes`` (N,) and ``rotations`` (N,) degrees. See :func:`transform_object`."""
    m = np.asarray(matrix, np.float64)
    a, t = m[:, :2], m[:, 2]
    det = a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]
    if not np.isfinite(det) or det == 0:
        raise ValueError("the matrix is singular")
    c = np.asarray(corners, np.float64).reshape(-1, 4)
    # The four corners of each rectangle, mapped; the new rectangle is their extent.
    quad = np.stack([c[:, [0, 1]], c[:, [2, 1]], c[:, [0, 3]], c[:, [2, 3]]], axis=1) @ a.T + t
    new_corners = np.concatenate([quad.min(axis=1), quad.max(axis=1)], axis=1)
    new_centres = np.asarray(centres, np.float64).reshape(-1, 2) @ a.T + t
    # A turn by t in CropBox's convention is scale * [[cos t, sin t], [-sin t, cos t]]; a
    # mirror puts diag(-1, 1) in front of it. The crop's image->crop rotation R(r) then
    # becomes R(r) A^-1 = R(r - t), or under a mirror F R(r - t) F = R(t - r).
    rotations = np.asarray(rotations, np.float64)
    if det > 0:
        new_rotations = rotations - math.degrees(math.atan2(a[0, 1], a[0, 0]))
    else:
        new_rotations = math.degrees(math.atan2(-a[0, 1], -a[0, 0])) - rotations
    new_rotations = (new_rotations + 180.0) % 360.0 - 180.0
    return (
        new_corners,
        new_centres,
        np.asarray(sizes, np.float64) * math.sqrt(abs(det)),
        new_rotations,
    )


def transform_object(obj: Found, matrix: np.ndarray) -> Found:
    """``obj`` in the coordinates that the 2x3 affine ``matrix`` maps to.

    ``matrix`` is a similarity (scale, shift, a turn, optionally a mirror), as the crop affine
    and augmentation's flips make. The rectangle becomes the axis-aligned extent of its mapped
    corners (exact without a turn); the crop keeps showing the same content: its centre is
    mapped, its side scaled, and its rotation changed by the matrix's own turn, negated when
    the matrix mirrors (a mirrored crop is the crop of the mirrored image).
    """
    corners, centres, sizes, rotations = map_boxes(
        matrix, obj.corners, obj.box.center, [obj.box.size], [obj.box.rotation]
    )
    return _objects([obj.score], corners, centres, sizes, rotations, [obj.class_id])[0]


def _objects(scores, corners, centres, sizes, rotations, class_ids) -> list[Found]:
    """Finds from the arrays :func:`map_boxes` works on."""
    return [
        Found(
            float(s),
            (float(x0), float(y0), float(x1 - x0), float(y1 - y0)),
            CropBox((float(cx), float(cy)), float(size), float(r)),
            int(k),
        )
        for s, (x0, y0, x1, y1), (cx, cy), size, r, k in zip(
            scores, corners, centres, sizes, rotations, class_ids, strict=True
        )
    ]


def letterbox(image_shape: tuple[int, ...]) -> CropBox:
    """The square the finder's input shows of a frame of ``image_shape`` (H, W, ...): the
    whole frame, centred (:func:`edge.transform.full_frame_box`)."""
    height, width = int(image_shape[0]), int(image_shape[1])
    return full_frame_box(width, height)


# A frame larger than this many times the input is first shrunk by pixel averaging: the
# finders' training frames are stored at twice their input (training.label's --frame-px)
# and cut to the input bilinearly, and a 1080p frame cut straight to 160 pixels would alias.
SHRINK_ABOVE = 2.0


def letterbox_input(
    image: np.ndarray, input_size: int, box: CropBox | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The finder's input (S, S, 3) cut from ``image`` at ``box`` (default: the
    :func:`letterbox` of the frame), and the image -> input 2x3 affine.

    A frame more than :data:`SHRINK_ABOVE` times the input's size is first shrunk with
    OpenCV's area averaging to that size, so the device, the evaluation and training all see
    frames made the same way.
    """
    from .transform import shrink, warp_crop

    box = letterbox(image.shape) if box is None else box
    small, to_small = shrink(image, int(SHRINK_ABOVE * input_size))
    if small is image:
        return warp_crop(image, box, (input_size, input_size))
    # The box in the shrunk frame's pixels: the same square, scaled (the shrink is uniform
    # to within a rounded pixel).
    fx, fy = to_small[0, 0], to_small[1, 1]
    inner = CropBox(
        (box.center[0] * fx + to_small[0, 2], box.center[1] * fy + to_small[1, 2]),
        box.size * fx,
        box.rotation,
    )
    crop, matrix = warp_crop(small, inner, (input_size, input_size))
    full = np.vstack([matrix, [0.0, 0.0, 1.0]]) @ np.vstack([to_small, [0.0, 0.0, 1.0]])
    return crop, full[:2]


# A second look in tiles (FinderModel's ``tile_below``): squares of this share of the frame's
# long side, so a subject shows at twice the size it has in the whole-frame look.
TILE_FRACTION = 0.5


def tile_boxes(width: int, height: int, fraction: float = TILE_FRACTION) -> list[CropBox]:
    """Upright squares of side ``fraction`` x the frame's long side that cover a ``width`` x
    ``height`` frame, neighbours overlapping by at least half a side (a subject up to half a
    tile across lies whole in one of them), row by row. A side the square spans gets one
    tile, centred (the rest is the letterbox's padding)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    side = fraction * max(width, height)

    def centres(extent: int) -> np.ndarray:
        if extent <= side:
            return np.array([extent / 2.0])
        n = int(math.ceil((extent - side) / (side / 2.0))) + 1
        return np.linspace(side / 2.0, extent - side / 2.0, n)

    return [
        CropBox((float(x), float(y)), float(side), 0.0)
        for y in centres(height)
        for x in centres(width)
    ]


def merge_finds(finds: Sequence[Found], nms_iou: float) -> list[Found]:
    """Finds from several looks at one frame (in frame pixels), best first, a find dropped
    when its rectangle overlaps a better one of its class by more than ``nms_iou``."""
    ordered = sorted(finds, key=lambda f: -f.score)
    if not ordered:
        return []
    corners = np.array([f.corners for f in ordered], np.float64)
    keep = suppress(corners, nms_iou, np.array([f.class_id for f in ordered]))
    return [ordered[i] for i in keep]


def _max3x3(x: np.ndarray) -> np.ndarray:
    """The maximum over each cell's 3x3 neighbourhood of (H, W, C) maps (edges padded with
    -inf, so a border cell compares with its neighbours inside the map only)."""
    h, w = x.shape[:2]
    padded = np.full((h + 2, w + 2, x.shape[2]), -np.inf, x.dtype)
    padded[1:-1, 1:-1] = x
    out = padded[1 : h + 1, 1 : w + 1].copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            np.maximum(out, padded[dy : dy + h, dx : dx + w], out=out)
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, np.float64), -60.0, 60.0)))


@dataclass(frozen=True)
class FinderCodec:
    """Pairs :meth:`encode` (objects -> training target) with :meth:`decode` (network output
    -> objects in image pixels); see the module docstring for the channels.

    ``input_size``: the square input's side in pixels; ``stride``: input pixels per output
    cell; ``num_classes``: heatmap channels. ``sigma_scale`` and ``min_sigma`` shape the
    training heatmaps; ``min_score``, ``top_k`` and ``nms_iou`` are decoding's defaults.
    """

    input_size: int = 160
    stride: int = 4
    num_classes: int = 1
    sigma_scale: float = 0.1
    min_sigma: float = 0.8
    min_score: float = 0.3
    top_k: int = 20
    # A find whose box overlaps a better find of its class by more than this IoU is dropped:
    # one person can raise two 3x3 peaks (a squatting or lying body's centre is ambiguous).
    # 1.0: keep every peak. Models recorded without it decode with this default.
    nms_iou: float = NMS_IOU

    def __post_init__(self) -> None:
        if self.stride < 1 or self.input_size < self.stride or self.input_size % self.stride:
            raise ValueError(
                f"input_size {self.input_size} must be a positive multiple of stride {self.stride}"
            )
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {self.num_classes}")
        if not (self.sigma_scale > 0 and self.min_sigma > 0):
            raise ValueError("sigma_scale and min_sigma must be positive")
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1], got {self.nms_iou}")

    @property
    def grid(self) -> int:
        """Output cells per side."""
        return self.input_size // self.stride

    @property
    def channels(self) -> int:
        """Channels of the network's output: the heatmaps and :data:`REGRESSIONS`."""
        return self.num_classes + len(REGRESSIONS)

    @property
    def target_channels(self) -> int:
        """Channels of :meth:`encode`'s target: the output's and the regression weight."""
        return self.channels + 1

    def input_to_image(self, frame_box: CropBox) -> np.ndarray:
        """The 2x3 affine from input pixels to image pixels when the input shows
        ``frame_box`` (:func:`letterbox` of the frame)."""
        return invert_affine(crop_matrix(frame_box, (self.input_size, self.input_size)))

    def image_to_input(self, frame_box: CropBox) -> np.ndarray:
        return crop_matrix(frame_box, (self.input_size, self.input_size))

    def _to_cells(self, xy: np.ndarray) -> np.ndarray:
        return (np.asarray(xy, np.float64) + 0.5) / self.stride - 0.5

    def _to_pixels(self, cells: np.ndarray) -> np.ndarray:
        return (np.asarray(cells, np.float64) + 0.5) * self.stride - 0.5

    def encode(self, objects: Sequence[Found]) -> np.ndarray:
        """The training target (G, G, C + 10) float32 of ``objects`` given in *input* pixels.

        Objects whose box centre lies outside the input, or whose box is under a pixel wide or
        high, are left out. Where two centres fall in one cell, the smaller object's
        regressions are kept (the larger one still has its heatmap peak there).
        """
        g, c = self.grid, self.num_classes
        target = np.zeros((g, g, self.target_channels), np.float32)
        cells = np.arange(g, dtype=np.float64)
        lo, hi = -0.5, self.input_size - 0.5
        kept = [
            o
            for o in objects
            if o.rect[2] >= 1.0
            and o.rect[3] >= 1.0
            and lo <= o.center[0] <= hi
            and lo <= o.center[1] <= hi
            and 0 <= o.class_id < c
            and o.box.size > 0
        ]
        # Largest first, so a smaller object sharing a centre cell writes last and wins.
        for o in sorted(kept, key=lambda o: -o.rect[2] * o.rect[3]):
            _, _, w, h = o.rect
            cx, cy = self._to_cells(o.center)
            # The nearest cell centre (a centre on the input's last edge: the last cell).
            ix = min(max(int(np.floor(cx + 0.5)), 0), g - 1)
            iy = min(max(int(np.floor(cy + 0.5)), 0), g - 1)
            sigma = max(self.min_sigma, self.sigma_scale * math.sqrt(w * h) / self.stride)
            gx = np.exp(-((cells - ix) ** 2) / (2 * sigma**2))
            gy = np.exp(-((cells - iy) ** 2) / (2 * sigma**2))
            np.maximum(target[:, :, o.class_id], np.outer(gy, gx), out=target[:, :, o.class_id])
            scale = math.sqrt(w * h)
            bx, by = o.center
            rad = math.radians(o.box.rotation)
            target[iy, ix, c:] = (
                cx - ix,
                cy - iy,
                math.log(w / self.stride),
                math.log(h / self.stride),
                (o.box.center[0] - bx) / scale,
                (o.box.center[1] - by) / scale,
                math.log(o.box.size / scale),
                math.sin(rad),
                math.cos(rad),
                1.0,
            )
        return target

    def decode(
        self,
        output: np.ndarray,
        frame_box: CropBox | None = None,
        *,
        min_score: float | None = None,
        top_k: int | None = None,
        nms_iou: float | None = None,
    ) -> list[Found]:
        """The objects in a network output (G, G, C + 9) (heatmap logits), best first.

        ``frame_box``: the square of the image the input showed (:func:`letterbox` of the
        frame); the objects come back in that image's pixels. None: in input pixels.
        ``min_score``, ``top_k`` and ``nms_iou`` default to the codec's.
        """
        out = np.asarray(output, np.float32)
        g, c = self.grid, self.num_classes
        if out.shape != (g, g, self.channels):
            raise ValueError(f"expected a finder output {(g, g, self.channels)}, got {out.shape}")
        min_score = self.min_score if min_score is None else min_score
        top_k = self.top_k if top_k is None else top_k
        nms_iou = self.nms_iou if nms_iou is None else nms_iou
        heat = sigmoid(out[:, :, :c])
        peaks = (heat >= _max3x3(heat)) & (heat >= min_score)
        iy, ix, k = np.nonzero(peaks)
        scores = heat[iy, ix, k]
        j = np.argsort(-scores, kind="stable")[:top_k]  # the best top_k peaks
        r = out[iy[j], ix[j], c:].astype(np.float64)  # (n, 9)
        centre = self._to_pixels(np.stack([ix[j] + r[:, 0], iy[j] + r[:, 1]], axis=1))
        # Clipped: an untrained or confused network must not overflow exp().
        size = self.stride * np.exp(np.clip(r[:, 2:4], -10.0, 10.0))
        scale = np.sqrt(size[:, 0] * size[:, 1])
        corners = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        crop_centre = centre + r[:, 4:6] * scale[:, None]
        crop_size = scale * np.exp(np.clip(r[:, 6], -10.0, 10.0))
        rotation = np.degrees(np.arctan2(r[:, 7], r[:, 8]))
        keep = suppress(corners, nms_iou, k[j])  # in input pixels: the letterbox keeps IoU
        scores, corners, crop_centre, crop_size, rotation = (
            a[keep] for a in (scores[j], corners, crop_centre, crop_size, rotation)
        )
        j = j[keep]
        if frame_box is not None:
            corners, crop_centre, crop_size, rotation = map_boxes(
                self.input_to_image(frame_box), corners, crop_centre, crop_size, rotation
            )
        return _objects(scores, corners, crop_centre, crop_size, rotation, k[j])

    def to_dict(self) -> dict:
        """What the model's metadata records of the codec (``finder`` in the record)."""
        return {
            "stride": self.stride,
            "sigma_scale": self.sigma_scale,
            "min_sigma": self.min_sigma,
            "min_score": self.min_score,
            "top_k": self.top_k,
            "nms_iou": self.nms_iou,
            "heatmap": "logits",
            "regressions": list(REGRESSIONS),
        }
