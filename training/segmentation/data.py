"""Segmentation datasets: an image, its class map and the square box that training crops.

Layouts read here (``open_parts_dataset(name, path, split=...)``):

* ``helen-parts``: Smith et al.'s Helen face-parsing labels. One folder per image,
  ``<root>/<name>/``, holding the image ``<name>.jpg`` (or ``.png``) and 11 label-probability
  PNGs ``<name>_lbl00.png`` ... ``<name>_lbl10.png`` in :data:`edge.parts.FACE_PARTS` order;
  a pixel's class is the label with the highest probability. ``<root>/<split>.txt``, if
  present, lists the split's names (Helen's ``exemplars.txt`` / ``testing.txt`` lines
  ``"12 , 100032540_1"`` or bare names); without it every folder is in every split.
* ``label-map``: LaPa / CelebAMask-HQ style. ``<root>/classes.txt`` names the classes, one a
  line, in class-id order; ``<root>/<split>/images/<name>.jpg|png`` and
  ``<root>/<split>/labels/<name>.png`` (8-bit class ids, same size as the image). This is
  what ``python -m training.label faceparts`` writes.
* ``synthetic-faceparts``: the procedural faces of :mod:`training.data.synthetic_face` with
  the class map their renderer draws.

The box is :func:`edge.segmentation.box_points` (the box around the face's classes, hair
left out) times ``margin``: the crop the device's tracker cuts from the previous frame.

A record whose image or label file is missing or cannot be decoded raises
:class:`CorruptSample` and is skipped and counted. A mask whose size differs from its
image means the files are paired wrongly: that stops the run with a one-line
:class:`DatasetError`, as does a class list that is not the label set's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.parts import FACE_PARTS, PartLabels
from edge.segmentation import box_points
from edge.transform import CropBox, box_from_points

from ..data.base import (
    CorruptSample,
    DatasetError,
    MixedRecords,
    RecordDataset,
    open_with,
    read_image,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class PartsSample:
    image: np.ndarray  # H x W x 3 uint8 BGR
    mask: np.ndarray  # H x W uint8 class ids
    box: CropBox  # square around the face classes' pixels, times the margin
    id: str = ""


class PartsDataset(RecordDataset):
    """An indexable set of :class:`PartsSample` records for one label set."""

    labels: PartLabels = FACE_PARTS
    margin: float = 1.25

    def make_sample(self, image: np.ndarray, mask: np.ndarray, sample_id: str) -> PartsSample:
        """Check the pair and add the crop box."""
        if mask.shape[:2] != image.shape[:2]:
            raise DatasetError(
                f"{sample_id}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        if int(mask.max(initial=0)) >= self.labels.num_classes:
            raise CorruptSample(
                f"{sample_id}: class id {int(mask.max())} is not one of "
                f"{self.labels.num_classes} classes"
            )
        corners = box_points(mask, self.labels.box_classes)
        if corners is None:
            raise CorruptSample(f"{sample_id}: no face pixels in the mask")
        box = box_from_points(corners, margin=self.margin)
        assert box is not None
        return PartsSample(image, mask, box, sample_id)


def read_mask(path: Path) -> np.ndarray:
    """An 8-bit single-channel PNG as an (H, W) uint8 array; CorruptSample if unreadable."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptSample(f"cannot read {path}: {exc.strerror or exc}") from None
    mask = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if mask is None or mask.size == 0:
        raise CorruptSample(f"cannot decode {path}")
    if mask.ndim == 3:  # a colour-saved grey label: all channels hold the id
        mask = mask[..., 0]
    return mask.astype(np.uint8)


def _find_image(folder: Path, stem: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    raise CorruptSample(f"no image {stem}.jpg/.png in {folder}")


class HelenPartsDataset(PartsDataset):
    """Helen face parsing: a folder per image with 11 label-probability PNGs."""

    def __init__(
        self, path: str | Path | None, *, split: str = "train", margin: float = 1.25
    ) -> None:
        if path is None:
            raise DatasetError("helen-parts needs the dataset folder")
        root = Path(path)
        if not root.is_dir():
            raise DatasetError(f"helen-parts: {root} is not a folder")
        self.root, self.margin = root, margin
        listing = root / f"{split}.txt"
        if listing.is_file():
            names = []
            for line in listing.read_text(encoding="utf-8").splitlines():
                name = line.split(",")[-1].strip()
                if name:
                    names.append(name)
        else:
            names = sorted(p.name for p in root.iterdir() if (p / f"{p.name}_lbl00.png").exists())
        if not names:
            raise DatasetError(f"helen-parts: no <name>/<name>_lbl00.png folders in {root}")
        self.names = names

    def __len__(self) -> int:
        return len(self.names)

    def load(self, index: int) -> PartsSample:
        name = self.names[self._check_index(index)]
        folder = self.root / name
        image = read_image(_find_image(folder, name))
        probs = [
            read_mask(folder / f"{name}_lbl{c:02d}.png") for c in range(self.labels.num_classes)
        ]
        if len({p.shape for p in probs}) != 1:
            raise DatasetError(f"helen-parts/{name}: its label PNGs differ in size")
        mask = np.argmax(np.stack(probs, axis=-1), axis=-1).astype(np.uint8)
        return self.make_sample(image, mask, f"helen-parts/{name}#{index}")


class LabelMapDataset(PartsDataset):
    """One PNG of class ids per image plus ``classes.txt`` (LaPa / CelebAMask-HQ style)."""

    def __init__(
        self, path: str | Path | None, *, split: str = "train", margin: float = 1.25
    ) -> None:
        if path is None:
            raise DatasetError("label-map needs the dataset folder")
        root = Path(path)
        classes_file = root / "classes.txt"
        if not classes_file.is_file():
            raise DatasetError(f"label-map: no classes.txt in {root}")
        classes = tuple(
            t.strip() for t in classes_file.read_text(encoding="utf-8").splitlines() if t.strip()
        )
        if classes != self.labels.classes:
            raise DatasetError(
                f"label-map: {classes_file} lists {', '.join(classes)}; this "
                f"reader knows {self.labels.name}: "
                f"{', '.join(self.labels.classes)}"
            )
        self.images = root / split / "images"
        self.masks = root / split / "labels"
        if not self.masks.is_dir():
            raise DatasetError(f"label-map: no {split}/labels folder in {root}")
        self.names = sorted(p.stem for p in self.masks.glob("*.png"))
        if not self.names:
            raise DatasetError(f"label-map: {self.masks} holds no .png label maps")
        self.margin = margin

    def __len__(self) -> int:
        return len(self.names)

    def load(self, index: int) -> PartsSample:
        name = self.names[self._check_index(index)]
        image = read_image(_find_image(self.images, name))
        mask = read_mask(self.masks / f"{name}.png")
        return self.make_sample(image, mask, f"label-map/{name}#{index}")


def write_label_map(
    root: Path,
    split: str,
    name: str,
    image: np.ndarray,
    mask: np.ndarray,
    labels: PartLabels = FACE_PARTS,
) -> None:
    """Store one record in the ``label-map`` layout (JPEG image, PNG class ids)."""
    from training.files import write_whole

    if not (root / "classes.txt").is_file():
        write_whole(root / "classes.txt", "\n".join(labels.classes) + "\n")
    for folder, suffix, data, params in (
        ("images", ".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92]),
        ("labels", ".png", mask, []),
    ):
        target = root / split / folder / f"{name}{suffix}"
        ok, encoded = cv2.imencode(suffix, data, params)
        if not ok:
            raise OSError(f"cannot encode {target}")
        write_whole(target, encoded.tobytes())


class SyntheticFacePartsDataset(PartsDataset):
    """Procedural faces (training.data.synthetic_face) with their rendered part masks."""

    # Its own stream: the faces differ from synthetic-face's (see training.data.synthetic).
    stream = 200

    def __init__(
        self,
        path: str | None = None,
        *,
        split: str = "train",
        size: int | None = None,
        seed: int = 0,
        image_size: int = 256,
        margin: float = 1.25,
    ) -> None:
        from ..data.synthetic import SPLITS

        if path is not None:
            raise DatasetError("synthetic-faceparts takes no path")
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        self.split_id = SPLITS[split]
        self.split = split
        self.size = int(size if size is not None else (20000 if split == "train" else 500))
        if self.size <= 0 or image_size < 32:
            raise DatasetError("size must be positive and image_size at least 32")
        self.seed, self.image_size, self.margin = int(seed), int(image_size), margin

    def __len__(self) -> int:
        return self.size

    def load(self, index: int) -> PartsSample:
        from ..data.synthetic_face import render_sample

        index = self._check_index(index)
        rng = np.random.default_rng([self.seed, self.stream + self.split_id, index])
        mask = np.zeros((self.image_size, self.image_size), np.uint8)
        image, _, _ = render_sample(rng, self.image_size, parts=mask)
        return self.make_sample(
            image, mask, f"synthetic-faceparts/{self.split}/{self.seed}/{index}"
        )


class MixedPartsDataset(MixedRecords, PartsDataset):
    """Several sets read as one; ``repeats[i]`` lists set i that many times."""


PARTS_DATASETS: dict[str, type[PartsDataset]] = {
    "helen-parts": HelenPartsDataset,
    "label-map": LabelMapDataset,
    "synthetic-faceparts": SyntheticFacePartsDataset,
}


def open_parts_dataset(
    name: str, path: str | Path | None = None, *, split: str = "train", **options
) -> PartsDataset:
    """Open a segmentation dataset by name (see :data:`PARTS_DATASETS`)."""
    factory = PARTS_DATASETS.get(name)
    if factory is None:
        raise DatasetError(
            f"unknown segmentation dataset {name!r}; known: {', '.join(sorted(PARTS_DATASETS))}"
        )
    return open_with(factory, name, path, split=split, **options)
