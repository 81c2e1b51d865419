"""The project's own 1-bit finder (a ``training.finder`` model, metadata task ``finder``) as a
finder of one subject, so ``edge.live --person-finder person_finder.tflite`` and
``--face-detector face_finder.tflite`` run it like MediaPipe's detectors.

Its crops need no conversion: ``training.label person-finder`` / ``face-finder`` label each
subject's crop as the landmark labellers cut theirs (``box_from_points`` of the learnt points
times ``--box-margin``), so a find's ``box`` is the crop the landmark models were trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..backends.base import DEFAULT_THREADS
from ..errors import ModelError
from ..transform import CropBox
from .base import Finder, Found

# The landmark crop's margin the finder labels were cut with (training.label's --box-margin
# default, every bundled landmark model's box_margin): a landmark model with another margin
# gets the crop rescaled to its own.
LABEL_MARGIN = 1.25


class BinaryFinder(Finder):
    """Every ``subject`` a 1-bit finder model finds, best first (its other classes dropped)."""

    name = "binary"
    subject = "person"  # set per instance from the model's classes

    def __init__(
        self,
        path: str | Path,
        *,
        subject: str = "person",
        margin: float = LABEL_MARGIN,
        min_score: float | None = None,
        num_threads: int = DEFAULT_THREADS,
        backend: str = "auto",
    ) -> None:
        from ..finder import FinderModel  # the network stack, only when a finder model is used

        super().__init__(margin=margin)
        self.model = FinderModel(
            path, backend=backend, num_threads=num_threads, min_score=min_score
        )
        self.path = self.model.path
        if subject not in self.model.classes:
            raise ModelError(
                f"{path} finds {', '.join(self.model.classes)}, not a {subject}: give a "
                f"{subject} finder"
            )
        self.subject = subject
        self.class_id = self.model.classes.index(subject)

    def find(self, image: np.ndarray) -> list[Found]:
        scale = self.margin / LABEL_MARGIN
        return [
            Found(f.score, f.rect, CropBox(f.box.center, f.box.size * scale, f.box.rotation))
            for f in self.model.find(image)
            if f.class_id == self.class_id
        ]

    def __repr__(self) -> str:
        return f"BinaryFinder({self.model.path.name!r}, {self.subject}, margin={self.margin})"
