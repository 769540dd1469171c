#!/usr/bin/env bash
# tests/gpu/ss.sh: selective-scan CUDA round script for the H200 (session 4, area ss). Run from the
# repo root after `pip install --no-build-isolation -e .`; logs in "$OUT/"; <= 60 s; the summary is
# printed as it goes (a timeout still leaves numbers):
#   1. the CUDA pytest of tests/python/test_selective_scan*.py
#   2. benchmarks/bench_selective_scan.py --device cuda (fwd / bwd ms at N = 16 and 64)
#   3. ncu of the backward tile kernel (f32, (8, 1536, 2048, 16)): duration, issue, stall reasons,
#      shared-memory wavefronts per instruction
set -uo pipefail
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
S="$OUT/ss_summary.txt"
: > "$S"
say() { echo "$@" | tee -a "$S"; }
say "$(python3 -c "import torch, lrnn; print(torch.cuda.get_device_name(), torch.__version__, lrnn.build_info().get('git_revision'))" 2>&1)"

timeout 25 python3 -m pytest -q -m cuda -p no:cacheprovider --maxfail=20 tests/python/test_selective_scan_cuda.py \
  tests/python/test_selective_scan.py > "$OUT/ss_pytest.log" 2>&1
say "== CUDA pytest rc=$?: $(tail -n 1 "$OUT/ss_pytest.log")"
grep -E "^(FAILED|ERROR)" "$OUT/ss_pytest.log" | head -n 8 | tee -a "$S"

timeout 16 python3 benchmarks/bench_selective_scan.py --device cuda --reps 10 > "$OUT/ss_bench.txt" 2>&1
say "== bench rc=$?"
grep -v "^#" "$OUT/ss_bench.txt" | tee -a "$S"

if command -v ncu > /dev/null; then
  ST=""
  for r in barrier short_scoreboard long_scoreboard mio_throttle math_pipe_throttle wait not_selected lg_throttle \
           dispatch_stall no_instruction branch_resolving selected; do
    ST="$ST,smsp__average_warps_issue_stalled_${r}_per_issue_active.ratio"
  done
  SH="l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum"
  SH="$SH,smsp__sass_inst_executed_op_shared_ld.sum,smsp__sass_inst_executed_op_shared_st.sum"
  timeout 14 ncu --clock-control none --section SpeedOfLight --section LaunchStats --section Occupancy \
    --section InstructionStats --metrics "${ST#,},$SH" -k regex:"selective_scan_bwd_tile" --launch-count 1 \
    python3 tests/gpu/ss_ncu.py bwd float32 > "$OUT/ncu_bwd_f32.txt" 2>&1
  say "== ncu bwd f32 rc=$?"
  python3 tests/gpu/ss_ncu.py summary "$OUT"/ncu_bwd_f32.txt 2>&1 | tee -a "$S"
else
  say "== ncu not on the PATH"
fi
