"""Train a (binary) hourglass landmark model from a YAML config.

    python -m training.train --config configs/synthetic_pose.yaml --out runs/synth
    python -m training.train --config configs/mpii_binary_hpm.yaml dataset.path=/data/mpii
    python -m training.train --out runs/synth --resume            # after a crash or a kill

The run folder gets ``config.yaml`` (the resolved config), ``checkpoints/`` (model and
optimizer state after every epoch), ``history.jsonl`` (one line per epoch: loss, validation
score, seconds), ``logs/`` (TensorBoard), and at the end ``model.keras`` with its landmark
record ``model.landmarks.json``, which ``python -m converters.convert`` and
``python -m training.evaluate`` read.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from edge.cli import ArgumentParser, run_cli
from edge.errors import EdgeError

from .config import ConfigError, TrainConfig, dump_config, load_config, make_config, read_yaml

STRATEGIES = ("default", "mirrored", "multiworker")


def make_strategy(name: str):
    """A tf.distribute strategy. ``mirrored`` uses every local GPU, or every logical CPU if none."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":
        # Cluster membership comes from the TF_CONFIG environment variable, as in TF's guide.
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def build_model(config: TrainConfig, num_landmarks: int):
    from .models import build_hourglass

    m = config.model
    return build_hourglass(num_stacks=m.num_stacks, depth=m.depth, features=m.features,
                           num_landmarks=num_landmarks, input_size=config.input_size,
                           block=m.block, binary=m.binary, weight_scale=m.weight_scale)  # fmt: skip


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


def _callbacks(run_dir: Path, config: TrainConfig, val_set, metadata, manager, steps: int):
    """Epoch timer, validation, checkpoint and TensorBoard, in the order their logs need."""
    import tensorflow as tf

    from .evaluate import PROTOCOLS, KerasPredictor, predict_dataset, score

    protocol = PROTOCOLS[config.dataset.name]
    skeleton = val_set.skeleton

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
            preds = predict_dataset(KerasPredictor(self.model, metadata), val_set,
                                    batch_size=config.val_batch_size,
                                    limit=config.dataset.val_limit, refine=config.refine)  # fmt: skip
            result = score(preds, protocol, skeleton)
            # "pckh@0.5" -> "val_pckh": TensorBoard tags allow no "@".
            logs[f"val_{result.headline.split('@')[0]}"] = float(result.values[result.headline])
            logs["val_seconds"] = time.perf_counter() - t0

    class EpochCheckpoint(tf.keras.callbacks.Callback):
        """After every epoch: model + optimizer state, then the history line and state.json."""

        def on_epoch_end(self, epoch, logs=None):
            manager.save(checkpoint_number=epoch + 1)
            line = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
            with open(run_dir / "history.jsonl", "a") as f:
                f.write(json.dumps(line) + "\n")
            _write_state(run_dir, epoch + 1, self.model.optimizer, steps)

    tensorboard = tf.keras.callbacks.TensorBoard(
        log_dir=str(run_dir / "logs"), update_freq="epoch", profile_batch=0
    )
    return [EpochTimer(), Validation(), EpochCheckpoint(), tensorboard]


def _is_chief(dist) -> bool:
    resolver = getattr(dist, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
    )


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
    from .data.base import MixedDataset, open_dataset

    parts, repeats = [first], [1]
    for entry in entries:
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(f"dataset.mix entries need a name, got {entry!r}")
        unknown = set(entry) - {"name", "path", "split", "options", "repeat"}
        if unknown:
            raise ConfigError(f"unknown key(s) {sorted(unknown)} in dataset.mix entry {entry!r}")
        parts.append(open_dataset(entry["name"], entry.get("path"),
                                  split=entry.get("split", "train"), **entry.get("options", {})))  # fmt: skip
        repeats.append(int(entry.get("repeat", 1)))
    return MixedDataset(parts, repeats)


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


def run(config: TrainConfig, run_dir: Path, *, resume: bool = False, strategy: str = "default",
        verbose: int | str = "auto") -> dict:  # fmt: skip
    """Train (or continue) one run; return a summary with the final validation score."""
    import tensorflow as tf

    from edge.codec import HeatmapCodec

    from .data.augment import Normalisation
    from .data.base import open_dataset
    from .data.pipeline import training_dataset
    from .losses import stack_losses

    ds_cfg = config.dataset
    train_set = open_dataset(ds_cfg.name, ds_cfg.path, split=ds_cfg.train_split,
                             **{**ds_cfg.options, **ds_cfg.train_options})  # fmt: skip
    if ds_cfg.mix:
        train_set = _mixed(train_set, ds_cfg.mix)
    val_set = open_dataset(ds_cfg.name, ds_cfg.val_path or ds_cfg.path, split=ds_cfg.val_split,
                           **{**ds_cfg.options, **ds_cfg.val_options})  # fmt: skip
    skeleton = train_set.skeleton
    steps = config.steps_per_epoch or len(train_set) // config.batch_size
    if steps < 1:
        raise ConfigError(f"{len(train_set)} training samples is less than one batch of "
                          f"{config.batch_size}")  # fmt: skip

    ckpt_dir = run_dir / "checkpoints"
    if not resume and ckpt_dir.is_dir() and any(ckpt_dir.iterdir()):
        raise ConfigError(f"{run_dir} already holds checkpoints: pass --resume to continue "
                          "that run, or choose another --out")  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)

    tf.keras.utils.set_random_seed(config.seed)  # weight init and shuffles repeat per seed
    dist = make_strategy(strategy)
    if config.batch_size % dist.num_replicas_in_sync:
        raise ConfigError(f"batch_size {config.batch_size} does not split evenly over "
                          f"{dist.num_replicas_in_sync} replicas")  # fmt: skip
    if not _is_chief(dist):
        # Multi-worker: every worker saves (the saves are collective), but only the chief
        # writes into the run folder; the others keep their copies out of its way.
        run_dir = run_dir / f".worker{dist.cluster_resolver.task_id}"
        ckpt_dir = run_dir / "checkpoints"
        run_dir.mkdir(parents=True, exist_ok=True)
    codec = HeatmapCodec((config.input_size,) * 2, (config.heatmap_size,) * 2, sigma=config.sigma,
                         refine=config.refine)  # fmt: skip
    norm = config.normalisation
    data = training_dataset(
        train_set, codec=codec, normalise=Normalisation(norm.color, tuple(norm.mean), tuple(norm.std)),
        augment=config.augment, batch_size=config.batch_size,
        num_stacks=config.model.num_stacks, seed=config.seed, workers=config.workers,
    )  # fmt: skip

    with dist.scope():
        model = build_model(config, skeleton.num_landmarks)
        optimizer = make_optimizer(config, steps)
        model.compile(optimizer=optimizer, loss=stack_losses(config.model.num_stacks))
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
        manager = tf.train.CheckpointManager(checkpoint, str(ckpt_dir), max_to_keep=3,
                                             checkpoint_name="epoch")  # fmt: skip
        initial_epoch = 0
        if config.init_from and not resume:
            n = init_weights(model, config.init_from)
            print(f"initialised {n} layers from {config.init_from}", flush=True)
        if resume:
            if manager.latest_checkpoint is None:
                raise ConfigError(f"nothing to resume: {ckpt_dir} has no checkpoint")
            try:
                checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            except (AssertionError, ValueError):
                # TF lists every unmatched variable when the checkpoint object is freed; the
                # one-line error below says it all.
                tf.get_logger().setLevel("ERROR")
                raise ConfigError(f"{manager.latest_checkpoint} does not fit the model of this "
                                  "config (was model.* or input_size changed?)") from None  # fmt: skip
            initial_epoch = int(manager.latest_checkpoint.rsplit("-", 1)[1])
            print(f"resuming from {manager.latest_checkpoint} (epoch {initial_epoch} of "
                  f"{config.epochs})", flush=True)  # fmt: skip
    # Written only now, so a failed resume with a mismatched override leaves the run's own
    # config in place.
    dump_config(config, run_dir / "config.yaml")
    history = _read_history(run_dir, initial_epoch)

    metadata = landmark_metadata(config, skeleton.name)
    if initial_epoch < config.epochs:
        print(f"training {config.name}: {len(train_set)} samples, {steps} steps of "
              f"{config.batch_size} per epoch, {dist.num_replicas_in_sync} replica(s)", flush=True)  # fmt: skip
        fit = model.fit(
            data, epochs=config.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
            callbacks=_callbacks(run_dir, config, val_set, metadata, manager, steps),
            verbose=verbose,
        )  # fmt: skip
        history += [{"epoch": e + 1, **{k: v[i] for k, v in fit.history.items()}}
                    for i, e in enumerate(fit.epoch)]  # fmt: skip
    if train_set.skipped.count:
        print(f"skipped {train_set.skipped.count} corrupt training record(s); first: "
              f"{train_set.skipped.reasons[0]}", flush=True)  # fmt: skip
    final = history[-1] if history else {}
    val = {k: v for k, v in final.items() if k.startswith("val_") and k != "val_seconds"}
    metadata = landmark_metadata(config, skeleton.name, extra={"validation": val,
                                                                "epochs": config.epochs})  # fmt: skip
    model.save(str(run_dir / "model.keras"))
    (run_dir / "model.landmarks.json").write_text(metadata.to_json())
    summary = {"epochs": config.epochs, "replicas": dist.num_replicas_in_sync,
               "skipped": train_set.skipped.count, "final": final,
               "model": str(run_dir / "model.keras")}  # fmt: skip
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary


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
                   "or all logical CPUs), multiworker (TF_CONFIG cluster)")  # fmt: skip
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
            summary = run(config, state["run_dir"], resume=args.resume, strategy=args.strategy,
                          verbose=verbose)  # fmt: skip
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
    val = {k: v for k, v in summary["final"].items() if k.startswith("val_") and k != "val_seconds"}
    shown = ", ".join(f"{k} {v:.2f}" for k, v in val.items() if isinstance(v, float) and
                      math.isfinite(v))  # fmt: skip
    print(f"saved {summary['model']}" + (f" ({shown})" if shown else ""))


if __name__ == "__main__":
    sys.exit(main())
