"""One segmentation training example: the landmark augmentation applied to an image and
its class map.

The random draw is :func:`training.data.augment.sample_params` (scale, rotation, flip,
colour, blur, occluder, and where a config turns them on, crop shift, wide rotation, noise,
JPEG and low light); the crop is :func:`edge.transform.warp_crop` of the drawn box
(``AugmentParams.crop_box``).
The class map goes through the same image -> crop affine, then :func:`edge.segmentation.
crop_to_heatmap`'s step to heatmap cells, sampled at each cell's centre (nearest pixel), so
a target cell and the device's decoding agree on where it lies. A flip mirrors both and
swaps left/right classes; an occluder's cells become background (nothing of the face shows
there), while colour and blur leave the labels alone.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.metadata import LandmarkMetadata
from edge.parts import PartLabels
from edge.segmentation import crop_to_heatmap
from edge.transform import warp_crop

from ..data.augment import (
    AugmentParams,
    Normalisation,
    compose,
    flip_matrix,
    occluder_box,
    photometric,
)
from .data import PartsSample


def _grid(input_size: int, label_size: int) -> LandmarkMetadata:
    # crop_to_heatmap only reads the two sizes.
    return LandmarkMetadata(
        task="segmentation",
        skeleton="",
        landmarks=(),
        edges=(),
        flip_pairs=(),
        input_size=(input_size, input_size),
        heatmap_size=(label_size, label_size),
    )


def crop_parts(
    sample: PartsSample,
    input_size: int,
    label_size: int,
    labels: PartLabels,
    params: AugmentParams = AugmentParams(),  # noqa: B008 - frozen, so a shared default is safe
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop (uint8 BGR, input_size), target class map (uint8, label_size) and the
    image -> crop matrix after ``params``."""
    crop, matrix = warp_crop(sample.image, params.crop_box(sample.box), (input_size, input_size))
    if params.flip:
        crop = np.ascontiguousarray(crop[:, ::-1])
        matrix = compose(flip_matrix(input_size), matrix)
    to_cells = compose(crop_to_heatmap(_grid(input_size, label_size)), matrix)
    target = cv2.warpAffine(
        sample.mask,
        to_cells,
        (label_size, label_size),
        flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    if params.flip:
        target = np.asarray(labels.flip_permutation(), np.uint8)[target]
    crop = photometric(crop, params)
    if params.occluder is not None:
        scale = label_size / input_size
        x0, y0, x1, y1 = (int(round(v * scale)) for v in occluder_box(params, input_size))
        target[y0:y1, x0:x1] = 0
    return crop, target, matrix


def make_parts_example(
    sample: PartsSample,
    *,
    input_size: int,
    label_size: int,
    labels: PartLabels,
    normalise: Normalisation,
    params: AugmentParams = AugmentParams(),  # noqa: B008
) -> tuple[np.ndarray, np.ndarray]:
    """Model input (S, S, 3) float32 and target class ids (h, w) int32."""
    crop, target, _ = crop_parts(sample, input_size, label_size, labels, params)
    return normalise(crop), target.astype(np.int32)
