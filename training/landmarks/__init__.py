"""Landmarks (pose and face keypoints): the first task behind :class:`training.task.Task`.

``task`` (:class:`LandmarksTask`: the datasets with ``dataset.mix``, the hourglass with one
heatmap per landmark, MSE or BCE on every stack, PCKh/NME validation, the skeleton's
metadata) and ``evaluate`` (``python -m training.evaluate`` on a landmark dataset: crop,
flip test, decode, protocols, the mean-shape baseline, per-group tables, pictures).
"""
