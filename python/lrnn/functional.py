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
