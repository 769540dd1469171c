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
