"""The edge runtime on an emulated Raspberry Pi: Bookworm (aarch64 Python 3.11, tflite-runtime)
and Trixie (Python 3.13, apt's numpy 2, ai-edge-litert) under qemu, Cortex-A72 and A76.

The same script runs on x86 (this interpreter) and under emulation with the aarch64 wheels;
the heatmaps must agree. Models are tiny (64x64 input): emulation costs ~1000x.
"""

from __future__ import annotations

import dataclasses
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
    host = subprocess.run(
        [sys.executable, "-c", RUNNER, str(model), str(crops_path), str(tmp / "x86.npy")],
        cwd=pi_lane.REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert host.returncode == 0, host.stderr[-3000:]
    out = pi.run_python(
        RUNNER,
        str(model),
        str(crops_path),
        str(tmp / "pi.npy"),
        env={"BINLAND_TFLITE_RUNTIME": "tflite_runtime"},
        pythonpath=pi_path,
        cwd=tmp,
    )
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


@pytest.mark.tensorflow  # its model is built by converters.convert
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


@pytest.mark.tensorflow  # its model is built by converters.convert
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
    code = (
        "from edge.deploy import ServiceSettings, render_sysusers, render_unit\n"
        "s = ServiceSettings(model_name='pose.tflite', token='pi-lane-token-0123456789')\n"
        "print(render_unit(s) + '----\\n' + render_sysusers(s), end='')\n"
    )
    unit, sysusers = pi.run_python(code).split("----\n")
    pi_lane.check_service_unit(
        unit, user="binland", prefix="/opt/binland", token="pi-lane-token-0123456789"
    )
    assert "m binland video" in sysusers.splitlines()


# --- Raspberry Pi OS Trixie: Python 3.13, apt's numpy 2, ai-edge-litert, Pi 4 and Pi 5 ---------


@pytest.fixture(scope="module")
def trixie() -> pi_lane.Pi:
    return pi_lane.session_pi(pi_lane.TRIXIE)


def test_trixie_userland_is_python_313_with_apt_numpy_2(trixie: pi_lane.Pi) -> None:
    out = trixie.run_python(
        "import platform, sys, numpy;"
        "print(platform.machine(), '%d.%d' % sys.version_info[:2], numpy.__version__, numpy.__file__);"
        "print(platform.freedesktop_os_release()['VERSION_CODENAME'])",
        pythonpath=[],
    )
    (machine, version, numpy_version, numpy_file), (codename,) = (
        line.split() for line in out.splitlines()
    )
    assert (machine, version, codename) == ("aarch64", "3.13", "trixie")
    assert numpy_version.startswith("2.")
    assert numpy_file.endswith("/usr/lib/python3/dist-packages/numpy/__init__.py")


def bundled_pose_model() -> Path:
    """The bundled demo pose model, whatever its size today (it is replaced from time to time)."""
    import edge

    return Path(edge.__file__).parent / "models" / "pose.tflite"


DEMO_FRAMES = 3  # a few frames of the built-in demo clip


@pytest.fixture(scope="module")
def trixie_deployed(trixie: pi_lane.Pi, tmp_path_factory) -> tuple[Path, str]:
    """A copy of the Trixie userland with the bundled pose model deployed by
    ``python -m edge.deploy --rootfs`` (one interpreter thread: emulation shares this
    machine's few cores); returns the root and what the deploy printed."""
    import shutil

    root = tmp_path_factory.mktemp("trixie") / "root"
    shutil.copytree(trixie.root, root, symlinks=True)
    argv = [
        sys.executable,
        "-m",
        "edge.deploy",
        "--model",
        str(bundled_pose_model()),
        "--rootfs",
        str(root),
        "--threads",
        "1",
    ]
    outputs = []
    for _ in range(2):  # the second deploy must change nothing
        proc = subprocess.run(argv, cwd=pi_lane.REPO, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        outputs.append(proc.stdout)
    assert "changed 0 of" in outputs[1], outputs[1]
    return root, outputs[0]


def test_trixie_deploy_uses_the_system_numpy_ai_edge_litert_and_a_cp313_native_library(
    trixie_deployed: tuple[Path, str],
) -> None:
    root, out = trixie_deployed
    assert "Debian GNU/Linux 13 (trixie), Python 3.13 on aarch64: numpy 2." in out
    assert "from apt (python3-numpy); none in the venv" in out
    site = root / "opt/binland/venv/lib/python3.13/site-packages"
    assert (site / "ai_edge_litert").is_dir() and (site / "cv2").is_dir()
    assert not list(site.glob("numpy*")) and not (site / "tflite_runtime").exists()
    assert (site / "edge/native/_lce_delegate.cpython-313-aarch64-linux-gnu.so").is_file()
    # In the service's venv exactly one numpy is importable: the system's 2.x.
    pi = dataclasses.replace(pi_lane.session_pi(pi_lane.TRIXIE), root=root)
    venv_python = "/opt/binland/venv/bin/python"
    code = (
        "import sys, os, numpy\n"
        "found = [p for p in sys.path if os.path.isfile(os.path.join(p or '.', 'numpy', '__init__.py'))]\n"
        "print(numpy.__version__, numpy.__file__, len(found))\n"
    )
    proc = pi.run(
        ["-c", code],
        program=pi_lane.guest_path(root, venv_python),
        argv0=venv_python,
        pythonpath=[],
        cwd=root / "opt/binland",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    version, numpy_file, count = proc.stdout.split()
    assert version.startswith("2.") and count == "1"
    assert numpy_file == "/usr/lib/python3/dist-packages/numpy/__init__.py"


def _landmarks(jsonl: Path) -> np.ndarray:
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert records, f"{jsonl} is empty"
    return np.array(
        [[[lm["x"], lm["y"], lm["score"]] for lm in r["landmarks"]] for r in records], np.float64
    )


# Both sides treat every frame as a lost track (a mean score below 2 always is), so each frame
# starts from one of the fixed search boxes and its input is the same picture on both CPUs.
# With tracking, frame n's crop comes from frame n-1's landmarks, which the two CPUs' float
# maths (numpy's log in the decode, OpenCV's warp) round differently in the last bits: the crop
# moves by 1e-6 pixels, and a 1-bit network can answer that with one flipped sign somewhere, so
# the landmarks may then differ by more than the tolerance although every op is exact (measured
# with the bundled pose model: 12 px on the third frame). This lane checks that exactness:
# the same input gives the same outputs. No finder either ("auto" runs our 1-bit person finder
# on a lost track; its float stem rounds alike, and moves the crop alike).
SEARCH_BOXES_ONLY = "2.0"
NO_FINDER = "none"


@pytest.fixture(scope="module")
def x86_demo_landmarks(tmp_path_factory) -> np.ndarray:
    """The bundled pose model on the demo clip on this machine (computed now, never stored)."""
    out = tmp_path_factory.mktemp("x86") / "x86.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "edge.live",
        "--model",
        str(bundled_pose_model()),
        "--source",
        "demo",
        "--threads",
        "1",
        "--min-score",
        "0.3",
        "--lost-below",
        SEARCH_BOXES_ONLY,
        "--person-finder",
        NO_FINDER,
        "--no-display",
        "--jsonl",
        str(out),
        "--max-frames",
        str(DEMO_FRAMES),
    ]
    proc = subprocess.run(cmd, cwd=pi_lane.REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _landmarks(out)


@pytest.mark.slow
@pytest.mark.parametrize("cpu", [pi_lane.PI_CPU, pi_lane.PI5_CPU])  # Pi 4, Pi 5
def test_trixie_service_gives_x86_landmarks_on_the_demo_clip(
    cpu: str, trixie_deployed: tuple[Path, str], x86_demo_landmarks: np.ndarray, tmp_path: Path
) -> None:
    """The unit's own command line (ExecStart with its EnvironmentFile) under qemu on the bundled
    pose model, a few demo frames: landmarks equal x86's, the native library runs its NEON
    kernels, and the doctor sees one numpy, the system's."""
    from edge.deploy import exec_start_argv, parse_env_file

    root, _ = trixie_deployed
    pi = dataclasses.replace(pi_lane.session_pi(pi_lane.TRIXIE), root=root, cpu=cpu)
    unit = (root / "etc/systemd/system/binland.service").read_text()
    env = parse_env_file((root / "opt/binland/binland.env").read_text())
    out = tmp_path / "pi.jsonl"
    env.update(
        BINLAND_SOURCE="demo",
        BINLAND_SERVE="127.0.0.1:0",
        BINLAND_LOST_BELOW=SEARCH_BOXES_ONLY,
        BINLAND_PERSON_FINDER=NO_FINDER,
        BINLAND_ARGS=f"--jsonl {out} --max-frames {DEMO_FRAMES}",
        PYTHONUNBUFFERED="1",
    )
    argv = exec_start_argv(unit, env)
    assert argv[:3] == ["/opt/binland/venv/bin/python", "-m", "edge.live"]
    proc = pi.run(
        argv[1:],
        program=pi_lane.guest_path(root, argv[0]),
        argv0=argv[0],
        pythonpath=[],
        env=env,
        cwd=root / "opt/binland",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    arm = _landmarks(out)
    x86 = x86_demo_landmarks
    assert arm.shape == x86.shape and arm.shape[0] == DEMO_FRAMES
    np.testing.assert_allclose(arm, x86, atol=1e-3)  # the Bookworm lane's tolerance
    assert np.ptp(x86[..., :2], axis=1).max() > 1  # landmarks spread out: a real prediction

    venv_python = "/opt/binland/venv/bin/python"
    proc = pi.run(
        ["-m", "edge.doctor", "--threads", "1", "--frames", "2", "--json"],
        program=pi_lane.guest_path(root, venv_python),
        argv0=venv_python,
        pythonpath=[],
        cwd=root / "opt/binland",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    assert "Debian GNU/Linux 13 (trixie)" in checks["os"]["detail"]
    assert (
        checks["python"]["detail"].startswith("3.13.")
        and "on aarch64" in checks["python"]["detail"]
    )
    numpy_check = checks["numpy"]
    assert numpy_check["status"] == "ok" and "shadows" not in numpy_check["detail"]
    assert numpy_check["detail"].startswith("2.") and "from the system" in numpy_check["detail"]
    assert "/usr/lib/python3/dist-packages/numpy" in numpy_check["detail"]
    assert "ai_edge_litert 2.3" in checks["runtime"]["detail"]
    assert (
        "_lce_delegate.cpython-313-aarch64-linux-gnu.so (kernel path neon"
        in checks["native"]["detail"]
    )
    assert "native LCE delegate" in checks["load"]["detail"]


@pytest.mark.slow
def test_trixie_service_streams_the_demo_clip_to_a_viewer_with_the_token(
    trixie_deployed: tuple[Path, str],
) -> None:
    """Issue 25: the hardened unit still streams. Its own command line (ExecStart with its
    EnvironmentFile, the stream on the deployed settings' token) under qemu on the demo clip:
    a viewer without the token is refused, one with it gets whole JPEG frames, and SIGTERM
    ends the service cleanly (exit 0)."""
    import socket
    import time
    import urllib.error
    import urllib.request

    import cv2

    from edge.deploy import exec_start_argv, parse_env_file

    root, _ = trixie_deployed
    pi = dataclasses.replace(pi_lane.session_pi(pi_lane.TRIXIE), root=root)
    unit = (root / "etc/systemd/system/binland.service").read_text()
    env = parse_env_file((root / "opt/binland/binland.env").read_text())
    token = env["BINLAND_STREAM_TOKEN"]
    with socket.socket() as probe:  # a free port for the stream
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env.update(
        BINLAND_SOURCE="demo",
        BINLAND_SERVE=f"127.0.0.1:{port}",
        BINLAND_ARGS="--loop",
        PYTHONUNBUFFERED="1",
    )
    argv = exec_start_argv(unit, env)
    assert argv[:3] == ["/opt/binland/venv/bin/python", "-m", "edge.live"]
    assert token not in " ".join(argv)
    proc = subprocess.Popen(
        pi.command(argv[1:], program=pi_lane.guest_path(root, argv[0]), argv0=argv[0]),
        env=pi.env([], env),
        cwd=root / "opt/binland",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/stream.mjpg"
    try:
        deadline = time.monotonic() + 400  # the emulated start: interpreter, numpy, the model
        while True:
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the stream never came up"
            try:
                urllib.request.urlopen(url, timeout=10)
            except urllib.error.HTTPError as refused:
                assert refused.code == 401  # no token: no camera
                break
            except OSError:
                time.sleep(0.5)  # not listening yet
            else:
                raise AssertionError("the stream answered a viewer without the token")
        with urllib.request.urlopen(f"{url}?token={token}", timeout=300) as stream:
            data = b""
            while data.count(b"\xff\xd9") < 2:  # two whole JPEG frames
                chunk = stream.read1(65536)
                assert chunk, "the stream ended"
                data += chunk
        start = data.index(b"\xff\xd8")
        frame = cv2.imdecode(
            np.frombuffer(data[start : data.index(b"\xff\xd9", start) + 2], np.uint8),
            cv2.IMREAD_COLOR,
        )
        assert frame is not None and frame.shape == (480, 640, 3)  # the demo clip, annotated
        proc.terminate()  # systemctl stop
        output = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output[-3000:]
    assert "(interrupted)" in output and token not in output
