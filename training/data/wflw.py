"""WFLW: 98-point faces from its text annotation files.

Each line of ``list_98pt_rect_attr_{train,test}.txt`` holds, separated by spaces::

    x0 y0 x1 y1 ... x97 y97   (196 floats, 0-based pixels)
    x_min y_min x_max y_max   (the face rectangle)
    pose expression illumination make-up occlusion blur   (0/1 attribute flags)
    image name relative to WFLW_images/, e.g. 51--Dresses/51_Dresses_wearingdress_51_377.jpg

The coordinates are used as they are (the common WFLW tools treat them as 0-based). All
points count as visible. The box is the square around the landmarks, enlarged by
``margin`` (the crop the device's tracker makes; the face rectangle is not used). ``subset`` picks the lines whose attribute flag is set (``"pose"``,
``"expression"``, ``"illumination"``, ``"makeup"``, ``"occlusion"``, ``"blur"``), the
standard WFLW test subsets.

``path`` is the annotation file, or the WFLW root holding ``WFLW_annotations/`` and
``WFLW_images/`` (then ``split`` picks train or test). ``images`` overrides the image folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.skeletons import WFLW98
from edge.transform import box_from_points

from .base import (
    CorruptSample,
    DatasetError,
    LandmarkDataset,
    Sample,
    find_annotation,
    read_image,
)

ATTRIBUTES = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")
ANNOTATION_DIR = "WFLW_annotations/list_98pt_rect_attr_train_test"
SPLIT_FILES = {"train": "list_98pt_rect_attr_train.txt", "test": "list_98pt_rect_attr_test.txt"}
SPLIT_FILES["val"] = SPLIT_FILES["test"]


class WFLWRecord:
    __slots__ = ("points", "rect", "attributes", "image", "line")

    def __init__(self, line: str, number: int) -> None:
        parts = line.split()
        n = 2 * WFLW98.num_landmarks
        if len(parts) != n + 4 + len(ATTRIBUTES) + 1:
            raise ValueError(f"line {number}: {len(parts)} fields, expected {n + 11}")
        values = np.asarray([float(v) for v in parts[: n + 4]], np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"line {number}: non-finite coordinates")
        self.points = values[:n].reshape(-1, 2).astype(np.float32)
        self.rect = values[n : n + 4]
        self.attributes = tuple(int(v) for v in parts[n + 4 : n + 10])
        self.image = parts[-1]
        self.line = number


class WFLWDataset(LandmarkDataset):
    skeleton = WFLW98

    def __init__(
        self,
        path: str | Path | None,
        *,
        split: str = "train",
        images: str | Path | None = None,
        subset: str | None = None,
        margin: float = 1.25,
    ) -> None:
        if path is None:
            raise DatasetError("wflw needs a path: the annotation file or the WFLW folder")
        annotation = find_annotation("wflw", Path(path), split, SPLIT_FILES, ANNOTATION_DIR)
        if images is None:
            root = annotation.parent
            for _ in range(4):  # the annotation file sits a few levels below the root
                if (root / "WFLW_images").is_dir():
                    break
                root = root.parent
            images = root / "WFLW_images" if (root / "WFLW_images").is_dir() else annotation.parent
        self.images = Path(images)
        if subset is not None and subset not in ATTRIBUTES:
            raise DatasetError(
                f"wflw: unknown subset {subset!r}; use one of {', '.join(ATTRIBUTES)}"
            )
        try:
            lines = annotation.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            raise DatasetError(f"wflw: cannot read {annotation}: {exc.strerror or exc}") from None
        # A malformed line stays in the list as its error message, so it is skipped and
        # counted like a broken image instead of stopping the whole dataset.
        self.records: list[WFLWRecord | str] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = WFLWRecord(line, number)
            except ValueError as exc:
                self.records.append(f"{annotation.name}: {exc}")
                continue
            if subset is not None and not record.attributes[ATTRIBUTES.index(subset)]:
                continue
            self.records.append(record)
        self.annotation = annotation
        self.margin = margin

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> Sample:
        record = self.records[self._check_index(index)]
        if isinstance(record, str):
            raise CorruptSample(record)
        image = read_image(self.images / record.image)
        # The device's crop: the square around the landmarks, x margin (not WFLW's face
        # rectangle, which the device never sees).
        box = box_from_points(record.points, margin=self.margin)
        if box.size <= 1.0:
            raise CorruptSample(f"{self.annotation.name} line {record.line}: degenerate landmarks")
        visible = np.ones(len(record.points), bool)
        return Sample(image, record.points, visible, box, id=f"{record.image}#{record.line}")
