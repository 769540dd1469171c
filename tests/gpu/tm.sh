#!/usr/bin/env bash
# tests/gpu/tm.sh: the time-major CUDA linear-scan kernels on the H200 in <= 90 s, from the repo
# root after `pip install --no-build-isolation -e .`. Builds the C-level benchmark
# (benchmarks/cuda/linear_scan_c.cu, nvcc alone; plus two tuning variants of the pipelined
# kernels: without clusters, 16 steps per warp and round) in the background while a CUDA pytest subset for the time-major paths runs, then times
# every time-major case at (8, 4096, 1536) and (2, 65536, 1536) (each checked against the CPU
# kernel: the max rel column) and a few cases of the variants. Logs in $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/lrnn_gpu_out}
mkdir -p "$OUT" build
export PYTHONUNBUFFERED=1
bench_build() {  # name, extra nvcc flags...
  local name=$1
  shift
  (nvcc -O3 -arch=sm_90 --use_fast_math -lineinfo -std=c++17 -Icsrc/include -Xptxas -v "$@" \
     benchmarks/cuda/linear_scan_c.cu csrc/cuda/linear_scan.cu csrc/cpu/linear_scan.c csrc/cpu/common.c \
     -o build/lsc_$name > "$OUT/ptxas_$name.log" 2>&1; echo $? > "$OUT/build_$name.rc") &
}
bench_build tm
bench_build nocl -DLRNN_TP_MAXCL=1
bench_build s16 -DLRNN_TP_STEPS=16
s=$SECONDS
timeout 40 python3 -m pytest -q -m cuda tests/python/test_linear_scan_cuda.py -p no:cacheprovider -x \
  -k "pipelined or large_shape or (opcheck and time-major) or (graph and time-major)" > "$OUT/tm_pytest.log" 2>&1
echo "pytest rc=$? ($((SECONDS - s)) s): $(tail -n 1 "$OUT/tm_pytest.log")"
grep -E "^(FAILED|ERROR)|Error|assert" "$OUT/tm_pytest.log" | head -n 6
wait
echo "bench builds rc=$(cat "$OUT"/build_*.rc | paste -sd,) ($SECONDS s); tp kernels with spills: $(grep -A2 -E \
  "Compiling entry function '.*scan_(fwd|bwd)_tp" "$OUT/ptxas_tm.log" | grep -cE "[1-9][0-9]* bytes spill stores")"
s=$SECONDS
ONLY=" tm " REPS=10 timeout 40 ./build/lsc_tm 8 4096 1536 2 65536 1536 > "$OUT/tm_bench.log" 2>&1
echo "bench rc=$? ($((SECONDS - s)) s)"
grep -E "^#|^\(" "$OUT/tm_bench.log" | grep -v "^# benchmarks"
for v in nocl s16; do  # variants: no clusters; 16 steps per warp and round
  for c in "(2,65536,1536) float32 tm full" "(8,4096,1536) bfloat16 tm full"; do
    ONLY="$c" REPS=10 timeout 10 ./build/lsc_$v 8 4096 1536 2 65536 1536 2>&1 | grep -E "^\(" | sed "s/^/$v /"
  done
done
echo "total $SECONDS s"
