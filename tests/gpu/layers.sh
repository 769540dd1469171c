#!/usr/bin/env bash
# tests/gpu/layers.sh: the S5 / LRU / Centaurus layers and lrnn.models on the H200.
# Runs from the repo root AFTER `pip install --no-build-isolation -e .`; logs go to "$OUT/".
#   1. the CUDA layer tests (tests/python/test_nn_cuda.py, marked cuda): GPU vs CPU float64,
#      step == forward, bf16 autocast + backward, torch.compile, one training step of a model
#   2. benchmarks/bench_layers.py at (B, L, H) = (16, 4096, 512), fp32 and bf16 autocast: S4, S4D,
#      S5, LRU, Centaurus vs the pure-PyTorch reference path and vs lrnnx. lrnnx (PyPI sdist,
#      SforAiDl/lrnnx 1.0.0.post1) cannot be pip-installed there (no internet; its sdist builds
#      three CUDA extensions, mamba's selective scan among them, well beyond a call's limit), so a
#      wheel of its Python sources travels in the ignored .whl/ folder (carry ".whl") and is
#      installed into /tmp/lrnnx-site here; einops, opt-einsum and triton are in the image. The
#      benchmark says why when the lrnnx column is missing.
# The CPU layer tests are part of `make test` and are not repeated here.
# Budget: < 3 minutes (timeouts of 70 + 100 s). Prints a compact summary at the end.
set -u
OUT="${OUT:-/tmp/lrnn-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"   # this checkout, even without the editable install

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/layers_gpu.txt" 2>&1
lrnnx_note="no .whl/lrnnx-*.whl carried"
if compgen -G ".whl/lrnnx-*.whl" > /dev/null; then
  if python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/lrnnx-site .whl/lrnnx-*.whl \
      > "$OUT/lrnnx_install.log" 2>&1; then
    export PYTHONPATH="$PYTHONPATH:/tmp/lrnnx-site"
    lrnnx_note="lrnnx installed from $(ls .whl/lrnnx-*.whl)"
  else
    lrnnx_note="lrnnx wheel install failed: $(tail -1 "$OUT/lrnnx_install.log")"
  fi
fi

timeout 70 python -m pytest -q -rs tests/python/test_nn_cuda.py > "$OUT/layers_cuda_tests.log" 2>&1
cuda_rc=$?
timeout 100 python benchmarks/bench_layers.py --reps 2 --json "$OUT/bench_layers.json" > "$OUT/bench_layers.md" 2>&1
bench_rc=$?

# Summary, most important last (callers may show only the tail).
echo "== layers benchmark (rc=$bench_rc; 124 = cut by the timeout, rows so far kept):"
grep -E "^(#|\|)" "$OUT/bench_layers.md"
[ "$bench_rc" -eq 0 ] || tail -n 3 "$OUT/bench_layers.md"
grep -E "^(FAILED|ERROR)" "$OUT/layers_cuda_tests.log" | head -n 10
echo "== layers on $(cat "$OUT/layers_gpu.txt"); $lrnnx_note"
echo "== cuda layer tests (rc=$cuda_rc): $(tail -n 1 "$OUT/layers_cuda_tests.log")"
