"""Shared pytest setup.

* ``TF_USE_LEGACY_KERAS`` is set before anything imports TensorFlow.
* Tests that need the train extra (TensorFlow, larq, the LCE interpreter) carry the
  ``tensorflow`` marker: the modules in :data:`TRAIN_MODULES` all of them, others one by one.
  With only ``pip install ".[edge,dev]"`` (a Raspberry Pi), run ``pytest -m "not tensorflow"``:
  those modules are then not even imported, and every other test runs (``.ci/run``'s
  edge-only lane). Without the train extra those modules are never collected; a marked test
  elsewhere that is selected anyway fails on the missing package (nothing is skipped).
"""

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Test modules that import the train extra (TensorFlow, larq, SciPy, training.*, converters
# that build models) at module level, or test only training and conversion.
TRAIN_MODULES = {
    "test_augment.py",
    "test_coco17_pipeline.py",
    "test_config_errors.py",
    "test_convert.py",
    "test_distributed.py",
    "test_evaluate.py",
    "test_evaluate_baselines.py",
    "test_finder.py",
    "test_label_face.py",
    "test_label_pose.py",
    "test_metadata.py",
    "test_metrics.py",
    "test_models.py",
    "test_native.py",
    "test_readers.py",
    "test_segmentation.py",
    "test_select.py",
    "test_splits.py",
    "test_synthetic.py",
    "test_tfrecord.py",
    "test_train.py",
}
HAVE_TRAIN_EXTRA = all(importlib.util.find_spec(m) for m in ("tensorflow", "larq"))
if not HAVE_TRAIN_EXTRA:
    # Not importable here: collecting them would only fail.
    collect_ignore = sorted(TRAIN_MODULES)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(str(item.fspath)).name in TRAIN_MODULES:
            item.add_marker(pytest.mark.tensorflow)
