#!/usr/bin/env bash
# Tests on an AVX2-only CPU, as every library sees it (issue 23): the suite's Python runs under
# QEMU's user-mode x86-64 emulator with a Haswell CPU model (AVX2, FMA, POPCNT; no AVX-512), so
# CPUID says "no AVX-512" to numpy's dispatch, TensorFlow's oneDNN, TFLite's XNNPACK, OpenCV
# and our delegate alike. That is what .ci/avx2_emulated.sh cannot do with switches (XNNPACK
# and OpenCV have none). Slow (5-10x native on the kernel and training tests, far more on tests
# that draw frames in numpy/OpenCV), so not a CI lane: run it before a change to tolerances,
# kernels or fixtures lands.
#
#   .ci/avx2_qemu.sh [PYTEST ARGS...]     # default: the files whose numbers depend on the CPU
#   PY=/path/to/venv/bin/python .ci/avx2_qemu.sh tests/test_distributed.py
#
# Every Python the tests start again (sys.executable: the CLIs, the runtimes' child
# processes, the distributed workers) runs under the same emulator: a wrapper stands in for
# sys.executable, set by a sitecustomize on PYTHONPATH. Programs that are not Python (gcc
# building the delegate) run natively; the code they build runs emulated.
# Needs qemu-user-static (Debian: apt-get install qemu-user-static; 7.2 or later emulates AVX2).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PY:-.venv/bin/python}
[[ "$py" = /* ]] || py="$PWD/$py"  # absolute, but not resolved: a venv's python is a link
qemu=$(command -v qemu-x86_64-static || command -v qemu-x86_64 || true)
if [[ -z "$qemu" ]]; then
  echo "error: qemu-x86_64-static not found (apt-get install qemu-user-static)" >&2
  exit 2
fi
# Haswell without the features TCG does not emulate (so QEMU prints no warning on stderr,
# which tests that read a CLI's error line would see).
cpu="Haswell,-rtm,-hle,-invpcid,-pcid,-x2apic,-tsc-deadline"
venv_prefix=$("$py" -c 'import sys; print(sys.prefix)')
shim=$(mktemp -d)
trap 'rm -rf "$shim"' EXIT
cat >"$shim/python" <<EOF
#!/bin/sh
exec "$qemu" -cpu "$cpu" "$py" "\$@"
EOF
chmod +x "$shim/python"
cat >"$shim/sitecustomize.py" <<EOF
import os
import sys

# Only the emulated interpreter hands its children the emulator. Another Python that a test
# starts by its own path (test_edge_only's edge-only venv, its pip) inherits PYTHONPATH and
# so this file, but runs natively: pointing its sys.executable here would make its pip build
# with this venv's Python. Those few tests run on the host's CPU, not the emulated one.
if os.path.realpath(sys.prefix) == os.path.realpath("$venv_prefix"):
    sys.executable = "$shim/python"

# The tests' deadlines on child processes (subprocess.run(timeout=...), Popen.wait, communicate)
# were set for native speed; emulated, a CLI run over a video takes 100x longer. Stretch each by
# BINLAND_TEST_SLOWDOWN, so a test fails here for what it checks, not for the emulator's pace.
# (subprocess.run waits through communicate; communicate's last wait is stretched twice, which
# only loosens a deadline that has already passed its first check.)
import subprocess

_SLOWDOWN = float(os.environ.get("BINLAND_TEST_SLOWDOWN", "1"))


def _stretched(wait):
    def with_deadline(*args, timeout=None, **kwargs):
        return wait(*args, timeout=None if timeout is None else timeout * _SLOWDOWN, **kwargs)

    return with_deadline


subprocess.Popen.wait = _stretched(subprocess.Popen.wait)
subprocess.Popen.communicate = _stretched(subprocess.Popen.communicate)
EOF
export PYTHONPATH="$shim${PYTHONPATH:+:$PYTHONPATH}"
"$shim/python" - <<'EOF'
from numpy._core._multiarray_umath import __cpu_features__ as cpu

import edge.native as native

native.ensure_library()
assert cpu["AVX2"] and not cpu["AVX512F"], "the emulated CPU must be AVX2-only"
print(f"avx2 under qemu: numpy sees AVX2 and no AVX-512; delegate path {native.simd_path()}")
EOF
if [[ $# -eq 0 ]]; then
  set -- tests/test_distributed.py tests/test_fixtures.py tests/test_native.py \
    tests/test_delegate_ab.py tests/test_backends.py tests/test_demo_models.py \
    tests/test_convert.py tests/test_models.py
fi
# Deadlines on child processes stretch by this much (the sitecustomize above), and so do the
# tests' own (test_distributed's).
export BINLAND_TEST_SLOWDOWN=${BINLAND_TEST_SLOWDOWN:-10}
# pyproject's per-test limits (pytest-timeout's timeout, faulthandler_timeout) are for native
# speed; emulated they stretch by the same factor as the child deadlines, so a test that trains
# a tiny model in a subprocess is not cut off while it waits for the emulator.
ini() { sed -n "s/^$1 = \([0-9.]*\).*/\1/p" pyproject.toml | head -1; }
limit=$(awk -v a="$(ini timeout)" -v f="$BINLAND_TEST_SLOWDOWN" 'BEGIN { printf "%d", a * f }')
dump=$(awk -v a="$(ini faulthandler_timeout)" -v f="$BINLAND_TEST_SLOWDOWN" 'BEGIN { printf "%d", a * f }')
echo "per-test limit ${limit} s, stacks dumped after ${dump} s (pyproject's x ${BINLAND_TEST_SLOWDOWN})"
exec "$shim/python" -m pytest -q -rs -p no:cacheprovider -o timeout="$limit" -o faulthandler_timeout="$dump" "$@"
