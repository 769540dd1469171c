#!/usr/bin/env bash
# lti5.sh: the GPU part of the time-invariant family's operators (issue 5), run on the H200 from the
# repository root after the project was built there (the CUDA tests of lrnn::ssm_kernel and
# lrnn::cauchy are part of the full CUDA pytest, not repeated here):
#   1. benchmarks/bench_lti_kernels.py at (H, N, L) = (1024, 64, 4096) and (256, 64, 65536), the ops
#      only (device time per call from CUDA-graph replays, % of the floor), backward from a given
#      output gradient and from out.sum();
#   2. tests/gpu/lti_dispatch.py: host (CPU-timer) cost per call of the ops, with and without autograd;
#   3. tests/gpu/lti_neck.py: the Centaurus neck layer, lrnn vs the torch-ref path, and its
#      ssm_kernel call alone (wall time over many repetitions, GPU kernel time);
#   4. Nsight Compute metrics of one call of each float kernel at (1024, 64, 4096).
# Each step prints its summary as soon as it ends (a timeout keeps what came before). Logs and JSON
# go to $OUT (default ./gpu-out). Budget <= 60 s (timeouts 18 + 10 + 12 + 16 s).
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
echo "==== lti5"

timeout 18 python3 benchmarks/bench_lti_kernels.py --device cuda --impls op --upstream given sum \
  --json "$OUT/lti5_bench_cuda.json" > "$OUT/lti5_bench_cuda.log" 2>&1
rc=$?
grep -E "^lrnn|^cuda|^device|Error|graph capture" "$OUT/lti5_bench_cuda.log" | head -20
echo "lti5 bench rc $rc (124: cut by the timeout, rows so far kept)"

timeout 10 python3 tests/gpu/lti_dispatch.py --reps 20 > "$OUT/lti5_dispatch.log" 2>&1
rc=$?
grep -vE "USDT|Warning|warn" "$OUT/lti5_dispatch.log" | head -14
echo "lti5 dispatch rc $rc"

timeout 12 python3 tests/gpu/lti_neck.py --reps 20 > "$OUT/lti5_neck.log" 2>&1
rc=$?
grep -E "wall median|GPU kernels" "$OUT/lti5_neck.log" | cut -c1-100 | head -8
echo "lti5 neck rc $rc"

# one call of each float kernel at (1024, 64, 4096) under Nsight Compute: time, clock, issue,
# occupancy, tensor / FMA pipe use, stalls
cat > "$OUT/lti5_prof.py" <<'PY'
import torch
import lrnn
H, N, L = 1024, 64, 4096
g = torch.Generator().manual_seed(0)
z = torch.complex(-(1e-3 + 0.5 * torch.rand(H, N, generator=g)), 6 * torch.rand(H, N, generator=g) - 3).cuda()
w = torch.randn(H, N, generator=g, dtype=torch.complex64).cuda()
om = torch.complex(torch.zeros(L), 8 * torch.rand(L, generator=g) - 4).cuda()
lam = torch.complex(-0.1 - torch.rand(H, N, generator=g), 6 * torch.rand(H, N, generator=g) - 3).cuda()
k = lrnn.ssm_kernel(w, z, L)
torch.ops.lrnn.ssm_kernel_backward(torch.randn_like(k), w, z, "complex")
out = lrnn.cauchy(w, om, lam, True)
torch.ops.lrnn.cauchy_backward(torch.randn_like(out), w, om, lam, True)
torch.cuda.synchronize()
PY
if command -v ncu > /dev/null; then
  stalls=$(printf 'smsp__average_warps_issue_stalled_%s_per_issue_active.ratio,' long_scoreboard short_scoreboard \
    math_pipe_throttle mio_throttle wait not_selected barrier dispatch_stall lg_throttle no_instruction)
  stalls="${stalls}sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_elapsed,"
  stalls="${stalls}sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_elapsed,"
  timeout 16 ncu --clock-control none --section SpeedOfLight --section SchedulerStats --section LaunchStats \
    --section Occupancy --section InstructionStats --section ComputeWorkloadAnalysis --metrics "${stalls%,}" \
    -k regex:'sk_fwd_tc|sk_bwd_tc|cy_fwd|cy_bwd_p' python3 "$OUT/lti5_prof.py" > "$OUT/lti5_ncu.txt" 2>&1
  rc=$?
  python3 tests/gpu/lti_ncu_summary.py "$OUT/lti5_ncu.txt" | head -4
  echo "ncu rc $rc (124 after the last kernel's report: cut while the profiler shut down)"
else
  echo "ncu not found"
fi
