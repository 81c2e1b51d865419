"""The seam between what every task shares and what differs per task.

A *task* is what a model learns: landmarks (:mod:`training.landmarks`), part segmentation
(:mod:`training.segmentation`), and next a person/face finder. Everything around it is shared
and written once: the fit loop and run folder (:mod:`training.fit`, :mod:`training.run_folder`:
start, resume, checkpoints, history, summary, distribution), the trained model on disk
(:mod:`training.artifacts`), the prediction call (:mod:`training.predictor`) and the command
lines (``python -m training.train`` and ``python -m training.evaluate``, thin layers over
:class:`EvaluateOptions` and :class:`training.fit.FitOptions`).

What differs is a :class:`Task`: its data, its network head and losses, its per-epoch
validation scores, the metadata its models carry, and how a trained model is scored and
reported. :mod:`training.tasks` lists the tasks by name.

Nothing here imports TensorFlow; the tasks import it inside their methods.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edge.backends.base import DEFAULT_THREADS

if TYPE_CHECKING:
    from edge.metadata import LandmarkMetadata

    from .config import TrainConfig


@dataclass
class TaskData:
    """A task's training and validation sets, opened from a config."""

    train: Any  # a dataset: len(), .skipped (training.data.base.SkipCounter)
    val: Any
    outputs: int  # channels of the network's head: landmarks, or classes
    label: str = ""  # what the run trains, for its first line, e.g. "segmentation, 11 classes"
    # The head's channels by name (a landmark model's landmarks), where they have names:
    # ``init_from`` a model of another skeleton copies the head's channels for the names both
    # have (training.fit.init_weights).
    output_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class EvaluateOptions:
    """What ``python -m training.evaluate`` was asked: a model scored on a dataset.

    The command line fills it (its ``--help`` documents every field); a task's
    :meth:`Task.evaluate` reads the fields it has a use for.
    """

    model: Path  # .keras (with its sidecar), a SavedModel folder, or a converted .tflite
    dataset: str  # a reader's name; decides the task and the protocol
    data: str | None = None  # annotation file or dataset root
    split: str | None = None  # None: the benchmark's own test split
    options: dict = field(default_factory=dict)  # reader options
    flip_test: bool = False
    limit: int | None = None
    batch_size: int = 32
    backend: str = "auto"
    threads: int = DEFAULT_THREADS
    refine: str | None = None
    protocols: tuple[str, ...] = ()  # empty: the dataset's own protocol
    out: Path | None = None  # folder for metrics.json and pictures; None: print only
    pictures: int = 6
    baseline_split: str | None = None
    baseline_limit: int | None = None  # None: training.validation's BASELINE_LIMIT
    crop: str = "exact"  # or "jitter"
    jitter_seed: int = 0
    sources: Path | None = None
    # Record the tracker's lost cut measured here in the model (training.lost_cut).
    calibrate_tracking: bool = False

    def batch_progress(self, samples: int) -> Callable[[Iterable], Iterable]:
        """A progress bar over the batches that score ``samples`` samples, named after the
        model (what every task's scoring loop takes as ``progress``)."""
        from tqdm import tqdm

        batches = -(-samples // self.batch_size)
        return lambda it: tqdm(
            it, total=batches, unit="batch", desc=f"evaluating {self.model.name}"
        )

    def write_metrics(self, report: dict) -> Path:
        """``report`` as ``<out>/metrics.json`` (the folder made if needed); its path."""
        assert self.out is not None, "no --out folder to write metrics.json to"
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "metrics.json"
        path.write_text(json.dumps(report, indent=2))
        return path


def metadata_fields(config: TrainConfig) -> dict[str, Any]:
    """The metadata every task's model carries, from its config: input and heatmap sizes,
    the input normalisation, the name, the weights' format and the crop margin. A task's
    metadata constructor (``LandmarkMetadata.for_skeleton``, ``for_parts``, ``for_finder``)
    adds what only it has."""
    h, norm = config.heatmap_size, config.normalisation
    return {
        "input_size": (config.input_size, config.input_size),
        "heatmap_size": (h, h),
        "input_mean": tuple(float(v) for v in norm.mean),
        "input_std": tuple(float(v) for v in norm.std),
        "input_color": norm.color,
        "model_name": config.name,
        "weights_format": "lce" if config.model.binary else "float",
        "box_margin": config.box_margin,
    }


def network_options(config: TrainConfig) -> dict[str, Any]:
    """The hourglass options every task's network builder takes from ``config.model``
    (``build_hourglass``, ``build_segmenter``, ``build_finder``); a task adds the options
    only its head has."""
    m = config.model
    return {
        "num_stacks": m.num_stacks,
        "depth": m.depth,
        "features": m.features,
        "input_size": config.input_size,
        "block": m.block,
        "binary": m.binary,
        "weight_scale": m.weight_scale,
        "stem_channels": m.stem_channels,
        "stem_block_channels": m.stem_block_channels,
    }


class Task(abc.ABC):
    """What one task adds to the shared training and evaluation (see the module docstring).

    Implementations hold no state: one instance serves every config.
    """

    name: ClassVar[str]  # the config's ``task:`` value
    # The dataset names ``python -m training.evaluate --dataset`` scores with this task.
    eval_datasets: ClassVar[frozenset[str]] = frozenset()
    # Whether a run may use --strategy multiworker (one input shard per worker).
    multiworker: ClassVar[bool] = True

    @abc.abstractmethod
    def open_data(self, config: TrainConfig) -> TaskData:
        """The training and validation sets (``dataset.mix`` included), checked against
        each other; config errors are one-line :class:`training.config.ConfigError`."""

    @abc.abstractmethod
    def build_model(self, config: TrainConfig, outputs: int):
        """A fresh Keras model: the config's hourglass with this task's head (one output per
        stack, the last the prediction)."""

    @abc.abstractmethod
    def losses(self, config: TrainConfig) -> list:
        """One Keras loss per stack."""

    @abc.abstractmethod
    def input_stream(
        self, config: TrainConfig, train_set, *, batch_size: int, shard: tuple[int, int] = (0, 1)
    ):
        """The tf.data training stream: endless ``(images, targets per stack)`` batches of
        ``batch_size``; ``shard`` = (this worker's index, workers) of a multi-worker run."""

    @abc.abstractmethod
    def validation_score(self, config: TrainConfig, val_set, model) -> dict[str, float]:
        """The per-epoch validation of ``model`` on ``val_set``, as ``{"val_<name>": value}``
        (history.jsonl columns; TensorBoard tags, so no "@")."""

    @abc.abstractmethod
    def metadata(
        self, config: TrainConfig, data: TaskData, extra: dict | None = None
    ) -> LandmarkMetadata:
        """The record a trained model carries (the sidecar, then the .tflite's metadata)."""

    @abc.abstractmethod
    def evaluate(self, options: EvaluateOptions) -> int:
        """Score a trained model on ``options.dataset``, print the tables and, with
        ``options.out``, write metrics.json and pictures; returns the exit status."""
