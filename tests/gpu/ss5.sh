#!/usr/bin/env bash
# tests/gpu/ss5.sh: selective-scan CUDA round script for the H200 (session 5, area ss5). Run from the
# repo root after `pip install --no-build-isolation -e .`; logs in "$OUT/"; <= 45 s; everything runs
# in ONE Python process (tests/gpu/ss5_prof.py: each fresh CUDA process costs seconds there), which
# prints as it goes, most needed first: device time per kernel (short f32 / bf16 backward op and
# forward, long-shape kernel split), wall / host / device of fwd / autograd bwd / bare op, the
# autograd backward's host ops, then the benchmark rows at N = 16. The CUDA pytest runs in the
# lead's full pytest.
set -uo pipefail
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
timeout 43 python3 tests/gpu/ss5_prof.py 2>&1 | grep -v "Warning\|_warn_once" | tee "$OUT/ss5_prof.txt"
echo "== ss5_prof rc=${PIPESTATUS[0]}"
