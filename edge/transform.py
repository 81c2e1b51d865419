"""The crop transform: one square box in the image <-> the network's input crop.

Pixel convention (used by the whole project): a pixel's *centre* has integer coordinates,
so pixel (0, 0) covers [-0.5, 0.5] x [-0.5, 0.5] and an image of width W spans
[-0.5, W - 0.5]. OpenCV's ``warpAffine`` uses the same convention, so the matrices below
can be handed to it directly.

A crop is described by the box centre ``(cx, cy)`` in image pixels, the box side ``size``
in image pixels, and a ``rotation`` in degrees (positive turns the image content
counter-clockwise in the crop, as ``cv2.getRotationMatrix2D`` does). The box edges map to
the crop's outer pixel edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CropBox:
    center: tuple[float, float]
    size: float
    rotation: float = 0.0

    def to_dict(self) -> dict:
        return {
            "center": [float(self.center[0]), float(self.center[1])],
            "size": float(self.size),
            "rotation": float(self.rotation),
        }


def crop_matrix(box: CropBox, output_size: tuple[int, int]) -> np.ndarray:
    """2x3 affine matrix taking image coordinates to crop coordinates.

    ``output_size`` is (width, height) of the crop. The scale is output width / box size on
    both axes, so a non-square crop sees a box of the same aspect ratio.
    """
    if box.size <= 0:
        raise ValueError(f"crop size must be positive, got {box.size}")
    out_w, out_h = output_size
    s = out_w / box.size
    a = np.deg2rad(box.rotation)
    # Image y points down, so a counter-clockwise turn of the content uses +sin on x.
    rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) * s
    c = np.asarray(box.center, dtype=np.float64)
    t = np.array([(out_w - 1) / 2.0, (out_h - 1) / 2.0]) - rot @ c
    return np.hstack([rot, t[:, None]])


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    a = np.asarray(matrix, dtype=np.float64)[:, :2]
    t = np.asarray(matrix, dtype=np.float64)[:, 2]
    # Closed-form 2x2 inverse: np.linalg.inv goes through LAPACK, whose BLAS worker threads
    # can take tens of milliseconds to wake on a busy CPU, once per frame in the live loop.
    det = a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]
    if det == 0 or not np.isfinite(det):
        raise np.linalg.LinAlgError("affine matrix is singular")
    a_inv = np.array([[a[1, 1], -a[0, 1]], [-a[1, 0], a[0, 0]]]) / det
    return np.hstack([a_inv, (-a_inv @ t)[:, None]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points of shape (..., 2) through a 2x3 affine matrix."""
    p = np.asarray(points, dtype=np.float64)
    m = np.asarray(matrix, dtype=np.float64)
    return p @ m[:, :2].T + m[:, 2]


def warp_crop(
    image: np.ndarray,
    box: CropBox,
    output_size: tuple[int, int],
    border_value: float | tuple[float, ...] = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut the box out of ``image`` at ``output_size`` (w, h). Returns (crop, image->crop matrix)."""
    import cv2  # edge depends on OpenCV; imported here so pure-NumPy callers don't pay for it

    m = crop_matrix(box, output_size)
    crop = cv2.warpAffine(
        image,
        m,
        tuple(int(v) for v in output_size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=border_value,
    )
    return crop, m


def shrink(image: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """``image`` made smaller by area averaging so its long side is at most ``max_side``
    (never enlarged), and the 2x3 affine from its pixels to the result's (pixel-centre
    convention: x -> (x + 0.5) * f - 0.5)."""
    import cv2

    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    f = max_side / max(h, w)
    size = (max(1, int(round(w * f))), max(1, int(round(h * f))))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    fx, fy = size[0] / w, size[1] / h
    return small, np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5]])


def box_from_points(
    points: np.ndarray, valid: np.ndarray | None = None, margin: float = 1.25
) -> CropBox | None:
    """Square box around the valid points, enlarged by ``margin``. None if no point is valid."""
    p = np.asarray(points, dtype=np.float64)
    if valid is not None:
        p = p[np.asarray(valid, dtype=bool)]
    if len(p) == 0:
        return None
    lo, hi = p.min(axis=0), p.max(axis=0)
    center = (lo + hi) / 2.0
    side = float(max(hi - lo)) * margin
    return CropBox((float(center[0]), float(center[1])), max(side, 1.0))


def full_frame_box(width: int, height: int) -> CropBox:
    """The smallest square box that holds the whole frame (the frame is centred in it)."""
    return CropBox(((width - 1) / 2.0, (height - 1) / 2.0), float(max(width, height)))


def normalise_input(
    crops_bgr: np.ndarray,
    color: str = "RGB",
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
    std: tuple[float, float, float] = (255.0, 255.0, 255.0),
) -> np.ndarray:
    """The model's input contract: BGR crops (..., H, W, 3), 0-255, to float32
    ``(pixel - mean) / std`` per channel in ``color`` order ("RGB" or "BGR").

    The one definition, used by training (``training.data.augment.Normalisation``), the
    converter's fidelity check and the runtime (``LandmarkModel.preprocess``, with the
    ``input_color``, ``input_mean`` and ``input_std`` of the model's metadata).
    """
    order = color.upper()
    if order not in ("RGB", "BGR"):
        raise ValueError(f"colour order must be RGB or BGR, got {color!r}")
    x = np.asarray(crops_bgr)
    if order == "RGB":
        x = x[..., ::-1]
    return (x.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
