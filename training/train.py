"""Train a (binary) hourglass model from a YAML config: ``python -m training.train``.

    python -m training.train --config configs/synthetic_pose.yaml --out runs/synth
    python -m training.train --config configs/mpii_binary_hpm.yaml dataset.path=/data/mpii
    python -m training.train --out runs/synth --resume            # after a crash or a kill

The command line only: the config's ``task:`` picks a :class:`training.task.Task`
(:mod:`training.tasks`), and :func:`training.fit.fit` trains it. The run folder
(:mod:`training.run_folder`) gets ``config.yaml`` (the resolved config), ``checkpoints/``
(model and optimizer state after every epoch), ``history.jsonl`` (one line per epoch: loss,
validation score, seconds), ``logs/`` (TensorBoard), and at the end ``model.keras`` with its
record ``model.landmarks.json``, which ``python -m converters.convert`` and ``python -m
training.evaluate`` read.

``--strategy multiworker`` trains on several processes or machines (see
:mod:`training.distribute` and docs/training.md, "Training at scale"): the chief alone writes
the run folder, and a ``backup/`` of the last finished epoch lets a killed worker rejoin
when it is restarted with the same command.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from edge.cli import ArgumentParser, run_cli
from edge.errors import EdgeError

from .config import ConfigError, TrainConfig, load_config, make_config, read_yaml
from .distribute import STRATEGIES
from .fit import FitOptions, fit
from .tasks import task_for_config

__all__ = ["TrainOptions", "build_parser", "main", "run"]


@dataclass(frozen=True)
class TrainOptions:
    """What ``python -m training.train`` was asked (its --help documents each)."""

    config: Path | None = None  # None: with resume, the run folder's own config.yaml
    overrides: tuple[str, ...] = ()  # KEY=VALUE config overrides
    out: Path | None = None  # the run folder; None: runs/<config name>
    resume: bool = False
    strategy: str = "default"
    verbose: int | str = "auto"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainOptions:
        verbose = args.verbose if args.verbose == "auto" else int(args.verbose)
        return cls(
            args.config, tuple(args.overrides), args.out, args.resume, args.strategy, verbose
        )


# The top-level packages of the train extra (pyproject.toml).
TRAIN_DEPENDENCIES = {"tensorflow", "tf_keras", "larq", "larq_compute_engine", "yaml", "keras"}


def resolve_config(options: TrainOptions) -> tuple[TrainConfig, Path]:
    """The config (the given file, else the resumed run's own) and the run folder."""
    if options.config is None:
        if not (options.resume and options.out is not None):
            raise ConfigError("--config is required (or --resume with --out of an existing run)")
        saved = options.out / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"nothing to resume: {saved} does not exist")
        config = make_config(read_yaml(saved), list(options.overrides))
    else:
        config = load_config(options.config, list(options.overrides))
    return config, options.out or Path("runs") / config.name


def run(
    config: TrainConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    strategy: str = "default",
    verbose: int | str = "auto",
) -> dict:
    """Train (or continue) one run of the config's task; return its summary."""
    return fit(task_for_config(config), config, run_dir, FitOptions(resume, strategy, verbose))


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m training.train",
        description="Train a binary hourglass landmark model from a YAML config. Checkpoints "
        "after every epoch; --resume continues a killed run without losing finished epochs.",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML config (see configs/); with --resume, defaults to the run's own config.yaml",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides with dotted keys, e.g. epochs=5 optimizer.name=adam "
        "dataset.path=/data/mpii",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="run folder (default: runs/<config name>)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint in --out (model and optimizer state)",
    )
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="default",
        help="tf.distribute strategy: default (one device), mirrored (all local GPUs, "
        "or all logical CPUs), multiworker (the same command on every machine, each "
        "with its own TF_CONFIG; --out on a folder they all share; a killed worker "
        "restarted with its command continues from the last epoch's backup). "
        "batch_size is the global batch in every case",
    )
    p.add_argument(
        "--verbose",
        choices=("auto", "0", "1", "2"),
        default="auto",
        help="Keras progress output: 1 a progress bar, 2 one line per epoch, 0 none",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    options = TrainOptions.from_args(build_parser().parse_args(argv))
    state = {"run_dir": options.out}

    def body() -> int:
        try:
            config, state["run_dir"] = resolve_config(options)
            summary = run(
                config,
                state["run_dir"],
                resume=options.resume,
                strategy=options.strategy,
                verbose=options.verbose,
            )
        except ImportError as exc:
            # Only a missing training dependency is the user's to install; any other failed
            # import is a bug to see in full.
            if (exc.name or "").split(".")[0] not in TRAIN_DEPENDENCIES:
                raise
            raise EdgeError(
                f"{exc} (install the training extra: pip install -e '.[train]')"
            ) from None
        except EdgeError:
            raise
        except Exception as exc:
            import tensorflow as tf

            if isinstance(exc, tf.errors.OpError):  # e.g. a reader failing inside tf.data
                raise EdgeError(exc.message.splitlines()[0]) from None
            raise
        _report(summary)
        return 0

    return run_cli(
        body,
        interrupted=lambda: (
            "interrupted; continue with: python -m "
            f"training.train --out {state['run_dir']} --resume"
        ),
    )


def _report(summary: dict) -> None:
    # The saved model's own score: the blended or averaged weights' when the run made them.
    val = summary.get("blended") or summary.get("averaged") or summary["final"]
    val = {k: v for k, v in val.items() if k.startswith("val_") and k != "val_seconds"}
    shown = ", ".join(
        f"{k} {v:.2f}" for k, v in val.items() if isinstance(v, float) and math.isfinite(v)
    )
    if summary["model"] is None:
        print(
            f"{summary['task']} done, weights sha256 {summary['weights_sha256']} "
            "(the chief saves the model)"
        )
        return
    print(f"saved {summary['model']}" + (f" ({shown})" if shown else ""))
    if summary["replicas"] > 1 or summary["task"] != "worker 0":
        print(f"weights sha256 {summary['weights_sha256']}")


if __name__ == "__main__":
    sys.exit(main())
