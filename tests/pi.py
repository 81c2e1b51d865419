"""Run Python on an emulated Raspberry Pi: Debian Bookworm arm64, Python 3.11, a Cortex-A72.

The userland comes from ``.ci/pi_rootfs.sh`` (Debian's own arm64 .debs, unpacked) and the
aarch64 wheels (numpy<2, tflite-runtime 2.14, OpenCV 4.11) are unpacked next to it. qemu is
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTFS_SCRIPT = REPO / ".ci" / "pi_rootfs.sh"
QEMU = "qemu-aarch64-static"
PI_CPU = "cortex-a72"  # the Raspberry Pi 4's core
CROSS_CC = "aarch64-linux-gnu-gcc"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("BINLAND_PI_CACHE") or Path(base) / "binland" / "pi")


class PiUnavailable(RuntimeError):
    """The emulated Pi cannot be built on this machine (no qemu and no way to install it)."""


@dataclass(frozen=True)
class Pi:
    root: Path  # the arm64 userland, given to qemu as -L
    site: Path  # aarch64 wheels, put on PYTHONPATH

    @property
    def python(self) -> Path:
        return self.root / "usr" / "bin" / "python3.11"

    def command(
        self, args: list[str], *, program: Path | None = None, argv0: str | None = None
    ) -> list[str]:
        """The host command line that runs ``program args`` (default: Python) under qemu.

        ``program`` is a host path to an aarch64 executable; ``argv0`` is what the guest sees as
        its own path (e.g. a venv's ``/opt/binland/venv/bin/python``, resolved inside the root).
        """
        cmd = [QEMU, "-cpu", PI_CPU, "-L", str(self.root)]
        if argv0:
            cmd += ["-0", argv0]
        return [*cmd, str(program or self.python), *args]

    def env(
        self, pythonpath: list[str | Path] | None = None, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"
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


def build_pi(dest: Path | None = None) -> Pi:
    """Build (or reuse) the emulated Pi userland. Cheap when it already exists.

    Serialised with a file lock so parallel test sessions do not rebuild the same folder at once.
    """
    reason = unavailable_reason()
    if reason:
        raise PiUnavailable(reason)
    dest = Path(dest or cache_dir())
    dest.mkdir(parents=True, exist_ok=True)
    root, site = dest / "root", dest / "site"
    env = dict(os.environ, PIP=f"{sys.executable} -m pip")
    with open(dest / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run(
            ["bash", str(ROOTFS_SCRIPT), str(root), str(site)],
            env=env,
            capture_output=True,
            text=True,
        )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{ROOTFS_SCRIPT.name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    return Pi(root=root, site=site)


_session_pi: Pi | None = None


def session_pi() -> Pi:
    """The emulated Pi for this test session: built once, skipped with a reason if impossible.

    Use it from a fixture in your test module::

        @pytest.fixture(scope="module")
        def pi():
            return tests_pi.session_pi()
    """
    import pytest

    global _session_pi
    if _session_pi is None:
        try:
            _session_pi = build_pi()
        except PiUnavailable as exc:
            pytest.skip(f"emulated Raspberry Pi unavailable: {exc}")
    return _session_pi
