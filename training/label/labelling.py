"""The labelling loop of ``python -m training.label``: sources in, a dataset out.

Every source (a video or a photo) is labelled by the task's :class:`~training.label.
labellers.Labeller` into ``parts/<task>/<source key>.json`` with the settings it was made
with, so a repeated run skips what is finished with the same settings and resumes where an
interrupted one stopped. The held-out sources (``--split``) go to ``valid`` (or ``select``),
the rest to ``train``; then the labeller writes the index files, and ``summary_<task>.json``
and ``sources_<task>.json`` record what was read, kept and dropped, and where each came from.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from edge.errors import EdgeError

from ..splits import load_split
from . import writers
from .faceparts import FacePartsLabeller
from .finder import FaceFinderLabeller, PersonFinderLabeller
from .labellers import FINDER_TASKS, FaceLabeller, Labeller, LabelOptions, PoseLabeller
from .sources import UnreadableSource, expand, frames, is_image

# The newest teacher-to-skeleton mapping of a task. Bumped when it changes, so a resumed run
# labels again what an older mapping labelled (the options alone would not tell), and
# --labels-version makes an older one's labels again (to reproduce a model's reported score).
# face 1: the plain mesh table; 2: moved by to_ibug68's human offsets.
# The face finder's crop is the face labeller's (the iBUG-68 mapping), so it shares the versions.
LABELS_VERSION = {"face": 2, "face-finder": 2}
LABELLERS: dict[str, type[Labeller]] = {
    "pose": PoseLabeller,
    "face": FaceLabeller,
    "faceparts": FacePartsLabeller,
    "person-finder": PersonFinderLabeller,
    "face-finder": FaceFinderLabeller,
}
# Tasks whose stored files carry their side of the split in their path (<side>/<key>/...).
SIDE_FOLDERS = ("face", "faceparts", *FINDER_TASKS)


def source_key(path: Path) -> str:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', path.stem)}-{digest}"


def checked(options: LabelOptions) -> LabelOptions:
    """``options`` with their ranges checked and the labels version filled in."""
    if options.every < 1 or options.box_px < 8 or options.context < 1.0:
        raise EdgeError("--every must be >= 1, --box-px >= 8 and --context >= 1")
    if options.frame_px < 32:
        raise EdgeError("--frame-px must be >= 32")
    newest = LABELS_VERSION.get(options.task)
    if options.labels_version is None:
        return dataclasses.replace(options, labels_version=newest)
    if newest is None or not 1 <= options.labels_version <= newest:
        raise EdgeError(
            f"--labels-version: {options.task} labels have "
            f"{f'versions 1 to {newest}' if newest else 'no versions'}"
        )
    return options


class _Totals:
    """What the sources gave: records per split, counts, and where each source went."""

    def __init__(self, missing: int) -> None:
        self.counts: Counter = Counter({"missing sources": missing} if missing else {})
        self.per_split: dict[str, list[dict]] = {"train": [], "select": [], "valid": []}
        self.used_valid: set[str] = set()  # reported held-out sources
        self.used_select: set[str] = set()  # held out for choosing models
        self.source_index: dict[str, dict] = {}  # source key -> its path, side and group

    def add(self, split: str, records: list[dict], counts: Counter) -> None:
        self.per_split[split] += records
        self.counts.update(counts)


def label(options: LabelOptions) -> int:
    """Label ``options.sources`` into the dataset ``options.out`` (see the module docstring)."""
    from tqdm import tqdm

    options = checked(options)
    source_split = load_split(options.split)
    missing: list[str] = []
    paths = expand(list(options.sources), missing)
    for item in missing:
        print(f"skipped: {item}: no such file", file=sys.stderr)
    if not paths:
        raise EdgeError(f"no videos or images found in {' '.join(options.sources)}")
    labeller = LABELLERS[options.task](options)
    # What makes a finished source's labels reusable: the labelling options, not where the
    # split file lives (its effect, the source's side of the split, is compared on its own).
    settings = options.settings(versioned=options.task in LABELS_VERSION)
    totals = _Totals(len(missing))
    bar = tqdm(paths, unit="source", file=sys.stderr)
    for path in bar:
        split = source_split.side(path, options.task)
        if split != "train":
            (totals.used_valid if split == "valid" else totals.used_select).add(path.stem)
        key = source_key(path)
        totals.source_index[key] = {
            "path": str(path),
            "split": split,
            "group": source_split.group(path, options.task),
        }
        part_file = options.out / "parts" / options.task / f"{key}.json"
        done = _finished(part_file, settings, split)
        if done is not None:
            totals.add(split, done["records"], done["counts"])
            totals.counts["sources resumed"] += 1
            continue
        bar.set_postfix_str(path.name[:40])
        _forget(options.out, key)
        records, counts = _label_source(labeller, options, path, key, split, tqdm.write)
        writers.write_json(
            part_file,
            {
                "settings": settings,
                "split": split,
                "source": str(path),
                "records": records,
                "counts": counts,
            },
        )
        totals.add(split, records, counts)
    _finish(labeller, options, settings, totals, paths, source_split)
    return 0


SIDES = ("train", "select", "valid")


def _forget(out: Path, key: str) -> None:
    """Delete every crop an earlier run stored for source ``key``, on any side of the split.

    The face reader takes every .pts under a side's folder, so a source labelled again on
    another side (the split file changed) or with other frames (the options changed) would
    otherwise leave its old crops behind, a held-out face among the training ones."""
    folders = [out / "images" / key, *(out / side / key for side in SIDES)]  # pose, face
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    for side in SIDES:  # face parts: <side>/images/<key>_<frame>.jpg and labels/...png
        for kind in ("images", "labels"):
            for stale in (out / side / kind).glob(f"{glob.escape(key)}_*"):
                stale.unlink(missing_ok=True)


def _finished(part_file: Path, settings: dict, split: str) -> dict | None:
    """A source's earlier labels, when they were made with these settings on this side."""
    if not part_file.is_file():
        return None
    try:
        done = json.loads(part_file.read_text(encoding="utf-8"))
        stored = {k: v for k, v in done.get("settings", {}).items() if k != "split"}
        done["records"], done["counts"]  # noqa: B018 - both must be there to be reused
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, KeyError, TypeError):
        # Cut short (a full disk, a kill mid-write of an older version) or edited by hand:
        # the source is labelled again, not the run stopped on every later try.
        print(f"note: {part_file} is unreadable; labelling its source again", file=sys.stderr)
        return None
    return done if stored == settings and done.get("split") == split else None


def _label_source(
    labeller: Labeller, options: LabelOptions, path: Path, key: str, split: str, say
) -> tuple[list[dict], Counter]:
    """One video or photo's records and counts (an unreadable source is counted, not fatal)."""
    counts: Counter = Counter()
    records: list[dict] = []
    still = is_image(path)
    labeller.teacher.reset()  # every source is a new clip or photo
    try:
        chosen = _chosen(path, options) if not still else None
        for index, frame in frames(path, options.every):
            if chosen is not None and index not in chosen:
                continue
            counts["frames read"] += 1
            folder = f"{split}/{key}" if options.task in SIDE_FOLDERS else key
            records += labeller.label(frame, still, f"{folder}/{index:06d}", options.out, counts)
    except UnreadableSource as exc:
        say(f"skipped: {exc}", file=sys.stderr)
        counts["unreadable sources"] += 1
    return records, counts


def _finish(
    labeller: Labeller,
    options: LabelOptions,
    settings: dict,
    totals: _Totals,
    paths: list[Path],
    source_split,
) -> None:
    """The index files, the summary and sources files, and the counts on stdout."""
    out, task, per_split = options.out, options.task, totals.per_split
    if not per_split["select"]:  # no split file with a select list: the layout as before
        del per_split["select"]
    labeller.finish(out, per_split)
    summary = {
        "counts": dict(totals.counts),
        "records": {k: len(v) for k, v in per_split.items()},
        "valid_sources": sorted(totals.used_valid),
        "select_sources": sorted(totals.used_select),
        "settings": settings,
        "split_file": None if options.split is None else str(options.split),
    }
    writers.write_json(out / f"summary_{task}.json", summary)
    writers.write_json(out / f"sources_{task}.json", totals.source_index)
    unused = source_split.unused(paths, task)
    if not any(per_split.values()):
        raise EdgeError(
            f"nothing was labelled in {len(paths)} source(s); see {out}/summary_{task}.json"
        )
    for name, value in sorted(totals.counts.items()):
        print(f"{name:>40}: {value}")
    sides = " / ".join(per_split)
    counts = " / ".join(str(len(v)) for v in per_split.values())
    print(f"{f'records ({sides})':>40}: {counts}")
    if unused:
        print(
            f"note: {len(unused)} validation patterns in {options.split} matched no source "
            f"given: {', '.join(sorted(unused))}",
            file=sys.stderr,
        )


def _chosen(path: Path, options: LabelOptions) -> set[int] | None:
    """Frame indices kept under --max-per-source (evenly spread over the clip), or None."""
    if not options.max_per_source:
        return None
    import cv2

    capture = cv2.VideoCapture(str(path))
    n = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    capture.release()
    candidates = list(range(0, max(n, 1), options.every))
    if len(candidates) <= options.max_per_source:
        return None
    picks = np.linspace(0, len(candidates) - 1, options.max_per_source).round().astype(int)
    return {candidates[i] for i in picks}
