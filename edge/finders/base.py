"""What every finder is: a BGR frame in, every subject found (a person or a face) out.

A finder is where a landmark model looks when it has no track, and, with several subjects
(``edge.live --max-people`` / ``--max-faces``), how newcomers are picked up. Each find has a
score, a rectangle in image pixels, and the square crop (:class:`~edge.transform.CropBox`)
the landmark model needs around it, best first. Calling a finder gives the crop of the best
find, which is what :class:`edge.tracking.LandmarkTracker` takes as its fallback.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import ModelError
from ..host import TEACHERS_ENV, teacher_dir
from ..transform import CropBox

# The kinds of subject a finder finds; a landmark model's task says which it needs.
SUBJECTS = ("person", "face")


@dataclass(frozen=True, eq=False)
class Found:
    """One person or face: a finder's output, or a finder's training label (the 1-bit
    finder's codec encodes and decodes these, :mod:`edge.finder_codec`)."""

    score: float  # the finder's confidence in [0, 1] (a cascade that has none: 1; a label: the teacher's)
    rect: tuple[float, float, float, float]  # x, y, w, h in image pixels (pixel edges)
    box: CropBox  # the landmark model's crop around it
    class_id: int = 0  # which of a multi-class finder's classes (its metadata's ``classes``)

    @property
    def corners(self) -> np.ndarray:
        """``rect`` as (x0, y0, x1, y1)."""
        x, y, w, h = self.rect
        return np.array([x, y, x + w, y + h], np.float64)

    @property
    def center(self) -> tuple[float, float]:
        x, y, w, h = self.rect
        return x + w / 2.0, y + h / 2.0

    def to_dict(self) -> dict:
        return {
            "score": round(float(self.score), 4),
            "rect": [round(float(v), 2) for v in self.rect],
            "box": {  # CropBox.to_dict's keys, to a hundredth of a pixel and a thousandth degree
                "center": [round(float(v), 2) for v in self.box.center],
                "size": round(float(self.box.size), 2),
                "rotation": round(float(self.box.rotation), 3),
            },
            "class_id": int(self.class_id),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Found:
        """The inverse of :meth:`to_dict` (``box`` as ``CropBox.to_dict`` writes it)."""
        box = d["box"]
        x, y, w, h = (float(v) for v in d["rect"])
        return cls(
            float(d.get("score", 1.0)),
            (x, y, w, h),
            CropBox(
                (float(box["center"][0]), float(box["center"][1])),
                float(box["size"]),
                float(box.get("rotation", 0.0)),
            ),
            int(d.get("class_id", 0)),
        )


class Finder(ABC):
    """Finds every ``subject`` in a BGR frame; ``margin`` scales each crop box (the landmark
    model's ``box_margin``: the crop training cut around its labels)."""

    name: ClassVar[str]
    subject: ClassVar[str]  # one of SUBJECTS
    # The .tflite it runs (None: it needs no model file, as OpenCV's bundled cascade):
    # what edge.deploy copies to the Pi and edge.doctor names.
    path: Path | None = None

    def __init__(self, *, margin: float = 1.25) -> None:
        self.margin = margin

    @abstractmethod
    def find(self, image: np.ndarray) -> list[Found]:
        """Every subject in ``image`` (H, W, 3) BGR, best first."""

    def __call__(self, image: np.ndarray) -> CropBox | None:
        """The crop box of the best find, or None: the single-subject tracker's fallback."""
        found = self.find(image)
        return found[0].box if found else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(margin={self.margin})"


def teacher_file(path: str | Path | None, name: str, what: str, flag: str) -> Path:
    """The .tflite a MediaPipe finder runs: ``path`` when given, else ``NAME.tflite`` in
    :func:`edge.host.teacher_dir` (the teacher cache ``training.label`` fills). Missing: a
    one-line :class:`ModelError` saying where it looked and how to get the file."""
    if path is not None:
        found = Path(path).expanduser()
        if not found.is_file():
            raise ModelError(f"{what} file not found: {found}")
        return found
    found = teacher_dir() / f"{name}.tflite"
    if found.is_file():
        return found
    raise ModelError(
        f"{what} needs MediaPipe's {name}.tflite, not found in {found.parent} (${TEACHERS_ENV} "
        f"or the teacher cache): pass its path ({flag} PATH), or get it once with "
        f"`pip download --no-deps mediapipe==0.10.21` and unzip it from mediapipe/modules/"
    )
