"""Scoring a landmark model (Keras or converted .tflite) on a benchmark's protocol.

A Keras model and its .tflite go through the same code: the same crop (edge.transform),
the same normalisation (from the model's metadata), the same decoding (edge.codec) and the
same metrics (training.metrics); only the call that turns a batch into heatmaps differs
(:mod:`training.predictor`). So the difference between the two numbers is what conversion
cost.

Protocols (:mod:`training.scoring`): PCKh@0.5 (mpii, synthetic-pose), PCK@0.2 of the torso
(lsp), PCK@0.05 of the box (coco), inter-ocular NME (300w, wflw, synthetic-face), NME by the
box with per-yaw bins (aflw2000-3d, 300w-lp, aflw) and over visible points (pifa).

Beside every score: the **mean shape placed in the same crop** (the training split's mean
landmarks in box coordinates, put in each evaluated sample's crop box), scored the same way;
``crop="jitter"`` moves and scales each crop as the device's tracker does between frames,
by draws from the box changes measured on the data's own clips; with the label tool's
``sources_<task>.json`` beside the data, the headline per activity group and per source.
The protocol is written down in docs/validation.md and lives in :mod:`training.validation`
(mean shape, sources index, tables) and :mod:`training.crop_jitter`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge.codec import HeatmapCodec, mirror_average
from edge.errors import ModelError
from edge.metadata import LandmarkMetadata
from edge.skeletons import Skeleton, get_skeleton
from edge.transform import apply_affine, invert_affine

from ..crop_jitter import CropJitter, crop_jitter
from ..data.augment import Normalisation, crop_sample
from ..data.base import DatasetError, LandmarkDataset, iter_samples, open_dataset
from ..lost_cut import check_calibration, describe_lost_cut, measure_lost_cut, record_lost_cut
from ..predictor import Predictor, load_predictor
from ..scoring import PROTOCOLS, Predictions, Score, box_row, score
from ..segmentation.data import PARTS_DATASETS
from ..task import EvaluateOptions
from ..validation import (
    BASELINE_LIMIT,
    MeanShape,
    breakdown,
    breakdown_columns,
    clearly_better,
    collect_shapes,
    evenly_spread,
    find_source_index,
    format_breakdown,
    format_comparison,
    load_samples,
    mean_shape_of,
    own_mean_shape,
    side_notes,
    sides,
    training_set,
    verdict_line,
)

# The split each benchmark reports on, used when --split is not given.
DEFAULT_SPLITS = {
    "300w": "full",
    "wflw": "test",
    "lsp": "test",
    "aflw2000-3d": "test",
    "300w-lp": "train",
    "aflw": "all",
    "pifa": "test",
}


def normalisation_of(meta: LandmarkMetadata) -> Normalisation:
    return Normalisation(meta.input_color, tuple(meta.input_mean), tuple(meta.input_std))


def codec_of(meta: LandmarkMetadata, refine: str | None = None) -> HeatmapCodec:
    """The model's own codec (its recorded sigma and refinement; ``refine`` overrides)."""
    return meta.codec(refine)


def predict_dataset(
    predictor: Predictor,
    dataset: LandmarkDataset,
    *,
    batch_size: int = 32,
    flip_test: bool = False,
    limit: int | None = None,
    refine: str | None = None,
    threads: int = 4,
    progress: Callable[[Iterator], Iterator] | None = None,
    jitter: CropJitter | None = None,
) -> Predictions:
    """Crop every sample's box, predict, decode and map back to image pixels.

    With ``flip_test`` the mirrored crop is predicted too; its heatmaps are mirrored back,
    their left/right channels swapped, and averaged with the plain ones before decoding.
    With ``jitter`` each crop box is moved and scaled by :meth:`CropJitter.apply` (a draw
    that depends on the seed and the record index only, so it is the same in every run).
    """
    meta = predictor.metadata
    skeleton = get_skeleton(meta.skeleton)
    if skeleton.num_landmarks != dataset.skeleton.num_landmarks:
        raise DatasetError(
            f"the model predicts {skeleton.num_landmarks} landmarks "
            f"({skeleton.name}) but the dataset has {dataset.skeleton.num_landmarks} "
            f"({dataset.skeleton.name})"
        )
    size = int(meta.input_size[0])
    codec = codec_of(meta, refine)
    normalise = normalisation_of(meta)
    perm = skeleton.flip_permutation()
    if flip_test and not skeleton.flip_pairs:
        raise DatasetError(f"--flip-test needs left/right pairs, and {skeleton.name} has none")
    n = len(dataset) if limit is None else min(limit, len(dataset))
    starts = range(0, n, batch_size)
    if progress is not None:
        starts = progress(starts)
    keys = ("points", "scores", "gt", "visible", "head", "box", "ids", "yaw", "occ", "crop", "own")
    out: dict[str, list] = {k: [] for k in keys}
    skipped = 0
    for start in starts:
        indices = list(range(start, min(start + batch_size, n)))
        samples, crop_boxes = [], []
        for i, item in zip(indices, load_samples(dataset, indices, threads), strict=True):
            if isinstance(item, str):
                dataset.skipped.record(i, item)
                skipped += 1
            else:
                samples.append(item)
                crop_boxes.append(item.box if jitter is None else jitter.apply(item.box, i))
        if not samples:
            continue
        crops, inverses = [], []
        for s, box in zip(samples, crop_boxes, strict=True):
            crop, matrix, _, _ = crop_sample(replace(s, box=box), size, dataset.skeleton)
            crops.append(normalise(crop))
            inverses.append(invert_affine(matrix))
        batch = np.stack(crops)
        heatmaps = predictor.heatmaps(batch)
        if flip_test:
            mirrored = predictor.heatmaps(np.ascontiguousarray(batch[:, :, ::-1]))
            heatmaps = mirror_average(heatmaps, mirrored, perm)
        crop_points, scores = codec.decode(heatmaps)
        for s, box, inv, p, sc in zip(
            samples, crop_boxes, inverses, crop_points, scores, strict=True
        ):
            out["crop"].append(box_row(box))
            out["own"].append(box_row(s.box))
            out["points"].append(apply_affine(inv, p))
            out["scores"].append(sc)
            out["gt"].append(s.points)
            out["visible"].append(s.visible)
            out["head"].append(np.nan if s.head_size is None else s.head_size)
            out["box"].append(s.box.size)
            out["ids"].append(s.id)
            out["yaw"].append(np.nan if s.yaw is None else s.yaw)
            out["occ"].append(np.zeros(len(s.points), bool) if s.occluded is None else s.occluded)
    if not out["points"]:
        raise DatasetError("no usable sample to evaluate")
    return Predictions(
        points=np.stack(out["points"]),
        scores=np.stack(out["scores"]),
        gt=np.stack(out["gt"]).astype(np.float64),
        visible=np.stack(out["visible"]),
        head_size=np.asarray(out["head"], np.float64),
        box_size=np.asarray(out["box"], np.float64),
        ids=out["ids"],
        skipped=skipped,
        yaw=np.asarray(out["yaw"], np.float64),
        occluded=np.stack(out["occ"]),
        boxes=np.asarray(out["crop"], np.float64),
        sample_boxes=np.asarray(out["own"], np.float64),
    )


def format_table(result: Score, title: str = "") -> str:
    lines = [title] if title else []
    if result.per_joint:
        width = max(len(n) for n in result.per_joint)
        lines += [f"  {name:<{width}}  {v:6.2f}" for name, v in result.per_joint.items()]
    for key, value in result.values.items():
        text = f"{value:.2f}" if isinstance(value, float) else str(value)
        lines.append(f"  {key}: {text}")
    return "\n".join(lines)


def plot_curve(result: Score, path: str | Path, label: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ax.plot(result.curve_x, result.curve_y, label=label or None)
    ax.set_xlabel(result.curve_label)
    faces = result.protocol.startswith("nme")
    ax.set_ylabel("% images" if faces else "% landmarks")
    ax.set_title("CED" if faces else "PCK")
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    if label:
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def write_pictures(
    dataset: LandmarkDataset, pred: Predictions, skeleton: Skeleton, out: Path, count: int
) -> list[Path]:
    """``count`` pictures spread over the set: the sample's crop with the reference landmarks
    (left) and the model's (right), so a reader sees where the numbers come from."""
    import cv2

    from edge.draw import draw_landmarks, draw_text

    if count <= 0:
        return []
    by_id = {sample_id: i for i, sample_id in enumerate(pred.ids)}
    picks = np.unique(np.linspace(0, len(pred.ids) - 1, min(count, len(pred.ids))).round())
    written = []
    for n, k in enumerate(picks.astype(int)):
        wanted = pred.ids[k]
        sample = next((s for s in iter_samples(dataset, [_index_of(wanted, by_id, k)])), None)
        if sample is None:
            continue
        panels = []
        for label, points, shown in (
            ("reference", pred.gt[k], pred.visible[k].astype(float)),
            ("model", pred.points[k], np.ones(len(pred.points[k]))),
        ):
            crop, matrix, _, _ = crop_sample(sample, 256, skeleton)
            draw_landmarks(crop, apply_affine(matrix, points), shown, skeleton.edges, radius=3)
            panels.append(draw_text(crop, [label]))
        path = out / f"picture_{n:02d}.png"
        cv2.imwrite(str(path), np.hstack(panels))
        written.append(path)
    return written


def _index_of(sample_id: str, by_id: dict[str, int], fallback: int) -> int:
    # Sample ids end in "#<record index>" for the real readers; prediction order otherwise.
    tail = sample_id.rpartition("#")[2]
    return int(tail) if tail.isdigit() else by_id.get(sample_id, fallback)


def check(options: EvaluateOptions) -> None:
    """The options' ranges, each a one-line :class:`DatasetError` naming its flag."""
    if options.baseline_limit is not None and options.baseline_limit < 1:
        raise DatasetError(f"--baseline-limit must be at least 1, got {options.baseline_limit}")
    if options.jitter_seed < 0:
        raise DatasetError(
            f"--jitter-seed must be a non-negative integer, got {options.jitter_seed}"
        )
    if options.limit is not None and options.limit < 1:
        raise DatasetError(f"--limit must be at least 1, got {options.limit}")
    if options.sources is not None and not options.sources.is_file():
        raise DatasetError(f"--sources: no such file {options.sources}")
    if options.batch_size < 1:
        raise DatasetError(f"--batch-size must be at least 1, got {options.batch_size}")
    if options.out is not None and options.out.exists() and not options.out.is_dir():
        # Found now, not after the whole set has been scored.
        raise DatasetError(f"--out {options.out} is a file, not a folder")
    if options.calibrate_tracking:
        check_calibration(options.model, crop=options.crop, flip_test=options.flip_test)


def mean_shape_for(options: EvaluateOptions, split: str, threads: int = 4) -> MeanShape | None:
    """The training split's mean shape (None: use the evaluated set's own, known only after
    prediction)."""
    train, where = training_set(
        options.dataset, options.data, split, options.options, options.baseline_split
    )
    if train is None:
        return None
    limit = options.baseline_limit or BASELINE_LIMIT
    shapes = collect_shapes(train, evenly_spread(len(train), limit), threads)
    if not shapes.ids:
        raise DatasetError(
            f"every sample read from {where} for the mean shape is corrupt (first: "
            f"{shapes.first_error}); use --baseline-split own"
        )
    if len(shapes.ids) < len(train):
        where += f", {len(shapes.ids)} of {len(train)} samples evenly spread"
    else:
        where += f", {len(shapes.ids)} samples"
    return mean_shape_of(shapes, where)


def evaluate(options: EvaluateOptions) -> int:
    """Score a landmark model on a landmark dataset: tables on stdout, and with
    ``options.out`` metrics.json, the curve and pictures."""
    check(options)
    split = options.split or DEFAULT_SPLITS.get(options.dataset, "val")
    dataset = open_dataset(options.dataset, options.data, split=split, **options.options)
    mean = mean_shape_for(options, split)
    predictor = load_predictor(options.model, backend=options.backend, num_threads=options.threads)
    if predictor.metadata.task == "segmentation":
        raise ModelError(
            f"{options.model} is a segmentation model; score it on a segmentation "
            f"dataset ({', '.join(sorted(PARTS_DATASETS))})"
        )
    n = len(dataset) if options.limit is None else min(options.limit, len(dataset))
    index = jitter = None
    if options.crop == "jitter":
        # The clips' box changes are measured before any crop is made: a first pass over the
        # evaluated records' landmarks (their images are read, then dropped).
        shapes = collect_shapes(dataset, range(n))
        index = find_source_index(options.data, options.sources, shapes.ids)
        jitter = crop_jitter(
            dataset, index, predictor.metadata.box_margin, options.jitter_seed, shapes=shapes
        )
    preds = predict_dataset(
        predictor,
        dataset,
        batch_size=options.batch_size,
        flip_test=options.flip_test,
        limit=options.limit,
        refine=options.refine,
        jitter=jitter,
        progress=options.batch_progress(n),
    )
    if mean is None:
        mean = own_mean_shape(preds)
    if index is None:
        index = find_source_index(options.data, options.sources, preds.ids)
    report = _Report(options, split, predictor, preds, mean, jitter)
    report.print_scores()
    if index is not None:
        report.print_breakdown(index)
    if options.out is not None:
        report.write(dataset)
    if options.calibrate_tracking:
        written = record_lost_cut(options.model, report.tracking)
        print(f"recorded the lost cut {report.tracking['lost_below']:.3f} in {written}")
    return 0


class _Report:
    """The scores of one evaluation beside the mean shape's, printed and written."""

    def __init__(
        self,
        options: EvaluateOptions,
        split: str,
        predictor: Predictor,
        preds: Predictions,
        mean: MeanShape,
        jitter: CropJitter | None,
    ) -> None:
        self.options, self.split, self.predictor = options, split, predictor
        self.preds, self.mean, self.jitter = preds, mean, jitter
        self.skeleton = get_skeleton(predictor.metadata.skeleton)
        self.protocols = list(options.protocols) or [PROTOCOLS[options.dataset]]
        self.results = [score(preds, protocol, self.skeleton) for protocol in self.protocols]
        self.placed = mean.place(preds)
        self.baselines = [
            score(self.placed, protocol, self.skeleton) for protocol in self.protocols
        ]
        self.sources: dict = {}  # the per-group and per-source tables, when there is an index
        # The tracker's lost cut these crops give (training.lost_cut), and where it was measured.
        self.tracking = {
            **measure_lost_cut(preds.scores),
            "crop": options.crop,
            "flip_test": options.flip_test,
            "dataset": options.dataset,
            "data": str(options.data),
            "split": split,
        }

    def print_scores(self) -> None:
        o, preds = self.options, self.preds
        crop_text = (
            "crop: exact (the dataset's box)" if self.jitter is None else self.jitter.describe()
        )
        print(
            f"{o.model.name} [{self.predictor.description}] on {o.dataset}/{self.split}"
            f"{' with flip test' if o.flip_test else ''}: {len(preds.points)} samples"
            f"{f', {preds.skipped} corrupt skipped' if preds.skipped else ''}, {o.crop} crop"
        )
        print(crop_text)
        print(
            f"{self.mean.label}: averaged over {self.mean.source}; placed in each sample's crop box"
        )
        for i, (result, base) in enumerate(zip(self.results, self.baselines, strict=True)):
            print(
                format_comparison(
                    result, base, "" if i == 0 else f"{result.protocol}:", self.mean.label
                )
            )
            print(verdict_line(result, base))
        print(describe_lost_cut(self.tracking))

    def print_breakdown(self, index) -> None:
        groups, sources = breakdown(
            self.preds, self.placed, self.protocols[0], self.skeleton, index
        )
        split_sides = sides(self.preds, index)
        print("sides of the split: " + ", ".join(f"{k} {v}" for k, v in split_sides.items()))
        for note in side_notes(split_sides):
            print(note)
        columns = breakdown_columns(self.results[0])
        print(
            f"per activity group ({index.path}), {', '.join(columns)}; ! = not clearly "
            "better than the mean shape:"
        )
        print(format_breakdown(groups, columns, "group"))
        print("per source:")
        print(format_breakdown(sources, columns, "source", group_column=True))
        self.sources = {
            "sources_index": str(index.path),
            "sides": split_sides,
            "groups": groups,
            "sources": sources,
        }

    def write(self, dataset: LandmarkDataset) -> None:
        o, result, base = self.options, self.results[0], self.baselines[0]
        report = {
            "model": str(o.model),
            "runtime": self.predictor.description,
            "dataset": o.dataset,
            "split": self.split,
            "flip_test": o.flip_test,
            "skipped": self.preds.skipped,
            **result.to_dict(),
            "also": {r.protocol: r.values for r in self.results[1:]},
            "crop": {"mode": "exact"} if self.jitter is None else self.jitter.summary(),
            "baseline": {
                "kind": "mean shape in the same crop",
                **self.mean.to_dict(),
                "values": base.values,
                "per_joint": base.per_joint,
                "also": {b.protocol: b.values for b in self.baselines[1:]},
                "clearly_beaten": clearly_better(result, base),
            },
            **self.sources,
            "tracking": self.tracking,
        }
        metrics = o.write_metrics(report)
        plot_curve(result, o.out / "curve.png", label=o.model.name)
        pictures = write_pictures(dataset, self.preds, self.skeleton, o.out, o.pictures)
        print(
            f"wrote {metrics}, {o.out / 'curve.png'}"
            f"{f' and {len(pictures)} pictures' if pictures else ''}"
        )
