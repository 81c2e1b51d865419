"""Crop jitter (docs/validation.md, section 5): what the device's tracker does to the crop
between frames, measured on the data's own clips and applied to the evaluated crops.

On a device the tracker crops frame ``t`` with the box of frame ``t-1``'s landmarks, so the
subject is a little off-centre and off-scale in every crop. :func:`measure_tracker_steps`
measures those box changes on consecutive labelled frames of the label tool's clips;
:class:`CropJitter` moves and scales each evaluated crop by a draw from them (or from the
fallback constants when there is no clip to measure on).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.transform import CropBox, apply_affine, box_from_points, crop_matrix, invert_affine

from .data.base import LandmarkDataset
from .validation import Shapes, SourceIndex, collect_shapes

# Consecutive labelled frames of one clip further apart than this are not a tracker step:
# the label tool's --max-per-source spreads a long clip's frames over its whole length.
MAX_FRAME_GAP = 8
# Crop jitter when the data has no clip to measure it on: normal draws, per axis, for the
# centre shift (fraction of the box side) and for the log scale. Measured on the label tool's
# pose clips (data/pose_v2: 4009 frame pairs 2 frames apart), the centre moved a median 1.2 %
# of the box side (90th percentile 7.3 %) and the scale a median 1.0 % (90th: 7.0 %); 0.03 is
# a normal that reaches about their 80th percentiles, without the rare large jumps.
FALLBACK_SHIFT_SD = 0.03
FALLBACK_LOG_SCALE_SD = 0.03
# A label-tool record's file stem: <frame> (faces) or <frame>_<person> (bodies).
_FRAME_STEM = re.compile(r"^(\d+)(?:_(\d+))?$")


def label_frame_boxes(root: Path) -> dict[tuple[str, str], CropBox]:
    """``(source key, file stem) -> frame_box`` from the label tool's record lists under
    ``root`` (``annot/*.json`` for bodies, ``*.index.json`` for faces): the stored context
    crop's square in the original frame, which maps a record's points back to frame pixels.
    Files that are not such lists are passed over."""
    found: dict[tuple[str, str], CropBox] = {}
    for path in [*sorted(root.glob("annot/*.json")), *sorted(root.glob("*.index.json"))]:
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        for record in records if isinstance(records, list) else ():
            try:
                image, box = Path(str(record["image"])), record["frame_box"]
                found[(image.parent.name, image.stem)] = CropBox(
                    (float(box["center"][0]), float(box["center"][1])),
                    float(box["size"]),
                    float(box.get("rotation", 0.0)),
                )
            except (KeyError, TypeError, ValueError, IndexError):
                continue
    return found


@dataclass
class CropJitter:
    """Moves and scales crop boxes by draws from measured tracker steps.

    ``offsets`` holds one row per measured pair of consecutive labelled frames of a clip:
    ``[dx, dy, log_scale]`` of the box the tracker would crop (the previous frame's landmark
    box) against the current frame's landmark box, the shift as a fraction of the current
    box side. Sample ``index`` gets row ``rng.integers(M)`` of ``default_rng([seed, index])``,
    so a record's crop depends on the seed and its index only: the same in every run, with
    any batch size or thread count. With ``offsets`` None (no clip to measure on) the draws
    are normal with :data:`FALLBACK_SHIFT_SD` and :data:`FALLBACK_LOG_SCALE_SD`.
    """

    offsets: np.ndarray | None
    seed: int = 0
    measured_from: str = ""
    clips: int = 0
    gaps: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def draw(self, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(index)])
        if self.offsets is None:
            sd = (FALLBACK_SHIFT_SD, FALLBACK_SHIFT_SD, FALLBACK_LOG_SCALE_SD)
            return rng.normal(0.0, sd)
        return self.offsets[rng.integers(len(self.offsets))]

    def apply(self, box: CropBox, index: int) -> CropBox:
        dx, dy, log_scale = self.draw(index)
        centre = (box.center[0] + dx * box.size, box.center[1] + dy * box.size)
        return CropBox(centre, box.size * math.exp(log_scale), box.rotation)

    def summary(self) -> dict:
        out: dict = {"mode": "jitter", "seed": self.seed, "measured": self.offsets is not None}
        if self.offsets is None:
            out.update(
                fallback_shift_sd=FALLBACK_SHIFT_SD,
                fallback_log_scale_sd=FALLBACK_LOG_SCALE_SD,
                reason=self.measured_from,
            )
            return out
        out.update(
            measured_from=self.measured_from,
            pairs=len(self.offsets),
            clips=self.clips,
            median_frame_gap=float(np.median(self.gaps)) if len(self.gaps) else None,
            **jitter_magnitudes(self.offsets),
        )
        return out

    def describe(self) -> str:
        if self.offsets is None:
            return (
                f"crop: jitter (seed {self.seed}) from the fallback constants, no clip to "
                f"measure on ({self.measured_from}): centre shift N(0, "
                f"{FALLBACK_SHIFT_SD:g}) per axis of the box side, log scale N(0, "
                f"{FALLBACK_LOG_SCALE_SD:g})"
            )
        m = jitter_magnitudes(self.offsets)
        return (
            f"crop: jitter (seed {self.seed}), drawn from {len(self.offsets)} frame pairs "
            f"of {self.clips} clip{'s' if self.clips != 1 else ''} (median gap "
            f"{np.median(self.gaps):g} frames) in "
            f"{self.measured_from}: centre shift median {100 * m['shift_median']:.1f} %, "
            f"p90 {100 * m['shift_p90']:.1f} % of the box side; |log scale| median "
            f"{m['log_scale_median']:.3f}, p90 {m['log_scale_p90']:.3f}"
        )


def jitter_magnitudes(offsets: np.ndarray) -> dict[str, float]:
    """Median and 90th percentile of the centre shift (fraction of the box side) and of the
    absolute log scale change of ``[dx, dy, log_scale]`` rows."""
    o = np.asarray(offsets, np.float64).reshape(-1, 3)
    shift, scale = np.hypot(o[:, 0], o[:, 1]), np.abs(o[:, 2])
    return {
        "shift_median": float(np.median(shift)),
        "shift_p90": float(np.percentile(shift, 90)),
        "log_scale_median": float(np.median(scale)),
        "log_scale_p90": float(np.percentile(scale, 90)),
    }


def frame_of(sample_id: str) -> tuple[str, int, int] | None:
    """(clip folder, frame, person) of a label-tool record id (``<key>/<frame>[_<person>]``,
    optionally with a reader's ``.jpg`` and ``#<n>``), or None."""
    path = Path(sample_id.partition("#")[0])
    found = _FRAME_STEM.match(path.stem)
    if found is None or len(path.parts) < 2:
        return None
    return path.parent.name, int(found.group(1)), int(found.group(2) or 0)


def measure_tracker_steps(
    shapes: Shapes,
    index: SourceIndex,
    margin: float,
    frame_boxes: dict[tuple[str, str], CropBox] | None = None,
    max_gap: int = MAX_FRAME_GAP,
) -> tuple[np.ndarray, int, np.ndarray]:
    """The tracker's crop against the exact one on consecutive labelled frames of each clip.

    For records of one clip (a video source of ``index``) and one person, in frame order, the
    landmark box of frame ``t-1`` (edge.transform.box_from_points of the visible points with
    the model's ``margin``: what edge.tracking crops frame ``t`` with) is compared with the
    landmark box of frame ``t``: ``[(c_prev - c) / side, log(side_prev / side)]``. Points are
    mapped to frame pixels through the record's ``frame_box`` when the label tool stored one
    (its records are context crops of each frame, so their own pixels do not line up from
    frame to frame). Returns the (M, 3) offsets, the number of clips and each pair's gap.
    """
    frame_boxes = frame_boxes or {}
    tracks: dict[tuple[str, int], list[tuple[int, CropBox]]] = {}
    for i, sample_id in enumerate(shapes.ids):
        key = index.key_of(sample_id)
        where = frame_of(sample_id)
        if key is None or where is None or not index.is_clip(key):
            continue
        _, frame, person = where
        points = shapes.points[i]
        stored = frame_boxes.get((key, Path(sample_id.partition("#")[0]).stem))
        if stored is not None:
            side = int(shapes.widths[i])
            points = apply_affine(invert_affine(crop_matrix(stored, (side, side))), points)
        box = box_from_points(points, shapes.visible[i], margin=margin)
        if box is not None:
            tracks.setdefault((key, person), []).append((frame, box))
    offsets, gaps, clips = [], [], set()
    for (key, _), track in tracks.items():
        track.sort(key=lambda item: item[0])
        for (f0, prev), (f1, box) in zip(track, track[1:], strict=False):
            if not 0 < f1 - f0 <= max_gap:
                continue
            offsets.append(
                [
                    (prev.center[0] - box.center[0]) / box.size,
                    (prev.center[1] - box.center[1]) / box.size,
                    math.log(prev.size / box.size),
                ]
            )
            gaps.append(f1 - f0)
            clips.add(key)
    return np.asarray(offsets, np.float64).reshape(-1, 3), len(clips), np.asarray(gaps, float)


def crop_jitter(
    dataset: LandmarkDataset,
    index: SourceIndex | None,
    margin: float,
    seed: int,
    *,
    limit: int | None = None,
    threads: int = 4,
    shapes: Shapes | None = None,
) -> CropJitter:
    """Measure the tracker's steps on the evaluated set's clips (:func:`measure_tracker_steps`)
    and return the jitter that draws from them; the fallback constants when it has none."""
    if index is None:
        return CropJitter(
            None, seed, "no sources_<task>.json beside the data to tell clips from photos"
        )
    if shapes is None:
        n = len(dataset) if limit is None else min(limit, len(dataset))
        shapes = collect_shapes(dataset, range(n), threads)
    boxes = label_frame_boxes(index.path.parent)
    offsets, clips, gaps = measure_tracker_steps(shapes, index, margin, boxes)
    if not len(offsets):
        return CropJitter(
            None,
            seed,
            f"no two labelled frames of one clip within {MAX_FRAME_GAP} "
            f"frames in {index.path.parent}",
        )
    return CropJitter(offsets, seed, str(index.path.parent), clips, gaps)
