#!/usr/bin/env bash
# tests/gpu/event.sh: the event-scan area on the GPU machine (run from the repo root after
# `pip install --no-build-isolation -e .`; tests/gpu/run_all.sh calls it):
#   1. pytest -m cuda of test_event_scan.py and test_event_scan_cuda.py: CUDA vs CPU values and
#      gradients, the long multi-chain cases vs float64, bitwise reproducibility, non-contiguous
#      inputs (the deployment and layer tests run in the full CUDA pytest)
#   2. compute-sanitizer memcheck on a small multi-tile forward + backward (tile indexing, the
#      backward's h[t-1] at the scan's first step), when compute-sanitizer is on the PATH
#   3. device time per call of the forward and backward ops (CUDA events over back-to-back calls,
#      so host overheads overlap) at (8, 65536, 128): async with a shared delta (the benchmark)
#      and ZOH with a per-event delta (the S7 path), for the three-pass kernels (default), their
#      variants (LRNN_EVENT_RS=staged, LRNN_EVENT_RS_WAVES) and the look-back kernels
#      (LRNN_EVENT_IMPL=lookback), with the largest difference of all outputs to the first
#   4. ncu of the three-pass kernels of one forward + backward (EVENT_NCU=0 skips it, ~15 s)
#   5. the fused worker of benchmarks/bench_event_scan.py at (8, 65536, 128), complex64, async
#      (wall time per call as the benchmark table reports it; unfused and JAX were measured on
#      main: 1.52 / 5.61 and 2.18 / 5.78 ms)
# Logs go to $OUT/; a compact summary is printed last. About 60 s.
set -u
OUT=${OUT:-/tmp/lrnn-gpu-event}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-}:$PWD/python PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/event_gpu.txt" 2>&1

timeout 28 python3 -m pytest -q -m cuda -rs tests/python/test_event_scan.py tests/python/test_event_scan_cuda.py \
  > "$OUT/event_pytest.log" 2>&1
PYTEST_RC=$?

SAN="not run (no compute-sanitizer)"
if command -v compute-sanitizer > /dev/null; then
  timeout 18 compute-sanitizer --tool memcheck --error-exitcode 3 python3 -c '
import os, torch, lrnn
for per_event, disc, staged in ((False, "async", False), (False, "async", True), (True, "zoh", False)):
    os.environ["LRNN_EVENT_RS"] = "staged" if staged else "registers"
    B, L, P = 2, 3000, 40   # 47 tiles of 64 steps per chain
    Lam = torch.complex(-0.1 - torch.rand(P), torch.randn(P)).cuda().requires_grad_()
    delta = (0.05 + torch.rand((B, L, P) if per_event else (P,))).cuda().requires_grad_()
    v = torch.randn(B, L, P, dtype=torch.complex64, device="cuda", requires_grad=True)
    h, last = lrnn.event_scan(Lam, delta, torch.rand(B, L, device="cuda"), v, None, disc)
    torch.autograd.grad((h.abs() ** 2).sum() + last.abs().sum(), (Lam, delta, v))
torch.cuda.synchronize()
print("ok")' > "$OUT/event_memcheck.log" 2>&1
  SAN="rc=$? $(grep -E 'ERROR SUMMARY' "$OUT/event_memcheck.log" | tail -n 1)"
fi

cat > "$OUT/event_devtime.py" <<'PYEOF'
import os
import torch
import lrnn  # noqa: F401  (loads the ops)
B, L, P = 8, 65536, 128
g = torch.Generator(device="cuda").manual_seed(0)
Lam = torch.complex(-0.05 - torch.rand(P, generator=g, device="cuda"), torch.randn(P, generator=g, device="cuda"))
dt = torch.rand(B, L, generator=g, device="cuda")
v = torch.randn(B, L, P, dtype=torch.complex64, generator=g, device="cuda")
ev, evb = torch.ops.lrnn.event_scan, torch.ops.lrnn.event_scan_backward
KNOBS = ("LRNN_EVENT_IMPL", "LRNN_EVENT_RS", "LRNN_EVENT_RS_WAVES")


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


# the launchers read the knobs at every call
VARIANTS = {"three-pass": {}, "staged": {"LRNN_EVENT_RS": "staged"}, "waves1": {"LRNN_EVENT_RS_WAVES": "1"},
            "waves2": {"LRNN_EVENT_RS_WAVES": "2"}, "waves8": {"LRNN_EVENT_RS_WAVES": "8"},
            "st-waves2": {"LRNN_EVENT_RS": "staged", "LRNN_EVENT_RS_WAVES": "2"},
            "lookback": {"LRNN_EVENT_IMPL": "lookback"}}
for name, delta, disc, variants in (
        ("async shared", 0.01 + torch.rand(P, generator=g, device="cuda"), 2, list(VARIANTS)),
        ("zoh per-event", 0.01 + torch.rand(B, L, P, generator=g, device="cuda"), 0, ["three-pass", "staged", "waves2", "lookback"])):
    gh = torch.randn(B, L, P, dtype=torch.complex64, generator=g, device="cuda")
    ref = None
    for var in variants:
        for k in KNOBS:
            os.environ.pop(k, None)
        os.environ.update(VARIANTS[var])
        h, last = ev(Lam, delta, dt, v, None, disc, False)
        f = per_call(lambda: ev(Lam, delta, dt, v, None, disc, False))
        b = per_call(lambda: evb(gh, None, Lam, delta, dt, v, h, None, disc, False))
        dl, dd, dv, dh0 = evb(gh, None, Lam, delta, dt, v, h, None, disc, False)
        out = [h, last, dl, dd, dv, dh0]
        if ref is None:
            ref = out
        d = max(((a - r).abs().max() / r.abs().max().clamp(min=1e-30)).item() for a, r in zip(out, ref))
        print(f"{name:>13} {var:>10}: fwd {f:.3f} ms, bwd op {b:.3f} ms (max rel d vs first {d:.1e})")
        del h, last, dl, dd, dv, dh0, out
PYEOF
timeout 30 python3 "$OUT/event_devtime.py" > "$OUT/event_devtime.log" 2>&1
DEV_RC=$?

NCU_RC="not run (EVENT_NCU=0)"
if [ "${EVENT_NCU:-1}" = 1 ] && command -v ncu > /dev/null; then
  cat > "$OUT/event_probe.py" <<'PYEOF'
import torch
import lrnn
B, L, P = 8, 65536, 128
g = torch.Generator(device="cpu").manual_seed(0)
Lam = torch.complex(-0.05 - torch.rand(P, generator=g), torch.randn(P, generator=g)).cuda().requires_grad_()
delta = (0.01 + torch.rand(P, generator=g)).cuda().requires_grad_()
dt = torch.rand(B, L, generator=g).cuda()
v = torch.randn(B, L, P, dtype=torch.complex64, generator=g).cuda().requires_grad_()
for _ in range(2):
    h, _ = lrnn.event_scan(Lam, delta, dt, v, None, "async")
    torch.autograd.grad(h, (Lam, delta, v), torch.ones_like(h))
torch.cuda.synchronize()
PYEOF
  # the second iteration's kernels: forward reduce, carry, apply; backward reduce, carry, apply, sum
  timeout 25 ncu --clock-control none --section SpeedOfLight --section LaunchStats --section Occupancy \
    --metrics smsp__warp_issue_stalled_long_scoreboard_per_warp_active.pct,smsp__issue_active.avg.pct_of_peak_sustained_active,dram__bytes.sum \
    -k regex:"event_rs_" --launch-skip 7 --launch-count 7 \
    python3 "$OUT/event_probe.py" > "$OUT/event_ncu.log" 2>&1
  NCU_RC="rc=$?"
fi

# the benchmark's fused worker alone (main measured: unfused 1.52 / 5.61 ms, JAX 2.18 / 5.78 ms)
timeout 15 python3 -u benchmarks/bench_event_scan.py --worker fused --device cuda --B 8 --L 65536 --P 128 \
  --H 64 --chunk 0 --iters 10 > "$OUT/event_bench.log" 2>&1
BENCH_RC=$?

echo "=== event: GPU $(cat "$OUT/event_gpu.txt")"
echo "=== event: pytest -m cuda (rc=$PYTEST_RC): $(tail -n 1 "$OUT/event_pytest.log")"
grep -E "^(FAILED|ERROR)" "$OUT/event_pytest.log" | head -n 10
echo "=== event: memcheck: $SAN"
echo "=== event: device time per op call: three-pass (default: registers, 4 tiles per resident warp), variants, look-back (rc=$DEV_RC)"
grep -E "ms|Error|error" "$OUT/event_devtime.log" | cut -c1-200 | head -n 14
echo "floor (async): fwd 0.254, bwd 0.507; H200 main (look-back): fwd 0.656 / 1.107, bwd 1.099 / 3.515 (zoh pe)"
echo "=== event: ncu of the three-pass kernels, async shared delta ($NCU_RC)"
[ -f "$OUT/event_ncu.log" ] && grep -E "event_rs_[a-z_]*<|^ +Duration|DRAM Throughput|Compute \(SM\) Throughput|Registers Per Thread|Achieved Occupancy|dram__bytes.sum|long_scoreboard|issue_active" \
  "$OUT/event_ncu.log" | sed -e 's/  */ /g' -e 's/(lrnn_event_scan.*) (/ (/' | cut -c1-120 | head -n 64
echo "=== event: bench_event_scan.py fused (rc=$BENCH_RC); targets fwd <= 0.44, fwd+bwd <= 1.16 ms"
cat "$OUT/event_bench.log"
