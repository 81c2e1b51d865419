import numpy as np
import pytest

from edge.codec import HeatmapCodec, crop_to_heatmap, heatmap_to_crop


def test_round_trip_within_a_tenth_of_a_pixel_with_dark_refinement():
    codec = HeatmapCodec(input_size=(256, 256), heatmap_size=(64, 64), sigma=1.5, refine="dark")
    rng = np.random.default_rng(0)
    points = rng.uniform(8, 247, size=(200, 2))
    heatmaps, weights = codec.encode(points)
    decoded, scores = codec.decode(heatmaps)
    assert weights.min() == 1
    assert np.abs(decoded - points).max() < 0.1
    assert scores.min() > 0.8


def test_grid_points_round_trip_exactly_with_quarter_refinement():
    codec = HeatmapCodec(input_size=(64, 64), heatmap_size=(16, 16), sigma=1.0)
    # Heatmap cell centres map to crop pixels (j + 0.5) * 4 - 0.5.
    cells = np.array([[3, 4], [10, 2], [7, 12]])
    points = heatmap_to_crop(cells, 4.0)
    decoded, _ = codec.decode(codec.encode(points)[0])
    np.testing.assert_allclose(decoded, points, atol=1e-6)


def test_quarter_step_moves_towards_the_higher_neighbour():
    codec = HeatmapCodec(input_size=(32, 32), heatmap_size=(8, 8), refine="quarter")
    hm = np.zeros((8, 8, 1), np.float32)
    hm[4, 3, 0] = 1.0
    hm[4, 4, 0] = 0.5  # right neighbour higher than left
    hm[3, 3, 0] = 0.2  # upper neighbour higher than lower
    pts, scores = codec.decode(hm)
    np.testing.assert_allclose(crop_to_heatmap(pts[0], 4.0), [3.25, 3.75])
    assert scores[0] == pytest.approx(1.0)


def test_invisible_and_outside_landmarks_get_empty_maps_and_zero_weight():
    codec = HeatmapCodec(input_size=(64, 64), heatmap_size=(16, 16))
    points = np.array([[10.0, 10.0], [200.0, 5.0], [20.0, 30.0]])
    heatmaps, weights = codec.encode(points, visible=np.array([1, 1, 0]))
    np.testing.assert_array_equal(weights, [1, 0, 0])
    assert heatmaps[..., 1].max() == 0 and heatmaps[..., 2].max() == 0
    assert heatmaps.shape == (16, 16, 3) and heatmaps.dtype == np.float32


def test_decode_keeps_leading_batch_dimensions():
    codec = HeatmapCodec(input_size=(64, 64), heatmap_size=(16, 16))
    rng = np.random.default_rng(1)
    batch = rng.random((2, 3, 16, 16, 5)).astype(np.float32)
    pts, scores = codec.decode(batch)
    assert pts.shape == (2, 3, 5, 2) and scores.shape == (2, 3, 5)
    single, _ = codec.decode(batch[1, 2])
    np.testing.assert_array_equal(single, pts[1, 2])


def test_rejects_unknown_refinement_and_mismatched_strides():
    with pytest.raises(ValueError):
        HeatmapCodec(refine="bilinear")
    with pytest.raises(ValueError):
        HeatmapCodec(input_size=(256, 128), heatmap_size=(64, 64))
