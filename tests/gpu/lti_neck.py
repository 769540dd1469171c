"""lti_neck.py: where the time of the Centaurus neck layer goes on the GPU, lrnn against the
torch-ref path (benchmarks/bench_layers.py's row "Centaurus neck", (B, L, H) = (16, 4096, 512)):
forward+backward wall time over many repetitions (the table's row uses 2 and 1), the summed
GPU kernel time and the largest kernels from torch.profiler, and the lrnn::ssm_kernel call of
the layer ((r, N, L) = (4, 16, 4096), cosine basis) alone against ssm_kernel_ref.
Run from the repository root on a CUDA machine: python3 tests/gpu/lti_neck.py [--reps N]."""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_layers import reference_ops  # noqa: E402

import lrnn  # noqa: E402
from lrnn.nn import Centaurus  # noqa: E402
from lrnn.reference import ssm_kernel_ref  # noqa: E402


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def wall_ms(fn, reps):
    fn()
    sync()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts), 1e3 * min(ts)


def kernels(fn, top):
    """(summed self GPU time in ms, [(ms, name)] of the largest kernels) of one call."""
    fn()
    sync()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        sync()
    ev = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    total = sum(e.self_device_time_total for e in ev) / 1e3
    big = sorted(((e.self_device_time_total / 1e3, e.key) for e in ev), reverse=True)[:top]
    return total, big


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--top", type=int, default=4)
    ap.add_argument("--shape", default="16,4096,512", help="B,L,H of the layer")
    a = ap.parse_args()
    torch.manual_seed(0)
    B, L, H = (int(v) for v in a.shape.split(","))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x = torch.randn(B, L, H, device=device, requires_grad=True)
    layer = Centaurus(H, 16, 4, mode="neck", norm=None).to(device)
    params = list(layer.parameters())

    def step():
        y = layer(x)
        return torch.autograd.grad(y.float().square().mean(), [x, *params])

    r, N = 4, 16
    E = torch.randn(r, N, device=device, requires_grad=True)
    dtA = torch.complex(-0.5 * torch.rand(r, N), 3 * torch.rand(r, N)).to(device).requires_grad_()
    g = torch.randn(r, L, device=device)

    def kernel_call(f):
        return lambda: f(E, dtA, L, "cosine").backward(g)

    print(f"lrnn {lrnn.build_info().get('git_revision', '?')}: Centaurus neck fwd+bwd ({B}, {L}, {H}) fp32, {device}")
    impls = (("lrnn", contextlib.nullcontext), ("torch-ref", reference_ops))
    for name, ctx in impls:   # wall times first: the profiler's start-up comes after them
        with ctx():
            med, best = wall_ms(step, a.reps)
        print(f"  {name:9} wall median {med:.3f} ms, min {best:.3f} ms ({a.reps} reps)")
    calls = (("op", lrnn.ssm_kernel), ("ref", ssm_kernel_ref))
    for name, f in calls:
        med, best = wall_ms(kernel_call(f), a.reps)
        print(f"  its ssm_kernel ({r}, {N}, {L}) cosine fwd+bwd, {name:3}: wall median {med:.3f} ms, min {best:.3f}")
    for name, ctx in impls:
        with ctx():
            total, big = kernels(step, a.top)
        print(f"  {name:9} GPU kernels {total:.3f} ms; largest: " + "; ".join(f"{ms:.3f} {k[:32]}" for ms, k in big))
    for name, f in calls:
        total, _ = kernels(kernel_call(f), 1)
        print(f"  its ssm_kernel, {name:3}: GPU kernels {total:.3f} ms")

if __name__ == "__main__":
    main()
