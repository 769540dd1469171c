"""lrnn.functional: the documented Python API over the torch.ops.lrnn operators."""
from __future__ import annotations

import torch


def linear_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None,
                reverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Diagonal linear recurrence ``h[t] = a[t] * h[t-1] + b[t]`` along dim 1 of ``b``.

    Args:
        a: transitions, ``(B, L, D)`` or broadcastable to it along batch and time, e.g. ``(D,)``
           for a time-invariant system (never materialized). Same dtype as ``b``, or the real
           dtype of the same precision when ``b`` is complex.
        b: inputs ``(B, L, D)``: float32, float64, bfloat16, float16 (accumulated in float32),
           complex64 or complex128. A transposed ``(B, D, L)``-contiguous view is read in place.
        h0: initial state ``(B, D)`` (zeros when None), same dtype as ``b``.
        reverse: scan from ``t = L-1`` down to 0 (``h[t] = a[t] * h[t+1] + b[t]``, ``h[L] = h0``).

    Returns:
        ``h`` ``(B, L, D)`` with the layout of ``b``, and ``h_last`` ``(B, D)``: the state after the
        last step taken (``h[:, -1]``, or ``h[:, 0]`` when ``reverse``). Differentiable w.r.t.
        ``a``, ``b`` and ``h0``, including through ``h_last``.
    """
    return torch.ops.lrnn.linear_scan(a, b, h0, reverse)


def ssm_kernel(w: torch.Tensor, z: torch.Tensor, L: int, basis: str = "complex") -> torch.Tensor:
    """Vandermonde kernel of a diagonal LTI system, ``K[h, l] = s * Re(sum_n w[h, n] * exp(z[h, n] * l))``
    for ``l = 0 .. L-1``, without forming the ``(H, N, L)`` powers (O(H*N*L) time, O(H*L) memory).

    Args:
        w: weights ``(H, N)`` or ``(N,)``: complex64/complex128 for ``basis="complex"``; the real
           dtype of ``z`` for ``basis="cosine"``.
        z: log-transitions ``(H, N)`` or ``(N,)``, complex64 or complex128 (e.g. ``dt * A``);
           broadcast with ``w`` to ``(H, N)``.
        L: kernel length (>= 0).
        basis: ``"complex"``: ``s = 2``, the conjugate-pair kernel of S4D/S5/LRU (each stored
           state stands for itself and its conjugate). ``"cosine"``: ``s = 1`` with a real ``w``,
           i.e. Centaurus' damped-cosine basis ``sum_n w * exp(Re z * l) * cos(Im z * l)``.

    Returns:
        ``K`` ``(H, L)``, float32 for complex64 ``z``, float64 for complex128. Differentiable
        w.r.t. ``w`` and ``z`` (PyTorch's complex convention). ``exp(z * l)`` is re-anchored
        every 32 steps from a double-precision value, so accuracy does not degrade with ``L``.
    """
    return torch.ops.lrnn.ssm_kernel(w, z, L, basis)


def cauchy(v: torch.Tensor, omega: torch.Tensor, lam: torch.Tensor, symmetric: bool = True) -> torch.Tensor:
    """Cauchy matrix-vector product of S4's DPLR kernel,
    ``out[h, l] = sum_n v[h, n] / (omega[l] - lam[h, n]) + conj(v[h, n]) / (omega[l] - conj(lam[h, n]))``.

    The second (conjugate-pair) term is present when ``symmetric`` (S4 stores one state of each
    conjugate pair; the sum then runs over all N = 2 * lam.shape[-1] states).

    Args:
        v: numerators ``(H, N)`` or ``(N,)``, complex64 or complex128.
        omega: evaluation nodes ``(L,)``, same dtype, shared by all rows. Treated as constants:
           no gradient flows to ``omega``.
        lam: poles ``(H, N)`` or ``(N,)``, same dtype; broadcast with ``v``.
        symmetric: add the conjugate-pair terms.

    Returns:
        ``(H, L)`` complex, differentiable w.r.t. ``v`` and ``lam``. Any N and L.
    """
    return torch.ops.lrnn.cauchy(v, omega, lam, symmetric)


def fft_conv(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None = None) -> torch.Tensor:
    """Long causal convolution by FFT, ``y[b, t, o] = sum_{s<=t} k[o, (i,) t-s] * u[b, s, (i|o)] + skip``.

    Computed in float32 (float64 when an input is float64; complex64/complex128 when an input is
    complex, e.g. a state-wise convolution with complex powers) with autocast disabled, whatever
    the input dtypes: the FFT of a long kernel in half precision loses the kernel's tail.

    Args:
        u: input ``(B, L, H)``.
        k: ``(H, Lk)`` for the depthwise form (channel h convolved with its own kernel), or
           ``(H_out, H_in, Lk)`` for the full form (channels contracted: ``y[..., o] =
           sum_i k[o, i] * u[..., i]``). ``Lk`` may differ from ``L``: taps beyond ``L`` are
           unused, a shorter kernel is zero beyond ``Lk``.
        D: optional skip: ``(H,)`` adds ``D * u`` (depthwise, or full with ``H_out == H_in``);
           ``(H_out, H_in)`` adds ``u @ D.T`` (full form).

    Returns:
        ``y`` ``(B, L, H_out)`` in the computation dtype above.
    """
    depthwise = k.dim() == 2
    # Plain raises (not torch._check with closures) so that torch.compile traces this function.
    if u.dim() != 3:
        raise ValueError(f"fft_conv: argument 'u' must have shape (B, L, H), got {tuple(u.shape)}")
    if k.dim() not in (2, 3):
        raise ValueError(f"fft_conv: argument 'k' must be (H, Lk) or (H_out, H_in, Lk), got {tuple(k.shape)}")
    H_in = k.shape[0] if depthwise else k.shape[1]
    if u.shape[-1] != H_in:
        raise ValueError(f"fft_conv: 'u' has {u.shape[-1]} channels but 'k' {tuple(k.shape)} expects {H_in}")
    wide = any(t.dtype in (torch.float64, torch.complex128) for t in (u, k))
    cplx = u.is_complex() or k.is_complex()
    ctype = {(False, False): torch.float32, (True, False): torch.float64,
             (False, True): torch.complex64, (True, True): torch.complex128}[(wide, cplx)]
    L = u.shape[1]
    # linear (not circular) convolution; taps at lags >= L only reach outputs past L, so a longer
    # kernel needs no truncation (and no slice whose contiguity would specialize L under export)
    n = L + k.shape[-1]
    fft, ifft = (torch.fft.fft, torch.fft.ifft) if cplx else (torch.fft.rfft, torch.fft.irfft)
    with torch.autocast(u.device.type, enabled=False):
        uf = fft(u.to(ctype), n=n, dim=1)                            # (B, F, H_in)
        kf = fft(k.to(ctype), n=n, dim=-1)                           # (H, F) or (H_out, H_in, F)
        if depthwise:
            yf = uf * kf.transpose(0, 1)
        else:
            yf = torch.einsum("bfi,oif->bfo", uf, kf)
        y = ifft(yf, n=n, dim=1)[:, :L]
        if D is not None:
            D = D.to(ctype)
            y = y + (u.to(ctype) * D if D.dim() == 1 else u.to(ctype) @ D.transpose(0, 1))
    return y


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                   delta_bias: torch.Tensor | None = None, delta_softplus: bool = False,
                   return_last_state: bool = False, *, h0: torch.Tensor | None = None,
                   dt_A: torch.Tensor | None = None, batch_first: bool = False):
    """Selective scan of S6 / Mamba-1, a drop-in for mamba_ssm's ``selective_scan_fn``.

    Per batch b, channel d and state n::

        dt[t]  = softplus(delta[t] + delta_bias[d])      (no softplus unless delta_softplus)
        h[t,n] = exp(dtA[t] * A[d,n]) * h[t-1,n] + dt[t] * B[t,n] * u[t],   dtA = dt_A or dt
        y[t]   = (sum_n C[t,n] h[t,n] + D[d] u[t]) * silu(z[t])

    Args:
        u, delta: ``(B, D, L)`` (mamba's layout), or ``(B, L, D)`` with ``batch_first=True``
            (read in place through a transposed view, no copy). float32, bfloat16, float16, or
            float64 (then every weight below is float64 too).
        A: ``(D, N)`` float32, N <= 256.
        B, C: time-varying ``(B, N, L)`` / ``(B, G, N, L)`` in u's dtype (batch-first:
            ``(B, L, N)`` / ``(B, L, G, N)``), G groups of D / G channels; or time-invariant
            ``(D, N)`` float32.
        D, delta_bias: ``(D,)`` float32 or None. z: like u, or None (no gate).
        return_last_state: also return the final state ``(B, D, N)`` float32 (differentiable,
            unlike mamba_ssm's).
        h0: initial state ``(B, D, N)`` float32 (zeros when None), differentiable.
        dt_A: like u, or None: a separate step for A's discretization ``exp(dt_A * A)`` while
            B keeps ``dt`` (STREAM, event-driven models). It is used as given (no bias or softplus).
        batch_first: sequence tensors are ``(B, L, D)`` and so is the returned y.

    Returns:
        ``y`` (the layout of u), or ``(y, last_state)`` when ``return_last_state``.
    """
    if batch_first:
        u, delta = u.transpose(1, 2), delta.transpose(1, 2)
        z = None if z is None else z.transpose(1, 2)
        dt_A = None if dt_A is None else dt_A.transpose(1, 2)
        B = B.transpose(1, 2) if B.dim() == 3 else (B.permute(0, 2, 3, 1) if B.dim() == 4 else B)
        C = C.transpose(1, 2) if C.dim() == 3 else (C.permute(0, 2, 3, 1) if C.dim() == 4 else C)
    y, h_last, _ = torch.ops.lrnn.selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, h0, dt_A)
    if batch_first:
        y = y.transpose(1, 2)
    return (y, h_last) if return_last_state else y


def event_scan(Lambda: torch.Tensor, delta: torch.Tensor, dt: torch.Tensor, v: torch.Tensor,
               h0: torch.Tensor | None = None, discretization: str = "async",
               reverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Event-SSM / S7 scan with the discretization fused in (per channel p, event t)::

        a[t] = exp(Lambda * delta[t] * dt[t])
        h[t] = a[t] * h[t-1] + g[t] * v[t]          h[-1] = h0 (zeros when None)

    with the input scale ``g`` of the discretization: ``"zoh"`` ``(a[t] - 1) / Lambda``,
    ``"dirac"`` 1, ``"async"`` ``(exp(Lambda * delta[t]) - 1) / Lambda`` (independent of dt; the
    Event-SSM default). ``dt = 0`` is an identity transition, so padding events (zero ``v``,
    zero ``dt``) leave the state unchanged. Transitions are computed inside the kernel, never
    stored; the scales stay exact as ``Lambda -> 0`` (expm1-based evaluation).

    Args:
        Lambda: ``(P,)`` complex64 or complex128, continuous-time eigenvalues.
        delta: ``(P,)`` step sizes shared by all events, or ``(B, L, P)`` per event (S7);
            float32 or bfloat16 with complex64 ``v``, float64 with complex128.
        dt: ``(B, L)`` time gaps (>= 0), the dtype of ``delta``. Data: it gets no gradient.
        v: ``(B, L, P)`` complex inputs (``B u`` already projected), the dtype of ``Lambda``.
        h0: ``(B, P)`` initial state, the dtype of ``v``.
        discretization: ``"zoh"``, ``"dirac"`` or ``"async"``.
        reverse: run from ``t = L-1`` down to 0 (``h[t] = a[t] * h[t+1] + g[t] * v[t]``).

    Returns:
        ``h`` ``(B, L, P)`` and ``h_last`` ``(B, P)``, the state after the last step taken.
        Differentiable w.r.t. ``Lambda``, ``delta``, ``v`` and ``h0`` (also through ``h_last``).
    """
    from .ops.event_scan import DISCRETIZATIONS
    if discretization not in DISCRETIZATIONS:
        raise ValueError(f"lrnn.event_scan: discretization must be one of {sorted(DISCRETIZATIONS)}, "
                         f"got {discretization!r}")
    if dt.requires_grad:
        raise ValueError("lrnn.event_scan: dt (event time gaps) is data and gets no gradient; pass dt.detach()")
    return torch.ops.lrnn.event_scan(Lambda, delta, dt, v, h0, DISCRETIZATIONS[discretization], reverse)


def mimo_selective_scan(u: torch.Tensor, Lambda: torch.Tensor, delta: torch.Tensor, dt: torch.Tensor,
                        wb: torch.Tensor, bb: torch.Tensor | None, wc: torch.Tensor, bc: torch.Tensor | None,
                        h0: torch.Tensor | None = None, discretization: str = "async",
                        reverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """S7's MIMO selective scan (per batch b, event t, state p, inputs i, j, output o)::

        B_t[p, j] = sum_i (wb[p, j, 0, i] + 1j wb[p, j, 1, i]) u_t[i] + (bb[p, j, 0] + 1j bb[p, j, 1])
        C_t[o, p] = sum_i (wc[o, p, 0, i] + 1j wc[o, p, 1, i]) u_t[i] + (bc[o, p, 0] + 1j bc[o, p, 1])
        v_t = B_t u_t
        h_t = exp(Lambda delta_t dt_t) h_{t-1} + g_t v_t     (g_t: the discretization, as event_scan)
        y_t = Re(C_t h_t)

    wb / wc are S7's ``x_proj`` weight rows for B_k and C_k viewed as ``(P, H, 2, H)`` and
    ``(O, P, 2, H)`` (any strides: a column half of C for a bidirectional layer is a view), so
    the per-event matrices are formed inside the kernels and never stored. Materialized: v and
    h, ``(B, L, P)`` complex each (8 B L P bytes each with complex64: 16.8 MB each at
    (B, L, P) = (8, 16384, 16) or (8, 4096, 64)), kept for the backward, plus y; the backward
    adds their gradients (same sizes) and the weight gradients.

    Args:
        u: ``(B, L, H)`` float32, bfloat16 or float16 (float64 on the CPU).
        Lambda: ``(P,)`` complex64 (complex128 with float64 u).
        delta: ``(P,)`` or per event ``(B, L, P)``; float32 (float64 with float64 u).
        dt: ``(B, L)`` time gaps >= 0, the dtype of delta. Data: it gets no gradient.
        wb, bb, wc, bc: float32 (float64 with float64 u); bb, bc may be None (no bias).
        h0: ``(B, P)`` initial state, the dtype of Lambda.
        discretization: ``"zoh"``, ``"dirac"`` or ``"async"``.
        reverse: scan from ``t = L-1`` down to 0 (h_last is then the state at t = 0).

    Returns:
        ``y`` ``(B, L, O)`` in u's dtype and ``h_last`` ``(B, P)``. Differentiable w.r.t. u,
        Lambda, delta, wb, bb, wc, bc and h0. Weight gradients are reduced over tokens in a
        fixed order (reproducible).
    """
    from .ops.event_scan import DISCRETIZATIONS
    if discretization not in DISCRETIZATIONS:
        raise ValueError(f"lrnn.mimo_selective_scan: discretization must be one of {sorted(DISCRETIZATIONS)}, "
                         f"got {discretization!r}")
    if dt.requires_grad:
        raise ValueError("lrnn.mimo_selective_scan: dt (event time gaps) is data and gets no gradient; "
                         "pass dt.detach()")
    y, h_last, _, _ = torch.ops.lrnn.mimo_selective_scan(u, Lambda, delta, dt, wb, bb, wc, bc, h0,
                                                         DISCRETIZATIONS[discretization], reverse)
    return y, h_last
