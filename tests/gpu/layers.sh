#!/usr/bin/env bash
# tests/gpu/layers.sh: the S5 / LRU / Centaurus layers and lrnn.models on the H200.
# Runs from the repo root AFTER `pip install --no-build-isolation -e .`; logs go to "$OUT/".
#   1. the CUDA layer tests (tests/python/test_nn_cuda.py, marked cuda) and the CPU layer/model tests
#   2. benchmarks/bench_layers.py at (B, L, H) = (16, 4096, 512), fp32 and bf16 autocast
# Budget: < 3 minutes (the parts are bounded by timeouts of 70 + 50 + 55 s). Prints a compact summary at the end.
set -u
OUT="${OUT:-/tmp/lrnn-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/layers_gpu.txt" 2>&1

timeout 70 python -m pytest -q -rs tests/python/test_nn_cuda.py > "$OUT/layers_cuda_tests.log" 2>&1
cuda_rc=$?
# CPU layer tests without the (slow, already CPU-verified) compile/export cases.
timeout 50 python -m pytest -q -k "not compile" tests/python/test_nn_s5.py tests/python/test_nn_lru.py \
    tests/python/test_nn_centaurus.py tests/python/test_models.py > "$OUT/layers_cpu_tests.log" 2>&1
cpu_rc=$?
timeout 55 python benchmarks/bench_layers.py --reps 3 --json "$OUT/bench_layers.json" > "$OUT/bench_layers.md" 2>&1
bench_rc=$?

echo "== layers summary ($(cat "$OUT/layers_gpu.txt"))"
echo "cuda tests (rc=$cuda_rc): $(tail -n 1 "$OUT/layers_cuda_tests.log")"
grep -E "^(FAILED|ERROR|SKIPPED)" "$OUT/layers_cuda_tests.log" | head -n 15
echo "cpu layer tests (rc=$cpu_rc): $(tail -n 1 "$OUT/layers_cpu_tests.log")"
echo "benchmark (rc=$bench_rc):"
grep -E "^(#|\|)" "$OUT/bench_layers.md"
[ "$bench_rc" -eq 0 ] || tail -n 5 "$OUT/bench_layers.md"
