"""lti_dispatch.py: host-side cost of calling lrnn::ssm_kernel and lrnn::cauchy (tests/gpu/lti5.sh).

For a small layer-sized call (the Centaurus neck's ssm_kernel, (r, N, L) = (4, 16, 4096), cosine
basis, and a cauchy call of S4's size) it prints the wall time per call measured by a CPU timer
around many back-to-back calls, without synchronizing inside the loop (so the host's dispatch is
timed, not the kernels, as long as the host is the slower side), then once more with a device
synchronize per call; the ops alone and, for scale, one small torch op. Then the largest host
entries of torch.profiler (ops and, on CUDA, runtime API calls) for one forward+backward.
Run from the repository root: python3 tests/gpu/lti_dispatch.py [--device cuda|cpu] [--reps N]."""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import lrnn


def per_call_us(fn, reps: int, sync) -> float:
    """Median over 3 rounds of (wall time of reps calls) / reps, in microseconds."""
    for _ in range(5):
        fn()
    sync()
    rounds = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        sync()
        rounds.append((time.perf_counter() - t0) / reps * 1e6)
    return statistics.median(rounds)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=200)
    a = ap.parse_args()
    dev = a.device
    nosync = lambda: None  # noqa: E731
    devsync = torch.cuda.synchronize if dev == "cuda" else nosync
    torch.manual_seed(0)
    r, N, L = 4, 16, 4096
    E = torch.randn(r, N, device=dev, requires_grad=True)
    dtA = torch.complex(-0.5 * torch.rand(r, N), 3 * torch.rand(r, N)).to(dev).requires_grad_()
    g = torch.randn(r, L, device=dev)
    Ed, zd = E.detach(), dtA.detach()
    v = torch.randn(8, 32, dtype=torch.complex64, device=dev).requires_grad_()
    lam = torch.complex(-0.5 - torch.rand(8, 32), torch.rand(8, 32)).to(dev).requires_grad_()
    om = torch.complex(torch.zeros(512), torch.rand(512)).to(dev)
    gc = torch.randn(8, 512, dtype=torch.complex64, device=dev)
    x = torch.randn(r, L, device=dev)

    op_sk = torch.ops.lrnn.ssm_kernel

    def sk_fwd_nograd():
        with torch.no_grad():
            lrnn.ssm_kernel(E, dtA, L, "cosine")

    cases = [
        ("ssm_kernel fwd+bwd (.backward(g))", lambda: lrnn.ssm_kernel(E, dtA, L, "cosine").backward(g)),
        ("cauchy fwd+bwd (.backward(g))", lambda: lrnn.cauchy(v, om, lam).backward(gc)),
        ("ssm_kernel fwd, requires_grad", lambda: lrnn.ssm_kernel(E, dtA, L, "cosine")),
        ("ssm_kernel fwd, no_grad", sk_fwd_nograd),
        ("ssm_kernel op, raw (detached inputs)", lambda: op_sk(Ed, zd, L, "cosine")),
        ("ssm_kernel_backward op, raw", lambda: torch.ops.lrnn.ssm_kernel_backward(g, Ed, zd, "cosine")),
        ("torch.neg (one small op, for scale)", lambda: torch.neg(x)),
    ]
    print(f"host time per call on {dev} (median of 3 x {a.reps} calls), no sync / sync per call:")
    for name, fn in cases:
        t_async = per_call_us(fn, a.reps, devsync)
        t_sync = per_call_us(lambda: (fn(), devsync()), max(a.reps // 4, 10), devsync)
        print(f"  {name:50} {t_async:8.1f} us  {t_sync:8.1f} us", flush=True)

    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if dev == "cuda" else [])
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(20):
            lrnn.ssm_kernel(E, dtA, L, "cosine").backward(g)
        devsync()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:5]
    print("largest host entries of 20 ssm_kernel fwd+bwd (self CPU us per call, calls per fwd+bwd):")
    for e in rows:
        print(f"  {e.self_cpu_time_total / 20:8.1f} us  x{e.count / 20:4.1f}  {e.key[:70]}")


if __name__ == "__main__":
    main()
