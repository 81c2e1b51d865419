"""Augmentation geometry, the random draw's distribution, and the tf.data pipeline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import training  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow loads
from edge.codec import HeatmapCodec
from edge.skeletons import MPII16
from edge.transform import CropBox
from training.data import CorruptSample, LandmarkDataset, Sample, open_dataset
from training.data.augment import (
    AugmentConfig,
    AugmentParams,
    BackgroundDraw,
    NeighbourDraw,
    Normalisation,
    crop_sample,
    landmark_order,
    make_example,
    place_background,
    sample_params,
)
from training.data.teacher_scores import TeacherScoresConfig, score_weights

# Each landmark sits on a blob of its own colour, far enough apart that blobs never touch.
_RNG = np.random.default_rng(7)
_COLOURS = _RNG.choice(np.arange(40, 256, 13), size=(16, 3), replace=True).astype(np.uint8)


def _blob_sample() -> Sample:
    size = 320
    image = np.full((size, size, 3), 10, np.uint8)
    grid = np.stack(np.meshgrid(np.arange(4), np.arange(4)), -1).reshape(-1, 2)
    # A 4x4 grid, jittered, so left/right partners are at different places.
    points = 70 + grid * 60 + _RNG.uniform(-8, 8, (16, 2))
    yy, xx = np.mgrid[0:size, 0:size]
    for p, c in zip(points, _COLOURS, strict=True):
        image[(xx - p[0]) ** 2 + (yy - p[1]) ** 2 <= 12**2] = c
    visible = np.ones(16, bool)
    visible[[0, 10]] = False  # one of each of two flip pairs, to see visibility follow the swap
    box = CropBox((float(points[:, 0].mean()), float(points[:, 1].mean())), 280.0)
    return Sample(image=image, points=points, visible=visible, box=box, head_size=30.0, id="blobs")


def _colour_at(crop: np.ndarray, point: np.ndarray) -> np.ndarray:
    x, y = np.round(point).astype(int)
    return crop[y, x]


def test_flip_swaps_left_right_pairs_and_mirrors_x():
    sample = _blob_sample()
    size = 128
    _, _, plain, vis = crop_sample(sample, size, MPII16, AugmentParams())
    _, matrix, flipped, fvis = crop_sample(sample, size, MPII16, AugmentParams(flip=True))
    perm = MPII16.flip_permutation()
    # Point i of the flipped crop is the mirror image of point perm[i] of the plain crop.
    np.testing.assert_allclose(flipped[:, 0], size - 1 - plain[perm, 0], atol=1e-4)
    np.testing.assert_allclose(flipped[:, 1], plain[perm, 1], atol=1e-4)
    np.testing.assert_array_equal(fvis, vis[perm])
    # Explicitly: right ankle (0) and left ankle (5) trade places; pelvis (6) keeps its label.
    assert perm[0] == 5 and perm[5] == 0 and perm[6] == 6
    assert not fvis[5] and fvis[0]  # the invisible right ankle is now the left one
    # The returned matrix maps image points to the flipped crop directly.
    from edge.transform import apply_affine

    np.testing.assert_allclose(apply_affine(matrix, sample.points)[perm], flipped, atol=1e-4)


@pytest.mark.parametrize("seed", range(6))
def test_augmented_landmarks_stay_on_their_image_content(seed):
    sample = _blob_sample()
    rng = np.random.default_rng(seed)
    params = sample_params(rng, AugmentConfig(colour_min=1.0, colour_max=1.0))
    params = AugmentParams(params.scale, rotation=float(rng.uniform(-60, 60)), flip=seed % 2 == 1)
    crop, _, points, _ = crop_sample(sample, 128, MPII16, params)
    perm = MPII16.flip_permutation() if params.flip else np.arange(16)
    inside = np.all((points >= 1) & (points <= 126), axis=1)  # rotation may push corners out
    assert inside.sum() >= 8
    for i in np.flatnonzero(inside):
        p = points[i]
        # After a flip, label i names the body part that was perm[i]: its blob, its colour.
        np.testing.assert_array_equal(_colour_at(crop, p), _COLOURS[perm[i]], err_msg=f"point {i}")


def test_colour_scales_each_channel_within_range():
    sample = _blob_sample()
    params = AugmentParams(colour=(0.7, 1.0, 1.3))
    plain, _, _, _ = crop_sample(sample, 64, MPII16, AugmentParams())
    tinted, _, _, _ = crop_sample(sample, 64, MPII16, params)
    mask = plain.max(axis=-1) > 60
    ratio = tinted[mask].astype(float).sum(0) / plain[mask].astype(float).sum(0)
    assert ratio[0] == pytest.approx(0.7, abs=0.02)
    assert ratio[1] == pytest.approx(1.0, abs=0.01)
    assert 1.1 < ratio[2] <= 1.3 + 1e-6  # clipped at 255 for bright pixels


def test_blur_and_occluder_change_pixels_not_labels():
    sample = _blob_sample()
    plain, m0, p0, v0 = crop_sample(sample, 64, MPII16, AugmentParams())
    blurred, m1, p1, v1 = crop_sample(sample, 64, MPII16, AugmentParams(blur=1.5))
    np.testing.assert_array_equal(p0, p1)
    np.testing.assert_array_equal(v0, v1)
    # Blur spreads the blobs' edges: neighbouring pixels differ less.
    assert (
        np.abs(np.diff(blurred.astype(int), axis=1)).max()
        < 0.8 * np.abs(np.diff(plain.astype(int), axis=1)).max()
    )
    covered, _, p2, _ = crop_sample(
        sample, 64, MPII16, AugmentParams(occluder=(0.25, 0.5, 0.5, 0.25, 77.0))
    )
    np.testing.assert_array_equal(p0, p2)
    assert (covered[32:48, 16:48] == 77).all()
    np.testing.assert_array_equal(covered[:32], plain[:32])  # nothing else changes


def test_real_footage_draws_are_off_by_default_and_follow_their_config():
    rng = np.random.default_rng(1)
    assert all(
        d.blur == 0 and d.occluder is None
        for d in (sample_params(rng, AugmentConfig()) for _ in range(200))
    )
    on = AugmentConfig(blur_prob=0.3, occlusion_prob=0.5, occlusion_max=0.3)
    draws = [sample_params(rng, on) for _ in range(3000)]
    assert abs(np.mean([d.blur > 0 for d in draws]) - 0.3) < 0.03
    occ = [d.occluder for d in draws if d.occluder is not None]
    assert abs(len(occ) / len(draws) - 0.5) < 0.03
    for x, y, w, h, _ in occ:
        assert 0.1 <= w <= 0.3 and 0.1 <= h <= 0.3 and x + w <= 1 and y + h <= 1


def test_random_draw_follows_the_papers_distribution():
    rng = np.random.default_rng(0)
    draws = [sample_params(rng, AugmentConfig()) for _ in range(4000)]
    scale = np.array([d.scale for d in draws])
    rot = np.array([d.rotation for d in draws])
    flips = np.array([d.flip for d in draws])
    colour = np.array([d.colour for d in draws])
    assert scale.min() >= 0.7 and scale.max() <= 1.3
    assert np.mean(scale == 0.7) > 0.1 and np.mean(scale == 1.3) > 0.1  # N(1, 0.3) clipped
    assert abs(np.mean(rot == 0) - 0.6) < 0.03
    nonzero = rot[rot != 0]
    assert np.abs(nonzero).max() <= 60 and np.mean(np.abs(nonzero) == 60) > 0.02
    assert 25 < np.std(nonzero) < 30  # N(0, 30) clipped at +-60
    assert abs(flips.mean() - 0.5) < 0.03
    assert colour.min() >= 0.7 and colour.max() <= 1.3
    off = sample_params(rng, AugmentConfig(enabled=False))
    assert off == AugmentParams()


def test_make_example_targets_decode_to_the_crop_points():
    sample = _blob_sample()
    codec = HeatmapCodec((64, 64), (16, 16), sigma=1.0)
    params = AugmentParams(scale=1.1, rotation=20.0, flip=True)
    image, heatmaps, weights = make_example(
        sample, codec=codec, skeleton=MPII16, normalise=Normalisation(), params=params
    )
    _, _, points, visible = crop_sample(sample, 64, MPII16, params)
    assert image.shape == (64, 64, 3) and image.dtype == np.float32 and image.max() <= 1.0
    np.testing.assert_array_equal(weights > 0, visible)
    decoded, _ = HeatmapCodec((64, 64), (16, 16), refine="dark").decode(heatmaps)
    np.testing.assert_allclose(decoded[visible], points[visible], atol=0.3)


class _PartlyCorrupt(LandmarkDataset):
    """Synthetic figures where every third record is broken, as a bad JPEG would be."""

    def __init__(self, size: int) -> None:
        self.inner = open_dataset("synthetic-pose", split="train", size=size, image_size=64)
        self.skeleton = self.inner.skeleton

    def __len__(self) -> int:
        return len(self.inner)

    def load(self, index: int) -> Sample:
        if index % 3 == 0:
            raise CorruptSample(f"record {index} is truncated")
        return self.inner.load(index)


def test_pipeline_batches_and_skips_corrupt_records():
    from training.data.pipeline import training_dataset

    data = _PartlyCorrupt(12)
    codec = HeatmapCodec((64, 64), (16, 16), sigma=1.0)
    ds = training_dataset(
        data,
        codec=codec,
        normalise=Normalisation(),
        augment=AugmentConfig(),
        batch_size=4,
        num_stacks=2,
        seed=1,
    )
    batches = list(ds.take(4))  # 16 examples: more than one pass over the 8 good records
    images, targets = batches[0]
    assert images.shape == (4, 64, 64, 3)
    assert len(targets) == 2 and targets[0].shape == (4, 16, 16, 32)
    np.testing.assert_array_equal(targets[0].numpy(), targets[1].numpy())
    assert data.skipped.count >= 4  # each of the 4 corrupt records is met at least once
    assert all("truncated" in r for r in data.skipped.reasons)


def test_real_camera_draws_leave_older_configs_drawing_exactly_what_they_did():
    """New draws consume random numbers only when turned on: a config written before them
    (the bundled models' recipes) gets the same augmentation, draw for draw."""
    old = sample_params(np.random.default_rng(3), AugmentConfig(blur_prob=0.3))
    rng = np.random.default_rng(3)
    again = sample_params(rng, AugmentConfig(blur_prob=0.3, shift_sigma=0.0, noise_prob=0.0))
    assert again == old
    assert again.shift == (0.0, 0.0) and again.noise == 0 and again.jpeg_quality == 0


def test_shift_moves_the_crop_by_a_fraction_of_the_box_and_the_points_with_it():
    sample = _blob_sample()
    size = 128
    _, _, plain, _ = crop_sample(sample, size, MPII16, AugmentParams())
    _, _, moved, _ = crop_sample(sample, size, MPII16, AugmentParams(shift=(0.1, -0.05)))
    # The crop's centre moves right by a tenth of the box and up by a twentieth, so every
    # point moves left by a tenth of the crop and down by a twentieth.
    expected = np.tile([-0.1 * size, 0.05 * size], (16, 1))
    np.testing.assert_allclose(moved - plain, expected, atol=1e-3)


def test_real_camera_draws_follow_their_config():
    rng = np.random.default_rng(5)
    on = AugmentConfig(
        shift_sigma=0.1,
        shift_max=0.2,
        wide_rotation_prob=0.2,
        noise_prob=0.3,
        jpeg_prob=0.4,
        jpeg_quality_min=25,
        dark_prob=0.25,
    )
    draws = [sample_params(rng, on) for _ in range(4000)]
    shifts = np.array([d.shift for d in draws])
    assert np.abs(shifts).max() <= 0.2 and 0.08 < shifts.std() < 0.11
    rotations = np.array([d.rotation for d in draws])
    beyond = np.abs(rotations) > 60  # only the wide draw goes past the paper's +-60
    assert 0.1 < beyond.mean() < 0.2 and np.abs(rotations).max() > 170
    assert abs(np.mean([d.noise > 0 for d in draws]) - 0.3) < 0.03
    qualities = np.array([d.jpeg_quality for d in draws if d.jpeg_quality])
    assert abs(len(qualities) / len(draws) - 0.4) < 0.03
    assert qualities.min() >= 25 and qualities.max() <= 90
    dark = np.array([d.dark for d in draws if d.dark != (1.0, 1.0)])
    assert abs(len(dark) / len(draws) - 0.25) < 0.03
    assert dark[:, 0].min() >= 0.25 and dark[:, 0].max() <= 0.8 and dark[:, 1].min() >= 1.0


def test_noise_jpeg_and_low_light_change_pixels_not_geometry():
    sample = _blob_sample()
    plain, m0, p0, v0 = crop_sample(sample, 64, MPII16, AugmentParams())
    draws = (
        AugmentParams(noise=8.0),
        AugmentParams(jpeg_quality=20),
        AugmentParams(dark=(0.3, 1.5)),
    )
    for params in draws:
        changed, m1, p1, v1 = crop_sample(sample, 64, MPII16, params)
        np.testing.assert_array_equal(m0, m1)
        np.testing.assert_array_equal(p0, p1)
        np.testing.assert_array_equal(v0, v1)
        assert changed.shape == plain.shape and changed.dtype == np.uint8
        assert np.abs(changed.astype(int) - plain).mean() > 1.0, params
    dim, _, _, _ = crop_sample(sample, 64, MPII16, AugmentParams(dark=(0.3, 1.5)))
    assert dim.mean() < 0.4 * plain.mean()  # low light is darker
    # The same draw gives the same pixels (the noise is seeded by the draw).
    a, _, _, _ = crop_sample(sample, 64, MPII16, AugmentParams(noise=8.0))
    b, _, _, _ = crop_sample(sample, 64, MPII16, AugmentParams(noise=8.0))
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------- background swaps


def _masked_blob_sample() -> Sample:
    """The blob sample with a person mask: a disk over the middle blobs (the person), the rest
    background; the mask's edge is soft, as the teacher's is."""
    sample = _blob_sample()
    yy, xx = np.mgrid[0:320, 0:320]
    distance = np.hypot(xx - 160.0, yy - 160.0)
    sample.mask = np.clip((110.0 - distance) / 6.0 + 0.5, 0.0, 1.0).astype(np.float32)
    return sample


def _stripes(seed: int = 0) -> np.ndarray:
    """A background that looks like nothing in the blob image: bright diagonal stripes."""
    yy, xx = np.mgrid[0:240, 0:300]
    tint = np.random.default_rng(seed).integers(120, 255, 3)
    return (((xx + yy) // 9 % 2)[..., None] * tint).astype(np.uint8)


def _assert_same_geometry_and_labels(a: list, b: list) -> None:
    """Two crop_sample results (less the crop: matrix, points, visibility) are the same."""
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def _mask_in_crop(sample: Sample, params: AugmentParams, size: int) -> np.ndarray:
    """The sample's person mask cut as ``params`` cuts the crop, mirrored with it."""
    from edge.transform import warp_crop

    person = warp_crop(sample.mask, params.crop_box(sample.box), (size, size))[0]
    return person[:, ::-1] if params.flip else person


@pytest.mark.parametrize("flip", [False, True])
def test_background_swap_keeps_the_person_and_replaces_the_rest(flip):
    sample = _masked_blob_sample()
    draw = BackgroundDraw(record=0.3, window=0.7, x=0.2, y=0.9, flip=True)
    params = AugmentParams(scale=1.1, rotation=15.0, flip=flip, background=draw)
    plain, *before = crop_sample(sample, 96, MPII16, params)
    swapped, *after = crop_sample(sample, 96, MPII16, params, _stripes())
    _assert_same_geometry_and_labels(before, after)  # whatever is behind the person
    person = _mask_in_crop(sample, params, 96)
    inside = person >= 0.5
    assert 0.2 < inside.mean() < 0.8
    np.testing.assert_array_equal(swapped[inside], plain[inside])  # the person, untouched
    # Away from the seam the crop shows the new background, placed as the draw says.
    yy, xx = np.mgrid[0:96, 0:96]
    centre = np.array(person.shape) / 2
    far = np.hypot(*(np.stack([yy, xx]) - centre[:, None, None])) > 0.5 * 96 * 110 / 160 + 6
    far &= person == 0
    assert far.sum() > 500
    behind = place_background(_stripes(), draw, 96)
    assert np.abs(swapped[far].astype(int) - behind[far]).max() <= 1
    assert np.abs(plain[far].astype(int) - behind[far]).mean() > 40  # it was not there before
    # The seam fades: between person and background, pixels lie between the two.
    seam = (person < 0.5) & ~far
    mix = swapped[seam].astype(int)
    low = np.minimum(plain[seam], behind[seam]).astype(int)
    high = np.maximum(plain[seam], behind[seam]).astype(int)
    assert ((mix >= low - 1) & (mix <= high + 1)).all()


def test_a_background_never_shows_the_black_padding_of_a_context_crop():
    # The label tool pads a crop that reaches past its frame with black: the top and left.
    padded = np.zeros((320, 320, 3), np.uint8)
    padded[90:, 40:] = _stripes(3)[:230, :280] // 2 + 100  # 100 to ~227, never dark
    rng = np.random.default_rng(0)
    for _ in range(40):
        x, y, window = rng.uniform(0, 1, 3)
        draw = BackgroundDraw(0.0, 0.4 + 0.6 * window, x, y, bool(x < 0.5))
        assert place_background(padded, draw, 64).min() >= 90
    # A dark scene is still a background: the whole image.
    night = np.full((100, 120, 3), 5, np.uint8)
    assert place_background(night, BackgroundDraw(0.0, 1.0, 0.5, 0.5, False), 32).max() == 5


def test_no_swap_without_a_mask_or_a_background():
    sample = _blob_sample()  # no mask
    params = AugmentParams(background=BackgroundDraw(0.5, 1.0, 0.5, 0.5, False))
    plain, _, _, _ = crop_sample(sample, 64, MPII16, AugmentParams())
    np.testing.assert_array_equal(crop_sample(sample, 64, MPII16, params, _stripes())[0], plain)
    masked = _masked_blob_sample()
    np.testing.assert_array_equal(
        crop_sample(masked, 64, MPII16, params)[0],
        crop_sample(masked, 64, MPII16, AugmentParams())[0],
    )


def _assert_off_by_default_and_drawn_last(option: str, field: str, config: dict) -> None:
    """``field`` of the draw is never drawn while ``option`` is 0, and turning ``option`` on
    leaves every other draw of a recipe (``config``) exactly as it was: it is drawn last."""
    rng = np.random.default_rng(4)
    off = (sample_params(rng, AugmentConfig(**config)) for _ in range(200))
    assert all(getattr(draw, field) is None for draw in off)
    for seed in range(20):
        old = sample_params(np.random.default_rng(seed), AugmentConfig(**config))
        new = sample_params(np.random.default_rng(seed), AugmentConfig(**config, **{option: 0.5}))
        assert new == AugmentParams(**{**old.__dict__, field: getattr(new, field)})


def test_background_draws_are_off_by_default_and_leave_the_other_draws_alone():
    config = dict(blur_prob=0.3, noise_prob=0.2, dark_prob=0.2, shift_sigma=0.05)
    _assert_off_by_default_and_drawn_last("background_prob", "background", config)
    rng = np.random.default_rng(4)
    draws = [sample_params(rng, AugmentConfig(background_prob=0.4)).background for _ in range(3000)]
    made = [d for d in draws if d is not None]
    assert abs(len(made) / len(draws) - 0.4) < 0.03
    windows = np.array([d.window for d in made])
    assert windows.min() >= 0.4 and windows.max() <= 1.0
    assert 0.4 < np.mean([d.flip for d in made]) < 0.6
    records = np.array([d.record for d in made])
    assert records.min() >= 0 and records.max() < 1 and abs(records.mean() - 0.5) < 0.03


class _MaskedFigures(LandmarkDataset):
    """Blob samples, each on its own stripes with a person mask (every third without one):
    what the label tool's records give the pipeline."""

    skeleton = MPII16

    def __init__(self, figure: Sample) -> None:
        self.figure = figure

    def __len__(self) -> int:
        return 6

    def load(self, index: int) -> Sample:
        f = self.figure
        person = f.mask[..., None] >= 0.5
        return Sample(
            np.where(person, f.image, _big_stripes(index)),
            f.points,
            f.visible,
            f.box,
            id=f"figure{index}",
            mask=None if index % 3 == 2 else f.mask,
        )


def _big_stripes(seed: int) -> np.ndarray:
    yy, xx = np.mgrid[0:320, 0:320]
    tint = np.random.default_rng(seed).integers(60, 255, 3)
    return (((xx * (seed + 1) + yy) // 7 % 2)[..., None] * tint).astype(np.uint8)


def _first_batches(augment: AugmentConfig, data: LandmarkDataset, seed: int) -> np.ndarray:
    """The real tf.data pipeline's first two batches of 6 input crops (64x64) of ``data``."""
    from training.data.pipeline import training_dataset

    ds = training_dataset(
        data,
        codec=HeatmapCodec((64, 64), (16, 16), sigma=1.0),
        normalise=Normalisation(),
        augment=augment,
        batch_size=6,
        num_stacks=1,
        seed=seed,
        deterministic=True,
    )
    return np.concatenate([images.numpy() for images, _ in ds.take(2)])


def test_pipeline_swaps_backgrounds_from_other_records_repeatably():
    def first_batches(prob: float, data: LandmarkDataset) -> np.ndarray:
        return _first_batches(AugmentConfig(background_prob=prob), data, seed=2)

    figure = _masked_blob_sample()
    data = _MaskedFigures(figure)
    once, again = first_batches(1.0, data), first_batches(1.0, _MaskedFigures(figure))
    np.testing.assert_array_equal(once, again)  # the seed decides every swap
    unswapped = first_batches(0.0, _MaskedFigures(figure))
    changed = np.abs(once - unswapped).reshape(12, -1).max(axis=1) > 0.1
    assert changed.sum() == 8  # two passes over 6 records: all but the 2 without a mask
    # Counted (the parallel map may have run ahead of the two batches taken).
    assert data.swaps_missed.count >= 4
    assert "no person mask" in data.swaps_missed.reasons[0]


# ----------------------------------------------------------------- neighbours (issue 24)


def _neighbour_sample() -> Sample:
    """Another person: a flat bright disk on black, its mask the disk, its box a third of the
    blob sample's (so, cut at its own box, it fills the crop as the blob person does)."""
    image = np.zeros((200, 200, 3), np.uint8)
    yy, xx = np.mgrid[0:200, 0:200]
    disk = np.hypot(xx - 100.0, yy - 100.0) <= 40
    image[disk] = (250, 30, 200)
    return Sample(
        image,
        np.full((16, 2), 100.0),
        np.ones(16, bool),
        CropBox((100.0, 100.0), 280.0 / 3),
        id="neighbour",
        mask=disk.astype(np.float32),
    )


@pytest.mark.parametrize("flip", [False, True])
def test_a_neighbour_stands_beside_the_person_behind_them_or_in_front(flip):
    sample, other = _masked_blob_sample(), _neighbour_sample()
    behind = NeighbourDraw(record=0.5, dx=0.45, dy=0.0, scale=1.0, flip=False, front=False)
    params = AugmentParams(scale=1.2, flip=flip, neighbour=behind)
    plain, *before = crop_sample(sample, 96, MPII16, dataclasses.replace(params, neighbour=None))
    pasted, *after = crop_sample(sample, 96, MPII16, params, neighbour=other)
    _assert_same_geometry_and_labels(before, after)  # whoever stands beside the person
    inside = _mask_in_crop(sample, params, 96) >= 0.5
    np.testing.assert_array_equal(pasted[inside], plain[inside])  # behind: the person untouched
    # The neighbour's colour shows where they stand: right of the centre (dx > 0), or left of
    # it when the crop is mirrored, at the blob person's zoom (their disk, 80 pixels across
    # in a box of 280 / 3, is 80 / (1.2 x 280 / 3) x 96 = 69 crop pixels tall).
    magenta = (np.abs(pasted.astype(int) - (250, 30, 200)).max(axis=-1) <= 2) & ~inside
    assert magenta.sum() > 300
    assert not (np.abs(plain.astype(int) - (250, 30, 200)).max(axis=-1) <= 2).any()
    cols = np.flatnonzero(magenta.any(axis=0))
    assert (cols.max() < 48) if flip else (cols.min() > 48)
    assert 60 <= magenta.any(axis=1).sum() <= 72
    # In front, the neighbour covers the part of the person under them.
    front = dataclasses.replace(params, neighbour=dataclasses.replace(behind, dx=0.25, front=True))
    over, *_ = crop_sample(sample, 96, MPII16, front, neighbour=other)
    covered = inside & (np.abs(over.astype(int) - (250, 30, 200)).max(axis=-1) <= 2)
    assert covered.sum() > 100


def test_no_neighbour_without_both_masks():
    sample, other = _masked_blob_sample(), _neighbour_sample()
    params = AugmentParams(neighbour=NeighbourDraw(0.5, 0.3, 0.0, 1.0, False, False))
    plain = crop_sample(sample, 64, MPII16, AugmentParams())[0]
    unmasked = dataclasses.replace(other, mask=None)
    np.testing.assert_array_equal(
        crop_sample(sample, 64, MPII16, params, neighbour=unmasked)[0], plain
    )
    alone = _blob_sample()  # the person has no mask: nothing to keep them in front
    np.testing.assert_array_equal(
        crop_sample(alone, 64, MPII16, params, neighbour=other)[0],
        crop_sample(alone, 64, MPII16, AugmentParams())[0],
    )
    assert not np.array_equal(crop_sample(sample, 64, MPII16, params, neighbour=other)[0], plain)


def test_neighbour_draws_are_off_by_default_and_leave_the_other_draws_alone():
    config = dict(blur_prob=0.3, shift_sigma=0.05, background_prob=0.4)
    _assert_off_by_default_and_drawn_last("neighbour_prob", "neighbour", config)
    rng = np.random.default_rng(5)
    made = [sample_params(rng, AugmentConfig(neighbour_prob=0.3)).neighbour for _ in range(3000)]
    made = [d for d in made if d is not None]
    assert abs(len(made) / 3000 - 0.3) < 0.03
    dx = np.array([d.dx for d in made])
    assert np.abs(dx).min() >= 0.2 and np.abs(dx).max() <= 0.55 and 0.4 < (dx > 0).mean() < 0.6
    assert 0.2 < np.mean([d.front for d in made]) < 0.3
    scale = np.array([d.scale for d in made])
    assert scale.min() >= 0.8 and scale.max() <= 1.25

    # A wider size range (people at the back) moves the sizes alone: the same uniform draw,
    # so every other field, and every later draw, stays what it was.
    rng = np.random.default_rng(5)
    wide = AugmentConfig(neighbour_prob=0.3, neighbour_scale_min=0.4)
    smaller = [sample_params(rng, wide).neighbour for _ in range(3000)]
    smaller = [d for d in smaller if d is not None]
    assert [dataclasses.replace(d, scale=0.0) for d in smaller] == [
        dataclasses.replace(d, scale=0.0) for d in made
    ]
    wide_scale = np.array([d.scale for d in smaller])
    np.testing.assert_allclose(wide_scale, 0.4 + (scale - 0.8) / 0.45 * 0.85, rtol=1e-9)
    assert wide_scale.min() < 0.45 and (wide_scale < 0.8).mean() > 0.4


def test_pipeline_pastes_neighbours_from_other_records_and_counts_the_missed():
    def first_batches(prob: float, data: LandmarkDataset) -> np.ndarray:
        augment = AugmentConfig(neighbour_prob=prob, neighbour_front_prob=0.0)
        return _first_batches(augment, data, seed=3)

    figure = _masked_blob_sample()
    data = _MaskedFigures(figure)
    once = first_batches(1.0, data)
    np.testing.assert_array_equal(once, first_batches(1.0, _MaskedFigures(figure)))  # seeded
    alone = first_batches(0.0, _MaskedFigures(figure))
    changed = np.abs(once - alone).reshape(12, -1).max(axis=1) > 0.1
    # Every third record has no mask, so a third of the people, and a third of the neighbours
    # drawn, cannot be pasted; the rest can.
    assert 3 <= changed.sum() <= 10
    assert data.neighbours_missed.count >= 2
    assert "no person mask" in data.neighbours_missed.reasons[0]


# ------------------------------------------------------------------ teacher scores (issue 24)

# A teacher score per blob; 1.3 and -0.2 lie outside [0, 1] and are clipped.
_SCORES = np.linspace(0.35, 1.0, 16)
_SCORES[[3, 12]] = (1.3, -0.2)


def _scored_sample(sample: Sample | None = None) -> Sample:
    return dataclasses.replace(sample or _blob_sample(), scores=_SCORES)


def test_teacher_scores_follow_the_flip_into_the_weights():
    sample = _scored_sample()
    np.testing.assert_array_equal(sample.scores[[3, 12]], [1.0, 0.0])  # clipped on reading
    codec = HeatmapCodec((64, 64), (16, 16), sigma=1.0)
    params = AugmentParams(scale=1.1, rotation=10.0, flip=True)
    teacher = TeacherScoresConfig(use="weight", floor=0.2, power=2.0)
    base = {"codec": codec, "skeleton": MPII16, "normalise": Normalisation(), "params": params}
    _, heatmaps, weights = make_example(sample, teacher=teacher, **base)
    _, plain_maps, plain = make_example(sample, **base)
    perm = MPII16.flip_permutation()
    assert landmark_order(MPII16, params).tolist() == perm.tolist()
    # Crop landmark i is the sample's perm[i]: its flag and its score go with it.
    clipped = np.clip(_SCORES, 0.0, 1.0)
    expected = sample.visible[perm] * (0.2 + 0.8 * clipped[perm] ** 2)
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    assert plain.tolist() == sample.visible[perm].astype(float).tolist()  # all inside the crop
    # Right ankle (0) <-> left ankle (5): the flipped crop's 0 weighs the left ankle's score.
    assert weights[0] == pytest.approx(0.2 + 0.8 * clipped[5] ** 2)
    assert weights[5] == 0.0  # the hidden right ankle, now the left one: 0 whatever its score
    assert weights[perm.tolist().index(12)] == pytest.approx(0.2)  # score -0.2 -> 0 -> floor
    np.testing.assert_array_equal(heatmaps, plain_maps)  # use: weight leaves the targets
    # use: target scales each visible point's Gaussian by the same weight, loss weight as before.
    target = TeacherScoresConfig(use="target", floor=0.2, power=2.0)
    _, soft_maps, soft_weights = make_example(sample, teacher=target, **base)
    np.testing.assert_array_equal(soft_weights, plain)
    np.testing.assert_allclose(soft_maps, plain_maps * expected, rtol=1e-6, atol=1e-7)
    assert score_weights(None, teacher) is None


def test_without_teacher_scores_the_targets_are_the_same_arrays_as_before():
    codec = HeatmapCodec((64, 64), (16, 16), sigma=1.0)
    params = AugmentParams(scale=0.9, rotation=-15.0, flip=True)
    base = {"codec": codec, "skeleton": MPII16, "normalise": Normalisation(), "params": params}
    blob = _blob_sample()  # no scores, as a drawn figure or a human-labelled record
    # What make_example always made: the codec's targets from the crop's points and flags.
    crop, _, points, visible = crop_sample(blob, 64, MPII16, params)
    before_maps, before_weights = codec.encode(points, visible)
    weight = TeacherScoresConfig(use="weight", floor=0.2, power=2.0)
    cases = [
        (_scored_sample(blob), None),  # scores on record, no option
        (_scored_sample(blob), TeacherScoresConfig()),  # the default: use none
        (blob, weight),  # option on, a record without scores
        (blob, TeacherScoresConfig(use="target")),
    ]
    for sample, teacher in cases:
        image, heatmaps, weights = make_example(sample, teacher=teacher, **base)
        np.testing.assert_array_equal(image, Normalisation()(crop))
        np.testing.assert_array_equal(heatmaps, before_maps)
        np.testing.assert_array_equal(weights, before_weights)
        assert weights.dtype == before_weights.dtype and heatmaps.dtype == before_maps.dtype
    assert set(before_weights.tolist()) == {0.0, 1.0}  # visible 1, hidden 0


class _ScoredFigures(LandmarkDataset):
    """One blob figure, odd records with teacher scores, even ones without (drawn figures)."""

    skeleton = MPII16

    def __init__(self, figure: Sample) -> None:
        self.figure = figure

    def __len__(self) -> int:
        return 4

    def load(self, index: int) -> Sample:
        scores = _SCORES if index % 2 else None
        return dataclasses.replace(self.figure, id=f"figure{index}", scores=scores)


def test_pipeline_packs_the_teacher_weights_and_counts_records_without_scores():
    from training.data.pipeline import training_dataset

    def weights(teacher: TeacherScoresConfig | None, data: LandmarkDataset) -> np.ndarray:
        ds = training_dataset(
            data,
            codec=HeatmapCodec((64, 64), (16, 16), sigma=1.0),
            normalise=Normalisation(),
            augment=AugmentConfig(enabled=False),  # no flip: crop order is the sample's
            batch_size=4,
            num_stacks=1,
            seed=0,
            deterministic=True,
            teacher=teacher,
        )
        _, (targets,) = next(iter(ds))
        return targets.numpy()[:, 0, 0, 16:]  # (4, K): the packed weight channels

    figure = _blob_sample()
    data = _ScoredFigures(figure)
    teacher = TeacherScoresConfig(use="weight", floor=0.5, power=1.0)
    got = weights(teacher, data)
    off = weights(None, _ScoredFigures(figure))
    scored = figure.visible * (0.5 + 0.5 * np.clip(_SCORES, 0, 1))
    plain = figure.visible.astype(np.float32)
    for row in got:  # each record's weights: scored (odd records) or as before (even ones)
        assert np.allclose(row, scored, rtol=1e-6) or np.array_equal(row, plain)
    assert sum(np.array_equal(row, plain) for row in got) == 2
    assert all(np.array_equal(row, plain) for row in off)
    assert data.unscored.count >= 2 and "figure" in data.unscored.reasons[0]
