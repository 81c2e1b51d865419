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
# The second look in tiles (edge.finder.FinderModel's ``tile_below``) each subject's finder
# takes by default: when no find of the whole frame scores this much. Faces: chosen on the face
# finder's select side (benchmarks/results/finder_tiles_face_select.md; faces a tenth of the
# frame tall and up: recall 89.1 -> 92.0 %, precision 84.8 -> 83.3 %; from a 25th up: 84.5 ->
# 89.5 %, 74.7 -> 72.0 %), for faces too small for the whole-frame look. People: never
# (finder_tiles_person_select.md: at most 1.5 points of recall for 3.6 of precision).
TILE_BELOW = {"face": 0.6, "person": None}


class BinaryFinder(Finder):
    """Every ``subject`` a 1-bit finder model finds, best first (its other classes dropped).
    ``tile_below``: :class:`edge.finder.FinderModel`'s second look in tiles ("auto": the
    subject's :data:`TILE_BELOW`; None: never)."""

    name = "binary"
    subject = "person"  # set per instance from the model's classes

    def __init__(
        self,
        path: str | Path,
        *,
        subject: str = "person",
        margin: float = LABEL_MARGIN,
        min_score: float | None = None,
        tile_below: float | str | None = "auto",
        num_threads: int = DEFAULT_THREADS,
        backend: str = "auto",
    ) -> None:
        from ..finder import FinderModel  # the network stack, only when a finder model is used

        super().__init__(margin=margin)
        if tile_below == "auto":
            tile_below = TILE_BELOW.get(subject)
        self.model = FinderModel(
            path,
            backend=backend,
            num_threads=num_threads,
            min_score=min_score,
            tile_below=tile_below,
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
