"""MPII Human Pose in its widely used JSON form (the HRNet / mmpose preprocessing).

The annotation file is a list of person records::

    {"image": "015601864.jpg", "center": [594.0, 257.0], "scale": 3.021,
     "joints": [[620.0, 394.0], ...16 pairs], "joints_vis": [1, 1, ...16 flags],
     "headbox": [x1, y1, x2, y2]}          # optional

Coordinates: those files keep MPII's 1-based Matlab pixel coordinates (HRNet's and mmpose's
loaders subtract 1 when reading). This reader does the same by default (``one_based=True``),
so points land on the project's 0-based pixel-centre convention; pass ``one_based=False``
for a file already converted to 0-based.

Box: the square around the visible joints, enlarged by ``margin`` (1.25): the crop the
device's tracker makes from the same landmarks (:func:`edge.transform.box_from_points`), so
training, evaluation and the device see people at one scale. MPII's own ``center`` and
``scale`` (person height / 200 px) are used only for a person with fewer than two visible
joints, following Newell's hourglass code: the centre moved down by ``15 * scale`` pixels
and a side of ``scale * 200 * margin``.

Head size (PCKh): 0.6 * the diagonal of the head box. It comes from a ``headbox`` field if
the record has one, else from the ``headboxes_src`` array of HRNet's ``gt_valid.mat``
(option ``headboxes=``, in the same record order as the JSON), else it is None.

``joints_vis`` becomes ``visible``; joints with non-positive coordinates (MPII's marker for
"not annotated") are also marked invisible.

A record's ``scores`` (the label tool's teacher score per joint) becomes ``Sample.scores``,
clipped to [0, 1]; a malformed list is left out and counted in ``dataset.bad_scores`` (see
:mod:`training.data.teacher_scores`).

``path`` is the JSON file, or the MPII root with ``annot/{train,valid,trainval,test}.json``
(``split`` = train, val/valid, trainval, test). Images are looked up in ``images=``, by
default ``<root>/images``. An image with a ``<stem>.mask.png`` beside it (the label tool's
person mask) gives its sample that mask (:func:`training.data.base.read_mask`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge.skeletons import MPII16
from edge.transform import CropBox, box_from_points

from .base import (
    CorruptSample,
    DatasetError,
    LandmarkDataset,
    Sample,
    find_annotation,
    read_image,
    read_mask,
    read_scores,
)

SPLIT_FILES = {
    "train": "train.json",
    "val": "valid.json",
    "valid": "valid.json",
    "trainval": "trainval.json",
    "test": "test.json",
}
BOX_MARGIN = 1.25
PIXELS_PER_SCALE = 200.0
CENTER_SHIFT = 15.0  # pixels per unit of scale, downwards


def head_size_from_box(box: np.ndarray) -> float:
    """MPII's PCKh normaliser: 0.6 * the diagonal of the head box [x1, y1, x2, y2]."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return 0.6 * float(np.hypot(x2 - x1, y2 - y1))


def _load_headboxes(path: str | Path) -> np.ndarray:
    """(N, 4) head boxes [x1, y1, x2, y2] from HRNet's gt_valid.mat ``headboxes_src`` (2x2xN)."""
    from scipy.io import loadmat

    try:
        src = np.asarray(loadmat(str(path))["headboxes_src"], np.float64)
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(f"mpii: cannot read headboxes_src from {path}: {exc}") from None
    if src.ndim != 3 or src.shape[:2] != (2, 2):
        raise DatasetError(f"mpii: headboxes_src in {path} has shape {src.shape}, expected 2x2xN")
    # src[corner, axis, n]: corner 0 = top-left, 1 = bottom-right.
    return np.stack([src[0, 0], src[0, 1], src[1, 0], src[1, 1]], axis=1)


class MPIIDataset(LandmarkDataset):
    skeleton = MPII16

    def __init__(
        self,
        path: str | Path | None,
        *,
        split: str = "train",
        images: str | Path | None = None,
        headboxes: str | Path | None = None,
        one_based: bool = True,
        margin: float = BOX_MARGIN,
    ) -> None:
        if path is None:
            raise DatasetError("mpii needs a path: the annotation JSON or the MPII folder")
        annotation = find_annotation("mpii", Path(path), split, SPLIT_FILES, "annot")
        try:
            records = json.loads(annotation.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"mpii: cannot read {annotation}: {exc}") from None
        if not isinstance(records, list):
            raise DatasetError(f"mpii: {annotation} must hold a list of records")
        if images is None:
            root = (
                annotation.parent.parent if annotation.parent.name == "annot" else annotation.parent
            )
            images = root / "images"
        self.images = Path(images)
        self.records = records
        self.annotation = annotation
        self.one_based = one_based
        self.margin = margin
        self.headboxes = None if headboxes is None else _load_headboxes(headboxes)
        if self.headboxes is not None and len(self.headboxes) != len(records):
            raise DatasetError(
                f"mpii: {len(self.headboxes)} head boxes for {len(records)} records in {annotation}"
            )

    def __len__(self) -> int:
        return len(self.records)

    def _parse(self, index: int) -> tuple[str, np.ndarray, np.ndarray, CropBox, float | None]:
        record = self.records[index]
        offset = 1.0 if self.one_based else 0.0
        k = self.skeleton.num_landmarks
        try:
            name = str(record["image"])
            joints = np.asarray(record["joints"], np.float64).reshape(k, 2)
            vis = np.asarray(record.get("joints_vis", np.ones(k)), np.float64).reshape(k)
            center = np.asarray(record["center"], np.float64).reshape(2)
            scale = float(record["scale"])
            headbox = record.get("headbox")
            headbox = None if headbox is None else np.asarray(headbox, np.float64).reshape(4)
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptSample(f"{self.annotation.name} record {index}: {exc!r}") from None
        if not (np.isfinite(joints).all() and np.isfinite(center).all()) or not scale > 0:
            raise CorruptSample(f"{self.annotation.name} record {index}: bad center/scale/joints")
        if center[0] == -1:  # MPII's "no person position" marker
            raise CorruptSample(f"{self.annotation.name} record {index}: no person centre")
        visible = (vis > 0) & (joints > 0).all(axis=1)
        points = joints - offset
        if visible.sum() >= 2:
            box = box_from_points(points, visible, margin=self.margin)
        else:
            cx, cy = center - offset
            cy += CENTER_SHIFT * scale
            box = CropBox((float(cx), float(cy)), scale * PIXELS_PER_SCALE * self.margin)
        if headbox is None and self.headboxes is not None:
            headbox = self.headboxes[index]
        head_size = None if headbox is None else head_size_from_box(headbox)
        return name, points, visible, box, head_size

    def load(self, index: int) -> Sample:
        index = self._check_index(index)
        name, points, visible, box, head_size = self._parse(index)
        image = read_image(self.images / name)
        mask = read_mask(self.images / name, image.shape[:2], self.bad_masks, index)
        k = self.skeleton.num_landmarks
        scores = read_scores(self.records[index].get("scores"), k, self.bad_scores, index)
        return Sample(
            image,
            points,
            visible,
            box,
            head_size=head_size,
            id=f"{name}#{index}",
            mask=mask,
            scores=scores,
        )
