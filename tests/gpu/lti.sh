#!/usr/bin/env bash
# lti.sh: the GPU part of the time-invariant family's operators (issue 5, branch lti-ops), run on the
# H200 from the repository root after the project was built there (tests/gpu/run_all.sh does that):
#   1. CUDA tests of lrnn::ssm_kernel, lrnn::cauchy (values vs float64, backward, gradcheck, opcheck)
#      and of S4/S4D on CUDA (forward, state, gradients vs CPU);
#   2. benchmarks/bench_lti_kernels.py at (H, N, L) = (1024, 64, 4096) and (256, 64, 65536): GPU,
#      then CPU, op vs the materializing PyTorch reference, time / peak memory / fraction of floor.
# Logs and JSON go to $OUT (default ./gpu-out); a compact summary is printed last.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
summary=()

timeout 80 python3 -m pytest -q -m cuda tests/python/test_lti_kernels.py tests/python/test_s4.py \
  > "$OUT/lti_pytest.log" 2>&1
summary+=("lti cuda pytest (rc $?): $(tail -1 "$OUT/lti_pytest.log")")
grep -E "^FAILED|^ERROR|Error:" "$OUT/lti_pytest.log" | head -20

timeout 70 python3 benchmarks/bench_lti_kernels.py --device cuda --json "$OUT/lti_bench_cuda.json" \
  > "$OUT/lti_bench_cuda.log" 2>&1
summary+=("lti bench cuda rc $?")
timeout 80 python3 benchmarks/bench_lti_kernels.py --device cpu --json "$OUT/lti_bench_cpu.json" \
  > "$OUT/lti_bench_cpu.log" 2>&1
summary+=("lti bench cpu rc $?")

echo "==== lti summary"
printf '%s\n' "${summary[@]}"
tail -n +1 "$OUT/lti_bench_cuda.log" | grep -E "^cuda|^device|H200|issue rate|Error" | head -24
grep -E "^cpu" "$OUT/lti_bench_cpu.log" | head -16
