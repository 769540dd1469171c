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


def event_scan_ref(Lambda: torch.Tensor, delta: torch.Tensor, dt: torch.Tensor, v: torch.Tensor,
                   h0: torch.Tensor | None = None, discretization: str = "async",
                   reverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference for :func:`lrnn.functional.event_scan`: a Python loop over events, written from
    the definitions (``(exp(x) - 1) / Lambda`` directly), computed in complex128.

    Differentiable in ``Lambda``, ``delta``, ``v``, ``h0`` (and ``dt``) by autograd.
    """
    out_dtype = v.dtype
    Lam = Lambda.to(torch.complex128)
    d = delta.to(torch.float64)
    tau = dt.to(torch.float64)
    x = v.to(torch.complex128)
    B, L, P = v.shape
    d = d.expand(B, L, P)
    h = torch.zeros(B, P, dtype=torch.complex128, device=v.device) if h0 is None else h0.to(torch.complex128)
    out = [None] * L
    for t in (range(L - 1, -1, -1) if reverse else range(L)):
        a = torch.exp(Lam * d[:, t] * tau[:, t, None])
        if discretization == "zoh":
            g = (a - 1) / Lam
        elif discretization == "dirac":
            g = torch.ones_like(a)
        elif discretization == "async":
            g = (torch.exp(Lam * d[:, t]) - 1) / Lam
        else:
            raise ValueError(f"unknown discretization {discretization!r}")
        h = a * h + g * x[:, t]
        out[t] = h
    hs = torch.stack(out, 1) if L else x.new_empty(B, 0, P)
    return hs.to(out_dtype), h.to(out_dtype)
