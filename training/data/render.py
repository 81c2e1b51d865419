"""Procedural drawing shared by the synthetic datasets: textures, clutter, occluders, camera effects.

Everything draws with OpenCV on uint8 images and takes its randomness from a
``numpy.random.Generator``, so a synthetic sample is a pure function of its seed. Textures
are made at low resolution and resized up, which keeps a 256x256 image at a few ms.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.skeletons import Skeleton

Rng = np.random.Generator


def colour(rng: Rng, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    c = rng.integers(lo, hi, size=3)
    return (int(c[0]), int(c[1]), int(c[2]))


def jitter(rng: Rng, base: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    c = np.clip(np.asarray(base, float) + rng.normal(0, amount, 3), 0, 255)
    return (int(c[0]), int(c[1]), int(c[2]))


def texture(rng: Rng, height: int, width: int, base: tuple[int, int, int]) -> np.ndarray:
    """An HxWx3 uint8 pattern around ``base``: flat, gradient, stripes, checks or blotches."""
    kind = rng.choice(5, p=[0.3, 0.2, 0.2, 0.1, 0.2])
    small = 32
    base_f = np.asarray(base, np.float32)
    if kind == 0:  # flat, with a little grain so it is not a perfect plateau
        t = np.broadcast_to(base_f, (small, small, 3)) + rng.normal(0, 4, (small, small, 1))
    elif kind == 1:  # two-colour linear gradient
        other = np.asarray(jitter(rng, base, 60), np.float32)
        a = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:small, 0:small] / (small - 1)
        g = (np.cos(a) * xx + np.sin(a) * yy)[..., None]
        g = (g - g.min()) / max(float(np.ptp(g)), 1e-6)
        t = base_f * (1 - g) + other * g
    elif kind in (2, 3):  # stripes or checks of a second colour
        other = np.asarray(colour(rng), np.float32)
        period = rng.uniform(3, 12)
        a = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:small, 0:small].astype(np.float32)
        u = np.cos(a) * xx + np.sin(a) * yy
        s = np.sin(2 * np.pi * u / period)
        if kind == 3:
            s = s * np.sin(2 * np.pi * (-np.sin(a) * xx + np.cos(a) * yy) / period)
        m = (s > 0).astype(np.float32)[..., None]
        t = base_f * (1 - m) + other * m
    else:  # blotches: smooth random field
        n = int(rng.integers(3, 9))
        field = rng.normal(0, 1, (n, n, 1)).astype(np.float32)
        field = cv2.resize(field, (small, small), interpolation=cv2.INTER_CUBIC)[..., None]
        other = np.asarray(jitter(rng, base, 50), np.float32)
        w = np.clip(field * 0.5 + 0.5, 0, 1)
        t = base_f * (1 - w) + other * w
    t = np.clip(t, 0, 255).astype(np.uint8)
    return cv2.resize(t, (width, height), interpolation=cv2.INTER_LINEAR)


def random_polygon(rng: Rng, center: np.ndarray, radius: float, n: int | None = None) -> np.ndarray:
    n = int(rng.integers(3, 9)) if n is None else n
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = radius * rng.uniform(0.5, 1.0, n)
    pts = center + np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)
    return np.round(pts).astype(np.int32)


def draw_shape(rng: Rng, mask: np.ndarray, center: np.ndarray, radius: float) -> None:
    """Fill one random shape (ellipse, rectangle, polygon or thick line) with 255 in ``mask``."""
    kind = rng.integers(4)
    c = (int(round(center[0])), int(round(center[1])))
    r = max(float(radius), 2.0)
    if kind == 0:
        axes = (int(r), int(r * rng.uniform(0.3, 1.0)))
        cv2.ellipse(mask, c, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    elif kind == 1:
        w, h = r * rng.uniform(0.4, 1.0), r * rng.uniform(0.4, 1.0)
        box = ((c[0], c[1]), (2 * w, 2 * h), float(rng.uniform(0, 180)))
        cv2.fillConvexPoly(mask, np.round(cv2.boxPoints(box)).astype(np.int32), 255)
    elif kind == 2:
        cv2.fillPoly(mask, [random_polygon(rng, np.asarray(c, float), r)], 255)
    else:
        a = rng.uniform(0, np.pi)
        d = np.array([np.cos(a), np.sin(a)]) * r
        p0 = np.round(np.asarray(c) - d).astype(int)
        p1 = np.round(np.asarray(c) + d).astype(int)
        thick = max(1, int(r * rng.uniform(0.1, 0.4)))
        cv2.line(mask, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), 255, thick)


def paste(image: np.ndarray, mask: np.ndarray, fill: np.ndarray | tuple[int, int, int]) -> None:
    """Copy ``fill`` (an image or a colour) into ``image`` where ``mask`` is set."""
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return
    roi, m = image[y : y + h, x : x + w], mask[y : y + h, x : x + w]
    # OpenCV's masked ops write into the ROI view in place and are ~10x faster than NumPy's.
    if isinstance(fill, tuple):
        cv2.subtract(roi, roi, dst=roi, mask=m)
        cv2.add(roi, (float(fill[0]), float(fill[1]), float(fill[2]), 0.0), dst=roi, mask=m)
    else:
        cv2.copyTo(fill[y : y + h, x : x + w], m, roi)


def background(rng: Rng, height: int, width: int) -> np.ndarray:
    """A cluttered scene: a textured base plus random textured shapes."""
    img = texture(rng, height, width, colour(rng))
    size = max(height, width)
    n_shapes = int(rng.integers(2, 14))
    mask = np.zeros((height, width), np.uint8)
    for _ in range(n_shapes):
        mask[:] = 0
        center = rng.uniform([0, 0], [width, height])
        draw_shape(rng, mask, center, size * rng.uniform(0.03, 0.3))
        fill = texture(rng, height, width, colour(rng)) if rng.random() < 0.4 else colour(rng)
        paste(img, mask, fill)
    return img


def capsule(mask: np.ndarray, p0: np.ndarray, p1: np.ndarray, thickness: float, value: int) -> None:
    """A thick line with round ends (a limb) from p0 to p1."""
    t = max(1, int(round(thickness)))
    cv2.line(
        mask,
        (int(round(p0[0])), int(round(p0[1]))),
        (int(round(p1[0])), int(round(p1[1]))),
        int(value),
        t,
        cv2.LINE_8,
    )
    r = max(1, t // 2)
    for p in (p0, p1):
        cv2.circle(mask, (int(round(p[0])), int(round(p[1]))), r, int(value), -1)


def occluders(
    rng: Rng, image: np.ndarray, targets: np.ndarray, size: float, count: int
) -> np.ndarray:
    """Draw ``count`` opaque objects near random ``targets`` points; return their union mask."""
    h, w = image.shape[:2]
    union = np.zeros((h, w), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    for _ in range(count):
        mask[:] = 0
        center = targets[rng.integers(len(targets))] + rng.normal(0, size * 0.3, 2)
        draw_shape(rng, mask, center, size * rng.uniform(0.4, 1.0))
        fill = texture(rng, h, w, colour(rng)) if rng.random() < 0.5 else colour(rng)
        paste(image, mask, fill)
        union |= mask
    return union


def points_inside(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """True where a point lies on the image (pixel-centre convention: [-0.5, W - 0.5])."""
    p = np.asarray(points, float)
    return (
        (p[:, 0] >= -0.5) & (p[:, 0] <= width - 0.5) & (p[:, 1] >= -0.5) & (p[:, 1] <= height - 0.5)
    )


def mask_at(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``mask`` looked up at the pixel nearest each point (False off the image)."""
    h, w = mask.shape[:2]
    ij = np.round(np.asarray(points, float)).astype(int)
    ok = (ij[:, 0] >= 0) & (ij[:, 0] < w) & (ij[:, 1] >= 0) & (ij[:, 1] < h)
    out = np.zeros(len(ij), bool)
    out[ok] = mask[ij[ok, 1], ij[ok, 0]] > 0
    return out


def occlude(
    rng: Rng,
    image: np.ndarray,
    points: np.ndarray,
    *,
    chance: float,
    size: float,
    label_occluded: bool = False,
) -> np.ndarray:
    """Which ``points`` keep a usable ground truth after, with probability ``chance``, one or
    two occluders of about ``size`` pixels are drawn over them in ``image``.

    A point is usable when it lies on the image and, unless ``label_occluded``, no occluder
    covers it (the MPII reading of visibility).
    """
    h, w = image.shape[:2]
    visible = points_inside(points, w, h)
    if rng.random() < chance:
        covered = occluders(rng, image, points, size, int(rng.integers(1, 3)))
        if not label_occluded:
            visible &= ~mask_at(covered, points)
    return visible


def camera_effects(rng: Rng, image: np.ndarray) -> np.ndarray:
    """Uneven lighting, blur (Gaussian or motion), contrast/brightness and sensor noise."""
    h, w = image.shape[:2]
    img = image.astype(np.float32)
    # Smooth illumination field.
    light = rng.uniform(0.6, 1.3, (2, 2)).astype(np.float32)
    img *= cv2.resize(light, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
    img = img * rng.uniform(0.7, 1.2) + rng.uniform(-25, 25)
    u = rng.random()
    if u < 0.45:
        s = rng.uniform(0.4, 1.8)
        img = cv2.GaussianBlur(img, (0, 0), s)
    elif u < 0.6:
        length = int(rng.integers(3, 10))
        k = np.zeros((length, length), np.float32)
        k[length // 2, :] = 1.0 / length
        rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), rng.uniform(0, 180), 1)
        k = cv2.warpAffine(k, rot, (length, length))
        img = cv2.filter2D(img, -1, k / max(float(k.sum()), 1e-6))
    else:  # always soften the hard drawing edges a little
        img = cv2.GaussianBlur(img, (3, 3), 0.6)
    sigma = rng.uniform(0, 12)
    if sigma > 1:
        img += rng.standard_normal((h, w, 1), dtype=np.float32) * sigma
    return np.clip(img, 0, 255).astype(np.uint8)


def draw_landmarks(
    image: np.ndarray,
    points: np.ndarray,
    visible: np.ndarray,
    skeleton: Skeleton,
    box=None,
) -> np.ndarray:
    """A copy of ``image`` with the skeleton: visible points filled green, hidden ones hollow red.

    Left-side edges are drawn in blue and right-side in orange, so a left/right swap shows.
    """
    out = image.copy()
    scale = max(1, int(round(max(out.shape[:2]) / 256)))
    p = np.asarray(points, float)
    for a, b in skeleton.edges:
        names = skeleton.landmarks[a] + skeleton.landmarks[b]
        c = (
            (255, 128, 0)
            if "left" in names
            else (0, 140, 255)
            if "right" in names
            else (0, 220, 220)
        )
        cv2.line(
            out,
            tuple(np.round(p[a]).astype(int)),
            tuple(np.round(p[b]).astype(int)),
            c,
            scale,
            cv2.LINE_AA,
        )
    for q, v in zip(p, visible, strict=True):
        center = tuple(np.round(q).astype(int))
        if v:
            cv2.circle(out, center, 2 * scale, (0, 255, 0), -1, cv2.LINE_AA)
        else:
            cv2.circle(out, center, 2 * scale, (0, 0, 255), 1, cv2.LINE_AA)
    if box is not None:
        half = box.size / 2
        rect = ((box.center[0], box.center[1]), (box.size, box.size), -box.rotation)
        cv2.polylines(
            out, [np.round(cv2.boxPoints(rect)).astype(np.int32)], True, (255, 255, 255), 1
        )
        del half
    return out


def contact_sheet(
    samples: list, skeleton: Skeleton, path: str | Path, tile: int = 256, cols: int = 4
) -> Path:
    """Save a grid of samples with their landmarks drawn; returns the path written."""
    tiles = []
    for s in samples:
        drawn = draw_landmarks(s.image, s.points, s.visible, skeleton, s.box)
        h, w = drawn.shape[:2]
        f = tile / max(h, w)
        drawn = cv2.resize(drawn, (max(1, int(w * f)), max(1, int(h * f))))
        canvas = np.zeros((tile, tile, 3), np.uint8)
        canvas[: drawn.shape[0], : drawn.shape[1]] = drawn
        tiles.append(canvas)
    while len(tiles) % cols:
        tiles.append(np.zeros((tile, tile, 3), np.uint8))
    rows = [np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.vstack(rows)):
        raise OSError(f"cannot write {path}")
    return path
