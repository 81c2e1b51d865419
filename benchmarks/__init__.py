"""The project's benchmarks: scripts that measure, never tests. Run each as a module from the
repository root, e.g. ``python -m benchmarks.kernels --help``; the committed tables are in
``benchmarks/results/``. Not part of the installed distribution (pyproject.toml ships only
``edge``, ``training`` and ``converters``).

A benchmark that starts a copy of itself in a child process (one configuration per process)
runs it the same way, ``python -m benchmarks.NAME --worker ...``, through ``module_command``
and ``child_env``, so the child imports this checkout's packages wherever it was started.
"""

from __future__ import annotations

import json
import os
import subprocess
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


def uptime() -> str:
    """The machine's load as ``uptime`` prints it, for the tables' "Load before/after"
    lines (the machine is shared, so every timing table says how busy it was)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        load = os.getloadavg()
        return f"load average: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}"


def write_result(output: Path, text: str, result: dict) -> None:
    """Print the markdown table ``text``, write it to ``output`` and ``result`` to the .json
    beside it (the committed pair in benchmarks/results/)."""
    print(text)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    output.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output} and {output.with_suffix('.json').name}")
