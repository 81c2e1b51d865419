"""A built-in synthetic clip: a figure walking across the frame and waving, drawn procedurally.

It lets ``python -m edge.live --source demo`` run on any machine, with no camera or sample
file. The figure's 16 joints follow the MPII order of :data:`edge.skeletons.MPII16`, and
:func:`demo_joints` returns them, so the clip doubles as a moving target with known truth.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from .base import Frame, FrameSource

DEMO_FPS = 30.0
DEMO_FRAMES = 150  # five seconds: one walk across the frame

# MPII joint indices.
R_ANK, R_KNE, R_HIP, L_HIP, L_KNE, L_ANK, PELVIS, THORAX, NECK, HEAD = range(10)
R_WRI, R_ELB, R_SHO, L_SHO, L_ELB, L_WRI = range(10, 16)


def _limb(start: np.ndarray, angle_deg: float, length: float) -> np.ndarray:
    """End of a segment hanging from ``start``; angle 0 points straight down, positive forward."""
    a = np.deg2rad(angle_deg)
    return start + length * np.array([np.sin(a), np.cos(a)])


def demo_joints(index: int, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """(16, 2) image coordinates of the figure's joints in frame ``index`` (MPII order)."""
    w, h = size
    t = (index % DEMO_FRAMES) / DEMO_FRAMES  # 0..1 over one walk
    height = 0.8 * h  # standing height in pixels
    phase = 2 * np.pi * 3.0 * t  # three strides per walk
    j = np.zeros((16, 2))
    bob = 0.01 * height * np.cos(2 * phase)
    j[PELVIS] = (w * (0.2 + 0.6 * t), h * 0.52 + bob)
    j[THORAX] = j[PELVIS] + (0.02 * height, -0.29 * height)
    j[NECK] = j[THORAX] + (0.005 * height, -0.05 * height)
    j[HEAD] = j[NECK] + (0.01 * height, -0.125 * height)
    # Seen from the front-left: the person's right is on the image left.
    half_shoulder, half_hip = 0.1 * height, 0.065 * height
    j[R_SHO] = j[THORAX] + (-half_shoulder, 0.02 * height)
    j[L_SHO] = j[THORAX] + (half_shoulder, 0.02 * height)
    j[R_HIP] = j[PELVIS] + (-half_hip, 0)
    j[L_HIP] = j[PELVIS] + (half_hip, 0)
    # A side-stepping gait: the legs open and close in the image plane, knees flexing in turn.
    spread = 6 + 12 * (0.5 + 0.5 * np.sin(phase))
    j[R_KNE] = _limb(j[R_HIP], -spread, 0.235 * height)
    j[R_ANK] = _limb(j[R_KNE], -spread + 12 * max(0.0, np.sin(phase)), 0.235 * height)
    j[L_KNE] = _limb(j[L_HIP], spread, 0.235 * height)
    j[L_ANK] = _limb(j[L_KNE], spread - 12 * max(0.0, -np.sin(phase)), 0.235 * height)
    # The right arm swings at the side; the left arm waves overhead.
    swing = 15 + 20 * (0.5 + 0.5 * np.sin(phase))
    j[R_ELB] = _limb(j[R_SHO], -swing, 0.165 * height)
    j[R_WRI] = _limb(j[R_ELB], -swing + 25, 0.15 * height)
    wave = 30 * np.sin(2 * np.pi * 6.0 * t)
    j[L_ELB] = _limb(j[L_SHO], 115, 0.165 * height)
    j[L_WRI] = _limb(j[L_ELB], 170 + wave, 0.15 * height)
    return j


def _capsule(img: np.ndarray, a: np.ndarray, b: np.ndarray, thick: float, colour) -> None:
    pa = (int(round(a[0])), int(round(a[1])))
    pb = (int(round(b[0])), int(round(b[1])))
    cv2.line(img, pa, pb, colour, max(1, int(round(thick))), cv2.LINE_AA)
    for p in (pa, pb):
        cv2.circle(img, p, max(1, int(round(thick / 2))), colour, -1, cv2.LINE_AA)


@functools.lru_cache(maxsize=4)
def _background(size: tuple[int, int]) -> np.ndarray:
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    # A wall with a soft gradient and a floor, so the frame is not a flat colour.
    ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    wall = np.array([170, 180, 190], np.float32) * (0.8 + 0.2 * ramp)
    img[:] = wall.astype(np.uint8)
    floor = int(h * 0.9)
    img[floor:] = (90, 110, 130)
    cv2.line(img, (0, floor), (w, floor), (60, 70, 80), 2)
    return img


def render_demo_frame(index: int, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """Frame ``index`` of the demo clip, HxWx3 BGR uint8."""
    img = _background(size).copy()
    j = demo_joints(index, size)
    height = 0.8 * size[1]
    skin, shirt, trousers = (120, 160, 210), (60, 90, 200), (90, 60, 40)
    far_shade = 0.75  # the figure's right side is further from the light
    dim = tuple(int(c * far_shade) for c in trousers)
    _capsule(img, j[R_HIP], j[R_KNE], 0.075 * height, dim)
    _capsule(img, j[R_KNE], j[R_ANK], 0.058 * height, dim)
    _capsule(img, j[L_HIP], j[L_KNE], 0.075 * height, trousers)
    _capsule(img, j[L_KNE], j[L_ANK], 0.058 * height, trousers)
    torso = np.array([j[R_SHO], j[L_SHO], j[L_HIP], j[R_HIP]])
    cv2.fillConvexPoly(img, np.round(torso).astype(np.int32), shirt, cv2.LINE_AA)
    _capsule(img, j[THORAX], j[NECK], 0.045 * height, skin)
    for sho, elb, wri in ((R_SHO, R_ELB, R_WRI), (L_SHO, L_ELB, L_WRI)):
        _capsule(img, j[sho], j[elb], 0.05 * height, shirt)
        _capsule(img, j[elb], j[wri], 0.04 * height, skin)
    axis = j[HEAD] - j[NECK]
    centre = j[NECK] + 0.5 * axis
    length = float(np.linalg.norm(axis))
    angle = float(np.degrees(np.arctan2(axis[1], axis[0])))
    cv2.ellipse(
        img,
        (int(round(centre[0])), int(round(centre[1]))),
        (int(length * 0.55), int(length * 0.42)),
        angle,
        0,
        360,
        skin,
        -1,
        cv2.LINE_AA,
    )
    # A little deterministic sensor noise, so the clip exercises smoothing like a camera does.
    brighten, darken = _noise(size, index % _NOISE_FIELDS)
    return cv2.subtract(cv2.add(img, brighten), darken)  # saturating uint8 arithmetic


_NOISE_FIELDS = 8


@functools.lru_cache(maxsize=_NOISE_FIELDS)
def _noise(size: tuple[int, int], which: int) -> tuple[np.ndarray, np.ndarray]:
    """Grey noise (sigma 3) split into its positive and negative parts, as uint8 images."""
    rng = np.random.default_rng(which)
    n = np.repeat(rng.normal(0, 3, (size[1], size[0], 1)).round(), 3, axis=2)
    return np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8)


class DemoSource(FrameSource):
    """The demo clip, rendered on the fly at ``size``; ``loop`` replays it forever."""

    name = "demo"
    fps = DEMO_FPS

    def __init__(self, *, size: tuple[int, int] = (640, 480), loop: bool = False) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.loop = loop
        self._count = 0

    def read(self) -> Frame | None:
        if self._count >= DEMO_FRAMES and not self.loop:
            return None
        frame = Frame(
            render_demo_frame(self._count, self.size), self._count / DEMO_FPS, self._count
        )
        self._count += 1
        return frame
