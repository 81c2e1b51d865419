"""Desktop training and evaluation (TensorFlow + larq).

larq needs Keras 2. From TF 2.16 on that is ``tf-keras``, selected by TF_USE_LEGACY_KERAS=1,
which must be set before TensorFlow is first imported: importing this package does it, so
users never have to.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
