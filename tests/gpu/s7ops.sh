#!/usr/bin/env bash
# tests/gpu/s7ops.sh: S7's lrnn::mimo_selective_scan on the GPU machine (run from the repo root after
# `pip install --no-build-isolation -e .`):
#   1. pytest -m cuda of tests/python/test_mimo_selective_scan.py (and the event layers' CUDA tests,
#      which include S7): CUDA vs the float64 CPU op (every
#      input dtype, L in 1 / 5 / 1000 / 4097, all discretizations, both directions, with / without
#      biases and h0), benchmark-like sizes, non-contiguous u, bitwise reproducibility, the S7 layer
#   2. benchmarks/bench_event_scan.py --no-scan: the S7 layer, fused op vs the materialized B_k/C_k
#      composition, at (B, L, P, H) = (8, 16384, 16, 64) and (8, 4096, 64, 128): fwd, fwd+bwd, peak
#      extra memory (one subprocess, exact allocator counters)
#   3. torch.profiler: CUDA time per kernel of the op's forward + backward at both sizes (which stage
#      dominates: in / scan / out, and the weight-gradient reductions)
# Logs go to $OUT/; each step's summary is printed as soon as it ends. About 50 s.
set -u
OUT=${OUT:-/tmp/lrnn-gpu-s7ops}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-}:$PWD/python PYTHONUNBUFFERED=1

echo "=== s7ops: GPU $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"
timeout 20 python3 -m pytest -q -m cuda -rs tests/python/test_mimo_selective_scan.py tests/python/test_event_layers.py > "$OUT/s7ops_pytest.log" 2>&1
PYTEST_RC=$?
echo "=== s7ops: pytest -m cuda test_mimo_selective_scan.py test_event_layers.py (rc=$PYTEST_RC): $(tail -n 1 "$OUT/s7ops_pytest.log")"
grep -E "^(FAILED|ERROR)|^E  +AssertionError" "$OUT/s7ops_pytest.log" | head -n 12 | cut -c1-200

timeout 25 python3 -u benchmarks/bench_event_scan.py --device cuda --no-scan --iters 5 \
  --s7 8x16384x16x64,8x4096x64x128 --json "$OUT/s7ops_bench.json" > "$OUT/s7ops_bench.log" 2>&1
BENCH_RC=$?
echo "=== s7ops: S7 layer fused vs materialized (rc=$BENCH_RC)"
tail -n 9 "$OUT/s7ops_bench.log" | cut -c1-200

timeout 12 python3 benchmarks/profile_mimo.py > "$OUT/s7ops_prof.log" 2>&1
PROF_RC=$?
echo "=== s7ops: kernel time breakdown (rc=$PROF_RC)"
grep -vE "^\s*$|Warning|warn" "$OUT/s7ops_prof.log" | tail -n 16 | cut -c1-160
