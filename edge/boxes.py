"""Axis-aligned boxes as corners (x0, y0, x1, y1): their overlap.

One place for intersection over union and the greedy suppression built on it, which the
finders' decoding, the label tool's merging of finds, the multi-person
tracker's matching and the finder benchmarks all share. It imports nothing from ``edge`` so
that any module may use it without an import circle.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def box_corners(box) -> np.ndarray:
    """(x0, y0, x1, y1) of the axis-aligned rectangle around a (possibly turned) crop box
    (an :class:`edge.transform.CropBox`: its centre, side and rotation in degrees)."""
    a = np.deg2rad(box.rotation)
    half = box.size / 2.0 * (abs(np.cos(a)) + abs(np.sin(a)))
    cx, cy = box.center
    return np.array([cx - half, cy - half, cx + half, cy + half], np.float64)


def square_corners(box) -> np.ndarray:
    """(x0, y0, x1, y1) of the upright square of a crop box's side around its centre, its
    rotation left out (how the label tool and the finder benchmarks compare crops)."""
    half = box.size / 2.0
    cx, cy = box.center
    return np.array([cx - half, cy - half, cx + half, cy + half], np.float64)


def iou_matrix(
    a: Sequence[np.ndarray] | np.ndarray, b: Sequence[np.ndarray] | np.ndarray
) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4): an (N, M) array."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(axis=-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) with each of ``boxes`` (N, 4): an (N,) array."""
    return iou_matrix(box, boxes)[0]


def suppress(corners: np.ndarray, max_iou: float, groups: np.ndarray | None = None) -> np.ndarray:
    """Indices of the boxes (N, 4), in order, each left out that overlaps an earlier kept
    box of its group (``groups``, (N,): e.g. class ids; None: one group) by IoU above
    ``max_iou``: greedy non-maximum suppression, the earlier box the more trusted."""
    corners = np.asarray(corners, np.float64).reshape(-1, 4)
    if max_iou >= 1.0:
        return np.arange(len(corners))
    groups = np.zeros(len(corners), np.int64) if groups is None else np.asarray(groups)
    kept: list[int] = []
    for i in range(len(corners)):
        same = [m for m in kept if groups[m] == groups[i]]
        if not same or iou(corners[i], corners[same]).max() <= max_iou:
            kept.append(i)
    return np.asarray(kept, dtype=np.int64)
