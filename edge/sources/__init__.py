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
from collections.abc import Callable
from pathlib import Path

from ..errors import SourceError
from .base import IMAGE_SUFFIXES, MAX_FRAME_PIXELS, VIDEO_SUFFIXES, Frame, FrameSource

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
