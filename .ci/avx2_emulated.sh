#!/usr/bin/env bash
# The tests whose numbers depend on the CPU, on an AVX2-only host as far as software can make
# one on an AVX-512 machine (issue 23: CI lands on both kinds). Not a CI lane (it takes about
# 15 minutes on 2 idle cores); run it before a change to tolerances or kernels lands:
#
#   .ci/avx2_emulated.sh [PYTHON] [PYTEST ARGS...]   # default .venv/bin/python, the files below
#
# What is switched: TensorFlow's oneDNN kernels capped at AVX2 (ONEDNN_MAX_CPU_ISA; its
# `onednn_verbose` line says "isa:Intel AVX2"), numpy's AVX-512 dispatch off
# (NPY_DISABLE_CPU_FEATURES), our delegate on its AVX2 kernels (BINLAND_SIMD). TensorFlow's
# Eigen kernels are compiled for AVX and dispatch nothing, so they run as on any host.
# What is not: TFLite's XNNPACK and OpenCV still take AVX-512 (no switch for the first; the
# OpenCV 4.11 wheels name no AVX-512 feature OPENCV_CPU_DISABLE accepts). So this catches
# the failures seen on AVX2 hosts so far (a training curve's float rounding, the delegate's
# AVX2 kernels), not a float difference inside XNNPACK; a real AVX2-only host still has the
# last word.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-.venv/bin/python}
shift || true
export ONEDNN_MAX_CPU_ISA=AVX2
export NPY_DISABLE_CPU_FEATURES="AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL"
export BINLAND_SIMD=avx2
"$py" -c 'import edge.native as n; n.ensure_library(); print("avx2 emulated: delegate path", n.simd_path())'
if [[ $# -eq 0 ]]; then
  set -- tests/test_distributed.py tests/test_train.py tests/test_models.py tests/test_native.py \
    tests/test_convert.py tests/test_evaluate.py tests/test_demo_models.py tests/test_backends.py \
    tests/test_finder.py
fi
exec "$py" -m pytest -q -rs -p no:cacheprovider "$@"
