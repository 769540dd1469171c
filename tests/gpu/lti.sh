#!/usr/bin/env bash
# lti.sh: the GPU part of the time-invariant family's operators (issue 5), run on the H200 from the
# repository root after the project was built there (tests/gpu/run_all.sh does that):
#   1. CUDA tests of lrnn::ssm_kernel, lrnn::cauchy (values and gradients vs float64 on odd sizes
#      up to L = 65536, gradcheck);
#   2. compute-sanitizer racecheck of the kernels on small odd sizes;
#   3. benchmarks/bench_lti_kernels.py at (H, N, L) = (1024, 64, 4096) and (256, 64, 65536) on the
#      GPU, the ops only (time / peak memory / fraction of the floor), forward+backward from a
#      given output gradient and from out.sum() (the earlier tables' method, "fwd+sum"), and the
#      cauchy backward with 512 and 2048 nodes per block (LRNN_CY_BWD_TILE; default 1024) and
#      the persistent cauchy kernels (LRNN_CY_FWD_PERSIST=1, LRNN_CY_BWD_PERSIST=1);
#   4. tests/gpu/lti_neck.py: the Centaurus neck layer, lrnn vs the torch-ref path (wall time,
#      GPU kernel time, largest kernels) and its ssm_kernel call alone;
#   5. Nsight Compute metrics of one call of the ssm_kernel backward and the cauchy kernels at
#      (1024, 64, 4096).
# Logs and JSON go to $OUT (default ./gpu-out); a compact summary is printed last. Budget <= 60 s
# (timeouts 15 + 10 + 18 + 8 + 9 s).
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
summary=()

timeout 15 python3 -m pytest -q -m cuda tests/python/test_lti_kernels.py > "$OUT/lti_pytest.log" 2>&1
summary+=("lti cuda pytest (rc $?): $(tail -1 "$OUT/lti_pytest.log")")

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
import os
os.environ["LRNN_CY_FWD_PERSIST"] = os.environ["LRNN_CY_BWD_PERSIST"] = "1"   # the persistent kernels too
# more items (head, tile) than fit on the device at once (132 SMs x 9 forward / x 3 backward
# blocks): the blocks reuse their staging buffers
om = torch.complex(torch.zeros(2000), torch.rand(2000, generator=g)).cuda()
for H in (300, 100):
    v = torch.randn(H, 5, generator=g, dtype=torch.complex64).cuda()
    lam = torch.complex(-0.1 - torch.rand(H, 5, generator=g), torch.rand(H, 5, generator=g)).cuda()
    out = lrnn.cauchy(v, om, lam, True)
    torch.ops.lrnn.cauchy_backward(torch.randn_like(out), v, om, lam, True)
    calls += 2
torch.cuda.synchronize()
print(f"ran {calls} op calls")
PY
if command -v compute-sanitizer > /dev/null; then
  # racecheck: the kernels share tables in shared memory between barriers (out-of-bounds accesses
  # are covered by the ASan run of the same device code, tests/cuda_emu)
  timeout 10 compute-sanitizer --tool racecheck --error-exitcode 9 --report-api-errors no \
    python3 "$OUT/lti_sanitize.py" > "$OUT/lti_racecheck.log" 2>&1
  summary+=("racecheck (rc $?): $(grep -E "RACECHECK SUMMARY|ERROR SUMMARY|ran [0-9]+ op calls" "$OUT/lti_racecheck.log" | tr '\n' ' ')")
else
  summary+=("compute-sanitizer not found")
fi

timeout 18 python3 benchmarks/bench_lti_kernels.py --device cuda --impls op --upstream given sum \
  --variant cauchy:bwd:LRNN_CY_BWD_TILE=512 cauchy:bwd:LRNN_CY_BWD_TILE=2048 cauchy:fwd:LRNN_CY_FWD_PERSIST=1 \
  cauchy:bwd:LRNN_CY_BWD_PERSIST=1 \
  --json "$OUT/lti_bench_cuda.json" > "$OUT/lti_bench_cuda.log" 2>&1
summary+=("lti bench cuda rc $? (124: cut by the timeout, rows so far kept)")
timeout 8 python3 tests/gpu/lti_neck.py > "$OUT/lti_neck.log" 2>&1
summary+=("lti neck rc $?")

# one call of each op at (1024, 64, 4096) under Nsight Compute: time, clock, issue, occupancy, stalls
cat > "$OUT/lti_prof.py" <<'PY'
import torch
import lrnn
H, N, L = 1024, 64, 4096
g = torch.Generator().manual_seed(0)
z = torch.complex(-(1e-3 + 0.5 * torch.rand(H, N, generator=g)), 6 * torch.rand(H, N, generator=g) - 3).cuda()
w = torch.randn(H, N, generator=g, dtype=torch.complex64).cuda()
k = lrnn.ssm_kernel(w, z, L)
torch.ops.lrnn.ssm_kernel_backward(torch.randn_like(k), w, z, "complex")
om = torch.complex(torch.zeros(L), 8 * torch.rand(L, generator=g) - 4).cuda()
lam = torch.complex(-0.1 - torch.rand(H, N, generator=g), 6 * torch.rand(H, N, generator=g) - 3).cuda()
out = lrnn.cauchy(w, om, lam, True)
torch.ops.lrnn.cauchy_backward(torch.randn_like(out), w, om, lam, True)
torch.cuda.synchronize()
PY
if command -v ncu > /dev/null; then
  stalls=$(printf 'smsp__average_warps_issue_stalled_%s_per_issue_active.ratio,' long_scoreboard short_scoreboard \
    math_pipe_throttle mio_throttle wait not_selected barrier dispatch_stall lg_throttle no_instruction)
  timeout 9 ncu --clock-control none --section SpeedOfLight --section SchedulerStats \
    --section ComputeWorkloadAnalysis --section InstructionStats --metrics "${stalls%,}" \
    -k regex:'sk_bwd_tc|cy_fwd|cy_bwd_p' python3 "$OUT/lti_prof.py" > "$OUT/lti_ncu.txt" 2>&1
  summary+=("ncu rc $?")
else
  summary+=("ncu not found")
fi

echo "==== lti"
grep -E "^FAILED|^ERROR" "$OUT/lti_pytest.log" | head -10
grep -E "^cuda|^device|issue rate|Error|graph capture" "$OUT/lti_bench_cuda.log" | head -22
grep -vE "^#|Falling back" "$OUT/lti_neck.log" | head -20
[ -f "$OUT/lti_ncu.txt" ] && python3 tests/gpu/lti_ncu_summary.py "$OUT/lti_ncu.txt" | head -8
printf '%s\n' "${summary[@]}"
