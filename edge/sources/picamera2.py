"""The Raspberry Pi camera through the picamera2 library (imported only when this source opens).

picamera2's ``RGB888`` format stores each pixel as B, G, R bytes (the libcamera/DRM naming
lists channels from the most significant byte), which is exactly OpenCV's BGR, so frames
need no conversion. The configuration is made with ``queue=False`` so ``capture_array``
waits for the next frame from the sensor instead of returning an older queued one: when
inference is slower than the camera, the landmarks then belong to a fresh picture.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from ..errors import SourceError
from .base import Frame, FrameSource


class PiCameraSource(FrameSource):
    name = "picamera2"

    def __init__(
        self,
        *,
        size: tuple[int, int] = (640, 480),
        camera_num: int = 0,
        fps: float = 30.0,
        retries: int = 5,
        retry_delay: float = 0.1,
    ) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError(
                "picamera2 is not installed (on Raspberry Pi OS: sudo apt install python3-picamera2)"
            ) from None
        self.fps = fps
        self.retries = retries
        self.retry_delay = retry_delay
        self._count = 0
        try:
            self._cam = Picamera2(camera_num)
        except (RuntimeError, IndexError, OSError) as exc:
            raise SourceError(f"cannot open the Pi camera {camera_num}: {exc}") from None
        try:
            config = self._cam.create_video_configuration(
                main={"format": "RGB888", "size": tuple(int(v) for v in size)},
                queue=False,
                controls={"FrameRate": float(fps)},
            )
            self._cam.configure(config)
            self._cam.start()
        except Exception as exc:  # picamera2 raises plain RuntimeErrors from libcamera
            self._cam.close()
            raise SourceError(f"cannot start the Pi camera: {exc}") from None

    def read(self) -> Frame | None:
        for attempt in range(self.retries + 1):
            try:
                image = self._cam.capture_array("main")
                break
            except Exception as exc:  # libcamera reports a lost camera as a RuntimeError
                if attempt == self.retries:
                    raise SourceError(
                        f"the Pi camera stopped delivering frames ({self.retries} retries): {exc}"
                    ) from None
                print(f"warning: the Pi camera gave no frame ({exc}), retrying", file=sys.stderr)
                time.sleep(self.retry_delay)
        stamp = time.monotonic()
        image = np.asarray(image)
        if image.ndim == 3 and image.shape[2] == 4:  # XRGB8888 if a caller asked for it
            image = image[:, :, :3]
        frame = Frame(np.ascontiguousarray(image), stamp, self._count)
        self._count += 1
        return frame

    def close(self) -> None:
        try:
            self._cam.stop()
        finally:
            self._cam.close()
