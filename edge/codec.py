"""Heatmap codec: landmarks <-> Gaussian heatmaps. One convention for training, evaluation and edge.

Coordinates follow the pixel-centre convention of :mod:`edge.transform`. A heatmap of
``stride`` times lower resolution than the input crop has cell ``j`` centred on crop
coordinate ``(j + 0.5) * stride - 0.5``; that is, the crop and heatmap cover exactly the
same area. Encoding places the Gaussian's peak at the landmark's exact (sub-cell) position;
decoding takes the argmax and then refines it:

* ``"quarter"``: a quarter-cell step towards the higher neighbour on each axis (the
  paper's and Newell's decoding; HRNet's convention, with no extra +0.5);
* ``"dark"``: a second-order Taylor step on the log heatmap (Zhang et al., DARK, CVPR 2020),
  which recovers the exact sub-cell position of a Gaussian peak;
* ``"none"``: the argmax cell centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REFINEMENTS = ("quarter", "dark", "none")


def mirror_average(
    heatmaps: np.ndarray, mirrored: np.ndarray, permutation: np.ndarray
) -> np.ndarray:
    """The flip test: ``heatmaps`` (N, h, w, K) of crops averaged with ``mirrored``, those
    of the same crops mirrored left to right, mirrored back and their left/right channels
    swapped (``permutation``: :meth:`edge.skeletons.Skeleton.flip_permutation`). With cell
    ``j`` centred on crop x ``(j + 0.5) * stride - 0.5``, mirroring the heatmap array
    (``j -> w - 1 - j``) is exactly the crop's mirror (``x -> S - 1 - x``)."""
    return 0.5 * (heatmaps + mirrored[:, :, ::-1, :][..., permutation])


def crop_to_heatmap(points: np.ndarray, stride: float) -> np.ndarray:
    return (np.asarray(points, dtype=np.float64) + 0.5) / stride - 0.5


def heatmap_to_crop(points: np.ndarray, stride: float) -> np.ndarray:
    return (np.asarray(points, dtype=np.float64) + 0.5) * stride - 0.5


@dataclass(frozen=True)
class HeatmapCodec:
    """Pairs :meth:`encode` (landmarks -> target heatmaps) with :meth:`decode`.

    ``input_size`` and ``heatmap_size`` are (width, height). ``sigma`` is in heatmap cells.
    """

    input_size: tuple[int, int] = (256, 256)
    heatmap_size: tuple[int, int] = (64, 64)
    sigma: float = 1.5
    refine: str = "quarter"

    def __post_init__(self) -> None:
        if self.refine not in REFINEMENTS:
            raise ValueError(f"refine must be one of {REFINEMENTS}, got {self.refine!r}")
        sx = self.input_size[0] / self.heatmap_size[0]
        sy = self.input_size[1] / self.heatmap_size[1]
        if not np.isclose(sx, sy):
            raise ValueError(
                f"input {self.input_size} and heatmap {self.heatmap_size} strides differ"
            )

    @property
    def stride(self) -> float:
        return self.input_size[0] / self.heatmap_size[0]

    def encode(
        self, points: np.ndarray, visible: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Target heatmaps (H, W, K) float32 and per-landmark weights (K,) from crop points (K, 2).

        A landmark that is invisible, or whose peak lies outside the heatmap, gets an all-zero
        map and weight 0.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        k = len(pts)
        vis = np.ones(k, bool) if visible is None else np.asarray(visible).reshape(k) > 0
        w, h = self.heatmap_size
        hp = crop_to_heatmap(pts, self.stride)
        inside = (
            (hp[:, 0] >= -0.5) & (hp[:, 0] <= w - 0.5) & (hp[:, 1] >= -0.5) & (hp[:, 1] <= h - 0.5)
        )
        weights = (vis & inside & np.isfinite(hp).all(axis=1)).astype(np.float32)
        xs = np.arange(w, dtype=np.float64)
        ys = np.arange(h, dtype=np.float64)
        hp = np.nan_to_num(hp)
        gx = np.exp(-((xs[None, :] - hp[:, :1]) ** 2) / (2 * self.sigma**2))  # (K, W)
        gy = np.exp(-((ys[None, :] - hp[:, 1:]) ** 2) / (2 * self.sigma**2))  # (K, H)
        maps = gy[:, :, None] * gx[:, None, :] * weights[:, None, None]  # (K, H, W)
        return np.ascontiguousarray(maps.transpose(1, 2, 0), dtype=np.float32), weights

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Crop points (..., K, 2) and scores (..., K) from heatmaps (..., H, W, K)."""
        hm = np.asarray(heatmaps, dtype=np.float32)
        *lead, h, w, k = hm.shape
        flat = np.moveaxis(hm.reshape(-1, h * w, k), 1, 2)  # (N, K, H*W)
        idx = flat.argmax(axis=-1)
        scores = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
        iy, ix = np.divmod(idx, w)
        pts = np.stack([ix, iy], axis=-1).astype(np.float64)
        maps = flat.reshape(-1, k, h, w)
        if self.refine == "quarter":
            pts += 0.25 * _neighbour_sign(maps, ix, iy)
        elif self.refine == "dark":
            pts += _dark_offset(maps, ix, iy)
        pts = heatmap_to_crop(pts, self.stride)
        return pts.reshape(*lead, k, 2), scores.reshape(*lead, k)


def _at(maps: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """maps[n, k, y, x] for index arrays of shape (N, K), clamped at the borders."""
    n, k, h, w = maps.shape
    xc = np.clip(x, 0, w - 1)
    yc = np.clip(y, 0, h - 1)
    return maps[np.arange(n)[:, None], np.arange(k)[None, :], yc, xc]


def _neighbour_sign(maps: np.ndarray, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
    h, w = maps.shape[-2:]
    dx = np.sign(_at(maps, ix + 1, iy) - _at(maps, ix - 1, iy))
    dy = np.sign(_at(maps, ix, iy + 1) - _at(maps, ix, iy - 1))
    # At a border only one neighbour exists; don't step off the map.
    dx = np.where((ix > 0) & (ix < w - 1), dx, 0)
    dy = np.where((iy > 0) & (iy < h - 1), dy, 0)
    return np.stack([dx, dy], axis=-1)


def _dark_offset(maps: np.ndarray, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
    h, w = maps.shape[-2:]
    lg = np.log(np.maximum(maps, 1e-10))

    def v(dx: int, dy: int) -> np.ndarray:
        return _at(lg, ix + dx, iy + dy).astype(np.float64)

    c = v(0, 0)
    gx = (v(1, 0) - v(-1, 0)) / 2
    gy = (v(0, 1) - v(0, -1)) / 2
    hxx = v(1, 0) - 2 * c + v(-1, 0)
    hyy = v(0, 1) - 2 * c + v(0, -1)
    hxy = (v(1, 1) - v(1, -1) - v(-1, 1) + v(-1, -1)) / 4
    det = hxx * hyy - hxy**2
    ok = (det > 1e-12) & (hxx < 0) & (ix > 0) & (ix < w - 1) & (iy > 0) & (iy < h - 1)
    safe = np.where(ok, det, 1.0)
    ox = -(hyy * gx - hxy * gy) / safe
    oy = -(hxx * gy - hxy * gx) / safe
    off = np.stack([ox, oy], axis=-1)
    off = np.where(ok[..., None] & (np.abs(off) <= 1).all(axis=-1, keepdims=True), off, 0.0)
    # Where the Taylor step is unusable (flat or clipped peak), fall back to the quarter step.
    fallback = 0.25 * _neighbour_sign(maps, ix, iy)
    use = ok[..., None] & (np.abs(off) > 0).any(axis=-1, keepdims=True)
    return np.where(use, off, fallback)
