"""A family of binary pose hourglasses against MediaPipe's BlazePose full, in one timed run.

    python -m benchmarks.pose_family                       # the default grid + the bundled model
    python -m benchmarks.pose_family --trained mine=runs/my_pose/pose.tflite
    python -m benchmarks.pose_family --rows 128x96x3x1,256x128x4x1 --rounds 3

Each sweep row is a 1-bit HPM hourglass (training.models.build_hourglass, MPII-16), untrained:
latency and size do not depend on the weights' values, as long as the BatchNorm statistics
all differ, as training leaves them (fresh ones would shrink the file). It is saved as .keras
and converted by the project's converter (``python -m converters.convert --format lce``,
with the landmark metadata, as a shipped model is). Models are cached in ~/.cache/binland/bench/pose_family;
building and conversion run under ``nice -n 19``.

For every row, and for BlazePose full (``pose_landmark_full.tflite``, 256x256, from
training.label's teacher cache) as the reference row:

* latency: the timer of benchmarks.kernels (one process per model and round, a stock runtime,
  ``--threads`` threads): ours with the binland native delegate, BlazePose under the
  runtime's XNNPACK. Rounds interleave all rows, so a load change hits every row alike;
  median and minimum over the pooled rounds, plus the delegate's own time in the binary ops;
* the flatbuffer's size and binary / float MACs (training.models.count_macs);
* accuracy, only for trained models (``--trained NAME=MODEL.tflite``): PCK@0.2 of the torso
  on the 12 limb joints MPII-16 and COCO-17 share, so models of either skeleton compare, from
  ``python -m training.evaluate --crop jitter`` (benchmarks.held_out's sets and protocol) on
  the source-held-out clips and photos labelled by BlazePose (data/pose_v2_clips and
  data/pose_v2_photos), their ``select`` side by default: the recommendation below chooses a
  model, and a model is chosen on ``select``, never on the ``valid`` side that is reported.
  Sweep rows say "not trained". BlazePose made those labels, so it is the reference by
  definition, not a score.

Writes benchmarks/results/pose_family.md and .json, with the machine's load (``uptime``
before and after) and a recommendation computed from the measured rows.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks import (
    REPO,
    RESULTS_DIR,
    child_env,
    held_out,
    kernels,
    module_command,
    uptime,
    write_result,
)
from edge import cache_dir, cpu_name
from edge.cli import ArgumentParser, positive_int, run_cli
from edge.errors import EdgeError

CACHE = cache_dir("bench") / "pose_family"
RESULTS = RESULTS_DIR / "pose_family.md"
SIZE_LIMIT_MB = 1.3  # issue 13's bar for the recommended model (the paper's released size)
NUM_LANDMARKS = 16  # the sweep rows' head: MPII-16 (latency barely depends on it)
BUNDLED_POSE = REPO / "edge" / "models" / "pose.tflite"
BUNDLED_CONFIG = REPO / "configs" / "real_pose_arms.yaml"  # the bundled pose model's last stage
# Stage 1 of the bundled model's recipe (96 px), where examples/train_demo.py leaves it.
STAGE1_MODEL = REPO / "runs" / "real_pose_96" / "pose.tflite"
STAGE1_CONFIG = REPO / "configs" / "real_pose_96.yaml"
ACCURACY_TIE = 1.0  # limb PCK@0.2 points: closer than this, the faster trained model is preferred
BUILD_VERSION = 2  # bump when the way rows are built changes: cached ones are rebuilt
REFERENCE_NAME = "BlazePose full (MediaPipe, float)"


class FamilyError(EdgeError):
    """A model of the family could not be built, converted, timed or scored."""


@dataclass(frozen=True)
class Arch:
    """One binary HPM hourglass: input pixels, features (width), depth, stacks."""

    input_size: int
    features: int
    depth: int
    stacks: int

    @property
    def key(self) -> str:
        return f"hpm-{self.input_size}px-{self.features}f-d{self.depth}-s{self.stacks}"

    @property
    def label(self) -> str:
        return f"{self.input_size}px, {self.features}f, d{self.depth}, {self.stacks}s"

    @classmethod
    def parse(cls, text: str) -> Arch:
        """``INPUTxFEATURESxDEPTHxSTACKS``, e.g. ``128x96x3x1``."""
        try:
            arch = cls(*(int(v) for v in text.lower().split("x")))
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(
                f"expected INPUTxFEATURESxDEPTHxSTACKS like 128x96x3x1, got {text!r}"
            ) from None
        # build_hourglass's own rules, checked here so a bad row fails before any building.
        step = 4 * 2**arch.depth
        if arch.depth < 1 or arch.stacks < 1 or arch.features < 4 or arch.features % 4:
            raise argparse.ArgumentTypeError(
                f"{text!r}: depth and stacks must be >= 1, features a multiple of 4 (HPM)"
            )
        if arch.input_size % step:
            raise argparse.ArgumentTypeError(
                f"{text!r}: input size must be a multiple of {step} (4 * 2**depth)"
            )
        return arch


# Input 128..256, width 64..256, depth 3/4, 1-2 stacks: where a 1-bit network of at most
# 1.3 MB can be, not the full product. 128x96x3x1 is the bundled network at 128 pixels (the
# lead's stage-2 retraining); 256x256x4x1 is the paper's network (1.30 MB), the upper end.
GRID = [
    Arch(128, 96, 3, 1),
    Arch(128, 128, 3, 1),
    Arch(128, 128, 4, 1),
    Arch(128, 128, 3, 2),
    Arch(160, 128, 3, 1),
    Arch(192, 128, 4, 1),
    Arch(192, 192, 4, 1),
    Arch(256, 64, 4, 1),
    Arch(256, 128, 4, 1),
    Arch(256, 256, 4, 1),
]


@dataclass(frozen=True)
class Trained:
    """A trained pose .tflite and the training config that says which network it is."""

    name: str
    model: Path
    config: Path


def parse_trained(text: str) -> Trained:
    """``NAME=MODEL.tflite[:CONFIG.yaml]``; without CONFIG, config.yaml next to the model."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"expected NAME=MODEL.tflite[:CONFIG.yaml], got {text!r}")
    model_text, _, config_text = rest.partition(":")
    model = Path(model_text).expanduser()
    if not model.is_file():
        raise argparse.ArgumentTypeError(f"{name}: model file not found: {model}")
    config = Path(config_text).expanduser() if config_text else model.parent / "config.yaml"
    if not config.is_file():
        raise argparse.ArgumentTypeError(
            f"{name}: no training config {config} (it says which network the model is: "
            "depth, features, stacks); pass NAME=MODEL.tflite:CONFIG.yaml"
        )
    return Trained(name, model, config)


def default_trained() -> list[Trained]:
    """The bundled pose model, plus its recipe's 96 px first stage where a run left it."""
    rows = [Trained("bundled", BUNDLED_POSE, BUNDLED_CONFIG)]
    if STAGE1_MODEL.is_file():
        rows.append(Trained("stage1-96", STAGE1_MODEL, STAGE1_CONFIG))
    return rows


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# ------------------------------------------------------------------------ building


def _trained_like_batchnorm(model, seed: int) -> None:
    """BatchNorm statistics as training leaves them: all different, some gammas negative.

    Fresh ones (gamma 1, beta 0, mean 0, variance 1) are all alike, and the converter stores
    identical constants once and merges identical ops: the file would come out smaller, and
    the graph simpler, than any trained model of the same network.
    """
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            gamma = rng.uniform(0.5, 2.0, n) * rng.choice([-1.0, 1.0], n, p=[0.1, 0.9])
            layer.set_weights(
                [gamma, rng.normal(size=n), rng.normal(size=n), rng.uniform(0.5, 2.0, n)]
            )


def _build_worker(jobs_path: Path) -> int:
    """Child process (under nice): build, count and convert every job in the JSON file.

    A sweep job builds the network, counts it, saves .keras and runs the project's converter;
    a trained job only counts the network its training config describes. Each writes
    info.json into its folder.
    """
    # isort: off
    import converters  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

    # isort: on
    from tqdm import tqdm

    from converters import convert
    from training.config import load_config
    from training.landmarks.task import build_model
    from training.models import build_hourglass, count_macs

    jobs = json.loads(jobs_path.read_text())
    for job in tqdm(jobs, desc="building models (nice 19)", unit="model"):
        folder = Path(job["folder"])
        folder.mkdir(parents=True, exist_ok=True)
        if job["kind"] == "sweep":
            a = Arch(**job["arch"])
            model = build_hourglass(
                num_stacks=a.stacks,
                depth=a.depth,
                features=a.features,
                num_landmarks=NUM_LANDMARKS,
                input_size=a.input_size,
                block="hpm",
                binary=True,
            )
        else:
            config = load_config(job["config"])
            model = build_model(config, NUM_LANDMARKS)
        if job["kind"] == "sweep":
            _trained_like_batchnorm(model, seed=0)
        binary_macs, float_macs = count_macs(model)
        info = {
            "build": BUILD_VERSION,
            "params": int(model.count_params()),
            "binary_macs": int(binary_macs),
            "float_macs": int(float_macs),
            "input_size": int(model.input.shape[1]),
        }
        if job["kind"] == "sweep":
            keras_path, tflite = folder / "model.keras", folder / "model.tflite"
            model.save(keras_path)
            log = folder / "convert.log"
            # The converter's own report goes to a log: the progress bar stays readable.
            with log.open("w") as out, contextlib.redirect_stdout(out):
                status = convert.main(
                    [
                        str(keras_path),
                        "-o",
                        str(tflite),
                        "--format",
                        "lce",
                        "--skeleton",
                        "mpii16",
                        "--name",
                        Arch(**job["arch"]).key,
                        "--check-inputs",
                        "0",
                    ]
                )
            keras_path.unlink()  # only the flatbuffer is timed; the weights are untrained
            if status != 0:
                print(f"error: converting {job['arch']} failed, see {log}", file=sys.stderr)
                return 2
            info["tflite"] = str(tflite)
        (folder / "info.json").write_text(json.dumps(info))
        del model
    return 0


def _stale(info: Path) -> bool:
    return not info.is_file() or json.loads(info.read_text()).get("build") != BUILD_VERSION


def build_all(sweep: list[Arch], trained: list[Trained], rebuild: bool) -> dict[str, dict]:
    """info.json of every sweep row and trained model, building what the cache lacks."""
    jobs, infos = [], {}
    for a in sweep:
        folder = CACHE / a.key
        jobs.append({"kind": "sweep", "arch": asdict(a), "folder": str(folder)})
    for t in trained:
        # Keyed by config content: the MAC count depends on the network, not on the weights.
        folder = CACHE / "trained" / _sha(t.config)
        jobs.append({"kind": "trained", "config": str(t.config), "folder": str(folder)})
    todo = [j for j in jobs if rebuild or _stale(Path(j["folder"]) / "info.json")]
    if todo:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(todo, f)
        try:
            # nice: building and converting must not steal the cores from the training job.
            worker = module_command("benchmarks.pose_family", "--build-worker", f.name)
            cmd = ["nice", "-n", "19", *worker]
            env = child_env(dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
            if subprocess.run(cmd, env=env).returncode != 0:
                raise FamilyError("building the models failed (see above)")
        finally:
            os.unlink(f.name)
    for a in sweep:
        infos[a.key] = json.loads((CACHE / a.key / "info.json").read_text())
    for t in trained:
        infos[t.name] = json.loads((CACHE / "trained" / _sha(t.config) / "info.json").read_text())
    return infos


# ------------------------------------------------------------------------ accuracy


def evaluate(trained: Trained, side: str, threads: int, reevaluate: bool) -> dict:
    """Limb PCK@0.2 (of the torso) of one trained .tflite on the held-out clips and photos of
    ``side``, jittered crops: benchmarks.held_out's sets and its ``training.evaluate`` run, in
    the model's own skeleton. The metrics are cached by the model's and the labels' content.
    """
    skeleton = held_out.model_skeleton(trained.model)
    sets = [spec for spec in held_out.held_out_sets(skeleton, side) if spec["task"] == "pose"]
    stamp = hashlib.sha256(b"".join(spec["labels"].read_bytes() for spec in sets)).hexdigest()[:8]
    work = CACHE / "eval" / f"{_sha(trained.model)}-{side}-{stamp}"
    accuracy = {"side": side, "skeleton": skeleton}
    for spec in sets:
        kind = spec["kind"]
        metrics = work / spec["name"].replace(" ", "_") / "metrics.json"
        if reevaluate or not metrics.is_file():
            held_out.evaluate(trained.model, spec, work, threads)
        report = json.loads(metrics.read_text())
        accuracy[kind] = held_out.limbs_mean(report["per_joint"])
        accuracy[f"{kind}_mean_shape"] = held_out.limbs_mean(report["baseline"]["per_joint"])
        accuracy[f"{kind}_samples"] = report["values"]["samples"]
    accuracy["limbs"] = (accuracy["clips"] + accuracy["photos"]) / 2
    return accuracy


# ------------------------------------------------------------------------ timing


# ------------------------------------------------------------------------ report


def _mean_shape_line(accuracy: dict) -> str:
    """The no-learning baseline beside the trained rows: each training set's mean shape in the
    same crops (limbs, clips / photos)."""
    if not accuracy:
        return ""
    cells = "; ".join(
        f"{name} {a['clips_mean_shape']:.1f} / {a['photos_mean_shape']:.1f}"
        for name, a in accuracy.items()
    )
    return (
        "The mean shape of each model's training set placed in the same crops (a model that "
        f"learnt nothing), limbs, clips / photos: {cells}."
    )


def _fmt_macs(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e9:.2f} G"


def _next_to_train(fits: list[dict], reference: dict) -> str:
    """The untrained row with the most binary MACs that still runs at least twice as fast as
    BlazePose here: the most capacity with room left for a slower device or a busier CPU."""
    roomy = [
        r for r in fits if r["accuracy"] is None and reference["median_ms"] / r["median_ms"] >= 2.0
    ]
    if not roomy:
        return ""
    nxt = max(roomy, key=lambda r: r["binary_macs"])
    return (
        f" Of the untrained rows, **{nxt['name']}** is the largest network (by binary MACs, "
        f"{nxt['binary_macs'] / 1e9:.2f} G) that still runs at least 2x as fast as BlazePose "
        f"here ({reference['median_ms'] / nxt['median_ms']:.1f}x, "
        f"{nxt['size_bytes'] / 1e6:.2f} MB): the one to train next for accuracy; its "
        "accuracy is unknown until it is trained."
    )


def recommend(rows: list[dict], reference: dict) -> tuple[dict | None, str]:
    """Among rows that beat BlazePose's median in this run and are at most 1.3 MB: the
    fastest trained row within ACCURACY_TIE points of the best trained one's limb PCK@0.2
    (clips and photos averaged); else the fastest untrained row. Returns it and why."""
    fits = [
        r
        for r in rows
        if r["median_ms"] < reference["median_ms"] and r["size_bytes"] <= SIZE_LIMIT_MB * 1e6
    ]
    trained = [r for r in fits if r["accuracy"] is not None]
    if trained:
        top = max(trained, key=lambda r: r["accuracy"]["limbs"])
        # Within a point of the top score counts as a tie (two training runs of one network
        # differ by about that): then the faster model wins.
        best = min(
            (
                r
                for r in trained
                if r["accuracy"]["limbs"] >= top["accuracy"]["limbs"] - ACCURACY_TIE
            ),
            key=lambda r: r["median_ms"],
        )
        speed = reference["median_ms"] / best["median_ms"]
        why = (
            f"**{best['name']}** ({best['arch']}): {speed:.1f}x faster than BlazePose full "
            f"in this run (median {best['median_ms']:.2f} vs {reference['median_ms']:.2f} ms), "
            f"{best['size_bytes'] / 1e6:.2f} MB against BlazePose's "
            f"{reference['size_bytes'] / 1e6:.1f} MB, at limb PCK@0.2 "
            f"{best['accuracy']['clips']:.1f} % on the {best['accuracy']['side']} clips and "
            f"{best['accuracy']['photos']:.1f} % on its photos against BlazePose's own labels."
        )
        if top is not best:
            gain = top["accuracy"]["limbs"] - best["accuracy"]["limbs"]
            why += (
                f" {top['name']} scores {gain:.1f} points of limb PCK@0.2 more, within "
                f"{ACCURACY_TIE:.0f} point (a tie), at {top['median_ms'] / best['median_ms']:.1f}x "
                "the latency."
            )
        else:
            why += " The best accuracy of the rows under both bars."
        return best, why + _next_to_train(fits, reference)
    if fits:
        best = min(fits, key=lambda r: r["median_ms"])
        return best, (
            f"**{best['name']}**: the fastest row under both bars; no trained model "
            "meets them, so no accuracy can be claimed yet."
        )
    return None, "No binary row is both faster than BlazePose full and at most 1.3 MB here."


def render(result: dict) -> str:
    rows, ref = result["rows"], result["reference"]
    forced = (
        ", forced with --simd: the float ops, ours and BlazePose's, keep XNNPACK's code for this "
        "CPU"
        if result.get("simd_forced")
        else ""
    )
    lines = [
        "# Binary pose model family vs BlazePose full",
        "",
        f"CPU: {result['cpu']}, {result['cores']} cores; {result['threads']} threads for every "
        f"model, runtime `{result['runtime']}` (ours: + binland native delegate, kernel path "
        f"`{result['simd']}`{forced}; BlazePose: the runtime's XNNPACK); {result['rounds']} "
        f"interleaved rounds of {result['runs']} timed runs after {result['warmup']} warm-up "
        "per model, one process each (the timer of benchmarks.kernels), pooled.",
        "",
        f"Load before: `{result['uptime_before']}`  ",
        f"Load after: `{result['uptime_after']}`",
        "",
        "Sweep rows are untrained (latency and size do not depend on the weights; their "
        "BatchNorm statistics are randomised as training leaves them). Accuracy: PCK@0.2 of "
        "the torso on the 12 limb joints MPII-16 and COCO-17 share, crops moved as the tracker "
        "moves them (`training.evaluate --crop jitter`, benchmarks.held_out's sets), on the "
        f"**{result['side']}** side of `configs/splits/held_out_sources.yaml` (clips / photos; "
        "labels made by BlazePose full)"
        + (
            ", the side that chooses models: these numbers choose, they are not a result."
            if result["side"] == "select"
            else ", the reported side: a model chosen on this table was chosen on it."
        )
        + f" {result['mean_shape']}",
        "",
        "| model | network (input, width, depth, stacks) | median ms | min ms | vs BlazePose "
        "(median) | binary ops ms | size MB | binary MACs | float MACs | accuracy, limbs "
        "(clips / photos) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in [*rows, ref]:
        if r is ref:
            accuracy, speed = "reference (its own labels)", "1.00x"
        else:
            a = r["accuracy"]
            accuracy = "not trained" if a is None else f"{a['clips']:.1f} / {a['photos']:.1f}"
            speed = f"{ref['median_ms'] / r['median_ms']:.2f}x"
        binary_ops = "-" if r.get("binary_ops_ms") is None else f"{r['binary_ops_ms']:.2f}"
        lines.append(
            f"| {r['name']} | {r['arch']} | {r['median_ms']:.2f} | {r['min_ms']:.2f} | {speed} "
            f"| {binary_ops} | {r['size_bytes'] / 1e6:.2f} | {_fmt_macs(r.get('binary_macs'))} "
            f"| {_fmt_macs(r.get('float_macs'))} | {accuracy} |"
        )
    lines += [
        "",
        "Per round (medians, ms): the ratio of rows within a round is what compares on a "
        "loaded machine.",
        "",
        "| model | " + " | ".join(f"round {k + 1}" for k in range(result["rounds"])) + " |",
        "|---|" + "---:|" * result["rounds"],
    ]
    for r in [*rows, ref]:
        cells = " | ".join(f"{x['median_ms']:.2f}" for x in r["rounds"])
        lines.append(f"| {r['name']} | {cells} |")
    lines += [
        "",
        "'vs BlazePose' is BlazePose's median over the row's: above 1 is faster. 'binary ops "
        "ms' is the delegate's own time in the LCE ops per run (BINLAND_PROFILE, which the "
        "timer keeps on for our rows); the rest is the runtime's float ops under XNNPACK. "
        "MACs by training.models.count_macs (convolutions only); BlazePose's are not counted "
        "here. Sizes are the .tflite files as shipped (with the landmark metadata).",
        "",
        "## Recommendation",
        "",
        result["recommendation"],
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m benchmarks.pose_family",
        description="Build a sweep of 1-bit pose hourglasses, convert them with the project's "
        "converter, and time them with trained models and MediaPipe's BlazePose full in one "
        "interleaved run: latency, size, MACs and (trained models) accuracy on the source-"
        "held-out clips and photos; writes benchmarks/results/pose_family.md and .json.",
    )
    p.add_argument(
        "--rows",
        default=None,
        metavar="IxFxDxS[,...]",
        help="sweep rows as INPUTxFEATURESxDEPTHxSTACKS (default: the built-in grid "
        f"of {len(GRID)}: {', '.join(a.key for a in GRID)}); 'none' for trained "
        "models only",
    )
    p.add_argument(
        "--trained",
        type=parse_trained,
        action="append",
        default=None,
        metavar="NAME=MODEL.tflite[:CONFIG.yaml]",
        help="a trained pose model to time and score (repeatable); CONFIG is the "
        "training config that built it (default: config.yaml next to the model). "
        "Default: bundled (edge/models/pose.tflite, configs/real_pose_arms.yaml) and, "
        "where examples/train_demo.py left it, its 96 px first stage "
        "runs/real_pose_96/pose.tflite as stage1-96",
    )
    p.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="BlazePose full .tflite (default: pose_landmark_full.tflite from "
        "training.label's teacher cache, fetched there if missing)",
    )
    p.add_argument(
        "--side",
        choices=("select", "valid"),
        default="select",
        help="which side of configs/splits/held_out_sources.yaml scores the trained models "
        "(default: select, the side that chooses models; valid is the reported side, which "
        "must not choose)",
    )
    p.add_argument(
        "--runtime",
        choices=("ai_edge_litert", "tflite_runtime"),
        default="ai_edge_litert",
        help="stock TFLite runtime for every row",
    )
    p.add_argument("--threads", type=positive_int, default=2, help="threads for every model")
    p.add_argument("--runs", type=positive_int, default=20, help="timed runs per model and round")
    p.add_argument("--warmup", type=positive_int, default=3, help="untimed runs first")
    p.add_argument(
        "--rounds", type=positive_int, default=2, help="interleaved rounds over all rows, pooled"
    )
    p.add_argument(
        "--simd",
        default=None,
        metavar="PATH",
        help="force this kernel path of our delegate (avx512-vpopcntdq, avx2, popcnt, portable; "
        "default: the fastest this CPU runs), e.g. the AVX2 path on an AVX-512 host; BlazePose "
        "and our float ops keep the runtime's own XNNPACK code; the report names the path",
    )
    p.add_argument("--rebuild", action="store_true", help="rebuild and reconvert cached models")
    p.add_argument("--reevaluate", action="store_true", help="rescore cached accuracies")
    p.add_argument(
        "--output",
        type=Path,
        default=RESULTS,
        help="markdown report; the .json goes next to it (default: "
        "benchmarks/results/pose_family.md)",
    )
    p.add_argument("--build-worker", type=Path, default=None, help=argparse.SUPPRESS)
    return p


def _shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


def _network(config: Path) -> tuple[int, int, int]:
    """(features, depth, stacks) of a training config, read without TensorFlow."""
    from training.config import load_config

    m = load_config(config).model
    return m.features, m.depth, m.num_stacks


def _check_trained(t: Trained, info: dict) -> None:
    """The config must describe the model: else the MACs beside it would be another network's."""
    from edge.metadata import read_metadata

    size = read_metadata(t.model).input_size[0]
    if size != info["input_size"]:
        raise FamilyError(
            f"{t.name}: {t.config} builds a {info['input_size']}-pixel network, "
            f"but {t.model} takes {size} pixels: pass its own config"
        )


def _sweep(spec: str | None) -> list[Arch]:
    if spec is None:
        return list(GRID)
    if spec.strip().lower() == "none":
        return []
    try:
        return [Arch.parse(s.strip()) for s in spec.split(",") if s.strip()]
    except argparse.ArgumentTypeError as exc:
        raise FamilyError(f"--rows: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    sweep = _sweep(args.rows)
    trained = args.trained if args.trained is not None else default_trained()
    for t in trained:
        if not t.model.is_file():
            raise FamilyError(f"{t.name}: model file not found: {t.model}")
    import edge.native as native

    library = str(native.ensure_library())
    try:
        simd = kernels.force_simd_path(args.simd, library)
    except ValueError as exc:
        raise FamilyError(str(exc)) from None

    for t in trained:
        for spec in held_out.held_out_sets(held_out.model_skeleton(t.model), args.side):
            if spec["task"] == "pose" and not spec["labels"].is_file():
                raise FamilyError(
                    f"no labels at {_shown(spec['labels'])} to score {t.name} (python -m training.label "
                    "pose, as configs/pose_v5_96.yaml says)"
                )
    if args.reference is None:
        from training.label.teacher_models import teacher_model

        reference_path = teacher_model("pose_landmark_full")
    else:
        reference_path = args.reference
    if not reference_path.is_file():
        raise FamilyError(f"BlazePose model not found: {reference_path}")

    infos = build_all(sweep, trained, args.rebuild)
    for t in trained:
        _check_trained(t, infos[t.name])
    accuracy = {}
    for t in tqdm(trained, desc="scoring trained models", unit="model"):
        accuracy[t.name] = evaluate(t, args.side, args.threads, args.reevaluate)

    rows = []
    for a in sweep:
        info = infos[a.key]
        rows.append(
            {
                "name": a.key,
                "arch": a.label,
                "model": info["tflite"],
                "accuracy": None,
                "size": a.input_size,
                **info,
            }
        )
    for t in trained:
        info = infos[t.name]
        arch = Arch(info["input_size"], *_network(t.config))
        rows.append(
            {
                "name": t.name,
                "arch": f"{arch.label}, trained",
                "model": str(t.model),
                "config": _shown(t.config),
                "accuracy": accuracy[t.name],
                "size": info["input_size"],
                **info,
            }
        )
    reference = {
        "name": REFERENCE_NAME,
        "arch": "256px, float",
        "model": str(reference_path),
        "size": 256,
        "accuracy": "reference",
    }
    for r in [*rows, reference]:
        r["size_bytes"] = Path(r["model"]).stat().st_size

    # One interleaved run: every round times every row once, BlazePose included, so a change
    # of load on the shared cores hits all rows of a round alike.
    uptime_before = uptime()
    per_round: dict[str, list[dict]] = {r["name"]: [] for r in [*rows, reference]}
    steps = tqdm(total=args.rounds * len(per_round), desc="timing", unit="model")
    for _ in range(args.rounds):
        for r in [*rows, reference]:
            timer_args = argparse.Namespace(
                threads=args.threads, runs=args.runs, warmup=args.warmup, size=r["size"]
            )
            lib = None if r is reference else library
            try:
                per_round[r["name"]].append(
                    kernels.run_config(args.runtime, r["model"], lib, timer_args)
                )
            except RuntimeError as exc:
                raise FamilyError(" ".join(str(exc).split())[:400]) from None
            steps.update()
    steps.close()
    uptime_after = uptime()
    for r in [*rows, reference]:
        pooled = kernels.pool(per_round[r["name"]])
        r.update(
            median_ms=pooled["median_ms"],
            min_ms=pooled["min_ms"],
            binary_ops_ms=pooled["binary_ops_ms"],
            rounds=[
                {"median_ms": x["median_ms"], "min_ms": x["min_ms"]} for x in per_round[r["name"]]
            ],
        )

    best, why = recommend(rows, reference)
    cpu = cpu_name()
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": args.threads,
        "runtime": args.runtime,
        "simd": simd,
        "simd_forced": args.simd is not None,
        "rounds": args.rounds,
        "runs": args.runs,
        "warmup": args.warmup,
        "side": args.side,
        "mean_shape": _mean_shape_line(accuracy),
        "uptime_before": uptime_before,
        "uptime_after": uptime_after,
        "rows": rows,
        "reference": reference,
        "recommended": best["name"] if best else None,
        "recommendation": why,
    }
    write_result(args.output, render(result), result)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.build_worker is not None:
        return _build_worker(args.build_worker)
    return run_cli(lambda: run(args), errors=(OSError,))


if __name__ == "__main__":
    sys.exit(main())
