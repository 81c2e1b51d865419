"""One subject, tracked as ``edge.live`` tracks it: every frame of each held-out clip through
the model's own tracker, scored against the teacher.

    python -m benchmarks.tracked --task pose                      # valid side, bundled model
    python -m benchmarks.tracked --task face --side select --variant='--face-detector haar' \\
        --variant ''                                              # against the defaults

``training.evaluate --crop jitter`` (benchmarks.held_out) models the tracker's crop by draws
of how far boxes move between frames; it leaves out what happens when the track goes wrong:
a crop that shrinks onto part of the body, a lost track and the full frame, search box or
detector that picks it up again. Here the real chain runs: ``edge.live``'s own parser and
pipeline (its defaults, or the flags of ``--variant``), frame by frame over every clip of
``configs/splits/held_out_sources.yaml``'s ``--side`` for the task (``valid``: reported;
``select``: for choosing settings and models, never reported), read in place from
``../shared/media``. Every ``--every``-th frame is scored against the teacher run on that
frame (``training.label``'s: BlazePose mapped to the model's skeleton, its biggest person;
the face mesh's iBUG-68 through the same table as the labels):

* **pose**: PCK@0.2 of the torso on the 12 limb joints MPII-16 and COCO-17 share (the mean of
  their per-joint PCK, as benchmarks.held_out), over every scored frame: a frame where our
  chain gives no landmarks misses every joint, as it does for a user;
* **face**: NME (outer eye corners), all 68 points and the inner 51, over the frames where our
  chain gives a face, and the share of frames where it does;
* **followed**: the share of scored frames where the box of our confident landmarks (score >=
  0.1, the teacher's visibility >= 0.5) overlaps the teacher's at IoU >= 0.5;
* beside each score, a model that learnt nothing: the training side's **mean shape placed in
  the same crop** (the crop our tracker gave that frame).

``--variant FLAGS`` (repeated) runs the clips once per set of edge.live flags, for a table
that compares settings on the same clips and frames. Writes a markdown table (default
``benchmarks/results/tracked_<task>_<side>.md``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks import REPO, RESULTS_DIR, uptime
from benchmarks.held_out import limbs_mean
from benchmarks.multi_person import landmark_box
from edge import cpu_name
from edge.boxes import iou
from edge.cli import ArgumentParser, positive_int, run_cli
from edge.errors import EdgeError

MEDIA = REPO.parent / "shared" / "media"
SPLIT = REPO / "configs" / "splits" / "held_out_sources.yaml"
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif"}
# The clips of each task: the label tool's media for it (docs/training.md's commands).
TASK_MEDIA = {"pose": ("pose/*",), "face": ("face/*", "pose/webcam_*")}
# Where the mean shape is averaged: the training side of the same labels.
CLIP_LABELS = {"pose": REPO / "data" / "pose_v2_clips", "face": REPO / "data" / "face_v2_clips"}
MATCH_IOU, BOX_MIN_SCORE, TEACHER_MIN_VISIBILITY = 0.5, 0.1, 0.5


class BenchError(EdgeError):
    """No clips, no model, no mean-shape data."""


@dataclass
class ClipScore:
    name: str
    frames: int = 0  # run through our chain
    scored: int = 0  # with the teacher's subject in them
    followed: int = 0
    covered: int = 0  # scored frames where our chain gave landmarks
    points: list = field(default_factory=list)  # per scored frame, ours (NaN: none)
    truth: list = field(default_factory=list)
    visible: list = field(default_factory=list)
    crops: list = field(default_factory=list)  # [cx, cy, side, rotation]; NaN: none
    seconds: float = 0.0


def task_clips(task: str) -> list[Path]:
    """Every clip of the task's media, sorted."""
    return sorted(
        {
            path
            for pattern in TASK_MEDIA[task]
            for path in MEDIA.glob(pattern)
            if path.suffix.lower() in VIDEO_SUFFIXES
        }
    )


def clips_of(task: str, side: str) -> list[Path]:
    from training.splits import load_split

    split = load_split(SPLIT)
    return [p for p in task_clips(task) if split.side(p, task) == side]


class PoseTeacher:
    """BlazePose's biggest person in a frame, in the model's skeleton; each frame alone."""

    tracks = False  # run on the scored frames only

    def __init__(self, skeleton: str) -> None:
        from training.label.pose import BlazePoseTeacher

        self.teacher = BlazePoseTeacher(num_threads=1)
        self.skeleton = skeleton

    def reset(self) -> None:
        pass  # nothing is kept between frames

    def __call__(self, image: np.ndarray):
        from training.label import mappings

        best, best_height = None, 0.0
        for roi in self.teacher.detect_all(image):
            result = self.teacher.landmarks(image, roi)
            if result.presence < 0.5:
                continue
            points, confidence = mappings.to_skeleton(
                self.skeleton, result.points, result.visibility
            )
            visible = confidence >= TEACHER_MIN_VISIBILITY
            box = landmark_box(points, visible)
            if box is not None and box[3] - box[1] > best_height:
                best, best_height = (points, visible), box[3] - box[1]
        return best


class FaceTeacher:
    """The face mesh's face (tracked across frames, as the label tool runs it), iBUG-68."""

    tracks = True  # run on every frame: its track needs them all

    def __init__(self) -> None:
        from training.label.face import FaceMeshTeacher

        self.teacher = FaceMeshTeacher(num_threads=1)

    def reset(self) -> None:
        self.teacher.reset()

    def __call__(self, image: np.ndarray):
        from training.label.face import to_ibug68

        result = self.teacher.process(image)
        if result is None:
            return None
        points = to_ibug68(result.points, human_offsets=True)
        return points, np.ones(len(points), bool)


def live_chain(model_path: Path, live_args: list[str]):
    """The model and its per-frame chain, built by edge.live's own parser and functions from
    its flags (so its defaults are edge.live's)."""
    from edge import live
    from edge.metadata import read_metadata

    args = live.build_parser().parse_args(["--model", str(model_path), *live_args])
    return live.pipeline_from_args(args, model_path, read_metadata(model_path))


def run_clip(path: Path, model_path: Path, live_args: list[str], teacher, every: int, limit):
    from edge.sources import open_source
    from training.scoring import box_row

    pipeline = live_chain(model_path, live_args)
    teacher.reset()
    score = ClipScore(path.name)
    started = time.perf_counter()
    source = open_source(str(path))
    try:
        while limit is None or score.frames < limit:
            frame = source.read()
            if frame is None:
                break
            result = pipeline.process(frame)
            scored = score.frames % every == 0
            score.frames += 1
            truth = teacher(frame.image) if scored or teacher.tracks else None
            if not scored or truth is None:
                continue
            gt, visible = truth
            score.scored += 1
            score.truth.append(gt)
            score.visible.append(visible)
            k = len(gt)
            if result.points is None:
                score.points.append(np.full((k, 2), np.nan))
                score.crops.append(np.full(4, np.nan))
                continue
            points = np.asarray(result.points, np.float64)
            score.points.append(points)
            score.crops.append(np.asarray(box_row(result.box), np.float64))
            if np.isfinite(points).all(axis=1).sum() >= 3:
                score.covered += 1
            ok = (np.asarray(result.scores) >= BOX_MIN_SCORE) & np.isfinite(points).all(axis=1)
            ours, theirs = landmark_box(points, ok), landmark_box(gt, visible)
            if ours is not None and theirs is not None and iou(ours, theirs[None])[0] >= MATCH_IOU:
                score.followed += 1
    finally:
        source.close()
    score.seconds = time.perf_counter() - started
    return score


def predictions(scores: list[ClipScore], only_covered: bool = False):
    from training.scoring import Predictions

    points = np.array([p for s in scores for p in s.points])
    gt = np.array([p for s in scores for p in s.truth])
    visible = np.array([v for s in scores for v in s.visible])
    crops = np.array([c for s in scores for c in s.crops])
    if only_covered:
        keep = np.isfinite(crops).all(axis=1)
        points, gt, visible, crops = points[keep], gt[keep], visible[keep], crops[keep]
    n, k = gt.shape[:2]
    return Predictions(
        points=points,
        scores=np.ones((n, k)),
        gt=gt,
        visible=visible,
        head_size=np.full(n, np.nan),
        box_size=np.where(np.isfinite(crops[:, 2]), crops[:, 2], 1.0),
        # a frame without our crop gets a unit box, so the mean shape can be placed (and then
        # blanked by place_mean)
        boxes=np.where(np.isfinite(crops), crops, [0.0, 0.0, 1.0, 0.0]),
    )


def place_mean(mean, pred):
    """The mean shape in our crops; NaN (a miss) where our chain had no crop."""
    placed = mean.place(pred)
    none = ~np.isfinite(pred.points).any(axis=(1, 2))  # every landmark missing: no crop
    placed.points[none] = np.nan
    return placed


def pose_limbs(pred, skeleton) -> float:
    from training.scoring import score

    per_joint = score(pred, "pck_torso", skeleton).per_joint
    # a joint the teacher never saw in these frames has no PCK (NaN): left out
    return limbs_mean({name: v for name, v in per_joint.items() if not np.isnan(v)})


def face_nme(pred, skeleton) -> tuple[float, float]:
    from training.scoring import score

    values = score(pred, "nme", skeleton).values
    return values["nme"], values.get("nme_inner", float("nan"))


def mean_data(task: str, skeleton: str, path: Path | None = None) -> tuple[str, Path, dict]:
    """The dataset reader, path and options of the training side the mean shape comes from
    (benchmarks.held_out reads the same labels the same way); ``path``: another of the label
    tool's files in the model's skeleton (an MPII JSON, or a COCO JSON in ``annotations/``
    with the crops in ``images/`` beside that folder)."""
    root = CLIP_LABELS[task]
    if task == "face":
        return "300w", path or root / "train", {"split": "all"}
    if skeleton == "coco17":
        path = path or root / "annotations" / "person_keypoints_train.json"
        return "coco", path, {"split": "train", "images": str(path.parent.parent / "images")}
    return "mpii", path or root / "annot" / "train.json", {"split": "train"}


def load_mean(task: str, skeleton: str, path: Path | None = None):
    from training.data.base import open_dataset
    from training.validation import BASELINE_LIMIT, collect_shapes, evenly_spread, mean_shape_of

    kind, path, options = mean_data(task, skeleton, path)
    if not path.exists():
        raise BenchError(
            f"{path} not found: the mean shape needs the teacher's labels (python -m training.label)"
        )
    data = open_dataset(kind, str(path), **options)
    shapes = collect_shapes(data, evenly_spread(len(data), BASELINE_LIMIT), threads=1)
    return mean_shape_of(shapes, _shown(path)), path


def _cells(task: str, scores: list[ClipScore], mean, skeleton) -> list[str]:
    n = sum(s.scored for s in scores)
    if not n:
        return ["0", "-", "-", "-"]
    followed = f"{100 * sum(s.followed for s in scores) / n:.1f}"
    if task == "pose":
        pred = predictions(scores)
        ours, base = pose_limbs(pred, skeleton), pose_limbs(place_mean(mean, pred), skeleton)
        return [str(n), followed, f"{ours:.1f}", f"{base:.1f}"]
    covered = f"{100 * sum(s.covered for s in scores) / n:.1f}"
    pred = predictions(scores, only_covered=True)
    if not len(pred.points):
        return [str(n), followed, covered, "-", "-"]
    (a, a_in), (b, b_in) = face_nme(pred, skeleton), face_nme(mean.place(pred), skeleton)
    return [str(n), followed, covered, f"{a:.2f} / {a_in:.2f}", f"{b:.2f} / {b_in:.2f}"]


def _headline(task: str, scores: list[ClipScore], mean, skeleton) -> str:
    """One clip's cell in the per-clip table: the score (followed %, or face given %)."""
    cells = _cells(task, scores, mean, skeleton)
    if task == "pose":
        return f"{cells[2]} ({cells[1]} %)"
    return f"{cells[3].split(' / ')[0]} ({cells[2]} %)" if len(cells) > 4 else "-"


def report(args, model_path: Path, runs: list[tuple[str, list[ClipScore]]], mean, skeleton):
    """``runs``: (edge.live flags, per-clip scores) of each variant, on the same clips."""
    side = {
        "valid": "`valid` side (reported; nothing was chosen on it)",
        "select": "`select` side (chooses settings and models: never report these numbers)",
    }[args.side]
    if args.task == "pose":
        head = ["scored frames", "followed %", "PCK@0.2 limbs", "mean shape, same crop"]
    else:
        head = [
            "scored frames",
            "followed %",
            "face given %",
            "NME % all / inner",
            "mean face, same crop",
        ]
    variants = " ".join(f"--variant={shlex.quote(flags)}" for flags, _ in runs)
    lines = [
        f"# One {args.task} subject tracked as edge.live tracks it: {side}",
        "",
        f"`python -m benchmarks.tracked --task {args.task} --side {args.side} --model "
        f"{_shown(model_path)} --every {args.every} "
        + (f"--clips {args.clips} " if args.clips else "")
        + f"{variants}`",
        "",
        (
            f"Clips: the {len(runs[0][1])} named by --clips, "
            if args.clips
            else "Clips: every clip of configs/splits/held_out_sources.yaml's "
            f"{args.side} side for {args.task}, "
        )
        + "in ../shared/media (read in place), run whole through edge.live's own "
        f"chain with the flags of each row; frames 0, {args.every}, {2 * args.every}, ... "
        "scored against the teacher run on them. Mean shape: the training side's, "
        f"{_shown(args.mean_data)}, placed in our crop of the frame. {cpu_name()}; "
        f"{uptime()}.",
        "",
        "| edge.live flags | " + " | ".join(head) + " |",
        "|---|" + "---|" * len(head),
    ]
    for flags, scores in runs:
        cells = _cells(args.task, scores, mean, skeleton)
        lines.append(f"| {flags or '(defaults)'} | " + " | ".join(cells) + " |")
    what = "PCK@0.2 limbs (followed %)" if args.task == "pose" else "NME % all (face given %)"
    lines += [
        "",
        f"Per clip, {what}:",
        "",
        "| clip | " + " | ".join(flags or "(defaults)" for flags, _ in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    for i, clip in enumerate(runs[0][1]):
        row = [_headline(args.task, [scores[i]], mean, skeleton) for _, scores in runs]
        lines.append(f"| {clip.name} ({clip.scored} frames) | " + " | ".join(row) + " |")
    lines.append("")
    if args.task == "pose":
        lines.append(
            "PCK@0.2 limbs: of the torso (right hip to left shoulder), the mean of the 12 limb "
            "joints' PCK, over every scored frame (no landmarks from us: every joint missed). "
            "Followed: the box of our landmarks scoring >= 0.1 meets the teacher's at IoU >= 0.5."
        )
    else:
        lines.append(
            "NME over the frames where our chain gave a face (face given %); the mean face in "
            "the same crops, the same frames. Followed: our box meets the teacher's at IoU >= 0.5."
        )
    return "\n".join(lines) + "\n"


def _shown(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m benchmarks.tracked",
        description="One subject tracked by edge.live's own chain over held-out clips, "
        "against the teacher, beside the mean shape in the same crop.",
    )
    p.add_argument("--task", choices=("pose", "face"), required=True)
    p.add_argument("--side", choices=("valid", "select"), default="valid")
    p.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    p.add_argument("--every", type=positive_int, default=3, help="score every Nth frame")
    p.add_argument("--max-frames", type=positive_int, default=None, help="per clip")
    p.add_argument("--clips", default=None, help="comma-separated clip names instead")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument(
        "--variant",
        action="append",
        default=None,
        metavar="FLAGS",
        help="edge.live flags of one row, e.g. --variant='--crop-min-score 0.3' (with =); repeat to "
        "compare settings on the same clips and frames (default: one row, edge.live's defaults)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from edge.cli import BUNDLED
    from edge.metadata import read_metadata
    from edge.skeletons import get_skeleton

    model_path = args.model or BUNDLED[args.task]
    if not Path(model_path).is_file():
        raise BenchError(f"--model {model_path}: no such file")
    meta = read_metadata(model_path)
    skeleton = get_skeleton(meta.skeleton)
    if args.clips:
        clips = []
        found = task_clips(args.task)
        for name in args.clips.split(","):
            hits = [p for p in found if p.name == name]
            if not hits:
                raise BenchError(f"clip {name} not found under {MEDIA}")
            clips.append(hits[0])
    else:
        clips = clips_of(args.task, args.side)
    if not clips:
        raise BenchError(f"no {args.task} clips on the {args.side} side under {MEDIA}")
    teacher = PoseTeacher(meta.skeleton) if args.task == "pose" else FaceTeacher()
    mean, args.mean_data = load_mean(args.task, meta.skeleton)
    runs = []
    for flags in args.variant or [""]:
        scores = []
        live_args = shlex.split(flags)
        for clip in clips:
            s = run_clip(clip, Path(model_path), live_args, teacher, args.every, args.max_frames)
            scores.append(s)
            cells = " | ".join(_cells(args.task, [s], mean, skeleton))
            print(
                f"[{flags}] {clip.name}: {cells} ({s.seconds:.0f} s)", file=sys.stderr, flush=True
            )
        runs.append((flags, scores))
    text = report(args, Path(model_path), runs, mean, skeleton)
    out = args.out or RESULTS_DIR / f"tracked_{args.task}_{args.side}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args), errors=(OSError,))


if __name__ == "__main__":
    sys.exit(main())
