"""Run Python on an emulated Raspberry Pi: Debian arm64 under qemu, a Cortex-A72 (Pi 4) or
Cortex-A76 (Pi 5).

Two releases, as Raspberry Pi OS ships them:

* ``bookworm``: Python 3.11; the aarch64 wheels (numpy<2, tflite-runtime 2.14, OpenCV 4.11)
  unpacked next to it; this machine's qemu-aarch64-static (Bookworm's 7.2).
* ``trixie``: Python 3.13 and numpy 2.2 from apt; ai-edge-litert and OpenCV 4.12+ unpacked next
  to it without a numpy of their own; Trixie's qemu 10, because Bookworm's crashes
  ai-edge-litert.

The userlands come from ``.ci/pi_rootfs.sh`` (Debian's own arm64 .debs, unpacked). qemu is
called explicitly because binfmt does not work in our sandboxes. Emulated timings mean
nothing; the outputs are what the tests compare.

Use the ``pi`` fixture (see ``tests/conftest.py``) or call :func:`build_pi` yourself::

    pi = build_pi()
    out = pi.run_python("import platform; print(platform.machine())")   # 'aarch64'
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

import edge

REPO = Path(__file__).resolve().parents[1]
ROOTFS_SCRIPT = REPO / ".ci" / "pi_rootfs.sh"
QEMU = "qemu-aarch64-static"
PI_CPU = "cortex-a72"  # the Raspberry Pi 4's core
PI5_CPU = "cortex-a76"  # the Raspberry Pi 5's core
CROSS_CC = "aarch64-linux-gnu-gcc"
BOOKWORM, TRIXIE = "bookworm", "trixie"
PYTHON_OF = {BOOKWORM: "3.11", TRIXIE: "3.13"}


def cache_dir(release: str = BOOKWORM) -> Path:
    base = Path(os.environ.get("BINLAND_PI_CACHE") or edge.cache_dir("pi"))
    return base if release == BOOKWORM else base.with_name(f"{base.name}-{release}")


class PiUnavailable(RuntimeError):
    """The emulated Pi cannot be built on this machine (no qemu and no way to install it)."""


@dataclass(frozen=True)
class Pi:
    root: Path  # the arm64 userland, given to qemu as -L
    site: Path  # aarch64 wheels, put on PYTHONPATH
    python_version: str = "3.11"
    qemu: str = QEMU  # the qemu-aarch64 to run (a path for Trixie's own)
    cpu: str = PI_CPU

    @property
    def python(self) -> Path:
        return self.root / "usr" / "bin" / f"python{self.python_version}"

    def command(
        self, args: list[str], *, program: Path | None = None, argv0: str | None = None
    ) -> list[str]:
        """The host command line that runs ``program args`` (default: Python) under qemu.

        ``program`` is a host path to an aarch64 executable; ``argv0`` is what the guest sees as
        its own path (e.g. a venv's ``/opt/binland/venv/bin/python``, resolved inside the root).
        """
        cmd = [self.qemu, "-cpu", self.cpu, "-L", str(self.root)]
        if argv0:
            cmd += ["-0", argv0]
        return [*cmd, str(program or self.python), *args]

    def env(
        self, pythonpath: list[str | Path] | None = None, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        # BINLAND_SIMD is this host's: an x86 kernel path forced here (to run the suite as an
        # AVX2-only host would) names a path the emulated Pi lacks, and its delegate refuses it.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("PYTHON") and k not in ("VIRTUAL_ENV", "BINLAND_SIMD")
        }
        paths = [self.site, REPO] if pythonpath is None else pythonpath
        if paths:
            env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # keep x86 and aarch64 runs out of each other's caches
        env["PYTHONNOUSERSITE"] = "1"
        env.update(extra or {})
        return env

    def run(
        self,
        args: list[str],
        *,
        program: Path | None = None,
        argv0: str | None = None,
        pythonpath: list[str | Path] | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess:
        """Run under qemu and return the finished process (stdout/stderr as text); never raises on exit code."""
        return subprocess.run(
            self.command(args, program=program, argv0=argv0),
            env=self.env(pythonpath, env),
            cwd=cwd or REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run_python(self, code: str, *args: str, timeout: float = 300, **kwargs) -> str:
        """Run a Python snippet under emulation with PYTHONPATH=SITE:<repo>; return its stdout.

        Raises AssertionError with the guest's stderr when the snippet fails, so a test shows why.
        """
        proc = self.run(["-c", code, *args], timeout=timeout, **kwargs)
        if proc.returncode != 0:
            raise AssertionError(
                f"emulated python failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
            )
        return proc.stdout


def guest_path(root: Path, path: str) -> Path:
    """The host path of a file inside ``root``, following symlinks as the Pi would.

    A venv's ``bin/python`` is an absolute link to ``/usr/bin/python3``: on the host that
    would be this machine's Python, so resolve it inside the root before handing it to qemu.
    """
    p = PurePosixPath(path)
    for _ in range(40):
        host = root / str(p).lstrip("/")
        if not host.is_symlink():
            return host
        link = os.readlink(host)
        p = PurePosixPath(link) if link.startswith("/") else p.parent / link
    raise RuntimeError(f"too many symlinks resolving {path} in {root}")


def write_test_video(path: Path, *, frames: int = 6, size: tuple[int, int] = (160, 120)) -> Path:
    """A short lossless (FFV1) clip of a bright blob moving over a gradient.

    Lossless so that x86 and aarch64 OpenCV decode the very same pixels.
    """
    import cv2

    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 10.0, (w, h))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write FFV1 video here")
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(frames):
        cx, cy = w * (0.3 + 0.08 * i), h * (0.5 + 0.05 * np.sin(i))
        blob = 200 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (h / 6) ** 2))
        frame = np.stack([xx * 255 / w * 0.3, yy * 255 / h * 0.3, np.zeros_like(xx, float)], -1)
        writer.write(np.clip(frame + blob[..., None], 0, 255).astype(np.uint8))
    writer.release()
    return path


def unavailable_reason() -> str | None:
    """Why the emulated Pi cannot be built here, or None if it can (or can be installed)."""
    if sys.platform != "linux":
        return "the emulated Raspberry Pi needs Linux (qemu-user)"
    have_tools = shutil.which(QEMU) and shutil.which(CROSS_CC)
    if have_tools:
        return None
    can_install = shutil.which("apt-get") and (os.geteuid() == 0 or shutil.which("sudo"))
    if not can_install:
        return f"{QEMU} / {CROSS_CC} are missing and apt-get is not available to install them"
    return None


def build_pi(dest: Path | None = None, release: str = BOOKWORM) -> Pi:
    """Build (or reuse) the emulated Pi userland of ``release``. Cheap when it already exists.

    Serialised with a file lock so parallel test sessions do not rebuild the same folder at once.
    """
    reason = unavailable_reason()
    if reason:
        raise PiUnavailable(reason)
    dest = Path(dest or cache_dir(release))
    dest.mkdir(parents=True, exist_ok=True)
    root, site = dest / "root", dest / "site"
    env = dict(os.environ, PIP=f"{sys.executable} -m pip")
    args = [] if release == BOOKWORM else [release, str(dest / "qemu-aarch64")]
    with open(dest / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run(
            ["bash", str(ROOTFS_SCRIPT), str(root), str(site), *args],
            env=env,
            capture_output=True,
            text=True,
        )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{ROOTFS_SCRIPT.name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    if release == BOOKWORM:
        return Pi(root=root, site=site)
    return Pi(
        root=root, site=site, python_version=PYTHON_OF[release], qemu=str(dest / "qemu-aarch64")
    )


_session_pis: dict[str, Pi] = {}


def session_pi(release: str = BOOKWORM) -> Pi:
    """The emulated Pi for this test session: built once, skipped with a reason if impossible.

    Use it from a fixture in your test module::

        @pytest.fixture(scope="module")
        def pi():
            return tests_pi.session_pi()
    """
    import pytest

    if release not in _session_pis:
        try:
            _session_pis[release] = build_pi(release=release)
        except PiUnavailable as exc:
            pytest.skip(f"emulated Raspberry Pi ({release}) unavailable: {exc}")
    return _session_pis[release]


def save_tiny_landmark_keras(path: Path, *, binary: bool) -> Path:
    """A tiny 16-landmark network (64x64x3 -> 16x16x16) saved as .keras, for emulated tests.

    ``binary`` adds larq binary convolutions (ste_sign inputs and weights, pad_values=1) that
    LCE converts to bitpacked ``LceBconv2d`` ops. Imports TensorFlow: call from the x86 side.
    """
    import training  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

    try:
        from training.models import build_hourglass
    except ImportError:
        build_hourglass = None
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    if build_hourglass is not None:
        model = build_hourglass(
            num_stacks=1,
            depth=2,
            features=32,
            num_landmarks=16,
            input_size=64,
            block="hpm",
            binary=binary,
        )
    else:
        import larq as lq

        def conv(x, filters):
            if not binary:
                return tf.keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            return lq.layers.QuantConv2D(
                filters,
                3,
                padding="same",
                pad_values=1.0,
                use_bias=False,
                input_quantizer="ste_sign",
                kernel_quantizer="ste_sign",
                kernel_constraint="weight_clip",
            )(x)

        inp = tf.keras.Input((64, 64, 3))
        x = tf.keras.layers.Conv2D(32, 3, strides=2, padding="same")(inp)
        x = tf.keras.layers.BatchNormalization()(x)
        x = tf.keras.layers.ReLU()(x)
        x = tf.keras.layers.MaxPool2D(2)(x)
        y = tf.keras.layers.BatchNormalization()(conv(x, 32))
        x = tf.keras.layers.Add()([x, y])
        y = tf.keras.layers.BatchNormalization()(conv(x, 32))
        x = tf.keras.layers.Add()([x, y])
        x = tf.keras.layers.Conv2D(16, 1)(x)
        model = tf.keras.Model(inp, x)
    # Non-trivial BatchNorm statistics, as after training, so outputs are not all alike.
    rng = np.random.default_rng(1)
    for layer in model.submodules:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape),
                    rng.normal(0, 0.3, beta.shape),
                    rng.normal(0, 0.3, mean.shape),
                    rng.uniform(0.5, 2, var.shape),
                ]
            )
    path = Path(path)
    model.save(path)
    return path


def convert_model(keras_path: Path, out: Path, *, fmt: str) -> Path:
    """``python -m converters.convert`` (the project's converter CLI) on a tiny model."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "converters.convert",
            str(keras_path),
            "-o",
            str(out),
            "--format",
            fmt,
            "--skeleton",
            "mpii16",
            "--check-inputs",
            "0",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise AssertionError(f"converters.convert failed:\n{proc.stderr[-3000:]}")
    return out


def cross_build_native(out_dir: Path) -> Path:
    """The project's native LCE delegate (edge.native), cross-compiled for aarch64."""
    from edge import native

    return native.build(out_dir, cc=CROSS_CC)


def stage_edge_package(
    dest: Path, *, native_library: Path | None = None, python_version: str = "3.11"
) -> Path:
    """A copy of the ``edge`` package laid out as ``edge.deploy`` installs it on the Pi, with
    ``native_library`` (an aarch64 build) where edge.native looks first. Returns the folder to
    put on PYTHONPATH, so the emulated Python never sees this checkout's x86 builds."""
    from edge.deploy import PythonInfo, native_library_name, runtime_files

    for rel, data in runtime_files().items():
        (dest / "edge" / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / "edge" / rel).write_bytes(data)
    if native_library is not None:
        name = native_library_name(PythonInfo(python_version, "aarch64", (2, 36)))
        shutil.copy(native_library, dest / "edge" / "native" / name)
    return dest


_tiny_models: dict[str, Path] = {}


def tiny_model(fmt: str) -> Path:
    """The tiny project hourglass converted with ``--format fmt`` ("float" or "lce"), built once
    per test session. One child process builds and converts it (TensorFlow loads once, and
    never in the test process itself)."""
    if fmt not in _tiny_models:
        import atexit
        import tempfile

        d = Path(tempfile.mkdtemp(prefix=f"binland-tiny-{fmt}-"))
        atexit.register(shutil.rmtree, d, True)
        keras, out = d / "tiny.keras", d / f"tiny_pose_{fmt}.tflite"
        script = (
            "import sys; from pathlib import Path\n"
            f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "import pi\n"
            f"pi.save_tiny_landmark_keras(Path({str(keras)!r}), binary={fmt == 'lce'})\n"
            "from converters.convert import main\n"
            f"sys.exit(main([{str(keras)!r}, '-o', {str(out)!r}, '--format', {fmt!r},"
            " '--skeleton', 'mpii16', '--check-inputs', '0']))\n"
        )
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if proc.returncode != 0:
            raise AssertionError(f"building the tiny {fmt} model failed:\n{proc.stderr[-3000:]}")
        _tiny_models[fmt] = out
    return _tiny_models[fmt]


def check_service_unit(
    unit: str,
    *,
    user: str,
    prefix: str,
    token: str | None = None,
    sysusers: str = "/etc/sysusers.d/binland.conf",
) -> None:
    """Assert what ``edge.deploy``'s systemd unit must say: the unprivileged user in group
    video, the hardening that leaves the camera alone (its device groups allowed, /dev not
    hidden), the stream's sockets, only the output folder writable, restarts with a back-off
    that systemd 252 honours, and never the stream's token."""
    from edge.deploy.service import HARDENING

    lines = unit.splitlines()
    for line in HARDENING:
        assert line in lines, f"{line!r} missing from the unit:\n{unit}"
    for group in ("video4linux", "media", "vchiq", "dma_heap"):  # /dev/video*, media*, ...
        assert f"DeviceAllow=char-{group} rw" in lines
    families = next(x for x in lines if x.startswith("RestrictAddressFamilies=")).split("=")[1]
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= set(families.split())
    assert any(x.startswith("ExecStartPre=-+/bin/sh -c ") for x in lines)  # the back-off wait
    assert any(x.startswith("ExecStopPost=-+/bin/sh -c ") for x in lines)  # ... and its count
    assert not any(x.startswith(("RestartSteps=", "RestartMaxDelaySec=")) for x in lines)
    for line in (
        f"User={user}",
        "SupplementaryGroups=video",
        f"EnvironmentFile={prefix}/binland.env",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        f"ReadWritePaths=-{prefix}/output",
        "Restart=always",
        "RestartSec=5",
        "StartLimitIntervalSec=0",
        f"ExecStartPre=+/usr/bin/install -d -o {user} -g video -m 2750 {prefix}/output",
    ):
        assert line in lines, f"{line!r} missing from the unit:\n{unit}"
    assert [x for x in lines if x.startswith("User=")] == [f"User={user}"]
    assert not any(x.startswith(("PrivateDevices", "DynamicUser")) for x in lines)
    assert sum(x.startswith("ReadWritePaths=") for x in lines) == 1
    if user == "binland":
        assert f"ExecStartPre=+/usr/bin/systemd-sysusers {sysusers}" in lines
    if token:
        assert token not in unit
    assert "BINLAND_STREAM_TOKEN" not in unit
