"""A tiny real landmark .tflite for the live-pipeline tests, built once per test session.

An untrained 1-stack HPM hourglass (64x64 input, 16 MPII landmarks; a plain conv net of
the same input/output shape until ``training.models.build_hourglass`` exists) is saved as .keras and
converted by the real converter CLI (``--format float``), so the file carries the landmark
metadata that ``edge.live`` reads, exactly like a trained model does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _build_keras(path: Path, num_landmarks: int = 16) -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import training  # noqa: F401  (sets up Keras 2 before TensorFlow loads)

    try:
        from training.models import build_hourglass
    except ImportError:  # the hourglass is not in this checkout yet: a plain conv net
        import tensorflow as tf

        x = tf.keras.Input((64, 64, 3))
        y = tf.keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
        y = tf.keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(y)
        model = tf.keras.Model(x, tf.keras.layers.Conv2D(num_landmarks, 1)(y))
    else:
        model = build_hourglass(num_stacks=1, depth=2, features=32, num_landmarks=num_landmarks,
                                input_size=64, block="hpm", binary=False)  # fmt: skip
    model.save(path)


def tiny_landmark_tflite(folder: Path, skeleton: str = "mpii16") -> Path:
    """Path of a tiny float model for ``skeleton`` in ``folder``, converting it on first use."""
    from edge.skeletons import get_skeleton

    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"tiny_{skeleton}.tflite"
    if out.is_file():
        return out
    keras_path = folder / f"tiny_{skeleton}.keras"
    k = get_skeleton(skeleton).num_landmarks
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_USE_LEGACY_KERAS": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"}  # fmt: skip
    tmp = out.with_suffix(".partial.tflite")
    # One child process builds and converts (TensorFlow loads once), so the test process
    # itself never imports TensorFlow.
    script = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"from pathlib import Path; from tiny_models import _build_keras; "
        f"_build_keras(Path({str(keras_path)!r}), {k}); "
        f"from converters.convert import main; "
        f"sys.exit(main([{str(keras_path)!r}, '-o', {str(tmp)!r}, '--format', 'float', "
        f"'--skeleton', {skeleton!r}, '--check-inputs', '0']))"
    )
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=REPO,
                   capture_output=True)  # fmt: skip
    tmp.rename(out)  # only a complete file is ever reused
    return out


def tiny_pose_tflite(folder: Path) -> Path:
    """The tiny MPII-16 pose model (see :func:`tiny_landmark_tflite`)."""
    return tiny_landmark_tflite(folder, "mpii16")
