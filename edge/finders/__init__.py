"""Finders, chosen by name: where a landmark model finds its subjects (people or faces).

>>> finder = create_finder("blazepose", subject="person", margin=meta.box_margin)
>>> for found in finder.find(frame_bgr):   # best first
...     found.score, found.rect, found.box  # rect: x, y, w, h; box: the landmark crop
>>> box = finder(frame_bgr)                # the best one's crop, or None

Every finder is a :class:`~edge.finders.base.Finder`. :data:`FINDERS` maps names to classes:
``"haar"`` (OpenCV's face cascade), ``"blazeface"`` (MediaPipe's short-range face detector)
and ``"blazepose"`` (MediaPipe's person detector); :func:`register_finder` adds one (the
coming 1-bit finder is registered the same way). The MediaPipe files come from a path or the
teacher cache (:func:`edge.host.teacher_dir`). The SSD decoding they share is
:mod:`edge.finders.ssd`, which ``training.label``'s teachers run too.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError
from .base import SUBJECTS, Finder, Found, teacher_file
from .binary import BinaryFinder
from .faces import BlazeFaceFinder, FaceFinder, HaarFinder
from .people import BlazePoseFinder

FINDERS: dict[str, type[Finder]] = {}


def register_finder(cls: type[Finder]) -> type[Finder]:
    """Add a Finder subclass under its ``name`` (usable as a decorator)."""
    FINDERS[cls.name] = cls
    return cls


register_finder(HaarFinder)
register_finder(BlazeFaceFinder)
register_finder(BlazePoseFinder)


def finder_names(subject: str) -> list[str]:
    """The registered finders of people or of faces."""
    return [name for name, cls in FINDERS.items() if cls.subject == subject]


PLURALS = {"person": "people", "face": "faces"}
# A .tflite path given for a subject runs this finder on it.
PATH_FINDERS = {"face": BlazeFaceFinder, "person": BlazePoseFinder}


def _is_binary_finder(path: Path) -> bool:
    """A .tflite that our converter wrote as a finder (metadata task ``finder``); MediaPipe's
    detectors carry no such metadata."""
    from ..metadata import read_metadata

    try:
        return path.is_file() and read_metadata(path).task == "finder"
    except (ModelError, ValueError, OSError):
        return False


def create_finder(spec: str, *, subject: str, margin: float = 1.25, **options) -> Finder | None:
    """A finder of ``subject`` ("person" or "face") from a name in :data:`FINDERS`, the path
    of a .tflite (our 1-bit finder, :class:`~edge.finders.binary.BinaryFinder`, when its
    metadata says task ``finder``; else BlazeFace for faces, BlazePose's person detector for
    people), or ``"none"``
    (None: no finder). ``options`` go to the finder class. A name of the other subject's
    finder, or an unknown one, is a one-line :class:`ModelError`."""
    if subject not in SUBJECTS:
        raise ValueError(f"subject must be one of {SUBJECTS}, got {subject!r}")
    if spec == "none":
        return None
    cls = FINDERS.get(spec)
    if cls is not None:
        if cls.subject != subject:
            raise ModelError(
                f"{spec} finds {PLURALS[cls.subject]}, not {PLURALS[subject]}: choose none, "
                f"{', '.join(finder_names(subject))} or a .tflite path"
            )
        return cls(margin=margin, **options)
    if spec.endswith(".tflite") or Path(spec).expanduser().is_file():
        path = Path(spec).expanduser()
        if _is_binary_finder(path):
            return BinaryFinder(path, subject=subject, margin=margin, **options)
        return PATH_FINDERS[subject](path, margin=margin, **options)
    raise ModelError(
        f"unknown {subject} finder {spec!r}: choose none, {', '.join(finder_names(subject))} "
        "or a .tflite path"
    )


__all__ = [
    "FINDERS",
    "SUBJECTS",
    "BinaryFinder",
    "BlazeFaceFinder",
    "BlazePoseFinder",
    "FaceFinder",
    "Finder",
    "Found",
    "HaarFinder",
    "create_finder",
    "finder_names",
    "register_finder",
    "teacher_file",
]
