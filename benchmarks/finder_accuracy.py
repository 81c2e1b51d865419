"""How well each finder finds: recall and precision on the same held-out frames, one table.

    python -m benchmarks.finder_accuracy face       # BlazeFace, Haar (+ the bundled face finder)
    python -m benchmarks.finder_accuracy person --finder runs/person_finder/model.keras
    python -m benchmarks.finder_accuracy face --finder none --limit 50    # a quick look

The frames are a finder label set's (``training.label person-finder`` / ``face-finder``:
``data/person_finder``, ``data/face_finder``), by default its ``valid`` side: whole sources
held out by the label run's split file, on which nothing is chosen (``--side select`` scores
the side that chooses among candidates instead; its table says so and goes to a file of its
own). They are the stored frames, downscaled by the label tool (long side at most its
``--frame-px``), and every finder sees the same ones. Each frame is counted in its set: the
clips' frames and the photos (from the label run's ``sources_<task>.json``), and all of them.

The rows:

* **ours**, the 1-bit finder (``--finder``: a .tflite, run as ``edge.live --person-finder
  PATH`` / ``--face-detector PATH`` runs it, through :mod:`edge.finders`; or a .keras, run by
  ``training.evaluate``'s predictor; default ``edge/models/<kind>_finder.tflite`` when it
  exists, else no row);
* **the teacher's own detector** through the finder the live pipeline uses (``blazepose``:
  MediaPipe's person detector; ``blazeface``: BlazeFace short-range). The labels were made
  from it: it is the label tool's first stage (then run on tiles, refined by the landmark
  model, boxed by the landmarks), not an independent reference;
* for faces, **OpenCV's Haar cascade** (``haar``, the default ``--face-detector``).

Every row is scored by ``training.finder.evaluate`` (:func:`~training.finder.evaluate.
score_finds`, the scoring of ``python -m training.evaluate --dataset finder``): each find is
matched to the unmatched label it overlaps most, best find first, at IoU >= ``--iou``; only
subjects at least ``--min-height`` of the frame tall count (default: the kind's config,
``configs/<kind>_finder.yaml``: a sixth for people, a tenth for faces); a find on a smaller or
a weak (ignored) subject, or itself smaller, is neither right nor wrong. Matched on the
rectangles first (the subject's extent, which our finder learnt; the teacher's detector and
Haar give their own kind of box), then on the landmark crops (the crop each finder hands the
landmark model, what matters to the tracker). The crop errors are the medians over the pairs
matched on the rectangles, as shares of the label's crop side. The table, with the host,
goes to ``benchmarks/results/finder_accuracy_<kind>.md`` (and ``.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import REPO, RESULTS_DIR, uptime, write_result
from edge import cpu_name
from edge.cli import (
    ArgumentParser,
    add_backend_argument,
    add_threads_argument,
    float_in_range,
    int_in_range,
    run_cli,
)
from edge.errors import EdgeError

KINDS = ("person", "face")
DATA = {"person": REPO / "data" / "person_finder", "face": REPO / "data" / "face_finder"}
# The teacher's own detector, as edge.finders names it, and what it is.
TEACHER = {
    "person": ("blazepose", "MediaPipe BlazePose's person detector (`pose_detection.tflite`)"),
    "face": ("blazeface", "MediaPipe BlazeFace short-range (`face_detection_short_range.tflite`)"),
}
HAAR = ("haar", "OpenCV's Haar cascade (`haarcascade_frontalface_default.xml`)")
SIDES = {
    "valid": "its `valid` side (whole sources held out; nothing was chosen on it)",
    "select": "its `select` side, which chooses among candidates: never report these numbers",
}


class BenchError(EdgeError):
    """A finder or the label set cannot be used."""


def frame_sets(data: Path, records: list[dict]) -> dict[str, list[int]]:
    """Record indices by set: ``clips`` and ``photos`` when the label run's
    ``sources_<task>.json`` says which source each frame came from (a record's ``source`` is
    ``<side>/<source key>/<frame>``), and ``all``; only ``all`` when it cannot say."""
    from training.label.sources import is_image

    sets: dict[str, list[int]] = {}
    found = sorted(data.glob("sources_*.json"))
    try:
        sources = json.loads(found[0].read_text(encoding="utf-8")) if len(found) == 1 else {}
        for i, record in enumerate(records):
            _, key, _ = str(record["source"]).split("/")
            kind = "photos" if is_image(Path(sources[key]["path"])) else "clips"
            sets.setdefault(kind, []).append(i)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        sets = {}
    everything = {"all": list(range(len(records)))}
    ordered = {k: sets[k] for k in ("clips", "photos") if k in sets}
    return {**ordered, **everything} if len(ordered) > 1 else everything


def spread(indices: list[int], limit: int | None) -> list[int]:
    """At most ``limit`` of ``indices``, evenly spread (all of them when None)."""
    if limit is None or limit >= len(indices):
        return indices
    return [indices[int(k)] for k in np.linspace(0, len(indices) - 1, limit).round()]


def label_settings(data: Path) -> dict:
    """The label run's settings (``summary_<task>.json``), or {}."""
    found = sorted(data.glob("summary_*.json"))
    if len(found) != 1:
        return {}
    try:
        doc = json.loads(found[0].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {**doc.get("settings", {}), "split_file": doc.get("split_file")}


def our_finder(kind: str, given: str | None) -> Path | None:
    """The 1-bit finder's file: ``--finder``, else the bundled one, else None."""
    if given == "none":
        return None
    if given is not None:
        path = Path(given).expanduser()
        if not path.exists():
            raise BenchError(f"--finder: {path} not found")
        return path
    bundled = REPO / "edge" / "models" / f"{kind}_finder.tflite"
    return bundled if bundled.is_file() else None


def _shown(path: Path) -> str:
    where = path.resolve()
    return str(where.relative_to(REPO)) if where.is_relative_to(REPO) else str(path)


def rows_for(args, kind: str, classes: tuple[str, ...], margin: float) -> list[dict]:
    """The finders to score: {"name", "what", "score": callable(dataset, **options)}."""
    from edge.finders import create_finder
    from edge.metadata import read_metadata
    from training.finder.evaluate import check_finder, score_dataset, score_finder
    from training.predictor import load_predictor

    rows = []
    path = our_finder(kind, args.finder)
    if path is not None:
        if path.suffix == ".tflite":
            meta = read_metadata(path)
            check_finder(meta, str(path), classes)
            finder = create_finder(
                str(path),
                subject=kind,
                margin=margin,
                num_threads=args.threads,
                backend=args.backend,
                tile_below=args.tile_below,
            )
            runtime = finder.model.backend_description
            if finder.model.tile_below is not None:
                runtime += f"; tiles when no find scores {finder.model.tile_below}"
            score = lambda dataset, f=finder, **o: score_finder(f, dataset, **o)  # noqa: E731
        else:
            predictor = load_predictor(path, backend=args.backend, num_threads=args.threads)
            runtime = predictor.description
            score = lambda dataset, p=predictor, **o: score_dataset(  # noqa: E731
                p, dataset, batch_size=16, **o
            )
        rows.append(
            {
                "name": f"ours: 1-bit {kind} finder",
                "what": f"`{_shown(path)}` ({runtime})",
                "score": score,
            }
        )
    teachers = [TEACHER[kind]] + ([HAAR] if kind == "face" and not args.no_haar else [])
    for name, what in teachers:
        finder = create_finder(name, subject=kind, margin=margin)
        rows.append(
            {
                "name": name,
                "what": f"{what}, `edge.finders` {name}",
                "score": lambda dataset, f=finder, **o: score_finder(f, dataset, **o),
            }
        )
    return rows


def _pct(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{100 * value:.1f}"


def table(result: dict) -> list[str]:
    lines = [
        "| set | finder | frames | subjects counted | recall % | precision % | found / missed "
        "/ false | frames with several | recall % (several) | precision % (several) | crop "
        "centre error % | crop side error % | crop rotation error deg | recall % on the crop | "
        "precision % on the crop |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rows in result["sets"].items():
        for r in rows:
            v, c = r["values"], r["by_crop"]
            bold = "**" if name == "all" else ""
            crop = (
                [
                    f"{100 * v['crop_centre_error']:.1f}",
                    f"{100 * v['crop_size_error']:.1f}",
                    f"{v['crop_rotation_error_deg']:.1f}",
                ]
                if "crop_centre_error" in v
                else ["-", "-", "-"]
            )
            lines.append(
                f"| {bold}{name}{bold} | {r['name']} | {v['frames']} | {v['labels']} | "
                f"{_pct(v['recall'])} | {_pct(v['precision'])} | {v['matched']} / "
                f"{v['labels'] - v['matched']} / {v['false']} | {v['several_frames']} | "
                f"{_pct(v['several/recall'])} | {_pct(v['several/precision'])} | "
                f"{' | '.join(crop)} | {_pct(c['recall'])} | {_pct(c['precision'])} |"
            )
    return lines


def render(result: dict) -> str:
    kind, settings = result["kind"], result["label_settings"]
    plural = "people" if kind == "person" else "faces"
    counts = ", ".join(f"{name} {n}" for name, n in result["frames"].items())
    limited = (
        f" At most {result['limit']} frames per set, evenly spread (a quick look, not the result)."
        if result["limit"] is not None
        else ""
    )
    frame_px = settings.get("frame_px")
    lines = [
        f"# Finding {plural}: recall and precision on the held-out frames",
        "",
        f"`{result['command']}` ({result['date']}) on **{result['cpu']}** "
        f"({result['machine']}), Python {result['python']}, OpenCV {result['opencv']}; "
        "accuracy, not time (`python -m benchmarks.finder` times the finders).",
        "",
        f"Load before: `{result['uptime_before']}`  ",
        f"Load after: `{result['uptime_after']}`",
        "",
        f"Frames: `{result['data']}`, {SIDES[result['side']]}"
        + (
            f", held out by `{settings['split_file']}`"
            if settings.get("split_file") and result["side"] == "valid"
            else ""
        )
        + f"; frames per set: {counts}.{limited} Every finder sees the same stored frames"
        + (
            f" (downscaled by the label tool to at most {frame_px} px on the long side)"
            if frame_px
            else ""
        )
        + ". Clips: frames of videos (several per source); photos: one frame per source.",
        "",
        f"Labels: the teacher's, `training.label {settings.get('task', kind + '-finder')}` "
        "(MediaPipe's detector on the frame and on tiles, each find refined by the landmark "
        "model, its rectangle the extent of the landmarks"
        + (" joined with the person mask" if kind == "person" else " (the face mesh)")
        + ", its landmark crop the landmark models' own); subjects the landmark model was "
        f"unsure of (presence under {settings.get('min_presence', '--min-presence')}) are "
        "ignored. Not a human ground truth.",
        "",
        "Rows:",
        "",
    ]
    for r in result["rows"]:
        lines.append(f"- **{r['name']}**: {r['what']}")
    teacher = TEACHER[kind][0]
    lines += [
        "",
        f"**{teacher} is the labeller's own first stage**, not an independent reference: the "
        "labels were made from its detections (then on tiles, refined and boxed by the "
        "landmarks). A subject it finds on the whole frame is labelled unless the landmark "
        "model was unsure of it, so its recall says how much the tiles and the refinement "
        "added, and it is no bar a finder could be held to.",
        "",
        f"Matching: per frame, finds best first, each to the unmatched counted label it overlaps "
        f"most at **IoU >= {result['iou']:g}**; only {plural} at least **"
        f"{result['min_height']:.3g} of the frame's height** tall count (the label's "
        "rectangle), a find on a smaller or an ignored one, or itself smaller, is neither "
        "right nor wrong. recall = matched / counted labels; precision = matched / (matched + "
        "false). *Frames with several*: frames with at least two counted "
        f"{plural}. The matching and counting are `training.finder.evaluate`'s, the same as "
        "`python -m training.evaluate --dataset finder` and the training's validation.",
        "",
        "Two matchings of the same finds: on the **rectangles** (the recall and precision "
        "columns: the subject's extent, which our finder learnt from these labels; "
        + (
            "BlazePose's detector gives no extent, only a square where it expects the body "
            "(`edge.finders.people.body_rect`), so a tall thin person overlaps it under 0.5 "
            "even when found"
            if kind == "person"
            else "BlazeFace's is its detector box, Haar's its cascade window (brow to chin), "
            "each a little unlike the mesh's extent"
        )
        + ") and on the **landmark crops** (the last two columns: the upright square each "
        f"finder hands the landmark model, margin {result['margin']:g}, against the label's "
        "crop; what the tracker matches finds to tracks by). Crop errors: medians over the "
        "pairs matched on the rectangles, the centre distance and the side difference as "
        "shares of the label crop's side, the rotation in degrees.",
        "",
        *table(result),
        "",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    import cv2
    from tqdm import tqdm

    from edge.finders.binary import LABEL_MARGIN
    from training.config import load_config
    from training.finder.data import FinderDataset
    from training.finder.evaluate import FinderScore

    kind = args.kind
    data = args.data or DATA[kind]
    config = load_config(REPO / "configs" / f"{kind}_finder.yaml").finder
    min_height = config.min_height if args.min_height is None else args.min_height
    iou = config.iou if args.iou is None else args.iou
    dataset = FinderDataset(data, split=args.side)
    if kind not in dataset.classes:
        raise BenchError(f"{data} labels {', '.join(dataset.classes)}, not {kind}s")
    settings = label_settings(Path(data))
    margin = float(settings.get("box_margin", LABEL_MARGIN))
    sets = frame_sets(Path(data), dataset.records)
    # Each set scored on its own ("all" too when it is the only one), "all" as their sum.
    scored = {k: spread(v, args.limit) for k, v in sets.items() if k != "all" or len(sets) == 1}
    sets = {**scored, "all": sorted(i for v in scored.values() for i in v)}
    rows = rows_for(args, kind, dataset.classes, margin)
    uptime_before = uptime()
    results: dict[str, list[dict]] = {name: [] for name in sets}
    total = sum(len(v) for v in scored.values())
    for row in rows:
        bar = tqdm(total=total, desc=row["name"], unit="frame")
        overall = FinderScore(by_crop=FinderScore())
        for name, indices in scored.items():
            score = row["score"](
                dataset,
                indices=indices,
                min_height=min_height,
                iou=iou,
                progress=counting(bar),
                by_crop=True,
            )
            overall.merge(score)
            results[name].append(_row(row, score))
        bar.close()
        if "all" not in scored:
            results["all"].append(_row(row, overall))
    skipped = dataset.skipped.count
    result = {
        "kind": kind,
        "command": "python -m benchmarks.finder_accuracy " + " ".join(argv or sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu_name(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "uptime_before": uptime_before,
        "uptime_after": uptime(),
        "data": _shown(Path(data)),
        "side": args.side,
        "limit": args.limit,
        "label_settings": settings,
        "min_height": min_height,
        "iou": iou,
        "margin": margin,
        "skipped": skipped,
        "frames": {k: len(v) for k, v in sets.items()},
        "rows": [{"name": r["name"], "what": r["what"]} for r in rows],
        "sets": results,
    }
    text = render(result)
    if skipped:
        text += f"\n{skipped} corrupt records skipped (counted in no row).\n"
    output = args.output or RESULTS_DIR / (
        f"finder_accuracy_{kind}" + ("" if args.side == "valid" else f"_{args.side}") + ".md"
    )
    write_result(output, text, result)
    return 0


def counting(bar):
    """A scoring loop's ``progress``: moves ``bar`` by the frames of each batch (the loop
    walks range(0, frames, batch size))."""

    def progress(batches: range):
        for start in batches:
            yield start
            bar.update(min(batches.step, batches.stop - start))

    return progress


def _row(row: dict, score) -> dict:
    return {
        "name": row["name"],
        "values": score.values(),
        "by_crop": score.by_crop.values(),
    }


def _tile_below(text: str) -> float | str | None:
    if text in ("auto", "never"):
        return None if text == "never" else text
    return float_in_range(0.0, 1.0)(text)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m benchmarks.finder_accuracy",
        description="Recall and precision of the 1-bit finder, the teacher's own detector "
        "(BlazePose's person detector or BlazeFace, as edge.live runs them) and, for faces, "
        "OpenCV's Haar cascade on the same held-out frames of a finder label set (the valid "
        "side of data/person_finder or data/face_finder), scored by training.finder.evaluate "
        "(IoU 0.5; people a sixth of the frame tall, faces a tenth, by the kind's config); "
        "per set (clips, photos, all), with the frames with several subjects and the landmark "
        "crops' errors. Writes benchmarks/results/finder_accuracy_KIND.md and .json.",
    )
    p.add_argument("kind", choices=KINDS, help="which finders: of people or of faces")
    p.add_argument(
        "--finder",
        default=None,
        metavar="PATH|none",
        help="our 1-bit finder: a .tflite (run through edge.finders, as edge.live runs it) "
        "or a .keras from a training.finder run (default: edge/models/KIND_finder.tflite "
        "when it exists, else no row); none: leave it out",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="the finder label set (default: data/person_finder or data/face_finder)",
    )
    p.add_argument(
        "--side",
        choices=tuple(SIDES),
        default="valid",
        help="which side of the split: valid (reported) or select (chooses; never reported)",
    )
    p.add_argument(
        "--min-height",
        type=float_in_range(0.0, 1.0),
        default=None,
        metavar="SHARE",
        help="subjects at least this share of the frame's height count (default: "
        "configs/KIND_finder.yaml's finder.min_height: a sixth for people, a tenth for faces)",
    )
    p.add_argument(
        "--iou",
        type=float_in_range(0.0, 1.0, low_open=True),
        default=None,
        help="a find matches a label at this IoU (default: the config's, 0.5)",
    )
    p.add_argument(
        "--limit",
        type=int_in_range(1),
        default=None,
        metavar="N",
        help="at most N frames per set, evenly spread (a quick look; the table says so)",
    )
    p.add_argument(
        "--tile-below",
        type=_tile_below,
        default="auto",
        metavar="S|never|auto",
        help="our .tflite finder looks again in tiles when no find of the whole frame scores "
        "S (edge.finder.FinderModel's tile_below); never; auto: as edge.live runs it "
        "(edge.finders.binary.TILE_BELOW, default)",
    )
    p.add_argument("--no-haar", action="store_true", help="faces: leave out the Haar row")
    add_backend_argument(p)
    add_threads_argument(p, help="interpreter threads of our finder")
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="markdown table to write (default: benchmarks/results/finder_accuracy_KIND.md; "
        "with --side select, finder_accuracy_KIND_select.md)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(
        lambda: run(args, argv),
        errors=(OSError,),
        interrupted="interrupted: nothing was written",
    )


if __name__ == "__main__":
    sys.exit(main())
