#!/usr/bin/env bash
# tests/gpu/event5.sh: the event-scan kernels on the GPU machine (run from the repo root after
# `pip install --no-build-isolation -e .`). Prints its summary as it goes (each step under its own
# timeout, about 60-80 s in all; the last two steps are the ones a shorter limit cuts):
#   1. device time per call of the forward and backward ops at (8, 65536, 128) complex64,
#      async with a shared delta (the benchmark's case), for every kernel
#      (LRNN_EVENT_SCAN_IMPL: default = the launcher's choice, the one-pass scan with 8 and 4
#      warps per block, the three-pass scan), with the run-to-run bitwise difference and the
#      difference against the three-pass scan; plus ZOH with a per-event delta (the S7 path)
#   2. benchmarks/bench_event_scan.py without the S7 rows: fused (default kernel), unfused
#      (materialized transitions + linear_scan) and JAX, wall time per call, written to
#      $OUT/event_scan_cuda_bench.txt for benchmarks/results/event_scan_cuda.txt
#   3. ncu of the one-pass kernels (forward, backward) of the benchmark case
#   3b. compute-sanitizer memcheck on a small multi-chunk forward + backward of each one-pass
#      kernel (forced) and the three-pass scan
#   4. the CUDA pytest of the event scan (tests/python/test_event_scan_cuda.py)
#   5. compute-sanitizer racecheck (shared memory) of the one-pass kernels on the small case
set -u
OUT=${OUT:-/tmp/lrnn-gpu-event5}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-}:$PWD/python PYTHONUNBUFFERED=1
echo "=== event5: GPU $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1) commit $(git rev-parse --short HEAD 2>/dev/null)"

cat > "$OUT/event5_devtime.py" <<'PYEOF'
import os
import torch
import lrnn  # noqa: F401  (loads the ops)
B, L, P = 8, 65536, 128
g = torch.Generator(device="cuda").manual_seed(0)
Lam = torch.complex(-0.05 - torch.rand(P, generator=g, device="cuda"), torch.randn(P, generator=g, device="cuda"))
dt = torch.rand(B, L, generator=g, device="cuda")
v = torch.randn(B, L, P, dtype=torch.complex64, generator=g, device="cuda")
gh = torch.randn(B, L, P, dtype=torch.complex64, generator=g, device="cuda")
ev, evb = torch.ops.lrnn.event_scan, torch.ops.lrnn.event_scan_backward


def per_call(fn, n=10):
    fn()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(n):
        fn()
    e.record()
    torch.cuda.synchronize()
    return s.elapsed_time(e) / n


def rel(a, b):
    return max(((x - y).abs().max() / y.abs().max()).item() for x, y in zip(a, b))


cases = (("async shared", 0.01 + torch.rand(P, generator=g, device="cuda"), 2, ("default", "1pass", "1pass4", "3pass")),
         ("zoh per-event", 0.01 + torch.rand(B, L, P, generator=g, device="cuda"), 0, ("default",)))
for name, delta, disc, impls in cases:
    ref = None
    for impl in impls:
        if impl == "default":
            os.environ.pop("LRNN_EVENT_SCAN_IMPL", None)
        else:
            os.environ["LRNN_EVENT_SCAN_IMPL"] = impl
        h, last = ev(Lam, delta, dt, v, None, disc, False)
        gr = evb(gh, last, Lam, delta, dt, v, h, None, disc, False)
        f = per_call(lambda: ev(Lam, delta, dt, v, None, disc, False))
        b = per_call(lambda: evb(gh, last, Lam, delta, dt, v, h, None, disc, False))
        h2, last2 = ev(Lam, delta, dt, v, None, disc, False)
        gr2 = evb(gh, last, Lam, delta, dt, v, h, None, disc, False)
        same = all(torch.equal(x, y) for x, y in zip((h, last, *gr), (h2, last2, *gr2)))
        out = (h, last, *gr)
        if ref is None:
            ref = out
        print(f"{name:>13} {impl:>8}: fwd {f:.3f} ms, bwd op {b:.3f} ms (bitwise repeat {same}, "
              f"max rel d vs {impls[0]} {rel(out, ref):.1e})", flush=True)
# the backward op's two batch sums of its (B, P) partials (part of "bwd op" above)
pl, pd = torch.randn(B, P, dtype=torch.complex64, device="cuda"), torch.randn(B, P, device="cuda")
print(f"two torch.sum over (B, P) partials: {per_call(lambda: (pl.sum(0), pd.sum(0))):.4f} ms", flush=True)
PYEOF
echo "=== event5: device ms per op call (main f388cf9 on the H200: async fwd 0.431-0.436 / bwd 0.679-0.685 (three-pass), zoh per-event 0.897 / 1.212; floor async 0.254 / 0.507)"
timeout 25 python3 "$OUT/event5_devtime.py" 2>&1 | tee "$OUT/event5_devtime.log" | grep -E "ms|Error|error" | cut -c1-170
echo "=== event5: devtime rc=${PIPESTATUS[0]}"

echo "=== event5: bench_event_scan.py (5x JAX needs fused fwd <= 0.40 ms, fwd+bwd <= 1.14 ms at JAX 2.02 / 5.69; main: fused 0.49 / 1.24)"
timeout 40 python3 -u benchmarks/bench_event_scan.py --device cuda --s7 "" --iters 10 --timeout 34 \
  --json "$OUT/event5_bench.json" 2>&1 | tee "$OUT/event_scan_cuda_bench.txt"
echo "=== event5: bench rc=${PIPESTATUS[0]}"

if command -v ncu > /dev/null; then
  cat > "$OUT/event5_probe.py" <<'PYEOF'
import torch
import lrnn
B, L, P = 8, 65536, 128
g = torch.Generator(device="cuda").manual_seed(0)
Lam = torch.complex(-0.05 - torch.rand(P, generator=g, device="cuda"), torch.randn(P, generator=g, device="cuda")).requires_grad_()
delta = (0.01 + torch.rand(P, generator=g, device="cuda")).requires_grad_()
dt = torch.rand(B, L, generator=g, device="cuda")
v = torch.randn(B, L, P, dtype=torch.complex64, generator=g, device="cuda").requires_grad_()
for _ in range(2):
    h, _ = lrnn.event_scan(Lam, delta, dt, v, None, "async")
    torch.autograd.grad(h, (Lam, delta, v), torch.ones_like(h))
torch.cuda.synchronize()
PYEOF
  timeout 25 ncu --clock-control none --section SpeedOfLight --section Occupancy \
    --metrics smsp__issue_active.avg.pct_of_peak_sustained_active,dram__bytes.sum,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_lg_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio \
    -k regex:"event_op_" --launch-skip 2 --launch-count 2 python3 "$OUT/event5_probe.py" > "$OUT/event5_ncu.log" 2>&1
  echo "=== event5: ncu rc=$? (one-pass forward, backward of the benchmark case)"
  grep -E "event_op_[a-z]*<|^ +Duration|DRAM Throughput|dram__bytes.sum|issue_active|stalled|Achieved Occupancy|Registers Per|Block Limit" "$OUT/event5_ncu.log" \
    | sed -e 's/  */ /g' -e 's/(lrnn_event_scan.*) (/ (/' | cut -c1-110 | head -n 34
fi

if command -v compute-sanitizer > /dev/null; then
  cat > "$OUT/event5_small.py" <<'PYEOF'
import os, sys
import torch, lrnn
for impl in sys.argv[1:]:
    os.environ["LRNN_EVENT_SCAN_IMPL"] = impl
    for per_event, disc in ((False, "async"), (False, "zoh"), (True, "zoh")):
        B, L, P = 2, 3000, 40   # 12-24 chunks per chain (checkpoints), a partial channel group
        Lam = torch.complex(-0.1 - torch.rand(P), torch.randn(P)).cuda().requires_grad_()
        delta = (0.05 + torch.rand((B, L, P) if per_event else (P,))).cuda().requires_grad_()
        v = torch.randn(B, L, P, dtype=torch.complex64, device="cuda", requires_grad=True)
        h, last = lrnn.event_scan(Lam, delta, torch.rand(B, L, device="cuda"), v, None, disc, disc == "zoh")
        torch.autograd.grad((h.abs() ** 2).sum() + last.abs().sum(), (Lam, delta, v))
torch.cuda.synchronize()
print("ok")
PYEOF
  timeout 15 compute-sanitizer --tool memcheck --error-exitcode 3 python3 "$OUT/event5_small.py" 1pass 1pass4 3pass \
    > "$OUT/event5_memcheck.log" 2>&1
  echo "=== event5: memcheck rc=$? $(grep -E 'ERROR SUMMARY' "$OUT/event5_memcheck.log" | tail -n 1)"
fi

timeout 25 python3 -m pytest -q -x -m cuda tests/python/test_event_scan_cuda.py > "$OUT/event5_pytest.log" 2>&1
echo "=== event5: pytest rc=$? $(tail -n 1 "$OUT/event5_pytest.log")"
grep -E "^(FAILED|ERROR)|Error" "$OUT/event5_pytest.log" | head -n 8 | cut -c1-200

if command -v compute-sanitizer > /dev/null; then
  timeout 12 compute-sanitizer --tool racecheck --error-exitcode 3 python3 "$OUT/event5_small.py" 1pass \
    > "$OUT/event5_racecheck.log" 2>&1
  echo "=== event5: racecheck rc=$? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/event5_racecheck.log" | tail -n 1)"
fi
