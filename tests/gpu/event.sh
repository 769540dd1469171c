#!/usr/bin/env bash
# tests/gpu/event.sh: the event-scan area on the GPU machine (run from the repo root after
# `pip install --no-build-isolation -e .`; the full CUDA pytest, which covers the event-scan
# tests, runs separately). Prints its summary as it goes, within about 60 s:
#   1. device time per call of the forward and backward ops (CUDA events over back-to-back
#      calls, so host overheads overlap) at (8, 65536, 128): async with a shared delta (the
#      benchmark) and ZOH with a per-event delta (the S7 path)
#   2. benchmarks/bench_event_scan.py without the S7 rows: fused, unfused and JAX at
#      (8, 65536, 128), complex64, async (wall time per call), written to
#      $OUT/event_scan_cuda_bench.txt for benchmarks/results/event_scan_cuda.txt
#   3. compute-sanitizer memcheck on a small multi-tile forward + backward (tile indexing, the
#      backward's h[t-1] at the scan's first step, the programmatic launches)
#   EVENT_NCU=1 adds ncu of the kernels of one forward + backward (~15 s).
set -u
OUT=${OUT:-/tmp/lrnn-gpu-event}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-}:$PWD/python PYTHONUNBUFFERED=1
echo "=== event: GPU $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1)"

cat > "$OUT/event_devtime.py" <<'PYEOF'
import torch
import lrnn  # noqa: F401  (loads the ops)
B, L, P = 8, 65536, 128
g = torch.Generator(device="cuda").manual_seed(0)
Lam = torch.complex(-0.05 - torch.rand(P, generator=g, device="cuda"), torch.randn(P, generator=g, device="cuda"))
dt = torch.rand(B, L, generator=g, device="cuda")
v = torch.randn(B, L, P, dtype=torch.complex64, generator=g, device="cuda")
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


for name, delta, disc in (("async shared", 0.01 + torch.rand(P, generator=g, device="cuda"), 2),
                          ("zoh per-event", 0.01 + torch.rand(B, L, P, generator=g, device="cuda"), 0)):
    gh = torch.randn(B, L, P, dtype=torch.complex64, generator=g, device="cuda")
    h, last = ev(Lam, delta, dt, v, None, disc, False)
    f = per_call(lambda: ev(Lam, delta, dt, v, None, disc, False))
    b = per_call(lambda: evb(gh, None, Lam, delta, dt, v, h, None, disc, False))
    print(f"{name:>13}: fwd {f:.3f} ms, bwd op {b:.3f} ms", flush=True)
PYEOF
echo "=== event: device ms per op call (H200 2026-11-29: async fwd 0.431 / bwd 0.679-0.685, zoh per-event 0.897 / 1.212; floor async 0.254 / 0.507)"
timeout 16 python3 "$OUT/event_devtime.py" 2>&1 | tee "$OUT/event_devtime.log" | grep -E "ms|Error|error" | cut -c1-160
echo "=== event: devtime rc=${PIPESTATUS[0]}"

echo "=== event: bench_event_scan.py (targets: fused fwd <= 0.44 ms, fwd+bwd <= 1.16 ms; H200 2026-11-29: fused 0.49 / 1.24, JAX 2.02 / 5.69)"
timeout 36 python3 -u benchmarks/bench_event_scan.py --device cuda --s7 "" --iters 10 --timeout 30 \
  --json "$OUT/event_bench.json" 2>&1 | tee "$OUT/event_scan_cuda_bench.txt"
echo "=== event: bench rc=${PIPESTATUS[0]}"

if command -v compute-sanitizer > /dev/null; then
  timeout 14 compute-sanitizer --tool memcheck --error-exitcode 3 python3 -c '
import torch, lrnn
for per_event, disc in ((False, "async"), (True, "zoh")):
    B, L, P = 2, 3000, 40   # 47 tiles of 64 steps per chain, a partial channel group
    Lam = torch.complex(-0.1 - torch.rand(P), torch.randn(P)).cuda().requires_grad_()
    delta = (0.05 + torch.rand((B, L, P) if per_event else (P,))).cuda().requires_grad_()
    v = torch.randn(B, L, P, dtype=torch.complex64, device="cuda", requires_grad=True)
    h, last = lrnn.event_scan(Lam, delta, torch.rand(B, L, device="cuda"), v, None, disc)
    torch.autograd.grad((h.abs() ** 2).sum() + last.abs().sum(), (Lam, delta, v))
torch.cuda.synchronize()
print("ok")' > "$OUT/event_memcheck.log" 2>&1
  echo "=== event: memcheck rc=$? $(grep -E 'ERROR SUMMARY' "$OUT/event_memcheck.log" | tail -n 1)"
fi

if [ "${EVENT_NCU:-0}" = 1 ] && command -v ncu > /dev/null; then
  cat > "$OUT/event_probe.py" <<'PYEOF'
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
  timeout 25 ncu --clock-control none --section SpeedOfLight \
    --metrics smsp__issue_active.avg.pct_of_peak_sustained_active,dram__bytes.sum \
    -k regex:"event_rs_" --launch-skip 7 --launch-count 7 python3 "$OUT/event_probe.py" > "$OUT/event_ncu.log" 2>&1
  echo "=== event: ncu rc=$?"
  grep -E "event_rs_[a-z_]*<|^ +Duration|DRAM Throughput|dram__bytes.sum|issue_active" "$OUT/event_ncu.log" \
    | sed -e 's/  */ /g' -e 's/(lrnn_event_scan.*) (/ (/' | cut -c1-110 | head -n 35
fi
