"""The machine this runs on: the project's user cache folder (and the MediaPipe models in
it), and the CPU's name.

Its own module so that every part (edge.native's builds, the benchmarks, the tests) reaches
them without importing the package's public API, which loads models on demand.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cache_dir(name: str = "") -> Path:
    """This project's user cache, ``$XDG_CACHE_HOME/binland/NAME`` (else ``~/.cache/...``):
    the native library's builds, benchmark models, test environments. Not created here."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "binland" / name


# A folder that already holds MediaPipe's .tflite files (a machine with no index access).
TEACHERS_ENV = "BINLAND_TEACHERS"


def teacher_dir() -> Path:
    """Where MediaPipe's models live on this machine: ``$BINLAND_TEACHERS``, else the cache
    folder ``teachers`` that ``training.label`` fills from the mediapipe wheel. The device's
    BlazePose and BlazeFace finders look for their files here too."""
    override = os.environ.get(TEACHERS_ENV)
    return Path(override) if override else cache_dir("teachers")


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), for the machine line of a benchmark
    table; elsewhere what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
