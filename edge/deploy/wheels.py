"""The runtime wheels for the Pi's Python and CPU, fetched on this machine, and the C
compiler that builds the native library for it."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import DeployError

# The `edge` extra of pyproject.toml, per Python version; tests/test_deploy.py keeps them in step.
# tflite-runtime 2.14 has cp311 wheels for aarch64 (Pi OS Bookworm ships Python 3.11). Python 3.13
# (Pi OS Trixie) has no numpy 1.x and no tflite-runtime: numpy 2, OpenCV 4.12 (see pyproject.toml) and ai-edge-litert.
OLD_NUMPY_REQUIREMENTS = ("numpy>=1.23,<2", "opencv-python-headless>=4.8,<4.12")
NEW_NUMPY_REQUIREMENTS = ("numpy>=2.1", "opencv-python-headless>=4.12,<4.13")
COMMON_REQUIREMENTS = OLD_NUMPY_REQUIREMENTS  # kept for callers of the Bookworm-era name


def _minor(python_version: str) -> int:
    return int(python_version.split(".")[1])


def runtime_requirements(python_version: str) -> tuple[str, ...]:
    """What the `edge` extra asks for on a Pi (aarch64 Linux) with Python "3.X"."""
    minor = _minor(python_version)
    common = NEW_NUMPY_REQUIREMENTS if minor >= 13 else OLD_NUMPY_REQUIREMENTS
    runtime = "tflite-runtime==2.14.0" if minor < 12 else "ai-edge-litert>=2.3,<2.4"
    return (*common, runtime)


def parse_os_release(text: str) -> dict[str, str]:
    """/etc/os-release (os-release(5)) as a dict; quotes removed."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            out[key] = value.strip().strip("\"'")
    return out


@dataclass(frozen=True)
class PythonInfo:
    """The Pi's system Python and OS, as ``edge.deploy`` found them (rootfs or ssh)."""

    version: str  # "3.11"
    machine: str  # "aarch64"
    glibc: tuple[int, int]
    os_release: tuple[tuple[str, str], ...] = ()  # /etc/os-release items; () when unknown
    system_numpy: str | None = None  # the version apt installed for that Python, if any

    @property
    def os(self) -> dict[str, str]:
        return dict(self.os_release)

    @property
    def os_name(self) -> str:
        """PRETTY_NAME, e.g. Debian GNU/Linux 13 (trixie); without /etc/os-release: unknown."""
        return self.os.get("PRETTY_NAME") or "an unknown OS release"

    @property
    def codename(self) -> str:
        return self.os.get("VERSION_CODENAME", "")

    @property
    def uses_system_numpy(self) -> bool:
        """Python 3.13+ (Pi OS Trixie): the venv uses apt's numpy 2 (which python3-picamera2
        is built against) and never gets a second numpy that would shadow it. Older Pythons
        (Bookworm) keep their numpy<2 wheel in the venv, as tflite-runtime 2.14 needs."""
        return _minor(self.version) >= 13

    def venv_requirements(self) -> tuple[str, ...]:
        """What goes into the venv: the extra, less numpy when the system's is used."""
        reqs = runtime_requirements(self.version)
        if self.uses_system_numpy:
            return tuple(r for r in reqs if not r.startswith("numpy"))
        return reqs

    def resolve_requirements(self) -> tuple[str, ...]:
        """What pip resolves the wheels for: with the system numpy, pinned to its version,
        so every other wheel is one that works with it (numpy itself is then not installed)."""
        reqs = runtime_requirements(self.version)
        if self.uses_system_numpy and self.system_numpy:
            return (*self.venv_requirements(), f"numpy=={self.system_numpy}")
        return reqs

    def platform_tags(self) -> list[str]:
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, 16, -1)]
        return [*tags, f"manylinux2014_{self.machine}"]


def platform_args(info: PythonInfo) -> list[str]:
    args = ["--only-binary=:all:", "--python-version", info.version, "--implementation", "cp"]
    for tag in info.platform_tags():
        args += ["--platform", tag]
    return args


def run_pip(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:] or [str(proc.returncode)]
        raise DeployError(f"pip {args[0]} failed: {last[0]}")


def cross_compiler(machine: str) -> str:
    """A C compiler on this machine that builds for ``machine`` (Debian's cross gcc names)."""
    for cc in (
        f"{machine}-linux-gnu-gcc",
        *(("gcc", "cc") if machine == platform.machine() else ()),
    ):
        if shutil.which(cc):
            return cc
    raise DeployError(
        f"no C compiler for {machine} here; fix: sudo apt install gcc-{machine.replace('_', '-')}-linux-gnu"
    )


def native_library_name(info: PythonInfo) -> str:
    """The file name edge.native looks for first: what setuptools would have built on the Pi."""
    from .. import native

    return f"{native.INSTALLED_STEM}.cpython-{info.version.replace('.', '')}-{info.machine}-linux-gnu.so"


def wheel_cache(info: PythonInfo) -> Path:
    base = os.environ.get("BINLAND_WHEEL_CACHE") or Path.home() / ".cache" / "binland" / "wheels"
    return Path(base) / f"cp{info.version.replace('.', '')}-{info.machine}"


def check_system_numpy(info: PythonInfo) -> None:
    """On Trixie the venv uses apt's numpy: refuse, with the fix, when the Pi has none."""
    if info.uses_system_numpy and not info.system_numpy:
        raise DeployError(
            f"the Pi ({info.os_name}, Python {info.version}) has no numpy from apt; the service "
            "uses the system's numpy 2 (python3-picamera2 is built against it); on the Pi run: "
            "sudo apt install python3-numpy python3-picamera2"
        )


@contextmanager
def staged_wheels(info: PythonInfo) -> Iterator[Path]:
    """A temporary folder with exactly the runtime wheels for the Pi's Python and CPU.

    They are downloaded once into a cache on this machine (the Pi itself needs no internet).
    """
    if info.machine not in ("aarch64", "x86_64"):
        raise DeployError(
            f"the Pi runs a {info.machine} userland; tflite-runtime needs 64-bit Raspberry Pi OS (aarch64)"
        )
    check_system_numpy(info)
    cache = wheel_cache(info)
    cache.mkdir(parents=True, exist_ok=True)
    wanted = [*platform_args(info), *info.resolve_requirements()]
    with tempfile.TemporaryDirectory(prefix="binland-wheels-") as tmp:
        try:  # everything already cached: no index needed
            run_pip(["download", "--no-index", "--find-links", str(cache), "--dest", tmp, *wanted])
        except DeployError:
            run_pip(["download", "--dest", str(cache), *wanted])
            run_pip(["download", "--no-index", "--find-links", str(cache), "--dest", tmp, *wanted])
        if info.uses_system_numpy:  # resolved against the system's numpy; never installed
            for wheel in Path(tmp).glob("numpy-*.whl"):
                wheel.unlink()
        yield Path(tmp)
