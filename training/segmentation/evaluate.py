"""Scoring a segmentation model (Keras or .tflite) on a segmentation dataset.

Both formats go through the device's own decoding: each sample's box is cut by
:func:`edge.transform.warp_crop`, the final logits are mapped back to image pixels by
:func:`edge.segmentation.class_map_in_image`, and the class map is compared with the
sample's label map pixel by pixel (:mod:`training.metrics`: per-class F1, Helen's overall
F1, mIoU). ``python -m training.evaluate --dataset <segmentation set>`` lands in
:func:`evaluate` (through :class:`training.segmentation.task.SegmentationTask`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.errors import ModelError
from edge.parts import PartLabels
from edge.segmentation import class_map_in_image, draw_parts
from edge.transform import normalise_input, warp_crop

from ..data.base import CorruptSample
from ..metrics import class_f1, class_iou, confusion_matrix, mean_iou, overall_f1
from ..predictor import Predictor, load_predictor
from ..task import EvaluateOptions
from .data import PartsDataset, PartsSample


@dataclass
class PartsScore:
    labels: PartLabels
    confusion: np.ndarray
    samples: int
    skipped: int = 0
    kept: list = field(default_factory=list)  # (sample, predicted class map) for pictures

    def values(self) -> dict[str, float]:
        f1 = class_f1(self.confusion)
        iou = class_iou(self.confusion)
        out = {
            "overall_f1": overall_f1(self.confusion, self.labels.overall),
            "miou": mean_iou(self.confusion),
        }
        for i, name in enumerate(self.labels.classes):
            out[f"f1/{name}"] = float(f1[i])
            out[f"iou/{name}"] = float(iou[i])
        return out

    def table(self, title: str = "") -> str:
        v = self.values()
        lines = [title] if title else []
        lines.append(
            f"  overall F1 (brows, eyes, nose, mouth) {100 * v['overall_f1']:6.2f}   "
            f"mIoU {100 * v['miou']:6.2f}"
        )
        lines.append(f"  {'class':<12} {'F1':>7} {'IoU':>7}")
        for name in self.labels.classes:
            f1, iou = v[f"f1/{name}"], v[f"iou/{name}"]
            lines.append(f"  {name:<12} {100 * f1:7.2f} {100 * iou:7.2f}")
        return "\n".join(lines)


def check_segmentation(metadata, where: str) -> None:
    if metadata.task != "segmentation":
        raise ModelError(
            f"{where} is a {metadata.task} landmark model ({metadata.skeleton}); "
            "a segmentation dataset needs a segmentation model"
        )


def score_dataset(
    predictor: Predictor,
    dataset: PartsDataset,
    *,
    batch_size: int = 16,
    limit: int | None = None,
    keep: int = 0,
    progress: Callable | None = None,
) -> PartsScore:
    """Confusion matrix of ``predictor`` (training.evaluate's Keras or backend predictor)
    over ``dataset``; corrupt records are skipped and counted. ``keep`` predictions, spread
    over the set, are kept for pictures."""
    meta = predictor.metadata
    labels = dataset.labels
    if tuple(meta.classes) != labels.classes:
        raise ModelError(
            f"the model's classes ({', '.join(meta.classes)}) are not the "
            f"dataset's ({', '.join(labels.classes)})"
        )
    n = len(dataset) if limit is None else min(limit, len(dataset))
    keep_at = set(np.linspace(0, n - 1, keep).round().astype(int).tolist()) if keep and n else set()
    confusion = np.zeros((labels.num_classes,) * 2, np.int64)
    kept: list = []
    samples = 0
    batches = range(0, n, batch_size)
    for start in progress(batches) if progress else batches:
        items: list[tuple[int, PartsSample, np.ndarray]] = []
        crops = []
        for i in range(start, min(start + batch_size, n)):
            try:
                sample = dataset.load(i)
            except CorruptSample as exc:
                dataset.skipped.record(i, str(exc))
                continue
            crop, to_crop = warp_crop(sample.image, sample.box, meta.input_size)
            items.append((i, sample, to_crop))
            crops.append(crop)
        if not crops:
            continue
        x = normalise_input(np.stack(crops), meta.input_color, meta.input_mean, meta.input_std)
        logits = predictor.heatmaps(x)
        for (i, sample, to_crop), out in zip(items, logits, strict=True):
            class_map = class_map_in_image(out, to_crop, meta, sample.image.shape)
            confusion += confusion_matrix(class_map, sample.mask, labels.num_classes)
            samples += 1
            if i in keep_at:
                kept.append((sample, class_map))
    return PartsScore(labels, confusion, samples, dataset.skipped.count, kept)


def write_pictures(result: PartsScore, path: Path, colors, height: int = 160) -> Path | None:
    """One picture: a row per kept sample, image | label map | prediction (overlaid)."""
    import cv2

    rows = []
    for sample, class_map in result.kept:
        tiles = []
        for mask in (None, sample.mask, class_map):
            tile = sample.image.copy()
            if mask is not None:
                draw_parts(tile, mask, colors, alpha=0.6)
            scale = height / tile.shape[0]
            tiles.append(cv2.resize(tile, (max(1, round(tile.shape[1] * scale)), height)))
        rows.append(np.hstack(tiles))
    if not rows:
        return None
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    sheet = np.vstack(rows)
    for x, text in (
        (4, "image"),
        (sheet.shape[1] // 3 + 4, "label"),
        (2 * sheet.shape[1] // 3 + 4, "model"),
    ):
        cv2.putText(sheet, text, (x, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    if not cv2.imwrite(str(path), sheet):
        raise OSError(f"cannot write {path}")
    return path


def evaluate(options: EvaluateOptions) -> int:
    """``python -m training.evaluate`` on a segmentation dataset: the per-class table, and
    with ``options.out`` metrics.json (values and confusion matrix) and a picture."""
    from .data import open_parts_dataset

    split = options.split or "val"
    dataset = open_parts_dataset(options.dataset, options.data, split=split, **options.options)
    predictor = load_predictor(options.model, backend=options.backend, num_threads=options.threads)
    check_segmentation(predictor.metadata, str(options.model))
    n = len(dataset) if options.limit is None else min(options.limit, len(dataset))
    result = score_dataset(
        predictor,
        dataset,
        batch_size=options.batch_size,
        limit=options.limit,
        keep=options.pictures if options.out is not None else 0,
        progress=options.batch_progress(n),
    )
    title = (
        f"{options.model.name} [{predictor.description}] on {options.dataset}/{split}: "
        f"{result.samples} samples"
        f"{f', {result.skipped} corrupt skipped' if result.skipped else ''}"
    )
    print(result.table(title))
    if options.out is not None:
        metrics = options.write_metrics(
            {
                "model": str(options.model),
                "runtime": predictor.description,
                "dataset": options.dataset,
                "split": split,
                "samples": result.samples,
                "skipped": result.skipped,
                "values": result.values(),
                "confusion": result.confusion.tolist(),
            }
        )
        picture = write_pictures(
            result, options.out / "predictions.png", predictor.metadata.class_colors
        )
        print(f"wrote {metrics}" + (f" and {picture}" if picture else ""))
    return 0
