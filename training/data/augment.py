"""Training augmentation and the sample -> (input crop, target heatmaps) step.

The random draw follows the authors' FAN training code (FACTS.md section 1): box scale
N(1, 0.3) clipped to [0.7, 1.3], rotation N(0, 30) degrees clipped to +-60 and set to 0
with probability 0.6, a horizontal flip with probability 0.5 (left/right landmarks swap
through the skeleton's flip permutation), and each colour channel multiplied by U[0.7, 1.3].
More draws are for real cameras and the device's tracker (each off unless a config turns it
on, and drawn only then, so an older config draws exactly what it always did):

* a Gaussian blur (motion, focus and low-resolution webcams);
* an occluder, a random flat-coloured rectangle over part of the crop (hands, objects, other
  people); occluded landmarks keep their labels, so the model learns to place them anyway;
* a shift of the crop's centre (the tracker's crop comes from the previous frame's landmarks,
  so it lags a moving person and is off-centre on a bent or reaching body);
* a wide rotation, uniform over +-180 degrees, now and then (lying and upside-down people,
  which the paper's +-60 never shows);
* sensor noise, JPEG re-encoding and low light (brightness and gamma), which cheap cameras,
  streams and dim rooms produce;
* a background swap: where the record's person mask (``Sample.mask``, the label tool's
  teacher mask) is below 0.5, the crop shows another record's image instead, placed, scaled
  and mirrored at random (:func:`swap_background`). A clip's person otherwise always stands in
  front of the same wall, and a model learns the wall. The person's pixels stay exactly as
  they were; the seam is feathered, and the camera draws above come after it, so neither a
  hard edge nor a change of noise marks where the person ends. The pipeline loads the
  background record (:mod:`training.data.pipeline`); records without a mask keep theirs.
* a neighbour: another record's person (cut out by its mask) pasted beside the one the crop is
  about, behind them or now and then in front (:func:`paste_neighbour`), its own labels
  ignored. In group photos the crop around one person holds the next one's arm, shoulder or
  whole body, and a student that saw nearly only people alone puts the limbs on whoever is
  nearer (the pose select photos of groups, pose_v2_candidates.md). The crop is still about
  the person it is centred on, at their scale, so the targets do not change.

Geometry goes through :mod:`edge.transform` (the crop) and :mod:`edge.codec` (the targets),
the same two functions the evaluation and the device use, so a training target and a
decoded prediction can never disagree about where a pixel is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.codec import HeatmapCodec
from edge.skeletons import Skeleton
from edge.transform import CropBox, apply_affine, crop_matrix, normalise_input, warp_crop

from .base import Sample
from .teacher_scores import TeacherScoresConfig, apply_scores


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
    shift_sigma: float = 0.0  # crop centre moved by N(0, sigma) x the box side, per axis
    shift_max: float = 0.25  # ... clipped at this fraction of the box side
    wide_rotation_prob: float = 0.0  # then the rotation is uniform over +-wide_rotation_max
    wide_rotation_max: float = 180.0  # degrees
    noise_prob: float = 0.0
    noise_sigma_max: float = 12.0  # Gaussian pixel noise, grey levels (sigma ~ U[2, max])
    jpeg_prob: float = 0.0
    jpeg_quality_min: int = 20  # quality ~ U[min, 90]
    dark_prob: float = 0.0  # low light: brightness x U[dark_min, 0.8], then gamma U[1, 1.8]
    dark_min: float = 0.25
    # Another record's image behind the person (where its mask is below 0.5); landmarks only.
    background_prob: float = 0.0
    # Another record's person pasted beside the person (both need masks); landmarks only.
    neighbour_prob: float = 0.0
    neighbour_front_prob: float = 0.25  # of the pastes, this share in front of the person
    # Their size against the person's, U[min, max]: under 0.8 they stand well behind (people
    # at the back of a group, whom a student should not take for the person in front).
    neighbour_scale_min: float = 0.8
    neighbour_scale_max: float = 1.25


# The seam of a background swap is blurred by a Gaussian of this sigma, as a fraction of the
# crop side (1 pixel at 96x96): the swap cuts the mask at 0.5, and a hard cut-out outline
# would be a cue that real footage never has.
BACKGROUND_FEATHER = 0.01
# The background is a square window of the other record's image, its side this fraction of
# the image's shorter side (U[min, 1]): from its whole context to a close-up of part of it.
BACKGROUND_WINDOW_MIN = 0.4


# A neighbour's centre lies this far to one side of the crop's centre, as a fraction of the
# crop side (U[min, max], left or right): from shoulder to shoulder to a step apart.
NEIGHBOUR_OFFSET = (0.2, 0.55)
NEIGHBOUR_RISE_SIGMA = 0.05  # ... and N(0, sigma) up or down (people stand at other depths)


@dataclass(frozen=True)
class NeighbourDraw:
    """Which record's person is pasted beside the person, where and how."""

    record: float  # U[0, 1): the record at this fraction of the dataset's records
    dx: float  # their centre's offset, a fraction of the crop side (signed: left or right)
    dy: float  # ... and downwards
    scale: float  # their size against the person's
    flip: bool  # mirrored
    front: bool  # pasted in front of the person (else behind)


@dataclass(frozen=True)
class BackgroundDraw:
    """Which record's image becomes the background and which part of it the crop shows."""

    record: float  # U[0, 1): the record at this fraction of the dataset's records
    window: float  # the window's side, a fraction of the image's shorter side
    x: float  # U[0, 1]: the window's place between the image's left and right edges
    y: float  # ... and between its top and bottom edges
    flip: bool  # mirrored


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
    shift: tuple[float, float] = (0.0, 0.0)  # crop centre offset, in box sides (image axes)
    noise: float = 0.0  # Gaussian noise sigma in grey levels; 0: none
    jpeg_quality: int = 0  # re-encode the crop at this JPEG quality; 0: none
    dark: tuple[float, float] = (1.0, 1.0)  # (brightness factor, gamma); (1, 1): none
    background: BackgroundDraw | None = None  # a background swap; None: none
    neighbour: NeighbourDraw | None = None  # another person pasted beside; None: none

    def crop_box(self, box: CropBox) -> CropBox:
        """``box`` moved, scaled and rotated by this draw: the crop the model is shown."""
        center = (
            box.center[0] + self.shift[0] * box.size,
            box.center[1] + self.shift[1] * box.size,
        )
        return CropBox(center, box.size * self.scale, box.rotation + self.rotation)


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
    # The real-camera draws below consume random numbers only when turned on.
    shift = (0.0, 0.0)
    if config.shift_sigma > 0:
        dx, dy = np.clip(
            rng.normal(0.0, config.shift_sigma, 2), -config.shift_max, config.shift_max
        )
        shift = (float(dx), float(dy))
    if config.wide_rotation_prob > 0 and rng.random() < config.wide_rotation_prob:
        rotation = float(rng.uniform(-config.wide_rotation_max, config.wide_rotation_max))
    noise = 0.0
    if config.noise_prob > 0 and rng.random() < config.noise_prob:
        noise = float(rng.uniform(2.0, config.noise_sigma_max))
    jpeg_quality = 0
    if config.jpeg_prob > 0 and rng.random() < config.jpeg_prob:
        jpeg_quality = int(rng.integers(config.jpeg_quality_min, 91))
    dark = (1.0, 1.0)
    if config.dark_prob > 0 and rng.random() < config.dark_prob:
        dark = (float(rng.uniform(config.dark_min, 0.8)), float(rng.uniform(1.0, 1.8)))
    background = None
    if config.background_prob > 0 and rng.random() < config.background_prob:
        record, window, x, y = rng.uniform(0.0, 1.0, 4)
        background = BackgroundDraw(
            float(record),
            float(BACKGROUND_WINDOW_MIN + window * (1.0 - BACKGROUND_WINDOW_MIN)),
            float(x),
            float(y),
            bool(rng.random() < 0.5),
        )
    neighbour = None
    if config.neighbour_prob > 0 and rng.random() < config.neighbour_prob:
        record, offset, side, scale_u, flip_u, front_u = rng.uniform(0.0, 1.0, 6)
        lo, hi = NEIGHBOUR_OFFSET
        dx = (lo + offset * (hi - lo)) * (1.0 if side < 0.5 else -1.0)
        lo_s, hi_s = config.neighbour_scale_min, config.neighbour_scale_max
        neighbour = NeighbourDraw(
            float(record),
            float(dx),
            float(rng.normal(0.0, NEIGHBOUR_RISE_SIGMA)),
            float(lo_s + scale_u * (hi_s - lo_s)),
            bool(flip_u < 0.5),
            bool(front_u < config.neighbour_front_prob),
        )
    return AugmentParams(
        scale,
        rotation,
        flip,
        (float(colour[0]), float(colour[1]), float(colour[2])),
        blur,
        occluder,
        shift,
        noise,
        jpeg_quality,
        dark,
        background,
        neighbour,
    )


def flip_matrix(width: int) -> np.ndarray:
    """Mirror of a crop ``width`` pixels wide: x -> width - 1 - x (pixel-centre convention)."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine ``outer`` applied after ``inner``."""
    a = np.vstack([outer, [0.0, 0.0, 1.0]]) @ np.vstack([inner, [0.0, 0.0, 1.0]])
    return a[:2]


def landmark_order(skeleton: Skeleton, params: AugmentParams) -> np.ndarray:
    """(K,) int: the crop's landmark ``i`` is the sample's landmark ``order[i]`` (the flip's
    relabelling, see :func:`crop_sample`; else the identity). Every per-point array of a
    sample (points, visibility, teacher scores) follows it."""
    if params.flip:
        return np.asarray(skeleton.flip_permutation())
    return np.arange(skeleton.num_landmarks)


def crop_sample(
    sample: Sample,
    input_size: int,
    skeleton: Skeleton,
    params: AugmentParams = AugmentParams(),  # noqa: B008 - frozen, so a shared default is safe
    background: np.ndarray | None = None,
    neighbour: Sample | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Crop (uint8 BGR), image->crop matrix, crop points (K, 2) and visibility after ``params``.

    A flip mirrors the crop and relabels landmarks: after the mirror the subject's left arm
    sits where its right arm was, so point ``i`` takes the mirrored point of ``perm[i]``.
    ``background`` (a BGR image, e.g. another record's) replaces the crop's background when
    ``params.background`` is drawn and the sample has a person mask; else it is not used.
    ``neighbour`` (another record) is pasted beside the person when ``params.neighbour`` is
    drawn and both have a person mask (:func:`neighbour_crop`, :func:`paste_neighbour`);
    else it is not used. Neither changes the geometry or the labels.
    """
    size = (input_size, input_size)
    box = params.crop_box(sample.box)
    crop, matrix = warp_crop(sample.image, box, size)
    points = apply_affine(matrix, sample.points)
    visible = sample.visible.copy()
    swap = params.background is not None and background is not None and sample.mask is not None
    paste = (
        params.neighbour is not None
        and neighbour is not None
        and neighbour.mask is not None
        and sample.mask is not None
    )
    person = warp_crop(sample.mask, box, size)[0] if swap or paste else None
    other = neighbour_crop(neighbour, params, input_size) if paste else None
    if params.flip:
        crop = np.ascontiguousarray(crop[:, ::-1])
        person = None if person is None else person[:, ::-1]
        mirror = flip_matrix(input_size)
        matrix = compose(mirror, matrix)
        perm = landmark_order(skeleton, params)
        points = apply_affine(mirror, points)[perm]
        visible = visible[perm]
    # Before the camera draws, which then cover the seams as they cover the whole crop.
    if swap:
        crop = swap_background(crop, person, background, params.background)
    if other is not None:
        if params.flip:
            other = tuple(np.ascontiguousarray(a[:, ::-1]) for a in other)
        crop = paste_neighbour(crop, person, *other, front=params.neighbour.front)
    crop = photometric(crop, params)
    return crop, matrix, points.astype(np.float32), visible


def neighbour_crop(
    neighbour: Sample, params: AugmentParams, input_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The neighbour as ``params.neighbour`` places them in the (unmirrored) crop: their
    image and person mask (``input_size`` square), their box cut at the person's zoom and
    rotation, times the draw's size, mirrored on its flip, and moved by its offset."""
    import cv2

    draw = params.neighbour
    nbox = neighbour.box
    zoomed = CropBox(
        nbox.center, nbox.size * params.scale / draw.scale, nbox.rotation + params.rotation
    )
    matrix = crop_matrix(zoomed, (input_size, input_size))
    if draw.flip:
        matrix = compose(flip_matrix(input_size), matrix)
    # The offset, in crop pixels, after the cut: the same whatever the box's rotation.
    matrix = compose(
        np.array([[1.0, 0.0, draw.dx * input_size], [0.0, 1.0, draw.dy * input_size]]), matrix
    )
    size = (input_size, input_size)
    image = cv2.warpAffine(neighbour.image, matrix, size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(neighbour.mask, matrix, size, flags=cv2.INTER_LINEAR)
    return image, mask


def _feathered(mask: np.ndarray) -> np.ndarray:
    """(H, W, 1) float32 in [0, 1]: 1 where ``mask`` is 0.5 or more, fading to 0 outside it
    over a few pixels (:data:`BACKGROUND_FEATHER`), so no hard cut-out outline shows."""
    import cv2

    inside = (mask >= 0.5).astype(np.float32)
    # Blurring the binary mask puts its edge at 0.5; doubled, the fade lies outside the mask.
    fade = cv2.GaussianBlur(inside, (0, 0), max(BACKGROUND_FEATHER * mask.shape[0], 0.3))
    return np.maximum(inside, np.clip(2.0 * fade, 0.0, 1.0))[..., None]


def paste_neighbour(
    crop: np.ndarray,
    person: np.ndarray,
    image: np.ndarray,
    mask: np.ndarray,
    *,
    front: bool,
) -> np.ndarray:
    """``crop`` with the neighbour's ``image`` where their ``mask`` is 0.5 or more (feathered
    outside it): behind the person (``person``, the crop's mask: where it is 0.5 or more the
    crop keeps its pixels exactly), or in ``front`` of them."""
    alpha = _feathered(mask)
    if not front:
        alpha = alpha * (1.0 - (person >= 0.5).astype(np.float32)[..., None])
    mixed = alpha * image.astype(np.float32) + (1.0 - alpha) * crop.astype(np.float32)
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def swap_background(
    crop: np.ndarray, person: np.ndarray, image: np.ndarray, draw: BackgroundDraw
) -> np.ndarray:
    """``crop`` with ``image`` (placed by ``draw``) where ``person`` (the crop's mask, 0 to 1)
    is below 0.5. Pixels at 0.5 or more keep their value exactly; outside them the new
    background fades in over a few pixels (:data:`BACKGROUND_FEATHER`)."""
    behind = place_background(image, draw, crop.shape[0])
    keep = _feathered(person)
    mixed = keep * crop.astype(np.float32) + (1.0 - keep) * behind.astype(np.float32)
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def place_background(image: np.ndarray, draw: BackgroundDraw, size: int) -> np.ndarray:
    """The ``size`` x ``size`` background ``draw`` cuts from ``image``: a square window of
    ``draw.window`` times the shorter side of its content (:func:`content_box`), at
    ``(draw.x, draw.y)`` between the content's edges, mirrored on ``draw.flip``."""
    x0, y0, x1, y1 = content_box(image)
    w, h = x1 - x0 + 1, y1 - y0 + 1
    side = draw.window * min(h, w)
    # The window's centre, so that the window lies inside the content (pixel-centre convention).
    cx = x0 + side / 2 - 0.5 + draw.x * (w - side)
    cy = y0 + side / 2 - 0.5 + draw.y * (h - side)
    behind, _ = warp_crop(image, CropBox((cx, cy), side), (size, size))
    return np.ascontiguousarray(behind[:, ::-1]) if draw.flip else behind


def content_box(image: np.ndarray, dark: int = 12) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), inclusive: ``image`` less the dark rows and columns along its edges.
    The label tool's context crops are padded with black where they reach past the frame; a
    background cut from the padding would be a black band no camera shows. A pixel's width
    more is left out on each side, so interpolation never reaches the padding. The whole
    image when less than a quarter of its side would be left (a dark scene)."""
    h, w = image.shape[:2]
    # Reduced along the memory order (rows first): numpy's max over axes (0, 2) at once
    # takes 80 times longer.
    lit_rows = np.flatnonzero(image.reshape(h, -1).max(axis=1) > dark)
    lit_cols = np.flatnonzero(image.max(axis=0).reshape(w, -1).max(axis=1) > dark)
    if len(lit_rows) < 2 or len(lit_cols) < 2:
        return 0, 0, w - 1, h - 1
    x0, x1 = int(lit_cols[0]) + 1, int(lit_cols[-1]) - 1
    y0, y1 = int(lit_rows[0]) + 1, int(lit_rows[-1]) - 1
    if min(x1 - x0, y1 - y0) + 1 < min(h, w) / 4:
        return 0, 0, w - 1, h - 1
    return x0, y0, x1, y1


def photometric(crop: np.ndarray, params: AugmentParams) -> np.ndarray:
    """The draws that change pixels, not geometry: colour scale, low light, blur, the
    occluder (``occluder_box`` gives its pixel rectangle), sensor noise and JPEG, in the
    order a camera would add them."""
    import cv2

    if params.colour != (1.0, 1.0, 1.0):
        scaled = crop.astype(np.float32) * np.asarray(params.colour, np.float32)
        crop = np.clip(scaled, 0, 255).astype(np.uint8)
    if params.dark != (1.0, 1.0):
        brightness, gamma = params.dark
        level = (crop.astype(np.float32) / 255.0 * brightness) ** gamma
        crop = np.clip(level * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if params.blur > 0:
        crop = cv2.GaussianBlur(crop, (0, 0), params.blur)
    if params.occluder is not None:
        x0, y0, x1, y1 = occluder_box(params, crop.shape[1])
        crop = crop.copy()
        crop[y0:y1, x0:x1] = int(params.occluder[4])
    if params.noise > 0:
        # Seeded by the draw itself, so one AugmentParams always gives the same pixels.
        seed = int(params.noise * 1e6) ^ (crop.shape[0] << 8)
        grain = np.random.default_rng(seed).normal(0.0, params.noise, crop.shape)
        crop = np.clip(crop.astype(np.float32) + grain, 0, 255).astype(np.uint8)
    if params.jpeg_quality > 0:
        ok, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, params.jpeg_quality])
        if ok:
            crop = cv2.imdecode(data, cv2.IMREAD_COLOR)
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
    background: np.ndarray | None = None,
    teacher: TeacherScoresConfig | None = None,
    neighbour: Sample | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model input (S, S, 3) float32, target heatmaps (h, w, K) and landmark weights (K,);
    ``background`` and ``neighbour``: see :func:`crop_sample`. ``teacher``: what the sample's teacher scores
    (``Sample.scores``, put in the crop's landmark order) do to the heatmaps or the weights
    (:func:`training.data.teacher_scores.apply_scores`); None or ``use: none``: nothing."""
    crop, _, points, visible = crop_sample(
        sample, codec.input_size[0], skeleton, params, background, neighbour
    )
    heatmaps, weights = codec.encode(points, visible)
    if teacher is not None and teacher.on and sample.scores is not None:
        scores = sample.scores[landmark_order(skeleton, params)]
        heatmaps, weights = apply_scores(heatmaps, weights, scores, teacher)
    return normalise(crop), heatmaps, weights
