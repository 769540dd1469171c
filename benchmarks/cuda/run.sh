#!/usr/bin/env bash
# run.sh: build the C-level CUDA benchmark (benchmarks/cuda/linear_scan_c.cu) with nvcc alone and
# run it; with PROFILE=1 also profile the float32 forward kernels of both layouts with ncu.
# Arguments are passed on as shapes "B L D ...". Output goes to $OUT (default ./gpu-out).
set -euo pipefail
OUT=${OUT:-$PWD/gpu-out}
mkdir -p build "$OUT"
nvcc -O3 -arch=sm_90 --use_fast_math -lineinfo -std=c++17 -Icsrc/include -Xptxas -v \
  benchmarks/cuda/linear_scan_c.cu csrc/cuda/linear_scan.cu csrc/cpu/linear_scan.c csrc/cpu/common.c \
  -o build/linear_scan_c 2> "$OUT/ptxas.log"
./build/linear_scan_c "$@" | tee "$OUT/linear_scan_c.txt"
if [ "${PROFILE:-0}" = 1 ]; then
  for lay in cm tm; do
    ONLY="(8,4096,1536) float32 $lay full" REPS=1 ncu --clock-control none -k regex:scan_fwd \
      --launch-skip 1 --launch-count 1 --section SpeedOfLight --section MemoryWorkloadAnalysis \
      --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats \
      ./build/linear_scan_c 8 4096 1536 > "$OUT/ncu_fwd_$lay.txt" 2>&1 || true
  done
fi
