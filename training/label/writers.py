"""Write teacher labels in formats :mod:`training.data` already reads.

* MPII-16: the HRNet/mmpose MPII JSON list (``training.data.mpii``), with MPII's 1-based
  pixel coordinates so the standard reader needs no option; extra keys ``scores`` (teacher
  confidence per joint) and ``source`` are ignored by the reader.
* COCO-17: ``person_keypoints_<split>.json`` (``training.data.coco``), one annotation per
  person, ``v = 2`` for a confident joint, ``0`` otherwise, plus a ``scores`` list.
* iBUG-68: a 300W ``.pts`` file beside each image, written by the reader's own
  :func:`training.data.pts.write_pts` (1-based).

Every file is written to a temporary name and renamed, so an interrupted run never leaves a
half-written annotation behind.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edge.transform import CropBox
from training.files import write_whole


def mpii_record(
    image: str,
    points: np.ndarray,
    visible: np.ndarray,
    scores: np.ndarray,
    headbox: np.ndarray,
    box: CropBox,
    source: str,
) -> dict:
    """One MPII JSON person record; ``points``, ``headbox`` and ``box`` are 0-based pixel
    centres. ``center`` and ``scale`` hold the landmarks' box (MPII's scale is side / 200)."""
    one_based = np.asarray(points, np.float64) + 1.0
    return {
        "image": image,
        "center": [round(float(v) + 1.0, 2) for v in box.center],
        "scale": round(float(box.size) / 200.0, 4),
        "joints": [[round(float(x), 2), round(float(y), 2)] for x, y in one_based],
        "joints_vis": [int(v) for v in np.asarray(visible, bool)],
        "headbox": [round(float(v) + 1.0, 2) for v in headbox],
        "scores": [round(float(s), 3) for s in scores],
        "source": source,
    }


def coco_document(people: Iterable[dict]) -> dict:
    """A COCO keypoints document from records with ``image``, ``points``, ``visible``,
    ``scores`` and ``source`` (points 0-based pixel centres, 17 of them)."""
    images: dict[str, int] = {}
    annotations = []
    for person in people:
        image_id = images.setdefault(person["image"], len(images) + 1)
        p = np.asarray(person["points"], np.float64)
        v = np.asarray(person["visible"], bool)
        kp = np.concatenate([p, np.where(v, 2, 0)[:, None]], axis=1)
        vis = p[v]
        # COCO boxes are pixel edges: half a pixel out from the extreme pixel centres.
        x0, y0 = vis.min(axis=0) - 0.5
        x1, y1 = vis.max(axis=0) + 0.5
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": 1,
                "iscrowd": 0,
                "keypoints": [round(float(t), 2) for t in kp.reshape(-1)],
                "num_keypoints": int(v.sum()),
                "bbox": [round(float(t), 2) for t in (x0, y0, x1 - x0, y1 - y0)],
                "area": round(float((x1 - x0) * (y1 - y0)), 1),
                "scores": [round(float(s), 3) for s in person["scores"]],
                "source": person["source"],
            }
        )
    return {
        "images": [{"id": i, "file_name": name} for name, i in images.items()],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}],
    }


def write_json(path: Path, data: object) -> None:
    write_whole(path, json.dumps(data, separators=(",", ":")))
