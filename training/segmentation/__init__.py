"""Part segmentation with the binary hourglass (the paper's facial part segmentation).

The same network as the landmark models, with one logit map per class instead of one
heatmap per landmark, trained with softmax cross-entropy on every stack. ``data`` (readers:
Helen's label-probability PNGs, a single label map per image, synthetic faces), ``augment``
(the landmark augmentation applied to an image and its class map), ``pipeline`` (tf.data),
``train`` (called by ``python -m training.train`` for ``task: segmentation``) and
``evaluate`` (called by ``python -m training.evaluate`` for a segmentation dataset).
"""
