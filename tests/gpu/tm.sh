#!/usr/bin/env bash
# tests/gpu/tm.sh: the time-major CUDA linear-scan kernels on the H200 in <= 90 s, from the repo
# root after `pip install --no-build-isolation -e .`. Builds the C-level benchmark
# (benchmarks/cuda/linear_scan_c.cu, nvcc alone) in the background while the CUDA pytest cases of
# the pipelined time-major kernels run, then times every time-major case at (8, 4096, 1536) and
# (2, 65536, 1536) (each checked against the CPU kernel: the max rel column). Logs in $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/lrnn_gpu_out}
mkdir -p "$OUT" build
export PYTHONUNBUFFERED=1
(nvcc -O3 -arch=sm_90 --use_fast_math -lineinfo -std=c++17 -Icsrc/include -Xptxas -v \
   benchmarks/cuda/linear_scan_c.cu csrc/cuda/linear_scan.cu csrc/cpu/linear_scan.c csrc/cpu/common.c \
   -o build/lsc_tm > "$OUT/ptxas_tm.log" 2>&1; echo $? > "$OUT/build_tm.rc") &
s=$SECONDS
timeout 40 python3 -m pytest -q -m cuda tests/python/test_linear_scan_cuda.py -p no:cacheprovider -x \
  -k "pipelined or large_shape" > "$OUT/tm_pytest.log" 2>&1
echo "pytest rc=$? ($((SECONDS - s)) s): $(tail -n 1 "$OUT/tm_pytest.log")"
grep -E "^(FAILED|ERROR)|Error|assert" "$OUT/tm_pytest.log" | head -n 6
wait
echo "bench build rc=$(cat "$OUT/build_tm.rc") ($SECONDS s); tp kernels with spills: $(grep -A2 -E \
  "Compiling entry function '.*scan_(fwd|bwd)_tp" "$OUT/ptxas_tm.log" | grep -cE "[1-9][0-9]* bytes spill stores")"
s=$SECONDS
ONLY=" tm " REPS=10 timeout $(( 88 - SECONDS > 15 ? 88 - SECONDS : 15 )) ./build/lsc_tm 8 4096 1536 2 65536 1536 \
  > "$OUT/tm_bench.log" 2>&1
echo "bench rc=$? ($((SECONDS - s)) s)"
grep -E "^#|^\(" "$OUT/tm_bench.log" | grep -v "^# benchmarks"
echo "total $SECONDS s"
