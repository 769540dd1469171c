#!/usr/bin/env bash
# tests/gpu/ss.sh: selective-scan CUDA round script for the H200 (session 4, area ss). Run from the
# repo root after `pip install --no-build-isolation -e .`; logs in "$OUT/". Within ~60 s:
#   1. the CUDA pytest of tests/python/test_selective_scan*.py
#   2. benchmarks/bench_selective_scan.py --device cuda (fwd / bwd ms at N = 16 and 64)
#   3. ncu of the backward tile kernel + reduce kernel (f32 and bf16) and of the forward (bf16) at
#      (8, 1536, 2048, 16): duration, issue, occupancy, stall reasons, shared-memory wavefronts
# and prints a compact summary.
set -uo pipefail
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
S="$OUT/ss_summary.txt"
: > "$S"
python3 -c "import torch, lrnn; print(torch.cuda.get_device_name(), torch.__version__, lrnn.build_info().get('git_revision'))" >> "$S" 2>&1

timeout 25 python3 -m pytest -q -m cuda -p no:cacheprovider --maxfail=20 tests/python/test_selective_scan_cuda.py \
  tests/python/test_selective_scan.py > "$OUT/ss_pytest.log" 2>&1
echo "== CUDA pytest rc=$?: $(tail -n 1 "$OUT/ss_pytest.log")" >> "$S"
grep -E "^(FAILED|ERROR)" "$OUT/ss_pytest.log" | head -n 8 >> "$S"

timeout 25 python3 benchmarks/bench_selective_scan.py --device cuda --reps 10 > "$OUT/ss_bench.txt" 2>&1
echo "== bench rc=$?" >> "$S"
grep -v "^#" "$OUT/ss_bench.txt" >> "$S"
# the long-sequence time split: segments for ~6144 / ~24576 rows x segments instead of 12288
for r in 6144 24576; do
  LRNN_SS_SPLIT_ROWS=$r timeout 12 python3 benchmarks/bench_selective_scan.py --device cuda --reps 10 --only-n 16 --only-l 16384 \
    > "$OUT/ss_bench_split$r.txt" 2>&1
  echo "== split rows $r rc=$?" >> "$S"; grep -v "^#\|^shape" "$OUT/ss_bench_split$r.txt" >> "$S"
done

if command -v ncu > /dev/null; then
  ST=""
  for r in barrier short_scoreboard long_scoreboard mio_throttle math_pipe_throttle wait not_selected lg_throttle \
           dispatch_stall no_instruction branch_resolving selected; do
    ST="$ST,smsp__average_warps_issue_stalled_${r}_per_issue_active.ratio"
  done
  SH="l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum"
  SH="$SH,smsp__sass_inst_executed_op_shared_ld.sum,smsp__sass_inst_executed_op_shared_st.sum"
  NCU="ncu --clock-control none --section SpeedOfLight --section Occupancy --section LaunchStats --section SchedulerStats
       --section InstructionStats --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --metrics ${ST#,},$SH"
  timeout 30 $NCU -k regex:"selective_scan_(bwd_tile|reduce)" --launch-count 2 python3 tests/gpu/ss_ncu.py bwd float32 \
    > "$OUT/ncu_bwd_f32.txt" 2>&1; echo "== ncu bwd f32 rc=$?" >> "$S"
  timeout 25 $NCU -k regex:"selective_scan_bwd_tile" --launch-count 1 python3 tests/gpu/ss_ncu.py bwd bfloat16 \
    > "$OUT/ncu_bwd_bf16.txt" 2>&1; echo "== ncu bwd bf16 rc=$?" >> "$S"
  timeout 20 $NCU -k regex:"selective_scan_fwd" --launch-count 1 python3 tests/gpu/ss_ncu.py fwd bfloat16 \
    > "$OUT/ncu_fwd_bf16.txt" 2>&1; echo "== ncu fwd bf16 rc=$?" >> "$S"
  python3 tests/gpu/ss_ncu.py summary "$OUT"/ncu_bwd_f32.txt "$OUT"/ncu_bwd_bf16.txt "$OUT"/ncu_fwd_bf16.txt >> "$S" 2>&1
else
  echo "== ncu not on the PATH" >> "$S"
fi
cat "$S"
