"""tests/gpu/linear_scan_overhead.py: where the time of lrnn.linear_scan's fwd+bwd goes through torch
(the harness' fwd+bwd rows) against its two kernels called alone, at (B, L, D) = (8, 4096, 1536).

    python tests/gpu/linear_scan_overhead.py [dtype ...]      (default: float32 bfloat16)

Per layout: the forward op, the backward op on saved tensors, their sum, and autograd's fwd+bwd
(the harness' callable), each the median of triton.testing.do_bench (L2 flushed), in ms.
"""
import sys

import torch
from triton.testing import do_bench

import lrnn  # noqa: F401  (registers the ops)


def main() -> None:
    B, L, D = 8, 4096, 1536
    for name in sys.argv[1:] or ["float32", "bfloat16"]:
        dt = getattr(torch, name)
        for layout in ("channel-major", "time-major"):
            def seq():
                t = torch.randn((B, D, L) if layout == "channel-major" else (B, L, D), device="cuda")
                return (t.transpose(1, 2) if layout == "channel-major" else t).to(dt)
            a, b, g = (seq().abs() * 0.45 + 0.5).to(dt), seq(), seq()
            fwd = lambda: torch.ops.lrnn.linear_scan(a, b, None, False)  # noqa: E731
            h, _ = fwd()
            bwd = lambda: torch.ops.lrnn.linear_scan_backward(g, None, a, h, None, False)  # noqa: E731
            a2, b2 = a.detach().requires_grad_(), b.detach().requires_grad_()
            both = lambda: torch.autograd.grad(torch.ops.lrnn.linear_scan(a2, b2, None, False)[0], (a2, b2), g)  # noqa: E731
            tf, tb, tfb = (do_bench(f, warmup=20, rep=60, return_mode="median") for f in (fwd, bwd, both))
            print(f"{name:>9} {layout:>13}: fwd {tf:.4f} + bwd {tb:.4f} = {tf + tb:.4f} ms; "
                  f"autograd fwd+bwd {tfb:.4f} ms (+{tfb - tf - tb:.4f})")


if __name__ == "__main__":
    main()
