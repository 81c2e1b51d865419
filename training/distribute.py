"""tf.distribute for training: the strategy, who is the chief, and the cluster's TF_CONFIG.

Three strategies, all TensorFlow's own:

* ``default``: one device.
* ``mirrored``: ``MirroredStrategy`` over every GPU of this machine (or every logical CPU).
* ``multiworker``: ``MultiWorkerMirroredStrategy`` over several processes or machines, each
  told its place by the standard ``TF_CONFIG`` environment variable, e.g. on the first host::

      {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}

The config's ``batch_size`` is always the **global** batch: each of R replicas trains on
``batch_size / R`` samples per step, the loss is averaged over the global batch, so one
step computes the same gradient, and the config's learning rate means the same thing, on 1
or R devices. BatchNorm statistics are synchronised over the replicas when there are
several (see :func:`synchronised_batchnorm`), so they too are over the global batch.

TF_CONFIG is checked here before TensorFlow reads it: a malformed value would otherwise
surface as a traceback from deep inside the cluster resolver, or as a hang.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from edge.errors import EdgeError

STRATEGIES = ("default", "mirrored", "multiworker")


class ClusterError(EdgeError):
    """TF_CONFIG is missing or does not describe a cluster with this task in it."""


@dataclass(frozen=True)
class Task:
    """This process's place in the cluster."""

    type: str  # "chief" or "worker" (evaluators and parameter servers are not used here)
    index: int
    num_workers: int  # chief included
    has_chief: bool = False  # the cluster names a "chief" job

    @property
    def is_chief(self) -> bool:
        # TF's rule: the "chief" task if the cluster has one, else worker 0.
        return self.type == "chief" or (
            self.type == "worker" and self.index == 0 and not self.has_chief
        )


SINGLE = Task("worker", 0, 1)


def parse_tf_config(text: str | None) -> Task:
    """Check a TF_CONFIG value and return this task; :class:`ClusterError` says what is wrong."""
    if text is None or not text.strip():
        raise ClusterError(
            "--strategy multiworker needs TF_CONFIG, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}'
        )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClusterError(f"TF_CONFIG is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ClusterError(f"TF_CONFIG must be a JSON object, got {type(config).__name__}")
    cluster = config.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise ClusterError('TF_CONFIG has no "cluster" (a map of task type to "host:port" list)')
    for kind, addresses in cluster.items():
        if kind not in ("chief", "worker"):
            raise ClusterError(
                f"TF_CONFIG cluster has a {kind!r} job; multiworker training "
                'uses only "chief" and "worker"'
            )
        if (
            not isinstance(addresses, list)
            or not addresses
            or not all(isinstance(a, str) and a.rpartition(":")[2].isdigit() for a in addresses)
        ):
            raise ClusterError(
                f'TF_CONFIG cluster["{kind}"] must be a list of "host:port", got {addresses!r}'
            )
    if len(cluster.get("chief", [])) > 1:
        raise ClusterError("TF_CONFIG cluster may have at most one chief")
    task = config.get("task")
    if not isinstance(task, dict):
        raise ClusterError('TF_CONFIG has no "task" (this process\'s {"type": ..., "index": ...})')
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster:
        raise ClusterError(
            f"TF_CONFIG task type {kind!r} is not a job of the cluster ({', '.join(cluster)})"
        )
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[kind]):
        raise ClusterError(
            f"TF_CONFIG task index {index!r} is not one of the "
            f"{len(cluster[kind])} {kind} address(es)"
        )
    workers = sum(len(v) for v in cluster.values())
    return Task(kind, index, workers, has_chief="chief" in cluster)


def current_task(strategy: str) -> Task:
    """This process's task: from TF_CONFIG for ``multiworker``, else the only one."""
    if strategy != "multiworker":
        return SINGLE
    return parse_tf_config(os.environ.get("TF_CONFIG"))


def make_strategy(name: str):
    """The tf.distribute strategy called ``name`` (see :data:`STRATEGIES`)."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":
        current_task(name)  # a bad TF_CONFIG fails here in one line, not inside TensorFlow
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ClusterError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def synchronised_batchnorm(model):
    """``model`` with every BatchNormalization computing its batch statistics over all replicas.

    Without it each replica normalises by its own share of the batch: the paper's batch of
    10 over 8 GPUs would give BatchNorm 1 or 2 samples, and the result would depend on the
    number of devices. The clone has the same variables in the same order, so checkpoints
    and ``get_weights`` are interchangeable with the plain model's.
    """
    import tensorflow as tf

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            config = {**config, "synchronized": True}
        return type(layer).from_config(config)

    return tf.keras.models.clone_model(model, clone_function=clone)
