#!/usr/bin/env bash
# The native delegate's fuzz lane (issue 25): edge/native built with AddressSanitizer and
# UBSan (GCC's own libasan and libubsan: nothing to install beyond Debian's gcc), then
#   1. the committed corpus (tests/fuzz_corpus/: every case the fuzzer or the issue ever
#      found) replayed in every installed stock runtime, and
#   2. SECONDS of structure-aware fuzzing (tests/native_fuzz.py: mutated op options and
#      tensor shapes of the committed models), each mutant loaded, allocated and run twice.
# A sanitizer report, a signal or a hang in either fails the lane; a failing case is written
# to tests/fuzz_corpus/new/ (copy it into tests/fuzz_corpus/ with the fix, as a regression).
#
#   .ci/fuzz_lane.sh [SECONDS] [PYTHON]     # default 120 s, .venv/bin/python
#
# Takes SECONDS plus about 30 s (the sanitized build, the replay). The seed is printed, so a
# run can be repeated: PYTHON tests/native_fuzz.py fuzz --sanitize --seed N --seconds S.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-120}
python=${2:-.venv/bin/python}

if ! command -v "${CC:-gcc}" >/dev/null 2>&1; then
  echo "fuzz lane FAILED: no C compiler (Debian: apt install gcc)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# One sanitized build for both steps.
library=$("$python" - "$work" <<'PY'
import sys
from pathlib import Path

sys.path.insert(0, "tests")
import native_fuzz

print(native_fuzz.build_library(Path(sys.argv[1]), sanitize=True))
PY
)
echo "fuzz lane: sanitized delegate $library"
"$python" tests/native_fuzz.py replay --sanitize --library "$library"
"$python" tests/native_fuzz.py fuzz --sanitize --library "$library" --seconds "$seconds"
