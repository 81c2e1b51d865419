"""Every training task by name: the config's ``task:`` and evaluate's ``--dataset`` pick one.

Each task implements :class:`training.task.Task` in its own package (landmarks,
segmentation, finder) and is listed in :data:`TASKS`; the fit loop, the run folder and the
command lines need no change for a new one.
"""

from __future__ import annotations

from .config import ConfigError, TrainConfig
from .data.base import DatasetError
from .finder.task import FinderTask
from .landmarks.task import LandmarksTask
from .segmentation.task import SegmentationTask
from .task import Task

TASKS: dict[str, Task] = {
    task.name: task for task in (LandmarksTask(), SegmentationTask(), FinderTask())
}


def task_for_config(config: TrainConfig) -> Task:
    """The task a training config names."""
    try:
        return TASKS[config.task]
    except KeyError:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {config.task!r}") from None


def task_for_dataset(name: str) -> Task:
    """The task whose models are scored on dataset ``name``."""
    for task in TASKS.values():
        if name in task.eval_datasets:
            return task
    raise DatasetError(f"no task scores dataset {name!r}; known: {', '.join(eval_datasets())}")


def eval_datasets() -> list[str]:
    """Every dataset ``python -m training.evaluate --dataset`` takes."""
    return sorted(set().union(*(task.eval_datasets for task in TASKS.values())))
