#!/usr/bin/env bash
# The x86 Python 3.13 + numpy 2 lane (what Raspberry Pi OS Trixie runs, on this machine's CPU):
# `pip install ".[edge]"` into a fresh Python 3.13 venv (numpy 2, OpenCV 4.12, ai-edge-litert),
# then the edge test suite (every test that needs no train extra and no emulator), then the
# bundled pose model on the demo clip, whose landmarks must equal those of this checkout's
# Python 3.11 venv (numpy 1, .venv), within the emulated Pi lanes' tolerance.
#
#   .ci/py313_lane.sh [PYTHON_FOR_COMPARISON]     # default .venv/bin/python
#
# Which Python 3.13: $BINLAND_PYTHON313, else python3.13 on PATH, else pyenv's newest 3.13
# ($PYENV_ROOT or ~/.pyenv). With none of them the lane is SKIPPED with one line saying so:
# Debian's python3.13 (Trixie) needs Trixie's C library (2.41) and does not run on this
# Bookworm machine (2.36) outside a chroot, and PyPI ships no CPython. The venv is kept in the
# user cache (keyed by pyproject.toml) to save time; without the cache it is simply built.
set -euo pipefail
cd "$(dirname "$0")/.."
compare_python=${1:-.venv/bin/python}

# The first candidate that really is a Python 3.13 (a pyenv shim on PATH may not be).
py=
for candidate in ${BINLAND_PYTHON313:-} $(command -v python3.13 || true) \
  $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3.13 2>/dev/null | sort -rV); do
  if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
    py=$candidate
    break
  fi
done
if [[ -z $py ]]; then
  echo "py313 lane: SKIPPED: no Python 3.13 here (set BINLAND_PYTHON313, put python3.13 on PATH, or: pyenv install 3.13)"
  exit 0
fi
echo "py313 lane: $("$py" --version) ($py)"

cache=${XDG_CACHE_HOME:-$HOME/.cache}/binland
key=$( (cat pyproject.toml; "$py" --version) | sha256sum | cut -c1-12)
venv="$cache/py313-$key"
if [[ ! -f $venv/.deps-ok ]]; then
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -e ".[edge,dev]"
  touch "$venv/.deps-ok"
fi
# Editable, as the README's test command installs: this checkout's code, and its native
# library built for cp313 next to the cp311 one.
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps -e .
"$venv/bin/python" - <<'PY'
import cv2, numpy, sys
from edge.backends.tflite import installed_runtimes
assert numpy.__version__.startswith("2."), numpy.__version__
print(f"py313 lane: Python {sys.version.split()[0]}, numpy {numpy.__version__}, "
      f"OpenCV {cv2.__version__}, runtimes {installed_runtimes()}")
PY

# The edge test suite: no train extra (tests/conftest.py leaves its modules out), no emulator,
# nothing slow (those lanes run in the main session), and not the one test that compares
# tflite-runtime with ai-edge-litert: tflite-runtime has no Python 3.13 wheels.
env -u PYTHONPATH "$venv/bin/python" -m pytest -q -p no:cacheprovider -m "not tensorflow and not pi and not slow" \
  --deselect tests/test_backends.py::test_with_native_library_both_stock_runtimes_agree_on_bitpacked_files

# The bundled pose model on three demo frames: Python 3.13 + numpy 2 equals 3.11 + numpy 1.
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for lane in py313 compare; do
  python=$([[ $lane == py313 ]] && echo "$venv/bin/python" || echo "$compare_python")
  env -u PYTHONPATH "$python" -m edge.live --model edge/models/pose.tflite --source demo \
    --threads 1 --no-display --quiet --max-frames 3 --jsonl "$out/$lane.jsonl"
done
"$venv/bin/python" - "$out/py313.jsonl" "$out/compare.jsonl" <<'PY'
import json, sys
import numpy as np
a, b = ([[[p["x"], p["y"], p["score"]] for p in json.loads(line)["landmarks"]]
         for line in open(path)] for path in sys.argv[1:])
a, b = np.array(a), np.array(b)
assert a.shape == b.shape and len(a) == 3, (a.shape, b.shape)
diff = float(np.abs(a - b).max())
assert diff <= 1e-3, f"py313 lane: landmarks differ from Python 3.11's by {diff}"
print(f"py313 lane: bundled pose model, 3 demo frames: max |3.13 - 3.11| = {diff:.2e}")
PY
