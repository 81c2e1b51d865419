"""Training a part segmenter: what :class:`SegmentationTask` adds to the shared fit loop.

Config ``task: segmentation``. The run folder and ``--resume`` are every task's
(:mod:`training.fit`); here: the parts readers (``dataset.mix`` entries need a ``name``),
the landmark augmentation applied to an image and its class map, the hourglass with one logit
map per class, softmax cross-entropy on every stack, and each epoch's validation scored by
:mod:`.evaluate` (mIoU and Helen's overall F1 on image pixels, as ``python -m
training.evaluate`` reports them). The model's record carries the class names and colours.
"""

from __future__ import annotations

import numpy as np

from edge.metadata import LandmarkMetadata

from ..config import ConfigError, TrainConfig
from ..data.base import RecordLoader
from ..predictor import KerasPredictor
from ..task import EvaluateOptions, Task, TaskData, metadata_fields, network_options
from .data import PARTS_DATASETS, MixedPartsDataset, PartsDataset, open_parts_dataset


def open_sets(config: TrainConfig) -> tuple[PartsDataset, PartsDataset]:
    ds = config.dataset
    train = open_parts_dataset(
        ds.name, ds.path, split=ds.train_split, **{**ds.options, **ds.train_options}
    )
    if ds.mix:
        parts, repeats = [train], [1]
        for entry in ds.mix:
            if not isinstance(entry, dict) or "name" not in entry:
                raise ConfigError(f"dataset.mix entries need a name, got {entry!r}")
            parts.append(
                open_parts_dataset(
                    entry["name"],
                    entry.get("path"),
                    split=entry.get("split", "train"),
                    **entry.get("options", {}),
                )
            )
            repeats.append(int(entry.get("repeat", 1)))
        train = MixedPartsDataset(parts, repeats)
    val = open_parts_dataset(
        ds.name, ds.val_path or ds.path, split=ds.val_split, **{**ds.options, **ds.val_options}
    )
    return train, val


class _Loader(RecordLoader):
    """tf.data's per-record work: read, draw the augmentation, crop image and class map."""

    def __init__(self, dataset: PartsDataset, config: TrainConfig) -> None:
        from ..data.augment import Normalisation

        s, h = config.input_size, config.heatmap_size
        super().__init__(
            dataset, config.seed, (np.zeros((s, s, 3), np.float32), np.zeros((h, h), np.int32))
        )
        norm = config.normalisation
        self.config = config
        self.normalise = Normalisation(norm.color, tuple(norm.mean), tuple(norm.std))

    def make(self, sample, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        from ..data.augment import sample_params
        from .augment import make_parts_example

        return make_parts_example(
            sample,
            input_size=self.config.input_size,
            label_size=self.config.heatmap_size,
            labels=self.dataset.labels,
            normalise=self.normalise,
            params=sample_params(rng, self.config.augment),
        )


def training_dataset(dataset: PartsDataset, config: TrainConfig, batch_size: int | None = None):
    """An endless shuffled stream of ``(images, (class ids,) * num_stacks)`` batches
    (``batch_size`` None: the config's)."""
    import tensorflow as tf

    from ..data.pipeline import record_batches

    ds = record_batches(
        _Loader(dataset, config),
        tf.int32,
        seed=config.seed,
        batch_size=batch_size or config.batch_size,
        num_stacks=config.model.num_stacks,
        workers=config.workers,
    )
    return ds.prefetch(tf.data.AUTOTUNE)


def parts_metadata(config: TrainConfig, labels: str, extra: dict | None = None) -> LandmarkMetadata:
    return LandmarkMetadata.for_parts(labels, **metadata_fields(config), extra=extra or {})


def build_model(config: TrainConfig, num_classes: int):
    from ..models import build_segmenter

    return build_segmenter(num_classes=num_classes, **network_options(config))


def validation_score(config: TrainConfig, val_set: PartsDataset, model) -> dict[str, float]:
    """``{"val_miou": ..., "val_overall_f1": ...}`` in percent: the per-epoch validation of
    ``model`` (the same scoring as ``python -m training.evaluate``)."""
    from .evaluate import score_dataset

    metadata = parts_metadata(config, val_set.labels.name)
    result = score_dataset(
        KerasPredictor(model, metadata),
        val_set,
        batch_size=config.val_batch_size,
        limit=config.dataset.val_limit,
    )
    values = result.values()
    return {"val_miou": 100 * values["miou"], "val_overall_f1": 100 * values["overall_f1"]}


class SegmentationTask(Task):
    """Face-part segmentation (config ``task: segmentation``)."""

    name = "segmentation"
    eval_datasets = frozenset(PARTS_DATASETS)
    # The parts stream has no per-worker shards yet: one machine (default or mirrored).
    multiworker = False

    def open_data(self, config: TrainConfig) -> TaskData:
        train, val = open_sets(config)
        classes = train.labels.num_classes
        return TaskData(train, val, classes, label=f"segmentation, {classes} classes")

    def build_model(self, config: TrainConfig, outputs: int):
        return build_model(config, outputs)

    def losses(self, config: TrainConfig) -> list:
        from ..models import segmentation_losses

        return segmentation_losses(config.model.num_stacks)

    def input_stream(
        self, config: TrainConfig, train_set, *, batch_size: int, shard: tuple[int, int] = (0, 1)
    ):
        return training_dataset(train_set, config, batch_size)

    def validation_score(self, config: TrainConfig, val_set, model) -> dict[str, float]:
        return validation_score(config, val_set, model)

    def metadata(
        self, config: TrainConfig, data: TaskData, extra: dict | None = None
    ) -> LandmarkMetadata:
        return parts_metadata(config, data.train.labels.name, extra)

    def evaluate(self, options: EvaluateOptions) -> int:
        from .evaluate import evaluate

        return evaluate(options)
