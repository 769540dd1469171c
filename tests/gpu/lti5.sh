#!/usr/bin/env bash
# lti5.sh: the GPU part of the time-invariant family's operators (issue 5), this session's version
# of tests/gpu/lti.sh, run on the H200 from the repository root after the project was built there:
#   1. benchmarks/bench_lti_kernels.py at (H, N, L) = (1024, 64, 4096) and (256, 64, 65536), the ops
#      only (device time per call from CUDA-graph replays, % of the floor), then the launch-time
#      variants under measurement (LRNN_SK_FWD_PASSES=2: the two-pass ssm_kernel forward;
#      LRNN_CY_FWD_NODES=8: 8 nodes per thread in the cauchy forward; LRNN_SK_BWD_PERSIST=1: the
#      persistent ssm_kernel backward that copies the next tile in the background);
#   2. tests/gpu/lti_dispatch.py: host (CPU-timer) cost per call of the ops and of their autograd;
#   3. the CUDA tests of the two ops (tests/python/test_lti_kernels.py -m cuda), with the variants on;
#   4. Nsight Compute: duration, issue use, instructions of one call of each kernel at (1024, 64, 4096).
# Each step prints its summary as soon as it ends (a timeout keeps what came before). Logs and JSON
# go to $OUT (default ./gpu-out). Budget <= 60 s (timeouts 18 + 8 + 16 + 18 s).
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
echo "==== lti5 $(git rev-parse --short HEAD 2>/dev/null)"

timeout 18 python3 benchmarks/bench_lti_kernels.py --device cuda --impls op --upstream given \
  --variant ssm_kernel:fwd:LRNN_SK_FWD_PASSES=2 ssm_kernel:fwd+bwd:LRNN_SK_FWD_PASSES=2 \
  cauchy:fwd:LRNN_CY_FWD_NODES=8 cauchy:fwd+bwd:LRNN_CY_FWD_NODES=8 ssm_kernel:fwd+bwd:LRNN_SK_BWD_PERSIST=1 \
  --json "$OUT/lti5_bench_cuda.json" > "$OUT/lti5_bench_cuda.log" 2>&1
rc=$?
grep -E "^cuda|^device|Error|graph capture" "$OUT/lti5_bench_cuda.log" | head -20
echo "lti5 bench rc $rc (124: cut by the timeout, rows so far kept)"

timeout 8 python3 tests/gpu/lti_dispatch.py --reps 40 > "$OUT/lti5_dispatch.log" 2>&1
rc=$?
grep -vE "USDT|Warning|warn" "$OUT/lti5_dispatch.log" | head -17
echo "lti5 dispatch rc $rc"

LRNN_SK_FWD_PASSES=2 LRNN_CY_FWD_NODES=8 LRNN_SK_BWD_PERSIST=1 timeout 16 python3 -m pytest -q -x -m cuda \
  -p no:cacheprovider tests/python/test_lti_kernels.py > "$OUT/lti5_pytest.log" 2>&1
rc=$?
echo "lti5 cuda pytest, variants on (rc $rc): $(tail -1 "$OUT/lti5_pytest.log")"
grep -E "^(FAILED|E  )" "$OUT/lti5_pytest.log" | head -6

cat > "$OUT/lti5_prof.py" <<'PY'
import os
import torch
import lrnn
H, N, L = 1024, 64, 4096
g = torch.Generator().manual_seed(0)
z = torch.complex(-(1e-3 + 0.5 * torch.rand(H, N, generator=g)), 6 * torch.rand(H, N, generator=g) - 3).cuda()
w = torch.randn(H, N, generator=g, dtype=torch.complex64).cuda()
om = torch.complex(torch.zeros(L), 8 * torch.rand(L, generator=g) - 4).cuda()
lam = torch.complex(-0.1 - torch.rand(H, N, generator=g), 6 * torch.rand(H, N, generator=g) - 3).cuda()
for variant in ("", "2"):
    os.environ["LRNN_SK_FWD_PASSES"] = variant
    os.environ["LRNN_CY_FWD_NODES"] = "8" if variant else ""
    os.environ["LRNN_SK_BWD_PERSIST"] = "1" if variant else ""
    k = lrnn.ssm_kernel(w, z, L)
    out = lrnn.cauchy(w, om, lam, True)
    torch.ops.lrnn.ssm_kernel_backward(torch.randn_like(k), w, z, "complex")
    if not variant:
        torch.ops.lrnn.cauchy_backward(torch.randn_like(out), w, om, lam, True)
torch.cuda.synchronize()
PY
if command -v ncu > /dev/null; then
  stalls=$(printf 'smsp__average_warps_issue_stalled_%s_per_issue_active.ratio,' long_scoreboard short_scoreboard \
    math_pipe_throttle mio_throttle wait not_selected barrier dispatch_stall lg_throttle no_instruction)
  stalls="${stalls}sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_elapsed,"
  stalls="${stalls}sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_elapsed,"
  timeout 18 ncu --clock-control none --section SpeedOfLight --section SchedulerStats --section LaunchStats \
    --section Occupancy --section InstructionStats --section ComputeWorkloadAnalysis --metrics "${stalls%,}" \
    -k regex:'sk_fwd_tc|sk_bwd_tc|cy_fwd|cy_bwd_p' python3 "$OUT/lti5_prof.py" > "$OUT/lti5_ncu.txt" 2>&1
  rc=$?
  python3 tests/gpu/lti_ncu_summary.py "$OUT/lti5_ncu.txt" | head -7
  echo "ncu rc $rc"
else
  echo "ncu not found"
fi
