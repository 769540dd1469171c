"""Fake kernels and autograd for the kernel-generation ops of the time-invariant models:
lrnn::ssm_kernel (Vandermonde, K[h, l] = s * Re(sum_n w exp(z l))) and lrnn::cauchy
(sum_n v / (omega - lam), with conjugate pairs).

Each backward is its own registered op, so autograd composes registered ops and works under
torch.compile, torch.export and AOTInductor. Broadcast (N,) inputs get gradients summed back.
ssm_kernel() and cauchy() at the end are the eager entry points of lrnn.functional: the same
formulas without torch.library's per-call Python autograd wrapper.
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


# ---------------------------------------------------------------- eager calls
# The registered autograd goes through torch.library's Python wrapper on every call (its Python
# autograd kernel, argument defaults, a redispatch), which in eager mode costs more host time than
# the small kernels of a layer's forward and backward. Eager calls (lrnn.functional) therefore use
# an autograd.Function with the same setup and backward that calls the op below the autograd key;
# under torch.compile / torch.export and functorch transforms the registered op is called as is.
def _below_autograd(op, args):
    with torch._C._AutoDispatchBelowAutograd():
        return op(*args)


def _eager_function(op, setup_context, backward):
    """An autograd.Function running op below the autograd key, with the op's registered formulas."""
    return type(f"Eager_{op._opname}", (torch.autograd.Function,), {
        "forward": staticmethod(lambda *args: _below_autograd(op, args)),
        "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward),
    })


def _eager_call(op, fn, args, differentiable):
    """op(*args) with its autograd: fn when eager and a gradient is needed, else the op itself."""
    if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
        return op(*args)
    if torch.is_grad_enabled() and any(t.requires_grad for t in differentiable):
        return fn.apply(*args)
    return _below_autograd(op, args)


_SSM_KERNEL_FN = _eager_function(torch.ops.lrnn.ssm_kernel.default, _ssm_kernel_setup, _ssm_kernel_backward)


def ssm_kernel(w, z, L, basis="complex"):
    """lrnn::ssm_kernel with its autograd (lrnn.functional.ssm_kernel documents it)."""
    return _eager_call(torch.ops.lrnn.ssm_kernel.default, _SSM_KERNEL_FN, (w, z, L, basis), (w, z))


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


_CAUCHY_FN = _eager_function(torch.ops.lrnn.cauchy.default, _cauchy_setup, _cauchy_backward)


def cauchy(v, omega, lam, symmetric=True):
    """lrnn::cauchy with its autograd (lrnn.functional.cauchy documents it)."""
    return _eager_call(torch.ops.lrnn.cauchy.default, _CAUCHY_FN, (v, omega, lam, symmetric), (v, omega, lam))
