#!/usr/bin/env bash
# tests/gpu/s7cuda.sh: the CUDA stages of S7's MIMO selective scan on the GPU machine (run from the
# repo root after `pip install --no-build-isolation -e .`; <= 60 s, each step under `timeout`,
# each section printed as soon as it is done):
#   1. nvcc builds benchmarks/cuda/mimo_c.cu with csrc/cuda/mimo_selective_scan.cu in the background
#   2. pytest -m cuda of tests/python/test_mimo_selective_scan.py, when the file exists
#   3. mimo_c: every launcher vs double loops at a small odd size for f32 / bf16 / f16 (and a
#      bitwise repeat of the backward), then the time of each stage at the S7 shapes
#      (8, 16384, 16, 64) and (8, 4096, 64, 128), f32
#   4. the op lrnn::mimo_selective_scan and its backward op (event scan included), f32, per call
#      at the same shapes, against the materialized baseline (fwd 3.76 / fwd+bwd 9.08 ms and
#      8.40 / 18.56 ms), when the op has a CUDA kernel
#   5. ncu (SOL, occupancy) of the forward, token-side backward and weight-gradient kernels at
#      the second shape, f32
# Logs go to $OUT/.
set -u
OUT=${OUT:-/tmp/lrnn-gpu-s7cuda}
mkdir -p "$OUT" build
export PYTHONPATH=${PYTHONPATH:-}:$PWD/python PYTHONUNBUFFERED=1

NVFLAGS=(-O3 -arch=sm_90 --use_fast_math -lineinfo -std=c++17 -Icsrc/include -Xptxas -v)
SRCS=(benchmarks/cuda/mimo_c.cu csrc/cuda/mimo_selective_scan.cu)
timeout 40 nvcc "${NVFLAGS[@]}" "${SRCS[@]}" -o build/mimo_c > "$OUT/s7cuda_nvcc.log" 2>&1 &
NVCC_PID=$!
echo "=== s7cuda: GPU $(nvidia-smi --query-gpu=name --format=csv,noheader 2>&1 | head -n 1)"

if [ -f tests/python/test_mimo_selective_scan.py ]; then
  timeout 25 python3 -m pytest -q -m cuda -rs tests/python/test_mimo_selective_scan.py > "$OUT/s7cuda_pytest.log" 2>&1
  echo "=== s7cuda: pytest -m cuda test_mimo_selective_scan.py: rc=$? $(tail -n 1 "$OUT/s7cuda_pytest.log")"
  grep -E "^(FAILED|ERROR)|^E +AssertionError" "$OUT/s7cuda_pytest.log" | head -n 6 | cut -c1-160
fi

wait "$NVCC_PID"
NVCC_RC=$?
echo "=== s7cuda: nvcc rc=$NVCC_RC; $(grep -cE 'bytes spill stores' "$OUT/s7cuda_nvcc.log") kernels," \
  "$(grep -E 'bytes spill' "$OUT/s7cuda_nvcc.log" | grep -vc ' 0 bytes spill stores, 0 bytes spill loads') with spills," \
  "registers max $(grep -oE 'Used [0-9]+ registers' "$OUT/s7cuda_nvcc.log" | awk '{print $2}' | sort -n | tail -n 1)"
grep -E "error" "$OUT/s7cuda_nvcc.log" | head -n 5
if [ "$NVCC_RC" = 0 ]; then
  timeout 15 ./build/mimo_c check > "$OUT/s7cuda_mimo_c.log" 2>&1
  timeout 10 ./build/mimo_c f32 >> "$OUT/s7cuda_mimo_c.log" 2>&1
  echo "=== s7cuda: mimo_c, v2 kernels (rc=$?)"
  head -n 9 "$OUT/s7cuda_mimo_c.log"
fi

timeout 20 python3 - > "$OUT/s7cuda_op.log" 2>&1 <<'PYEOF'
import torch
import lrnn  # noqa: F401  (loads the ops)
if "CUDA" not in torch._C._dispatch_dump("lrnn::mimo_selective_scan"):
    raise SystemExit("lrnn::mimo_selective_scan has no CUDA kernel in this build")
op, bop = torch.ops.lrnn.mimo_selective_scan, torch.ops.lrnn.mimo_selective_scan_backward


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


g = torch.Generator(device="cpu").manual_seed(0)
for (B, L, P, H), base in (((8, 16384, 16, 64), (3.76, 9.08)), ((8, 4096, 64, 128), (8.40, 18.56))):
    O = H
    u = torch.randn(B, L, H, generator=g).cuda()
    Lam = torch.complex(-0.05 - torch.rand(P, generator=g), torch.randn(P, generator=g)).cuda()
    delta = (0.01 + torch.rand(B, L, P, generator=g)).cuda()
    dt = torch.rand(B, L, generator=g).cuda()
    wb = (0.1 * torch.randn(P, H, 2, H, generator=g)).cuda()
    wc = (0.1 * torch.randn(O, P, 2, H, generator=g)).cuda()
    bb = (0.1 * torch.randn(P, H, 2, generator=g)).cuda()
    bc = (0.1 * torch.randn(O, P, 2, generator=g)).cuda()
    y, hl, h, v = op(u, Lam, delta, dt, wb, bb, wc, bc, None, 0, False)
    gy = torch.randn_like(y)
    f = per_call(lambda: op(u, Lam, delta, dt, wb, bb, wc, bc, None, 0, False))
    b = per_call(lambda: bop(gy, None, u, Lam, delta, dt, wb, bb, wc, bc, None, h, v, 0, False))
    print(f"op (B,L,P,H)=({B},{L},{P},{H}) f32 zoh per-event delta: fwd {f:.3f} ms, fwd+bwd {f + b:.3f} ms"
          f" (materialized {base[0]:.2f} / {base[1]:.2f}), peak mem {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    torch.cuda.reset_peak_memory_stats()
PYEOF
echo "=== s7cuda: op per call (rc=$?)"
tail -n 2 "$OUT/s7cuda_op.log"

if [ "$NVCC_RC" = 0 ] && command -v ncu > /dev/null; then
  timeout 14 ncu --clock-control none --section SpeedOfLight --section Occupancy \
    -k regex:"fwd2_kernel|twoway_kernel|wgrad2_kernel" --launch-count 3 ./build/mimo_c prof > "$OUT/s7cuda_ncu.log" 2>&1
  echo "=== s7cuda: ncu, f32 (8, 4096, 64, 128): in fwd2, out twoway, out wgrad2 (rc=$?)"
  grep -E "(fwd2|twoway|wgrad2)_kernel<|^ +Duration|Compute \(SM\) Throughput|L1/TEX Cache Throughput|Achieved Occupancy" \
    "$OUT/s7cuda_ncu.log" | sed -e 's/  */ /g' -e 's/(lrnn_mimo_params.*//' -e 's/void <unnamed>:://' | cut -c1-100 | head -n 15
fi
