"""Training augmentation and the sample -> (input crop, target heatmaps) step.

The random draw follows the authors' FAN training code (FACTS.md section 1): box scale
N(1, 0.3) clipped to [0.7, 1.3], rotation N(0, 30) degrees clipped to +-60 and set to 0
with probability 0.6, a horizontal flip with probability 0.5 (left/right landmarks swap
through the skeleton's flip permutation), and each colour channel multiplied by U[0.7, 1.3].
Two more draws are for real footage (off unless a config turns them on): a Gaussian blur
(motion, focus and low-resolution webcams) and an occluder, a random flat-coloured rectangle
over part of the crop (hands, objects, other people); occluded landmarks keep their labels,
so the model learns to place them anyway.

Geometry goes through :mod:`edge.transform` (the crop) and :mod:`edge.codec` (the targets),
the same two functions the evaluation and the device use, so a training target and a
decoded prediction can never disagree about where a pixel is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.codec import HeatmapCodec
from edge.skeletons import Skeleton
from edge.transform import CropBox, apply_affine, normalise_input, warp_crop

from .base import Sample


@dataclass
class AugmentConfig:
    enabled: bool = True
    scale_sigma: float = 0.3
    scale_min: float = 0.7
    scale_max: float = 1.3
    rotation_sigma: float = 30.0  # degrees
    rotation_max: float = 60.0
    rotation_zero_prob: float = 0.6
    flip_prob: float = 0.5
    colour_min: float = 0.7
    colour_max: float = 1.3
    blur_prob: float = 0.0
    blur_sigma_max: float = 1.5  # in crop pixels
    occlusion_prob: float = 0.0
    occlusion_max: float = 0.35  # largest occluder side, as a fraction of the crop side


@dataclass(frozen=True)
class AugmentParams:
    """One draw of the augmentation; the identity by default."""

    scale: float = 1.0  # box side multiplier (> 1 zooms out)
    rotation: float = 0.0  # degrees, added to the box's own rotation
    flip: bool = False
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per channel, in image (BGR) order
    blur: float = 0.0  # Gaussian sigma in crop pixels; 0: none
    # (x, y, width, height) as fractions of the crop side, and the grey level; None: none
    occluder: tuple[float, float, float, float, float] | None = None


def sample_params(rng: np.random.Generator, config: AugmentConfig) -> AugmentParams:
    if not config.enabled:
        return AugmentParams()
    scale = float(np.clip(rng.normal(1.0, config.scale_sigma), config.scale_min, config.scale_max))
    rotation = float(
        np.clip(rng.normal(0.0, config.rotation_sigma), -config.rotation_max, config.rotation_max)
    )
    if rng.random() < config.rotation_zero_prob:
        rotation = 0.0
    flip = bool(rng.random() < config.flip_prob)
    colour = rng.uniform(config.colour_min, config.colour_max, 3)
    blur = (
        float(rng.uniform(0.5, config.blur_sigma_max)) if rng.random() < config.blur_prob else 0.0
    )
    occluder = None
    if rng.random() < config.occlusion_prob:
        w, h = rng.uniform(0.1, config.occlusion_max, 2)
        x, y = rng.uniform(0.0, 1.0 - w), rng.uniform(0.0, 1.0 - h)
        occluder = (float(x), float(y), float(w), float(h), float(rng.uniform(0, 255)))
    return AugmentParams(
        scale,
        rotation,
        flip,
        (float(colour[0]), float(colour[1]), float(colour[2])),
        blur,
        occluder,
    )


def flip_matrix(width: int) -> np.ndarray:
    """Mirror of a crop ``width`` pixels wide: x -> width - 1 - x (pixel-centre convention)."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine ``outer`` applied after ``inner``."""
    a = np.vstack([outer, [0.0, 0.0, 1.0]]) @ np.vstack([inner, [0.0, 0.0, 1.0]])
    return a[:2]


def crop_sample(
    sample: Sample,
    input_size: int,
    skeleton: Skeleton,
    params: AugmentParams = AugmentParams(),  # noqa: B008 - frozen, so a shared default is safe
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Crop (uint8 BGR), image->crop matrix, crop points (K, 2) and visibility after ``params``.

    A flip mirrors the crop and relabels landmarks: after the mirror the subject's left arm
    sits where its right arm was, so point ``i`` takes the mirrored point of ``perm[i]``.
    """
    box = sample.box
    box = CropBox(box.center, box.size * params.scale, box.rotation + params.rotation)
    crop, matrix = warp_crop(sample.image, box, (input_size, input_size))
    points = apply_affine(matrix, sample.points)
    visible = sample.visible.copy()
    if params.flip:
        crop = np.ascontiguousarray(crop[:, ::-1])
        mirror = flip_matrix(input_size)
        matrix = compose(mirror, matrix)
        perm = skeleton.flip_permutation()
        points = apply_affine(mirror, points)[perm]
        visible = visible[perm]
    crop = photometric(crop, params)
    return crop, matrix, points.astype(np.float32), visible


def photometric(crop: np.ndarray, params: AugmentParams) -> np.ndarray:
    """The draws that change pixels, not geometry: colour scale, blur and the occluder
    (``occluder_box`` gives its pixel rectangle)."""
    if params.colour != (1.0, 1.0, 1.0):
        scaled = crop.astype(np.float32) * np.asarray(params.colour, np.float32)
        crop = np.clip(scaled, 0, 255).astype(np.uint8)
    if params.blur > 0:
        import cv2

        crop = cv2.GaussianBlur(crop, (0, 0), params.blur)
    if params.occluder is not None:
        x0, y0, x1, y1 = occluder_box(params, crop.shape[1])
        crop = crop.copy()
        crop[y0:y1, x0:x1] = int(params.occluder[4])
    return crop


def occluder_box(params: AugmentParams, input_size: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) crop pixels of ``params.occluder`` (which must be set)."""
    assert params.occluder is not None
    x, y, w, h, _ = params.occluder
    x0, y0 = int(x * input_size), int(y * input_size)
    return x0, y0, int((x + w) * input_size), int((y + h) * input_size)


@dataclass(frozen=True)
class Normalisation:
    """How a uint8 BGR crop becomes the model's float input (recorded in the model metadata)."""

    color: str = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (255.0, 255.0, 255.0)

    def __call__(self, crop_bgr: np.ndarray) -> np.ndarray:
        return normalise_input(crop_bgr, self.color, self.mean, self.std)


def make_example(
    sample: Sample,
    *,
    codec: HeatmapCodec,
    skeleton: Skeleton,
    normalise: Normalisation,
    params: AugmentParams = AugmentParams(),  # noqa: B008
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model input (S, S, 3) float32, target heatmaps (h, w, K) and landmark weights (K,)."""
    crop, _, points, visible = crop_sample(sample, codec.input_size[0], skeleton, params)
    heatmaps, weights = codec.encode(points, visible)
    return normalise(crop), heatmaps, weights
