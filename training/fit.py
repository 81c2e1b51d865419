"""The one fit loop: every task trains, checkpoints, resumes and saves through :func:`fit`.

A task (:class:`training.task.Task`) gives the data, the network, the losses, the
validation and the metadata; this module does the rest, the same for all of them: refuse to
overwrite a run, seed, pick the tf.distribute strategy, compile, checkpoint after every
epoch, keep the history and state (:class:`training.run_folder.RunFolder`), resume, average
the last checkpoints or blend with the start model, save the model with its sidecar, and
write the summary.

``--strategy multiworker`` trains on several processes or machines (see
:mod:`training.distribute`): the chief alone writes the run folder, and a ``backup/`` of the
last finished epoch lets a killed worker rejoin when it is restarted with the same command.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .artifacts import load_keras_model, save_trained
from .config import ConfigError, TrainConfig
from .distribute import ClusterError, current_task, make_strategy
from .distribute import Task as Worker
from .run_folder import RunFolder, has_files
from .task import Task, TaskData


@dataclass(frozen=True)
class FitOptions:
    """How to run a training (the command line's --resume, --strategy and --verbose)."""

    resume: bool = False  # continue from the last checkpoint in the run folder
    strategy: str = "default"  # training.distribute.STRATEGIES
    verbose: int | str = "auto"  # Keras's progress output


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


def init_weights(model, path: str, output_names: tuple[str, ...] = ()) -> int:
    """Copy weights from a saved model into ``model`` where layer names and shapes agree;
    returns how many layers were copied (a real-valued twin starting its binary student).

    With ``output_names`` (``model``'s head channels by name, e.g. COCO-17's landmarks) and a
    saved model whose sidecar names its own (e.g. MPII-16's), a head layer whose shapes differ
    only in the output channels is copied channel by channel for the names both have (the 12
    limb joints of those two skeletons); its other channels keep their fresh weights. So a
    trained model of one skeleton starts a model of another with its shared points already
    learned."""
    from .artifacts import load_sidecar

    source = {layer.name: layer for layer in load_keras_model(path).layers}
    source_meta, _ = load_sidecar(path)
    source_names = tuple(source_meta.landmarks) if source_meta is not None else ()
    copied = 0
    for layer in model.layers:
        other = source.get(layer.name)
        if other is None or not layer.weights:
            continue
        theirs = other.get_weights()
        if [w.shape for w in theirs] == [tuple(w.shape) for w in layer.weights]:
            layer.set_weights(theirs)
            copied += 1
        elif output_names and source_names:
            shared = _copy_head_by_name(layer, theirs, output_names, source_names)
            if shared:
                copied += 1
                fresh = [n for n in output_names if n not in source_names]
                print(
                    f"{layer.name}: {len(shared)} of {len(output_names)} channels copied by "
                    f"name from {path}" + (f"; fresh: {', '.join(fresh)}" if fresh else ""),
                    flush=True,
                )
    if copied == 0:
        raise ConfigError(f"init_from {path}: no layer of that model fits this one")
    return copied


def _copy_head_by_name(
    layer, theirs: list, names: tuple[str, ...], their_names: tuple[str, ...]
) -> list[str]:
    """Copy a head layer's channels from ``theirs`` (the other model's weights of that layer)
    for the names both heads have; returns those names ([] and nothing copied when the layer
    is not such a head: every weight's last axis must be the channels, all else equal)."""
    mine = layer.get_weights()
    fits = len(mine) == len(theirs) and all(
        m.shape[:-1] == t.shape[:-1]
        and m.shape[-1] == len(names)
        and t.shape[-1] == len(their_names)
        for m, t in zip(mine, theirs, strict=True)
    )
    if not fits:
        return []
    shared = [n for n in names if n in their_names]
    for m, t in zip(mine, theirs, strict=True):
        for name in shared:
            m[..., names.index(name)] = t[..., their_names.index(name)]
    layer.set_weights(mine)
    return shared


def start_weights(
    config: TrainConfig,
    model,
    checkpoint,
    ckpt_dir: Path,
    *,
    resume: bool,
    output_names: tuple[str, ...] = (),
) -> int:
    """Where a run's weights start; returns the epoch training continues from.

    A new run starts from ``config.init_from`` when set (epoch 0); ``resume`` restores the
    newest checkpoint in ``ckpt_dir`` (model and optimizer) and continues after its epoch.
    """
    import tensorflow as tf

    if not resume:
        if config.init_from:
            n = init_weights(model, config.init_from, output_names)
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
        raise ConfigError(
            f"{latest} does not fit the model of this config (was model.* or input_size changed?)"
        ) from None
    epoch = int(latest.rsplit("-", 1)[1])
    print(f"resuming from {latest} (epoch {epoch} of {config.epochs})", flush=True)
    return epoch


def average_checkpoints(task: Task, config: TrainConfig, outputs: int, paths: list[str]):
    """A fresh model holding the mean of the weights (BatchNorm statistics included) saved in
    the checkpoints ``paths``."""
    import tensorflow as tf

    model = task.build_model(config, outputs)
    total = None
    for path in paths:
        tf.train.Checkpoint(model=model).restore(path).expect_partial()
        weights = model.get_weights()
        total = weights if total is None else [t + w for t, w in zip(total, weights, strict=True)]
    model.set_weights([t / len(paths) for t in total])
    return model


def blend_with_start(task: Task, config: TrainConfig, outputs: int, model):
    """A fresh model holding ``(1 - a) x model + a x init_from`` (``a`` = blend_start), every
    weight, BatchNorm statistics included."""
    start = task.build_model(config, outputs)
    with_weights = sum(1 for layer in start.layers if layer.weights)
    if init_weights(start, config.init_from) != with_weights:
        raise ConfigError(f"blend_start: {config.init_from} is not this config's network")
    a = config.blend_start
    blended = task.build_model(config, outputs)
    blended.set_weights(
        [(1 - a) * w + a * s for w, s in zip(model.get_weights(), start.get_weights(), strict=True)]
    )
    return blended


@dataclass
class _Training:
    """The state of one run between its steps (see :func:`fit`)."""

    task: Task
    config: TrainConfig
    folder: RunFolder
    options: FitOptions
    worker: Worker
    data: TaskData
    steps: int
    backup_dir: Path | None = None
    restarting: bool = False
    dist: object = None
    write_dir: Path | None = None
    model: object = None
    twin: object = None
    manager: object = None
    initial_epoch: int = 0

    @property
    def replicas(self) -> int:
        return self.dist.num_replicas_in_sync

    def snapshot(self):
        """The model to validate and save: the training model itself, or its plain twin with
        the current weights (reading distributed variables is a collective step every
        worker must join, and the twin keeps the chief's validation its own business)."""
        if self.twin is None:
            return self.model
        self.twin.set_weights(self.model.get_weights())
        return self.twin


def fit(task: Task, config: TrainConfig, run_dir: Path, options: FitOptions = FitOptions()) -> dict:
    """Train (or continue) one run of ``task``; return its summary (also in summary.json)."""
    run = _prepare(task, config, RunFolder(run_dir), options)
    history = _fit(run)
    return _finish(run, history)


def _prepare(task: Task, config: TrainConfig, folder: RunFolder, options: FitOptions) -> _Training:
    """Everything before the first step: the data, the guard against overwriting, the
    strategy, the model with its weights (fresh, ``init_from`` or resumed)."""
    import tensorflow as tf

    if options.strategy == "multiworker" and not task.multiworker:
        raise ConfigError(
            f"{task.name} runs train on one machine: use --strategy default or mirrored"
        )
    # A bad TF_CONFIG fails here, in one line, before anything is read or written.
    worker = current_task(options.strategy)
    # init_from starts a new run and, with blend_start, is blended in at the very end (a
    # resumed run too): a missing one is found now, not after the data or the training.
    needs_start = config.init_from and (not options.resume or config.blend_start)
    if needs_start and not Path(config.init_from).exists():
        raise ConfigError(
            f"init_from {config.init_from} does not exist: train that model first, or fix the path"
        )
    data = task.open_data(config)
    steps = config.steps_per_epoch or len(data.train) // config.batch_size
    if steps < 1:
        raise ConfigError(
            f"{len(data.train)} training samples is less than one batch of {config.batch_size}"
        )
    run = _Training(task, config, folder, options, worker, data, steps)
    # Multi-worker fault tolerance: a backup of the last finished epoch means this is a
    # worker restarted with its original command, which continues without --resume.
    if options.strategy == "multiworker":
        run.backup_dir = folder.backup
        run.restarting = has_files(folder.backup / "chief")
    if not run.restarting:
        folder.refuse_to_overwrite(resume=options.resume)
    if worker.is_chief:
        folder.root.mkdir(parents=True, exist_ok=True)
    run.dist = make_strategy(options.strategy)
    if config.batch_size % run.replicas:
        raise ConfigError(
            f"batch_size {config.batch_size} does not split evenly over {run.replicas} replicas"
        )
    # Only the chief writes into the run folder. Another worker's saves are collective, so it
    # makes them too, into a private scratch folder that it deletes at the end.
    run.write_dir = folder.root
    if not worker.is_chief:
        run.write_dir = Path(tempfile.mkdtemp(prefix="binland-worker-"))
        atexit.register(shutil.rmtree, run.write_dir, ignore_errors=True)  # also after an error
    _build(run, tf)
    if run.restarting:
        print(f"restarted: continuing from the backup in {run.backup_dir}", flush=True)
    if worker.is_chief:
        # Written only now, so a failed resume with a mismatched override leaves the run's
        # own config in place.
        folder.save_config(config)
        if not run.restarting:  # (after a restart, each epoch's line replaces any lost ones)
            folder.read_history(run.initial_epoch)
    return run


def _build(run: _Training, tf) -> None:
    """The model, compiled under the strategy, and its checkpoint manager; restores the
    weights a run starts from."""
    task, config = run.task, run.config
    # Before any layer is made: every layer takes its dtype from Keras's floatx.
    tf.keras.backend.set_floatx(config.precision)
    # Seeded right before the weights are made: the same seed gives the same initial weights
    # under every strategy.
    tf.keras.utils.set_random_seed(config.seed)
    if run.options.strategy != "default":
        run.twin = task.build_model(config, run.data.outputs)
    with run.dist.scope():
        if run.twin is None:
            run.model = task.build_model(config, run.data.outputs)
        else:
            from .distribute import synchronised_batchnorm

            run.model = synchronised_batchnorm(run.twin)
            run.model.set_weights(run.twin.get_weights())
        optimizer = make_optimizer(config, run.steps)
        run.model.compile(optimizer=optimizer, loss=task.losses(config))
        checkpoint = tf.train.Checkpoint(model=run.model, optimizer=optimizer)
        run.manager = tf.train.CheckpointManager(
            checkpoint,
            str(run.write_dir / "checkpoints"),
            max_to_keep=max(3, config.average_last),
            checkpoint_name="epoch",
        )
        # The chief's checkpoints, which every worker resumes from.
        run.initial_epoch = start_weights(
            config,
            run.model,
            checkpoint,
            run.folder.checkpoints,
            resume=run.options.resume,
            output_names=run.data.output_names,
        )


def _input_stream(run: _Training):
    task, config, train_set = run.task, run.config, run.data.train
    if run.options.strategy != "multiworker":
        # The global batch; a strategy splits it over its replicas.
        return task.input_stream(config, train_set, batch_size=config.batch_size)
    # One input pipeline per worker, each loading only its share of the records and
    # batching one replica's share of the global batch.
    return run.dist.distribute_datasets_from_function(
        lambda ctx: task.input_stream(
            config,
            train_set,
            batch_size=ctx.get_per_replica_batch_size(config.batch_size),
            shard=(ctx.input_pipeline_id, ctx.num_input_pipelines),
        )
    )


def _fit(run: _Training) -> list[dict]:
    """Keras's fit from the first unfinished epoch; this process's history of it."""
    import tensorflow as tf

    config = run.config
    if run.initial_epoch >= config.epochs:
        return []
    share = f" x {config.batch_size // run.replicas}" if run.replicas > 1 else ""
    what = f" ({run.data.label})" if run.data.label else ""
    print(
        f"training {config.name}{what}: {len(run.data.train)} samples, {run.steps} steps of "
        f"{config.batch_size} per epoch, {run.replicas} replica(s){share}",
        flush=True,
    )
    try:
        fitted = run.model.fit(
            _input_stream(run),
            epochs=config.epochs,
            initial_epoch=run.initial_epoch,
            steps_per_epoch=run.steps,
            callbacks=_callbacks(run),
            verbose=run.options.verbose,
        )
    except tf.errors.OpError as exc:
        lost = _lost_peer(exc, run.worker) if run.backup_dir is not None else None
        if lost is None:
            raise
        raise ClusterError(
            f"lost contact with {lost}; restart every worker that stopped "
            "with its own command: training continues from the last "
            f"finished epoch's backup in {run.backup_dir}"
        ) from None
    return [
        {"epoch": e + 1, **{k: v[i] for k, v in fitted.history.items()}}
        for i, e in enumerate(fitted.epoch)
    ]


def _callbacks(run: _Training) -> list:
    """Epoch timer, validation, checkpoint and TensorBoard, in the order their logs need.

    Every worker takes the snapshot, since reading distributed variables is a collective
    step; only the chief validates and writes. With a backup folder, Keras's
    BackupAndRestore saves the last finished epoch there.
    """
    import tensorflow as tf

    task, config, worker = run.task, run.config, run.worker
    folder = RunFolder(run.write_dir)

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
        """Scores the validation split with the task's evaluation code each epoch."""

        def on_epoch_end(self, epoch, logs=None):
            t0 = time.perf_counter()
            model = run.snapshot()
            if not worker.is_chief:
                return
            logs.update(task.validation_score(config, run.data.val, model))
            logs["val_seconds"] = time.perf_counter() - t0

    class EpochCheckpoint(tf.keras.callbacks.Callback):
        """After every epoch: model + optimizer state, then the history line and state.json."""

        def on_epoch_end(self, epoch, logs=None):
            # Every worker saves (the save is collective); another worker's manager points
            # at its private scratch folder.
            run.manager.save(checkpoint_number=epoch + 1)
            if worker.is_chief:
                folder.record_epoch(epoch, logs, self.model.optimizer, run.steps)

    callbacks = [EpochTimer(), Validation(), EpochCheckpoint()]
    if worker.is_chief:
        callbacks.append(
            tf.keras.callbacks.TensorBoard(
                log_dir=str(folder.logs), update_freq="epoch", profile_batch=0
            )
        )
    if run.backup_dir is not None:
        # Last, so an epoch counts as backed up only once its checkpoint and history are on
        # disk. Keras keeps the chief's copy in backup/chief and deletes it when fit ends.
        callbacks.append(
            tf.keras.callbacks.BackupAndRestore(str(run.backup_dir), save_freq="epoch")
        )
    return callbacks


def _say_count(counter, sentence: str) -> None:
    """One line for a training set's counter of records it could not use as asked (corrupt,
    no mask, no scores), if it counted any: ``sentence`` with ``{n}`` the count, then the
    first reason."""
    if counter.count:
        print(f"{sentence.format(n=counter.count)}; first: {counter.reasons[0]}", flush=True)


def _finish(run: _Training, history: list[dict]) -> dict:
    """The saved weights (averaged or blended on request), the model with its sidecar and
    the summary; another worker only reports its weights' digest."""
    task, config, data, folder = run.task, run.config, run.data, run.folder
    _say_count(data.train.skipped, "skipped {n} corrupt training record(s)")
    if config.augment.background_prob:
        # Records without a person mask (drawn figures, a set labelled without masks) keep
        # their background: the swaps they drew did not happen.
        _say_count(
            data.train.swaps_missed,
            "{n} background swap(s) were not made (no person mask, or a corrupt background record)",
        )
    if config.augment.neighbour_prob:
        _say_count(
            data.train.neighbours_missed,
            "{n} neighbour(s) were not pasted (a record without a person mask, or a corrupt one)",
        )
    if config.teacher_scores.on:
        # Drawn figures and human-labelled sets have no teacher scores: their visible points
        # weighed 1, as without teacher_scores.
        _say_count(
            data.train.unscored,
            "{n} training example(s) came from records without teacher scores (their visible "
            "points weighed 1)",
        )
    final_model = run.snapshot()  # on every worker: a collective step
    averaged = []
    if config.average_last > 1:
        # Every worker averages the checkpoints it saved itself (equal weights), so their digests
        # agree on a run that was never resumed; after --resume or a restart a non-chief has
        # fewer of them (its scratch folder is new), and only the chief's saved model counts.
        averaged = run.manager.checkpoints[-config.average_last :]
        final_model = average_checkpoints(task, config, data.outputs, averaged)
    if config.blend_start:
        final_model = blend_with_start(task, config, data.outputs, final_model)
    summary = {
        "epochs": config.epochs,
        "replicas": run.replicas,
        "skipped": data.train.skipped.count,
        "task": f"{run.worker.type} {run.worker.index}",
        "weights_sha256": weights_digest(final_model.get_weights()),
    }
    if not run.worker.is_chief:
        return {**summary, "final": history[-1] if history else {}, "model": None}
    history = folder.read_history(config.epochs)  # the whole run's, resumed parts included
    final = history[-1] if history else {}
    val = {k: v for k, v in final.items() if k.startswith("val_") and k != "val_seconds"}
    if averaged or config.blend_start:
        val = task.validation_score(config, data.val, final_model)
        summary.update(_made(config, averaged, val))
    metadata = task.metadata(config, data, extra={"validation": val, "epochs": config.epochs})
    save_trained(final_model, metadata, folder.model)
    if run.backup_dir is not None:
        folder.drop_empty_backup()
    summary = {**summary, "final": final, "model": str(folder.model)}
    folder.write_summary(summary)
    return summary


def _made(config: TrainConfig, averaged: list[str], val: dict) -> dict:
    """The summary's ``averaged`` and ``blended`` entries, and the line saying so."""
    out: dict = {}
    made = f"the mean of {', '.join(Path(c).name for c in averaged)}" if averaged else ""
    if averaged:  # the score is the saved model's: the blend's when there is one
        out["averaged"] = {
            "checkpoints": [Path(c).name for c in averaged],
            **({} if config.blend_start else val),
        }
    if config.blend_start:
        made = (
            f"{1 - config.blend_start:g} x {made or 'the trained weights'} + "
            f"{config.blend_start:g} x {config.init_from}"
        )
        out["blended"] = {"start": config.init_from, "weight": config.blend_start, **val}
    print(
        f"saved weights: {made}; " + ", ".join(f"{k} {v:.2f}" for k, v in val.items()), flush=True
    )
    return out


def _lost_peer(exc, worker: Worker) -> str | None:
    """The other task named in a collective op's failure when a peer went away, else None."""
    import re

    import tensorflow as tf

    text = str(exc.message)
    if not (
        isinstance(
            exc,
            (
                tf.errors.UnavailableError,
                tf.errors.AbortedError,
                tf.errors.CancelledError,
                tf.errors.DeadlineExceededError,
            ),
        )
        or "Socket closed" in text
        or "heartbeat" in text.lower()
    ):
        return None
    named = re.findall(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)", text)
    others = [f"{kind} {i}" for kind, i in named if (kind, int(i)) != (worker.type, worker.index)]
    return others[0] if others else "another worker"
