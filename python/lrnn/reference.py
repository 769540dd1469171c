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


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, h0=None,
                       dt_A=None):
    """Reference for ``torch.ops.lrnn.selective_scan`` in its (B, D, L) layout: a Python loop over
    time. Returns ``(y, h_last)``; computed in float64 for float64 inputs, else float32 (y cast
    back to u's dtype, h_last float32)."""
    wt = torch.float64 if u.dtype == torch.float64 else torch.float32
    out_dtype = u.dtype
    u, delta, A = u.to(wt), delta.to(wt), A.to(wt)
    Bn, Dd, L = u.shape
    N = A.shape[1]

    def per_step(M):  # -> (B, D, N, L) view for time-varying, (D, N) for time-invariant
        M = M.to(wt)
        if M.dim() == 2:
            return M
        if M.dim() == 3:
            M = M.unsqueeze(1)
        return M.repeat_interleave(Dd // M.shape[1], dim=1)

    Bs, Cs = per_step(B), per_step(C)
    dt = delta if delta_bias is None else delta + delta_bias.to(wt)[:, None]
    if delta_softplus:
        dt = torch.where(dt <= 20, torch.log1p(torch.exp(dt)), dt)
    dta = dt if dt_A is None else dt_A.to(wt)
    h = u.new_zeros((Bn, Dd, N)) if h0 is None else h0.to(wt)
    ys = []
    for t in range(L):
        Bt = Bs if Bs.dim() == 2 else Bs[..., t]
        Ct = Cs if Cs.dim() == 2 else Cs[..., t]
        h = torch.exp(dta[:, :, t, None] * A) * h + (dt[:, :, t] * u[:, :, t])[..., None] * Bt
        ys.append((h * Ct).sum(-1))
    y = torch.stack(ys, -1) if L else u.new_empty((Bn, Dd, 0))
    if D is not None:
        y = y + D.to(wt)[:, None] * u
    if z is not None:
        y = y * torch.nn.functional.silu(z.to(wt))
    return y.to(out_dtype), h
