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
# tflite-runtime 2.14 has cp311 wheels for aarch64 (Pi OS Bookworm ships Python 3.11).
COMMON_REQUIREMENTS = ("numpy>=1.23,<2", "opencv-python-headless>=4.8,<4.12")


def runtime_requirements(python_version: str) -> tuple[str, ...]:
    """What the venv on the Pi needs for a Python "3.X"."""
    minor = int(python_version.split(".")[1])
    runtime = "tflite-runtime==2.14.0" if minor < 12 else "ai-edge-litert>=2.3,<2.4"
    return (*COMMON_REQUIREMENTS, runtime)


@dataclass(frozen=True)
class PythonInfo:
    version: str  # "3.11"
    machine: str  # "aarch64"
    glibc: tuple[int, int]

    def platform_tags(self) -> list[str]:
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, 16, -1)]
        return [*tags, f"manylinux2014_{self.machine}"]


def _platform_args(info: PythonInfo) -> list[str]:
    args = ["--only-binary=:all:", "--python-version", info.version, "--implementation", "cp"]
    for tag in info.platform_tags():
        args += ["--platform", tag]
    return args


def _pip(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:] or [str(proc.returncode)]
        raise DeployError(f"pip {args[0]} failed: {last[0]}")


def _cross_compiler(machine: str) -> str:
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


@contextmanager
def staged_wheels(info: PythonInfo) -> Iterator[Path]:
    """A temporary folder with exactly the runtime wheels for the Pi's Python and CPU.

    They are downloaded once into a cache on this machine (the Pi itself needs no internet).
    """
    if info.machine not in ("aarch64", "x86_64"):
        raise DeployError(
            f"the Pi runs a {info.machine} userland; tflite-runtime needs 64-bit Raspberry Pi OS (aarch64)"
        )
    cache = wheel_cache(info)
    cache.mkdir(parents=True, exist_ok=True)
    wanted = [*_platform_args(info), *runtime_requirements(info.version)]
    with tempfile.TemporaryDirectory(prefix="binland-wheels-") as tmp:
        try:  # everything already cached: no index needed
            _pip(["download", "--no-index", "--find-links", str(cache), "--dest", tmp, *wanted])
        except DeployError:
            _pip(["download", "--dest", str(cache), *wanted])
            _pip(["download", "--no-index", "--find-links", str(cache), "--dest", tmp, *wanted])
        yield Path(tmp)
