"""Fake kernels and autograd for lrnn::mimo_selective_scan, S7's MIMO selective scan:
v_t = B_t u_t, h_t = exp(Lambda delta_t dt_t) h_{t-1} + g_t v_t, y_t = Re(C_t h_t), with the
per-event matrices B_t, C_t formed inside the kernels from the x_proj weight rows.

The forward op returns (y, h_last, h, v); h and v (B, L, P) complex are what autograd saves
besides the inputs (the event scan's backward reads both), and are not differentiable outputs.
The backward is the registered op lrnn::mimo_selective_scan_backward, so autograd is a
composition of registered ops and works under torch.compile, torch.export and AOTInductor.
dt is data (event time gaps) and gets no gradient.
"""
from __future__ import annotations

import torch

_OP = "lrnn::mimo_selective_scan"
_BWD = "lrnn::mimo_selective_scan_backward"


def _types(u: torch.Tensor) -> tuple[torch.dtype, torch.dtype]:
    """(weight / accumulation dtype, state dtype) for an input dtype."""
    if u.dtype == torch.float64:
        return torch.float64, torch.complex128
    return torch.float32, torch.complex64


@torch.library.register_fake(_OP)
def _mimo_fake(u, Lambda, delta, dt, wb, bb, wc, bc, h0=None, discretization=2, reverse=False):
    torch._check(u.dim() == 3, lambda: f"{_OP}: argument 'u' must have shape (B, L, H), got {tuple(u.shape)}")
    torch._check(wb.dim() == 4, lambda: f"{_OP}: argument 'wb' must have shape (P, H, 2, H), got {tuple(wb.shape)}")
    torch._check(wc.dim() == 4, lambda: f"{_OP}: argument 'wc' must have shape (O, P, 2, H), got {tuple(wc.shape)}")
    B, L, _ = u.shape
    P, O = wb.shape[0], wc.shape[0]
    _, st = _types(u)
    return (u.new_empty((B, L, O)), u.new_empty((B, P), dtype=st), u.new_empty((B, L, P), dtype=st),
            u.new_empty((B, L, P), dtype=st))


@torch.library.register_fake(_BWD)
def _mimo_backward_fake(grad_y, grad_h_last, u, Lambda, delta, dt, wb, bb, wc, bc, h0, h, v, discretization,
                        reverse):
    B, L, H = u.shape
    P, O = wb.shape[0], wc.shape[0]
    acc, st = _types(u)
    return (u.new_empty((B, L, H)), u.new_empty((P,), dtype=st), u.new_empty(tuple(delta.shape), dtype=acc),
            u.new_empty((P, H, 2, H), dtype=acc), u.new_empty((P, H, 2) if bb is not None else (0,), dtype=acc),
            u.new_empty((O, P, 2, H), dtype=acc), u.new_empty((O, P, 2) if bc is not None else (0,), dtype=acc),
            u.new_empty((B, P), dtype=st))


def _setup_context(ctx, inputs, output):
    u, Lambda, delta, dt, wb, bb, wc, bc, h0, discretization, reverse = inputs
    _, _, h, v = output
    ctx.mark_non_differentiable(h, v)
    ctx.save_for_backward(u, Lambda, delta, dt, wb, bb, wc, bc, h0, h, v)
    ctx.discretization = discretization
    ctx.reverse = reverse


def _backward(ctx, grad_y, grad_h_last, _grad_h, _grad_v):
    u, Lambda, delta, dt, wb, bb, wc, bc, h0, h, v = ctx.saved_tensors
    if grad_y is None:
        grad_y = u.new_zeros((u.shape[0], u.shape[1], wc.shape[0]))
    du, dlam, ddelta, dwb, dbb, dwc, dbc, dh0 = torch.ops.lrnn.mimo_selective_scan_backward(
        grad_y, grad_h_last, u, Lambda, delta, dt, wb, bb, wc, bc, h0, h, v, ctx.discretization, ctx.reverse)
    need = ctx.needs_input_grad
    return (du if need[0] else None,
            dlam if need[1] else None,
            ddelta if need[2] else None,
            None,  # dt: event time gaps are data
            dwb if need[4] else None,
            dbb if (bb is not None and need[5]) else None,
            dwc if need[6] else None,
            dbc if (bc is not None and need[7]) else None,
            dh0 if (h0 is not None and need[8]) else None,
            None, None)


torch.library.register_autograd(_OP, _backward, setup_context=_setup_context)
