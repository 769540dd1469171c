#!/usr/bin/env bash
# tests/gpu/selective_scan.sh: the selective-scan CUDA checks and benchmark for the H200 box.
# Run from the repo root after `pip install --no-build-isolation -e .`; logs go to "$OUT/"
# (default ./gpu_out). Under 90 s; prints a compact summary at the end.
#   1. tests/python/test_selective_scan_cuda.py  (CUDA vs CPU float64, poisoned outputs, determinism)
#   2. benchmarks/bench_selective_scan.py        (fwd/bwd ms, fraction of the compute floor, and the
#      ratio to mamba_ssm's kernel when importable; target <= 0.5x), then its --variants mode
#   (memory safety of the kernels: tests/cuda_emu under AddressSanitizer; no compute-sanitizer run
#   here, it does not fit the 80 s budget)
set -uo pipefail
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
SUMMARY="$OUT/selective_scan_summary.txt"
: > "$SUMMARY"

python - > "$OUT/selective_scan_env.txt" 2>&1 <<'PY'
import torch, lrnn
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())
print("lrnn", lrnn.build_info())
print("CUDA kernel registered:", "CUDA" in torch._C._dispatch_dump("lrnn::selective_scan"))
try:
    import mamba_ssm
    print("mamba_ssm", mamba_ssm.__version__)
except ImportError as err:
    print("mamba_ssm not importable:", err)
PY
cat "$OUT/selective_scan_env.txt" >> "$SUMMARY"

timeout 25 python -m pytest tests/python/test_selective_scan_cuda.py -m cuda -q -rfs \
  --maxfail=30 -p no:cacheprovider \
  > "$OUT/selective_scan_cuda_tests.log" 2>&1
TEST_RC=$?
echo "== CUDA tests (rc=$TEST_RC): $(tail -n 1 "$OUT/selective_scan_cuda_tests.log")" >> "$SUMMARY"
grep -E "^(FAILED|ERROR)" "$OUT/selective_scan_cuda_tests.log" | head -n 15 >> "$SUMMARY"

timeout 25 python benchmarks/bench_selective_scan.py --device cuda --reps 5 --json "$OUT/selective_scan_bench.json" \
  > "$OUT/selective_scan_bench.txt" 2>&1
BENCH_RC=$?
echo "== benchmark (rc=$BENCH_RC)" >> "$SUMMARY"
cat "$OUT/selective_scan_bench.txt" >> "$SUMMARY"

# kernel experiments at N = 16, timed side by side on the same inputs (launch-time hooks
# LRNN_SS_*, csrc/cuda/selective_scan_kernels.cuh); "max rel diff" compares each to the default
timeout 22 python benchmarks/bench_selective_scan.py --device cuda --reps 7 --only-n 16 --variants "default:" \
  "bwd_4x4:LRNN_SS_BWD_VARIANT=1" "fwd_8x2:LRNN_SS_FWD_VARIANT=1" "no_split:LRNN_SS_SPLIT_ROWS=0" \
  "split_rows_24576:LRNN_SS_SPLIT_ROWS=24576" "split_rows_49152:LRNN_SS_SPLIT_ROWS=49152" \
  > "$OUT/selective_scan_variants.txt" 2>&1
echo "== variants (rc=$?)" >> "$SUMMARY"
grep -v "^#" "$OUT/selective_scan_variants.txt" >> "$SUMMARY"

cat "$SUMMARY"
