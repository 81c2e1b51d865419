"""edge.boxes: the one box overlap and greedy suppression the finders, the label tool, the
tracker and the scores share."""

from __future__ import annotations

import numpy as np
import pytest

from edge.boxes import iou, iou_matrix, square_corners, suppress
from edge.transform import CropBox


def test_overlap_of_known_boxes():
    a = np.array([0.0, 0.0, 10.0, 10.0])
    others = np.array(
        [
            [0.0, 0.0, 10.0, 10.0],  # the same box
            [5.0, 0.0, 15.0, 10.0],  # half of each: 50 / 150
            [2.5, 2.5, 7.5, 7.5],  # inside: a quarter of the area
            [10.0, 0.0, 20.0, 10.0],  # touching edges share nothing
            [20.0, 20.0, 30.0, 30.0],  # apart
        ]
    )
    np.testing.assert_allclose(iou(a, others), [1.0, 1 / 3, 0.25, 0.0, 0.0])


def test_every_pair_and_empty_sides():
    a = [np.array([0.0, 0.0, 10.0, 10.0]), np.array([5.0, 0.0, 15.0, 10.0])]
    m = iou_matrix(a, a)
    assert m.shape == (2, 2)
    np.testing.assert_allclose(m, [[1.0, 1 / 3], [1 / 3, 1.0]])
    assert iou_matrix([], a).shape == (0, 2) and iou_matrix(a, []).shape == (2, 0)


def test_a_degenerate_box_overlaps_nothing():
    """A zero-area box (a single landmark's extent) gives 0, not a division by zero."""
    point = np.array([5.0, 5.0, 5.0, 5.0])
    assert iou(point, np.array([[0.0, 0.0, 10.0, 10.0]]))[0] == pytest.approx(0.0)
    assert iou(point, point[None])[0] == pytest.approx(0.0)


def test_suppression_keeps_the_earlier_of_two_overlapping_boxes_of_a_group():
    boxes = np.array(
        [
            [0.0, 0.0, 10.0, 10.0],
            [5.0, 0.0, 15.0, 10.0],  # IoU 1/3 with the first
            [1.0, 0.0, 11.0, 10.0],  # IoU 9/11 with the first
            [20.0, 20.0, 30.0, 30.0],  # apart
        ]
    )
    assert suppress(boxes, 0.5).tolist() == [0, 1, 3]
    assert suppress(boxes, 0.3).tolist() == [0, 3]  # 1/3 is above 0.3
    assert suppress(boxes, 1.0).tolist() == [0, 1, 2, 3]  # 1: nothing suppressed
    # Each group (a class) suppresses only its own: the third box is of another class.
    assert suppress(boxes, 0.3, np.array([0, 0, 1, 0])).tolist() == [0, 2, 3]
    assert suppress(np.zeros((0, 4)), 0.5).tolist() == []


def test_square_corners_leave_the_rotation_out():
    assert square_corners(CropBox((10.0, 20.0), 8.0, 30.0)).tolist() == [6.0, 16.0, 14.0, 24.0]
