"""Does the input pipeline keep up? Input images per second against the model's training rate.

    python -m benchmarks.input_pipeline                       # the demo configs + the paper's
    python -m benchmarks.input_pipeline --config configs/demo_pose.yaml --seconds 30
    python -m benchmarks.input_pipeline --out benchmarks/results/input_pipeline.md

For each config, on this machine and in one run (so read the ratios, not the absolute rates):

* **input**: the config's own tf.data pipeline (``training.landmarks.task.input_pipeline``: read,
  decode, augment, encode targets, batch, prefetch; parallel map as in training) is drained
  for ``--seconds`` after a warm-up, alone: images per second.
* **model**: the config's model, compiled as ``training.train`` compiles it, trains on one
  fixed batch held in memory for ``--seconds`` after the first (tracing) steps: steps per
  second and the images per second that takes.
* **ratio**: input images/s over the model's images/s. At 1 or more the input keeps up; the
  acceptance for the demo configs on 2 cores is 1.5. Both run alone on the same cores: while
  training they share them, so a ratio near 1 is not enough.

The paper's config (``mpii_binary_hpm``) needs MPII, which is not on this machine; its row
reads ``data/real_pose`` through the same MPII reader (real JPEG files, but 320x320 crops
where MPII's frames are 1280x720, so MPII decodes slower). On a GPU the model's rate is not
measured here: the table gives the input rate per core, and "Training at scale" in
docs/training.md estimates the GPU side from the network's arithmetic.

The load average before and after each row is in the table: a busy machine slows both sides.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import REPO
from edge import cpu_name

# config file, overrides, whether the 1.5x bar applies (the demo configs)
CONFIGS: list[tuple[str, list[str], bool]] = [
    ("configs/demo_pose.yaml", [], True),
    ("configs/demo_face.yaml", [], True),
    ("configs/synthetic_pose.yaml", [], True),
    ("configs/synthetic_face.yaml", [], True),
    ("configs/real_pose.yaml", [], True),
    ("configs/real_face.yaml", [], True),
    ("configs/mpii_binary_hpm.yaml", ["dataset.path=data/real_pose"], False),
]
TARGET = 1.5


@dataclass
class Row:
    name: str
    dataset: str
    batch: int
    input_size: int
    input_images_s: float
    model_steps_s: float
    demo: bool
    load_before: float
    load_after: float

    @property
    def model_images_s(self) -> float:
        return self.model_steps_s * self.batch

    @property
    def ratio(self) -> float:
        return self.input_images_s / self.model_images_s


def _timed(step, seconds: float, least: int) -> tuple[int, float]:
    """Calls of ``step`` and the seconds they took: at least ``least``, until ``seconds``."""
    count, start = 0, time.perf_counter()
    while count < least or time.perf_counter() - start < seconds:
        step()
        count += 1
    return count, time.perf_counter() - start


def measure(path: str, overrides: list[str], demo: bool, seconds: float, progress) -> Row:
    import tensorflow as tf

    from training.config import load_config
    from training.fit import make_optimizer
    from training.landmarks.task import build_model, input_pipeline, open_training_set
    from training.losses import stack_losses

    config = load_config(REPO / path, overrides)
    load_before = os.getloadavg()[0]
    os.chdir(REPO)  # the configs' data paths are relative to the repository
    train_set = open_training_set(config)
    progress(f"{config.name}: input")
    data = iter(input_pipeline(config, train_set, batch_size=config.batch_size))
    batch = next(data)  # warm-up: threads start, autotuning begins
    for _ in range(3):
        next(data)
    batches, took = _timed(lambda: next(data), seconds, 5)
    input_rate = batches * config.batch_size / took

    progress(f"{config.name}: model")
    tf.keras.utils.set_random_seed(config.seed)
    model = build_model(config, train_set.skeleton.num_landmarks)
    model.compile(
        optimizer=make_optimizer(config, 1000), loss=stack_losses(config.model.num_stacks)
    )
    images, targets = batch
    model.train_on_batch(images, targets)  # traces the training step
    model.train_on_batch(images, targets)
    steps, took = _timed(lambda: model.train_on_batch(images, targets), seconds, 2)
    return Row(
        config.name,
        f"{config.dataset.name}" + (" + mix" if config.dataset.mix else ""),
        config.batch_size,
        config.input_size,
        input_rate,
        steps / took,
        demo,
        load_before,
        os.getloadavg()[0],
    )


def table(rows: list[Row], seconds: float) -> str:
    cpu = cpu_name()
    lines = [
        "# Input pipeline against training speed",
        "",
        f"CPU: {os.cpu_count()} cores ({cpu}), TensorFlow on CPU; each side timed alone for "
        f"{seconds:g} s after a warm-up, in one run. Load average (1 min) before and after each "
        "row: other jobs on the machine slow both sides, so read the ratio.",
        "",
        "Made by `python -m benchmarks.input_pipeline " + " ".join(sys.argv[1:]) + "`.",
        "",
        "| config | data | batch | input px | input images/s | model steps/s | model images/s "
        "| input / model | load before, after |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        verdict = "" if not r.demo else " ok" if r.ratio >= TARGET else f" below {TARGET}x"
        lines.append(
            f"| {r.name} | {r.dataset} | {r.batch} | {r.input_size} | {r.input_images_s:.1f} | "
            f"{r.model_steps_s:.3g} | {r.model_images_s:.1f} | {r.ratio:.1f}x{verdict} | "
            f"{r.load_before:.1f}, {r.load_after:.1f} |"
        )
    lines += [
        "",
        f"Bar: input at least {TARGET}x the model's rate for the demo configs (all rows but "
        "the paper's). The paper's row (mpii_binary_hpm) reads data/real_pose with the MPII "
        "reader, since MPII is not on this machine: 320x320 JPEG crops, where MPII's "
        "1280x720 frames take longer to decode. Its model rate is this CPU's; a GPU trains "
        "far faster, and the input then needs more cores (see docs/training.md, Training at scale).",
    ]
    for r in rows:
        if not r.demo and r.name.startswith("mpii"):
            per_core = r.input_images_s / (os.cpu_count() or 1)
            lines += [
                "",
                f"{r.name}: {per_core:.0f} input images/s per core here (the rate over this "
                "machine's cores, which other jobs shared: a free core does at least this). "
                "Feeding docs/training.md's GPU estimate of 100 to 600 images/s would take about "
                f"{max(1, round(100 / per_core))} to {max(1, round(600 / per_core))} such cores, "
                "more for MPII's larger frames (an estimate, not a measurement).",
            ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.input_pipeline", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--config",
        action="append",
        default=None,
        help="a config to measure (repeatable; default: the demo configs and the paper's)",
    )
    p.add_argument(
        "--seconds", type=float, default=20.0, help="timed seconds per side and config (default 20)"
    )
    p.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import training  # noqa: F401 - TF_USE_LEGACY_KERAS before TensorFlow loads

    chosen = (
        CONFIGS
        if not args.config
        else [
            next(((c, o, d) for c, o, d in CONFIGS if Path(c) == Path(want)), (want, [], False))
            for want in args.config
        ]
    )
    rows = []
    for i, (path, overrides, demo) in enumerate(chosen, 1):
        rows.append(
            measure(
                path,
                overrides,
                demo,
                args.seconds,
                lambda what, i=i: print(f"[{i}/{len(chosen)}] {what}", file=sys.stderr, flush=True),
            )
        )
    text = table(rows, args.seconds)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
