#!/usr/bin/env bash
# The whole suite on an emulated AVX2-only CPU, one test file at a time, resumable (issue 23:
# "the whole suite passes on an AVX2-only host"). Each file runs through .ci/avx2_qemu.sh
# (QEMU user mode, Haswell model) in its own pytest process and leaves a junit XML in OUT; a
# file whose XML shows tests and no failure or error is not run again, so a run that the
# session's end cut off continues where it stopped. Then the files' outcomes are added to
# benchmarks/results/avx2_qemu_suite.json and .md (the record: which file passed emulated, at
# which commit, on which host), replacing that file's earlier row.
#
#   .ci/avx2_qemu_suite.sh OUT [TEST FILE...]     # default: every tests/test_*.py
#   MARK="not tensorflow" .ci/avx2_qemu_suite.sh runs/avx2 tests/test_live.py
#   .ci/avx2_qemu_suite.sh OUT --record-only      # only fold OUT's XML files into the record
#
# Emulated, the suite takes many hours on 2 cores (a CLI over a video is 100x slower, a tiny
# training run 30x): give it the cores, and run it from a worktree of the commit under test
# (git worktree add) so that editing the checkout meanwhile changes nothing it runs.
# BINLAND_TEST_SLOWDOWN (default 10 in avx2_qemu.sh) stretches the tests' deadlines.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: .ci/avx2_qemu_suite.sh OUT [TEST FILE...] | OUT --record-only}
shift
mkdir -p "$out"
py=${PY:-.venv/bin/python}
if [[ "${1:-}" != "--record-only" ]]; then
  if [[ $# -eq 0 ]]; then
    set -- tests/test_*.py
  fi
  for file in "$@"; do
    name=$(basename "$file" .py)
    if "$py" .ci/avx2_qemu_record.py --passed "$out/$name.xml"; then
      echo "$name: passed emulated before, not run again"
      continue
    fi
    echo "$name: running under QEMU ($(date -u +%H:%M:%S) UTC)"
    git rev-parse --short HEAD >"$out/$name.commit"  # the record names what ran
    PY="$py" .ci/avx2_qemu.sh "$file" ${MARK:+-m "$MARK"} --junitxml="$out/$name.xml.part" \
      >"$out/$name.log" 2>&1
    echo "$name: pytest exit $? ($(tail -1 "$out/$name.log"))"
    [[ -f "$out/$name.xml.part" ]] && mv "$out/$name.xml.part" "$out/$name.xml"
  done
fi
exec "$py" .ci/avx2_qemu_record.py --record "$out" --mark "${MARK:-}" \
  --results "${RESULTS:-benchmarks/results}"
