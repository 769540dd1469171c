#!/usr/bin/env bash
# tests/gpu/s7b.sh: S7's lrnn::mimo_selective_scan on the GPU machine, session 5 (run from the repo
# root after `pip install --no-build-isolation -e .`; <= 45 s, each step under `timeout`, each
# section printed as soon as it is done, the most needed first; logs in $OUT/):
#   1. nvcc builds benchmarks/cuda/mimo_c.cu with csrc/cuda/mimo_selective_scan.cu three ways in the
#      background: as shipped (twoway on 3xTF32 tensor cores, wgrad2 on SIMT FMAs), and the variants
#      with twoway on SIMT FMAs or wgrad2 on tensor cores
#   2. the S7 layer, fused op vs the materialized B_k/C_k composition (benchmarks/bench_event_scan.py
#      --no-scan) at (B, L, P, H) = (8, 16384, 16, 64) and (8, 4096, 64, 128): fwd, fwd+bwd, memory
#   3. torch.profiler: CUDA time per kernel of the op's forward + backward at both sizes
#   4. mimo_c: the device time of each stage at both shapes, f32, for each build (percent: the
#      full, unsymmetrized MAC count over the time at the fp32 FMA peak), then each build's
#      launchers vs double loops (f32 / bf16 / f16, bitwise repeat of the backward)
# The CUDA pytest of the op (tests/python/test_mimo_selective_scan.py) runs in the lead's full run.
set -u
OUT=${OUT:-/tmp/lrnn-gpu-s7b}
mkdir -p "$OUT" build
export PYTHONPATH=${PYTHONPATH:-}:$PWD/python PYTHONUNBUFFERED=1

NVFLAGS=(-O3 -arch=sm_90 --use_fast_math -lineinfo -std=c++17 -Icsrc/include -Xptxas -v)
SRCS=(benchmarks/cuda/mimo_c.cu csrc/cuda/mimo_selective_scan.cu)
declare -A VFLAG=([mimo_c]="" [mimo_c_tw]="-DLRNN_MIMO_TWOWAY_CORE=1" [mimo_c_wg]="-DLRNN_MIMO_WGRAD_CORE=0")
declare -A VPID
for v in mimo_c mimo_c_tw mimo_c_wg; do
  timeout 40 nvcc "${NVFLAGS[@]}" ${VFLAG[$v]} "${SRCS[@]}" -o build/$v > "$OUT/s7b_nvcc_$v.log" 2>&1 &
  VPID[$v]=$!
done
echo "=== s7b: GPU $(nvidia-smi --query-gpu=name --format=csv,noheader 2>&1 | head -n 1)"

timeout 16 python3 -u benchmarks/bench_event_scan.py --device cuda --no-scan --iters 5 \
  --s7 8x16384x16x64,8x4096x64x128 --json "$OUT/s7b_bench.json" > "$OUT/s7b_bench.log" 2>&1
echo "=== s7b: S7 layer fused vs materialized (rc=$?)"
tail -n 9 "$OUT/s7b_bench.log" | cut -c1-200

timeout 12 python3 benchmarks/profile_mimo.py > "$OUT/s7b_prof.log" 2>&1
echo "=== s7b: kernel time breakdown (rc=$?)"
grep -vE "^\s*$|Warning|warn" "$OUT/s7b_prof.log" | tail -n 20 | cut -c1-110

for v in mimo_c mimo_c_tw mimo_c_wg; do
  wait "${VPID[$v]}"
  rc=$?
  [ "$rc" = 0 ] && timeout 8 ./build/$v f32 > "$OUT/s7b_${v}_f32.log" 2>&1
  echo "=== s7b: $v ${VFLAG[$v]:-(as shipped)}: nvcc rc=$rc, per-stage device time f32 (rc=$?)"
  head -n 4 "$OUT/s7b_${v}_f32.log"
done
for v in mimo_c mimo_c_tw mimo_c_wg; do
  [ -x build/$v ] || continue
  timeout 6 ./build/$v check > "$OUT/s7b_${v}_check.log" 2>&1
  echo "=== s7b: $v check (rc=$?): $(grep -c 'bitwise repeat ok' "$OUT/s7b_${v}_check.log") of 3 dtypes repeat ok; $(tail -n 1 "$OUT/s7b_${v}_check.log" | cut -c1-80)"
  grep -E "FAIL" "$OUT/s7b_${v}_check.log" | head -n 2 | cut -c1-160
done
