#!/usr/bin/env bash
# tests/gpu/s7b.sh: S7's lrnn::mimo_selective_scan on the GPU machine, session 5 (run from the repo
# root after `pip install --no-build-isolation -e .`; <= 60 s, each step under `timeout`, each
# section printed as soon as it is done; logs in $OUT/):
#   1. nvcc builds benchmarks/cuda/mimo_c.cu with csrc/cuda/mimo_selective_scan.cu (background)
#   2. pytest -m cuda of tests/python/test_mimo_selective_scan.py
#   3. the S7 layer, fused op vs the materialized B_k/C_k composition (benchmarks/bench_event_scan.py
#      --no-scan) at (B, L, P, H) = (8, 16384, 16, 64) and (8, 4096, 64, 128): fwd, fwd+bwd, memory
#   4. mimo_c: each launcher vs double loops (f32 / bf16 / f16, bitwise repeat of the backward),
#      then the device time of each stage at both shapes, f32 (percent: the full, unsymmetrized
#      MAC count over the time at the fp32 FMA peak)
set -u
OUT=${OUT:-/tmp/lrnn-gpu-s7b}
mkdir -p "$OUT" build
export PYTHONPATH=${PYTHONPATH:-}:$PWD/python PYTHONUNBUFFERED=1

NVFLAGS=(-O3 -arch=sm_90 --use_fast_math -lineinfo -std=c++17 -Icsrc/include -Xptxas -v)
timeout 45 nvcc "${NVFLAGS[@]}" benchmarks/cuda/mimo_c.cu csrc/cuda/mimo_selective_scan.cu -o build/mimo_c \
  > "$OUT/s7b_nvcc.log" 2>&1 &
NVCC_PID=$!
timeout 45 nvcc "${NVFLAGS[@]}" -DLRNN_MIMO_TWOWAY_XS_MAX=0 benchmarks/cuda/mimo_c.cu csrc/cuda/mimo_selective_scan.cu \
  -o build/mimo_c_noxs > "$OUT/s7b_nvcc_noxs.log" 2>&1 &
NVCC2_PID=$!
echo "=== s7b: GPU $(nvidia-smi --query-gpu=name --format=csv,noheader 2>&1 | head -n 1), commit $(git rev-parse --short HEAD 2>/dev/null)"

timeout 20 python3 -m pytest -q -m cuda -rs tests/python/test_mimo_selective_scan.py > "$OUT/s7b_pytest.log" 2>&1
echo "=== s7b: pytest -m cuda test_mimo_selective_scan.py: rc=$? $(tail -n 1 "$OUT/s7b_pytest.log")"
grep -E "^(FAILED|ERROR)|^E +AssertionError" "$OUT/s7b_pytest.log" | head -n 6 | cut -c1-160

timeout 25 python3 -u benchmarks/bench_event_scan.py --device cuda --no-scan --iters 5 \
  --s7 8x16384x16x64,8x4096x64x128 --json "$OUT/s7b_bench.json" > "$OUT/s7b_bench.log" 2>&1
echo "=== s7b: S7 layer fused vs materialized (rc=$?)"
tail -n 9 "$OUT/s7b_bench.log" | cut -c1-200

wait "$NVCC_PID"
NVCC_RC=$?
echo "=== s7b: nvcc rc=$NVCC_RC"
grep -E "error" "$OUT/s7b_nvcc.log" | head -n 5
python3 - "$OUT/s7b_nvcc.log" <<'PY'
import re, subprocess, sys
cur, sp, rows = None, "0", []
for l in open(sys.argv[1]):
    m = re.search(r"Compiling entry function '(\S+)'", l)
    if m:
        cur = m.group(1)
        continue
    m = re.search(r"(\d+) bytes spill stores", l)
    if m:
        sp = m.group(1)
    m = re.search(r"Used (\d+) registers", l)
    if m and cur and "float," in (n := subprocess.run(["c++filt", cur], capture_output=True, text=True).stdout):
        n = re.sub(r"\(lrnn_mimo_params.*|\(float\*.*", "", n).replace("(anonymous namespace)::", "").replace("void ", "")
        rows.append(f"{n.strip()} {m.group(1)}r/{sp}s")
    if m:
        cur = None
print("registers/spill bytes (f32):", ", ".join(rows))
PY
if [ "$NVCC_RC" = 0 ]; then
  timeout 15 ./build/mimo_c check > "$OUT/s7b_mimo_c.log" 2>&1
  echo "=== s7b: mimo_c check (rc=$?)"
  grep -E "check|passed|FAIL" "$OUT/s7b_mimo_c.log" | cut -c1-200 | head -n 5
  timeout 12 ./build/mimo_c f32 > "$OUT/s7b_mimo_c_f32.log" 2>&1
  echo "=== s7b: mimo_c per-stage device time, f32 (rc=$?)"
  cat "$OUT/s7b_mimo_c_f32.log" | head -n 6
fi
wait "$NVCC2_PID" && timeout 12 ./build/mimo_c_noxs f32 > "$OUT/s7b_mimo_c_noxs.log" 2>&1
echo "=== s7b: mimo_c, variant: twoway staging X per chunk (rc=$?)"
head -n 6 "$OUT/s7b_mimo_c_noxs.log"

if [ "$NVCC_RC" = 0 ] && command -v ncu > /dev/null; then
  timeout 12 ncu --clock-control none --section SpeedOfLight --section Occupancy --section WarpStateStats \
    -k regex:"fwd3_kernel|twoway_kernel|wgrad2_kernel" --launch-count 6 ./build/mimo_c prof > "$OUT/s7b_ncu.log" 2>&1
  echo "=== s7b: ncu, f32 (8, 4096, 64, 128): fwd3 in/out, twoway + wgrad2 out/in (rc=$?)"
  grep -E "(fwd3|twoway|wgrad2)_kernel<|^ +Duration|Compute \(SM\) Throughput|Achieved Occupancy|Stall|Warp Cycles Per Issued" \
    "$OUT/s7b_ncu.log" | sed -e 's/  */ /g' -e 's/(lrnn_mimo_params.*//' -e 's/void <unnamed>:://' | cut -c1-110 | head -n 30
fi

