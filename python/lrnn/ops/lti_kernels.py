"""Fake kernels and autograd for the kernel-generation ops of the time-invariant models:
lrnn::ssm_kernel (Vandermonde, K[h, l] = s * Re(sum_n w exp(z l))) and lrnn::cauchy
(sum_n v / (omega - lam), with conjugate pairs).

Each backward is its own registered op, so autograd composes registered ops and works under
torch.compile, torch.export and AOTInductor. Broadcast (N,) inputs get gradients summed back.
"""
from __future__ import annotations

import torch

_REAL = {torch.complex64: torch.float32, torch.complex128: torch.float64}


def _heads_states(a: torch.Tensor, b: torch.Tensor, op: str, an: str, bn: str):
    for t, name in ((a, an), (b, bn)):
        torch._check(t.dim() in (1, 2), lambda: f"{op}: argument '{name}' must have shape (H, N) or (N,), "
                                                f"got {tuple(t.shape)}")
    ha = a.shape[0] if a.dim() == 2 else 1
    hb = b.shape[0] if b.dim() == 2 else 1
    return max(ha, hb), max(a.shape[-1], b.shape[-1])


# ---------------------------------------------------------------- ssm_kernel
@torch.library.register_fake("lrnn::ssm_kernel")
def _ssm_kernel_fake(w, z, L, basis="complex"):
    torch._check(z.dtype in _REAL, lambda: f"lrnn::ssm_kernel: argument 'z' must be complex64 or complex128, got {z.dtype}")
    H, _ = _heads_states(w, z, "lrnn::ssm_kernel", "w", "z")
    return z.new_empty((H, L), dtype=_REAL[z.dtype])


@torch.library.register_fake("lrnn::ssm_kernel_backward")
def _ssm_kernel_backward_fake(grad_k, w, z, basis):
    H, N = _heads_states(w, z, "lrnn::ssm_kernel_backward", "w", "z")
    return z.new_empty((H, N), dtype=w.dtype), z.new_empty((H, N))


def _ssm_kernel_setup(ctx, inputs, output):
    w, z, _, basis = inputs
    ctx.save_for_backward(w, z)
    ctx.basis = basis


def _ssm_kernel_backward(ctx, grad_k):
    w, z = ctx.saved_tensors
    grad_w, grad_z = torch.ops.lrnn.ssm_kernel_backward(grad_k, w, z, ctx.basis)
    grad_w = grad_w.sum_to_size(w.shape) if ctx.needs_input_grad[0] else None
    grad_z = grad_z.sum_to_size(z.shape) if ctx.needs_input_grad[1] else None
    return grad_w, grad_z, None, None


torch.library.register_autograd("lrnn::ssm_kernel", _ssm_kernel_backward, setup_context=_ssm_kernel_setup)


# ---------------------------------------------------------------- cauchy
@torch.library.register_fake("lrnn::cauchy")
def _cauchy_fake(v, omega, lam, symmetric=True):
    torch._check(v.dtype in _REAL, lambda: f"lrnn::cauchy: argument 'v' must be complex64 or complex128, got {v.dtype}")
    torch._check(omega.dim() == 1, lambda: f"lrnn::cauchy: argument 'omega' must have shape (L,), got {tuple(omega.shape)}")
    H, _ = _heads_states(v, lam, "lrnn::cauchy", "v", "lam")
    return v.new_empty((H, omega.shape[0]))


@torch.library.register_fake("lrnn::cauchy_backward")
def _cauchy_backward_fake(grad_out, v, omega, lam, symmetric):
    H, N = _heads_states(v, lam, "lrnn::cauchy_backward", "v", "lam")
    return v.new_empty((H, N)), v.new_empty((H, N))


def _cauchy_setup(ctx, inputs, output):
    v, omega, lam, symmetric = inputs
    ctx.save_for_backward(v, omega, lam)
    ctx.symmetric = symmetric


def _cauchy_backward(ctx, grad_out):
    v, omega, lam = ctx.saved_tensors
    grad_v, grad_lam = torch.ops.lrnn.cauchy_backward(grad_out, v, omega, lam, ctx.symmetric)
    grad_v = grad_v.sum_to_size(v.shape) if ctx.needs_input_grad[0] else None
    grad_lam = grad_lam.sum_to_size(lam.shape) if ctx.needs_input_grad[2] else None
    # omega (the evaluation nodes) is treated as a constant, as in S4.
    return grad_v, None, grad_lam, None


torch.library.register_autograd("lrnn::cauchy", _cauchy_backward, setup_context=_cauchy_setup)
