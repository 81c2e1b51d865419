"""Leeds Sports Pose (LSP) and LSP-extended, from their ``joints.mat``.

The two releases store the same 14 joints differently:

* LSP (2000 images, ``images/im0001.jpg``...): ``joints`` is 3 x 14 x N and its third row is
  an *occlusion* flag (1 = occluded), so visibility is ``1 - flag``. Occluded joints still
  have annotated positions.
* LSP-extended (10000 images, ``images/im00001.jpg``...): ``joints`` is 14 x 3 x N and its
  third column is a *visibility* flag (1 = visible).

The layout is recognised from the array's shape (``layout="auto"``), or forced with
``layout="lsp"`` / ``"lspet"``. Coordinates are 1-based Matlab pixels; the reader subtracts
1 (``one_based=True``). Joints with non-positive coordinates are marked invisible.

``keep_occluded=True`` keeps LSP's occluded-but-annotated joints visible, which is what the
standard LSP PCK protocol scores (all 14 joints).

Splits: for LSP, ``train`` is images 1-1000 and ``test`` images 1001-2000 (the standard
split); LSP-extended is all ``train``. ``split="all"`` reads every record.

The box is square around the annotated joints, enlarged by ``margin`` (1.25).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.skeletons import LSP14
from edge.transform import box_from_points

from .base import CorruptSample, DatasetError, LandmarkDataset, Sample, read_image

LSP_TRAIN = 1000


def load_joints(path: Path, layout: str = "auto") -> tuple[np.ndarray, np.ndarray, str]:
    """(N, 14, 2) 1-based points, (N, 14) visibility and the layout name from ``joints.mat``."""
    from scipy.io import loadmat

    try:
        joints = np.asarray(loadmat(str(path))["joints"], np.float64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"lsp: cannot read 'joints' from {path}: {exc!r}") from None
    if joints.ndim == 2:  # a single record loses its last axis in Matlab
        joints = joints[..., None]
    k = LSP14.num_landmarks
    if layout == "auto":
        if joints.shape[:2] == (3, k):
            layout = "lsp"
        elif joints.shape[:2] == (k, 3):
            layout = "lspet"
        else:
            raise DatasetError(
                f"lsp: joints in {path} have shape {joints.shape}; expected 3x14xN or 14x3xN"
            )
    if layout == "lsp":
        if joints.shape[:2] != (3, k):
            raise DatasetError(f"lsp: layout 'lsp' needs 3x14xN joints, got {joints.shape}")
        arr = joints.transpose(2, 1, 0)  # (N, 14, 3)
        visible = arr[..., 2] == 0  # the flag marks occlusion
    elif layout == "lspet":
        if joints.shape[:2] != (k, 3):
            raise DatasetError(f"lsp: layout 'lspet' needs 14x3xN joints, got {joints.shape}")
        arr = joints.transpose(2, 0, 1)
        visible = arr[..., 2] > 0  # the flag marks visibility
    else:
        raise DatasetError(f"lsp: unknown layout {layout!r}; use auto, lsp or lspet")
    return arr[..., :2], visible, layout


class LSPDataset(LandmarkDataset):
    skeleton = LSP14

    def __init__(
        self,
        path: str | Path | None,
        *,
        split: str = "train",
        images: str | Path | None = None,
        layout: str = "auto",
        keep_occluded: bool = False,
        one_based: bool = True,
        margin: float = 1.25,
    ) -> None:
        if path is None:
            raise DatasetError("lsp needs a path: joints.mat or the folder holding it")
        path = Path(path)
        mat = path / "joints.mat" if path.is_dir() else path
        if not mat.is_file():
            raise DatasetError(f"lsp: {mat} does not exist")
        points, visible, self.layout = load_joints(mat, layout)
        n = len(points)
        if self.layout == "lsp" and keep_occluded:
            visible = np.ones_like(visible)
        self.annotated = (points > 0).all(axis=-1)
        visible = visible & self.annotated
        if split == "all":
            indices = np.arange(n)
        elif self.layout == "lsp" and split == "train":
            indices = np.arange(min(n, LSP_TRAIN))
        elif self.layout == "lsp" and split in ("test", "val"):
            indices = np.arange(LSP_TRAIN, n)
        elif self.layout == "lspet" and split == "train":
            indices = np.arange(n)
        else:
            raise DatasetError(f"lsp: no split {split!r} in {self.layout} (use train, test or all)")
        self.indices = indices
        self.points = points - (1.0 if one_based else 0.0)
        self.visible = visible
        self.images = Path(images) if images is not None else mat.parent / "images"
        self.digits = 4 if self.layout == "lsp" else 5
        self.margin = margin

    def __len__(self) -> int:
        return len(self.indices)

    def image_path(self, record: int) -> Path:
        return self.images / f"im{record + 1:0{self.digits}d}.jpg"

    def load(self, index: int) -> Sample:
        record = int(self.indices[self._check_index(index)])
        points = self.points[record].astype(np.float32)
        visible = self.visible[record]
        if not np.isfinite(points).all():
            raise CorruptSample(f"lsp record {record + 1}: non-finite coordinates")
        # Box around the annotated joints (LSP's occluded joints have positions too).
        box = box_from_points(points, self.annotated[record], margin=self.margin)
        if box is None:
            raise CorruptSample(f"lsp record {record + 1}: no annotated joints")
        image = read_image(self.image_path(record))
        return Sample(image, points, visible, box, id=self.image_path(record).name)
