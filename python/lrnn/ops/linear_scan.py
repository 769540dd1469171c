"""Fake kernel and autograd for lrnn::linear_scan (h[t] = a[t] * h[t-1] + b[t]).

The backward is the registered op lrnn::linear_scan_backward, so autograd is a composition of
registered ops and works under torch.compile, torch.export and AOTInductor.
"""
from __future__ import annotations

import torch

_OP = "lrnn::linear_scan"
_BWD = "lrnn::linear_scan_backward"


def _new_sequence(like: torch.Tensor, B, L, D, dtype=None) -> torch.Tensor:
    """A (B, L, D) tensor laid out like `like` (channel-major storage for a transposed
    (B, D, L)-contiguous input); mirrors new_sequence in ops/linear_scan.cpp."""
    dtype = like.dtype if dtype is None else dtype
    if like.stride(1) == 1 and like.stride(2) != 1:
        return like.new_empty((B, D, L), dtype=dtype).transpose(1, 2)
    return like.new_empty((B, L, D), dtype=dtype)


def _time_invariant(a: torch.Tensor) -> bool:
    return a.dim() < 2 or a.shape[-2] == 1


@torch.library.register_fake(_OP)
def _linear_scan_fake(a, b, h0=None, reverse=False):
    torch._check(b.dim() == 3, lambda: f"{_OP}: argument 'b' must have shape (B, L, D), got {tuple(b.shape)}")
    B, L, D = b.shape
    torch._check(1 <= a.dim() <= 3 and a.shape[-1] == D,
                 lambda: f"{_OP}: argument 'a' must be (B, L, D) or broadcastable to it, got {tuple(a.shape)}")
    return _new_sequence(b, B, L, D), b.new_empty((B, D))


@torch.library.register_fake(_BWD)
def _linear_scan_backward_fake(grad_h, grad_h_last, a, h, h0, reverse):
    B, L, D = h.shape
    if _time_invariant(a):
        da_dtype = torch.float32 if a.dtype in (torch.bfloat16, torch.float16) else a.dtype
        grad_a = h.new_empty((B, D), dtype=da_dtype)
    else:
        grad_a = _new_sequence(h, B, L, D, a.dtype)
    return grad_a, _new_sequence(h, B, L, D), h.new_empty((B, D))


def _setup_context(ctx, inputs, output):
    a, b, h0, reverse = inputs
    h, _ = output
    ctx.save_for_backward(a, h, h0)
    ctx.reverse = reverse
    ctx.a_shape = a.shape


def _backward(ctx, grad_h, grad_h_last):
    a, h, h0 = ctx.saved_tensors
    if grad_h is None:
        grad_h = torch.zeros_like(h)
    grad_a, grad_b, grad_h0 = torch.ops.lrnn.linear_scan_backward(grad_h, grad_h_last, a, h, h0, ctx.reverse)
    if ctx.needs_input_grad[0]:
        if grad_a.dim() == 2:  # time-invariant a: already summed over time
            grad_a = grad_a.unsqueeze(1)
        grad_a = grad_a.sum_to_size(ctx.a_shape).to(a.dtype)
    else:
        grad_a = None
    return grad_a, grad_b, grad_h0 if h0 is not None else None, None


torch.library.register_autograd(_OP, _backward, setup_context=_setup_context)


def _no_double_backward(ctx, *grads):
    raise RuntimeError(f"{_BWD}: double backward (gradients of gradients) is not supported")


def _setup_nothing(ctx, inputs, output):
    pass


# Without this, autograd would silently treat the backward op as constant.
torch.library.register_autograd(_BWD, _no_double_backward, setup_context=_setup_nothing)
