#!/usr/bin/env bash
# tests/gpu/event.sh: the event-scan area on the GPU machine (run from the repo root after
# `pip install --no-build-isolation -e .`): the CUDA tests of lrnn::event_scan and the event
# layers (CUDA vs CPU values and gradients), then the benchmark at (B, L, P) = (8, 65536, 128)
# (fused vs unfused vs JAX) and the S7 layer sizes. Logs and JSON go to $OUT/. At most 175 s (timeouts).
set -u
OUT=${OUT:-/tmp/lrnn-gpu-event}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-}:$PWD/python
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/event_gpu.txt" 2>&1

timeout 60 python -m pytest -q -m cuda -rs tests/python/test_event_scan.py tests/python/test_event_layers.py \
  > "$OUT/event_pytest.log" 2>&1
PYTEST_RC=$?

timeout 115 python -u benchmarks/bench_event_scan.py --device cuda --B 8 --L 65536 --P 128 --iters 5 \
  --s7 8x16384x16x64,8x4096x64x128 --json "$OUT/event_bench.json" --timeout 45 > "$OUT/event_bench.log" 2>&1
BENCH_RC=$?

echo "=== event: GPU $(cat "$OUT/event_gpu.txt")"
echo "=== event: pytest -m cuda (rc=$PYTEST_RC): $(tail -n 1 "$OUT/event_pytest.log")"
grep -E "^(FAILED|ERROR|SKIPPED)" "$OUT/event_pytest.log" | head -n 10
echo "=== event: benchmark (rc=$BENCH_RC)"
cat "$OUT/event_bench.log"
