"""Training a part segmenter: ``python -m training.train`` with ``task: segmentation``.

The run folder is a landmark run's (``config.yaml``, ``checkpoints/``, ``history.jsonl``,
``model.keras`` and its ``model.landmarks.json`` record, here with the class names and
colours), and ``--resume`` works the same way. The loss is softmax cross-entropy on every
stack; each epoch ends with the validation split scored by :mod:`.evaluate` (mIoU and
Helen's overall F1 on image pixels, as ``python -m training.evaluate`` reports them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..config import ConfigError, TrainConfig, dump_config
from ..data.base import RecordLoader
from .data import MixedPartsDataset, PartsDataset, open_parts_dataset


def open_sets(config: TrainConfig) -> tuple[PartsDataset, PartsDataset]:
    ds = config.dataset
    train = open_parts_dataset(ds.name, ds.path, split=ds.train_split,
                               **{**ds.options, **ds.train_options})  # fmt: skip
    if ds.mix:
        parts, repeats = [train], [1]
        for entry in ds.mix:
            if not isinstance(entry, dict) or "name" not in entry:
                raise ConfigError(f"dataset.mix entries need a name, got {entry!r}")
            parts.append(open_parts_dataset(entry["name"], entry.get("path"),
                                            split=entry.get("split", "train"),
                                            **entry.get("options", {})))  # fmt: skip
            repeats.append(int(entry.get("repeat", 1)))
        train = MixedPartsDataset(parts, repeats)
    val = open_parts_dataset(ds.name, ds.val_path or ds.path, split=ds.val_split,
                             **{**ds.options, **ds.val_options})  # fmt: skip
    return train, val


class _Loader(RecordLoader):
    """tf.data's per-record work: read, draw the augmentation, crop image and class map."""

    def __init__(self, dataset: PartsDataset, config: TrainConfig) -> None:
        from ..data.augment import Normalisation

        s, h = config.input_size, config.heatmap_size
        super().__init__(dataset, config.seed,
                         (np.zeros((s, s, 3), np.float32), np.zeros((h, h), np.int32)))  # fmt: skip
        norm = config.normalisation
        self.config = config
        self.normalise = Normalisation(norm.color, tuple(norm.mean), tuple(norm.std))

    def make(self, sample, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        from ..data.augment import sample_params
        from .augment import make_parts_example

        return make_parts_example(
            sample, input_size=self.config.input_size, label_size=self.config.heatmap_size,
            labels=self.dataset.labels, normalise=self.normalise,
            params=sample_params(rng, self.config.augment),
        )  # fmt: skip


def training_dataset(dataset: PartsDataset, config: TrainConfig):
    """An endless shuffled stream of ``(images, (class ids,) * num_stacks)`` batches."""
    import tensorflow as tf

    from ..data.pipeline import record_batches

    ds = record_batches(_Loader(dataset, config), tf.int32, seed=config.seed,
                        batch_size=config.batch_size, num_stacks=config.model.num_stacks,
                        workers=config.workers)  # fmt: skip
    return ds.prefetch(tf.data.AUTOTUNE)


def parts_metadata(config: TrainConfig, labels: str, extra: dict | None = None):
    from edge.metadata import LandmarkMetadata

    h, norm = config.heatmap_size, config.normalisation
    return LandmarkMetadata.for_parts(
        labels, input_size=(config.input_size,) * 2, heatmap_size=(h, h),
        input_mean=tuple(float(v) for v in norm.mean), input_std=tuple(float(v) for v in norm.std),
        input_color=norm.color, model_name=config.name,
        weights_format="lce" if config.model.binary else "float", box_margin=config.box_margin,
        extra=extra or {},
    )  # fmt: skip


def build_model(config: TrainConfig, num_classes: int):
    from ..models import build_segmenter

    m = config.model
    return build_segmenter(num_classes=num_classes, num_stacks=m.num_stacks, depth=m.depth,
                           features=m.features, input_size=config.input_size, block=m.block,
                           binary=m.binary, weight_scale=m.weight_scale)  # fmt: skip


def run(config: TrainConfig, run_dir: Path, *, resume: bool = False, strategy: str = "default",
        verbose: int | str = "auto") -> dict:  # fmt: skip
    """Train (or continue) one segmentation run; return its summary."""
    import tensorflow as tf

    from ..evaluate import KerasPredictor
    from ..models import segmentation_losses
    from ..train import (
        _read_history,
        make_optimizer,
        make_strategy,
        record_epoch,
        refuse_to_overwrite,
        start_weights,
    )
    from .evaluate import score_dataset

    if strategy == "multiworker":
        raise ConfigError("segmentation runs train on one machine: use --strategy default "
                          "or mirrored")  # fmt: skip
    train_set, val_set = open_sets(config)
    labels = train_set.labels
    steps = config.steps_per_epoch or len(train_set) // config.batch_size
    if steps < 1:
        raise ConfigError(f"{len(train_set)} training samples is less than one batch of "
                          f"{config.batch_size}")  # fmt: skip
    ckpt_dir = run_dir / "checkpoints"
    refuse_to_overwrite(run_dir, resume=resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    tf.keras.utils.set_random_seed(config.seed)
    dist = make_strategy(strategy)
    data = training_dataset(train_set, config)
    with dist.scope():
        model = build_model(config, labels.num_classes)
        optimizer = make_optimizer(config, steps)
        model.compile(optimizer=optimizer, loss=segmentation_losses(config.model.num_stacks))
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
        manager = tf.train.CheckpointManager(checkpoint, str(ckpt_dir), max_to_keep=3,
                                             checkpoint_name="epoch")  # fmt: skip
        initial_epoch = start_weights(config, model, checkpoint, ckpt_dir, resume=resume)
    dump_config(config, run_dir / "config.yaml")
    history = _read_history(run_dir, initial_epoch)
    metadata = parts_metadata(config, labels.name)

    class Epoch(tf.keras.callbacks.Callback):
        """Per epoch: time, validation (mIoU, overall F1), checkpoint, history line."""

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs["epoch_seconds"] = time.perf_counter() - self.start
            t0 = time.perf_counter()
            result = score_dataset(KerasPredictor(self.model, metadata), val_set,
                                   batch_size=config.val_batch_size,
                                   limit=config.dataset.val_limit)  # fmt: skip
            values = result.values()
            logs["val_miou"] = 100 * values["miou"]
            logs["val_overall_f1"] = 100 * values["overall_f1"]
            logs["val_seconds"] = time.perf_counter() - t0
            manager.save(checkpoint_number=epoch + 1)
            record_epoch(run_dir, epoch, logs, self.model.optimizer, steps)

    if initial_epoch < config.epochs:
        print(f"training {config.name} (segmentation, {labels.num_classes} classes): "
              f"{len(train_set)} samples, {steps} steps of {config.batch_size} per epoch",
              flush=True)  # fmt: skip
        tensorboard = tf.keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs"),
                                                     update_freq="epoch", profile_batch=0)  # fmt: skip
        fit = model.fit(data, epochs=config.epochs, initial_epoch=initial_epoch,
                        steps_per_epoch=steps, callbacks=[Epoch(), tensorboard], verbose=verbose)  # fmt: skip
        history += [{"epoch": e + 1, **{k: v[i] for k, v in fit.history.items()}}
                    for i, e in enumerate(fit.epoch)]  # fmt: skip
    if train_set.skipped.count:
        print(f"skipped {train_set.skipped.count} corrupt training record(s); first: "
              f"{train_set.skipped.reasons[0]}", flush=True)  # fmt: skip
    final = history[-1] if history else {}
    val = {k: v for k, v in final.items() if k.startswith("val_") and k != "val_seconds"}
    metadata = parts_metadata(config, labels.name, extra={"validation": val,
                                                          "epochs": config.epochs})  # fmt: skip
    model.save(str(run_dir / "model.keras"))
    (run_dir / "model.landmarks.json").write_text(metadata.to_json())
    # "task": training.train's report reads it; a segmentation run is one process.
    summary = {"task": "worker 0", "epochs": config.epochs, "replicas": dist.num_replicas_in_sync,
               "skipped": train_set.skipped.count, "final": final,
               "model": str(run_dir / "model.keras")}  # fmt: skip
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary
