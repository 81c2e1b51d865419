"""The edge runtime on an emulated Raspberry Pi (aarch64 Python 3.11 under qemu, Cortex-A72).

The same script runs on x86 (this interpreter) and under emulation with the aarch64 wheels;
the heatmaps must agree. Models are tiny (64x64 input): emulation costs ~1000x.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pi as pi_lane
import pytest

pytestmark = pytest.mark.pi

# The project's own runtime (edge.model.LandmarkModel on the tflite backend) turns saved BGR
# crops into heatmaps. The same text runs on x86 and on the emulated Pi.
RUNNER = r"""
import json, platform, sys
import numpy as np
from edge.model import LandmarkModel
model, crops_path, out_path = sys.argv[1:4]
m = LandmarkModel(model, backend="tflite", num_threads=1)
np.save(out_path, m.predict_heatmaps(np.load(crops_path)))
from edge.backends.tflite import native_library
print(json.dumps({"machine": platform.machine(), "backend": m.backend_description,
                  "native": str(native_library())}))
"""


@pytest.fixture(scope="module")
def pi() -> pi_lane.Pi:
    return pi_lane.session_pi()


def run_both(
    pi: pi_lane.Pi, model: Path, crops: np.ndarray, tmp: Path, *, pi_path: list[Path] | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Heatmaps from x86 and from the emulated Pi, and what the Pi said about its backend.

    ``pi_path`` is the Pi's PYTHONPATH (default: its wheels, then this checkout)."""
    crops_path = tmp / "crops.npy"
    np.save(crops_path, crops)
    env = dict(os.environ, BINLAND_TFLITE_RUNTIME="tflite_runtime")  # the Pi's runtime on both
    host = subprocess.run([sys.executable, "-c", RUNNER, str(model), str(crops_path), str(tmp / "x86.npy")],
                          cwd=pi_lane.REPO, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert host.returncode == 0, host.stderr[-3000:]
    out = pi.run_python(RUNNER, str(model), str(crops_path), str(tmp / "pi.npy"),
                        env={"BINLAND_TFLITE_RUNTIME": "tflite_runtime"}, pythonpath=pi_path, cwd=tmp)  # fmt: skip
    info = json.loads(out.splitlines()[-1])
    assert info["machine"] == "aarch64"
    return np.load(tmp / "x86.npy"), np.load(tmp / "pi.npy"), info


def sample_crops() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)


def test_pi_userland_is_raspberry_pi_os_python(pi: pi_lane.Pi) -> None:
    out = pi.run_python(
        "import platform, sys, numpy, cv2, tflite_runtime;"
        "print(platform.machine(), '%d.%d' % sys.version_info[:2], numpy.__version__, cv2.__version__)"
    )
    machine, version, numpy_version, cv2_version = out.split()
    assert (machine, version) == ("aarch64", "3.11")
    assert numpy_version.startswith("1.") and cv2_version.startswith("4.11")


@pytest.fixture(scope="module")
def float_model() -> Path:
    """The project's HPM hourglass (1 stack, depth 2, 32 features, 64x64 input), exported by
    ``python -m converters.convert --format float``: stock TFLite ops only."""
    return pi_lane.tiny_model("float")


def test_float_model_heatmaps_equal_x86(pi: pi_lane.Pi, float_model: Path, tmp_path: Path) -> None:
    x86, arm, info = run_both(pi, float_model, sample_crops(), tmp_path)
    assert "tflite_runtime 2.14.0" in info["backend"]
    assert x86.shape == arm.shape == (2, 16, 16, 16)
    np.testing.assert_allclose(arm, x86, atol=1e-5, rtol=1e-5)
    assert float(np.abs(x86).max()) > 1e-2  # a real signal, not two zero tensors


@pytest.fixture(scope="module")
def lce_model() -> Path:
    """The same hourglass with binary HPM blocks, exported bitpacked (LceBconv2d ops)."""
    return pi_lane.tiny_model("lce")


def test_bitpacked_model_runs_in_aarch64_tflite_runtime_with_the_native_delegate(
    pi: pi_lane.Pi, lce_model: Path, tmp_path: Path
) -> None:
    from edge import native
    from edge.metadata import custom_op_names

    assert {"LceBconv2d", "LceQuantize"} <= set(custom_op_names(lce_model.read_bytes()))
    native.ensure_library()  # x86: the same sources built for this machine
    arm_lib = pi_lane.cross_build_native(tmp_path / "aarch64")
    staged = pi_lane.stage_edge_package(tmp_path / "pkg", native_library=arm_lib)
    x86, arm, info = run_both(pi, lce_model, sample_crops(), tmp_path, pi_path=[pi.site, staged])
    assert "native LCE delegate" in info["backend"]
    assert info["native"] == str(
        staged / "edge/native/_lce_delegate.cpython-311-aarch64-linux-gnu.so"
    )
    assert x86.shape == arm.shape == (2, 16, 16, 16)
    np.testing.assert_allclose(arm, x86, atol=1e-5, rtol=1e-5)
    assert float(np.abs(x86).max()) > 1e-2


def test_service_unit_made_on_the_pi_runs_unprivileged_and_hardened(pi: pi_lane.Pi) -> None:
    """The unit edge.deploy writes, rendered by the Pi's own Python 3.11: the service runs as
    the system user binland in group video, hardened, restarted with a back-off."""
    code = ("from edge.deploy import ServiceSettings, render_sysusers, render_unit\n"
            "s = ServiceSettings(model_name='pose.tflite', token='pi-lane-token-0123456789')\n"
            "print(render_unit(s) + '----\\n' + render_sysusers(s), end='')\n")  # fmt: skip
    unit, sysusers = pi.run_python(code).split("----\n")
    pi_lane.check_service_unit(unit, user="binland", prefix="/opt/binland",
                               token="pi-lane-token-0123456789")  # fmt: skip
    assert "m binland video" in sysusers.splitlines()
