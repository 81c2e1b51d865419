"""Keras -> TFLite conversion with embedded landmark metadata.

Sets TF_USE_LEGACY_KERAS=1 before TensorFlow is imported, for the same reason as ``training``.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
