"""The tracker's lost cut of one model: measured on people, recorded in the model.

``edge.live`` loses a track when the model's mean landmark score in its crop falls under a
cut (``--lost-below``). A model's scores are its own: another skeleton (COCO-17's face points
score higher than MPII-16's head top), another training set or a longer schedule moves them,
so a cut set for one model can keep another on background or drop it from people. Measured
here as the :data:`edge.tracking.LOST_CUT_PERCENTILE`-th percentile of the model's mean
landmark score on labelled people, in the crops the evaluation made (``training.evaluate
--crop jitter``: as the tracker moves them): the track of a person is lost in that share of
such crops. That percentile is how the first bundled pose model's cut (0.3) compares with
its scores (0.301 on the pose task's select clips). ``training.evaluate --calibrate-tracking``
records it in the model, where ``edge.live --lost-below auto`` reads it
(:func:`edge.tracking.lost_below_of`). Measure it on the side that chooses models
(``select``), never on the one that reports them.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge.errors import ModelError
from edge.metadata import LandmarkMetadata, read_metadata
from edge.tracking import DEFAULT_LOST_BELOW, LOST_CUT_PERCENTILE

from .artifacts import KERAS_SUFFIXES, load_sidecar
from .files import write_whole


def measure_lost_cut(scores: np.ndarray, percentile: float = LOST_CUT_PERCENTILE) -> dict:
    """The cut from ``scores`` (N, K), each row one person's landmark scores in one crop:
    the ``percentile``-th percentile of the rows' means, with what it was measured on."""
    means = np.asarray(scores, np.float64).reshape(len(scores), -1).mean(axis=1)
    means = means[np.isfinite(means)]
    if not len(means):
        raise ValueError("no scores to measure the lost cut on")
    return {
        "lost_below": round(float(np.percentile(means, percentile)), 4),
        "percentile": percentile,
        "samples": int(len(means)),
        "median_score": round(float(np.median(means)), 4),
    }


def describe_lost_cut(tracking: dict) -> str:
    """One line for a measured cut, beside edge.live's default."""
    return (
        f"tracker's lost cut for this model: {tracking['lost_below']:.3f} (the "
        f"{tracking['percentile']:g}th percentile of its mean landmark score on these "
        f"{tracking['samples']} crops; median {tracking['median_score']:.3f}); edge.live's "
        f"default for models that record none: {DEFAULT_LOST_BELOW:g}"
    )


def check_calibration(model: Path, *, crop: str, flip_test: bool) -> None:
    """Refuse, before any scoring, what ``--calibrate-tracking`` cannot record: a model that is
    neither a .tflite nor a .keras with its sidecar, crops that are not the tracker's
    (``--crop jitter``), or flip-test scores (edge.live runs without it by default)."""
    model = Path(model)
    if crop != "jitter":
        raise ModelError("--calibrate-tracking measures the tracker's crops: add --crop jitter")
    if flip_test:
        raise ModelError(
            "--calibrate-tracking records the cut for the plain model, which edge.live runs by "
            "default: drop --flip-test"
        )
    if model.suffix == ".tflite":
        return
    if model.suffix not in KERAS_SUFFIXES:
        raise ModelError(
            f"--calibrate-tracking records the cut in a .tflite or .keras model, not {model}"
        )
    if load_sidecar(model)[0] is None:
        raise ModelError(f"{model} has no landmark sidecar to record the lost cut in")


def record_lost_cut(model: Path, tracking: dict) -> Path:
    """Record ``tracking`` (:func:`measure_lost_cut`'s, with where it was measured) as the
    model's ``extra["tracking"]``: inside a .tflite (its metadata and digest rewritten), or
    in a Keras model's sidecar, which the converter embeds. Returns the file written."""
    model = Path(model)
    if model.suffix == ".tflite":
        from converters.tflite_metadata import write_landmark_metadata

        data = model.read_bytes()
        meta = read_metadata(data)
        write_whole(model, write_landmark_metadata(data, _with_tracking(meta, tracking)))
        return model
    if model.suffix in KERAS_SUFFIXES:
        meta, path = load_sidecar(model)
        if meta is None or path is None:
            raise ModelError(f"{model} has no landmark sidecar to record the lost cut in")
        write_whole(path, _with_tracking(meta, tracking).to_json().encode("utf-8"))
        return path
    raise ModelError(
        f"--calibrate-tracking records the cut in a .tflite or .keras model, not {model}"
    )


def _with_tracking(meta: LandmarkMetadata, tracking: dict) -> LandmarkMetadata:
    if meta.task not in ("pose", "face"):
        raise ModelError(f"a {meta.task} model is not tracked by its landmark scores")
    # JSON-clean (numpy scalars and paths as plain values), as the metadata is stored
    return replace(
        meta, extra={**meta.extra, "tracking": json.loads(json.dumps(tracking, default=str))}
    )
