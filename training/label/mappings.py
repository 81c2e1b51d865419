"""From BlazePose's 33 points to the skeletons our models use (MPII-16, COCO-17).

BlazePose's order (left before right, "left" meaning the subject's left): 0 nose, 1-3 left
eye (inner, centre, outer), 4-6 right eye, 7/8 ears, 9/10 mouth corners, 11/12 shoulders,
13/14 elbows, 15/16 wrists, 17-22 hand points, 23/24 hips, 25/26 knees, 27/28 ankles,
29/30 heels, 31/32 foot tips.

COCO-17 points all exist in BlazePose. MPII-16 has four that do not, derived so that they sit
where MPII's annotators put them:

* **pelvis**: the midpoint of the hips.
* **thorax**: the midpoint of the shoulders.
* **upper neck**: 60 % of the way from the thorax to the mouth centre (chin level: MPII marks
  the top of the neck, just under the jaw).
* **head top**: the ear midpoint, moved on past it by the upper-neck-to-ear-midpoint vector
  (the skull top is as far above the ears as the ears are above the chin).

A derived point is as confident as the least confident point it is made from.
"""

from __future__ import annotations

import numpy as np

from edge.skeletons import COCO17, MPII16

# COCO-17 in its order, as BlazePose indices.
BLAZEPOSE_TO_COCO17 = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
# MPII-16 points that are BlazePose points; the others are derived (see the module docstring).
_MPII_DIRECT = {
    "right_ankle": 28,
    "right_knee": 26,
    "right_hip": 24,
    "left_hip": 23,
    "left_knee": 25,
    "left_ankle": 27,
    "right_wrist": 16,
    "right_elbow": 14,
    "right_shoulder": 12,
    "left_shoulder": 11,
    "left_elbow": 13,
    "left_wrist": 15,
}
UPPER_NECK_FRACTION = 0.6


def to_coco17(points: np.ndarray, confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(17, 2) points and (17,) confidences in COCO-17 order."""
    idx = np.asarray(BLAZEPOSE_TO_COCO17)
    assert len(idx) == COCO17.num_landmarks
    return np.asarray(points, np.float64)[idx], np.asarray(confidence, np.float64)[idx]


def to_mpii16(points: np.ndarray, confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(16, 2) points and (16,) confidences in MPII-16 order."""
    p = np.asarray(points, np.float64)
    c = np.asarray(confidence, np.float64)

    def mid(a: int, b: int) -> tuple[np.ndarray, float]:
        return (p[a] + p[b]) / 2.0, float(min(c[a], c[b]))

    pelvis, c_pelvis = mid(23, 24)
    thorax, c_thorax = mid(11, 12)
    mouth, c_mouth = mid(9, 10)
    ears, c_ears = mid(7, 8)
    neck = thorax + UPPER_NECK_FRACTION * (mouth - thorax)
    c_neck = min(c_thorax, c_mouth)
    head_top = ears + (ears - neck)
    c_top = min(c_ears, c_neck)
    derived = {
        "pelvis": (pelvis, c_pelvis),
        "thorax": (thorax, c_thorax),
        "upper_neck": (neck, c_neck),
        "head_top": (head_top, c_top),
    }
    out_p = np.zeros((MPII16.num_landmarks, 2))
    out_c = np.zeros(MPII16.num_landmarks)
    for i, name in enumerate(MPII16.landmarks):
        if name in _MPII_DIRECT:
            out_p[i], out_c[i] = p[_MPII_DIRECT[name]], c[_MPII_DIRECT[name]]
        else:
            out_p[i], out_c[i] = derived[name]
    return out_p, out_c


# BlazePose's 33 points to each skeleton a pose model may output, by the skeleton's name: what
# scores a model against the teacher follows the model's own skeleton.
TO_SKELETON = {"coco17": to_coco17, "mpii16": to_mpii16}


def to_skeleton(
    name: str, points: np.ndarray, confidence: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """BlazePose's points and confidences in the skeleton ``name`` (``coco17`` or ``mpii16``)."""
    if name not in TO_SKELETON:
        raise ValueError(f"BlazePose maps to {' and '.join(TO_SKELETON)}, not {name}")
    return TO_SKELETON[name](points, confidence)


def head_box(mpii_points: np.ndarray) -> np.ndarray:
    """MPII-style head box [x1, y1, x2, y2]: a square on the upper-neck-to-head-top segment,
    as long as it (PCKh's head size is then 0.6 x its diagonal)."""
    neck = mpii_points[MPII16.landmarks.index("upper_neck")]
    top = mpii_points[MPII16.landmarks.index("head_top")]
    centre = (neck + top) / 2.0
    half = max(float(np.hypot(*(top - neck))), 1.0) / 2.0
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])
