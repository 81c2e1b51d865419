"""What a set of predictions scores: each benchmark's protocol applied to predicted and
reference landmarks in image pixels.

Protocols: PCKh@0.5 per joint and total (mpii, synthetic-pose), PCK@0.2 of the torso (lsp),
PCK@0.05 of the box (coco), NME / AUC@0.08 / failure rate@0.08 (300w, wflw, synthetic-face),
NME by the landmarks' box sqrt(w * h) with AUC@0.07 / failure rate@0.07 and, where the set
has head yaw, per |yaw| bin and their balanced mean (aflw2000-3d, 300w-lp, aflw), and the same
over visible points only (pifa: AFLW-PIFA / LFPA). Faces of iBUG-68 and WFLW-98 also get
the NME over the inner points (``nme_inner``: brows, nose, eyes, mouth; no jaw line).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.skeletons import Skeleton
from edge.transform import CropBox

from . import metrics
from .data.base import DatasetError

PROTOCOLS = {
    "mpii": "pckh",
    "synthetic-pose": "pckh",
    "lsp": "pck_torso",
    "coco": "pck_box",
    "300w": "nme",
    "wflw": "nme",
    "synthetic-face": "nme",
    "aflw2000-3d": "nme_box",
    "300w-lp": "nme_box",
    "aflw": "nme_box",
    "pifa": "nme_visible",
}
# Error threshold of the AUC and failure rate for box-normalised NME: 7 % of sqrt(w * h), as
# in the FAN / LS3D-W evaluations of the same authors (inter-ocular NME uses 8 %).
BOX_THRESHOLD = 0.07


@dataclass
class Predictions:
    """Predicted and ground-truth landmarks in image pixels for every scored sample."""

    points: np.ndarray  # (N, K, 2)
    scores: np.ndarray  # (N, K) heatmap peak values
    gt: np.ndarray  # (N, K, 2)
    visible: np.ndarray  # (N, K)
    head_size: np.ndarray  # (N,) NaN where the dataset has none
    box_size: np.ndarray  # (N,)
    ids: list[str] = field(default_factory=list)
    skipped: int = 0
    yaw: np.ndarray | None = None  # (N,) degrees, NaN where the dataset has none
    occluded: np.ndarray | None = None  # (N, K) hidden points with a ground truth
    # (N, 4) [cx, cy, side, rotation]: the crop the model was given (jittered or not), and the
    # sample's own box. The mean-shape baseline is placed in the first.
    boxes: np.ndarray | None = None
    sample_boxes: np.ndarray | None = None


def box_row(box: CropBox) -> list[float]:
    """A box as a row of :attr:`Predictions.boxes`: ``[cx, cy, side, rotation]``."""
    return [float(box.center[0]), float(box.center[1]), float(box.size), float(box.rotation)]


@dataclass
class Score:
    """The numbers of one protocol plus the curve that goes with them."""

    protocol: str
    headline: str  # the key of the one number a paper table reports
    values: dict[str, float]  # headline and other summary numbers
    per_joint: dict[str, float]  # empty for faces
    curve_x: np.ndarray
    curve_y: np.ndarray  # percent of landmarks (pose) or images (faces) within x
    curve_label: str

    def to_dict(self) -> dict:
        return {
            "protocol": self.protocol,
            "headline": self.headline,
            "values": self.values,
            "per_joint": self.per_joint,
            "curve": {
                "label": self.curve_label,
                "x": self.curve_x.tolist(),
                "y": self.curve_y.tolist(),
            },
        }


def _pck_curve(
    pred: Predictions, norm: np.ndarray, visible: np.ndarray, skeleton: Skeleton, top: float
) -> tuple[np.ndarray, np.ndarray]:
    xs = np.linspace(0.0, top, 51)
    include = np.ones(skeleton.num_landmarks, bool)
    include[list(skeleton.excluded_from_mean)] = False
    err = metrics.point_errors(pred.points, pred.gt) / norm[:, None]
    e = err[visible & include[None, :]]
    ys = np.array([100.0 * np.mean(e <= x) if len(e) else np.nan for x in xs])
    return xs, ys


def _mean_percent(errors: np.ndarray) -> float:
    finite = np.isfinite(errors)
    return 100.0 * float(np.mean(errors[finite])) if finite.any() else float("nan")


def _box_nme_score(pred: Predictions, protocol: str, skeleton: Skeleton) -> Score:
    """``nme_box`` (all points with a ground truth) or ``nme_visible`` (visible points only,
    normalised by the box of all of them), in percent, with per-yaw-bin NMEs when known."""
    scored = pred.visible
    if protocol == "nme_visible":
        if pred.occluded is None:
            raise DatasetError("nme_visible needs the dataset's visibility flags; it has none")
        scored = pred.visible & ~pred.occluded
    errors = metrics.nme_box(pred.points, pred.gt, scored, norm_visible=pred.visible)
    finite = np.isfinite(errors)
    auc, fr = metrics.auc_fr(errors, BOX_THRESHOLD)
    values = {"nme": _mean_percent(errors)}
    inner = metrics.inner_points(skeleton)
    if inner is not None:  # same normaliser: the box of all the points, jaw included
        values["nme_inner"] = _mean_percent(
            metrics.nme_box(pred.points, pred.gt, scored & inner, norm_visible=pred.visible)
        )
    values.update(
        {
            f"auc@{BOX_THRESHOLD}": 100.0 * auc,
            f"fr@{BOX_THRESHOLD}": 100.0 * fr,
            "images": int(finite.sum()),
        }
    )
    if pred.yaw is not None and np.isfinite(pred.yaw).any():
        bins = metrics.nme_by_yaw(errors, pred.yaw)
        for label, _, _ in metrics.YAW_BINS:
            values[f"nme_yaw_{label}"] = 100.0 * bins[label]
            values[f"images_yaw_{label}"] = bins[f"count_{label}"]
        values["nme_balanced"] = 100.0 * bins["balanced"]
    xs, ys = metrics.ced(errors, BOX_THRESHOLD)
    label = "NME (box sqrt(w*h))" + (", visible points" if protocol == "nme_visible" else "")
    return Score(protocol, "nme", values, {}, xs, 100.0 * ys, label)


def score(pred: Predictions, protocol: str, skeleton: Skeleton) -> Score:
    """Apply a protocol (see :data:`PROTOCOLS`) to predictions."""
    if protocol in ("nme_box", "nme_visible"):
        return _box_nme_score(pred, protocol, skeleton)
    if protocol == "nme":
        meter = metrics.NMEMeter(skeleton)
        meter.update(pred.points, pred.gt, pred.visible)
        values = meter.result()
        xs, ys = metrics.ced(meter.errors, 0.08)
        summary = {"nme": 100.0 * values["nme"]}
        inner = metrics.inner_points(skeleton)
        if inner is not None:  # the same inter-ocular normaliser, the jaw line left out
            summary["nme_inner"] = _mean_percent(
                metrics.nme(pred.points, pred.gt, skeleton, pred.visible & inner)
            )
        values = {
            **summary,
            "auc@0.08": 100.0 * values["auc"],
            "fr@0.08": 100.0 * values["failure_rate"],
            "images": values["count"],
        }
        return Score("nme", "nme", values, {}, xs, 100.0 * ys, "NME (inter-ocular)")
    if protocol == "pckh":
        if not np.all(np.isfinite(pred.head_size) & (pred.head_size > 0)):
            raise DatasetError("PCKh needs a head size for every sample; this dataset has none")
        result = metrics.pckh(pred.points, pred.gt, pred.visible, pred.head_size, skeleton)
        norm, vis, top, label, key = (
            pred.head_size,
            pred.visible,
            0.5,
            "error / head size",
            "pckh@0.5",
        )
    elif protocol == "pck_torso":
        result = metrics.pck_torso(pred.points, pred.gt, pred.visible, skeleton, alpha=0.2)
        norm = metrics.torso_size(pred.gt, skeleton)
        vis = pred.visible & (norm > 0)[:, None]
        norm = np.where(norm > 0, norm, 1.0)
        top, label, key = 0.2, "error / torso size", "pck@0.2"
    elif protocol == "pck_box":
        result = metrics.pck_box(pred.points, pred.gt, pred.visible, pred.box_size, 0.05, skeleton)
        norm, vis, top, label, key = (
            pred.box_size,
            pred.visible,
            0.1,
            "error / box side",
            "pck@0.05",
        )
    else:
        raise ValueError(f"unknown protocol {protocol!r}; known: {sorted(set(PROTOCOLS.values()))}")
    xs, ys = _pck_curve(pred, norm, vis, skeleton, top)
    per_joint = {
        name: float(v) for name, v in zip(skeleton.landmarks, result.per_joint, strict=True)
    }
    values = {key: result.total, "samples": len(pred.points)}
    return Score(protocol, key, values, per_joint, xs, ys, label)
