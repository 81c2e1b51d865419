#!/usr/bin/env bash
# Every SIMD path this host can run, forced one at a time (issue 23): the exactness suite and
# a short kernel benchmark on each. CI lands on AVX-512 hosts and on AVX2-only ones, so each
# host checks every path it has (AVX-512 where present, AVX2, POPCNT, portable); the Pi's
# NEON path runs under qemu in tests/test_pi_emulated.py.
#
#   .ci/simd_lane.sh [PYTHON]        # default .venv/bin/python
#
# 1. The exactness cases that loop over every available path (the delegate's
#    `simd` option) against LCE's own interpreter, bit for bit; here it runs again with the
#    path list printed, so the log says which paths this host checked.
# 2. python -m benchmarks.kernels --simd PATH on a small hourglass (64 px, 64 features, depth 2):
#    the whole network end to end in both stock runtimes with the path forced, timed against
#    its float twin and that path's measured popcount limit. The timings are for the log, not
#    judged (the machine is shared); a path that crashes or gives a clean error fails CI.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-.venv/bin/python}
paths=$("$py" -c 'import edge.native as n; n.ensure_library(); print(" ".join(n.simd_paths_available()))')
echo "simd lane: this host runs: $paths"
"$py" -m pytest -q -p no:cacheprovider tests/test_native.py -k "every_kernel_path or fused_ops"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for path in $paths; do
  echo "simd lane: kernel benchmark, path $path"
  "$py" -m benchmarks.kernels --simd "$path" --size 64 --features 64 --depth 2 --runs 5 \
    --warmup 2 --rounds 1 --output "$out/kernels-$path.md" >/dev/null
  grep -E "kernel path|float twin / ours|binary ops only" "$out/kernels-$path.md"
done
