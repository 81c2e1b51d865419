"""Face-part class maps from the face-mesh teacher (and hair from the selfie segmenter).

The 468 points of :class:`training.label.face.FaceMeshTeacher` become polygons, painted in
this order so that what lies in front wins: the face oval (skin), the nose, the brows, the
eyes, the upper and lower lip, the open mouth. The contours are MediaPipe's published
face-mesh contours (``face_mesh_connections``: FACEMESH_FACE_OVAL, _LIPS, _LEFT_EYE,
_RIGHT_EYE, _LEFT_EYEBROW, _RIGHT_EYEBROW, _NOSE); a brow is the ring of its upper and lower
rows, the nose the convex hull of its contour and the bridge between the eyes.

Hair: MediaPipe's selfie segmenter (``selfie_segmentation.tflite``, same wheel) gives the
person; hair is the person outside the face oval and above the line through the mouth
corners, across the face (so the neck, shoulders and clothes below it stay background).
Ears above that line are counted as hair: a known flaw of this teacher. Helen's skin stops
at the jaw, as the oval does.

"Left" and "right" are the subject's own (MediaPipe's LEFT_EYE is the subject's left).
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.parts import FACE_PARTS
from edge.transform import apply_affine, box_from_points

from .labellers import FaceLabeller, LabelOptions, context_crop
from .teacher_models import load_interpreter, teacher_model

# Hand-wrapped table of mesh ids, like the contours below (formatting would give one per line).
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
             400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54,
             103, 67, 109)  # fmt: skip
# Eyes: lower lid from the outer corner to the inner one, then the upper lid back.
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
# Brows: the lower row outwards-in, then the upper row back.
RIGHT_BROW = (46, 53, 52, 65, 55, 107, 66, 105, 63, 70)
LEFT_BROW = (276, 283, 282, 295, 285, 336, 296, 334, 293, 300)
# Hand-wrapped table of mesh ids, like the contours around it (not one id per line).
NOSE = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327, 294, 278, 344, 440, 275, 45,
        220, 115, 48, 64, 193, 417)  # fmt: skip
# Lips: outer contour corner to corner, then the inner contour back.
# A table: row 1 the outer contour, row 2 the inner one (kept as laid out).
UPPER_LIP = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291,
             308, 415, 310, 311, 312, 13, 82, 81, 80, 191, 78)  # fmt: skip
# A table: row 1 the outer contour, row 2 the inner one (kept as laid out).
LOWER_LIP = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291,
             308, 324, 318, 402, 317, 14, 87, 178, 88, 95, 78)  # fmt: skip
# A table: row 1 the upper inner lip, row 2 the lower one (kept as laid out).
INNER_MOUTH = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308,
               324, 318, 402, 317, 14, 87, 178, 88, 95)  # fmt: skip
MOUTH_CORNERS = (61, 291)
SELFIE_SIZE = 256

_C = {name: i for i, name in enumerate(FACE_PARTS.classes)}


def _fill(mask: np.ndarray, points: np.ndarray, value: int, hull: bool = False) -> None:
    poly = np.round(points).astype(np.int32)
    if hull:
        poly = cv2.convexHull(poly)
    cv2.fillPoly(mask, [poly.reshape(-1, 1, 2)], int(value))


def mesh_class_map(points468: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 face-part classes painted from mesh points (image pixels), hair left out."""
    p = np.asarray(points468, np.float64)[:, :2]
    mask = np.zeros(shape[:2], np.uint8)
    _fill(mask, p[list(FACE_OVAL)], _C["skin"])
    _fill(mask, p[list(NOSE)], _C["nose"], hull=True)
    for ids, name in (
        (RIGHT_BROW, "right_brow"),
        (LEFT_BROW, "left_brow"),
        (RIGHT_EYE, "right_eye"),
        (LEFT_EYE, "left_eye"),
        (UPPER_LIP, "upper_lip"),
        (LOWER_LIP, "lower_lip"),
        (INNER_MOUTH, "inner_mouth"),
    ):
        _fill(mask, p[list(ids)], _C[name])
    return mask


class HairTeacher:
    """Hair pixels: the selfie segmenter's person, outside the face, above the mouth line."""

    def __init__(self, *, num_threads: int = 1, min_probability: float = 0.5) -> None:
        self._net = load_interpreter(teacher_model("selfie_segmentation"), num_threads)
        self._in = self._net.get_input_details()[0]["index"]
        self._out = self._net.get_output_details()[0]["index"]
        self.min_probability = min_probability

    def person(self, image_bgr: np.ndarray) -> np.ndarray:
        """(H, W) bool person mask of a (square) image."""
        h, w = image_bgr.shape[:2]
        rgb = cv2.resize(image_bgr, (SELFIE_SIZE, SELFIE_SIZE), interpolation=cv2.INTER_AREA)
        x = (rgb[..., ::-1].astype(np.float32) / 255.0)[None]
        self._net.set_tensor(self._in, x)
        self._net.invoke()
        prob = self._net.get_tensor(self._out)[0, ..., 0]
        return cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR) >= self.min_probability

    def add_hair(self, mask: np.ndarray, image_bgr: np.ndarray, points468: np.ndarray) -> None:
        """Mark hair in ``mask`` (in place) where it is background now."""
        p = np.asarray(points468, np.float64)[:, :2]
        h, w = mask.shape
        # "Up" of the face: from the mouth corners' midpoint towards the forehead (vertex 10).
        left, right = p[MOUTH_CORNERS[0]], p[MOUTH_CORNERS[1]]
        mouth = (left + right) / 2
        up = p[10] - mouth
        up /= max(float(np.hypot(*up)), 1e-9)
        ys, xs = np.mgrid[0:h, 0:w]
        above = (xs - mouth[0]) * up[0] + (ys - mouth[1]) * up[1] > 0
        hair = self.person(image_bgr) & above & (mask == 0)
        mask[hair] = _C["hair"]


class FacePartsLabeller(FaceLabeller):
    """``python -m training.label faceparts``: one context crop and class map per frame,
    written in the ``label-map`` layout (``training.segmentation.data``)."""

    def __init__(self, options: LabelOptions) -> None:
        super().__init__(options)
        self.hair = None if options.no_hair else HairTeacher(num_threads=options.threads)

    def label(self, frame, still, name, out, counts) -> list[dict]:
        from training.segmentation.data import write_label_map

        a = self.options
        r = self.face(frame, counts)
        if r is None:
            return []
        box = box_from_points(r.points[list(FACE_OVAL)], margin=a.box_margin)
        crop, matrix, context = context_crop(frame, box, context=a.context, box_px=a.box_px)
        points = apply_affine(matrix, r.points)
        mask = mesh_class_map(points, crop.shape)
        if self.hair is not None:
            self.hair.add_hair(mask, crop, points)
        split, _, stem = name.partition("/")
        stem = stem.replace("/", "_")
        write_label_map(out, split, stem, crop, mask)
        counts["faces labelled"] += 1
        return [
            {
                "image": f"{split}/images/{stem}.jpg",
                "presence": round(float(r.presence), 3),
                "source": name,
                "frame_box": context.to_dict(),
            }
        ]

    def finish(self, out, parts: dict[str, list[dict]]) -> None:
        from .writers import write_json

        for split, records in parts.items():
            write_json(out / f"{split}.index.json", records)
