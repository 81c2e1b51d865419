"""Benchmark metrics in pure NumPy: PCKh (MPII), PCK (LSP, generic), NME / AUC / FR / CED (faces).

All functions take predictions and ground truth as (N, K, 2) arrays of image pixels and a
(N, K) boolean mask of landmarks with a usable ground truth; masked landmarks count neither
as hits nor as misses. A landmark is correct when its error is ``<=`` the threshold.

Protocols:

* **PCKh@0.5 (MPII)**: threshold ``0.5 * head_size`` with ``head_size = 0.6 *`` the head-box
  diagonal. The total pools all visible joints except those in
  ``skeleton.excluded_from_mean`` (pelvis and thorax), i.e. correct / visible over the
  included joints, which equals the official joint-count-weighted mean.
* **PCK@0.2 (LSP)**: threshold ``0.2 *`` torso size, the distance between the right hip
  and the left shoulder, the joint pair of the LSP evaluation code (joints 3 and 10,
  1-based); ``torso_pair`` changes it.
* **PCK@alpha of the box**: threshold ``alpha *`` the crop box side (for synthetic data;
  alpha 0.05 of a 1.25x box around the body is close to PCKh@0.5).
* **NME**: per image, the mean error over its landmarks divided by the inter-ocular
  distance (outer eye corners, ``skeleton.reference_pair``); the dataset NME is the mean
  over images. **AUC@0.08** is the area under the CED curve up to 0.08, divided by 0.08,
  computed exactly as ``mean(max(0, 0.08 - nme)) / 0.08``; the **failure rate** is the
  fraction of images with NME > 0.08.
* **Box NME (AFLW2000-3D, AFLW)**: per image, the mean error divided by ``sqrt(w * h)`` of
  the box around that image's ground-truth landmarks (3DDFA's benchmark code), in
  :func:`nme_box`. With head yaw known, :func:`nme_by_yaw` reports it per ``|yaw|`` bin,
  [0, 30], (30, 60] and above 60 degrees (the "60-90" bin; AFLW2000-3D has a few faces past
  90), plus the mean of the three bins, the "balanced" figure papers quote.
* **Visible-only NME (AFLW-PIFA / LFPA)**: the same box normaliser (the box of every
  annotated point), but only points visible in the image enter the mean error:
  ``nme_box(pred, gt, visible & ~occluded, norm_visible=visible)``.
* **Inner-point NME**: the same per-image NME, same normaliser, over the brows, nose, eyes
  and mouth only (:func:`inner_points`: iBUG-68 points 17-67, WFLW-98 points 33-97), i.e.
  without the jaw line. A crop around the face already places the jaw line well, so the
  all-points NME flatters a model whose eyes and mouth do not follow the face.

Mean-shape baseline: :func:`to_box_frame` maps points into their crop box (centre 0, side 1,
the box's rotation undone), :func:`mean_shape` averages each landmark there over the samples
where it is visible, and :func:`from_box_frame` places that shape in any box. Scored with the
same protocol in the same crop, it is what a model that learnt nothing but the box would get.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.skeletons import Skeleton


def _arrays(pred, gt, visible) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = np.asarray(pred, np.float64)
    g = np.asarray(gt, np.float64)
    if p.ndim == 2:
        p, g = p[None], g[None]
    if p.shape != g.shape or p.shape[-1] != 2:
        raise ValueError(f"pred {p.shape} and gt {g.shape} must both be (N, K, 2)")
    v = (
        np.ones(p.shape[:2], bool)
        if visible is None
        else np.asarray(visible, bool).reshape(p.shape[:2])
    )
    return p, g, v


def point_errors(pred, gt) -> np.ndarray:
    """Euclidean error per landmark, (N, K)."""
    p, g, _ = _arrays(pred, gt, None)
    return np.linalg.norm(p - g, axis=-1)


def pck_hits(pred, gt, visible, threshold) -> np.ndarray:
    """(N, K) bool: visible landmarks within ``threshold`` (a scalar or one per image)."""
    p, g, v = _arrays(pred, gt, visible)
    t = np.broadcast_to(np.asarray(threshold, np.float64).reshape(-1, 1), v.shape)
    return v & (np.linalg.norm(p - g, axis=-1) <= t)


@dataclass
class PCKResult:
    """Per-joint and total PCK in percent; NaN per joint where no joint was visible."""

    per_joint: np.ndarray  # (K,)
    total: float
    counts: np.ndarray  # (K,) visible joints scored
    names: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, float]:
        out = {"total": self.total}
        for name, value in zip(self.names, self.per_joint, strict=False):
            out[name] = float(value)
        return out


def _summarise(hits: np.ndarray, visible: np.ndarray, skeleton: Skeleton | None) -> PCKResult:
    counts = visible.sum(axis=0)
    correct = hits.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_joint = 100.0 * correct / counts
    include = np.ones(len(counts), bool)
    if skeleton is not None:
        include[list(skeleton.excluded_from_mean)] = False
    n = counts[include].sum()
    total = float(100.0 * correct[include].sum() / n) if n else float("nan")
    names = skeleton.landmarks if skeleton is not None else ()
    return PCKResult(per_joint, total, counts, names)


def pckh(
    pred, gt, visible, head_size, skeleton: Skeleton | None = None, threshold: float = 0.5
) -> PCKResult:
    """MPII PCKh@``threshold``: a joint is correct if its error <= threshold * head_size."""
    _, _, v = _arrays(pred, gt, visible)
    hs = np.asarray(head_size, np.float64).reshape(-1)
    if not np.all(np.isfinite(hs) & (hs > 0)):
        raise ValueError("every sample needs a positive head_size for PCKh")
    return _summarise(pck_hits(pred, gt, v, threshold * hs), v, skeleton)


def torso_size(
    gt, skeleton: Skeleton, torso_pair: tuple[str, str] = ("right_hip", "left_shoulder")
) -> np.ndarray:
    """Distance between the two named joints of each ground truth, (N,)."""
    g = np.asarray(gt, np.float64)
    g = g[None] if g.ndim == 2 else g
    a, b = (skeleton.landmarks.index(name) for name in torso_pair)
    return np.linalg.norm(g[:, a] - g[:, b], axis=-1)


def pck_torso(
    pred,
    gt,
    visible,
    skeleton: Skeleton,
    alpha: float = 0.2,
    torso_pair: tuple[str, str] = ("right_hip", "left_shoulder"),
) -> PCKResult:
    """LSP PCK@``alpha`` of torso size. Images with a zero torso score nothing."""
    _, _, v = _arrays(pred, gt, visible)
    torso = torso_size(gt, skeleton, torso_pair)
    v = v & (torso > 0)[:, None]
    return _summarise(pck_hits(pred, gt, v, alpha * torso), v, skeleton)


def pck_box(
    pred, gt, visible, box_size, alpha: float = 0.05, skeleton: Skeleton | None = None
) -> PCKResult:
    """PCK@``alpha`` of the crop box side (one size per image)."""
    _, _, v = _arrays(pred, gt, visible)
    size = np.asarray(box_size, np.float64).reshape(-1)
    return _summarise(pck_hits(pred, gt, v, alpha * size), v, skeleton)


def nme(
    pred,
    gt,
    skeleton: Skeleton | None = None,
    visible=None,
    reference_pair: tuple[int, int] | None = None,
) -> np.ndarray:
    """Per-image normalised mean error, (N,), by the distance between ``reference_pair`` of gt.

    The pair defaults to ``skeleton.reference_pair`` (outer eye corners). Only visible
    landmarks enter the mean; an image with none gets NaN.
    """
    p, g, v = _arrays(pred, gt, visible)
    pair = reference_pair or (skeleton.reference_pair if skeleton is not None else None)
    if pair is None:
        raise ValueError("nme needs a skeleton with a reference_pair, or reference_pair=")
    norm = np.linalg.norm(g[:, pair[0]] - g[:, pair[1]], axis=-1)
    if np.any(norm <= 0):
        raise ValueError("reference landmarks coincide in some ground truth; cannot normalise")
    err = np.where(v, np.linalg.norm(p - g, axis=-1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return err.sum(axis=1) / v.sum(axis=1) / norm


def box_size(gt, visible=None) -> np.ndarray:
    """``sqrt(w * h)`` of the axis-aligned box around each image's (visible) points, (N,);
    NaN for an image with no visible point."""
    _, g, v = _arrays(gt, gt, visible)
    lo = np.where(v[..., None], g, np.inf).min(axis=1)
    hi = np.where(v[..., None], g, -np.inf).max(axis=1)
    with np.errstate(invalid="ignore"):
        wh = np.where(v.any(axis=1)[:, None], hi - lo, np.nan)
        return np.sqrt(wh[:, 0] * wh[:, 1])


def nme_box(pred, gt, visible=None, norm_visible=None) -> np.ndarray:
    """Per-image mean error over ``visible`` points divided by :func:`box_size` of the
    ``norm_visible`` points (default: the same points), (N,). An image with no scored point,
    or whose box has no area (its points on one line), gets NaN and is left out of means and
    counts, as images without a usable ground truth are."""
    p, g, v = _arrays(pred, gt, visible)
    nv = v if norm_visible is None else _arrays(gt, gt, norm_visible)[2]
    norm = box_size(g, nv)
    norm = np.where(norm > 0, norm, np.nan)
    err = np.where(v, np.linalg.norm(p - g, axis=-1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return err.sum(axis=1) / v.sum(axis=1) / norm


# The points that are not the face's outline (jaw line / contour), per skeleton name.
INNER_POINTS: dict[str, tuple[int, ...]] = {
    "ibug68": tuple(range(17, 68)),  # 0-16 jaw; 17-26 brows, 27-35 nose, 36-47 eyes, 48-67 mouth
    "wflw98": tuple(range(33, 98)),  # 0-32 contour; then brows, nose, eyes, mouth, pupils
}


def inner_points(skeleton: Skeleton) -> np.ndarray | None:
    """(K,) bool mask of the inner points of a face skeleton (:data:`INNER_POINTS`), or None
    for a skeleton without a defined outline (bodies, AFLW-21)."""
    chosen = INNER_POINTS.get(skeleton.name)
    if chosen is None:
        return None
    mask = np.zeros(skeleton.num_landmarks, bool)
    mask[list(chosen)] = True
    return mask


def _box_parts(boxes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    b = np.asarray(boxes, np.float64).reshape(-1, np.shape(boxes)[-1])
    if b.shape[1] not in (3, 4):
        raise ValueError(f"boxes must be (N, 3) or (N, 4) [cx, cy, side, rotation], got {b.shape}")
    if np.any(b[:, 2] <= 0):
        raise ValueError("every box needs a positive side")
    angle = np.deg2rad(b[:, 3]) if b.shape[1] == 4 else np.zeros(len(b))
    # edge.transform.crop_matrix's rotation: crop = R (p - c) / side with R = [[c, s], [-s, c]].
    cos, sin = np.cos(angle), np.sin(angle)
    rot = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)  # (N, 2, 2)
    return b[:, :2], b[:, 2], rot


def to_box_frame(points, boxes) -> np.ndarray:
    """Points (N, K, 2) in image pixels -> the unit frame of their box: the box centre at 0,
    its side 1, its rotation undone; exactly edge.transform's crop with a 1-pixel output.
    ``boxes`` is (N, 3) [cx, cy, side] or (N, 4) with the rotation in degrees."""
    p = np.asarray(points, np.float64)
    centre, side, rot = _box_parts(boxes)
    return np.einsum("nij,nkj->nki", rot, p - centre[:, None]) / side[:, None, None]


def from_box_frame(shape, boxes) -> np.ndarray:
    """The inverse of :func:`to_box_frame`: a (K, 2) or (N, K, 2) shape in the unit box
    frame placed in each of the (N, ...) boxes, (N, K, 2) image pixels."""
    centre, side, rot = _box_parts(boxes)
    s = np.broadcast_to(np.asarray(shape, np.float64), (len(centre), *np.shape(shape)[-2:]))
    # R is orthonormal, so its inverse is its transpose.
    return np.einsum("nji,nkj->nki", rot, s) * side[:, None, None] + centre[:, None]


def mean_shape(points, visible, boxes) -> tuple[np.ndarray, np.ndarray]:
    """The mean shape in the unit box frame, (K, 2), and how many samples each landmark was
    averaged over, (K,). A landmark never visible sits at the box centre (0, 0): the
    baseline then guesses the middle of the crop, as a model that learnt nothing would."""
    unit = to_box_frame(points, boxes)
    v = np.asarray(visible, bool).reshape(unit.shape[:2])
    counts = v.sum(axis=0)
    total = np.where(v[..., None], unit, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        shape = np.where(counts[:, None] > 0, total / counts[:, None], 0.0)
    return shape, counts


# |yaw| bins of the AFLW2000-3D protocol, in degrees: (label, low exclusive, high inclusive).
YAW_BINS = (("0-30", -1.0, 30.0), ("30-60", 30.0, 60.0), ("60-90", 60.0, np.inf))


def yaw_bin(yaw) -> np.ndarray:
    """Index into :data:`YAW_BINS` of each ``|yaw|`` in degrees, (N,) int; -1 where unknown."""
    a = np.abs(np.asarray(yaw, np.float64).reshape(-1))
    out = np.full(a.shape, -1, int)
    for i, (_, low, high) in enumerate(YAW_BINS):
        out[(a > low) & (a <= high)] = i
    return out


def nme_by_yaw(errors, yaw) -> dict[str, float]:
    """Mean per-image error in each yaw bin (keys ``"0-30"``, ``"30-60"``, ``"60-90"``), the
    mean of the three (``"balanced"``, NaN if a bin is empty) and each bin's image count
    (``"count_0-30"``, ...). Images without an error or a yaw are left out."""
    e = np.asarray(errors, np.float64).reshape(-1)
    bins = yaw_bin(yaw)
    if len(bins) != len(e):
        raise ValueError(f"{len(e)} errors but {len(bins)} yaw values")
    out: dict[str, float] = {}
    means = []
    for i, (label, _, _) in enumerate(YAW_BINS):
        chosen = e[(bins == i) & np.isfinite(e)]
        means.append(float(chosen.mean()) if len(chosen) else float("nan"))
        out[label] = means[-1]
        out[f"count_{label}"] = int(len(chosen))
    out["balanced"] = float(np.mean(means))
    return out


def auc_fr(errors, threshold: float = 0.08) -> tuple[float, float]:
    """(AUC in [0, 1], failure rate in [0, 1]) of per-image errors at ``threshold``."""
    e = np.asarray(errors, np.float64).reshape(-1)
    e = e[np.isfinite(e)]
    if len(e) == 0:
        return float("nan"), float("nan")
    auc = float(np.mean(np.maximum(0.0, threshold - e)) / threshold)
    return auc, float(np.mean(e > threshold))


def ced(errors, threshold: float = 0.08, num: int = 81) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: ``num`` error levels in [0, threshold] and the
    fraction of images with an error at or below each."""
    e = np.sort(np.asarray(errors, np.float64).reshape(-1))
    e = e[np.isfinite(e)]
    xs = np.linspace(0.0, threshold, num)
    if len(e) == 0:
        return xs, np.full(num, np.nan)
    return xs, np.searchsorted(e, xs, side="right") / len(e)


# Accumulators for evaluation loops: feed batches, read the protocol's numbers at the end.


@dataclass
class PCKhMeter:
    skeleton: Skeleton
    threshold: float = 0.5
    _hits: list = field(default_factory=list, repr=False)
    _vis: list = field(default_factory=list, repr=False)

    def update(self, pred, gt, visible, head_size) -> None:
        _, _, v = _arrays(pred, gt, visible)
        hs = np.asarray(head_size, np.float64).reshape(-1)
        self._hits.append(pck_hits(pred, gt, v, self.threshold * hs))
        self._vis.append(v)

    def result(self) -> PCKResult:
        k = self.skeleton.num_landmarks
        hits = np.concatenate(self._hits) if self._hits else np.zeros((0, k), bool)
        vis = np.concatenate(self._vis) if self._vis else np.zeros((0, k), bool)
        return _summarise(hits, vis, self.skeleton)


@dataclass
class NMEMeter:
    skeleton: Skeleton
    threshold: float = 0.08
    _errors: list = field(default_factory=list, repr=False)

    def update(self, pred, gt, visible=None) -> None:
        self._errors.append(nme(pred, gt, self.skeleton, visible))

    @property
    def errors(self) -> np.ndarray:
        return np.concatenate(self._errors) if self._errors else np.zeros(0)

    def result(self) -> dict[str, float]:
        e = self.errors
        auc, fr = auc_fr(e, self.threshold)
        mean = float(np.nanmean(e)) if np.isfinite(e).any() else float("nan")
        return {"nme": mean, "auc": auc, "failure_rate": fr, "count": int(np.isfinite(e).sum())}


# --- Part segmentation (face parsing): confusion matrix, per-class F1, Helen overall F1, mIoU.


def confusion_matrix(pred, gt, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts: row = true class, column = predicted class, over all pixels."""
    p = np.asarray(pred, np.int64).reshape(-1)
    g = np.asarray(gt, np.int64).reshape(-1)
    if p.shape != g.shape:
        raise ValueError(
            f"pred and gt must have the same number of pixels, got {p.size} and {g.size}"
        )
    return np.bincount(g * num_classes + p, minlength=num_classes**2).reshape(num_classes, -1)


def class_f1(confusion: np.ndarray) -> np.ndarray:
    """F1 (Dice) per class, 2 TP / (2 TP + FP + FN); NaN for a class that is neither in the
    ground truth nor predicted."""
    c = np.asarray(confusion, np.float64)
    tp = np.diag(c)
    denominator = c.sum(axis=0) + c.sum(axis=1)  # (TP + FP) + (TP + FN)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / denominator, np.nan)


def class_iou(confusion: np.ndarray) -> np.ndarray:
    """IoU per class, TP / (TP + FP + FN); NaN for a class absent from both."""
    c = np.asarray(confusion, np.float64)
    tp = np.diag(c)
    union = c.sum(axis=0) + c.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def overall_f1(confusion: np.ndarray, classes) -> float:
    """Helen's "overall" F1: the chosen classes (brows, eyes, nose, mouth parts) pooled into
    one foreground; a pixel counts as a hit when it is in the pooled set in both maps (the
    protocol of Smith et al. and later face-parsing papers)."""
    c = np.asarray(confusion, np.float64)
    idx = np.asarray(list(classes))
    tp = c[np.ix_(idx, idx)].sum()
    fn = c[idx].sum() - tp
    fp = c[:, idx].sum() - tp
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn > 0 else float("nan")


def mean_iou(confusion: np.ndarray) -> float:
    """Mean IoU over the classes present in the ground truth or the prediction."""
    return float(np.nanmean(class_iou(confusion)))
