"""Fake kernel and autograd for lrnn::event_scan, the Event-SSM/S7 scan with the
discretization fused in: h[t] = exp(Lambda*delta*dt[t]) * h[t-1] + g[t] * v[t].

The backward is the registered op lrnn::event_scan_backward, so autograd is a composition of
registered ops and works under torch.compile, torch.export and AOTInductor. dt is data (event
time gaps) and gets no gradient.
"""
from __future__ import annotations

import torch

_OP = "lrnn::event_scan"
_BWD = "lrnn::event_scan_backward"

DISCRETIZATIONS = {"zoh": 0, "dirac": 1, "async": 2}


@torch.library.register_fake(_OP)
def _event_scan_fake(Lambda, delta, dt, v, h0=None, discretization=2, reverse=False):
    torch._check(v.dim() == 3, lambda: f"{_OP}: argument 'v' must have shape (B, L, P), got {tuple(v.shape)}")
    B, L, P = v.shape
    torch._check(Lambda.dim() == 1 and Lambda.shape[0] == P,
                 lambda: f"{_OP}: argument 'Lambda' must have shape (P,) = ({P},), got {tuple(Lambda.shape)}")
    torch._check(dt.dim() == 2, lambda: f"{_OP}: argument 'dt' must have shape (B, L), got {tuple(dt.shape)}")
    return v.new_empty((B, L, P)), v.new_empty((B, P))


@torch.library.register_fake(_BWD)
def _event_scan_backward_fake(grad_h, grad_h_last, Lambda, delta, dt, v, h, h0, discretization, reverse):
    B, L, P = v.shape
    acc = torch.float32 if v.dtype == torch.complex64 else torch.float64
    grad_delta = v.new_empty(tuple(delta.shape), dtype=acc)
    return v.new_empty((P,)), grad_delta, v.new_empty((B, L, P)), v.new_empty((B, P))


def _setup_context(ctx, inputs, output):
    Lambda, delta, dt, v, h0, discretization, reverse = inputs
    h, _ = output
    ctx.save_for_backward(Lambda, delta, dt, v, h, h0)
    ctx.discretization = discretization
    ctx.reverse = reverse


def _backward(ctx, grad_h, grad_h_last):
    Lambda, delta, dt, v, h, h0 = ctx.saved_tensors
    if grad_h is None:
        grad_h = torch.zeros_like(h)
    g_lam, g_delta, g_v, g_h0 = torch.ops.lrnn.event_scan_backward(
        grad_h, grad_h_last, Lambda, delta, dt, v, h, h0, ctx.discretization, ctx.reverse)
    need = ctx.needs_input_grad
    return (g_lam if need[0] else None,
            g_delta.to(delta.dtype) if need[1] else None,
            None,  # dt: event time gaps are data
            g_v if need[3] else None,
            g_h0 if (h0 is not None and need[4]) else None,
            None, None)


torch.library.register_autograd(_OP, _backward, setup_context=_setup_context)
