"""What every frame source shares: the frame, the source interface and the size limits.

Its own module so the sources (:mod:`.opencv`, :mod:`.images`, :mod:`.demo`,
:mod:`.picamera2`) import it without importing the package that picks among them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".h264")
# The largest frame edge.live takes: 2^25 pixels (32 MP; 8K UHD, 7680x4320, fits). A frame is
# copied a few times per step (overlay, video, stream), so a 100 MP frame would need gigabytes.
# edge.live also gives it to OpenCV's decoders (OPENCV_IO_MAX_IMAGE_PIXELS), which then refuse a
# larger image from its header, before allocating it.
MAX_FRAME_PIXELS = 1 << 25


@dataclass(frozen=True)
class Frame:
    """One picture from a source.

    ``timestamp`` is in seconds: capture time (monotonic clock) for cameras, the position in
    the file for videos, so motion filters see the clip's real timing even when processing
    runs slower or faster than real time.
    """

    image: np.ndarray  # HxWx3 uint8, BGR (OpenCV's order)
    timestamp: float
    index: int


class FrameSource(ABC):
    """A stream of frames. ``read()`` returns None once the stream has ended."""

    name: str = "source"
    # False for unrelated stills (a folder of photos): the runtime then neither tracks nor
    # smooths from one frame to the next.
    continuous: bool = True
    # Nominal frame rate, used for writing videos; None when unknown.
    fps: float | None = None

    @abstractmethod
    def read(self) -> Frame | None: ...

    def close(self) -> None:  # noqa: B027 - optional hook, most sources have nothing to free
        pass

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame
