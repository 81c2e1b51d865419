"""Training landmark models: what :class:`LandmarksTask` adds to the shared fit loop.

The data are a landmark reader's records (``dataset.mix`` adds other sets, or the training
set's own hard poses again); the targets are Gaussian heatmaps (:class:`edge.codec.HeatmapCodec`)
of augmented crops; the network is the hourglass with one heatmap per landmark, trained with
MSE (or BCE for Sigmoid heatmaps) on every stack; each epoch ends with the validation split
scored by :func:`training.landmarks.evaluate.predict_dataset`, the same code path as
``python -m training.evaluate``.
"""

from __future__ import annotations

from edge.metadata import LandmarkMetadata

from ..config import ConfigError, TrainConfig
from ..predictor import KerasPredictor
from ..scoring import PROTOCOLS
from ..task import EvaluateOptions, Task, TaskData, metadata_fields, network_options


def build_model(config: TrainConfig, num_landmarks: int):
    """The config's hourglass with ``num_landmarks`` heatmaps per stack."""
    from ..models import build_hourglass

    m = config.model
    return build_hourglass(
        **network_options(config),
        num_landmarks=num_landmarks,
        binary_skip=m.binary_skip,
        binary_head=m.binary_head,
        heatmap_activation=m.heatmap_activation,
        blocks_per_level=m.blocks_per_level,
    )


def landmark_metadata(
    config: TrainConfig, skeleton_name: str, extra: dict | None = None
) -> LandmarkMetadata:
    return LandmarkMetadata.for_skeleton(
        skeleton_name,
        **metadata_fields(config),
        heatmap_sigma=float(config.sigma),
        refine=config.refine,
        extra=extra or {},
    )


def _mixed(first, entries: list):
    """``first`` with the ``dataset.mix`` entries added; an entry without a ``name`` is
    ``first`` itself again (with its ``select`` and ``repeat``), so a config can repeat
    the training set's own hard poses whatever ``dataset.path`` points at."""
    from ..data.base import MixedDataset, open_dataset
    from ..data.select import select

    parts, repeats = [first], [1]
    for entry in entries:
        if not isinstance(entry, dict):
            raise ConfigError(f"dataset.mix entries are mappings, got {entry!r}")
        unknown = set(entry) - {"name", "path", "split", "options", "repeat", "select"}
        if unknown:
            raise ConfigError(f"unknown key(s) {sorted(unknown)} in dataset.mix entry {entry!r}")
        if "name" in entry:
            part = open_dataset(
                entry["name"],
                entry.get("path"),
                split=entry.get("split", "train"),
                **entry.get("options", {}),
            )
        elif set(entry) & {"path", "split", "options"}:
            raise ConfigError(
                f"dataset.mix entry {entry!r} has no name: without one it is the "
                "training set again, so path, split and options do not apply"
            )
        else:
            part = first
        if "select" in entry:  # e.g. {raised_arm: 90}: only the poses to see more often
            part = select(part, entry["select"])
            what = entry.get("name", "the training set")
            print(
                f"dataset.mix {what}: {len(part)} records selected by {entry['select']}", flush=True
            )
        parts.append(part)
        repeats.append(int(entry.get("repeat", 1)))
    return MixedDataset(parts, repeats)


def open_training_set(config: TrainConfig):
    """The config's training set: its dataset, with the ``dataset.mix`` entries mixed in."""
    from ..data.base import open_dataset

    ds_cfg = config.dataset
    train_set = open_dataset(
        ds_cfg.name,
        ds_cfg.path,
        split=ds_cfg.train_split,
        **{**ds_cfg.options, **ds_cfg.train_options},
    )
    return _mixed(train_set, ds_cfg.mix) if ds_cfg.mix else train_set


def input_pipeline(
    config: TrainConfig, train_set, *, batch_size: int, shard: tuple[int, int] = (0, 1)
):
    """The config's tf.data training stream over ``train_set`` (see training.data.pipeline)."""
    from edge.codec import HeatmapCodec

    from ..data.augment import Normalisation
    from ..data.pipeline import training_dataset

    codec = HeatmapCodec(
        (config.input_size,) * 2,
        (config.heatmap_size,) * 2,
        sigma=config.sigma,
        refine=config.refine,
    )
    norm = config.normalisation
    return training_dataset(
        train_set,
        codec=codec,
        normalise=Normalisation(norm.color, tuple(norm.mean), tuple(norm.std)),
        augment=config.augment,
        batch_size=batch_size,
        num_stacks=config.model.num_stacks,
        seed=config.seed,
        workers=config.workers,
        deterministic=config.deterministic,
        shard=shard,
        teacher=config.teacher_scores,
    )


def validation_score(config: TrainConfig, val_set, model) -> dict[str, float]:
    """``{"val_pckh": ...}``: the per-epoch validation (same split, limit and protocol) of
    ``model``."""
    from ..scoring import score
    from .evaluate import predict_dataset

    metadata = landmark_metadata(config, val_set.skeleton.name)
    preds = predict_dataset(
        KerasPredictor(model, metadata),
        val_set,
        batch_size=config.val_batch_size,
        limit=config.dataset.val_limit,
        refine=config.refine,
    )
    result = score(
        preds, PROTOCOLS[config.dataset.val_name or config.dataset.name], val_set.skeleton
    )
    # "pckh@0.5" -> "val_pckh": TensorBoard tags allow no "@".
    return {f"val_{result.headline.split('@')[0]}": float(result.values[result.headline])}


class LandmarksTask(Task):
    """Pose and face landmarks (config ``task: landmarks``)."""

    name = "landmarks"
    eval_datasets = frozenset(PROTOCOLS)

    def open_data(self, config: TrainConfig) -> TaskData:
        from ..data.base import open_dataset

        ds_cfg = config.dataset
        train_set = open_training_set(config)
        val_set = open_dataset(
            ds_cfg.val_name or ds_cfg.name,
            ds_cfg.val_path or ds_cfg.path,
            split=ds_cfg.val_split,
            **{**ds_cfg.options, **ds_cfg.val_options},
        )
        skeleton = train_set.skeleton
        if val_set.skeleton.name != skeleton.name:
            raise ConfigError(
                f"the validation set's landmarks ({val_set.skeleton.name}) are not "
                f"the training set's ({skeleton.name})"
            )
        if config.augment.enabled and config.augment.flip_prob > 0 and not skeleton.flip_pairs:
            raise ConfigError(
                f"{skeleton.name} has no left/right pairs, so a mirrored crop would "
                "mislabel its points: set augment.flip_prob: 0"
            )
        return TaskData(
            train_set, val_set, skeleton.num_landmarks, output_names=tuple(skeleton.landmarks)
        )

    def build_model(self, config: TrainConfig, outputs: int):
        return build_model(config, outputs)

    def losses(self, config: TrainConfig) -> list:
        from ..losses import stack_losses

        return stack_losses(config.model.num_stacks, config.loss)

    def input_stream(
        self, config: TrainConfig, train_set, *, batch_size: int, shard: tuple[int, int] = (0, 1)
    ):
        return input_pipeline(config, train_set, batch_size=batch_size, shard=shard)

    def validation_score(self, config: TrainConfig, val_set, model) -> dict[str, float]:
        return validation_score(config, val_set, model)

    def metadata(
        self, config: TrainConfig, data: TaskData, extra: dict | None = None
    ) -> LandmarkMetadata:
        return landmark_metadata(config, data.train.skeleton.name, extra)

    def evaluate(self, options: EvaluateOptions) -> int:
        from .evaluate import evaluate

        return evaluate(options)
