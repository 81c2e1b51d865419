"""edge.boxes: the one box overlap the finders' suppression, the tracker and the scores share."""

from __future__ import annotations

import numpy as np
import pytest

from edge.boxes import iou, iou_matrix


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
