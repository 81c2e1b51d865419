"""AFLW (21 points, from its SQLite database) and the AFLW-PIFA / AFLW-LFPA 34-point protocol.

**AFLW** ships its annotations as ``aflw.sqlite`` beside the ``flickr/`` image folders. The
tables read here are the release's own:

* ``Faces(face_id, file_id)`` and ``FaceImages(file_id, filepath)``: which image a face is in
  (``filepath`` is relative to ``flickr/``, e.g. ``0/image00002.jpg``);
* ``FeatureCoords(face_id, feature_id, x, y)``: one row per *annotated* point, ``feature_id``
  1..21 in the order of :data:`edge.skeletons.AFLW21`. AFLW annotates visible points only,
  so a missing row is an invisible point (``visible`` False); there is no position for it;
* ``FacePose(face_id, roll, pitch, yaw)``: the head pose in radians; the sample's ``yaw`` is
  in degrees.

Coordinates are used as stored (0-based pixels). AFLW has no official split: ``split="all"``
reads every face, and any other split name reads the face ids listed one per line in
``split_file`` (default ``<split>.txt`` beside the database).

**AFLW-PIFA / AFLW-LFPA** (Jourabloo & Liu): AFLW faces with 34 points and a visibility flag
per point; the protocol scores visible points only. The authors' release format could not
be retrieved when this reader was written, so it reads the common Matlab form: one ``.mat``
per image, beside the image, with the 34 points (2 x 34, 34 x 2, or 34 x 3 whose third
column is the visibility) under the first of :data:`POINT_KEYS` it finds, and the visibility
under the first of :data:`VISIBILITY_KEYS` (or the points' third column). ``points_key=`` and
``visibility_key=`` name other variables. A split is the sub-folder of that name
(``train/``, ``test/``) when there is one, else ``split="all"`` reads the whole folder. All 34
points have positions, so all are ``visible`` (usable for training); the hidden ones are
marked in ``Sample.occluded`` for the visible-only NME.

Broken records (unreadable files, missing keys, wrong shapes, missing or broken images)
raise :class:`~training.data.base.CorruptSample`: skipped and counted.
"""

from __future__ import annotations

import math
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np

from edge.skeletons import AFLW21, PIFA34
from edge.transform import box_from_points

from .aflw3d import find_image, load_mat
from .base import CorruptSample, DatasetError, LandmarkDataset, Sample, read_image

POINT_KEYS = ("pts", "pt2d", "pts_2d", "landmarks", "lm")
VISIBILITY_KEYS = ("visibility", "vis", "visible", "pts_vis")


def _find_database(path: Path) -> Path:
    if path.is_file():
        return path
    for candidate in (path / "aflw.sqlite", path / "data" / "aflw.sqlite"):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"aflw: no aflw.sqlite at {path} (nor in {path / 'data'})")


class AFLWDataset(LandmarkDataset):
    """AFLW's 21 points from ``aflw.sqlite``, one sample per face, with visibility and yaw."""

    skeleton = AFLW21

    def __init__(
        self,
        path: str | Path | None,
        *,
        split: str = "all",
        images: str | Path | None = None,
        split_file: str | Path | None = None,
        margin: float = 1.25,
        min_points: int = 2,
    ) -> None:
        if path is None:
            raise DatasetError("aflw needs a path: aflw.sqlite or the folder holding it")
        database = _find_database(Path(path))
        try:
            with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
                faces = conn.execute(
                    "SELECT faces.face_id, images.filepath FROM faces "
                    "JOIN faceimages images ON faces.file_id = images.file_id "
                    "ORDER BY faces.face_id"
                ).fetchall()
                coords = conn.execute(
                    "SELECT face_id, feature_id, x, y FROM featurecoords"
                ).fetchall()
                poses = dict(conn.execute("SELECT face_id, yaw FROM facepose").fetchall())
        except sqlite3.Error as exc:
            raise DatasetError(f"aflw: cannot read {database}: {exc}") from None
        by_face: dict[int, list[tuple[int, float, float]]] = {}
        for face_id, feature_id, x, y in coords:
            by_face.setdefault(int(face_id), []).append((feature_id, x, y))
        if split != "all":
            listing = (
                Path(split_file) if split_file is not None else database.with_name(f"{split}.txt")
            )
            if not listing.is_file():
                raise DatasetError(
                    f"aflw: split {split!r} needs a list of face ids: {listing} "
                    "does not exist (or use split='all')"
                )
            wanted = {int(t) for t in listing.read_text().split() if t.strip()}
            faces = [f for f in faces if int(f[0]) in wanted]
        self.faces = [(int(face_id), str(filepath)) for face_id, filepath in faces]
        if not self.faces:
            raise DatasetError(f"aflw: no faces in {database} for split {split!r}")
        self.coords = by_face
        self.poses = poses
        self.images = Path(images) if images is not None else database.parent / "flickr"
        self.margin = margin
        self.min_points = min_points

    def __len__(self) -> int:
        return len(self.faces)

    def load(self, index: int) -> Sample:
        face_id, filepath = self.faces[self._check_index(index)]
        points = np.zeros((21, 2), np.float32)
        visible = np.zeros(21, bool)
        for feature_id, x, y in self.coords.get(face_id, []):
            try:
                i, px, py = int(feature_id) - 1, float(x), float(y)
            except (TypeError, ValueError):
                raise CorruptSample(
                    f"aflw face {face_id}: bad point row {feature_id, x, y}"
                ) from None
            if not 0 <= i < 21 or not (math.isfinite(px) and math.isfinite(py)):
                raise CorruptSample(f"aflw face {face_id}: bad point {feature_id} at ({x}, {y})")
            points[i], visible[i] = (px, py), True
        if visible.sum() < self.min_points:
            raise CorruptSample(f"aflw face {face_id}: {visible.sum()} annotated points")
        box = box_from_points(points, visible, margin=self.margin)
        image = read_image(self.images / filepath)
        yaw = self.poses.get(face_id)
        yaw = math.degrees(float(yaw)) if yaw is not None and math.isfinite(float(yaw)) else None
        return Sample(image, points, visible, box, id=f"{filepath}@face{face_id}", yaw=yaw)


class PIFADataset(LandmarkDataset):
    """AFLW-PIFA / AFLW-LFPA: 34 points with visibility (see the module docstring)."""

    skeleton = PIFA34

    def __init__(
        self,
        path: str | Path | None,
        *,
        split: str = "test",
        points_key: str | None = None,
        visibility_key: str | None = None,
        margin: float = 1.25,
        one_based: bool = False,
    ) -> None:
        if path is None:
            raise DatasetError("pifa needs a path: the folder of images and their .mat files")
        root = Path(path)
        if not root.is_dir():
            raise DatasetError(f"pifa: {root} is not a folder")
        if split != "all":
            if not (root / split).is_dir():
                raise DatasetError(f"pifa: no {split}/ folder under {root} (or use split='all')")
            root = root / split
        self.files = sorted(root.rglob("*.mat"))
        if not self.files:
            raise DatasetError(f"pifa: no .mat files under {root}")
        self.root = root
        self.points_keys = (points_key,) if points_key else POINT_KEYS
        self.visibility_keys = (visibility_key,) if visibility_key else VISIBILITY_KEYS
        self.margin = margin
        self.offset = 1.0 if one_based else 0.0

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, mat: Path) -> tuple[np.ndarray, np.ndarray]:
        data = load_mat(mat)
        k = self.skeleton.num_landmarks
        key = next((name for name in self.points_keys if name in data), None)
        if key is None:
            raise CorruptSample(f"{mat}: none of {', '.join(self.points_keys)} in the file")
        a = np.asarray(data[key], np.float64)
        if a.ndim == 2 and a.shape[0] in (2, 3) and a.shape[1] == k:
            a = a.T
        if a.ndim != 2 or a.shape[0] != k or a.shape[1] not in (2, 3):
            raise CorruptSample(f"{mat}: {key} has shape {a.shape}, expected 2x{k} or {k}x2/3")
        vis_key = next((name for name in self.visibility_keys if name in data), None)
        if vis_key is not None:
            flags = np.asarray(data[vis_key], np.float64).reshape(-1)
        elif a.shape[1] == 3:
            flags = a[:, 2]
        else:
            raise CorruptSample(f"{mat}: no visibility ({', '.join(self.visibility_keys)})")
        if flags.shape != (k,) or not np.isfinite(flags).all():
            raise CorruptSample(f"{mat}: visibility has {flags.size} values, expected {k}")
        points = a[:, :2]
        if not np.isfinite(points).all():
            raise CorruptSample(f"{mat}: non-finite coordinates")
        return (points - self.offset).astype(np.float32), flags > 0

    def load(self, index: int) -> Sample:
        mat = self.files[self._check_index(index)]
        points, shown = self._read(mat)
        if not shown.any():
            raise CorruptSample(f"{mat}: no visible point")
        box = box_from_points(points, margin=self.margin)
        image_path = find_image(mat)
        if image_path is None:
            raise CorruptSample(f"no image beside {mat}")
        image = read_image(image_path)
        ident = str(mat.relative_to(self.root).with_suffix(""))
        visible = np.ones(len(points), bool)
        return Sample(image, points, visible, box, id=ident, occluded=~shown)
