"""``synthetic-face``: procedurally drawn faces with the 68 iBUG landmarks.

Each sample is a pure function of ``(seed, split, index)``. A face is a 3D mean shape (68
landmarks plus forehead and ear points, built here from simple curves) that gets an
identity (face width, jaw length, eye spacing, nose length, mouth width, per-point jitter)
and an expression (mouth opening, smile, eye closure, raised brows), is turned by a head
pose (yaw up to +-60 degrees, pitch +-25, roll) and projected with a pinhole camera.

Landmarks are 3D-consistent, as in 300W-LP / AFLW2000-3D: at large yaw the far side of the
jaw is placed where its 3D point projects, behind the cheek. The image shows a skin-shaded
face, hair, ears, neck, eyes with irises, brows, nostrils, lips and mouth, sometimes
glasses, over a cluttered background, then occluders, blur and noise. A landmark is marked
invisible when an occluder covers it or it leaves the image (``label_occluded=True`` keeps
covered points visible, so a model is trained to place them too).

The box is square around the 68 landmarks, enlarged by ``margin`` (1.25, like the 300W
reader).

Preview and timing::

    python -m training.data.synthetic_face --preview face.png
"""

from __future__ import annotations

import sys

import cv2
import numpy as np

from edge.skeletons import IBUG68

from . import render
from .synthetic import SyntheticDataset, preview_main
from .synthetic_pose import SKIN_TONES

# Indices of the 68-point iBUG layout.
JAW = np.arange(0, 17)
R_BROW, L_BROW = np.arange(17, 22), np.arange(22, 27)
NOSE_BRIDGE, NOSE_BASE = np.arange(27, 31), np.arange(31, 36)
R_EYE, L_EYE = np.arange(36, 42), np.arange(42, 48)
OUTER_LIP, INNER_LIP = np.arange(48, 60), np.arange(60, 68)
N_FOREHEAD = 9
# Face-part classes (edge.parts.FACE_PARTS) of the class map render_sample can draw.
(
    BACKGROUND,
    SKIN,
    LEFT_BROW,
    RIGHT_BROW,
    LEFT_EYE,
    RIGHT_EYE,
    NOSE,
    UPPER_LIP,
    INNER_MOUTH,
    LOWER_LIP,
    HAIR,
) = range(11)


def _eye(cx: float, sign: int) -> np.ndarray:
    """Six eye points around (cx, -0.35); ``sign`` -1 for the subject's right (image left).

    iBUG order starts at the outer corner for the right eye and the inner corner for the
    left, going along the upper lid first.
    """
    half, lid = 0.19, 0.075
    outer, inner = cx + sign * half, cx - sign * half
    pts = [
        (outer, -0.35),
        (cx + sign * half * 0.35, -0.35 - lid),
        (cx - sign * half * 0.35, -0.35 - lid),
        (inner, -0.35),
        (cx - sign * half * 0.35, -0.35 + lid * 0.8),
        (cx + sign * half * 0.35, -0.35 + lid * 0.8),
    ]
    if sign == 1:  # left eye: inner corner first, then upper lid outwards
        pts = [pts[3], pts[2], pts[1], pts[0], pts[5], pts[4]]
    z = [0.12, 0.2, 0.22, 0.2, 0.2, 0.18]
    if sign == 1:
        z = [z[3], z[2], z[1], z[0], z[5], z[4]]
    return np.column_stack([np.asarray(pts), z])


def mean_shape() -> np.ndarray:
    """(68 + N_FOREHEAD + 2, 3) mean face: x to the image right, y down, z to the camera.

    Units: the outer eye corners are 1.3 apart. The extra points after the 68 landmarks
    are a forehead arc (face outline) and the two ears.
    """
    p = np.zeros((68, 3))
    phi = np.linspace(0, np.pi, 17)
    p[JAW, 0] = -0.95 * np.cos(phi) * (1 - 0.18 * np.sin(phi))
    p[JAW, 1] = -0.25 + 1.2 * np.sin(phi) ** 1.2
    p[JAW, 2] = -0.55 + 0.7 * np.sin(phi)
    t = np.linspace(0, 1, 5)
    p[R_BROW, 0] = -0.82 + 0.64 * t
    p[R_BROW, 1] = -0.58 - 0.1 * np.sin(np.pi * (0.2 + 0.8 * t))
    p[R_BROW, 2] = 0.05 + 0.2 * t
    p[L_BROW] = p[R_BROW][::-1] * [-1, 1, 1]
    p[NOSE_BRIDGE, 0] = 0.0
    p[NOSE_BRIDGE, 1] = np.linspace(-0.36, 0.12, 4)
    p[NOSE_BRIDGE, 2] = np.linspace(0.32, 0.68, 4)
    p[NOSE_BASE, 0] = np.linspace(-0.2, 0.2, 5)
    p[NOSE_BASE, 1] = [0.2, 0.24, 0.26, 0.24, 0.2]
    p[NOSE_BASE, 2] = [0.36, 0.44, 0.5, 0.44, 0.36]
    p[R_EYE] = _eye(-0.46, -1)
    p[L_EYE] = _eye(0.46, 1)
    # Outer lip: right corner (48) along the upper lip to the left corner (54), then back.
    upper = [(-0.4, 0.56), (-0.26, 0.49), (-0.1, 0.46), (0.0, 0.48), (0.1, 0.46), (0.26, 0.49)]
    lower = [(0.4, 0.56), (0.25, 0.66), (0.1, 0.7), (0.0, 0.71), (-0.1, 0.7), (-0.25, 0.66)]
    p[OUTER_LIP, :2] = upper + lower
    p[OUTER_LIP, 2] = [0.25, 0.36, 0.42, 0.44, 0.42, 0.36, 0.25, 0.34, 0.4, 0.42, 0.4, 0.34]
    inner = [(-0.33, 0.56), (-0.12, 0.545), (0.0, 0.55), (0.12, 0.545)]
    inner += [(0.33, 0.56), (0.12, 0.575), (0.0, 0.58), (-0.12, 0.575)]
    p[INNER_LIP, :2] = inner
    p[INNER_LIP, 2] = [0.28, 0.38, 0.4, 0.38, 0.28, 0.38, 0.4, 0.38]
    a = np.linspace(0.05, np.pi - 0.05, N_FOREHEAD)
    forehead = np.column_stack(
        [-0.92 * np.cos(a), -0.45 - 0.75 * np.sin(a), -0.35 + 0.5 * np.sin(a)]
    )
    ears = np.array([[-1.0, -0.15, -0.6], [1.0, -0.15, -0.6]])
    return np.vstack([p, forehead, ears])


MEAN_SHAPE = mean_shape()
FOREHEAD = np.arange(68, 68 + N_FOREHEAD)
EARS = (68 + N_FOREHEAD, 68 + N_FOREHEAD + 1)


def sample_shape(rng: np.random.Generator) -> np.ndarray:
    """A 3D face with a random identity and expression (same point layout as MEAN_SHAPE)."""
    p = MEAN_SHAPE.copy()
    # Identity.
    p[:, 0] *= rng.uniform(0.85, 1.15)
    lower_face = p[:, 1] > 0.1
    p[lower_face, 1] = 0.1 + (p[lower_face, 1] - 0.1) * rng.uniform(0.85, 1.2)
    eyes = np.r_[R_EYE, L_EYE, R_BROW, L_BROW]
    spread = rng.uniform(-0.06, 0.06)
    p[eyes, 0] += np.sign(p[eyes, 0]) * spread
    nose = np.r_[NOSE_BRIDGE[1:], NOSE_BASE]
    p[nose, 1] += rng.uniform(-0.05, 0.06) * np.linspace(0.3, 1, len(nose))
    p[nose, 2] *= rng.uniform(0.8, 1.25)
    mouth = np.r_[OUTER_LIP, INNER_LIP]
    p[mouth, 0] *= rng.uniform(0.8, 1.2)
    p[:68] += rng.normal(0, 0.012, (68, 3))

    # Expression.
    open_ = rng.uniform(0, 0.35) if rng.random() < 0.4 else 0.0
    jaw_drop = np.clip((p[JAW, 1] - 0.1) / 1.0, 0, 1)
    p[JAW, 1] += open_ * 0.8 * jaw_drop
    p[[55, 56, 57, 58, 59, 65, 66, 67], 1] += open_
    p[[49, 50, 51, 52, 53, 61, 62, 63], 1] -= open_ * 0.1
    smile = rng.uniform(-0.04, 0.12)
    for corner, side in ((48, -1), (54, 1), (60, -1), (64, 1)):
        p[corner, 1] -= smile
        p[corner, 0] += side * smile * 0.5
    closure = rng.uniform(0.6, 1.0) if rng.random() < 0.15 else rng.uniform(0, 0.3)
    for up, low in ((37, 41), (38, 40), (43, 47), (44, 46)):
        p[up, 1] += (p[low, 1] - p[up, 1]) * closure
    raise_ = rng.uniform(-0.04, 0.1)
    p[np.r_[R_BROW, L_BROW], 1] -= raise_
    return p


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def project(points: np.ndarray, rot: np.ndarray, distance: float) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole projection of rotated points (camera ``distance`` away); returns (xy, depth)."""
    q = points @ rot.T
    f = distance / (distance - q[:, 2])
    return q[:, :2] * f[:, None], q[:, 2]


def _poly(pts: np.ndarray) -> np.ndarray:
    return np.round(pts).astype(np.int32)


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0])), int(round(p[1]))


def draw_face(
    rng: np.random.Generator,
    img: np.ndarray,
    xy: np.ndarray,
    unit: float,
    yaw: float,
    parts: np.ndarray | None = None,
) -> None:
    """Paint the face whose projected points (MEAN_SHAPE layout, pixels) are ``xy``.

    ``parts``, an (H, W) uint8 array, receives each pixel's face-part class
    (:data:`edge.parts.FACE_PARTS`), painted in the same order as the picture so that what
    is in front wins. Drawing it takes no random numbers: the picture is the same either way.
    """
    if parts is None:
        parts = np.zeros(img.shape[:2], np.uint8)  # drawn and dropped: one code path
    h, w = img.shape[:2]
    skin = render.jitter(rng, SKIN_TONES[rng.integers(len(SKIN_TONES))], 12)
    hair = render.jitter(rng, (25, 35, 50), 25) if rng.random() < 0.8 else render.colour(rng)
    lt = max(1, int(round(unit * 0.03)))
    outline = np.r_[JAW, FOREHEAD[::-1]]
    center = xy[outline].mean(axis=0)

    # Hair mass behind the head and neck/shoulders below it.
    hair_mask = np.zeros((h, w), np.uint8)
    top = xy[FOREHEAD].mean(axis=0)
    long_hair = rng.random() < 0.35
    axes = (
        int(unit * rng.uniform(1.0, 1.25)),
        int(unit * (rng.uniform(1.2, 1.8) if long_hair else 1.0)),
    )
    hair_center = (top + center) / 2 if not long_hair else center + (center - top) * 0.2
    roll = float(np.degrees(np.arctan2(*(xy[JAW[16]] - xy[JAW[0]])[::-1])))
    cv2.ellipse(hair_mask, _pt(hair_center), axes, roll, 0, 360, 255, -1)
    neck_dir = xy[8] - xy[27]
    neck_dir = neck_dir / (np.linalg.norm(neck_dir) + 1e-9)
    clothes = render.texture(rng, h, w, render.colour(rng))
    body = np.zeros((h, w), np.uint8)
    chest = xy[8] + neck_dir * unit * 1.1
    cv2.ellipse(body, _pt(chest), (int(unit * 2.2), int(unit * 0.9)), roll, 180, 360, 255, -1)
    cv2.rectangle(body, _pt(chest - [unit * 2.2, 0]), _pt(chest + [unit * 2.2, unit * 3]), 255, -1)
    render.paste(img, hair_mask, hair)
    render.paste(img, body, clothes)
    parts[hair_mask > 0] = HAIR
    parts[body > 0] = BACKGROUND  # clothes
    neck = np.zeros((h, w), np.uint8)
    render.capsule(
        neck, xy[8] - neck_dir * unit * 0.4, xy[8] + neck_dir * unit * 0.9, unit * 1.0, 255
    )
    render.paste(img, neck, render.jitter(rng, skin, 8))
    parts[neck > 0] = BACKGROUND  # Helen's face skin stops at the jaw

    # Ears, then the face over them (a far ear ends up hidden behind the face).
    for ear in EARS:
        cv2.ellipse(
            img,
            _pt(xy[ear]),
            (max(1, int(unit * 0.14)), max(1, int(unit * 0.25))),
            roll,
            0,
            360,
            render.jitter(rng, skin, 10),
            -1,
        )
        cv2.ellipse(
            parts,
            _pt(xy[ear]),
            (max(1, int(unit * 0.14)), max(1, int(unit * 0.25))),
            roll,
            0,
            360,
            SKIN,
            -1,
        )
    face = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(face, cv2.convexHull(_poly(xy[outline])), 255)
    parts[face > 0] = SKIN
    # Shading: a linear light falloff across the face, stronger on the turned-away side.
    x0, y0, bw, bh = cv2.boundingRect(face)
    if bw > 0 and bh > 0:
        a = rng.uniform(0, 2 * np.pi) if rng.random() < 0.5 else (0.0 if yaw < 0 else np.pi)
        yy, xx = np.mgrid[y0 : y0 + bh, x0 : x0 + bw].astype(np.float32)
        g = ((xx - center[0]) * np.cos(a) + (yy - center[1]) * np.sin(a)) / max(unit, 1.0)
        light = np.clip(1.0 - 0.25 * g, 0.5, 1.3)[..., None]
        shade = np.clip(np.asarray(skin, np.float32) * light, 0, 255).astype(np.uint8)
        cv2.copyTo(shade, face[y0 : y0 + bh, x0 : x0 + bw], img[y0 : y0 + bh, x0 : x0 + bw])
    # Fringe: hair over the top of the forehead.
    if rng.random() < 0.7:
        fringe = np.zeros((h, w), np.uint8)
        brow_line = xy[np.r_[R_BROW, L_BROW]].mean(axis=0)
        cut = brow_line + (xy[FOREHEAD].mean(axis=0) - brow_line) * rng.uniform(0.35, 0.8)
        cv2.fillConvexPoly(fringe, cv2.convexHull(_poly(np.vstack([xy[FOREHEAD], [cut]]))), 255)
        render.paste(img, fringe & face, hair)
        parts[(fringe & face) > 0] = HAIR

    dark = render.jitter(rng, (35, 40, 55), 10)
    brow_colour = tuple(int(c * 0.8) for c in hair)
    # Eyes: sclera, iris clipped to the lids, lid line.
    iris_colour = render.jitter(rng, (60, 70, 90), 30)
    for eye, eye_class in ((R_EYE, RIGHT_EYE), (L_EYE, LEFT_EYE)):
        lids = _poly(xy[eye])
        eye_mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(eye_mask, [lids], 255)
        parts[eye_mask > 0] = eye_class
        sclera = np.zeros((h, w, 3), np.uint8)
        sclera[:] = render.jitter(rng, (215, 220, 225), 10)
        iris_r = max(1, int(np.linalg.norm(xy[eye[0]] - xy[eye[3]]) * 0.22))
        gaze = xy[eye].mean(axis=0) + rng.normal(0, iris_r * 0.3, 2)
        cv2.circle(sclera, _pt(gaze), iris_r, iris_colour, -1)
        cv2.circle(sclera, _pt(gaze), max(1, iris_r // 2), (15, 15, 20), -1)
        render.paste(img, eye_mask, sclera)
        cv2.polylines(img, [lids], True, dark, lt, cv2.LINE_AA)
    for brow, brow_class in ((R_BROW, RIGHT_BROW), (L_BROW, LEFT_BROW)):
        cv2.polylines(
            img, [_poly(xy[brow])], False, brow_colour, max(1, int(unit * 0.08)), cv2.LINE_AA
        )
        cv2.polylines(parts, [_poly(xy[brow])], False, brow_class, max(1, int(unit * 0.08)))
    # The nose region: from the bridge's top (as wide as half the nostrils) to the wings.
    wings = xy[NOSE_BASE[-1]] - xy[NOSE_BASE[0]]
    nose_top = [xy[NOSE_BRIDGE[0]] - wings * 0.25, xy[NOSE_BRIDGE[0]] + wings * 0.25]
    nose_outline = np.vstack([nose_top, xy[NOSE_BRIDGE], xy[NOSE_BASE]])
    cv2.fillConvexPoly(parts, cv2.convexHull(_poly(nose_outline)), NOSE)
    # Nose: a shaded bridge line and nostrils.
    nose_shadow = tuple(int(c * 0.7) for c in skin)
    cv2.polylines(img, [_poly(xy[NOSE_BRIDGE])], False, nose_shadow, lt, cv2.LINE_AA)
    cv2.polylines(img, [_poly(xy[NOSE_BASE])], False, nose_shadow, lt, cv2.LINE_AA)
    for n in (32, 34):
        cv2.circle(img, _pt(xy[n]), max(1, int(unit * 0.04)), dark, -1, cv2.LINE_AA)
    # Lips and mouth.
    lip = render.jitter(rng, (90, 90, 170), 20)
    cv2.fillPoly(img, [_poly(xy[OUTER_LIP])], lip, cv2.LINE_AA)
    # Upper lip: outer contour 48-54, back along the inner upper contour 64-60; lower alike.
    cv2.fillPoly(parts, [_poly(np.vstack([xy[48:55], xy[[64, 63, 62, 61, 60]]]))], UPPER_LIP)
    cv2.fillPoly(parts, [_poly(np.vstack([xy[54:60], xy[[48, 60, 67, 66, 65, 64]]]))], LOWER_LIP)
    inner = _poly(xy[INNER_LIP])
    if np.linalg.norm(xy[66] - xy[62]) > unit * 0.03:
        cv2.fillPoly(img, [inner], (30, 25, 40), cv2.LINE_AA)
        cv2.fillPoly(parts, [inner], INNER_MOUTH)
        teeth = xy[[60, 61, 62, 63, 64]].copy()
        teeth_low = teeth + (xy[66] - xy[62]) * 0.35
        cv2.fillPoly(
            img, [_poly(np.vstack([teeth, teeth_low[::-1]]))], (215, 220, 225), cv2.LINE_AA
        )
    cv2.polylines(img, [inner], True, tuple(int(c * 0.6) for c in lip), lt, cv2.LINE_AA)
    # Glasses, sometimes: thin frames that leave the landmarks visible.
    if rng.random() < 0.15:
        frame = render.colour(rng, 0, 120)
        for eye in (R_EYE, L_EYE):
            c = xy[eye].mean(axis=0)
            r = np.linalg.norm(xy[eye[0]] - xy[eye[3]]) * 0.75
            cv2.ellipse(
                img, _pt(c), (int(r), int(r * 0.7)), roll, 0, 360, frame, lt + 1, cv2.LINE_AA
            )
        cv2.line(img, _pt(xy[39]), _pt(xy[42]), frame, lt + 1, cv2.LINE_AA)


def render_sample(
    rng: np.random.Generator,
    image_size: int = 256,
    label_occluded: bool = False,
    parts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image (BGR uint8), its 68 landmarks (image pixels) and their visibility.

    ``parts`` (image_size x image_size uint8), if given, receives the face-part class map;
    occluders drawn over the face are background there.
    """
    s = image_size
    img = render.background(rng, s, s)
    shape = sample_shape(rng)
    yaw = np.deg2rad(np.clip(rng.normal(0, 30), -60, 60))
    pitch = np.deg2rad(np.clip(rng.normal(0, 12), -25, 25))
    roll = np.deg2rad(np.clip(rng.normal(0, 12), -40, 40))
    xy, _ = project(shape, rotation(yaw, pitch, roll), rng.uniform(4, 12))
    lo, hi = xy[:68].min(axis=0), xy[:68].max(axis=0)
    target = rng.uniform(0.45, 0.95) * s  # side of the 1.25x landmark box
    scale = target / (float(max(hi - lo)) * 1.25)
    offset = rng.uniform(-0.12, 0.12, 2) * s + (s - 1) / 2
    xy = (xy - (lo + hi) / 2) * scale + offset
    unit = scale * 0.65  # pixels per half inter-ocular distance
    draw_face(rng, img, xy, unit, yaw, parts)
    points = xy[:68].astype(np.float32)
    before = img.copy() if parts is not None else None
    visible = render.occlude(
        rng, img, points, chance=0.35, size=unit * 0.9, label_occluded=label_occluded
    )
    if parts is not None:
        parts[(img != before).any(axis=-1)] = BACKGROUND  # what the occluders painted over
    img = render.camera_effects(rng, img)
    return img, points, visible


class SyntheticFaceDataset(SyntheticDataset):
    """Deterministic procedural faces with 68 iBUG landmarks; ``size`` samples per split."""

    name = "synthetic-face"
    # A different first word from synthetic-pose keeps the two generators' streams apart.
    stream = 100
    skeleton = IBUG68

    def __init__(
        self,
        path: str | None = None,
        *,
        split: str = "train",
        size: int | None = None,
        seed: int = 0,
        image_size: int = 256,
        margin: float = 1.25,
        label_occluded: bool = False,
    ) -> None:
        super().__init__(
            path,
            split=split,
            size=size,
            seed=seed,
            image_size=image_size,
            label_occluded=label_occluded,
        )
        self.margin = margin

    def render(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return render_sample(rng, self.image_size, self.label_occluded)


def main(argv: list[str] | None = None) -> int:
    """``python -m training.data.synthetic_face``: contact sheet and timing."""
    return preview_main(argv, dataset_name="synthetic-face")


if __name__ == "__main__":
    sys.exit(main())
