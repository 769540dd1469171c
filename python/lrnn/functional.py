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
