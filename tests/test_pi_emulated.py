"""The edge runtime on an emulated Raspberry Pi (aarch64 Python 3.11 under qemu, Cortex-A72).

The same script runs on x86 (this interpreter) and under emulation with the aarch64 wheels;
the heatmaps must agree. Models are tiny (64x64 input): emulation costs ~1000x.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pi as pi_lane
import pytest

pytestmark = pytest.mark.pi

# Loads a .tflite with tflite-runtime (optionally through an external delegate), runs it on
# the saved input and saves every output. Identical text on both machines.
RUNNER = r"""
import json, sys
import numpy as np
from tflite_runtime.interpreter import Interpreter, load_delegate
model, x_path, out_path, delegate = sys.argv[1:5]
delegates = [load_delegate(delegate)] if delegate != "-" else []
interp = Interpreter(model_path=model, experimental_delegates=delegates, num_threads=1)
interp.allocate_tensors()
interp.set_tensor(interp.get_input_details()[0]["index"], np.load(x_path))
interp.invoke()
outs = {str(i): interp.get_tensor(d["index"]) for i, d in enumerate(interp.get_output_details())}
np.savez(out_path, **outs)
import platform
print(json.dumps({"machine": platform.machine(), "outputs": len(outs)}))
"""


@pytest.fixture(scope="module")
def pi() -> pi_lane.Pi:
    return pi_lane.session_pi()


def _run_both(
    pi: pi_lane.Pi,
    model: Path,
    x: np.ndarray,
    tmp: Path,
    *,
    x86_delegate: str = "-",
    pi_delegate: str = "-",
):
    x_path = tmp / "x.npy"
    np.save(x_path, x)
    host = subprocess.run(
        [sys.executable, "-c", RUNNER, str(model), str(x_path), str(tmp / "x86.npz"), x86_delegate],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert host.returncode == 0, host.stderr[-3000:]
    info = json.loads(
        pi.run_python(
            RUNNER, str(model), str(x_path), str(tmp / "pi.npz"), pi_delegate
        ).splitlines()[-1]
    )
    assert info["machine"] == "aarch64"
    with np.load(tmp / "x86.npz") as a, np.load(tmp / "pi.npz") as b:
        return [a[k] for k in sorted(a)], [b[k] for k in sorted(b)]


def test_pi_userland_is_raspberry_pi_os_python(pi: pi_lane.Pi) -> None:
    out = pi.run_python(
        "import platform, sys, numpy, cv2, tflite_runtime;"
        "print(platform.machine(), '%d.%d' % sys.version_info[:2], numpy.__version__, cv2.__version__)"
    )
    machine, version, numpy_version, cv2_version = out.split()
    assert (machine, version) == ("aarch64", "3.11")
    assert numpy_version.startswith("1.") and cv2_version.startswith("4.11")


@pytest.fixture(scope="module")
def float_model(tmp_path_factory) -> Path:
    """A tiny float landmark-shaped network (64x64x3 -> 16x16x16 heatmaps) as stock TFLite."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((64, 64, 3))
    x = tf.keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inp)
    x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    x = tf.keras.layers.Conv2D(16, 1)(x)
    model = tf.keras.Model(inp, x)
    path = tmp_path_factory.mktemp("pi_float") / "tiny_float.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def test_float_model_heatmaps_equal_x86(pi: pi_lane.Pi, float_model: Path, tmp_path: Path) -> None:
    x = np.random.default_rng(0).uniform(-1, 1, (1, 64, 64, 3)).astype(np.float32)
    x86, arm = _run_both(pi, float_model, x, tmp_path)
    assert len(x86) == len(arm) == 1
    assert x86[0].shape == (1, 16, 16, 16)
    np.testing.assert_allclose(arm[0], x86[0], atol=1e-5, rtol=1e-5)
    assert float(np.abs(x86[0]).max()) > 1e-2  # a real signal, not two zero tensors
