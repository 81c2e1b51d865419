"""tf.data input pipeline: dataset records -> augmented crops and packed heatmap targets.

Readers and augmentation are NumPy/OpenCV code (see :mod:`training.data.augment`); they run
inside ``tf.numpy_function`` on tf.data's parallel map, and OpenCV releases the GIL while it
warps, so several records are prepared at once while the accelerator trains on the previous
batch (``prefetch``). A corrupt record is skipped and counted in ``dataset.skipped``.
"""

from __future__ import annotations

import threading

import numpy as np
import tensorflow as tf

from edge.codec import HeatmapCodec

from ..losses import pack_targets
from .augment import AugmentConfig, Normalisation, make_example, sample_params
from .base import CorruptSample, DatasetError, LandmarkDataset


class _Loader:
    """The per-record work of the map step (a class so it can count successes thread-safely)."""

    def __init__(self, dataset: LandmarkDataset, codec: HeatmapCodec, normalise: Normalisation,
                 augment: AugmentConfig, seed: int) -> None:  # fmt: skip
        self.dataset = dataset
        self.codec = codec
        self.normalise = normalise
        self.augment = augment
        self.seed = seed
        self.loaded = 0
        self._lock = threading.Lock()
        k = dataset.skeleton.num_landmarks
        s, (hw, hh) = codec.input_size[0], codec.heatmap_size
        self._empty = (np.zeros((s, s, 3), np.float32), np.zeros((hh, hw, 2 * k), np.float32))

    def __call__(self, index: np.int64, counter: np.int64) -> tuple[np.ndarray, np.ndarray, bool]:
        index, counter = int(index), int(counter)
        try:
            sample = self.dataset.load(index)
        except CorruptSample as exc:
            self.dataset.skipped.record(index, str(exc))
            with self._lock:
                if self.loaded == 0 and self.dataset.skipped.count >= len(self.dataset):
                    raise DatasetError(
                        f"every record of the training set is corrupt "
                        f"(first: {self.dataset.skipped.reasons[0]})"
                    ) from None
            return (*self._empty, False)
        # A per-example generator: the draw depends only on (seed, position, record), so a run
        # is reproducible whatever order the parallel map finishes in.
        rng = np.random.default_rng([self.seed, counter, index])
        params = sample_params(rng, self.augment)
        image, heatmaps, weights = make_example(
            sample, codec=self.codec, skeleton=self.dataset.skeleton, normalise=self.normalise,
            params=params,
        )  # fmt: skip
        with self._lock:
            self.loaded += 1
        return image, pack_targets(heatmaps, weights), True


def training_dataset(
    dataset: LandmarkDataset,
    *,
    codec: HeatmapCodec,
    normalise: Normalisation,
    augment: AugmentConfig,
    batch_size: int,
    num_stacks: int,
    seed: int = 0,
    workers: int | None = None,
    deterministic: bool = False,
    shard: tuple[int, int] = (0, 1),
) -> tf.data.Dataset:
    """An endless, shuffled stream of ``(images, (targets,) * num_stacks)`` batches.

    ``batch_size`` is the batch this pipeline hands out: the global batch when a strategy
    splits it across local replicas, or one replica's share when each input pipeline feeds
    one replica (multi-worker). The last partial batch of each pass is dropped so every
    replica gets the same share.

    ``shard=(i, n)``: this pipeline is input pipeline ``i`` of ``n`` (one per worker) and
    loads only the positions ``i, i + n, ...`` of the shuffled stream, so no worker decodes
    a record another worker trains on. Batch ``k`` of the n pipelines together holds exactly
    the records of global batch ``k`` of a single pipeline, with the same augmentation draws.

    ``deterministic``: batches come out in stream order (the parallel map still runs in
    parallel but waits for stragglers), so a run repeats exactly for a given seed; otherwise a
    slow record never holds up the ones behind it.
    """
    index, count = shard
    if not 0 <= index < count:
        raise DatasetError(f"input pipeline {index} of {count} does not exist")
    n = len(dataset)
    if n == 0:
        raise DatasetError("the training set is empty")
    k = dataset.skeleton.num_landmarks
    size = codec.input_size[0]
    hw, hh = codec.heatmap_size
    loader = _Loader(dataset, codec, normalise, augment, seed)

    def load(index: tf.Tensor, counter: tf.Tensor):
        image, target, ok = tf.numpy_function(
            loader, [index, counter], [tf.float32, tf.float32, tf.bool], stateful=False
        )
        image.set_shape((size, size, 3))
        target.set_shape((hh, hw, 2 * k))
        ok.set_shape(())
        return image, target, ok

    indices = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = tf.data.Dataset.zip((indices.repeat(), tf.data.Dataset.counter()))
    if count > 1:
        # Before the map: each worker decodes and augments only its own records.
        ds = ds.shard(count, index)
    parallel = tf.data.AUTOTUNE if workers is None else workers
    ds = ds.map(load, num_parallel_calls=parallel, deterministic=deterministic)
    ds = ds.filter(lambda image, target, ok: ok)
    ds = ds.map(lambda image, target, ok: (image, target))
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(lambda images, targets: (images, (targets,) * num_stacks))
    options = tf.data.Options()
    # Records come from Python, not files: a strategy that shards this dataset itself must
    # shard by element. (Multi-worker training passes ``shard`` and no sharding is left to do.)
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF if count > 1
        else tf.data.experimental.AutoShardPolicy.DATA
    )  # fmt: skip
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
