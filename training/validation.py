"""The validation protocol of docs/validation.md: the training split's mean shape placed in
the same crop beside every score, the label tool's index of where each record came from
(``sources_<task>.json``), and the model against the mean shape overall, per activity group
and per source. Crop jitter, the other half of the protocol, is :mod:`training.crop_jitter`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from edge.skeletons import Skeleton

from . import metrics
from .data.base import CorruptSample, DatasetError, LandmarkDataset, Sample, open_dataset
from .label.sources import is_image
from .scoring import Predictions, Score, box_row, score

# A model *clearly* beats the mean shape in the same crop when its PCK is at least this many
# points higher, or its NME (all points and inner points) at most this fraction of the mean
# shape's. Closer than that the crop box did most of the work: issue 24's face model scored
# 4.49 % on talking heads where the mean face in the same crop scored 5.55 % (a ratio of 0.81).
CLEAR_PCK_POINTS = 10.0
CLEAR_NME_RATIO = 0.75
# Training samples averaged into the mean shape, evenly spread over the split: the mean of a
# thousand shapes is settled to well under a pixel, and loading is the slow part.
BASELINE_LIMIT = 1000
OWN_MEAN = "own"
UNKNOWN = "(unknown)"  # the group and source of a sample the sources index does not name


def load_samples(dataset: LandmarkDataset, indices: list[int], threads: int) -> list[Sample | str]:
    """The samples at ``indices``, in order; a corrupt one is its error message instead."""

    def one(i: int) -> Sample | str:
        try:
            return dataset.load(i)
        except CorruptSample as exc:
            return str(exc)

    if threads <= 1:
        return [one(i) for i in indices]
    with ThreadPoolExecutor(threads) as pool:  # OpenCV decodes and warps without the GIL
        return list(pool.map(one, indices))


@dataclass
class Shapes:
    """The ground truth of some samples without their images: what a mean shape and the
    tracker's box changes are computed from."""

    ids: list[str]
    points: np.ndarray  # (N, K, 2) image pixels
    visible: np.ndarray  # (N, K)
    boxes: np.ndarray  # (N, 4) the sample's box [cx, cy, side, rotation]
    widths: np.ndarray  # (N,) image width in pixels
    skipped: int = 0
    first_error: str = ""  # why the first corrupt record was skipped


def evenly_spread(n: int, limit: int | None) -> list[int]:
    """``limit`` record indices spread evenly over ``n`` (all of them when ``limit`` is None
    or at least ``n``)."""
    if limit is None or limit >= n:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, limit).round()})


def collect_shapes(dataset: LandmarkDataset, indices: Sequence[int], threads: int = 4) -> Shapes:
    """Load ``indices`` of ``dataset`` and keep their landmarks, visibility and boxes. Corrupt
    records are counted in ``skipped``, not in ``dataset.skipped`` (the scoring pass counts
    those)."""
    ids, points, visible, boxes, widths = [], [], [], [], []
    skipped, first_error = 0, ""
    indices = list(indices)
    for start in range(0, len(indices), 64):  # a few images in memory at a time
        chunk = indices[start : start + 64]
        for item in load_samples(dataset, chunk, threads):
            if isinstance(item, str):
                skipped += 1
                first_error = first_error or item
                continue
            ids.append(item.id)
            points.append(item.points)
            visible.append(item.visible)
            boxes.append(box_row(item.box))
            widths.append(item.image.shape[1])
    k = dataset.skeleton.num_landmarks
    return Shapes(
        ids,
        np.asarray(points, np.float64).reshape(-1, k, 2),
        np.asarray(visible, bool).reshape(-1, k),
        np.asarray(boxes, np.float64).reshape(-1, 4),
        np.asarray(widths, np.float64),
        skipped,
        first_error,
    )


@dataclass
class MeanShape:
    """The mean landmarks in the unit box frame (:func:`training.metrics.mean_shape`) and
    where they were averaged."""

    shape: np.ndarray  # (K, 2)
    counts: np.ndarray  # (K,) samples each landmark was visible in
    source: str  # e.g. "mpii/train (data/pose_v2)" or "the evaluated set"
    samples: int
    own: bool = False  # averaged over the evaluated set itself

    @property
    def label(self) -> str:
        return "mean shape (own mean)" if self.own else "mean shape"

    def place(self, pred: Predictions) -> Predictions:
        """``pred`` with every sample's points replaced by this shape in its crop box (the
        box the model was given, jitter included)."""
        if pred.boxes is None:
            raise ValueError("the predictions carry no crop boxes to place the mean shape in")
        points = metrics.from_box_frame(self.shape, pred.boxes)
        return replace(pred, points=points, scores=np.ones(points.shape[:2]))

    def to_dict(self) -> dict:
        return {
            "from": self.source,
            "samples": self.samples,
            "own_mean": self.own,
            "shape": np.round(self.shape, 5).tolist(),
            "counts": self.counts.tolist(),
        }


def mean_shape_of(shapes: Shapes, source: str, own: bool = False) -> MeanShape:
    if not len(shapes.ids):
        raise DatasetError(f"no usable sample to average a mean shape over in {source}")
    shape, counts = metrics.mean_shape(shapes.points, shapes.visible, shapes.boxes)
    return MeanShape(shape, counts, source, len(shapes.ids), own)


def own_mean_shape(pred: Predictions) -> MeanShape:
    """The evaluated set's own mean shape, from the samples' own (unjittered) boxes."""
    if pred.sample_boxes is None:
        raise ValueError("the predictions carry no sample boxes")
    shape, counts = metrics.mean_shape(pred.gt, pred.visible, pred.sample_boxes)
    where = f"the evaluated set, {len(pred.points)} samples"
    return MeanShape(shape, counts, where, len(pred.points), own=True)


def _same_set(a: Path | None, split_a: str, b: Path | None, split_b: str) -> bool:
    if (a is None) != (b is None):
        return False
    same_path = a is None or a.resolve() == b.resolve()
    # A JSON file is one split whatever split is asked for (find_annotation reads it as is).
    return same_path and (split_a == split_b or (a is not None and a.is_file()))


def training_set(
    name: str, data: str | Path | None, split: str, options: dict, baseline_split: str | None
) -> tuple[LandmarkDataset | None, str]:
    """The dataset the mean shape is averaged over, and its name for the printout; ``(None,
    ...)`` means the evaluated set's own mean.

    ``baseline_split`` (None: ``train``, falling back to the own mean) is looked for first as
    a split of ``data`` (a dataset root), then as a sibling named like ``data`` with the
    evaluated split's word replaced: the label tool's ``annot/valid.json`` ->
    ``annot/train.json``, ``person_keypoints_valid.json`` -> ``person_keypoints_train.json``,
    ``real_face/valid/`` -> ``real_face/train/``. An explicit split that opens neither way
    is an error; the evaluated set itself is its own mean.
    """
    if baseline_split == OWN_MEAN:
        return None, "the evaluated set"
    wanted = baseline_split or "train"
    here = None if data is None else Path(data)
    candidates: list[tuple[Path | None, str]] = []
    if here is None or here.is_dir():
        candidates.append((here, wanted))
    if here is not None:
        for word in dict.fromkeys((split, "valid", "val", "select", "test")):
            renamed = re.sub(rf"(?<![A-Za-z]){re.escape(word)}(?![A-Za-z])", wanted, here.name)
            if renamed != here.name and (here.parent / renamed).exists():
                candidates.append((here.parent / renamed, split))
    problem, itself = None, False
    for path, which in candidates:
        if _same_set(path, which, here, split):
            itself = True
            continue
        try:
            found = open_dataset(name, path, split=which, **options)
        except DatasetError as exc:
            problem = exc
            continue
        if len(found) == 0:  # the label tool writes an empty train.json when all is held out
            problem = f"{name}/{wanted} at {path} is empty"
            continue
        return found, f"{name}/{wanted}" + ("" if path is None else f" ({path})")
    if baseline_split is not None and not itself:
        raise DatasetError(
            f"--baseline-split {baseline_split}: no such split beside the data"
            f"{f' ({problem})' if problem else ''}; use --baseline-split own for "
            "the evaluated set's own mean"
        )
    return None, "the evaluated set"


# --- Sources: the label tool's index of where every record came from ------------------------


@dataclass
class SourceIndex:
    """``sources_<task>.json`` of training.label: ``{source key: {"path", "split", "group"}}``,
    where the key is the folder of every record's image (so it is in every ``Sample.id``)."""

    path: Path
    sources: dict[str, dict]

    def key_of(self, sample_id: str) -> str | None:
        """The source key among the folders of ``sample_id`` (ids end in ``#<n>`` for some
        readers), or None."""
        parts = Path(sample_id.partition("#")[0]).parts[:-1]
        return next((p for p in reversed(parts) if p in self.sources), None)

    def group_of(self, key: str | None) -> str:
        if key is None:
            return UNKNOWN
        return str(self.sources[key].get("group") or UNKNOWN)

    def is_clip(self, key: str) -> bool:
        """A video (many frames of one scene), not a photo."""
        path = str(self.sources.get(key, {}).get("path", ""))
        return bool(path) and not is_image(Path(path))


def load_source_index(path: str | Path) -> SourceIndex:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read the sources index {path}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise DatasetError(f"{path} must map each source key to its path, split and group")
    return SourceIndex(path, data)


def find_source_index(
    data: str | Path | None, explicit: str | Path | None, ids: Sequence[str]
) -> SourceIndex | None:
    """``explicit`` if given, else the ``sources_*.json`` beside the data (in its folder or up
    to two above: the label tool's root holds ``annot/valid.json`` and ``valid/``) that names
    the most of ``ids``; None when none names any."""
    if explicit is not None:
        return load_source_index(explicit)
    if data is None:
        return None
    here = Path(data)
    start = here if here.is_dir() else here.parent
    folders = list(dict.fromkeys([start, start.parent, start.parent.parent]))
    best, best_hits = None, 0
    for folder in folders:
        for candidate in sorted(folder.glob("sources_*.json")):
            index = load_source_index(candidate)
            hits = sum(index.key_of(i) is not None for i in ids)
            if hits > best_hits:
                best, best_hits = index, hits
    return best


# --- Reports: model beside the mean shape, per group and per source -------------------------


def _lower_is_better(key: str) -> bool:
    return key.startswith(("nme", "fr@"))


def clearly_better(model: Score, base: Score) -> bool | None:
    """Does the model clearly beat the mean shape (:data:`CLEAR_PCK_POINTS`,
    :data:`CLEAR_NME_RATIO`, on the headline and, for faces, the inner points)? None when a
    number is missing (nothing scored)."""
    verdicts = []
    for key in (model.headline, "nme_inner"):
        if key not in model.values or key not in base.values:
            continue
        m, b = float(model.values[key]), float(base.values[key])
        if not (math.isfinite(m) and math.isfinite(b)):
            return None
        if _lower_is_better(key):
            verdicts.append(m <= CLEAR_NME_RATIO * b)
        else:
            verdicts.append(m - b >= CLEAR_PCK_POINTS)
    return all(verdicts) if verdicts else None


def verdict_line(model: Score, base: Score) -> str:
    """One line: the model against the mean shape in the same crop, and a warning when it
    does not clearly beat it."""
    parts = []
    for key in (model.headline, "nme_inner"):
        if key not in model.values or key not in base.values:
            continue
        m, b = float(model.values[key]), float(base.values[key])
        if _lower_is_better(key):
            ratio = m / b if b > 0 else float("nan")
            parts.append(f"{key} {m:.2f} = {ratio:.2f} x the mean shape's {b:.2f}")
        else:
            parts.append(f"{key} {m:.2f} = the mean shape's {b:.2f} {m - b:+.2f} points")
    text = "model vs mean shape in the same crop: " + "; ".join(parts)
    clear = clearly_better(model, base)
    if clear is False:
        rule = (
            f"NME above {CLEAR_NME_RATIO:g} x"
            if _lower_is_better(model.headline)
            else f"less than {CLEAR_PCK_POINTS:g} points above"
        )
        text += (
            f"\nWARNING: the model does not clearly beat the mean shape ({rule} it): it "
            "has learned little beyond where the crop box puts the points"
        )
    return text


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def format_comparison(
    result: Score, base: Score | None, title: str = "", base_label: str = "mean shape"
) -> str:
    """The protocol's table with the mean shape's numbers beside the model's: per joint
    (bodies), then the summary values."""
    lines = [title] if title else []
    names = [*result.per_joint, *result.values]
    width = max([len(n) for n in names] + [8])
    column = max(len(base_label), 8)
    if base is not None:
        lines.append(f"  {'':<{width}}  {'model':>8}  {base_label:>{column}}")
    for name, value in [*result.per_joint.items(), *result.values.items()]:
        row = f"  {name:<{width}}  {_number(value):>8}"
        if base is not None:
            other = base.per_joint.get(name, base.values.get(name, ""))
            row += f"  {_number(other):>{column}}"
        lines.append(row)
    return "\n".join(lines)


def subset(pred: Predictions, chosen: Sequence[int] | np.ndarray) -> Predictions:
    """The predictions of the samples at positions ``chosen``."""
    idx = np.asarray(chosen, int)
    parts = {}
    for f in fields(pred):
        value = getattr(pred, f.name)
        if f.name == "ids":
            value = [value[i] for i in idx]
        elif f.name == "skipped":
            value = 0
        elif isinstance(value, np.ndarray):
            value = value[idx]
        parts[f.name] = value
    return Predictions(**parts)


def breakdown_columns(result: Score) -> list[str]:
    """The values :func:`format_breakdown` shows: the headline, and the inner-point NME of faces."""
    return [result.headline] + (["nme_inner"] if "nme_inner" in result.values else [])


def breakdown(
    pred: Predictions,
    base: Predictions,
    protocol: str,
    skeleton: Skeleton,
    index: SourceIndex,
) -> tuple[dict[str, dict], dict[str, dict]]:
    """The protocol per activity group and per source, for the model and the mean shape:
    ``{group: {"samples", "model", "mean_shape"}}`` and ``{source key: {"group", "split",
    "path", "samples", "model", "mean_shape"}}``. Samples the index does not name are in
    source and group ``(unknown)``, so the counts add up to the whole set."""
    keys = [index.key_of(i) for i in pred.ids]
    by_group: dict[str, list[int]] = {}
    by_source: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        by_group.setdefault(index.group_of(key), []).append(i)
        by_source.setdefault(key or UNKNOWN, []).append(i)

    def row(chosen: list[int]) -> dict:
        model = score(subset(pred, chosen), protocol, skeleton)
        mean = score(subset(base, chosen), protocol, skeleton)
        return {
            "samples": len(chosen),
            "model": model.values,
            "mean_shape": mean.values,
            "clearly_better": clearly_better(model, mean),
        }

    groups = {g: row(by_group[g]) for g in sorted(by_group)}
    sources = {}
    for key in sorted(by_source, key=lambda k: (index.group_of(None if k == UNKNOWN else k), k)):
        info = index.sources.get(key, {})
        sources[key] = {
            "group": index.group_of(None if key == UNKNOWN else key),
            "split": info.get("split"),
            "path": info.get("path"),
            **row(by_source[key]),
        }
    return groups, sources


def sides(pred: Predictions, index: SourceIndex) -> dict[str, int]:
    """How many evaluated samples come from each side of the split (the index's ``split``:
    ``valid``, ``select``, ``train``; ``(unknown)`` for sources it does not name)."""
    counts: dict[str, int] = {}
    for sample_id in pred.ids:
        key = index.key_of(sample_id)
        side = UNKNOWN if key is None else str(index.sources[key].get("split") or UNKNOWN)
        counts[side] = counts.get(side, 0) + 1
    return dict(sorted(counts.items()))


def side_notes(counts: dict[str, int]) -> list[str]:
    """Warnings for a score that is not a held-out, unchosen one (docs/validation.md)."""
    notes = []
    if counts.get("train"):
        notes.append(
            f"WARNING: {counts['train']} samples come from sources on the training "
            "side of the split: not a held-out score"
        )
    if counts.get("select"):
        notes.append(
            f"note: {counts['select']} samples come from 'select' sources: use them to "
            "choose models and recipes, report 'valid'"
        )
    return notes


def format_breakdown(
    rows: dict[str, dict], columns: list[str], first: str, group_column: bool = False
) -> str:
    """A table of :func:`breakdown`'s rows: name, (group), n, then model and mean shape per
    column; ``!`` marks a row where the model does not clearly beat the mean shape."""
    width = max([len(first), *(len(name) for name in rows)])
    gwidth = max([5, *(len(str(r.get("group", ""))) for r in rows.values())])
    head = f"  {first:<{width}}" + (f"  {'group':<{gwidth}}" if group_column else "")
    head += f"  {'n':>5}"
    for c in columns:
        head += f"  {c:>9}  {'mean':>9}"
    lines = [head]
    for name, r in rows.items():
        line = f"  {name:<{width}}" + (f"  {r['group']:<{gwidth}}" if group_column else "")
        line += f"  {r['samples']:>5}"
        for c in columns:
            model, mean = r["model"].get(c, ""), r["mean_shape"].get(c, "")
            line += f"  {_number(model):>9}  {_number(mean):>9}"
        lines.append(line + ("  !" if r.get("clearly_better") is False else ""))
    return "\n".join(lines)
