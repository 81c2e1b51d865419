"""Still images as a source: one file, a folder, or a list from a glob."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2

from ..errors import SourceError
from .base import IMAGE_SUFFIXES, Frame, FrameSource


class ImageSource(FrameSource):
    """Images in the given order. Stills are unrelated pictures, so ``continuous`` is False:
    the runtime looks for the subject afresh in each one and does not smooth across them."""

    continuous = False

    def __init__(self, paths: Sequence[str | Path], *, loop: bool = False, fps: float = 1.0):
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise SourceError("no images to read")
        for p in self.paths:
            if not p.is_file():
                raise SourceError(f"image file not found: {p}")
        self.name = self.paths[0].name if len(self.paths) == 1 else f"{len(self.paths)} images"
        self.loop = loop
        # Stills have no timing of their own; spacing them 1/fps apart keeps timestamps
        # increasing for writers that need it.
        self.fps = fps
        self._count = 0

    @classmethod
    def from_folder(cls, folder: str | Path, *, loop: bool = False) -> ImageSource:
        folder = Path(folder)
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {folder}")
        return cls(paths, loop=loop)

    def read(self) -> Frame | None:
        if self._count >= len(self.paths) and not self.loop:
            return None
        path = self.paths[self._count % len(self.paths)]
        try:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        except cv2.error as exc:
            # OpenCV refuses an image over its pixel limit (OPENCV_IO_MAX_IMAGE_PIXELS) with an
            # assertion, from the header, before decoding it.
            if "MAX_IMAGE_PIXELS" in str(exc):
                reason = f"over the limit of {_limit()} pixels"
            else:
                reason = "OpenCV failed to decode it"
            raise SourceError(f"cannot read image {path}: {reason}") from None
        if image is None:
            raise SourceError(f"cannot read image {path} (not an image OpenCV can decode)")
        frame = Frame(image, self._count / self.fps, self._count)
        self._count += 1
        return frame


def _limit() -> str:
    return os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 30))
