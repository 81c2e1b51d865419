"""What every dataset gives the training pipeline: a :class:`Sample` per index.

A reader turns one record of a benchmark's own file format into a :class:`Sample`: the
whole image (BGR, as OpenCV reads it), the landmarks in that image's pixels (pixel-centre
convention of :mod:`edge.transform`), which of them carry a usable ground truth, and the
square box that training crops. Readers use NumPy, OpenCV and scipy only, never
TensorFlow, so they are quick to test and can feed any framework.

A record whose image or annotation is broken raises :class:`CorruptSample`;
:func:`iter_samples` skips it and counts it, so one bad file never stops a training run.
Problems that make the whole dataset unusable (no annotation file, unknown name) raise
:class:`DatasetError`, which the command-line tools print as a one-line error.

A record may also carry its subject's *person mask* (``Sample.mask``): the label tool stores
the teacher's mask beside each stored image (:func:`mask_path`), and augmentation's
background swap keeps the pixels it covers. A missing mask is normal (a dataset labelled
without them); an unusable one only costs its record the swap, counted in
``dataset.bad_masks``.
"""

from __future__ import annotations

import abc
import importlib
import inspect
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import EdgeError
from edge.skeletons import Skeleton
from edge.transform import CropBox

log = logging.getLogger(__name__)


class DatasetError(EdgeError):
    """The dataset cannot be opened at all (unknown name, missing or unreadable annotations)."""


class CorruptSample(Exception):
    """One record cannot be used (missing or truncated image, malformed annotation)."""


@dataclass
class Sample:
    image: np.ndarray  # H x W x 3 uint8, BGR (OpenCV order)
    points: np.ndarray  # (K, 2) float32, image pixels, pixel-centre convention
    visible: np.ndarray  # (K,) bool: the point has a usable ground truth
    box: CropBox  # square box around the subject in image pixels (what training crops)
    head_size: float | None = None  # MPII PCKh normaliser: 0.6 * head-box diagonal
    id: str = ""
    yaw: float | None = None  # head yaw in degrees, where the dataset has it (AFLW2000-3D bins)
    # (K,) bool: points with a ground truth that are hidden in the image (self-occluded), where
    # the dataset says so (AFLW-PIFA/LFPA); visible-only protocols score visible & ~occluded.
    occluded: np.ndarray | None = None
    # (H, W) float32 in [0, 1], the image's size: how surely each pixel shows the subject (the
    # label tool's teacher mask); None where the dataset has none. Augmentation replaces the
    # background (below 0.5) and keeps the rest.
    mask: np.ndarray | None = None
    # (K,) float32 in [0, 1]: the teacher's score of each point (training.label's ``scores``),
    # clipped to [0, 1]; None where the record has none. Training ignores them unless the
    # config's ``teacher_scores`` says otherwise (training.data.teacher_scores).
    scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=np.float32).reshape(-1, 2)
        self.visible = np.asarray(self.visible, dtype=bool).reshape(-1)
        if len(self.visible) != len(self.points):
            raise ValueError(f"{len(self.points)} points but {len(self.visible)} visibility flags")
        if self.occluded is not None:
            self.occluded = np.asarray(self.occluded, dtype=bool).reshape(-1)
            if len(self.occluded) != len(self.points):
                raise ValueError(
                    f"{len(self.points)} points but {len(self.occluded)} occlusion flags"
                )
        if self.scores is not None:
            scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
            if len(scores) != len(self.points) or not np.isfinite(scores).all():
                raise ValueError(
                    f"{len(self.points)} points need as many finite scores, got {len(scores)}"
                )
            self.scores = np.clip(scores, 0.0, 1.0)
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(
                f"image must be HxWx3 uint8, got {self.image.shape} {self.image.dtype}"
            )
        if self.mask is not None and self.mask.shape != self.image.shape[:2]:
            raise ValueError(f"mask {self.mask.shape} is not the image's {self.image.shape[:2]}")


class SkipCounter:
    """Counts skipped records (thread-safe: tf.data may call readers from several threads).

    The first skip is logged as a warning with its reason; later ones only add to the count
    and to :attr:`reasons` (kept up to ``keep`` of them), so a dataset with many bad files
    does not flood the log. ``action`` is what the warning says happens to such a record.
    """

    def __init__(
        self, name: str = "dataset", keep: int = 20, action: str = "skipping record"
    ) -> None:
        self.name = name
        self.action = action
        self.count = 0
        self.reasons: list[str] = []
        self._keep = keep
        self._lock = threading.Lock()

    def record(self, index: int | str, reason: str) -> None:
        with self._lock:
            self.count += 1
            first = self.count == 1
            if len(self.reasons) < self._keep:
                self.reasons.append(f"{index}: {reason}")
        if first:
            log.warning(
                "%s: %s %s: %s (further ones are counted, not logged)",
                self.name,
                self.action,
                index,
                reason,
            )

    def __int__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"SkipCounter({self.name!r}, count={self.count})"


class RecordDataset(abc.ABC):
    """An indexable set of records that counts the ones it skips: the base of
    :class:`LandmarkDataset` and of training.segmentation's ``PartsDataset``."""

    @property
    def skipped(self) -> SkipCounter:
        """Records left out because they are corrupt."""
        return self._counter("_skipped", "skipping record")

    @property
    def bad_masks(self) -> SkipCounter:
        """Records whose stored person mask is unreadable or of another size than the
        image: they are read without one (no background swap)."""
        return self._counter("_bad_masks", "ignoring the person mask of record")

    @property
    def bad_scores(self) -> SkipCounter:
        """Records whose teacher scores are not one finite number per point: they are read
        without them (their visible points weigh 1 whatever ``teacher_scores`` says)."""
        return self._counter("_bad_scores", "ignoring the teacher scores of record")

    @property
    def unscored(self) -> SkipCounter:
        """Examples made with ``teacher_scores`` on from records without scores (drawn
        figures, a set labelled by people): their visible points weighed 1."""
        return self._counter("_unscored", "no teacher scores in record")

    @property
    def swaps_missed(self) -> SkipCounter:
        """Background swaps drawn that could not be made: the record has no person mask, or
        the record drawn for the background is corrupt. Such a crop keeps its background."""
        return self._counter("_swaps_missed", "no background swap for record")

    @property
    def neighbours_missed(self) -> SkipCounter:
        """Neighbours drawn that could not be pasted: the record or the one drawn to stand
        beside it has no person mask, or the latter is corrupt. Such a crop shows no one
        pasted."""
        return self._counter("_neighbours_missed", "no neighbour pasted for record")

    def _counter(self, key: str, action: str) -> SkipCounter:
        # Created on first use so subclasses need not call a base __init__.
        counter = self.__dict__.get(key)
        if counter is None:
            counter = self.__dict__[key] = SkipCounter(type(self).__name__, action=action)
        return counter

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def load(self, index: int):
        """The record at ``index``; raises :class:`CorruptSample` if it cannot be used."""

    def _check_index(self, index: int) -> int:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} records")
        return index % n


class LandmarkDataset(RecordDataset):
    """An indexable set of :class:`Sample` records for one skeleton."""

    skeleton: Skeleton


class MixedRecords(RecordDataset):
    """Several datasets read as one; ``repeats[i]`` lists dataset i that many times, which
    weights a small real set against a large synthetic one."""

    def __init__(self, parts: list, repeats: list[int] | None = None) -> None:
        repeats = repeats or [1] * len(parts)
        self.parts = parts
        self._index = [
            (i, j)
            for i, (p, r) in enumerate(zip(parts, repeats, strict=True))
            for _ in range(max(int(r), 0))
            for j in range(len(p))
        ]

    def __len__(self) -> int:
        return len(self._index)

    def load(self, index: int):
        part, record = self._index[self._check_index(index)]
        return self.parts[part].load(record)


class MixedDataset(MixedRecords, LandmarkDataset):
    """Several datasets of one skeleton read as one (see :class:`MixedRecords`)."""

    def __init__(self, parts: list[LandmarkDataset], repeats: list[int] | None = None) -> None:
        if not parts:
            raise DatasetError("a mixed dataset needs at least one part")
        names = {p.skeleton.name for p in parts}
        if len(names) != 1:
            raise DatasetError(f"mixed datasets must share one skeleton, got {sorted(names)}")
        super().__init__(parts, repeats)
        self.skeleton = parts[0].skeleton


class RecordLoader(abc.ABC):
    """The per-record work of a tf.data map step, less the example itself (a class so it can
    count successes thread-safely): load record ``index``; a corrupt one is skipped, counted
    in ``dataset.skipped`` and handed on as ``empty`` with a False flag (a training set whose
    every record is corrupt stops the run); else :meth:`make` builds the example."""

    def __init__(self, dataset: RecordDataset, seed: int, empty: tuple[np.ndarray, ...]) -> None:
        self.dataset = dataset
        self.seed = seed
        self.loaded = 0
        self._lock = threading.Lock()
        self.empty = empty

    @abc.abstractmethod
    def make(self, sample, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """The example's arrays (input image, target) for one loaded record."""

    def __call__(self, index: np.int64, counter: np.int64) -> tuple:
        index, counter = int(index), int(counter)
        try:
            sample = self.dataset.load(index)
        except CorruptSample as exc:
            self.dataset.skipped.record(index, str(exc))
            with self._lock:
                if self.loaded == 0 and self.dataset.skipped.count >= len(self.dataset):
                    raise DatasetError(
                        f"every record of the training set is corrupt "
                        f"(first: {self.dataset.skipped.reasons[0]})"
                    ) from None
            return (*self.empty, False)
        # A per-example generator: the draw depends only on (seed, position, record), so a run
        # is reproducible whatever order the parallel map finishes in.
        example = self.make(sample, np.random.default_rng([self.seed, counter, index]))
        with self._lock:
            self.loaded += 1
        return (*example, True)


def iter_samples(
    dataset: LandmarkDataset, indices: Iterable[int] | None = None
) -> Iterator[Sample]:
    """Yield the usable samples in ``indices`` (default: all), skipping corrupt ones.

    Each skip is counted in ``dataset.skipped``.
    """
    for i in range(len(dataset)) if indices is None else indices:
        try:
            yield dataset.load(int(i))
        except CorruptSample as exc:
            dataset.skipped.record(int(i), str(exc))


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as HxWx3 uint8 BGR; raise :class:`CorruptSample` if missing or broken.

    ``cv2.imread`` silently returns a grey-padded picture for a truncated JPEG, so JPEG data
    must also end its last scan with an end-of-image marker to count as whole.
    """
    import cv2

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptSample(f"cannot read image {path}: {exc.strerror or exc}") from None
    if data[:2] == b"\xff\xd8":
        last_scan = data.rfind(b"\xff\xda")
        if last_scan < 0 or data.find(b"\xff\xd9", last_scan) < 0:
            raise CorruptSample(f"truncated JPEG image {path}")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None or image.size == 0:
        raise CorruptSample(f"cannot decode image {path}")
    return image


MASK_SUFFIX = ".mask.png"


def mask_path(image_path: str | Path) -> Path:
    """Where a stored image's person mask lies: ``<image stem>.mask.png`` beside it (an 8-bit
    PNG of the image's size, 255 where the teacher is sure the pixel shows the subject)."""
    return Path(image_path).with_suffix(MASK_SUFFIX)


def read_mask(
    image_path: str | Path, shape: tuple[int, int], bad: SkipCounter, index: int
) -> np.ndarray | None:
    """The person mask stored beside ``image_path`` (:func:`mask_path`) as float32 in [0, 1],
    or None: when there is none, and when it is unreadable or not ``shape`` (counted in
    ``bad``): a record without a usable mask still trains, only without background swaps."""
    import cv2

    path = mask_path(image_path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        bad.record(index, f"cannot read {path}: {exc.strerror or exc}")
        return None
    mask = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE) if data else None
    if mask is None or mask.shape != tuple(shape):
        got = "undecodable" if mask is None else f"{mask.shape[1]}x{mask.shape[0]}"
        bad.record(index, f"{path} is {got}, not the image's {shape[1]}x{shape[0]}")
        return None
    return mask.astype(np.float32) / 255.0


def read_scores(value: object, k: int, bad: SkipCounter, index: int) -> np.ndarray | None:
    """A record's ``scores`` entry (the label tool's teacher score per point) as (k,) float32
    clipped to [0, 1], or None: when the record has none, and when it is not ``k`` finite
    numbers (counted in ``bad``): the record still trains, with its visible points at 1."""
    if value is None:
        return None
    try:
        scores = np.asarray(value, np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        bad.record(index, f"scores {exc!r}")
        return None
    if len(scores) != k:
        bad.record(index, f"{len(scores)} scores for {k} points")
        return None
    if not np.isfinite(scores).all():
        bad.record(index, "a score that is not a finite number")
        return None
    return np.clip(scores, 0.0, 1.0).astype(np.float32)


def find_annotation(
    dataset: str, path: Path, split: str, files: str | Mapping[str, str], folder: str
) -> Path:
    """The annotation file a reader opens: ``path`` itself when it is a file; in a dataset's
    root folder, ``<folder>/<file>`` or ``<file>`` directly in it.

    ``<file>`` is ``files[split]`` for a benchmark with one file per split (an unknown split
    is a :class:`DatasetError`), or ``files`` itself when the reader names it from the split.
    """
    if path.is_file():
        return path
    if path.is_dir():
        if isinstance(files, str):
            name = files
        elif split in files:
            name = files[split]
        else:
            raise DatasetError(f"{dataset}: unknown split {split!r}; use one of {', '.join(files)}")
        for candidate in (path / folder / name, path / name):
            if candidate.is_file():
                return candidate
        raise DatasetError(f"{dataset}: no {folder}/{name} under {path}")
    raise DatasetError(f"{dataset}: {path} does not exist")


# Dataset names -> "module:factory". Resolved on first use so that opening one format never
# imports the others (and the registry has no import cycle with the readers).
DATASETS: dict[str, str] = {
    "mpii": "training.data.mpii:MPIIDataset",
    "lsp": "training.data.lsp:LSPDataset",
    "300w": "training.data.pts:PtsDataset",
    "wflw": "training.data.wflw:WFLWDataset",
    "coco": "training.data.coco:COCODataset",
    "aflw2000-3d": "training.data.aflw3d:AFLW2000Dataset",
    "300w-lp": "training.data.aflw3d:W300LPDataset",
    "aflw": "training.data.aflw:AFLWDataset",
    "pifa": "training.data.aflw:PIFADataset",
    "synthetic-pose": "training.data.synthetic_pose:SyntheticPoseDataset",
    "synthetic-face": "training.data.synthetic_face:SyntheticFaceDataset",
    "tfrecord": "training.data.tfrecord:TFRecordDataset",
}


def dataset_factory(name: str) -> Callable[..., LandmarkDataset]:
    try:
        target = DATASETS[name]
    except KeyError:
        raise DatasetError(
            f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}"
        ) from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def open_dataset(
    name: str, path: str | Path | None = None, *, split: str = "train", **options
) -> LandmarkDataset:
    """Open a dataset by name (see :data:`DATASETS`).

    ``path`` is the annotation file or the dataset's root folder (each reader documents the
    layout it looks for); synthetic datasets take none. ``options`` go to the reader, e.g.
    ``size``, ``seed`` and ``image_size`` for the synthetic ones.
    """
    return open_with(dataset_factory(name), name, path, split=split, **options)


def open_with(factory: Callable, name: str, path: str | Path | None, *, split: str, **options):
    """``factory(path, split=split, **options)``, after checking that the options fit the
    reader: ones that do not are a one-line :class:`DatasetError`."""
    try:
        inspect.signature(factory).bind(path, split=split, **options)
    except TypeError as exc:
        raise DatasetError(f"bad options for dataset {name!r}: {exc}") from None
    return factory(path, split=split, **options)
