"""Frame sources: everything that yields BGR frames behind one small interface.

>>> with open_source("video.mp4") as source:
...     for frame in source:
...         frame.image, frame.timestamp

``--source`` strings are resolved by :func:`open_source`:

* ``picamera2`` -- the Raspberry Pi camera through the picamera2 library;
* ``0``, ``1``, ... or ``/dev/video0`` -- a camera through OpenCV (V4L2 on Linux);
* ``demo`` -- a short built-in synthetic clip (works on any machine);
* a video file, an image file, a folder of images, or a glob such as ``"shots/*.jpg"``;
* nothing (``None``) -- the Pi camera when picamera2 is importable, else camera 0.
"""

from __future__ import annotations

import glob as _glob
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SourceError

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


# name -> factory(options) for sources addressed by a keyword rather than a path.
_NAMED: dict[str, Callable[..., FrameSource]] = {}


def register_source(name: str, factory: Callable[..., FrameSource]) -> None:
    """Make ``--source NAME`` open ``factory(**options)``."""
    _NAMED[name] = factory


def picamera2_available() -> bool:
    try:
        return importlib.util.find_spec("picamera2") is not None
    except (ValueError, ImportError):  # a half-initialised or blocked entry in sys.modules
        return False


def _is_glob(spec: str) -> bool:
    return any(c in spec for c in "*?[")


def open_source(
    spec: str | None = None,
    *,
    size: tuple[int, int] = (640, 480),
    loop: bool = False,
    camera_retries: int = 10,
) -> FrameSource:
    """Open the source named by a ``--source`` string (see the module docstring).

    ``size`` is the requested (width, height) for cameras and the demo clip; files keep
    their own size. ``loop`` replays videos, image sets and the demo clip forever.
    Raises :class:`~edge.errors.SourceError` with a one-line reason when nothing can be read.
    """
    if spec is None or spec == "":
        spec = "picamera2" if picamera2_available() else "0"
    if spec in _NAMED:
        return _NAMED[spec](size=size, loop=loop)
    if spec.isdigit():
        from .opencv import CameraSource

        return CameraSource(int(spec), size=size, retries=camera_retries)
    path = Path(spec).expanduser()
    if spec.startswith("/dev/video"):
        from .opencv import CameraSource

        return CameraSource(spec, size=size, retries=camera_retries)
    if path.is_dir():
        from .images import ImageSource

        return ImageSource.from_folder(path, loop=loop)
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            from .images import ImageSource

            return ImageSource([path], loop=loop)
        from .opencv import VideoFileSource

        return VideoFileSource(path, loop=loop)
    if _is_glob(spec):
        from .images import ImageSource

        paths = sorted(Path(p) for p in _glob.glob(str(path)))
        if not paths:
            raise SourceError(f"no files match {spec!r}")
        return ImageSource(paths, loop=loop)
    if spec.startswith(("rtsp://", "http://", "https://", "udp://", "tcp://")):
        from .opencv import VideoFileSource

        return VideoFileSource(spec, loop=False)
    known = ", ".join(sorted(_NAMED))
    raise SourceError(
        f"source {spec!r} is not a file, folder, glob, camera index or one of: {known}"
    )


def _open_picamera2(*, size: tuple[int, int], loop: bool) -> FrameSource:
    from .picamera2 import PiCameraSource

    return PiCameraSource(size=size)


def _open_demo(*, size: tuple[int, int], loop: bool) -> FrameSource:
    from .demo import DemoSource

    return DemoSource(size=size, loop=loop)


register_source("picamera2", _open_picamera2)
register_source("demo", _open_demo)

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_FRAME_PIXELS",
    "VIDEO_SUFFIXES",
    "Frame",
    "FrameSource",
    "open_source",
    "picamera2_available",
    "register_source",
]
