"""What a training run leaves on disk, for every task, and how it is read back on --resume.

    RUN/config.yaml          the resolved config (written once the start succeeded)
    RUN/checkpoints/         epoch-N: model and optimizer state after every epoch
    RUN/history.jsonl        one line per finished epoch: {"epoch": N, loss..., val_..., seconds}
    RUN/state.json           {"epoch", "optimizer_iterations", "steps_per_epoch", "replicas"}
    RUN/logs/                TensorBoard
    RUN/backup/              multi-worker runs: Keras's BackupAndRestore of the last epoch
    RUN/model.keras          the trained model, and its metadata sidecar (training.artifacts)
    RUN/summary.json         epochs, replicas, skipped records, weights digest, final scores

Only the chief of a multi-worker run writes here. These formats are what ``--resume`` and
earlier runs rely on: change them only with a reader for the old ones.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import ConfigError, TrainConfig, dump_config
from .files import write_whole


class RunFolder:
    """The paths of one run folder and the writes that must stay consistent with a resume."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"
        self.backup = self.root / "backup"
        self.history = self.root / "history.jsonl"
        self.state = self.root / "state.json"
        self.summary = self.root / "summary.json"
        self.config = self.root / "config.yaml"
        self.model = self.root / "model.keras"
        self.logs = self.root / "logs"

    def refuse_to_overwrite(self, *, resume: bool) -> None:
        """A new run (no ``--resume``) never starts over another run's checkpoints; ``--out``
        must name a folder (or nothing yet)."""
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"--out {self.root} is a file, not a run folder")
        if not resume and has_files(self.checkpoints):
            raise ConfigError(
                f"{self.root} already holds checkpoints: pass --resume to "
                "continue that run, or choose another --out"
            )

    def save_config(self, config: TrainConfig) -> None:
        dump_config(config, self.config)

    def read_history(self, upto_epoch: int) -> list[dict]:
        """History lines of epochs <= ``upto_epoch``; later ones belong to an epoch that was
        lost (a kill after the line, before the checkpoint) and are dropped from the file."""
        if not self.history.is_file():
            return []
        lines = [json.loads(t) for t in self.history.read_text().splitlines() if t.strip()]
        kept = [d for d in lines if d.get("epoch", 0) <= upto_epoch]
        self.history.write_text("".join(json.dumps(d) + "\n" for d in kept))
        return kept

    def record_epoch(self, epoch: int, logs: dict | None, optimizer, steps: int) -> None:
        """After 0-based ``epoch`` is checkpointed: its line in history.jsonl, then
        state.json. Lines of this epoch or later are dropped first: after a restart they
        belong to the epoch that was lost."""
        line = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        kept = self.read_history(epoch)
        self.history.write_text("".join(json.dumps(d) + "\n" for d in [*kept, line]))
        self._write_state(epoch + 1, optimizer, steps)

    def _write_state(self, epoch: int, optimizer, steps_per_epoch: int) -> None:
        import tensorflow as tf

        state = {
            "epoch": epoch,
            "optimizer_iterations": int(optimizer.iterations.numpy()),
            "steps_per_epoch": steps_per_epoch,
            "replicas": tf.distribute.get_strategy().num_replicas_in_sync,
        }
        write_whole(self.state, json.dumps(state))  # a kill never leaves half a file

    def write_summary(self, summary: dict) -> None:
        write_whole(self.summary, json.dumps(summary, indent=2, default=float))

    def drop_empty_backup(self) -> None:
        """Keras removes its backup when fit finishes; the empty folder goes too."""
        if self.backup.is_dir() and not any(self.backup.iterdir()):
            self.backup.rmdir()


def has_files(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())
