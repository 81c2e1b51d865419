"""The finders' data: whole frames with every person (or face) in them, and their augmentation.

:class:`FinderDataset` (dataset name ``finder``) reads what ``python -m training.label
person-finder`` / ``face-finder`` writes (:mod:`training.label.finder`): ``finder_<split>.json``
in the dataset folder, ``{"classes": [...], "records": [...]}``, each record a stored frame
(``image``, relative to the folder) with its ``objects`` (score, rect, box) and the teacher's
weaker finds to ``ignore``. Objects scoring under ``min_score`` move to ``ignore``. A record
whose image is missing or broken, or whose objects do not parse, raises
:class:`~training.data.base.CorruptSample`: skipped and counted.

:func:`make_finder_example` is the training example: the frame letterboxed
(:func:`edge.finder_codec.letterbox`) and jittered by the landmark augmentation's draw
(:class:`training.data.augment.AugmentParams`: scale, shift, flip, and its photometric draws:
colour, low light, blur, occluder, noise, JPEG), the objects mapped by the same affine
(:func:`edge.finder_codec.transform_object`: a flip mirrors the crop's rotation too), their
boxes clipped to the input, and the target made by :meth:`edge.finder_codec.FinderCodec.encode`.
With ``finder.mosaic_prob`` an example is instead a 2x2 mosaic (:func:`mosaic_crop`): four
frames, each cut as above into a quarter of the input, their objects moved into its quarter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.finder_codec import (
    FinderCodec,
    Found,
    letterbox,
    letterbox_input,
    transform_object,
)

from ..data.augment import AugmentParams, Normalisation, compose, flip_matrix, photometric
from ..data.base import CorruptSample, DatasetError, MixedRecords, RecordDataset, read_image

# A box cut by the input's edge keeps its label while at least this share of it is inside.
MIN_INSIDE = 0.3


@dataclass
class FinderSample:
    image: np.ndarray  # H x W x 3 uint8 BGR, the whole (stored) frame
    objects: list[Found]  # every labelled subject, image pixels
    ignore: list[Found] = field(default_factory=list)  # neither found nor missed
    id: str = ""


class FinderDataset(RecordDataset):
    """The label tool's finder frames (see the module docstring).

    ``split``: ``train``, ``select`` or ``valid`` (the label tool's sides); ``min_score``:
    the teacher presence an object needs to count (weaker ones are ignored).
    """

    def __init__(
        self, path: str | Path | None, *, split: str = "train", min_score: float = 0.0
    ) -> None:
        if path is None:
            raise DatasetError(
                "finder needs the labelled folder (python -m training.label "
                "person-finder ... --out FOLDER)"
            )
        root = Path(path)
        if not root.exists():
            raise DatasetError(
                f"finder: {root} does not exist (python -m training.label person-finder or "
                "face-finder --out FOLDER makes it)"
            )
        index = root / f"finder_{split}.json" if root.is_dir() else root
        if not index.is_file():
            raise DatasetError(
                f"finder: no {index.name} in {root} (the label tool writes one per side: "
                "train, and with --split select and valid)"
            )
        try:
            doc = json.loads(index.read_text(encoding="utf-8"))
            self.classes = tuple(str(c) for c in doc["classes"])
            self.records = list(doc["records"])
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"finder: {index} is not a finder index: {exc}") from None
        if not self.classes:
            raise DatasetError(f"finder: {index} names no classes")
        self.root = index.parent
        self.split = split
        self.min_score = float(min_score)

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> FinderSample:
        record = self.records[self._check_index(index)]
        try:
            objects = [Found.from_dict(o) for o in record.get("objects", [])]
            ignore = [Found.from_dict(o) for o in record.get("ignore", [])]
            image_path = self.root / record["image"]
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise CorruptSample(f"finder record {index}: malformed objects ({exc})") from None
        if any(not 0 <= o.class_id < len(self.classes) for o in objects):
            raise CorruptSample(f"finder record {index}: a class id outside {self.classes}")
        image = read_image(image_path)
        weak = [o for o in objects if o.score < self.min_score]
        kept = [o for o in objects if o.score >= self.min_score]
        return FinderSample(image, kept, ignore + weak, str(record.get("source", index)))


class MixedFinderDataset(MixedRecords, RecordDataset):
    """Several finder sets of the same classes read as one (``dataset.mix``); ``repeats[i]``
    lists set i that many times (e.g. photos, each someone new, against a clip's frames)."""

    def __init__(self, parts: list[FinderDataset], repeats: list[int] | None = None) -> None:
        classes = {p.classes for p in parts}
        if len(classes) != 1:
            raise DatasetError(f"mixed finder sets must find the same classes, got {classes}")
        super().__init__(parts, repeats)
        self.classes = parts[0].classes


def clip_to_input(obj: Found, size: int) -> Found | None:
    """``obj`` with its box clipped to a ``size`` x ``size`` input (the labels are clipped to
    their frame the same way), or None when under :data:`MIN_INSIDE` of it is inside."""
    x0, y0, x1, y1 = obj.corners
    cx0, cy0 = max(x0, -0.5), max(y0, -0.5)
    cx1, cy1 = min(x1, size - 0.5), min(y1, size - 0.5)
    area = (x1 - x0) * (y1 - y0)
    inside = max(cx1 - cx0, 0.0) * max(cy1 - cy0, 0.0)
    if area <= 0 or inside < MIN_INSIDE * area:
        return None
    return Found(obj.score, (cx0, cy0, cx1 - cx0, cy1 - cy0), obj.box, obj.class_id)


def finder_crop(
    sample: FinderSample,
    input_size: int,
    params: AugmentParams = AugmentParams(),  # noqa: B008
) -> tuple[np.ndarray, list[Found]]:
    """The input image (uint8 BGR, letterboxed and augmented) and the objects in its pixels."""
    box = params.crop_box(letterbox(sample.image.shape))
    crop, matrix = letterbox_input(sample.image, input_size, box)
    if params.flip:
        crop = np.ascontiguousarray(crop[:, ::-1])
        matrix = compose(flip_matrix(input_size), matrix)
    objects = [transform_object(o, matrix) for o in sample.objects]
    objects = [c for c in (clip_to_input(o, input_size) for o in objects) if c is not None]
    return photometric(crop, params), objects


MOSAIC_TILES = 4  # a 2 x 2 mosaic


def mosaic_crop(
    samples: list[FinderSample], input_size: int, params: list[AugmentParams]
) -> tuple[np.ndarray, list[Found]]:
    """A 2x2 mosaic (uint8 BGR, ``input_size`` square) of :data:`MOSAIC_TILES` frames and the
    objects in its pixels: sample ``k`` is cut by :func:`finder_crop` with ``params[k]`` into a
    tile half the input's side, placed left to right, top to bottom; its objects are clipped to
    the tile (so nobody spills into a neighbour's quarter) and shifted with it."""
    if len(samples) != MOSAIC_TILES or len(params) != MOSAIC_TILES:
        raise ValueError(f"a mosaic needs {MOSAIC_TILES} samples and draws")
    if input_size % 2:
        raise ValueError(f"a mosaic needs an even input size, got {input_size}")
    half = input_size // 2
    canvas = np.empty((input_size, input_size, 3), np.uint8)
    objects: list[Found] = []
    for k, (sample, draw) in enumerate(zip(samples, params, strict=True)):
        tile, found = finder_crop(sample, half, draw)
        top, left = (k // 2) * half, (k % 2) * half
        canvas[top : top + half, left : left + half] = tile
        shift = np.array([[1.0, 0.0, left], [0.0, 1.0, top]])
        objects += [transform_object(o, shift) for o in found]
    return canvas, objects


def make_finder_example(
    sample: FinderSample,
    *,
    codec: FinderCodec,
    normalise: Normalisation,
    params: AugmentParams = AugmentParams(),  # noqa: B008 - frozen, so a shared default is safe
) -> tuple[np.ndarray, np.ndarray]:
    """Model input (S, S, 3) float32 and its target (G, G, C + 10) (codec.encode)."""
    crop, objects = finder_crop(sample, codec.input_size, params)
    return normalise(crop), codec.encode(objects)
