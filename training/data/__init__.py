"""Datasets: one reader per benchmark format plus procedural synthetic sets.

>>> from training.data import open_dataset, iter_samples
>>> ds = open_dataset("synthetic-pose", split="val", size=100, seed=0)
>>> sample = ds.load(0)   # Sample(image, points, visible, box, head_size, id)
"""

from .base import (
    DATASETS,
    CorruptSample,
    DatasetError,
    LandmarkDataset,
    Sample,
    SkipCounter,
    iter_samples,
    open_dataset,
    read_image,
)

__all__ = [
    "DATASETS",
    "CorruptSample",
    "DatasetError",
    "LandmarkDataset",
    "Sample",
    "SkipCounter",
    "iter_samples",
    "open_dataset",
    "read_image",
]
