"""Evaluate a trained model (Keras or converted .tflite) on a dataset: ``python -m training.evaluate``.

    python -m training.evaluate --model runs/pose/model.keras --dataset mpii --data mpii/ --flip-test
    python -m training.evaluate --model pose.tflite --dataset mpii --data mpii/ --out eval/

The command line only: its flags become :class:`training.task.EvaluateOptions`, and the task
that scores ``--dataset`` (:mod:`training.tasks`) does the rest. Landmark datasets:
:mod:`training.landmarks.evaluate` (each benchmark's protocol beside the mean shape placed in
the same crop, ``--crop jitter``, per-group and per-source tables; docs/validation.md).
Segmentation datasets: :mod:`training.segmentation.evaluate` (per-class F1, overall F1,
mIoU). Finder frames (``--dataset finder``): :mod:`training.finder.evaluate` (recall and
precision at IoU 0.5). A Keras model and its .tflite go through the same crop, decoding and metrics, so the
difference between their numbers is what conversion cost.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.cli import (
    ArgumentParser,
    add_backend_argument,
    add_threads_argument,
    resolve_model,
    run_cli,
)
from edge.codec import REFINEMENTS

from .data.base import DatasetError
from .scoring import PROTOCOLS
from .task import EvaluateOptions
from .tasks import eval_datasets, task_for_dataset
from .validation import BASELINE_LIMIT


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m training.evaluate",
        description="Score a landmark model (.keras with its .landmarks.json sidecar, or a "
        "converted .tflite) on a dataset with that benchmark's protocol. Both formats go "
        "through the same crop, decoding and metrics, so their numbers compare directly.",
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="PATH|pose|face",
        help="model.keras or model.tflite, or 'pose'/'face' for the bundled demo models",
    )
    p.add_argument(
        "--dataset",
        required=True,
        choices=eval_datasets(),
        help="dataset format; decides the protocol (helen-parts, label-map and "
        "synthetic-faceparts score a segmentation model: per-class F1, overall "
        "F1, mIoU; finder scores a finder on the label tool's whole frames: recall and "
        "precision at IoU 0.5 of subjects a sixth of the frame tall (faces: a tenth); "
        "--option min_height=0.2 iou=0.5 change the bars)",
    )
    p.add_argument(
        "--data", default=None, help="annotation file or dataset root (none for synthetic)"
    )
    p.add_argument(
        "--split",
        default=None,
        help="which split to score (default: the benchmark's test split: full for "
        "300w, test for wflw and lsp, val otherwise)",
    )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="reader option, e.g. size=500 or seed=1 for synthetic sets (repeatable)",
    )
    p.add_argument(
        "--flip-test",
        action="store_true",
        help="also predict the mirrored crop and average (slower, usually better)",
    )
    p.add_argument("--limit", type=int, default=None, help="score only the first N samples")
    p.add_argument("--batch-size", type=int, default=32, help="crops per model call (default 32)")
    add_backend_argument(p)
    add_threads_argument(p, help="interpreter threads for .tflite")
    p.add_argument(
        "--refine",
        default=None,
        choices=REFINEMENTS,
        help="sub-cell heatmap refinement (default: the one in the model's "
        "metadata, quarter for models converted before it was recorded)",
    )
    p.add_argument(
        "--protocol",
        action="append",
        default=None,
        choices=sorted(set(PROTOCOLS.values())),
        help="score with this protocol instead of the dataset's own; repeat for "
        "several (e.g. --protocol pck_torso --protocol pckh for teacher-labelled "
        "real footage). The first is the headline",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for metrics.json, curve.png and the pictures (default: print only)",
    )
    p.add_argument(
        "--pictures",
        type=int,
        default=6,
        help="with --out: this many side-by-side pictures of reference vs model "
        "landmarks, spread over the set (0: none)",
    )
    p.add_argument(
        "--baseline-split",
        default=None,
        metavar="SPLIT|own",
        help="where the mean-shape baseline is averaged: this split of the same "
        "data (or the label tool's sibling file or folder, e.g. annot/train.json "
        "beside annot/valid.json), or 'own' for the evaluated set's own mean. "
        "Default: the train split if there is one, else the own mean",
    )
    p.add_argument(
        "--baseline-limit",
        type=int,
        default=BASELINE_LIMIT,
        metavar="N",
        help="average the mean shape over at most N training samples, evenly "
        f"spread (default {BASELINE_LIMIT})",
    )
    p.add_argument(
        "--crop",
        choices=("exact", "jitter"),
        default="exact",
        help="exact: the dataset's box around the landmarks; jitter: that box "
        "moved and scaled as the device's tracker moves it between frames, drawn "
        "from the box changes measured on the data's own clips (fallback constants "
        "when it has none; both said in the output). Default exact",
    )
    p.add_argument(
        "--jitter-seed",
        type=int,
        default=0,
        metavar="INT",
        help="with --crop jitter: seed of the draws (a record's draw depends on "
        "the seed and its index only; default 0)",
    )
    p.add_argument(
        "--sources",
        type=Path,
        default=None,
        metavar="JSON",
        help="the label tool's sources_<task>.json, for the per-group and "
        "per-source tables and for telling clips from photos (default: the one "
        "beside the data, if any)",
    )
    p.add_argument(
        "--calibrate-tracking",
        action="store_true",
        help="record the tracker's lost cut measured here (the 5th percentile of the mean "
        "landmark score on these crops; printed in any case) in the model: a .tflite's "
        "metadata, or a .keras model's sidecar, which the converter embeds; edge.live "
        "--lost-below auto then uses it. Measure on the side that chooses models (select) "
        "with --crop jitter",
    )
    return p


def reader_options(items: list[str]) -> dict:
    """``--option KEY=VALUE`` items as a dict, each value read as YAML (numbers, booleans)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DatasetError(f"--option {item!r} must look like key=value")
        out[key] = yaml.safe_load(value)
    return out


def _model_path(spec: str) -> Path:
    """A Keras model (file or SavedModel folder), else edge's --model rules (pose, face, a file)."""
    path = Path(spec).expanduser()
    return path if path.exists() else resolve_model(spec)


def options_from_args(args: argparse.Namespace) -> EvaluateOptions:
    """The parsed flags as the options the tasks read (the model path resolved, the reader
    options parsed)."""
    return EvaluateOptions(
        model=_model_path(args.model),
        dataset=args.dataset,
        data=args.data,
        split=args.split,
        options=reader_options(args.option),
        flip_test=args.flip_test,
        limit=args.limit,
        batch_size=args.batch_size,
        backend=args.backend,
        threads=args.threads,
        refine=args.refine,
        protocols=tuple(args.protocol or ()),
        out=args.out,
        pictures=args.pictures,
        baseline_split=args.baseline_split,
        baseline_limit=args.baseline_limit,
        crop=args.crop,
        jitter_seed=args.jitter_seed,
        sources=args.sources,
        calibrate_tracking=args.calibrate_tracking,
    )


def run(options: EvaluateOptions) -> int:
    """Score ``options.model`` with the task of ``options.dataset``."""
    return task_for_dataset(options.dataset).evaluate(options)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(options_from_args(args)), errors=(ValueError,))


if __name__ == "__main__":
    sys.exit(main())
