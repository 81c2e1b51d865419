"""Train a (binary) hourglass landmark model from a YAML config.

    python -m training.train --config configs/synthetic_pose.yaml --out runs/synth
    python -m training.train --config configs/mpii_binary_hpm.yaml dataset.path=/data/mpii
    python -m training.train --out runs/synth --resume            # after a crash or a kill

The run folder gets ``config.yaml`` (the resolved config), ``checkpoints/`` (model and
optimizer state after every epoch), ``history.jsonl`` (one line per epoch: loss, validation
score, seconds), ``logs/`` (TensorBoard), and at the end ``model.keras`` with its landmark
record ``model.landmarks.json``, which ``python -m converters.convert`` and
``python -m training.evaluate`` read.

``--strategy multiworker`` trains on several processes or machines (see
:mod:`training.distribute` and the README's "Training at scale"): the chief alone writes
the run folder, and a ``backup/`` of the last finished epoch lets a killed worker rejoin
when it is restarted with the same command.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from edge.cli import ArgumentParser, run_cli
from edge.errors import EdgeError

from .config import ConfigError, TrainConfig, dump_config, load_config, make_config, read_yaml
from .distribute import STRATEGIES, ClusterError, Task, current_task, make_strategy


def build_model(config: TrainConfig, num_landmarks: int):
    from .models import build_hourglass

    m = config.model
    return build_hourglass(num_stacks=m.num_stacks, depth=m.depth, features=m.features,
                           num_landmarks=num_landmarks, input_size=config.input_size,
                           block=m.block, binary=m.binary, weight_scale=m.weight_scale,
                           binary_skip=m.binary_skip, binary_head=m.binary_head,
                           heatmap_activation=m.heatmap_activation,
                           blocks_per_level=m.blocks_per_level)  # fmt: skip


def learning_rate(config: TrainConfig, steps_per_epoch: int):
    """The optimizer's rate: constant, or the paper's step drops at the configured epochs."""
    import tensorflow as tf

    opt = config.optimizer
    if not opt.schedule:
        return opt.learning_rate
    drops = sorted((int(e), float(lr)) for e, lr in opt.schedule)
    boundaries = [e * steps_per_epoch for e, _ in drops]
    values = [opt.learning_rate] + [lr for _, lr in drops]
    # Keyed on optimizer.iterations, which the checkpoint restores, so a resumed run
    # continues on the right step of the schedule.
    return tf.keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def make_optimizer(config: TrainConfig, steps_per_epoch: int):
    import tensorflow as tf

    lr = learning_rate(config, steps_per_epoch)
    if config.optimizer.name == "rmsprop":
        return tf.keras.optimizers.RMSprop(learning_rate=lr)
    return tf.keras.optimizers.Adam(learning_rate=lr)


def landmark_metadata(config: TrainConfig, skeleton_name: str, extra: dict | None = None):
    from edge.metadata import LandmarkMetadata

    h = config.heatmap_size
    norm = config.normalisation
    return LandmarkMetadata.for_skeleton(
        skeleton_name,
        input_size=(config.input_size, config.input_size),
        heatmap_size=(h, h),
        input_mean=tuple(float(v) for v in norm.mean),
        input_std=tuple(float(v) for v in norm.std),
        input_color=norm.color,
        model_name=config.name,
        weights_format="lce" if config.model.binary else "float",
        box_margin=config.box_margin,
        heatmap_sigma=float(config.sigma),
        refine=config.refine,
        extra=extra or {},
    )


def _callbacks(run_dir: Path, config: TrainConfig, val_set, manager, steps: int,
               task: Task, snapshot, backup_dir: Path | None):  # fmt: skip
    """Epoch timer, validation, checkpoint and TensorBoard, in the order their logs need.

    ``snapshot()`` returns the model to validate (the training model itself, or its plain
    twin with the current weights). Every worker calls it, since reading distributed
    variables is a collective step; only the chief validates and writes. With a
    ``backup_dir``, Keras's BackupAndRestore saves the last finished epoch there.
    """
    import tensorflow as tf

    class EpochTimer(tf.keras.callbacks.Callback):
        """Logs the epoch's training time (without validation) and its last learning rate."""

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs["epoch_seconds"] = time.perf_counter() - self.start
            opt = self.model.optimizer
            lr = opt.learning_rate
            if callable(lr):  # a schedule: its value at the current step
                lr = lr(opt.iterations)
            logs["learning_rate"] = float(tf.keras.backend.get_value(lr))

    class Validation(tf.keras.callbacks.Callback):
        """Scores the validation split with training.evaluate's own code path each epoch."""

        def on_epoch_end(self, epoch, logs=None):
            t0 = time.perf_counter()
            model = snapshot()
            if not task.is_chief:
                return
            logs.update(validation_score(config, val_set, model))
            logs["val_seconds"] = time.perf_counter() - t0

    class EpochCheckpoint(tf.keras.callbacks.Callback):
        """After every epoch: model + optimizer state, then the history line and state.json."""

        def on_epoch_end(self, epoch, logs=None):
            # Every worker saves (the save is collective); another worker's manager points
            # at its private scratch folder.
            manager.save(checkpoint_number=epoch + 1)
            if not task.is_chief:
                return
            record_epoch(run_dir, epoch, logs, self.model.optimizer, steps)

    callbacks = [EpochTimer(), Validation(), EpochCheckpoint()]
    if task.is_chief:
        callbacks.append(tf.keras.callbacks.TensorBoard(
            log_dir=str(run_dir / "logs"), update_freq="epoch", profile_batch=0
        ))  # fmt: skip
    if backup_dir is not None:
        # Last, so an epoch counts as backed up only once its checkpoint and history are on
        # disk. Keras keeps the chief's copy in backup/chief and deletes it when fit ends.
        callbacks.append(tf.keras.callbacks.BackupAndRestore(str(backup_dir), save_freq="epoch"))
    return callbacks


def weights_digest(weights: list) -> str:
    """SHA-256 over a model's weight arrays (shapes, dtypes and bytes): equal on every worker
    of a multi-worker run, and equal to the digest of the saved ``model.keras``."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for w in weights:
        w = np.ascontiguousarray(w)
        h.update(f"{w.dtype.str}{w.shape}".encode())
        h.update(w.tobytes())
    return h.hexdigest()


def _write_state(run_dir: Path, epoch: int, optimizer, steps_per_epoch: int) -> None:
    import tensorflow as tf

    state = {
        "epoch": epoch,
        "optimizer_iterations": int(optimizer.iterations.numpy()),
        "steps_per_epoch": steps_per_epoch,
        "replicas": tf.distribute.get_strategy().num_replicas_in_sync,
    }
    tmp = run_dir / "state.json.tmp"
    tmp.write_text(json.dumps(state))
    os.replace(tmp, run_dir / "state.json")  # atomic: a kill never leaves half a file


def record_epoch(run_dir: Path, epoch: int, logs: dict | None, optimizer, steps: int) -> None:
    """After 0-based ``epoch`` is checkpointed: its line in history.jsonl, then state.json.
    Lines of this epoch or later are dropped first: after a restart they belong to the epoch
    that was lost (both training loops write their runs this way)."""
    line = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
    kept = _read_history(run_dir, epoch)
    (run_dir / "history.jsonl").write_text("".join(json.dumps(d) + "\n" for d in [*kept, line]))
    _write_state(run_dir, epoch + 1, optimizer, steps)


def _read_history(run_dir: Path, upto_epoch: int) -> list[dict]:
    """History lines of epochs <= upto_epoch (later ones belong to an epoch that was lost)."""
    path = run_dir / "history.jsonl"
    if not path.is_file():
        return []
    lines = [json.loads(t) for t in path.read_text().splitlines() if t.strip()]
    kept = [d for d in lines if d.get("epoch", 0) <= upto_epoch]
    path.write_text("".join(json.dumps(d) + "\n" for d in kept))
    return kept


def _mixed(first, entries: list):
    """``first`` with the ``dataset.mix`` entries added; an entry without a ``name`` is
    ``first`` itself again (with its ``select`` and ``repeat``), so a config can repeat
    the training set's own hard poses whatever ``dataset.path`` points at."""
    from .data.base import MixedDataset, open_dataset
    from .data.select import select

    parts, repeats = [first], [1]
    for entry in entries:
        if not isinstance(entry, dict):
            raise ConfigError(f"dataset.mix entries are mappings, got {entry!r}")
        unknown = set(entry) - {"name", "path", "split", "options", "repeat", "select"}
        if unknown:
            raise ConfigError(f"unknown key(s) {sorted(unknown)} in dataset.mix entry {entry!r}")
        if "name" in entry:
            part = open_dataset(entry["name"], entry.get("path"),
                                split=entry.get("split", "train"), **entry.get("options", {}))  # fmt: skip
        elif set(entry) & {"path", "split", "options"}:
            raise ConfigError(f"dataset.mix entry {entry!r} has no name: without one it is the "
                              "training set again, so path, split and options do not apply")  # fmt: skip
        else:
            part = first
        if "select" in entry:  # e.g. {raised_arm: 90}: only the poses to see more often
            part = select(part, entry["select"])
            what = entry.get("name", "the training set")
            print(f"dataset.mix {what}: {len(part)} records selected by {entry['select']}",
                  flush=True)  # fmt: skip
        parts.append(part)
        repeats.append(int(entry.get("repeat", 1)))
    return MixedDataset(parts, repeats)


def open_training_set(config: TrainConfig):
    """The config's training set: its dataset, with the ``dataset.mix`` entries mixed in."""
    from .data.base import open_dataset

    ds_cfg = config.dataset
    train_set = open_dataset(ds_cfg.name, ds_cfg.path, split=ds_cfg.train_split,
                             **{**ds_cfg.options, **ds_cfg.train_options})  # fmt: skip
    return _mixed(train_set, ds_cfg.mix) if ds_cfg.mix else train_set


def input_pipeline(config: TrainConfig, train_set, *, batch_size: int,
                   shard: tuple[int, int] = (0, 1)):  # fmt: skip
    """The config's tf.data training stream over ``train_set`` (see training.data.pipeline)."""
    from edge.codec import HeatmapCodec

    from .data.augment import Normalisation
    from .data.pipeline import training_dataset

    codec = HeatmapCodec((config.input_size,) * 2, (config.heatmap_size,) * 2, sigma=config.sigma,
                         refine=config.refine)  # fmt: skip
    norm = config.normalisation
    return training_dataset(
        train_set, codec=codec, normalise=Normalisation(norm.color, tuple(norm.mean), tuple(norm.std)),
        augment=config.augment, batch_size=batch_size, num_stacks=config.model.num_stacks,
        seed=config.seed, workers=config.workers, deterministic=config.deterministic, shard=shard,
    )  # fmt: skip


def average_checkpoints(config: TrainConfig, num_landmarks: int, paths: list[str]):
    """A fresh model holding the mean of the weights (BatchNorm statistics included) saved in
    the checkpoints ``paths``."""
    import tensorflow as tf

    model = build_model(config, num_landmarks)
    total = None
    for path in paths:
        tf.train.Checkpoint(model=model).restore(path).expect_partial()
        weights = model.get_weights()
        total = weights if total is None else [t + w for t, w in zip(total, weights, strict=True)]
    model.set_weights([t / len(paths) for t in total])
    return model


def blend_with_start(config: TrainConfig, num_landmarks: int, model):
    """A fresh model holding ``(1 - a) x model + a x init_from`` (``a`` = blend_start), every
    weight, BatchNorm statistics included."""
    start = build_model(config, num_landmarks)
    with_weights = sum(1 for layer in start.layers if layer.weights)
    if init_weights(start, config.init_from) != with_weights:
        raise ConfigError(f"blend_start: {config.init_from} is not this config's network")
    a = config.blend_start
    blended = build_model(config, num_landmarks)
    blended.set_weights([(1 - a) * w + a * s for w, s in
                         zip(model.get_weights(), start.get_weights(), strict=True)])  # fmt: skip
    return blended


def validation_score(config: TrainConfig, val_set, model) -> dict[str, float]:
    """``{"val_pckh": ...}``: the per-epoch validation (same split, limit and protocol) of
    ``model``."""
    from .evaluate import KerasPredictor, predict_dataset
    from .scoring import PROTOCOLS, score

    metadata = landmark_metadata(config, val_set.skeleton.name)
    preds = predict_dataset(KerasPredictor(model, metadata), val_set,
                            batch_size=config.val_batch_size, limit=config.dataset.val_limit,
                            refine=config.refine)  # fmt: skip
    result = score(preds, PROTOCOLS[config.dataset.val_name or config.dataset.name],
                   val_set.skeleton)  # fmt: skip
    # "pckh@0.5" -> "val_pckh": TensorBoard tags allow no "@".
    return {f"val_{result.headline.split('@')[0]}": float(result.values[result.headline])}


def init_weights(model, path: str) -> int:
    """Copy weights from a saved model into ``model`` where layer names and shapes agree;
    returns how many layers were copied (a real-valued twin starting its binary student)."""
    from .evaluate import load_keras_model

    source = {layer.name: layer for layer in load_keras_model(path).layers}
    copied = 0
    for layer in model.layers:
        other = source.get(layer.name)
        if other is None or not layer.weights:
            continue
        theirs = other.get_weights()
        if [w.shape for w in theirs] == [tuple(w.shape) for w in layer.weights]:
            layer.set_weights(theirs)
            copied += 1
    if copied == 0:
        raise ConfigError(f"init_from {path}: no layer of that model fits this one")
    return copied


def refuse_to_overwrite(run_dir: Path, *, resume: bool) -> None:
    """A new run (no ``--resume``) never starts over another run's checkpoints."""
    if not resume and _has_checkpoint(run_dir / "checkpoints"):
        raise ConfigError(f"{run_dir} already holds checkpoints: pass --resume to continue "
                          "that run, or choose another --out")  # fmt: skip


def start_weights(config: TrainConfig, model, checkpoint, ckpt_dir: Path, *, resume: bool) -> int:
    """Where a run's weights start; returns the epoch training continues from.

    A new run starts from ``config.init_from`` when set (epoch 0); ``resume`` restores the
    newest checkpoint in ``ckpt_dir`` (model and optimizer) and continues after its epoch.
    Both training loops (landmarks and segmentation) use this.
    """
    import tensorflow as tf

    if not resume:
        if config.init_from:
            n = init_weights(model, config.init_from)
            print(f"initialised {n} layers from {config.init_from}", flush=True)
        return 0
    latest = tf.train.latest_checkpoint(str(ckpt_dir))
    if latest is None:
        raise ConfigError(f"nothing to resume: {ckpt_dir} has no checkpoint")
    try:
        checkpoint.restore(latest).assert_existing_objects_matched()
    except (AssertionError, ValueError):
        # TF lists every unmatched variable when the checkpoint object is freed; the one-line
        # error below says it all.
        tf.get_logger().setLevel("ERROR")
        raise ConfigError(f"{latest} does not fit the model of this config (was model.* or "
                          "input_size changed?)") from None  # fmt: skip
    epoch = int(latest.rsplit("-", 1)[1])
    print(f"resuming from {latest} (epoch {epoch} of {config.epochs})", flush=True)
    return epoch


def run(config: TrainConfig, run_dir: Path, *, resume: bool = False, strategy: str = "default",
        verbose: int | str = "auto") -> dict:  # fmt: skip
    """Train (or continue) one run; return a summary with the final validation score."""
    import tensorflow as tf

    from .data.base import open_dataset
    from .losses import stack_losses

    # A bad TF_CONFIG fails here, in one line, before anything is read or written.
    task = current_task(strategy)
    ds_cfg = config.dataset
    train_set = open_training_set(config)
    val_set = open_dataset(ds_cfg.val_name or ds_cfg.name, ds_cfg.val_path or ds_cfg.path,
                           split=ds_cfg.val_split,
                           **{**ds_cfg.options, **ds_cfg.val_options})  # fmt: skip
    skeleton = train_set.skeleton
    if val_set.skeleton.name != skeleton.name:
        raise ConfigError(f"the validation set's landmarks ({val_set.skeleton.name}) are not "
                          f"the training set's ({skeleton.name})")  # fmt: skip
    if config.augment.enabled and config.augment.flip_prob > 0 and not skeleton.flip_pairs:
        raise ConfigError(f"{skeleton.name} has no left/right pairs, so a mirrored crop would "
                          "mislabel its points: set augment.flip_prob: 0")  # fmt: skip
    steps = config.steps_per_epoch or len(train_set) // config.batch_size
    if steps < 1:
        raise ConfigError(f"{len(train_set)} training samples is less than one batch of "
                          f"{config.batch_size}")  # fmt: skip

    ckpt_dir = run_dir / "checkpoints"
    # Multi-worker fault tolerance: a backup of the last finished epoch means this is a
    # worker restarted with its original command, which continues without --resume.
    backup_dir = run_dir / "backup" if strategy == "multiworker" else None
    restarting = backup_dir is not None and _has_checkpoint(backup_dir / "chief")
    if not restarting:
        refuse_to_overwrite(run_dir, resume=resume)
    if task.is_chief:
        run_dir.mkdir(parents=True, exist_ok=True)

    dist = make_strategy(strategy)
    replicas = dist.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ConfigError(f"batch_size {config.batch_size} does not split evenly over "
                          f"{replicas} replicas")  # fmt: skip
    # Only the chief writes into the run folder. Another worker's saves are collective, so it
    # makes them too, into a private scratch folder that it deletes at the end.
    write_dir = run_dir if task.is_chief else Path(tempfile.mkdtemp(prefix="binland-worker-"))
    if not task.is_chief:
        atexit.register(shutil.rmtree, write_dir, ignore_errors=True)  # also after an error
    if strategy == "multiworker":
        # One input pipeline per worker, each loading only its share of the records and
        # batching one replica's share of the global batch.
        data = dist.distribute_datasets_from_function(lambda ctx: input_pipeline(
            config, train_set, batch_size=ctx.get_per_replica_batch_size(config.batch_size),
            shard=(ctx.input_pipeline_id, ctx.num_input_pipelines)))  # fmt: skip
    else:
        data = input_pipeline(config, train_set, batch_size=config.batch_size)  # split by dist

    # Before any layer is made: every layer takes its dtype from Keras's floatx.
    tf.keras.backend.set_floatx(config.precision)
    # Seeded right before the weights are made: the same seed gives the same initial weights
    # under every strategy.
    tf.keras.utils.set_random_seed(config.seed)
    # With a strategy, validation and the saved model use a plain twin: reading a
    # distributed model's variables is a collective step every worker must join, and the
    # twin keeps the chief's validation and save its own business.
    twin = build_model(config, skeleton.num_landmarks) if strategy != "default" else None
    with dist.scope():
        if twin is None:
            model = build_model(config, skeleton.num_landmarks)
        else:
            from .distribute import synchronised_batchnorm

            model = synchronised_batchnorm(twin)
            model.set_weights(twin.get_weights())
        optimizer = make_optimizer(config, steps)
        model.compile(optimizer=optimizer, loss=stack_losses(config.model.num_stacks, config.loss))
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
        manager = tf.train.CheckpointManager(checkpoint, str(write_dir / "checkpoints"),
                                             max_to_keep=max(3, config.average_last),
                                             checkpoint_name="epoch")  # fmt: skip
        # ckpt_dir: the chief's checkpoints, which every worker resumes from
        initial_epoch = start_weights(config, model, checkpoint, ckpt_dir, resume=resume)
    if restarting:
        print(f"restarted: continuing from the backup in {backup_dir}", flush=True)
    if task.is_chief:
        # Written only now, so a failed resume with a mismatched override leaves the run's
        # own config in place.
        dump_config(config, run_dir / "config.yaml")
        if not restarting:  # (after a restart, each epoch's line replaces any lost ones)
            _read_history(run_dir, initial_epoch)

    def snapshot():
        if twin is None:
            return model
        twin.set_weights(model.get_weights())
        return twin

    history: list[dict] = []
    if initial_epoch < config.epochs:
        share = f" x {config.batch_size // replicas}" if replicas > 1 else ""
        print(f"training {config.name}: {len(train_set)} samples, {steps} steps of "
              f"{config.batch_size} per epoch, {replicas} replica(s){share}", flush=True)  # fmt: skip
        try:
            fit = model.fit(
                data, epochs=config.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
                callbacks=_callbacks(write_dir, config, val_set, manager, steps, task,
                                     snapshot, backup_dir),
                verbose=verbose,
            )  # fmt: skip
        except tf.errors.OpError as exc:
            lost = _lost_peer(exc, task) if backup_dir is not None else None
            if lost is None:
                raise
            raise ClusterError(f"lost contact with {lost}; restart every worker that stopped "
                               "with its own command: training continues from the last "
                               f"finished epoch's backup in {backup_dir}") from None  # fmt: skip
        history = [{"epoch": e + 1, **{k: v[i] for k, v in fit.history.items()}}
                   for i, e in enumerate(fit.epoch)]  # fmt: skip
    if train_set.skipped.count:
        print(f"skipped {train_set.skipped.count} corrupt training record(s); first: "
              f"{train_set.skipped.reasons[0]}", flush=True)  # fmt: skip
    final_model = snapshot()  # on every worker: a collective step
    averaged = []
    if config.average_last > 1:
        # Every worker averages its own checkpoints (equal weights), so digests still agree.
        averaged = manager.checkpoints[-config.average_last :]
        final_model = average_checkpoints(config, skeleton.num_landmarks, averaged)
    if config.blend_start:
        final_model = blend_with_start(config, skeleton.num_landmarks, final_model)
    digest = weights_digest(final_model.get_weights())
    summary = {"epochs": config.epochs, "replicas": replicas, "skipped": train_set.skipped.count,
               "task": f"{task.type} {task.index}", "weights_sha256": digest}  # fmt: skip
    if not task.is_chief:
        final = history[-1] if history else {}
        return {**summary, "final": final, "model": None}
    history = _read_history(run_dir, config.epochs)  # the whole run's, resumed parts included
    final = history[-1] if history else {}
    val = {k: v for k, v in final.items() if k.startswith("val_") and k != "val_seconds"}
    if averaged or config.blend_start:
        val = validation_score(config, val_set, final_model)
        made = f"the mean of {', '.join(Path(c).name for c in averaged)}" if averaged else ""
        if averaged:  # the score is the saved model's: the blend's when there is one
            summary["averaged"] = {"checkpoints": [Path(c).name for c in averaged],
                                   **({} if config.blend_start else val)}  # fmt: skip
        if config.blend_start:
            made = (
                f"{1 - config.blend_start:g} x {made or 'the trained weights'} + "
                f"{config.blend_start:g} x {config.init_from}"
            )
            summary["blended"] = {"start": config.init_from, "weight": config.blend_start, **val}
        print(f"saved weights: {made}; " + ", ".join(f"{k} {v:.2f}" for k, v in val.items()),
              flush=True)  # fmt: skip
    metadata = landmark_metadata(config, skeleton.name, extra={"validation": val,
                                                                "epochs": config.epochs})  # fmt: skip
    final_model.save(str(run_dir / "model.keras"))
    (run_dir / "model.landmarks.json").write_text(metadata.to_json())
    if backup_dir is not None and backup_dir.is_dir() and not any(backup_dir.iterdir()):
        backup_dir.rmdir()  # Keras removed its backup when fit finished; drop the empty folder
    summary = {**summary, "final": final, "model": str(run_dir / "model.keras")}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary


def _lost_peer(exc, task: Task) -> str | None:
    """The other task named in a collective op's failure when a peer went away, else None."""
    import re

    import tensorflow as tf

    text = str(exc.message)
    if not (isinstance(exc, (tf.errors.UnavailableError, tf.errors.AbortedError,
                             tf.errors.CancelledError, tf.errors.DeadlineExceededError))
            or "Socket closed" in text or "heartbeat" in text.lower()):  # fmt: skip
        return None
    named = re.findall(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)", text)
    others = [f"{kind} {i}" for kind, i in named if (kind, int(i)) != (task.type, task.index)]
    return others[0] if others else "another worker"


def _has_checkpoint(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m training.train",
        description="Train a binary hourglass landmark model from a YAML config. Checkpoints "
        "after every epoch; --resume continues a killed run without losing finished epochs.",
    )
    p.add_argument("--config", type=Path, default=None,
                   help="YAML config (see configs/); with --resume, defaults to the run's own "
                   "config.yaml")  # fmt: skip
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides with dotted keys, e.g. epochs=5 optimizer.name=adam "
                   "dataset.path=/data/mpii")  # fmt: skip
    p.add_argument("--out", type=Path, default=None,
                   help="run folder (default: runs/<config name>)")  # fmt: skip
    p.add_argument("--resume", action="store_true",
                   help="continue from the last checkpoint in --out (model and optimizer state)")  # fmt: skip
    p.add_argument("--strategy", choices=STRATEGIES, default="default",
                   help="tf.distribute strategy: default (one device), mirrored (all local GPUs, "
                   "or all logical CPUs), multiworker (the same command on every machine, each "
                   "with its own TF_CONFIG; --out on a folder they all share; a killed worker "
                   "restarted with its command continues from the last epoch's backup). "
                   "batch_size is the global batch in every case")  # fmt: skip
    p.add_argument("--verbose", choices=("auto", "0", "1", "2"), default="auto",
                   help="Keras progress output: 1 a progress bar, 2 one line per epoch, 0 none")  # fmt: skip
    return p


def resolve_config(args: argparse.Namespace) -> tuple[TrainConfig, Path]:
    if args.config is None:
        if not (args.resume and args.out is not None):
            raise ConfigError("--config is required (or --resume with --out of an existing run)")
        saved = args.out / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"nothing to resume: {saved} does not exist")
        config = make_config(read_yaml(saved), args.overrides)
    else:
        config = load_config(args.config, args.overrides)
    return config, args.out or Path("runs") / config.name


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    state = {"run_dir": args.out}

    def body() -> int:
        try:
            config, state["run_dir"] = resolve_config(args)
            verbose = args.verbose if args.verbose == "auto" else int(args.verbose)
            task_run = run
            if config.task == "segmentation":
                from .segmentation.train import run as task_run
            summary = task_run(config, state["run_dir"], resume=args.resume,
                               strategy=args.strategy, verbose=verbose)  # fmt: skip
        except ImportError as exc:
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

    return run_cli(body, interrupted=lambda: "interrupted; continue with: python -m "
                   f"training.train --out {state['run_dir']} --resume")  # fmt: skip


def _report(summary: dict) -> None:
    # The saved model's own score: the blended or averaged weights' when the run made them.
    val = summary.get("blended") or summary.get("averaged") or summary["final"]
    val = {k: v for k, v in val.items() if k.startswith("val_") and k != "val_seconds"}
    shown = ", ".join(f"{k} {v:.2f}" for k, v in val.items() if isinstance(v, float) and
                      math.isfinite(v))  # fmt: skip
    if summary["model"] is None:
        print(f"{summary['task']} done, weights sha256 {summary['weights_sha256']} "
              "(the chief saves the model)")  # fmt: skip
        return
    print(f"saved {summary['model']}" + (f" ({shown})" if shown else ""))
    if summary["replicas"] > 1 or summary["task"] != "worker 0":
        print(f"weights sha256 {summary['weights_sha256']}")


if __name__ == "__main__":
    sys.exit(main())
