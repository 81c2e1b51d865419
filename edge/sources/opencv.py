"""OpenCV sources: a camera by index (V4L2 on Linux) and a video file or stream URL."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np

from ..errors import SourceError
from .base import Frame, FrameSource


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


class CameraSource(FrameSource):
    """A live camera by index (0) or device path (/dev/video0).

    A camera that stops delivering (unplugged, driver reset) is retried ``retries`` times,
    reopening it in between, before :meth:`read` raises SourceError.
    """

    def __init__(
        self,
        index: int | str = 0,
        *,
        size: tuple[int, int] = (640, 480),
        retries: int = 10,
        retry_delay: float = 0.1,
    ) -> None:
        self.index = index
        self.name = f"camera {index}"
        self.size = size
        self.retries = retries
        self.retry_delay = retry_delay
        self._count = 0
        self._cap = self._open()
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise SourceError(f"camera {index} opened but delivered no frame")
        self._pending: np.ndarray | None = first
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 else 30.0

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.index)
        if not cap.isOpened():
            raise SourceError(f"cannot open camera {self.index} (is it connected and free?)")
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        # A short driver queue keeps frames fresh when inference is slower than the camera.
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    def read(self) -> Frame | None:
        image = self._pending
        self._pending = None
        attempt = 0
        while image is None:
            ok, image = self._cap.read()
            if ok and image is not None:
                break
            image = None
            attempt += 1
            if attempt > self.retries:
                raise SourceError(
                    f"camera {self.index} stopped delivering frames ({self.retries} retries)"
                )
            print(f"warning: camera {self.index} gave no frame, retrying", file=sys.stderr)
            time.sleep(self.retry_delay)
            self._cap.release()
            try:
                self._cap = self._open()
            except SourceError:
                self._cap = cv2.VideoCapture()  # stays closed; the next attempt reopens
        frame = Frame(_as_bgr(image), time.monotonic(), self._count)
        self._count += 1
        return frame

    def close(self) -> None:
        self._cap.release()


class VideoFileSource(FrameSource):
    """Every frame of a video file, in order, timestamped by its position in the file."""

    def __init__(self, path: str | Path, *, loop: bool = False) -> None:
        self.path = str(path)
        self.name = Path(self.path).name if "://" not in self.path else self.path
        if "://" not in self.path and not Path(self.path).is_file():
            raise SourceError(f"video file not found: {self.path}")
        self.loop = loop
        self._cap = cv2.VideoCapture(self.path)
        ok, first = self._cap.read() if self._cap.isOpened() else (False, None)
        if not ok or first is None:
            self._cap.release()
            raise SourceError(f"cannot read video {self.path} (not a video OpenCV can decode)")
        self._pending: np.ndarray | None = first
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else 30.0
        self._count = 0  # frames returned
        self._in_file = 0  # position of the next frame within the current pass
        self._offset = 0.0  # seconds added per completed loop, so time keeps increasing
        frames = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count: int | None = frames if frames > 0 else None

    def read(self) -> Frame | None:
        image = self._pending
        self._pending = None
        if image is None:
            ok, image = self._cap.read()
            if not ok or image is None:
                if not self.loop or self._in_file == 0:
                    return None
                self._offset += self._in_file / self.fps
                self._in_file = 0
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, image = self._cap.read()
                if not ok or image is None:
                    return None
        # Frame index / fps rather than CAP_PROP_POS_MSEC: the latter is unreliable for
        # some containers, and files from cameras are constant-rate in practice.
        frame = Frame(_as_bgr(image), self._offset + self._in_file / self.fps, self._count)
        self._in_file += 1
        self._count += 1
        return frame

    def close(self) -> None:
        self._cap.release()
