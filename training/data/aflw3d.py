"""AFLW2000-3D and 300W-LP: the large-pose face sets of 3DDFA (Zhu et al.), in their own ``.mat``
layout. 300W-LP is the standard training set for the AFLW2000-3D protocol.

**AFLW2000-3D** (``AFLW2000/``): one ``imageNNNNN.jpg`` and one ``imageNNNNN.mat`` per face.
The ``.mat`` holds (Matlab layout, one column per point):

* ``pt3d_68`` (3 x 68): the 68 iBUG points of the fitted 3D face, projected into the image
  (x, y, z). The protocol's 68-point ground truth is its first two rows: every point has a
  position, including self-occluded ones, so all 68 count as visible.
* ``pt2d`` (2 x 21): AFLW's own 21 points (see :data:`edge.skeletons.AFLW21`), ``-1`` where
  AFLW did not annotate the point. ``landmarks="21"`` reads these instead.
* ``Pose_Para`` (1 x 7): pitch, yaw, roll (radians), tx, ty, tz, scale. The sample's ``yaw``
  is the second value in degrees; the protocol reports NME per |yaw| bin (0-30, 30-60,
  60-90 degrees) and their mean.

**300W-LP** (``300W_LP/``): the 300W faces rendered at larger poses, in ``AFW/``, ``HELEN/``,
``IBUG/``, ``LFPW/`` and their mirrored copies ``AFW_Flip/`` ... ``LFPW_Flip/``. Beside every
image is a ``.mat`` with ``pt2d`` (2 x 68, the 68 points of that image, mirrored ones
included) and ``Pose_Para``. The ``landmarks/`` folder holds, for the unmirrored images only,
``landmarks/<SUBSET>/<image stem>_pts.mat`` with ``pts_2d`` and ``pts_3d`` (68 x 2 each): the
visible-contour points and the projected 3D points. ``points`` picks the source:

* ``"3d"`` (default): ``pts_3d`` from ``landmarks/``, the same kind of point as AFLW2000-3D's
  ``pt3d_68``, so a model trained on them is scored against what it learned;
* ``"2d"``: ``pts_2d`` from ``landmarks/``;
* ``"mat"``: ``pt2d`` from the ``.mat`` beside each image.

Mirrored copies (``flipped=True``, the default, doubles the set): with a ``landmarks/``
source the mirrored image gets the mirror of its original's points, ``x -> W - 1 - x``
(pixel-centre convention), relabelled through the 68-point flip pairs. With ``points="mat"``
the mirrored image's own ``pt2d`` is read; whether the release stores those in iBUG order or
in mirror order could not be checked here, so ``flip_order="auto"`` decides per record from
the geometry (in iBUG order the outer eye corners 36 -> 45 turn clockwise into the nose
bridge -> chin direction 27 -> 8 in image coordinates; a mirror reverses that), and
``"as_stored"`` / ``"mirrored"`` force it.

Coordinates are used as stored (``one_based=False``). The two sets come from the same
3DDFA pipeline and share one convention, so a model trained on 300W-LP and scored on
AFLW2000-3D sees no offset; set ``one_based=True`` to subtract 1 when comparing with tools
that treat the files as Matlab 1-based. The crop box is the square around the landmarks
times ``margin`` (1.25), the crop the device's tracker makes.

A file that cannot be read, lacks its key, has the wrong shape or non-finite values, or
whose image is missing or broken raises :class:`~training.data.base.CorruptSample`, so it is
skipped and counted.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edge.skeletons import AFLW21, IBUG68
from edge.transform import box_from_points

from .base import CorruptSample, DatasetError, LandmarkDataset, Sample, read_image
from .pts import IMAGE_SUFFIXES

LP_SUBSETS = ("AFW", "HELEN", "IBUG", "LFPW")
FLIP_SUFFIX = "_Flip"


def load_mat(path: Path) -> dict:
    """A ``.mat`` file's variables; :class:`CorruptSample` if it cannot be read."""
    from scipy.io import loadmat

    try:
        return loadmat(str(path))
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError, struct.error, ...
        raise CorruptSample(f"cannot read {path}: {exc}") from None


def mat_points(data: dict, key: str, count: int, where: Path) -> np.ndarray:
    """``data[key]`` as (count, 2) float32 x, y: accepts Matlab's 2xK or 3xK and Kx2 or Kx3."""
    if key not in data:
        raise CorruptSample(f"{where}: no {key!r} in the file")
    a = np.asarray(data[key], np.float64)
    if a.ndim == 2 and a.shape[1] == count and a.shape[0] in (2, 3):
        a = a[:2].T
    elif a.ndim == 2 and a.shape[0] == count and a.shape[1] in (2, 3):
        a = a[:, :2]
    else:
        raise CorruptSample(f"{where}: {key} has shape {a.shape}, expected 2x{count} or {count}x2")
    if not np.isfinite(a).all():
        raise CorruptSample(f"{where}: non-finite coordinates in {key}")
    return a.astype(np.float32)


def mat_yaw(data: dict) -> float | None:
    """Yaw in degrees from ``Pose_Para`` (pitch, yaw, roll in radians, ...); None if absent."""
    pose = np.asarray(data.get("Pose_Para", []), np.float64).reshape(-1)
    if len(pose) < 2 or not np.isfinite(pose[1]):
        return None
    return math.degrees(float(pose[1]))


def find_image(stem_path: Path) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        candidate = stem_path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def ibug_in_mirror_order(points: np.ndarray) -> bool:
    """True when 68 points look mirrored without relabelling (see the module docstring)."""
    p = np.asarray(points, np.float64)
    eyes, face = p[45] - p[36], p[8] - p[27]
    return float(eyes[0] * face[1] - eyes[1] * face[0]) < 0.0


def mirror_points(points: np.ndarray, width: int, skeleton=IBUG68) -> np.ndarray:
    """The points of the horizontally mirrored image, relabelled left <-> right."""
    out = np.asarray(points, np.float32).copy()
    out[:, 0] = width - 1 - out[:, 0]
    return out[skeleton.flip_permutation()]


def _check_split(name: str, split: str, allowed: tuple[str, ...]) -> None:
    if split not in allowed:
        raise DatasetError(f"{name}: unknown split {split!r}; use one of {', '.join(allowed)}")


class AFLW2000Dataset(LandmarkDataset):
    """AFLW2000-3D: 68 points (``pt3d_68``) or AFLW's 21 (``pt2d``), with the head's yaw."""

    def __init__(
        self,
        path: str | Path | None,
        *,
        split: str = "test",
        landmarks: str | int = "68",
        margin: float = 1.25,
        one_based: bool = False,
    ) -> None:
        if path is None:
            raise DatasetError("aflw2000-3d needs a path: the AFLW2000 folder of .jpg and .mat")
        _check_split("aflw2000-3d", split, ("test", "val", "all"))
        root = Path(path)
        if not root.is_dir():
            raise DatasetError(f"aflw2000-3d: {root} is not a folder")
        if not any(root.glob("*.mat")) and (root / "AFLW2000").is_dir():
            root = root / "AFLW2000"
        self.files = sorted(root.glob("*.mat"))
        if not self.files:
            raise DatasetError(f"aflw2000-3d: no .mat files in {root}")
        if str(landmarks) not in ("68", "21"):
            raise DatasetError(f"aflw2000-3d: landmarks must be 68 or 21, got {landmarks!r}")
        self.skeleton = IBUG68 if str(landmarks) == "68" else AFLW21
        self.root = root
        self.margin = margin
        self.offset = 1.0 if one_based else 0.0

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> Sample:
        mat = self.files[self._check_index(index)]
        data = load_mat(mat)
        if self.skeleton is IBUG68:
            points = mat_points(data, "pt3d_68", 68, mat)
            visible = np.ones(68, bool)
        else:
            points = mat_points(data, "pt2d", 21, mat)
            visible = (points > 0).all(axis=1)  # -1: AFLW has no such point on this face
        points = points - self.offset
        box = box_from_points(points, visible, margin=self.margin)
        if box is None or box.size <= 1.0:
            raise CorruptSample(f"{mat}: no usable landmarks")
        image_path = find_image(mat)
        if image_path is None:
            raise CorruptSample(f"no image beside {mat}")
        image = read_image(image_path)
        return Sample(image, points, visible, box, id=mat.stem, yaw=mat_yaw(data))


class W300LPDataset(LandmarkDataset):
    """300W-LP: 68 points per image, mirrored copies included (see the module docstring)."""

    skeleton = IBUG68

    def __init__(
        self,
        path: str | Path | None,
        *,
        split: str = "train",
        points: str = "3d",
        flipped: bool = True,
        subsets: list[str] | tuple[str, ...] = LP_SUBSETS,
        flip_order: str = "auto",
        margin: float = 1.25,
        one_based: bool = False,
    ) -> None:
        if path is None:
            raise DatasetError("300w-lp needs a path: the 300W_LP folder")
        _check_split("300w-lp", split, ("train", "all"))
        if points not in ("3d", "2d", "mat"):
            raise DatasetError(f"300w-lp: points must be 3d, 2d or mat, got {points!r}")
        if flip_order not in ("auto", "as_stored", "mirrored"):
            raise DatasetError(
                f"300w-lp: flip_order must be auto, as_stored or mirrored, got {flip_order!r}"
            )
        root = Path(path)
        if not root.is_dir():
            raise DatasetError(f"300w-lp: {root} is not a folder")
        if not (root / "landmarks").is_dir() and (root / "300W_LP").is_dir():
            root = root / "300W_LP"
        # Records: (annotation file, image stem path, mirrored from the annotation's points?)
        self.records: list[tuple[Path, Path, bool]] = []
        for subset in subsets:
            mirror_dir = root / f"{subset}{FLIP_SUFFIX}"
            use_mirror = flipped and mirror_dir.is_dir()
            if points == "mat":
                for folder in [root / subset] + ([mirror_dir] if use_mirror else []):
                    self.records += [
                        (m, m.with_suffix(""), False) for m in sorted(folder.glob("*.mat"))
                    ]
                continue
            for m in sorted((root / "landmarks" / subset).glob("*_pts.mat")):
                stem = m.name[: -len("_pts.mat")]
                self.records.append((m, root / subset / stem, False))
                if use_mirror:
                    self.records.append((m, mirror_dir / stem, True))
        if not self.records:
            where = "landmarks/<subset>/*_pts.mat" if points != "mat" else "<subset>/*.mat"
            raise DatasetError(f"300w-lp: no {where} under {root} for subsets {list(subsets)}")
        self.root = root
        self.source = points
        self.flip_order = flip_order
        self.margin = margin
        self.offset = 1.0 if one_based else 0.0

    def __len__(self) -> int:
        return len(self.records)

    def _mirror_folder(self, image_stem: Path) -> bool:
        return image_stem.parent.name.endswith(FLIP_SUFFIX)

    def load(self, index: int) -> Sample:
        annotation, image_stem, mirror = self.records[self._check_index(index)]
        data = load_mat(annotation)
        if self.source == "mat":
            points = mat_points(data, "pt2d", 68, annotation)
        else:
            points = mat_points(data, f"pts_{self.source}", 68, annotation)
        points = points - self.offset
        image_path = find_image(image_stem)
        if image_path is None:
            raise CorruptSample(f"no image {image_stem}.jpg for {annotation}")
        image = read_image(image_path)
        if mirror:
            points = mirror_points(points, image.shape[1])
        elif self.source == "mat" and self._mirror_folder(image_stem):
            relabel = self.flip_order == "mirrored" or (
                self.flip_order == "auto" and ibug_in_mirror_order(points)
            )
            if relabel:
                points = points[IBUG68.flip_permutation()]
        visible = np.ones(68, bool)
        box = box_from_points(points, margin=self.margin)
        if box is None or box.size <= 1.0:
            raise CorruptSample(f"{annotation}: degenerate landmarks")
        yaw = mat_yaw(data) if self.source == "mat" else self._yaw_beside(image_stem)
        ident = f"{image_stem.parent.name}/{image_stem.name}"
        return Sample(image, points, visible, box, id=ident, yaw=yaw)

    def _yaw_beside(self, image_stem: Path) -> float | None:
        """Yaw from the ``.mat`` beside the image, when it is there (only for reporting)."""
        beside = image_stem.with_suffix(".mat")
        if not beside.is_file():
            return None
        try:
            return mat_yaw(load_mat(beside))
        except CorruptSample:
            return None
