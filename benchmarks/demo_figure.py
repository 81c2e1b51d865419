"""A pose model on the drawn demo clip (what the README's first command shows): how often each
joint lands within a tenth of the figure's height, and how often the tracker follows it.

    python -m benchmarks.demo_figure runs/pose_v3_128/model.tflite
    python -m benchmarks.demo_figure edge/models/pose.tflite --threads 2
    python -m benchmarks.demo_figure edge/models/pose.tflite --picture demo_pose.png

The clip (``edge.sources.demo``) is a drawn figure walking across the frame with one arm
waving overhead; its joints are known exactly (:func:`edge.sources.demo.demo_joints`, MPII-16
order). The model runs as ``edge.live`` runs it: the tracker that crops each frame from the
last landmarks (probing every 4th frame while lost) and the One-Euro smoother; the raw
landmarks are scored. The first 10 frames (acquisition) are not counted. Reported: PCK over
the model's own joints where it is MPII-16 (the bundled model's test bar: 0.9), and over the
12 limb joints MPII-16 and COCO-17 share for any pose model, so COCO-17 candidates compare.
``--picture`` saves a strip of frames spread over the clip: the model's landmarks (red to
green by score) over the drawing, each limb joint it missed ringed in white at the tolerance
around where it is drawn.

It is a fixed drawing, not a held-out set: a sanity check that a candidate still follows the
figure a newcomer sees first, never a measure of accuracy on people.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from benchmarks.held_out import LIMBS  # the 12 limb joints COCO-17 and MPII-16 share
from edge.cli import ArgumentParser, add_threads_argument, run_cli
from edge.errors import ModelError
from edge.skeletons import COCO17, MPII16

WARM_UP = 10  # frames of acquisition, not counted
TOLERANCE = 0.1  # of the figure's height (0.8 of the frame's)
PICTURE_FRAMES = 4  # frames in --picture's strip
PICTURE_SIZE = 360  # pixels, each frame's square around the figure
PICTURE_GAP = 4  # pixels of grey line between two squares


@dataclass
class DemoScore:
    skeleton: str
    frames: int  # frames scored
    limbs: float  # share of the 12 limb joints within the tolerance
    all_joints: float | None  # the same over all 16 joints (MPII-16 models only)
    tracked: float  # share of all frames the tracker followed the figure
    per_joint: dict[str, float]  # each limb joint's share
    # With ``pictures=True``: frames spread over the clip (BGR), the model's landmarks drawn
    # and each missed limb joint ringed at the tolerance
    pictures: list[np.ndarray] | None = None


def score(
    model_path: str | Path,
    *,
    threads: int = 1,
    size: tuple[int, int] = (640, 480),
    tracking: dict | None = None,
    pictures: bool = False,
):
    """The model at ``model_path`` on the whole demo clip, as ``edge.live`` runs it: its
    tracker (:func:`edge.tracking.tracker_for`, with ``tracking``'s options over its
    defaults) and smoothing. ``pictures``: also keep :data:`PICTURE_FRAMES` frames drawn."""
    from edge.draw import draw_landmarks
    from edge.model import LandmarkModel
    from edge.pipeline import LandmarkPipeline
    from edge.smoothing import OneEuroFilter
    from edge.sources.demo import DEMO_FRAMES, DemoSource, demo_joints
    from edge.timing import StageTimes
    from edge.tracking import tracker_for
    from edge.transform import box_from_points, warp_crop

    model = LandmarkModel(Path(model_path), num_threads=threads)
    meta = model.metadata
    if meta.skeleton not in ("mpii16", "coco17"):
        raise ModelError(f"{model_path} is a {meta.skeleton} model, not a body pose model")
    skeleton = COCO17 if meta.skeleton == "coco17" else MPII16
    ours = [skeleton.landmarks.index(n) for n in LIMBS]
    truth_of = [MPII16.landmarks.index(n) for n in LIMBS]
    tracker = tracker_for(meta, **(tracking or {}))  # edge.live's
    pipeline = LandmarkPipeline(model, tracker=tracker, smoother=OneEuroFilter(min_score=0.3))
    times = StageTimes()
    height = 0.8 * size[1]
    limb_hits, all_hits, tracked = [], [], []
    # Frames for the picture: spread evenly over the scored part of the clip.
    shown = set(np.linspace(WARM_UP, DEMO_FRAMES - 1, PICTURE_FRAMES + 2)[1:-1].astype(int))
    drawn = []
    for frame in DemoSource(size=size):
        result = pipeline.process(frame, times)
        truth = demo_joints(frame.index, size)
        tracked.append(result.tracking)
        points, scores = result.raw_points, result.scores
        if points is None:
            # No landmarks this frame (the tracker lost the figure and its finder found no
            # one): NaN points, so every joint is a miss and none is drawn, as a user sees
            # no skeleton.
            points = np.full((len(skeleton.landmarks), 2), np.nan)
            scores = np.zeros(len(skeleton.landmarks))
        limb_error = np.linalg.norm(points[ours] - truth[truth_of], axis=1)
        limb_hits.append(limb_error < TOLERANCE * height)
        if pictures and frame.index in shown:
            image = frame.image.copy()
            draw_landmarks(image, points, scores, skeleton.edges, radius=5)
            for t, hit in zip(truth[truth_of], limb_hits[-1], strict=True):
                if not hit:
                    centre = (int(round(t[0])), int(round(t[1])))
                    cv2.circle(image, centre, int(TOLERANCE * height), (255, 255, 255), 2)
            # The figure, not the empty wall: a square around its drawn joints.
            around = box_from_points(truth, margin=1.3)
            drawn.append(warp_crop(image, around, (PICTURE_SIZE, PICTURE_SIZE), (128,) * 3)[0])
        if skeleton is MPII16:
            all_hits.append(np.linalg.norm(points - truth, axis=1) < TOLERANCE * height)
    limbs = np.array(limb_hits[WARM_UP:])
    return DemoScore(
        skeleton=meta.skeleton,
        frames=len(limbs),
        limbs=float(limbs.mean()),
        all_joints=float(np.mean(all_hits[WARM_UP:])) if all_hits else None,
        tracked=float(np.mean(tracked)),
        per_joint={n: float(v) for n, v in zip(LIMBS, limbs.mean(axis=0), strict=True)},
        pictures=drawn if pictures else None,
    )


def picture_strip(frames: list[np.ndarray]) -> np.ndarray:
    """The frames side by side, a grey line between them."""
    line = np.full((frames[0].shape[0], PICTURE_GAP, 3), 64, np.uint8)
    parts = [part for frame in frames for part in (frame, line)][:-1]
    return np.hstack(parts)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m benchmarks.demo_figure", description=__doc__)
    p.add_argument("model", nargs="+", help="pose .tflite files (MPII-16 or COCO-17)")
    add_threads_argument(p, default=1)
    p.add_argument(
        "--picture",
        type=Path,
        metavar="FILE.png",
        help=f"save {PICTURE_FRAMES} frames spread over the clip with the model's landmarks "
        "and its missed limb joints ringed (one model only)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    if args.picture is not None and len(args.model) != 1:
        raise ValueError("--picture draws one model: give one .tflite")
    picture = args.picture is not None
    scores = [(path, score(path, threads=args.threads, pictures=picture)) for path in args.model]
    if picture:
        args.picture.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(args.picture), picture_strip(scores[0][1].pictures)):
            raise OSError(f"could not write {args.picture}")
    print("| model | skeleton | frames | limbs PCK@0.1 height | all joints | tracked |")
    print("|---|---|---:|---:|---:|---:|")
    for path, s in scores:
        every = "-" if s.all_joints is None else f"{s.all_joints:.3f}"
        print(f"| {path} | {s.skeleton} | {s.frames} | {s.limbs:.3f} | {every} | {s.tracked:.3f} |")
        weakest = sorted(s.per_joint.items(), key=lambda kv: kv[1])[:3]
        print(f"|  weakest: {', '.join(f'{n} {v:.2f}' for n, v in weakest)} | | | | | |")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args), errors=(OSError, ValueError))


if __name__ == "__main__":
    raise SystemExit(main())
