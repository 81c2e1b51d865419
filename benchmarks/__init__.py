"""The project's benchmarks: scripts that measure, never tests. Run each as a module from the
repository root, e.g. ``python -m benchmarks.kernels --help``; the committed tables are in
``benchmarks/results/``. Not part of the installed distribution (pyproject.toml ships only
``edge``, ``training`` and ``converters``).

A benchmark that starts a copy of itself in a child process (one configuration per process)
runs it the same way, ``python -m benchmarks.NAME --worker ...``, through ``module_command``
and ``child_env``, so the child imports this checkout's packages wherever it was started.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"


def module_command(module: str, *args: str) -> list[str]:
    """``python -m MODULE ARGS`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's environment) with the repository first on
    PYTHONPATH, so ``python -m benchmarks.NAME`` in a child finds the package, and the same
    ``edge`` as its parent, from any working directory."""
    env = dict(os.environ if env is None else env)
    paths = [str(REPO), *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env
