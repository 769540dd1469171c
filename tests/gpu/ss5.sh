#!/usr/bin/env bash
# tests/gpu/ss5.sh: selective-scan CUDA round script for the H200 (session 5, area ss5). Run from the
# repo root after `pip install --no-build-isolation -e .`; logs in "$OUT/"; <= 60 s; the summary is
# printed as it goes (a timeout still leaves numbers):
#   1. tests/gpu/ss5_prof.py: wall / host / device time of fwd, autograd bwd and the bare bwd op,
#      per kernel (short shape, f32 and bf16), and the backward tile kernel's variants
#      (LRNN_SS_BWD_MODE 0..3: bit 0 warp-level dB/dC, bit 1 shuffle state sums) by device time
#   2. benchmarks/bench_selective_scan.py at N = 16 (default mode, then mode 0 in the same run)
#   3. the CUDA pytest of tests/python/test_selective_scan*.py
set -uo pipefail
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
S="$OUT/ss5_summary.txt"
: > "$S"
say() { echo "$@" | tee -a "$S"; }
say "$(python3 -c "import torch, lrnn; print(torch.cuda.get_device_name(), torch.__version__, lrnn.build_info().get('git_revision'))" 2>&1)"

for dt in float32 bfloat16; do
  timeout 12 python3 tests/gpu/ss5_prof.py 8 1536 2048 16 $dt > "$OUT/ss5_prof_$dt.txt" 2>&1
  say "== prof $dt rc=$?"; grep -v "^#" "$OUT/ss5_prof_$dt.txt" | head -n 14 | tee -a "$S"
done
for m in 0 1 2; do
  LRNN_SS_BWD_MODE=$m timeout 8 python3 tests/gpu/ss5_prof.py 8 1536 2048 16 float32 bwd_op > "$OUT/ss5_prof_mode$m.txt" 2>&1
  say "== mode $m rc=$? $(grep -E "bwd_tile|bwd_op" "$OUT/ss5_prof_mode$m.txt" | tr -s ' ' | tr '\n' ' ')"
done

timeout 12 python3 benchmarks/bench_selective_scan.py --device cuda --reps 10 --only-n 16 > "$OUT/ss5_bench.txt" 2>&1
say "== bench (mode 3) rc=$?"; grep -v "^#" "$OUT/ss5_bench.txt" | tee -a "$S"
LRNN_SS_BWD_MODE=0 timeout 10 python3 benchmarks/bench_selective_scan.py --device cuda --reps 10 --only-n 16 > "$OUT/ss5_bench_m0.txt" 2>&1
say "== bench (mode 0) rc=$?"; grep -v "^#\|shape" "$OUT/ss5_bench_m0.txt" | tee -a "$S"

timeout 14 python3 -m pytest -q -m cuda -p no:cacheprovider --maxfail=20 tests/python/test_selective_scan_cuda.py \
  > "$OUT/ss5_pytest.log" 2>&1
say "== CUDA pytest rc=$?: $(tail -n 1 "$OUT/ss5_pytest.log")"
grep -E "^(FAILED|ERROR)" "$OUT/ss5_pytest.log" | head -n 8 | tee -a "$S"

# registers / spills of the kernels as built, then ncu of the forward (bf16) and backward tile (f32)
SO=$(python3 -c "import lrnn, os; print(os.path.join(os.path.dirname(lrnn.__file__), 'liblrnn_ops.so'))" 2>/dev/null)
if command -v cuobjdump > /dev/null && [ -f "$SO" ]; then
  cuobjdump --dump-resource-usage "$SO" 2>/dev/null | grep -A1 "selective_scan_\(fwd_kernel\|bwd_tile\)" \
    | grep -o "Function [^ ]*\|REG:[0-9]*\|STACK:[0-9]*\|LOCAL:[0-9]*" | paste -d' ' - - - - \
    | sed -E 's/Function _ZN7lrnn_ss[^_]*_//' | cut -c1-150 | sort -u | head -n 12 | tee -a "$S"
fi
if command -v ncu > /dev/null; then
  SEC="--section SpeedOfLight --section LaunchStats --section Occupancy --section InstructionStats --section ComputeWorkloadAnalysis"
  timeout 12 ncu --clock-control none $SEC -k regex:"selective_scan_fwd_kernel" --launch-count 1 \
    python3 tests/gpu/ss_ncu.py fwd bfloat16 > "$OUT/ss5_ncu_fwd_bf16.txt" 2>&1
  say "== ncu fwd bf16 rc=$?"; python3 tests/gpu/ss_ncu.py summary "$OUT"/ss5_ncu_fwd_bf16.txt 2>&1 | tee -a "$S"
  timeout 12 ncu --clock-control none $SEC -k regex:"selective_scan_bwd_tile" --launch-count 1 \
    python3 tests/gpu/ss_ncu.py bwd float32 > "$OUT/ss5_ncu_bwd_f32.txt" 2>&1
  say "== ncu bwd f32 rc=$?"; python3 tests/gpu/ss_ncu.py summary "$OUT"/ss5_ncu_bwd_f32.txt 2>&1 | tee -a "$S"
fi
