"""Landmark sets as data: names, drawing edges and left/right flip pairs.

Every part of the project (dataset readers, training augmentation, evaluation, the
converter's metadata and the on-device overlay) looks skeletons up here by name, so a
landmark order is defined exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Skeleton:
    name: str
    task: str  # "pose" or "face"
    landmarks: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    flip_pairs: tuple[tuple[int, int], ...]
    # Two landmark indices whose distance normalises errors (outer eye corners for faces).
    reference_pair: tuple[int, int] | None = None
    # Landmarks that a benchmark protocol leaves out of its mean (MPII: pelvis, thorax).
    excluded_from_mean: tuple[int, ...] = field(default_factory=tuple)

    @property
    def num_landmarks(self) -> int:
        return len(self.landmarks)

    def flip_permutation(self) -> np.ndarray:
        """Index array p such that flipped[i] = original[p[i]] after a horizontal mirror."""
        return flip_permutation(self.num_landmarks, self.flip_pairs)


def flip_permutation(count: int, flip_pairs) -> np.ndarray:
    """Index array p of ``count`` landmarks such that flipped[i] = original[p[i]] after a
    horizontal mirror: each left/right pair of ``flip_pairs`` swapped."""
    perm = np.arange(count)
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    return perm


def _chain(indices: range | list[int], closed: bool = False) -> list[tuple[int, int]]:
    idx = list(indices)
    pairs = list(zip(idx[:-1], idx[1:], strict=True))
    if closed:
        pairs.append((idx[-1], idx[0]))
    return pairs


MPII16 = Skeleton(
    name="mpii16",
    task="pose",
    landmarks=(
        "right_ankle",
        "right_knee",
        "right_hip",
        "left_hip",
        "left_knee",
        "left_ankle",
        "pelvis",
        "thorax",
        "upper_neck",
        "head_top",
        "right_wrist",
        "right_elbow",
        "right_shoulder",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
    ),
    edges=(
        (0, 1),
        (1, 2),
        (2, 6),
        (6, 3),
        (3, 4),
        (4, 5),
        (6, 7),
        (7, 8),
        (8, 9),
        (10, 11),
        (11, 12),
        (12, 7),
        (7, 13),
        (13, 14),
        (14, 15),
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    excluded_from_mean=(6, 7),
)

LSP14 = Skeleton(
    name="lsp14",
    task="pose",
    landmarks=(
        "right_ankle",
        "right_knee",
        "right_hip",
        "left_hip",
        "left_knee",
        "left_ankle",
        "right_wrist",
        "right_elbow",
        "right_shoulder",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "neck",
        "head_top",
    ),
    edges=(
        (0, 1),
        (1, 2),
        (2, 3),
        (3, 4),
        (4, 5),
        (6, 7),
        (7, 8),
        (8, 12),
        (12, 9),
        (9, 10),
        (10, 11),
        (12, 13),
        (2, 8),
        (3, 9),
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9)),
)

COCO17 = Skeleton(
    name="coco17",
    task="pose",
    landmarks=(
        "nose",
        "left_eye",
        "right_eye",
        "left_ear",
        "right_ear",
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
    ),
    edges=(
        (0, 1),
        (0, 2),
        (1, 3),
        (2, 4),
        (5, 6),
        (5, 7),
        (7, 9),
        (6, 8),
        (8, 10),
        (5, 11),
        (6, 12),
        (11, 12),
        (11, 13),
        (13, 15),
        (12, 14),
        (14, 16),
    ),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
)


def _outlines(parts: tuple[tuple[str, int, bool], ...]) -> tuple[list[str], list[tuple[int, int]]]:
    """Names and drawing edges of a face skeleton made of outlines: each part
    ``(name, count, closed)`` is ``count`` consecutive points ``name_0 .. name_{count-1}``,
    joined in order and, when ``closed``, back to the first (an eye, a lip).

    iBUG-68 and WFLW-98 are both drawn this way; one table per skeleton says where each part
    starts, so its names and its edges cannot disagree about it.
    """
    names: list[str] = []
    edges: list[tuple[int, int]] = []
    for name, count, closed in parts:
        start = len(names)
        names += [f"{name}_{i}" for i in range(count)]
        edges += _chain(range(start, start + count), closed=closed)
    return names, edges


def _ibug68() -> Skeleton:
    names, edges = _outlines(
        (
            ("jaw", 17, False),
            ("right_brow", 5, False),
            ("left_brow", 5, False),
            ("nose_bridge", 4, False),
            ("nose_base", 5, False),
            ("right_eye", 6, True),
            ("left_eye", 6, True),
            ("outer_lip", 12, True),
            ("inner_lip", 8, True),
        )
    )
    flips = [(i, 16 - i) for i in range(8)]
    flips += [(17 + i, 26 - i) for i in range(5)]
    flips += [(31, 35), (32, 34)]
    flips += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    flips += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]
    flips += [(60, 64), (61, 63), (65, 67)]
    return Skeleton(
        "ibug68", "face", tuple(names), tuple(edges), tuple(flips), reference_pair=(36, 45)
    )


def _wflw98() -> Skeleton:
    names, edges = _outlines(
        (
            ("contour", 33, False),
            ("right_brow", 9, True),
            ("left_brow", 9, True),
            ("nose_bridge", 4, False),
            ("nose_base", 5, False),
            ("right_eye", 8, True),
            ("left_eye", 8, True),
            ("outer_lip", 12, True),
            ("inner_lip", 8, True),
        )
    )
    names += ["right_pupil", "left_pupil"]  # single points: no outline
    flips = [(i, 32 - i) for i in range(16)]
    flips += [
        (33, 46),
        (34, 45),
        (35, 44),
        (36, 43),
        (37, 42),
        (38, 50),
        (39, 49),
        (40, 48),
        (41, 47),
    ]
    flips += [(55, 59), (56, 58)]
    flips += [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]
    flips += [(76, 82), (77, 81), (78, 80), (87, 83), (86, 84)]
    flips += [(88, 92), (89, 91), (95, 93), (96, 97)]
    return Skeleton(
        "wflw98", "face", tuple(names), tuple(edges), tuple(flips), reference_pair=(60, 72)
    )


def _aflw21() -> Skeleton:
    """AFLW's 21 points in its own feature_id order (1-based ids 1..21 -> indices 0..20).

    The names keep AFLW's own words (FeatureCoordTypes); the flip pairs hold whichever side
    "left" names. Flip pairs: brows 0<->5, 1<->4, 2<->3, eyes
    6<->11, 7<->10, 8<->9, ears 12<->16, nose wings 13<->15, mouth corners 17<->19.
    """
    # A table: one row per feature (brows, eyes: left corner, center, right corner).
    names = (
        "left_brow_left_corner", "left_brow_center", "left_brow_right_corner",
        "right_brow_left_corner", "right_brow_center", "right_brow_right_corner",
        "left_eye_left_corner", "left_eye_center", "left_eye_right_corner",
        "right_eye_left_corner", "right_eye_center", "right_eye_right_corner",
        "left_ear", "nose_left", "nose_center", "nose_right", "right_ear",
        "mouth_left_corner", "mouth_center", "mouth_right_corner", "chin_center",
    )  # fmt: skip
    flips = ((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 16), (13, 15), (17, 19))
    edges = (
        _chain(range(0, 3))
        + _chain(range(3, 6))
        + _chain(range(6, 9))
        + _chain(range(9, 12))
        + _chain([13, 14, 15])
        + _chain([17, 18, 19])
        + [(14, 18), (18, 20)]
    )
    # Outer eye corners (6, 11): an inter-ocular normaliser, should a protocol want one.
    return Skeleton("aflw21", "face", names, tuple(edges), flips, reference_pair=(6, 11))


def _pifa34() -> Skeleton:
    """The 34 points of the AFLW-PIFA / AFLW-LFPA protocol (Jourabloo & Liu), by index only.

    The order of the 34 points in the authors' release could not be checked here, so the
    points have no names, edges or flip pairs: train with ``augment.flip_prob: 0`` and
    evaluate without ``--flip-test`` (both refuse a skeleton without flip pairs otherwise).
    """
    return Skeleton("pifa34", "face", tuple(f"point_{i}" for i in range(34)), (), ())


IBUG68 = _ibug68()
WFLW98 = _wflw98()
AFLW21 = _aflw21()
PIFA34 = _pifa34()

SKELETONS: dict[str, Skeleton] = {
    s.name: s for s in (MPII16, LSP14, COCO17, IBUG68, WFLW98, AFLW21, PIFA34)
}


def get_skeleton(name: str) -> Skeleton:
    try:
        return SKELETONS[name]
    except KeyError:
        raise KeyError(
            f"unknown skeleton {name!r}; known: {', '.join(sorted(SKELETONS))}"
        ) from None


def convert_by_name(
    points: np.ndarray, visible: np.ndarray, source: Skeleton, target: Skeleton
) -> tuple[np.ndarray, np.ndarray]:
    """``points`` (K_source, 2) and ``visible`` (K_source,) of ``source`` as ``target``'s
    landmarks: each landmark the two share by name is copied, the others are (0, 0) and not
    visible (as a COCO file marks an unlabelled joint). MPII-16 -> COCO-17 keeps the 12 limb
    joints (MPII has no eyes, ears or nose)."""
    index = {name: i for i, name in enumerate(source.landmarks)}
    out = np.zeros((target.num_landmarks, 2), np.float32)
    seen = np.zeros(target.num_landmarks, bool)
    for j, name in enumerate(target.landmarks):
        if name in index:
            out[j] = points[index[name]]
            seen[j] = visible[index[name]]
    return out, seen
