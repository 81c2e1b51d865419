"""What the label tool reads: videos, images, folders of them and globs, frame by frame."""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".gif", ".m4v", ".mpg", ".mpeg"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff"}


class UnreadableSource(Exception):
    """A file that is neither a decodable video nor a decodable image."""


def expand(items: list[str], missing: list[str] | None = None) -> list[Path]:
    """Files named by ``items`` (files, folders searched recursively, globs), sorted, unique.

    Unknown suffixes inside folders are ignored; a named file is kept whatever its suffix,
    so a broken or mislabelled file is reported when it is read rather than silently dropped.
    Items that name nothing are appended to ``missing``.
    """
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES
            )
        elif path.exists():
            found.append(path)
        else:
            matches = [Path(p) for p in sorted(glob.glob(item, recursive=True))]
            matches = [p for p in matches if p.is_file()]
            if not matches and missing is not None:
                missing.append(item)
            found += matches
    unique: dict[str, Path] = {}
    for p in found:
        unique.setdefault(str(p.resolve()), p)
    return list(unique.values())


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def frames(path: Path, every: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, BGR frame) for every ``every``-th frame; an image is one frame 0."""
    import cv2

    if is_image(path):
        from training.data.base import CorruptSample, read_image

        try:
            yield 0, read_image(path)
        except CorruptSample as exc:
            raise UnreadableSource(str(exc)) from None
        return
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise UnreadableSource(f"cannot open {path} as a video")
        index = -1
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            index += 1
            if index % every == 0:
                yield index, frame
        if index < 0:
            raise UnreadableSource(f"no frame could be decoded from {path}")
    finally:
        capture.release()
