"""``synthetic-pose``: procedurally drawn articulated figures with the 16 MPII joints.

Each sample is a pure function of ``(seed, split, index)``. A figure gets random body
proportions (limb lengths within human-like ratios), joint angles within human-like
limits, a view (frontal to profile, facing the camera or away: the face is drawn only when
it faces the camera, which is what tells its left from its right), clothes with textures,
and limb thickness. It stands on a cluttered background with distractor limbs and,
sometimes, a second figure, and may be partly covered by occluders or cut by the frame.

``style="plain"`` draws the same figures the way the demo clip (``edge.sources.demo``) and
simple illustrations draw people: one figure in flat colours (a skin tone, a plain top and
trousers) before a plain wall and floor, no clutter, no occluders: a kind of drawing the
cluttered ones never show (added for the demo figure's raised wrist, which every model put on
its elbow; it did not fix that: benchmarks/results/pose_v2_candidates.md, v7 and v8).

Visibility follows the MPII reading of "usable ground truth": a joint is marked invisible
when an occluder covers it or it falls outside the image (``label_occluded=True`` keeps
covered joints visible, so a model is trained to place them too).

``head_size`` is 0.6 * the diagonal of a square head box whose side is the upper-neck to
head-top distance (MPII's head boxes are about that square), so PCKh numbers on this data
are on the same scale as on MPII. The ``box`` is square around all 16 joints, enlarged by
1.25 like MPII's ``scale * 200 * 1.25``.

Preview and timing::

    python -m training.data.synthetic_pose --preview pose.png
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace

import cv2
import numpy as np

from edge.skeletons import COCO17, MPII16, convert_by_name

from . import render
from .base import DatasetError, Sample
from .synthetic import SPLITS as SPLITS  # re-exported: older code imports it from here
from .synthetic import SyntheticDataset, preview_main

# Joint indices (MPII order).
R_ANK, R_KNE, R_HIP, L_HIP, L_KNE, L_ANK, PELVIS, THORAX, NECK, HEAD = range(10)
R_WRI, R_ELB, R_SHO, L_SHO, L_ELB, L_WRI = range(10, 16)

# Segment lengths as fractions of standing height (roughly anthropometric).
_LENGTHS = {
    "torso": 0.29,
    "neck": 0.05,
    "head": 0.125,
    "upper_arm": 0.165,
    "forearm": 0.15,
    "thigh": 0.235,
    "shin": 0.235,
    "shoulder": 0.1,  # half the shoulder width
    "hip": 0.065,  # half the hip width
}
# Limb thickness as a fraction of standing height.
_THICK = {"upper_arm": 0.05, "forearm": 0.04, "thigh": 0.075, "shin": 0.058, "neck": 0.045}

SKIN_TONES = [(60, 80, 110), (90, 120, 170), (120, 160, 210), (150, 185, 225), (45, 60, 90)]

# Material labels in the figure's label map.
SKIN, TOP, BOTTOM, SHOES, HAIR, FEATURE = 1, 2, 3, 4, 5, 6
SHADED = 8  # added to a label for the far-side limbs


def _unit(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)])


def _rot(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


@dataclass
class Figure:
    joints: np.ndarray  # (16, 2) in units of standing height, pelvis at the origin
    up: np.ndarray  # unit vector pelvis -> thorax
    facing_camera: bool
    view_width: float
    thickness: dict[str, float]
    front_side: int  # which side's limbs are drawn in front: +1 right, -1 left


def sample_figure(rng: np.random.Generator) -> Figure:
    """Random proportions and joint angles; coordinates in standing heights, y down."""
    length = {k: v * float(np.exp(rng.normal(0, 0.08))) for k, v in _LENGTHS.items()}
    thick = {k: v * float(np.exp(rng.normal(0, 0.2))) for k, v in _THICK.items()}

    # Overall orientation: mostly upright with a lean, sometimes lying or upside down.
    if rng.random() < 0.12:
        tilt = rng.uniform(-np.pi, np.pi)
    else:
        tilt = np.deg2rad(np.clip(rng.normal(0, 12), -40, 40))
    up = _rot(np.array([0.0, -1.0]), tilt)
    facing = bool(rng.random() < 0.75)
    # Person's right side in the image: image left when facing the camera.
    right = _rot(up, -np.pi / 2) if facing else _rot(up, np.pi / 2)
    view = float(rng.uniform(0.15, 1.0) if rng.random() < 0.35 else rng.uniform(0.7, 1.0))

    def fore(p: float = 0.3) -> float:
        # Foreshortening of a limb pointing out of the image plane.
        return float(rng.uniform(0.45, 1.0)) if rng.random() < p else 1.0

    j = np.zeros((16, 2))
    pelvis_tilt = np.deg2rad(rng.normal(0, 5))
    hip_dir = _rot(right, pelvis_tilt)
    j[PELVIS] = 0.0
    j[R_HIP] = hip_dir * length["hip"] * view
    j[L_HIP] = -hip_dir * length["hip"] * view
    # Spine bends a little relative to the legs' frame.
    spine = _rot(up, np.deg2rad(rng.normal(0, 10)))
    j[THORAX] = spine * length["torso"] * fore(0.15)
    shoulder_dir = _rot(
        _rot(spine, -np.pi / 2) if facing else _rot(spine, np.pi / 2), np.deg2rad(rng.normal(0, 6))
    )
    drop = -spine * 0.03
    j[R_SHO] = j[THORAX] + shoulder_dir * length["shoulder"] * view + drop
    j[L_SHO] = j[THORAX] - shoulder_dir * length["shoulder"] * view + drop
    neck_dir = _rot(spine, np.deg2rad(np.clip(rng.normal(0, 12), -35, 35)))
    j[NECK] = j[THORAX] + neck_dir * length["neck"]
    head_dir = _rot(neck_dir, np.deg2rad(np.clip(rng.normal(0, 15), -40, 40)))
    j[HEAD] = j[NECK] + head_dir * length["head"]

    down = -spine
    # Rotating "down" towards a side vector by phi: positive phi lifts the arm sideways.
    for side, sho, elb, wri in ((1, R_SHO, R_ELB, R_WRI), (-1, L_SHO, L_ELB, L_WRI)):
        outward = shoulder_dir * side
        if rng.random() < 0.55:
            phi = np.deg2rad(np.clip(rng.normal(15, 20), -30, 80))
        else:
            phi = np.deg2rad(rng.uniform(-40, 190))
        upper = np.cos(phi) * down + np.sin(phi) * outward
        j[elb] = j[sho] + upper * length["upper_arm"] * fore()
        flex = np.deg2rad(rng.uniform(0, 150) if rng.random() < 0.6 else rng.uniform(0, 30))
        forearm = _rot(upper, flex * rng.choice([-1, 1]))
        j[wri] = j[elb] + forearm * length["forearm"] * fore()

    leg_down = _rot(-up, 0.0)
    for side, hip, kne, ank in ((1, R_HIP, R_KNE, R_ANK), (-1, L_HIP, L_KNE, L_ANK)):
        outward = hip_dir * side
        if rng.random() < 0.7:
            phi = np.deg2rad(np.clip(rng.normal(6, 8), -15, 35))
        else:
            phi = np.deg2rad(rng.uniform(-30, 110))
        thigh = np.cos(phi) * leg_down + np.sin(phi) * outward
        j[kne] = j[hip] + thigh * length["thigh"] * fore(0.25)
        bend = rng.uniform(0, 25) if rng.random() < 0.65 else rng.uniform(0, 130)
        shin = _rot(thigh, np.deg2rad(bend) * rng.choice([-1, 1]))
        j[ank] = j[kne] + shin * length["shin"] * fore(0.25)

    return Figure(j, spine, facing, view, thick, int(rng.choice([-1, 1])))


def draw_figure(
    rng: np.random.Generator, labels: np.ndarray, fig: Figure, joints: np.ndarray, height: float
) -> None:
    """Draw the figure's material labels into ``labels`` (uint8 HxW) at image ``joints``."""
    t = {k: max(2.0, v * height) for k, v in fig.thickness.items()}
    long_sleeves = rng.random() < 0.5
    trousers = rng.random() < 0.7
    j = joints

    def limb_set(side: int, shade: int) -> None:
        sho, elb, wri = (R_SHO, R_ELB, R_WRI) if side == 1 else (L_SHO, L_ELB, L_WRI)
        hip, kne, ank = (R_HIP, R_KNE, R_ANK) if side == 1 else (L_HIP, L_KNE, L_ANK)
        render.capsule(labels, j[hip], j[kne], t["thigh"], BOTTOM + shade)
        render.capsule(labels, j[kne], j[ank], t["shin"], (BOTTOM if trousers else SKIN) + shade)
        foot_dir = j[ank] - j[kne]
        foot_dir = _rot(
            foot_dir / (np.linalg.norm(foot_dir) + 1e-9), np.pi / 2 * rng.choice([-1, 1])
        )
        render.capsule(
            labels, j[ank], j[ank] + foot_dir * t["shin"] * 1.2, t["shin"] * 0.8, SHOES + shade
        )
        render.capsule(labels, j[sho], j[elb], t["upper_arm"], TOP + shade)
        render.capsule(
            labels, j[elb], j[wri], t["forearm"], (TOP if long_sleeves else SKIN) + shade
        )
        cv2.circle(
            labels, tuple(np.round(j[wri]).astype(int)), int(t["forearm"] * 0.7), SKIN + shade, -1
        )

    limb_set(-fig.front_side, SHADED)
    # Torso: a quadrilateral from shoulders to hips, widened to the body's outline.
    side = j[R_SHO] - j[L_SHO]
    pad_s = side / (np.linalg.norm(side) + 1e-9) * t["upper_arm"] * 0.4
    hside = j[R_HIP] - j[L_HIP]
    pad_h = hside / (np.linalg.norm(hside) + 1e-9) * t["thigh"] * 0.5
    torso = np.array([j[R_SHO] + pad_s, j[L_SHO] - pad_s, j[L_HIP] - pad_h, j[R_HIP] + pad_h])
    cv2.fillConvexPoly(labels, np.round(torso).astype(np.int32), TOP)
    render.capsule(
        labels, (j[R_HIP] + j[PELVIS]) / 2, (j[L_HIP] + j[PELVIS]) / 2, t["thigh"], BOTTOM
    )
    render.capsule(labels, j[THORAX], j[NECK], t["neck"], SKIN)
    limb_set(fig.front_side, 0)

    # Head: an ellipse from the upper neck to the head top.
    axis = j[HEAD] - j[NECK]
    head_len = float(np.linalg.norm(axis)) + 1e-9
    center = j[NECK] + axis * 0.52
    angle = float(np.degrees(np.arctan2(axis[1], axis[0])))
    semi_long = head_len * 0.52
    semi_short = semi_long * rng.uniform(0.62, 0.8)
    c = tuple(np.round(center).astype(int))
    axes = (max(1, int(semi_long)), max(1, int(semi_short)))
    if fig.facing_camera:
        cv2.ellipse(labels, c, axes, angle, 0, 360, SKIN, -1)
        # Hair on the crown only; the face stays bare.
        cv2.ellipse(labels, c, axes, angle, -70, 70, HAIR, -1)
        u = axis / head_len
        v = np.array([-u[1], u[0]])
        for s in (-1, 1):
            eye = center - u * head_len * 0.02 + v * s * semi_short * 0.4
            cv2.circle(
                labels, tuple(np.round(eye).astype(int)), max(1, int(head_len * 0.06)), FEATURE, -1
            )
        mouth = center - u * head_len * 0.3
        cv2.ellipse(
            labels,
            tuple(np.round(mouth).astype(int)),
            (max(1, int(semi_short * 0.3)), max(1, int(head_len * 0.04))),
            angle + 90,
            0,
            360,
            FEATURE,
            -1,
        )
    else:
        cv2.ellipse(labels, c, axes, angle, 0, 360, HAIR, -1)


def _materials(
    rng: np.random.Generator, h: int, w: int, flat: bool = False
) -> dict[int, np.ndarray | tuple]:
    skin = render.jitter(rng, SKIN_TONES[rng.integers(len(SKIN_TONES))], 12)
    hair = render.jitter(rng, (20, 30, 45), 25) if rng.random() < 0.8 else render.colour(rng)
    # In this order, so the cluttered drawings of a seed stay what they always were.
    if flat:
        top, bottom = render.colour(rng), render.colour(rng)
    else:
        top = render.texture(rng, h, w, render.colour(rng))
        bottom = render.texture(rng, h, w, render.colour(rng))
    return {
        SKIN: skin,
        TOP: top,
        BOTTOM: bottom,
        SHOES: render.colour(rng, 0, 120),
        HAIR: hair,
        FEATURE: (30, 30, 40),
    }


def paint_figure(
    rng: np.random.Generator, image: np.ndarray, labels: np.ndarray, flat: bool = False
) -> None:
    """Fill ``image`` where ``labels`` is set, with per-material colours or textures (only
    colours where ``flat``)."""
    h, w = labels.shape
    present = set(np.flatnonzero(np.bincount(labels.ravel(), minlength=256)).tolist())
    for label, fill in _materials(rng, h, w, flat).items():
        for shade, factor in ((0, 1.0), (SHADED, 0.72)):
            if label + shade not in present:
                continue
            mask = cv2.compare(labels, label + shade, cv2.CMP_EQ)
            if isinstance(fill, tuple):
                render.paste(image, mask, tuple(int(c * factor) for c in fill))
            else:
                render.paste(
                    image, mask, cv2.convertScaleAbs(fill, alpha=factor) if shade else fill
                )


def place(
    rng: np.random.Generator,
    joints: np.ndarray,
    size: int,
    fraction: tuple[float, float],
    spread: float,
) -> tuple[np.ndarray, float]:
    """Scale and move unit-height joints so their 1.25x box is ``fraction`` of the image."""
    lo, hi = joints.min(axis=0), joints.max(axis=0)
    extent = float(max(hi - lo)) * 1.25
    target = rng.uniform(*fraction) * size
    scale = target / max(extent, 1e-6)
    center = (lo + hi) / 2
    offset = rng.uniform(-spread, spread, 2) * size + (size - 1) / 2
    return (joints - center) * scale + offset, scale


STYLES = ("cluttered", "plain")


def draw_subject(
    rng: np.random.Generator, image: np.ndarray, labels: np.ndarray, flat: bool = False
) -> tuple[np.ndarray, float]:
    """Draw the sample's figure into ``image`` (``labels``: an empty label map of its size):
    placed so its 1.25x box is half to all of the image. Its joints and scale."""
    fig = sample_figure(rng)
    joints, scale = place(rng, fig.joints, image.shape[0], (0.5, 1.05), 0.12)
    draw_figure(rng, labels, fig, joints, scale)
    paint_figure(rng, image, labels, flat)
    return joints, scale


def plain_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A flat wall with a soft vertical gradient over a floor of another colour."""
    wall = np.array(render.colour(rng, 60, 230), np.float32)
    ramp = np.linspace(rng.uniform(0.75, 1.0), 1.0, size, dtype=np.float32)[:, None, None]
    img = np.empty((size, size, 3), np.float32)
    img[:] = wall * ramp
    floor = int(size * rng.uniform(0.75, 1.0))
    img[floor:] = render.colour(rng, 40, 200)
    return img.astype(np.uint8)


def render_plain(
    rng: np.random.Generator, image_size: int = 256
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One figure in flat colours before a plain wall and floor: image, joints, visibility."""
    s = image_size
    img = plain_background(rng, s)
    joints, _ = draw_subject(rng, img, np.zeros((s, s), np.uint8), flat=True)
    visible = render.points_inside(joints, s, s)
    # Only the mildest camera: a soft edge and a little noise, as the demo clip has.
    img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.3, 0.9))
    noise = rng.standard_normal((s, s, 1), dtype=np.float32) * rng.uniform(0, 4)
    img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return img, joints.astype(np.float32), visible


def render_sample(
    rng: np.random.Generator, image_size: int = 256, label_occluded: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image (BGR uint8), its 16 joints (image pixels) and their visibility."""
    s = image_size
    img = render.background(rng, s, s)

    # Distractors: loose limbs and, sometimes, a second figure drawn behind the subject.
    labels = np.zeros((s, s), np.uint8)
    for _ in range(int(rng.integers(0, 4))):
        p0 = rng.uniform(0, s, 2)
        p1 = p0 + rng.normal(0, s * 0.15, 2)
        render.capsule(
            labels, p0, p1, rng.uniform(0.02, 0.06) * s, int(rng.choice([SKIN, TOP, BOTTOM]))
        )
    if rng.random() < 0.35:
        other = sample_figure(rng)
        pts, scale = place(rng, other.joints, s, (0.4, 1.0), 0.5)
        draw_figure(rng, labels, other, pts, scale)
    if labels.any():
        paint_figure(rng, img, labels)

    labels[:] = 0
    joints, scale = draw_subject(rng, img, labels)

    visible = render.occlude(
        rng, img, joints, chance=0.45, size=scale * 0.18, label_occluded=label_occluded
    )
    img = render.camera_effects(rng, img)
    return img, joints.astype(np.float32), visible


def head_size_of(joints: np.ndarray) -> float:
    """0.6 x the diagonal of a square head box with side |head_top - upper_neck|."""
    return float(0.6 * np.sqrt(2) * np.linalg.norm(joints[HEAD] - joints[NECK]))


class SyntheticPoseDataset(SyntheticDataset):
    """Deterministic procedural MPII-16 figures; ``size`` samples per split."""

    name = "synthetic-pose"
    stream = 0
    skeleton = MPII16

    def __init__(
        self,
        path: str | None = None,
        *,
        skeleton: str = "mpii16",
        style: str = "cluttered",
        **options,
    ) -> None:
        super().__init__(path, **options)
        if skeleton not in ("mpii16", "coco17"):
            raise DatasetError(f"{self.name}: skeleton must be mpii16 or coco17, got {skeleton!r}")
        if style not in STYLES:
            raise DatasetError(
                f"{self.name}: style must be one of {', '.join(STYLES)}, got {style!r}"
            )
        self.style = style
        # COCO-17: the figure's 12 limb joints; its face points (nose, eyes, ears) are not
        # drawn, so they stay unlabelled and carry no weight. It lets the drawn figures join a
        # COCO-17 training mix (the demo clip is drawn).
        self.skeleton = COCO17 if skeleton == "coco17" else MPII16

    def render(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.style == "plain":
            return render_plain(rng, self.image_size)
        return render_sample(rng, self.image_size, self.label_occluded)

    def head_size(self, points: np.ndarray) -> float:
        return head_size_of(points)

    def load(self, index: int) -> Sample:
        sample = super().load(index)
        if self.skeleton is MPII16:
            return sample
        # The box stays the whole figure's (head included), as a real COCO person's box
        # includes the face points, and so does the head size (the drawn head's, whatever the
        # skeleton): a COCO-17 run on the figures alone is validated by PCKh as an MPII-16 one.
        points, visible = convert_by_name(sample.points, sample.visible, MPII16, COCO17)
        return replace(sample, points=points, visible=visible)


def main(argv: list[str] | None = None, dataset_name: str = "synthetic-pose") -> int:
    """``python -m training.data.synthetic_pose``: contact sheet and timing."""
    return preview_main(argv, dataset_name)


if __name__ == "__main__":
    sys.exit(main())
