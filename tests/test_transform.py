import cv2
import numpy as np
import pytest

from edge.transform import (
    CropBox,
    apply_affine,
    box_from_points,
    crop_matrix,
    full_frame_box,
    invert_affine,
    warp_crop,
)


def test_box_edges_map_to_crop_pixel_edges():
    m = crop_matrix(CropBox((50.0, 40.0), 20.0), (64, 64))
    corners = np.array([[40.0, 30.0], [60.0, 50.0], [50.0, 40.0]])
    np.testing.assert_allclose(apply_affine(m, corners), [[-0.5, -0.5], [63.5, 63.5], [31.5, 31.5]])


def test_inverse_round_trip_with_rotation_and_scale():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 500, size=(30, 2))
    for rotation in (-60, -7.5, 0, 33, 90):
        m = crop_matrix(CropBox((210.5, 130.25), 173.0, rotation), (256, 256))
        np.testing.assert_allclose(
            apply_affine(invert_affine(m), apply_affine(m, pts)), pts, atol=1e-9
        )


def test_rotation_turns_content_counter_clockwise_like_opencv():
    box = CropBox((100.0, 100.0), 100.0, 30.0)
    ours = crop_matrix(box, (100, 100))
    theirs = cv2.getRotationMatrix2D((100.0, 100.0), 30.0, 1.0)
    theirs[:, 2] += (99 / 2.0) - 100.0
    np.testing.assert_allclose(ours, theirs, atol=1e-9)


def test_warp_crop_moves_a_bright_pixel_where_the_matrix_says():
    image = np.zeros((120, 160, 3), np.uint8)
    image[70, 90] = 255
    box = CropBox((80.0, 60.0), 64.0, 20.0)
    crop, m = warp_crop(image, box, (128, 128))
    expected = apply_affine(m, np.array([90.0, 70.0]))
    y, x = np.unravel_index(crop[..., 0].astype(float).argmax(), crop.shape[:2])
    assert abs(x - expected[0]) <= 1 and abs(y - expected[1]) <= 1


def test_boxes_from_points_and_frames():
    box = box_from_points(np.array([[10, 20], [30, 60], [99, 99]]), np.array([1, 1, 0]), margin=1.5)
    assert box.center == (20.0, 40.0) and box.size == pytest.approx(60.0)
    assert box_from_points(np.zeros((3, 2)), np.zeros(3)) is None
    frame = full_frame_box(640, 480)
    assert frame.center == (319.5, 239.5) and frame.size == 640
    with pytest.raises(ValueError):
        crop_matrix(CropBox((0, 0), 0), (8, 8))
