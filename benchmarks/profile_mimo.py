"""CUDA time per kernel of lrnn::mimo_selective_scan's forward + backward (torch.profiler, three
iterations after a warm-up) at the S7 benchmark shapes (B, L, P, H) = (8, 16384, 16, 64) and
(8, 4096, 64, 128), float32: which stage dominates (in / event scan / out, the weight-gradient
reductions). Used by tests/gpu/s7b.sh and s7ops.sh on the GPU machine.

    python benchmarks/profile_mimo.py [--top 9]
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

import lrnn


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--top", type=int, default=9, help="kernels listed per shape")
    a = p.parse_args()
    for B, L, P, H in ((8, 16384, 16, 64), (8, 4096, 64, 128)):
        g = torch.Generator(device="cpu").manual_seed(0)
        dev = "cuda"
        u = torch.randn(B, L, H, generator=g).to(dev).requires_grad_()
        lam = torch.complex(-0.05 - torch.rand(P, generator=g), torch.randn(P, generator=g)).to(dev).requires_grad_()
        delta = (0.01 + torch.rand(B, L, P, generator=g)).to(dev).requires_grad_()
        dt = torch.rand(B, L, generator=g).to(dev)
        wb = (torch.randn(P, H, 2, H, generator=g) / H ** 0.5).to(dev).requires_grad_()
        bb = (0.1 * torch.randn(P, H, 2, generator=g)).to(dev).requires_grad_()
        wc = (torch.randn(H, P, 2, H, generator=g) / H ** 0.5).to(dev).requires_grad_()
        bc = (0.1 * torch.randn(H, P, 2, generator=g)).to(dev).requires_grad_()
        ins = (u, lam, delta, wb, bb, wc, bc)

        def step():
            y, _ = lrnn.mimo_selective_scan(u, lam, delta, dt, wb, bb, wc, bc)
            torch.autograd.grad(y.sum(), ins)

        step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                step()
            torch.cuda.synchronize()
        rows = sorted(prof.key_averages(), key=lambda e: -e.device_time_total)
        total = sum(e.device_time_total for e in rows) / 3e3
        print(f"--- ({B}, {L}, {P}, {H}) op fwd+bwd: {total:.3f} ms/iter of CUDA time; per kernel:")
        for e in rows[:a.top]:
            name = e.key.replace("void ", "").replace("(anonymous namespace)::", "").replace("lrnn_event_cuda::", "")
            print(f"  {name[:58]:<58} x{e.count // 3} {e.device_time_total / 3e3:7.3f} ms")


if __name__ == "__main__":
    main()
