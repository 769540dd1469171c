"""lti_neck.py: where the time of the Centaurus neck layer goes on the GPU, lrnn against the
torch-ref path (benchmarks/bench_layers.py's row "Centaurus neck", (B, L, H) = (16, 4096, 512)):
forward+backward wall time over many repetitions (the table's row uses 2 and 1), the summed
GPU kernel time and the largest kernels from torch.profiler, and the lrnn::ssm_kernel call of
the layer ((r, N, L) = (4, 16, 4096), cosine basis) alone against ssm_kernel_ref.
Run from the repository root on a CUDA machine: python3 tests/gpu/lti_neck.py [--reps N]."""
from __future__ import annotations

import argparse
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


def wall_ms(fn, reps):
    fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts), 1e3 * min(ts)


def kernels(fn, top):
    """(summed self GPU time in ms, [(ms, name)] of the largest kernels) of one call."""
    fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    ev = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    total = sum(e.self_device_time_total for e in ev) / 1e3
    big = sorted(((e.self_device_time_total / 1e3, e.key) for e in ev), reverse=True)[:top]
    return total, big


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--top", type=int, default=5)
    a = ap.parse_args()
    torch.manual_seed(0)
    B, L, H = 16, 4096, 512
    x = torch.randn(B, L, H, device="cuda", requires_grad=True)
    layer = Centaurus(H, 16, 4, mode="neck", norm=None).cuda()
    params = list(layer.parameters())

    def step():
        y = layer(x)
        return torch.autograd.grad(y.float().square().mean(), [x, *params])

    print(f"lrnn {lrnn.build_info().get('git_revision', '?')}: Centaurus neck fwd+bwd (16, 4096, 512) fp32")
    for name, ctx in (("lrnn", None), ("torch-ref", reference_ops)):
        if ctx is None:
            med, best = wall_ms(step, a.reps)
            total, big = kernels(step, a.top)
        else:
            with ctx():
                med, best = wall_ms(step, a.reps)
                total, big = kernels(step, a.top)
        print(f"  {name:9} wall median {med:.3f} ms (min {best:.3f}), GPU kernels {total:.3f} ms:")
        for ms, k in big:
            print(f"      {ms:7.3f} ms  {k[:90]}")

    r, N = 4, 16
    E = torch.randn(r, N, device="cuda", requires_grad=True)
    dtA = torch.complex(-0.5 * torch.rand(r, N), 3 * torch.rand(r, N)).cuda().requires_grad_()
    g = torch.randn(r, L, device="cuda")
    for name, f in (("op", lrnn.ssm_kernel), ("ref", ssm_kernel_ref)):
        def kb():
            f(E, dtA, L, "cosine").backward(g)
        med, best = wall_ms(kb, a.reps)
        total, _ = kernels(kb, 1)
        print(f"  ssm_kernel (4, 16, 4096) cosine fwd+bwd {name:3}: wall {med:.3f} ms (min {best:.3f}), "
              f"GPU kernels {total:.3f} ms")


if __name__ == "__main__":
    main()
