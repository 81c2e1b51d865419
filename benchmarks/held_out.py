"""Score pose and face models on the source-held-out validation (issue 24, docs/validation.md).

    python -m benchmarks.held_out                                  # the bundled models
    python -m benchmarks.held_out --pose runs/pose_v2/model.tflite --face runs/face_v2/model.tflite
    python -m benchmarks.held_out --side select --pose runs/pose_v2/model.tflite --tasks pose

Four sets, each labelled by the teacher with ``training.label`` and
``configs/splits/held_out_sources.yaml`` (whole sources held out): pose clips, pose photos,
face clips, face photos (``data/{pose,face}_v2_{clips,photos}``). By default their ``valid``
side, the reported one; ``--side select`` scores the side that chooses among candidates
instead (its table says so, and goes to ``held_out_select.md``: never a reported result). Every set is scored by
``training.evaluate --crop jitter`` (the crop moved as the tracker moves it), and every
number stands beside the mean shape placed in the same crop. Pose: PCK@0.2 of the torso on
all the model's landmarks, and on the 12 limb joints MPII-16 and COCO-17 share (the mean of
their per-joint PCK), so an MPII-16 model and a COCO-17 model compare on the same joints;
faces: NME (outer eye corners) on all 68 points and on the inner 51.

Writes a markdown table (default ``benchmarks/results/held_out.md``) and keeps each
evaluation's metrics.json and pictures under ``--work`` (they show the media: never commit).
``--plot FILE.png`` draws the same numbers, set by set and activity group by group, each
model's bar beside its mean shape's and the issue's bar as a line (no media in it: it can be
committed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import REPO, RESULTS_DIR, child_env, module_command
from edge.cli import ArgumentParser, add_threads_argument, resolve_model, run_cli
from edge.errors import EdgeError
from edge.metadata import read_metadata
from edge.skeletons import COCO17, MPII16

RESULTS = RESULTS_DIR / "held_out.md"
SELECT_RESULTS = RESULTS_DIR / "held_out_select.md"
LIMBS = tuple(name for name in COCO17.landmarks if name in MPII16.landmarks)  # the 12 limb joints
# Pass bars of issue 24 on this validation (against the teacher).
POSE_BAR, POSE_GROUP_BAR, FACE_RATIO_BAR = 75.0, 60.0, 0.5
_SIDE_WORDS = {
    "valid": "its `valid` side; nothing was chosen on it",
    "select": "its `select` side, which chooses among candidates: never report these numbers",
}


def held_out_sets(pose_skeleton: str, side: str = "valid") -> list[dict]:
    """The four held-out sets of one side (valid: reported; select: chooses), read in the
    format of the model that scores them."""
    sets = []
    for kind in ("clips", "photos"):
        root = REPO / "data" / f"pose_v2_{kind}"
        if pose_skeleton == "coco17":
            labels = root / "annotations" / f"person_keypoints_{side}.json"
            spec = ["--dataset", "coco", "--data", str(labels)]
            spec += ["--option", f"images={root / 'images'}"]
        else:
            labels = root / "annot" / f"{side}.json"
            spec = ["--dataset", "mpii", "--data", str(labels)]
        sets.append(
            {
                "task": "pose",
                "name": f"pose {kind}",
                "kind": kind,
                "root": root,
                "labels": labels,  # the file it reads
                "args": spec,
                "protocols": ["pck_torso"],
            }
        )
    for kind in ("clips", "photos"):
        root = REPO / "data" / f"face_v2_{kind}"
        sets.append(
            {
                "task": "face",
                "name": f"face {kind}",
                "root": root,
                "args": ["--dataset", "300w", "--data", str(root / side), "--split", "all"],
                "protocols": [],
            }
        )
    return sets


def evaluate(model: Path, spec: dict, work: Path, threads: int) -> dict:
    """Run training.evaluate on one set; its metrics.json."""
    out = work / spec["name"].replace(" ", "_")
    command = module_command(
        "training.evaluate",
        "--model",
        str(model),
        *spec["args"],
        "--crop",
        "jitter",
        "--threads",
        str(threads),
        "--out",
        str(out),
        "--pictures",
        "8",
    )
    for protocol in spec["protocols"]:
        command += ["--protocol", protocol]
    print(f"$ {' '.join(command)}", flush=True)
    done = subprocess.run(command, cwd=REPO, check=False, env=child_env())
    if done.returncode != 0:
        raise EdgeError(f"training.evaluate failed on {spec['name']} (exit {done.returncode})")
    return json.loads((out / "metrics.json").read_text())


def limbs_mean(per_joint: dict) -> float:
    """The mean PCK of the 12 limb joints MPII-16 and COCO-17 share (those in ``per_joint``)."""
    values = [per_joint[name] for name in LIMBS if name in per_joint]
    return sum(values) / len(values) if values else float("nan")


def pose_rows(name: str, m: dict) -> list[str]:
    base = m["baseline"]
    model_all, base_all = m["values"]["pck@0.2"], base["values"]["pck@0.2"]
    rows = [
        f"| {name} | {m['values']['samples']} | **{model_all:.1f}** | {base_all:.1f} | "
        f"{limbs_mean(m['per_joint']):.1f} | {limbs_mean(base['per_joint']):.1f} |"
    ]
    for group, g in sorted(m.get("groups", {}).items()):
        rows.append(
            f"| &nbsp;&nbsp;{group} | {g['samples']} | {g['model']['pck@0.2']:.1f} | "
            f"{g['mean_shape']['pck@0.2']:.1f} | | |"
        )
    return rows


def face_rows(name: str, m: dict) -> list[str]:
    v, b = m["values"], m["baseline"]["values"]
    rows = [
        f"| {name} | {v['images']} | **{v['nme']:.2f}** | {b['nme']:.2f} | "
        f"{v['nme'] / b['nme']:.2f} | {v['nme_inner']:.2f} | {b['nme_inner']:.2f} | "
        f"{v['nme_inner'] / b['nme_inner']:.2f} |"
    ]
    for group, g in sorted(m.get("groups", {}).items()):
        gm, gb = g["model"], g["mean_shape"]
        rows.append(
            f"| &nbsp;&nbsp;{group} | {g['samples']} | {gm['nme']:.2f} | {gb['nme']:.2f} | "
            f"{gm['nme'] / gb['nme']:.2f} | {gm['nme_inner']:.2f} | {gb['nme_inner']:.2f} | "
            f"{gm['nme_inner'] / gb['nme_inner']:.2f} |"
        )
    return rows


def _model(spec: str) -> Path:
    """A model file, or the bundled one by name (pose, face)."""
    return Path(spec) if Path(spec).exists() else resolve_model(spec)


def model_skeleton(model: Path) -> str:
    """The pose model's landmark set: from a .tflite's metadata, or a .keras model's sidecar."""
    if model.suffix == ".tflite":
        return read_metadata(model.read_bytes()).skeleton
    from training.artifacts import load_sidecar

    meta, _ = load_sidecar(model)
    if meta is None:
        raise EdgeError(f"{model} has no landmark metadata sidecar")
    return meta.skeleton


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m benchmarks.held_out", description=__doc__)
    p.add_argument(
        "--pose", default="pose", help="pose model (.tflite or .keras; default: bundled)"
    )
    p.add_argument(
        "--face", default="face", help="face model (.tflite or .keras; default: bundled)"
    )
    p.add_argument("--label", default=None, help="what to call the models in the table")
    p.add_argument(
        "--tasks",
        default="pose,face",
        help="which of pose and face to score (default both), e.g. --tasks pose",
    )
    p.add_argument(
        "--side",
        choices=("valid", "select"),
        default="valid",
        help="which held-out side: valid (default; reported, chose nothing) or select (the "
        "side that chooses among candidates; its numbers are never the result)",
    )
    add_threads_argument(p)
    p.add_argument(
        "--work",
        type=Path,
        default=REPO / "runs" / "held_out",
        help="folder for each evaluation's metrics.json and pictures",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"markdown file to write (default: {RESULTS.relative_to(REPO)}, or "
        f"{SELECT_RESULTS.relative_to(REPO)} with --side select)",
    )
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="FILE.png",
        help="also draw the table: each set's and group's score beside the mean shape's, "
        "issue 24's bar as a line",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _main(args, argv), interrupted="interrupted: nothing was written")


def _main(args: argparse.Namespace, argv: list[str] | None) -> int:
    tasks = {t.strip() for t in args.tasks.split(",") if t.strip()}
    if not tasks or tasks - {"pose", "face"}:
        raise EdgeError(f"--tasks {args.tasks}: give pose, face or both")
    pose = _model(args.pose) if "pose" in tasks else None
    face = _model(args.face) if "face" in tasks else None
    skeleton = model_skeleton(pose) if pose is not None else "coco17"
    chosen = [s for s in held_out_sets(skeleton, args.side) if s["task"] in tasks]
    missing = [str(s["root"]) for s in chosen if not s["root"].is_dir()]
    if missing:
        raise EdgeError(
            f"no labels in {', '.join(missing)}: make them with python -m training.label "
            "(see configs/pose_v2_96.yaml and configs/face_v2.yaml)"
        )
    work = args.work / args.side / (args.label or "+".join(m.stem for m in (pose, face) if m))
    results = {}
    for spec in chosen:
        model = pose if spec["task"] == "pose" else face
        results[spec["name"]] = evaluate(model, spec, work, args.threads)
    label = args.label or " + ".join(str(m) for m in (pose, face) if m is not None)
    output = args.output or (SELECT_RESULTS if args.side == "select" else RESULTS)
    title = "validation" if args.side == "valid" else "SELECT side (chooses models; not a result)"
    lines = [
        f"# Source-held-out {title}: {label}",
        "",
        f"`python -m benchmarks.held_out {' '.join(argv if argv is not None else sys.argv[1:])}`, "
        f"{time.strftime('%Y-%m-%d')}. Labels: the teachers (BlazePose full, the face mesh "
        "through our 468 -> iBUG-68 table) on whole sources held out by "
        f"`configs/splits/held_out_sources.yaml` ({_SIDE_WORDS[args.side]}). "
        "Crops: `--crop jitter` (moved and scaled by the tracker's measured frame-to-frame "
        "steps; photos: the fallback constants). 'mean shape' = the training set's mean shape "
        "placed in the same crop (a model that learnt nothing but the box). Protocol: "
        "[docs/validation.md](../../docs/validation.md).",
    ]
    if "pose" in tasks:
        lines += pose_section(pose.name, skeleton, results)
    if "face" in tasks:
        lines += face_section(face.name, results)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines) + "\n")
    print(f"wrote {output}")
    if args.plot is not None:
        plot_results(results, args.plot, f"{label}, {args.side} side")
        print(f"wrote {args.plot}")
    return 0


def plot_bars(results: dict) -> list[dict]:
    """One bar pair per set and activity group of ``results`` (set name -> metrics.json):
    ``{"task", "name", "samples", "model", "mean_shape", "bar"}``: pose as PCK@0.2 (higher is
    better; the bar is issue 24's, overall or per group), faces as NME % (lower is better; the
    bar is half the mean face's NME in the same crops)."""
    bars = []
    for name, m in results.items():
        # The task is what the set was scored with: PCK for bodies, NME for faces.
        task = "pose" if "pck@0.2" in m["values"] else "face"
        key = "pck@0.2" if task == "pose" else "nme"
        base = m["baseline"]["values"][key]
        samples = m["values"]["samples" if task == "pose" else "images"]
        whole = POSE_BAR if task == "pose" else FACE_RATIO_BAR * base
        bars.append(
            dict(
                task=task,
                name=name,
                samples=samples,
                model=m["values"][key],
                mean_shape=base,
                bar=whole,
            )
        )
        for group, g in sorted(m.get("groups", {}).items()):
            gb = g["mean_shape"][key]
            bar = POSE_GROUP_BAR if task == "pose" else FACE_RATIO_BAR * gb
            bars.append(
                dict(
                    task=task,
                    name=f"- {group}",
                    samples=g["samples"],
                    model=g["model"][key],
                    mean_shape=gb,
                    bar=bar,
                )
            )
    return bars


def plot_results(results: dict, path: Path, title: str) -> Path:
    """Horizontal bars (:func:`plot_bars`), a panel per task, saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = plot_bars(results)
    tasks = [t for t in ("pose", "face") if any(b["task"] == t for b in bars)]
    if not tasks:
        raise EdgeError("nothing to plot: no pose or face set was scored")
    heights = [sum(b["task"] == t for b in bars) for t in tasks]
    fig, axes = plt.subplots(
        len(tasks),
        1,
        figsize=(8, 1.2 + 0.32 * sum(heights)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for ax, task in zip(axes[:, 0], tasks, strict=True):
        rows = [b for b in bars if b["task"] == task][::-1]  # first set on top
        y = np.arange(len(rows))
        ax.barh(y + 0.2, [b["model"] for b in rows], 0.4, label="model", color="#2a7fbf")
        ax.barh(
            y - 0.2,
            [b["mean_shape"] for b in rows],
            0.4,
            label="mean shape, same crop",
            color="#bbbbbb",
        )
        for i, b in enumerate(rows):
            ax.plot(
                [b["bar"]] * 2,
                [i - 0.45, i + 0.45],
                color="#d62728",
                lw=1.5,
                label="issue 24's bar" if i == 0 else None,
            )
        ax.set_yticks(y, [f"{b['name']} ({b['samples']})" for b in rows], fontsize=8)
        if task == "pose":
            ax.set_xlabel("PCK@0.2 of the torso, % (higher is better)")
            ax.set_xlim(0, 100)
        else:
            ax.set_xlabel("NME, % of the outer-eye-corner distance (lower is better)")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[0, 0].set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pose_section(name: str, skeleton: str, results: dict) -> list[str]:
    lines = [
        "",
        f"## Pose ({name}, {skeleton}): PCK@0.2 of the torso, against BlazePose",
        "",
        f"Bars (issue 24): {POSE_BAR:g} overall and {POSE_GROUP_BAR:g} in every activity group. "
        "'limbs' = the mean per-joint PCK of the 12 limb joints MPII-16 and COCO-17 share.",
        "",
        "| set / group | samples | model | mean shape | model, limbs | mean shape, limbs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind in ("pose clips", "pose photos"):
        lines += pose_rows(kind, results[kind])
    return lines


def face_section(name: str, results: dict) -> list[str]:
    lines = [
        "",
        f"## Faces ({name}): NME % of the outer-eye-corner distance, against the face mesh",
        "",
        f"Bar (issue 24): NME at most {FACE_RATIO_BAR:g} x the mean face's, inner points too.",
        "",
        "| set / group | faces | NME | mean face | ratio | inner NME | mean face | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in ("face clips", "face photos"):
        lines += face_rows(kind, results[kind])
    return lines


if __name__ == "__main__":
    sys.exit(main())
