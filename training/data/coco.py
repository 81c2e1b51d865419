"""COCO keypoints (``person_keypoints_*.json``), one sample per annotated person.

Each person annotation has ``keypoints`` (17 x [x, y, v]), ``bbox`` [x, y, w, h],
``iscrowd`` and ``num_keypoints``. Crowd regions and people with no labelled keypoint are
left out when the file is read (they are not errors). ``v`` is 0 (not labelled), 1
(labelled, hidden) or 2 (labelled, visible); a keypoint is ``visible`` (has a usable
ground truth) when ``v > 0``, as in HRNet's training targets.

Coordinates: keypoints are integer pixel indices, used as they are. The box is the square
around the labelled keypoints enlarged by ``margin`` (1.25), the crop the device's tracker
makes from the same landmarks (:func:`edge.transform.box_from_points`). A person with fewer
than two labelled keypoints falls back to the square around ``bbox`` (side
``max(w, h) * margin``); COCO's box corners are pixel *edges*, so its centre in the
pixel-centre convention is ``(x + w/2 - 0.5, y + h/2 - 0.5)``.

``path`` is the annotation JSON or the COCO root holding
``annotations/person_keypoints_{split}2017.json`` and ``{split}2017/`` (split ``train`` or
``val``). ``images=`` overrides the image folder; by default it is ``<root>/<split>2017``
(for a JSON path: the ``<name>`` of ``person_keypoints_<name>.json`` beside ``annotations/``),
or, where that folder does not exist, ``images/`` beside ``annotations/``: the label tool's
layout (``python -m training.label pose`` writes every split's crops there).

Teacher scores: an annotation's ``scores`` list (K numbers, the label tool's teacher score
per keypoint) becomes ``Sample.scores``, clipped to [0, 1]; a malformed one is left out and
counted in ``dataset.bad_scores`` (see :mod:`training.data.teacher_scores`).

Person masks: an image with a ``<stem>.mask.png`` beside it (the label tool writes one per
stored crop) gives its sample that mask (:func:`training.data.base.read_mask`); COCO's own
images have none.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge.skeletons import COCO17
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


class COCODataset(LandmarkDataset):
    skeleton = COCO17

    def __init__(
        self,
        path: str | Path | None,
        *,
        split: str = "train",
        images: str | Path | None = None,
        margin: float = 1.25,
    ) -> None:
        if path is None:
            raise DatasetError("coco needs a path: the keypoint JSON or the COCO folder")
        name = f"person_keypoints_{split}2017.json"
        annotation = find_annotation("coco", Path(path), split, name, "annotations")
        try:
            data = json.loads(annotation.read_text(encoding="utf-8"))
            files = {int(im["id"]): str(im["file_name"]) for im in data["images"]}
            annotations = list(data["annotations"])
        except (
            OSError,
            UnicodeDecodeError,
            json.JSONDecodeError,
            KeyError,
            TypeError,
            ValueError,
        ) as exc:
            raise DatasetError(f"coco: cannot read {annotation}: {exc!r}") from None
        if images is None:
            root = (
                annotation.parent.parent
                if annotation.parent.name == "annotations"
                else annotation.parent
            )
            stem = annotation.stem.removeprefix("person_keypoints_")
            images = root / stem
            if not images.is_dir() and (root / "images").is_dir():
                images = root / "images"  # the label tool's layout
        self.images = Path(images)
        self.files = files
        self.annotation = annotation
        self.margin = margin
        self.people = [a for a in annotations if self._usable(a)]

    @staticmethod
    def _usable(ann: object) -> bool:
        # Crowds and unlabelled people are not samples; malformed entries are kept so they
        # are counted as corrupt when loaded.
        if not isinstance(ann, dict):
            return True
        return not ann.get("iscrowd", 0) and ann.get("num_keypoints", 1) != 0

    def __len__(self) -> int:
        return len(self.people)

    def load(self, index: int) -> Sample:
        index = self._check_index(index)
        ann = self.people[index]
        k = self.skeleton.num_landmarks
        try:
            kp = np.asarray(ann["keypoints"], np.float64).reshape(k, 3)
            x, y, w, h = (float(v) for v in ann["bbox"])
            file_name = self.files[int(ann["image_id"])]
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptSample(f"{self.annotation.name} annotation {index}: {exc!r}") from None
        if not np.isfinite(kp).all() or not (w > 0 and h > 0):
            raise CorruptSample(f"{self.annotation.name} annotation {index}: bad keypoints or bbox")
        visible = kp[:, 2] > 0
        if not visible.any():
            raise CorruptSample(f"{self.annotation.name} annotation {index}: no labelled keypoint")
        if visible.sum() >= 2:
            box = box_from_points(kp[:, :2], visible, margin=self.margin)
        else:
            box = CropBox((x + w / 2 - 0.5, y + h / 2 - 0.5), max(w, h) * self.margin)
        image = read_image(self.images / file_name)
        mask = read_mask(self.images / file_name, image.shape[:2], self.bad_masks, index)
        # "#<record index>", as every reader that can hold one image twice: evaluation finds a
        # prediction's record again by it (COCO's own annotation id is not a record index).
        ident = f"{file_name}#{index}"
        scores = read_scores(ann.get("scores"), k, self.bad_scores, index)
        return Sample(
            image, kp[:, :2].astype(np.float32), visible, box, id=ident, mask=mask, scores=scores
        )
