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


def ssm_kernel_ref(w: torch.Tensor, z: torch.Tensor, L: int, basis: str = "complex") -> torch.Tensor:
    """Reference for :func:`lrnn.functional.ssm_kernel`: materializes the (H, N, L) powers."""
    if basis not in ("complex", "cosine"):
        raise ValueError(f"ssm_kernel_ref: basis must be 'complex' or 'cosine', got {basis!r}")
    l = torch.arange(L, device=z.device, dtype=z.real.dtype)
    powers = torch.exp(z.unsqueeze(-1) * l)                          # (H, N, L)
    k = (w.unsqueeze(-1) * powers).sum(-2).real
    if k.dim() == 1:
        k = k.unsqueeze(0)
    return 2 * k if basis == "complex" else k


def cauchy_ref(v: torch.Tensor, omega: torch.Tensor, lam: torch.Tensor, symmetric: bool = True) -> torch.Tensor:
    """Reference for :func:`lrnn.functional.cauchy`: materializes the (H, N, L) terms."""
    v, lam = torch.broadcast_tensors(v, lam)
    if v.dim() == 1:
        v, lam = v.unsqueeze(0), lam.unsqueeze(0)
    out = (v.unsqueeze(-1) / (omega - lam.unsqueeze(-1))).sum(-2)
    if symmetric:
        out = out + (v.conj().unsqueeze(-1) / (omega - lam.conj().unsqueeze(-1))).sum(-2)
    return out


def fft_conv_ref(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None = None) -> torch.Tensor:
    """Reference for :func:`lrnn.functional.fft_conv`: direct causal convolution (O(L^2)), in the
    computation dtype of the FFT version (float64 if an input is float64, else float32; complex if
    an input is complex)."""
    ctype = torch.float64 if any(t.dtype in (torch.float64, torch.complex128) for t in (u, k)) else torch.float32
    if u.is_complex() or k.is_complex():
        ctype = torch.complex128 if ctype == torch.float64 else torch.complex64
    u, k = u.to(ctype), k.to(ctype)
    L = u.shape[1]
    k = k[..., :L]
    kfull = k if k.dim() == 3 else torch.diag_embed(k.transpose(0, 1)).permute(1, 2, 0)  # (H_out, H_in, Lk)
    y = u.new_zeros(u.shape[0], L, kfull.shape[0])
    for lag in range(kfull.shape[-1]):
        y[:, lag:] += u[:, :L - lag] @ kfull[:, :, lag].transpose(0, 1)
    if D is not None:
        D = D.to(ctype)
        y = y + (u * D if D.dim() == 1 else u @ D.transpose(0, 1))
    return y


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


def mimo_selective_scan_ref(u: torch.Tensor, Lambda: torch.Tensor, delta: torch.Tensor, dt: torch.Tensor,
                            wb: torch.Tensor, bb: torch.Tensor | None, wc: torch.Tensor, bc: torch.Tensor | None,
                            h0: torch.Tensor | None = None, discretization: str = "async",
                            reverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference for :func:`lrnn.functional.mimo_selective_scan`: forms every B_t (P x H) and
    C_t (O x P) explicitly from the weight rows, then v_t = B_t u_t, the event-scan reference,
    y_t = Re(C_t h_t); computed in float64 / complex128, returned in u's dtype (y) and Lambda's
    (h_last). Differentiable in every input by autograd.
    """
    U = u.to(torch.float64)

    def matrices(w, b):   # (..., 2, H) weight rows -> per-event complex matrices (B, L, ...)
        m = torch.einsum("...ci,bti->bt...c", w.to(torch.float64), U)
        if b is not None:
            m = m + b.to(torch.float64)
        return torch.complex(m[..., 0], m[..., 1])

    Bt = matrices(wb, bb)                                    # (B, L, P, H)
    v = torch.einsum("btpj,btj->btp", Bt, U.to(torch.complex128))
    h, h_last = event_scan_ref(Lambda.to(torch.complex128), delta.to(torch.float64), dt.to(torch.float64), v,
                               None if h0 is None else h0.to(torch.complex128), discretization, reverse)
    Ct = matrices(wc, bc)                                    # (B, L, O, P)
    y = torch.einsum("btop,btp->bto", Ct, h).real
    return y.to(u.dtype), h_last.to(Lambda.dtype)
