#!/usr/bin/env bash
# lti.sh: the GPU part of the time-invariant family's operators (issue 5), run on the H200 from the
# repository root after the project was built there (tests/gpu/run_all.sh does that; the CUDA
# tests of lrnn::ssm_kernel and lrnn::cauchy are part of its full CUDA pytest, not repeated here):
#   1. benchmarks/bench_lti_kernels.py at (H, N, L) = (1024, 64, 4096) and (256, 64, 65536) on the
#      GPU, the ops only (time / peak memory / fraction of the floor), forward+backward from a
#      given output gradient and from out.sum() (the earlier tables' method, "fwd+sum");
#   2. tests/gpu/lti_neck.py: the Centaurus neck layer, lrnn vs the torch-ref path (wall time over
#      many repetitions, GPU kernel time, largest kernels) and its ssm_kernel call alone;
#   3. compute-sanitizer racecheck of the kernels on small odd sizes;
#   4. Nsight Compute metrics of one call of the cauchy kernels at (1024, 64, 4096).
# Each step prints its summary as soon as it ends (a timeout keeps what came before). Logs and JSON
# go to $OUT (default ./gpu-out). Budget <= 60 s (timeouts 17 + 13 + 12 + 14 s).
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
echo "==== lti"

timeout 17 python3 benchmarks/bench_lti_kernels.py --device cuda --impls op --upstream given sum \
  --json "$OUT/lti_bench_cuda.json" > "$OUT/lti_bench_cuda.log" 2>&1
rc=$?
grep -E "^cuda|^device|Error|graph capture" "$OUT/lti_bench_cuda.log" | head -16
echo "lti bench cuda rc $rc (124: cut by the timeout, rows so far kept)"

timeout 13 python3 tests/gpu/lti_neck.py --reps 20 > "$OUT/lti_neck.log" 2>&1
rc=$?
grep -vE "^#|Falling back" "$OUT/lti_neck.log" | head -18
echo "lti neck rc $rc"

cat > "$OUT/lti_sanitize.py" <<'PY'
import torch
import lrnn
g = torch.Generator().manual_seed(1)
calls = 0
for dt in (torch.complex64, torch.complex128):
    for H, N, L in ((2, 19, 4133), (1, 5, 70)):
        z = torch.complex(-0.3 * torch.rand(H, N, generator=g) - 1e-3, 6 * torch.rand(H, N, generator=g) - 3)
        w = torch.randn(H, N, generator=g, dtype=torch.complex64)
        z, w = z.to(dt).cuda(), w.to(dt).cuda()
        for basis in ("complex", "cosine"):
            ww = w if basis == "complex" else w.real.contiguous()
            k = lrnn.ssm_kernel(ww, z, L, basis)
            torch.ops.lrnn.ssm_kernel_backward(torch.randn_like(k), ww, z, basis)
            calls += 2
        om = torch.complex(torch.zeros(L), 8 * torch.rand(L, generator=g) - 4).to(dt).cuda()
        lam = torch.complex(-0.1 - torch.rand(H, N, generator=g), 6 * torch.rand(H, N, generator=g) - 3).to(dt).cuda()
        for sym in (True, False):
            out = lrnn.cauchy(w, om, lam, sym)
            torch.ops.lrnn.cauchy_backward(torch.randn_like(out), w, om, lam, sym)
            calls += 2
torch.cuda.synchronize()
print(f"ran {calls} op calls")
PY
if command -v compute-sanitizer > /dev/null; then
  # racecheck: the kernels share tables in shared memory between barriers (out-of-bounds accesses
  # are covered by the ASan run of the same device code, tests/cuda_emu)
  timeout 12 compute-sanitizer --tool racecheck --error-exitcode 9 --report-api-errors no \
    python3 "$OUT/lti_sanitize.py" > "$OUT/lti_racecheck.log" 2>&1
  rc=$?
  echo "racecheck (rc $rc): $(grep -E "RACECHECK SUMMARY|ERROR SUMMARY|ran [0-9]+ op calls" "$OUT/lti_racecheck.log" | tr '\n' ' ')"
else
  echo "compute-sanitizer not found"
fi

# one call of each cauchy kernel at (1024, 64, 4096) under Nsight Compute: time, clock, issue,
# occupancy, stalls
cat > "$OUT/lti_prof.py" <<'PY'
import torch
import lrnn
H, N, L = 1024, 64, 4096
g = torch.Generator().manual_seed(0)
w = torch.randn(H, N, generator=g, dtype=torch.complex64).cuda()
om = torch.complex(torch.zeros(L), 8 * torch.rand(L, generator=g) - 4).cuda()
lam = torch.complex(-0.1 - torch.rand(H, N, generator=g), 6 * torch.rand(H, N, generator=g) - 3).cuda()
out = lrnn.cauchy(w, om, lam, True)
torch.ops.lrnn.cauchy_backward(torch.randn_like(out), w, om, lam, True)
torch.cuda.synchronize()
PY
if command -v ncu > /dev/null; then
  stalls=$(printf 'smsp__average_warps_issue_stalled_%s_per_issue_active.ratio,' long_scoreboard short_scoreboard \
    math_pipe_throttle mio_throttle wait not_selected barrier dispatch_stall lg_throttle no_instruction)
  timeout 14 ncu --clock-control none --section SpeedOfLight --section SchedulerStats --section LaunchStats \
    --section Occupancy --section ComputeWorkloadAnalysis --section InstructionStats --metrics "${stalls%,}" \
    -k regex:'cy_fwd|cy_bwd_p' python3 "$OUT/lti_prof.py" > "$OUT/lti_ncu.txt" 2>&1
  rc=$?
  python3 tests/gpu/lti_ncu_summary.py "$OUT/lti_ncu.txt" | head -6
  echo "ncu rc $rc"
else
  echo "ncu not found"
fi
