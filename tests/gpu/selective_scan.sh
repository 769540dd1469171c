#!/usr/bin/env bash
# tests/gpu/selective_scan.sh: the selective-scan CUDA checks and benchmark for the H200 box.
# Run from the repo root after `pip install --no-build-isolation -e .`; logs go to "$OUT/"
# (default ./gpu_out). Under 90 s; prints a compact summary at the end.
#   1. tests/python/test_selective_scan_cuda.py  (CUDA vs CPU float64, poisoned outputs, determinism)
#   2. benchmarks/bench_selective_scan.py        (fwd/bwd ms, fraction of the compute floor, and the
#      ratio to mamba_ssm's kernel when importable; target <= 0.5x)
#   3. compute-sanitizer memcheck of small forward + backward pairs (the time-split paths), when on
#      the PATH (last: it is the slowest to start; its timeout keeps the script under 90 s)
set -uo pipefail
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
SUMMARY="$OUT/selective_scan_summary.txt"
: > "$SUMMARY"

python - > "$OUT/selective_scan_env.txt" 2>&1 <<'PY'
import torch, lrnn
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())
print("lrnn", lrnn.build_info())
print("CUDA kernel registered:", "CUDA" in torch._C._dispatch_dump("lrnn::selective_scan"))
try:
    import mamba_ssm
    print("mamba_ssm", mamba_ssm.__version__)
except ImportError as err:
    print("mamba_ssm not importable:", err)
PY
cat "$OUT/selective_scan_env.txt" >> "$SUMMARY"

timeout 25 python -m pytest tests/python/test_selective_scan_cuda.py -m cuda -q -rfs \
  --maxfail=30 -p no:cacheprovider \
  > "$OUT/selective_scan_cuda_tests.log" 2>&1
TEST_RC=$?
echo "== CUDA tests (rc=$TEST_RC): $(tail -n 1 "$OUT/selective_scan_cuda_tests.log")" >> "$SUMMARY"
grep -E "^(FAILED|ERROR)" "$OUT/selective_scan_cuda_tests.log" | head -n 15 >> "$SUMMARY"

timeout 25 python benchmarks/bench_selective_scan.py --device cuda --reps 10 --json "$OUT/selective_scan_bench.json" \
  > "$OUT/selective_scan_bench.txt" 2>&1
BENCH_RC=$?
echo "== benchmark (rc=$BENCH_RC)" >> "$SUMMARY"
cat "$OUT/selective_scan_bench.txt" >> "$SUMMARY"

# memcheck of small forward + backward pairs: N = 16 with L = 1100 and B*D = 80 (the time-split
# paths, 3 segments of 512 steps) and N = 64 (the tiled backward's largest configuration)
cat > "$OUT/ss_sanitize.py" <<'PY'
import torch
import lrnn  # noqa: F401
g = torch.Generator(device="cpu").manual_seed(0)
def r(*s, lo=-1.0, hi=1.0, dt=torch.float32):
    return (torch.rand(*s, generator=g) * (hi - lo) + lo).to(dt).cuda()
for N, L in ((16, 1100), (64, 150)):
    for dt in (torch.float32, torch.bfloat16):
        Bn, D, G = 2, 40, 2
        u, delta, z, gy = r(Bn, D, L, dt=dt), r(Bn, D, L, lo=0.01, hi=0.5, dt=dt), r(Bn, D, L, dt=dt), r(Bn, D, L, dt=dt)
        A, Bm, Cm = r(D, N, lo=-1.5, hi=-0.1), r(Bn, G, N, L, dt=dt), r(Bn, G, N, L, dt=dt)
        Dv, bias, h0, ghl = r(D), r(D), r(Bn, D, N), r(Bn, D, N)
        y, hl, cs = torch.ops.lrnn.selective_scan(u, delta, A, Bm, Cm, Dv, z, bias, True, h0, None)
        torch.ops.lrnn.selective_scan_backward(gy, ghl, u, delta, A, Bm, Cm, Dv, z, bias, True, h0, None, cs)
torch.cuda.synchronize()
print("ran 4 selective-scan forward + backward pairs")
PY
SAN="not run (no compute-sanitizer on the PATH)"
if command -v compute-sanitizer > /dev/null; then
  timeout 35 compute-sanitizer --tool memcheck --error-exitcode 9 --kernel-name kns=selective_scan \
    python3 "$OUT/ss_sanitize.py" > "$OUT/selective_scan_memcheck.log" 2>&1
  SAN="memcheck rc=$? ($(grep -E "ERROR SUMMARY|ran 4" "$OUT/selective_scan_memcheck.log" | tr '\n' ' '))"
fi
echo "== compute-sanitizer: $SAN" >> "$SUMMARY"

cat "$SUMMARY"
