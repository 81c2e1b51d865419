"""The 1-bit finder task (config ``task: finder``): every person or face in a whole frame.

data.py (the label tool's finder frames, whole-frame augmentation, the targets of
:class:`edge.finder_codec.FinderCodec`), task.py (:class:`~.task.FinderTask` in the task
seam), evaluate.py (recall and precision at IoU 0.5 for subjects taller than a sixth of the
frame, and the landmark crop's error).
"""
