"""lrnn.reference: pure-PyTorch twins of every lrnn operator — plain loops, slow, differentiable,
the ground truth the tests compare the kernels with (run them in float64/complex128)."""
from __future__ import annotations

import torch


def linear_scan_ref(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None,
                    reverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference for :func:`lrnn.functional.linear_scan`: a Python loop over time.

    Low-precision inputs are computed in float32 and the results cast back to ``b.dtype``.
    """
    out_dtype = b.dtype
    if b.dtype in (torch.bfloat16, torch.float16):
        a, b = a.float(), b.float()
        h0 = None if h0 is None else h0.float()
    B, L, D = b.shape
    a = a.expand(B, L, D)
    h = torch.zeros(B, D, dtype=b.dtype, device=b.device) if h0 is None else h0.to(b.dtype)
    steps = range(L - 1, -1, -1) if reverse else range(L)
    out = [None] * L
    for t in steps:
        h = a[:, t] * h + b[:, t]
        out[t] = h
    hs = torch.stack(out, 1) if L else b.new_empty(B, 0, D)
    return hs.to(out_dtype), h.to(out_dtype)
