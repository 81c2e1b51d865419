"""What both teachers share: detect once, then track the subject from frame to frame.

MediaPipe's graphs run the (slower) detector only while nothing is tracked; each frame's
landmarks give the next frame's ROI, until the landmark model's presence score drops below
``min_presence``. A teacher supplies :meth:`detect`, :meth:`landmarks` and :meth:`next_roi`.
"""

from __future__ import annotations

import abc
from typing import Generic, Protocol, TypeVar

import numpy as np

from edge.transform import CropBox


def sigmoid(x) -> np.ndarray:
    """The teachers' logits (presence, visibility, mask) as probabilities."""
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, np.float64), -60, 60)))


class HasPresence(Protocol):
    presence: float


Result = TypeVar("Result", bound=HasPresence)


class TrackingTeacher(abc.ABC, Generic[Result]):
    min_presence: float
    _roi: CropBox | None = None

    def reset(self) -> None:
        """Forget the track (before an unrelated clip or photo)."""
        self._roi = None

    @abc.abstractmethod
    def detect(self, image_bgr: np.ndarray) -> CropBox | None:
        """ROI of the most confident subject in the frame, or None."""

    @abc.abstractmethod
    def landmarks(self, image_bgr: np.ndarray, roi: CropBox) -> Result:
        """The landmark model's result on ``roi``."""

    @abc.abstractmethod
    def next_roi(self, result: Result) -> CropBox:
        """The ROI to track the subject with in the next frame."""

    def refined(self, image_bgr: np.ndarray, roi: CropBox) -> Result:
        """The landmarks from a detector's ``roi``, then once more from the ROI those landmarks
        give (:meth:`next_roi`), in the same image: a detector's box is rougher than the
        landmark model's own."""
        return self.landmarks(image_bgr, self.next_roi(self.landmarks(image_bgr, roi)))

    def process(self, image_bgr: np.ndarray) -> Result | None:
        """Landmarks of one subject: tracked from the last frame, else freshly detected."""
        for attempt in ("track", "detect"):
            roi = self._roi if attempt == "track" else self.detect(image_bgr)
            if roi is None:
                continue
            result = self.landmarks(image_bgr, roi)
            if result.presence >= self.min_presence:
                self._roi = self.next_roi(result)
                return result
            self._roi = None
        return None
