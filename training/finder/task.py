"""Training a finder: what :class:`FinderTask` adds to the shared fit loop.

Config ``task: finder``, dataset ``finder`` (the label tool's whole frames,
:mod:`training.finder.data`): each frame letterboxed and augmented as a whole (scale, shift,
flip and the photometric draws), its targets made by :class:`edge.finder_codec.FinderCodec`
(the device decodes with the same class), the hourglass with a finder head trained with the
focal + L1 loss on every stack (:mod:`training.models.finder`), and each epoch's validation
scored by :mod:`.evaluate` (recall and precision at IoU 0.5 for subjects taller than a
sixth of the frame), as ``python -m training.evaluate --dataset finder`` reports them. The
model's record carries the classes and the codec's decoding (task ``finder``).
"""

from __future__ import annotations

import numpy as np

from edge.finder_codec import FinderCodec
from edge.metadata import LandmarkMetadata

from ..config import ConfigError, TrainConfig
from ..data.base import RecordLoader
from ..predictor import KerasPredictor
from ..task import EvaluateOptions, Task, TaskData, metadata_fields, network_options
from .data import FinderDataset, MixedFinderDataset

DATASETS = ("finder",)


def finder_codec(config: TrainConfig, num_classes: int) -> FinderCodec:
    """The codec of a config: the hourglass's quarter-size output grid, the config's
    heatmap sigma rule and decoding defaults."""
    f = config.finder
    return FinderCodec(
        input_size=config.input_size,
        stride=config.input_size // config.heatmap_size,
        num_classes=num_classes,
        sigma_scale=f.sigma_scale,
        min_sigma=f.min_sigma,
        min_score=f.min_score,
        top_k=f.top_k,
        nms_iou=f.nms_iou,
    )


def open_sets(config: TrainConfig) -> tuple[FinderDataset, FinderDataset]:
    """The training set (``dataset.mix`` entries added: more ``finder`` folders, each with
    ``path``, optional ``split``, ``options`` and ``repeat``) and the validation set."""
    ds = config.dataset
    if ds.name not in DATASETS:
        raise ConfigError(
            f"a finder trains on dataset 'finder' (python -m training.label person-finder or "
            f"face-finder), got {ds.name!r}"
        )
    train = FinderDataset(ds.path, split=ds.train_split, **{**ds.options, **ds.train_options})
    if ds.mix:
        parts, repeats = [train], [1]
        for entry in ds.mix:
            if not isinstance(entry, dict) or entry.get("name", "finder") not in DATASETS:
                raise ConfigError(
                    f"dataset.mix entries of a finder are finder folders, got {entry!r}"
                )
            unknown = set(entry) - {"name", "path", "split", "options", "repeat"}
            if unknown or "path" not in entry:
                raise ConfigError(
                    f"a finder's dataset.mix entry needs a path and takes split, options and "
                    f"repeat, got {entry!r}"
                )
            parts.append(
                FinderDataset(
                    entry["path"], split=entry.get("split", "train"), **entry.get("options", {})
                )
            )
            repeats.append(int(entry.get("repeat", 1)))
        train = MixedFinderDataset(parts, repeats)
    val = FinderDataset(
        ds.val_path or ds.path, split=ds.val_split, **{**ds.options, **ds.val_options}
    )
    if train.classes != val.classes:
        raise ConfigError(
            f"the validation set finds {', '.join(val.classes)}, the training set "
            f"{', '.join(train.classes)}"
        )
    return train, val


class _Loader(RecordLoader):
    """tf.data's per-record work: read the frame, draw the augmentation, encode the target."""

    def __init__(self, dataset: FinderDataset, config: TrainConfig) -> None:
        from ..data.augment import Normalisation

        self.codec = finder_codec(config, len(dataset.classes))
        s, g = config.input_size, self.codec.grid
        empty = (
            np.zeros((s, s, 3), np.float32),
            np.zeros((g, g, self.codec.target_channels), np.float32),
        )
        super().__init__(dataset, config.seed, empty)
        norm = config.normalisation
        self.config = config
        self.normalise = Normalisation(norm.color, tuple(norm.mean), tuple(norm.std))

    def make(self, sample, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        from ..data.augment import sample_params
        from ..data.base import iter_samples
        from .data import MOSAIC_TILES, make_finder_example, mosaic_crop

        mosaic = self.config.finder.mosaic_prob
        # No draw without mosaics, so a recipe without them augments exactly as before.
        if mosaic > 0 and rng.random() < mosaic:
            # Three more frames drawn at random (a corrupt one is skipped and counted, and
            # the frames read stand in for it), each with its own augmentation draw.
            others = rng.integers(0, len(self.dataset), MOSAIC_TILES - 1)
            samples = [sample, *iter_samples(self.dataset, others)]
            samples += [samples[i % len(samples)] for i in range(MOSAIC_TILES - len(samples))]
            draws = [sample_params(rng, self.config.augment) for _ in samples]
            crop, objects = mosaic_crop(samples, self.codec.input_size, draws)
            return self.normalise(crop), self.codec.encode(objects)
        return make_finder_example(
            sample,
            codec=self.codec,
            normalise=self.normalise,
            params=sample_params(rng, self.config.augment),
        )


def training_dataset(
    dataset: FinderDataset,
    config: TrainConfig,
    batch_size: int | None = None,
    shard: tuple[int, int] = (0, 1),
):
    """An endless shuffled stream of ``(images, (targets,) * num_stacks)`` batches."""
    import tensorflow as tf

    from ..data.pipeline import record_batches

    ds = record_batches(
        _Loader(dataset, config),
        tf.float32,
        seed=config.seed,
        batch_size=batch_size or config.batch_size,
        num_stacks=config.model.num_stacks,
        workers=config.workers,
        deterministic=config.deterministic,
        shard=shard,
    )
    return ds.prefetch(tf.data.AUTOTUNE)


def finder_metadata(
    config: TrainConfig, classes: tuple[str, ...], extra: dict | None = None
) -> LandmarkMetadata:
    return LandmarkMetadata.for_finder(
        classes, finder_codec(config, len(classes)), **metadata_fields(config), extra=extra or {}
    )


def build_model(config: TrainConfig, num_classes: int):
    from ..models import build_finder

    m = config.model
    return build_finder(
        num_classes=num_classes,
        **network_options(config),
        binary_skip=m.binary_skip,
        binary_head=m.binary_head,
        blocks_per_level=m.blocks_per_level,
    )


def validation_score(config: TrainConfig, val_set: FinderDataset, model) -> dict[str, float]:
    """``{"val_recall", "val_precision", "val_f1"}`` in percent (the same scoring as
    ``python -m training.evaluate --dataset finder``)."""
    from .evaluate import score_dataset

    metadata = finder_metadata(config, val_set.classes)
    result = score_dataset(
        KerasPredictor(model, metadata),
        val_set,
        min_height=config.finder.min_height,
        iou=config.finder.iou,
        batch_size=config.val_batch_size,
        limit=config.dataset.val_limit,
    )
    values = result.values()
    return {
        f"val_{key}": 100 * float(np.nan_to_num(values[key]))
        for key in ("recall", "precision", "f1")
    }


class FinderTask(Task):
    """Every person or face in a whole frame (config ``task: finder``)."""

    name = "finder"
    eval_datasets = frozenset(DATASETS)
    # Its stream is record_batches' with no sharding options set: one machine (default or
    # mirrored), as segmentation's.
    multiworker = False

    def open_data(self, config: TrainConfig) -> TaskData:
        if config.model.heatmap_activation != "linear" or config.loss != "mse":
            raise ConfigError(
                "a finder's heads are linear (heatmap logits and regressions) and its loss "
                "is its own (focal + L1): leave model.heatmap_activation and loss unset"
            )
        train, val = open_sets(config)
        if train.classes != tuple(config.finder.classes):
            raise ConfigError(
                f"finder.classes is {', '.join(config.finder.classes)} but {config.dataset.path} "
                f"labels {', '.join(train.classes)}"
            )
        return TaskData(
            train, val, len(train.classes), label=f"finder of {', '.join(train.classes)}"
        )

    def build_model(self, config: TrainConfig, outputs: int):
        return build_model(config, outputs)

    def losses(self, config: TrainConfig) -> list:
        from ..models import finder_losses

        return finder_losses(
            config.model.num_stacks, len(config.finder.classes), config.finder.regression_weight
        )

    def input_stream(
        self, config: TrainConfig, train_set, *, batch_size: int, shard: tuple[int, int] = (0, 1)
    ):
        return training_dataset(train_set, config, batch_size, shard)

    def validation_score(self, config: TrainConfig, val_set, model) -> dict[str, float]:
        return validation_score(config, val_set, model)

    def metadata(
        self, config: TrainConfig, data: TaskData, extra: dict | None = None
    ) -> LandmarkMetadata:
        return finder_metadata(config, data.train.classes, extra)

    def evaluate(self, options: EvaluateOptions) -> int:
        from .evaluate import evaluate

        return evaluate(options)
