"""tf.data input pipeline: dataset records -> augmented crops and packed heatmap targets.

Readers and augmentation are NumPy/OpenCV code (see :mod:`training.data.augment`); they run
inside ``tf.numpy_function`` on tf.data's parallel map, and OpenCV releases the GIL while it
warps, so several records are prepared at once while the accelerator trains on the previous
batch (``prefetch``). A corrupt record is skipped and counted in ``dataset.skipped``.

A background swap (``augment.background_prob``) loads a second record, the one the draw
picked, for its image: a record of the same training set (mix included), so the backgrounds
are the footage's own rooms, streets and fields, other people in them included. A swap that
cannot be made (no person mask, a corrupt background record) is counted in
``dataset.swaps_missed`` and the crop keeps its own background. A neighbour
(``augment.neighbour_prob``) is another record of the same set, loaded likewise for its image,
its person mask and its box; one that cannot be pasted (either record without a mask, a
corrupt record) is counted in ``dataset.neighbours_missed``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from edge.codec import HeatmapCodec

from ..losses import pack_targets
from .augment import AugmentConfig, AugmentParams, Normalisation, make_example, sample_params
from .base import (
    CorruptSample,
    DatasetError,
    LandmarkDataset,
    RecordLoader,
    Sample,
    SkipCounter,
)
from .teacher_scores import TeacherScoresConfig


class _Loader(RecordLoader):
    """The per-record work of the map step: an augmented crop and its packed heatmap targets."""

    def __init__(
        self,
        dataset: LandmarkDataset,
        codec: HeatmapCodec,
        normalise: Normalisation,
        augment: AugmentConfig,
        seed: int,
        teacher: TeacherScoresConfig | None = None,
    ) -> None:
        k = dataset.skeleton.num_landmarks
        s, (hw, hh) = codec.input_size[0], codec.heatmap_size
        empty = (np.zeros((s, s, 3), np.float32), np.zeros((hh, hw, 2 * k), np.float32))
        super().__init__(dataset, seed, empty)
        self.codec = codec
        self.normalise = normalise
        self.augment = augment
        self.teacher = teacher

    def make(self, sample, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        params = sample_params(rng, self.augment)
        if self.teacher is not None and self.teacher.on and sample.scores is None:
            self.dataset.unscored.record(sample.id, "its visible points weigh 1")
        image, heatmaps, weights = make_example(
            sample,
            codec=self.codec,
            skeleton=self.dataset.skeleton,
            normalise=self.normalise,
            params=params,
            background=self.background(sample, params),
            teacher=self.teacher,
            neighbour=self.neighbour(sample, params),
        )
        return image, pack_targets(heatmaps, weights)

    def background(self, sample: Sample, params: AugmentParams) -> np.ndarray | None:
        """The image of the record ``params`` drew as ``sample``'s new background, or None:
        none drawn, or one that cannot be made (counted in ``dataset.swaps_missed``)."""
        if params.background is None:
            return None
        missed = self.dataset.swaps_missed
        drawn = self._drawn(sample, params.background.record, "background", missed)
        return None if drawn is None else drawn[1].image

    def neighbour(self, sample: Sample, params: AugmentParams) -> Sample | None:
        """The record ``params`` drew to stand beside ``sample``'s person, or None: none
        drawn, or one that cannot be pasted (counted in ``dataset.neighbours_missed``)."""
        if params.neighbour is None:
            return None
        missed = self.dataset.neighbours_missed
        drawn = self._drawn(sample, params.neighbour.record, "neighbour", missed)
        if drawn is None:
            return None
        index, other = drawn
        if other.mask is None:
            missed.record(sample.id, f"neighbour record {index} has no person mask")
            return None
        return other

    def _drawn(
        self, sample: Sample, fraction: float, what: str, missed: SkipCounter
    ) -> tuple[int, Sample] | None:
        """The record at ``fraction`` of the dataset (its index, and it), which a draw for
        ``sample`` picked as its ``what``; None, counted in ``missed``, when ``sample`` has no
        person mask to cut along or the record is corrupt."""
        if sample.mask is None:  # checked first: a record without a mask costs no second read
            missed.record(sample.id, "it has no person mask")
            return None
        n = len(self.dataset)
        index = min(int(fraction * n), n - 1)
        try:
            return index, self.dataset.load(index)
        except CorruptSample as exc:
            missed.record(sample.id, f"{what} record {index}: {exc}")
            return None


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
    teacher: TeacherScoresConfig | None = None,
) -> tf.data.Dataset:
    """An endless, shuffled stream of ``(images, (targets,) * num_stacks)`` batches.

    ``teacher``: what the records' teacher scores do to the targets (the config's
    ``teacher_scores``, :mod:`training.data.teacher_scores`); None: nothing. Examples made
    from records without scores while it is on are counted in ``dataset.unscored``.

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
    count = shard[1]
    ds = record_batches(
        _Loader(dataset, codec, normalise, augment, seed, teacher),
        tf.float32,
        seed=seed,
        batch_size=batch_size,
        num_stacks=num_stacks,
        workers=workers,
        deterministic=deterministic,
        shard=shard,
    )
    options = tf.data.Options()
    # Records come from Python, not files: a strategy that shards this dataset itself must
    # shard by element. (Multi-worker training passes ``shard`` and no sharding is left to do.)
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF
        if count > 1
        else tf.data.experimental.AutoShardPolicy.DATA
    )
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def record_batches(
    loader: RecordLoader,
    target_dtype: tf.DType,
    *,
    seed: int,
    batch_size: int,
    num_stacks: int,
    workers: int | None = None,
    deterministic: bool = False,
    shard: tuple[int, int] = (0, 1),
) -> tf.data.Dataset:
    """The tf.data stream every training task shares (landmarks here, part segmentation in
    training.segmentation.task): record indices reshuffled each pass, paired with their
    stream position, this pipeline's ``shard`` of them, ``loader`` on a parallel map (its
    skipped records dropped), whole batches, the targets once per stack. Not prefetched."""
    index, count = shard
    if not 0 <= index < count:
        raise DatasetError(f"input pipeline {index} of {count} does not exist")
    n = len(loader.dataset)
    if n == 0:
        raise DatasetError("the training set is empty")
    image_shape, target_shape = (arr.shape for arr in loader.empty)

    def load(position: tf.Tensor, counter: tf.Tensor):
        image, target, ok = tf.numpy_function(
            loader, [position, counter], [tf.float32, target_dtype, tf.bool], stateful=False
        )
        image.set_shape(image_shape)
        target.set_shape(target_shape)
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
    return ds.map(lambda images, targets: (images, (targets,) * num_stacks))
