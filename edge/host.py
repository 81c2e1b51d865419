"""The machine this runs on: the project's user cache folder and the CPU's name.

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
