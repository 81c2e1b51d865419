"""Part segmentation with the binary hourglass (the paper's facial part segmentation).

The same network as the landmark models, with one logit map per class instead of one
heatmap per landmark, trained with softmax cross-entropy on every stack. ``data`` (readers:
Helen's label-probability PNGs, a single label map per image, synthetic faces), ``augment``
(the landmark augmentation applied to an image and its class map), ``task`` (:class:`~training.segmentation.task.SegmentationTask`, what ``python -m
training.train`` runs for ``task: segmentation``, the tf.data stream included) and ``evaluate`` (scoring, what ``python -m
training.evaluate`` runs for a segmentation dataset).
"""
