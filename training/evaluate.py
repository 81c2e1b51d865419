"""Evaluate a landmark model (Keras or converted .tflite) on a benchmark's protocol.

    python -m training.evaluate --model runs/pose/model.keras --dataset mpii --data mpii/ --flip-test
    python -m training.evaluate --model pose.tflite --dataset mpii --data mpii/ --out eval/

A Keras model and its .tflite go through the same code: the same crop (edge.transform),
the same normalisation (from the model's metadata), the same decoding (edge.codec) and the
same metrics (training.metrics); only the call that turns a batch into heatmaps differs. So
the difference between the two numbers is what conversion cost.

Protocols (:mod:`training.scoring`): PCKh@0.5 (mpii, synthetic-pose), PCK@0.2 of the torso
(lsp), PCK@0.05 of the box (coco), inter-ocular NME (300w, wflw, synthetic-face), NME by the
box with per-yaw bins (aflw2000-3d, 300w-lp, aflw) and over visible points (pifa).

Beside every score: the **mean shape placed in the same crop** (the training split's mean
landmarks in box coordinates, put in each evaluated sample's crop box), scored the same way;
``--crop jitter`` moves and scales each crop as the device's tracker does between frames,
by draws from the box changes measured on the data's own clips; with the label tool's
``sources_<task>.json`` beside the data, the headline per activity group and per source.
The protocol is written down in docs/validation.md and lives in :mod:`training.validation`
(mean shape, sources index, tables) and :mod:`training.crop_jitter`; this module is the
command line and the prediction.
"""

from __future__ import annotations

import abc
import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge.cli import (
    ArgumentParser,
    add_backend_argument,
    add_threads_argument,
    resolve_model,
    run_cli,
)
from edge.codec import REFINEMENTS, HeatmapCodec
from edge.errors import ModelError
from edge.metadata import LandmarkMetadata, read_metadata
from edge.skeletons import Skeleton, get_skeleton
from edge.transform import apply_affine, invert_affine

from .crop_jitter import CropJitter, crop_jitter
from .data.augment import Normalisation, crop_sample
from .data.base import DatasetError, LandmarkDataset, iter_samples, open_dataset
from .scoring import PROTOCOLS, Predictions, Score, box_row, score
from .segmentation.data import PARTS_DATASETS
from .validation import (
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
    "300w": "full", "wflw": "test", "lsp": "test", "aflw2000-3d": "test", "300w-lp": "train",
    "aflw": "all", "pifa": "test",
}  # fmt: skip


class Predictor(abc.ABC):
    """Turns a batch of normalised crops (N, S, S, 3) into final-stack heatmaps (N, h, w, K)."""

    metadata: LandmarkMetadata
    description: str = ""

    @abc.abstractmethod
    def heatmaps(self, batch: np.ndarray) -> np.ndarray:
        """Final-stack heatmaps for a batch of crops."""


class KerasPredictor(Predictor):
    def __init__(self, model, metadata: LandmarkMetadata) -> None:
        self.model = model
        self.metadata = metadata
        self.description = "keras"

    def heatmaps(self, batch: np.ndarray) -> np.ndarray:
        out = self.model(batch, training=False)
        if isinstance(out, (list, tuple)):
            out = out[-1]  # the last stack is the prediction; earlier ones are for training
        return np.asarray(out, np.float32)


class BackendPredictor(Predictor):
    """A .tflite file run by one of edge.backends (LCE interpreter or a stock runtime)."""

    def __init__(self, backend, metadata: LandmarkMetadata) -> None:
        self.backend = backend
        self.metadata = metadata
        self.description = backend.description

    def heatmaps(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.backend.run(batch), np.float32)


def sidecar_path(model_path: str | Path) -> Path:
    """Where training writes the landmark record of ``model.keras``: ``model.landmarks.json``."""
    return Path(model_path).with_suffix(".landmarks.json")


def load_keras_model(path: str | Path):
    """Load a trained .keras model; larq's and the project's layers are registered first."""
    import larq  # noqa: F401 - registers larq's quantizers and layers for deserialisation
    import tensorflow as tf

    try:
        import training.models  # noqa: F401 - registers the project's custom layers, if any
    except ImportError:
        pass
    return tf.keras.models.load_model(str(path), compile=False)


def load_predictor(path: str | Path, *, backend: str = "auto", num_threads: int = 2) -> Predictor:
    """A predictor for a .keras model (with its sidecar metadata) or a .tflite file."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if path.suffix == ".tflite":
        from edge.backends import create_backend

        meta = read_metadata(path)
        return BackendPredictor(create_backend(backend, path, num_threads=num_threads), meta)
    if path.suffix in (".keras", ".h5"):
        side = sidecar_path(path)
        alt = path.with_name(path.name + ".landmarks.json")
        side = side if side.is_file() else alt
        if not side.is_file():
            raise ModelError(f"{path} has no landmark sidecar {sidecar_path(path).name}; it "
                             "is written by training.train next to the model")  # fmt: skip
        meta = LandmarkMetadata.from_json(side.read_text())
        try:
            model = load_keras_model(path)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load Keras model {path}: {exc}") from None
        return KerasPredictor(model, meta)
    raise ModelError(f"unsupported model file {path.name}: expected .keras, .h5 or .tflite")


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
        raise DatasetError(f"the model predicts {skeleton.num_landmarks} landmarks "
                           f"({skeleton.name}) but the dataset has {dataset.skeleton.num_landmarks} "
                           f"({dataset.skeleton.name})")  # fmt: skip
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
            # Heatmap cell j is centred on crop x = (j + 0.5) * stride - 0.5, so mirroring
            # the heatmap array (j -> w-1-j) is exactly the crop mirror (x -> S-1-x).
            heatmaps = 0.5 * (heatmaps + mirrored[:, :, ::-1, :][..., perm])
        crop_points, scores = codec.decode(heatmaps)
        for s, box, inv, p, sc in zip(samples, crop_boxes, inverses, crop_points, scores,
                                      strict=True):  # fmt: skip
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


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m training.evaluate",
        description="Score a landmark model (.keras with its .landmarks.json sidecar, or a "
        "converted .tflite) on a dataset with that benchmark's protocol. Both formats go "
        "through the same crop, decoding and metrics, so their numbers compare directly.",
    )
    p.add_argument("--model", required=True, metavar="PATH|pose|face",
                   help="model.keras or model.tflite, or 'pose'/'face' for the bundled demo "
                   "models")  # fmt: skip
    p.add_argument("--dataset", required=True, choices=sorted({*PROTOCOLS, *PARTS_DATASETS}),
                   help="dataset format; decides the protocol (helen-parts, label-map and "
                   "synthetic-faceparts score a segmentation model: per-class F1, overall "
                   "F1, mIoU)")  # fmt: skip
    p.add_argument(
        "--data", default=None, help="annotation file or dataset root (none for synthetic)"
    )
    p.add_argument("--split", default=None,
                   help="which split to score (default: the benchmark's test split: full for "
                   "300w, test for wflw and lsp, val otherwise)")  # fmt: skip
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="reader option, e.g. size=500 or seed=1 for synthetic sets (repeatable)")  # fmt: skip
    p.add_argument("--flip-test", action="store_true",
                   help="also predict the mirrored crop and average (slower, usually better)")  # fmt: skip
    p.add_argument("--limit", type=int, default=None, help="score only the first N samples")
    p.add_argument("--batch-size", type=int, default=32, help="crops per model call (default 32)")
    add_backend_argument(p)
    add_threads_argument(p, help="interpreter threads for .tflite")
    p.add_argument("--refine", default=None, choices=REFINEMENTS,
                   help="sub-cell heatmap refinement (default: the one in the model's "
                   "metadata, quarter for models converted before it was recorded)")  # fmt: skip
    p.add_argument("--protocol", action="append", default=None,
                   choices=sorted(set(PROTOCOLS.values())),
                   help="score with this protocol instead of the dataset's own; repeat for "
                   "several (e.g. --protocol pck_torso --protocol pckh for teacher-labelled "
                   "real footage). The first is the headline")  # fmt: skip
    p.add_argument("--out", type=Path, default=None,
                   help="folder for metrics.json, curve.png and the pictures (default: print only)")  # fmt: skip
    p.add_argument("--pictures", type=int, default=6,
                   help="with --out: this many side-by-side pictures of reference vs model "
                   "landmarks, spread over the set (0: none)")  # fmt: skip
    p.add_argument("--baseline-split", default=None, metavar="SPLIT|own",
                   help="where the mean-shape baseline is averaged: this split of the same "
                   "data (or the label tool's sibling file or folder, e.g. annot/train.json "
                   "beside annot/valid.json), or 'own' for the evaluated set's own mean. "
                   "Default: the train split if there is one, else the own mean")  # fmt: skip
    p.add_argument("--baseline-limit", type=int, default=BASELINE_LIMIT, metavar="N",
                   help="average the mean shape over at most N training samples, evenly "
                   f"spread (default {BASELINE_LIMIT})")  # fmt: skip
    p.add_argument("--crop", choices=("exact", "jitter"), default="exact",
                   help="exact: the dataset's box around the landmarks; jitter: that box "
                   "moved and scaled as the device's tracker moves it between frames, drawn "
                   "from the box changes measured on the data's own clips (fallback constants "
                   "when it has none; both said in the output). Default exact")  # fmt: skip
    p.add_argument("--jitter-seed", type=int, default=0, metavar="INT",
                   help="with --crop jitter: seed of the draws (a record's draw depends on "
                   "the seed and its index only; default 0)")  # fmt: skip
    p.add_argument("--sources", type=Path, default=None, metavar="JSON",
                   help="the label tool's sources_<task>.json, for the per-group and "
                   "per-source tables and for telling clips from photos (default: the one "
                   "beside the data, if any)")  # fmt: skip
    return p


def _options(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DatasetError(f"--option {item!r} must look like key=value")
        out[key] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args), errors=(ValueError,))


def _model_path(spec: str) -> Path:
    """A Keras model (file or SavedModel folder), else edge's --model rules (pose, face, a file)."""
    path = Path(spec).expanduser()
    return path if path.exists() else resolve_model(spec)


def _check_args(args) -> None:
    if args.baseline_limit < 1:
        raise DatasetError(f"--baseline-limit must be at least 1, got {args.baseline_limit}")
    if args.jitter_seed < 0:
        raise DatasetError(f"--jitter-seed must be a non-negative integer, got {args.jitter_seed}")
    if args.limit is not None and args.limit < 1:
        raise DatasetError(f"--limit must be at least 1, got {args.limit}")
    if args.sources is not None and not args.sources.is_file():
        raise DatasetError(f"--sources: no such file {args.sources}")


def mean_shape_for(args, dataset_split: str, options: dict, threads: int = 4) -> MeanShape | None:
    """The training split's mean shape (None: use the evaluated set's own, known only after
    prediction)."""
    train, where = training_set(args.dataset, args.data, dataset_split, options,
                                args.baseline_split)  # fmt: skip
    if train is None:
        return None
    shapes = collect_shapes(train, evenly_spread(len(train), args.baseline_limit), threads)
    if not shapes.ids:
        raise DatasetError(f"every sample read from {where} for the mean shape is corrupt; "
                           "use --baseline-split own")  # fmt: skip
    if len(shapes.ids) < len(train):
        where += f", {len(shapes.ids)} of {len(train)} samples evenly spread"
    else:
        where += f", {len(shapes.ids)} samples"
    return mean_shape_of(shapes, where)


def run(args) -> int:
    from tqdm import tqdm

    args.model = _model_path(args.model)
    if args.dataset in PARTS_DATASETS:
        from .segmentation.evaluate import run as run_segmentation

        return run_segmentation(args)
    _check_args(args)
    args.split = args.split or DEFAULT_SPLITS.get(args.dataset, "val")
    options = _options(args.option)
    dataset = open_dataset(args.dataset, args.data, split=args.split, **options)
    mean = mean_shape_for(args, args.split, options)
    predictor = load_predictor(args.model, backend=args.backend, num_threads=args.threads)
    if predictor.metadata.task == "segmentation":
        raise ModelError(f"{args.model} is a segmentation model; score it on a segmentation "
                         f"dataset ({', '.join(sorted(PARTS_DATASETS))})")  # fmt: skip
    n = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    index = jitter = None
    if args.crop == "jitter":
        # The clips' box changes are measured before any crop is made: a first pass over the
        # evaluated records' landmarks (their images are read, then dropped).
        shapes = collect_shapes(dataset, range(n))
        index = find_source_index(args.data, args.sources, shapes.ids)
        jitter = crop_jitter(dataset, index, predictor.metadata.box_margin, args.jitter_seed,
                             shapes=shapes)  # fmt: skip
    preds = predict_dataset(
        predictor, dataset, batch_size=args.batch_size, flip_test=args.flip_test,
        limit=args.limit, refine=args.refine, jitter=jitter,
        progress=lambda it: tqdm(it, total=-(-n // args.batch_size), unit="batch",
                                 desc=f"evaluating {args.model.name}"),
    )  # fmt: skip
    if mean is None:
        mean = own_mean_shape(preds)
    if index is None:
        index = find_source_index(args.data, args.sources, preds.ids)
    skeleton = get_skeleton(predictor.metadata.skeleton)
    protocols = args.protocol or [PROTOCOLS[args.dataset]]
    results = [score(preds, protocol, skeleton) for protocol in protocols]
    placed = mean.place(preds)
    baselines = [score(placed, protocol, skeleton) for protocol in protocols]
    crop_text = "crop: exact (the dataset's box)" if jitter is None else jitter.describe()
    title = (f"{args.model.name} [{predictor.description}] on {args.dataset}/{args.split}"
             f"{' with flip test' if args.flip_test else ''}: {len(preds.points)} samples"
             f"{f', {preds.skipped} corrupt skipped' if preds.skipped else ''}, {args.crop} crop")  # fmt: skip
    print(title)
    print(crop_text)
    print(f"{mean.label}: averaged over {mean.source}; placed in each sample's crop box")
    for i, (result, base) in enumerate(zip(results, baselines, strict=True)):
        print(format_comparison(result, base, "" if i == 0 else f"{result.protocol}:",
                                mean.label))  # fmt: skip
        print(verdict_line(result, base))
    groups = sources = split_sides = None
    if index is not None:
        groups, sources = breakdown(preds, placed, protocols[0], skeleton, index)
        split_sides = sides(preds, index)
        print("sides of the split: " + ", ".join(f"{k} {v}" for k, v in split_sides.items()))
        for note in side_notes(split_sides):
            print(note)
        columns = breakdown_columns(results[0])
        print(f"per activity group ({index.path}), {', '.join(columns)}; ! = not clearly "
              "better than the mean shape:")  # fmt: skip
        print(format_breakdown(groups, columns, "group"))
        print("per source:")
        print(format_breakdown(sources, columns, "source", group_column=True))
    result = results[0]
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        report = {"model": str(args.model), "runtime": predictor.description,
                  "dataset": args.dataset, "split": args.split, "flip_test": args.flip_test,
                  "skipped": preds.skipped, **result.to_dict(),
                  "also": {r.protocol: r.values for r in results[1:]},
                  "crop": {"mode": "exact"} if jitter is None else jitter.summary(),
                  "baseline": {"kind": "mean shape in the same crop", **mean.to_dict(),
                               "values": baselines[0].values,
                               "per_joint": baselines[0].per_joint,
                               "also": {b.protocol: b.values for b in baselines[1:]},
                               "clearly_beaten": clearly_better(result, baselines[0])}}  # fmt: skip
        if index is not None:
            report.update(sources_index=str(index.path), sides=split_sides, groups=groups,
                          sources=sources)  # fmt: skip
        (args.out / "metrics.json").write_text(json.dumps(report, indent=2))
        plot_curve(result, args.out / "curve.png", label=args.model.name)
        pictures = write_pictures(dataset, preds, skeleton, args.out, args.pictures)
        print(f"wrote {args.out / 'metrics.json'}, {args.out / 'curve.png'}"
              f"{f' and {len(pictures)} pictures' if pictures else ''}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
