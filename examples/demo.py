"""The lrnn demonstration: a linear recurrence h[t] = a[t] * h[t-1] + b[t] solved by the
lrnn::linear_scan kernel and by a Python loop, with the agreement and the speed-up printed."""
from __future__ import annotations

import time

import torch

import lrnn
from lrnn.reference import linear_scan_ref


def best_of(fn, repeats=5):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    torch.manual_seed(0)
    B, L, D = 8, 4096, 256
    a = torch.rand(B, L, D) * 0.5 + 0.49   # decays in (0.49, 0.99): a stable recurrence
    b = torch.randn(B, L, D)
    print(f"lrnn {lrnn.__version__}: {lrnn.build_info()}")
    print(f"h[t] = a[t] * h[t-1] + b[t]  with (B, L, D) = ({B}, {L}, {D}), float32, {torch.get_num_threads()} threads")

    h, h_last = lrnn.linear_scan(a, b)
    h_ref, _ = linear_scan_ref(a.double(), b.double())
    err = ((h.double() - h_ref).abs().max() / h_ref.abs().max()).item()
    print(f"max relative error vs a float64 Python loop: {err:.2e}")

    t_kernel = best_of(lambda: lrnn.linear_scan(a, b))
    t_loop = best_of(lambda: linear_scan_ref(a, b), repeats=2)
    gbytes = 3 * a.numel() * 4 / 1e9
    print(f"forward  lrnn: {t_kernel * 1e3:8.2f} ms ({gbytes / t_kernel:5.1f} GB/s)   Python loop: {t_loop * 1e3:8.2f} ms"
          f"   speed-up {t_loop / t_kernel:5.1f}x")

    a_g, b_g = a.clone().requires_grad_(), b.clone().requires_grad_()
    t_kernel_bwd = best_of(lambda: lrnn.linear_scan(a_g, b_g)[0].sum().backward())
    La = 256  # the loop's autograd graph is very slow to run backward: time a shorter sequence, scale by L
    a_s, b_s = a[:, :La].clone().requires_grad_(), b[:, :La].clone().requires_grad_()
    t_loop_bwd = best_of(lambda: linear_scan_ref(a_s, b_s)[0].sum().backward(), repeats=2) * (L / La)
    print(f"fwd+bwd  lrnn: {t_kernel_bwd * 1e3:8.2f} ms   Python loop: >= {t_loop_bwd * 1e3:8.2f} ms"
          f" (L={La} scaled by {L // La}; longer runs grow faster than linearly)   speed-up >= {t_loop_bwd / t_kernel_bwd:5.1f}x")


if __name__ == "__main__":
    main()
