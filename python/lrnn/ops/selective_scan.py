"""Fake kernels and autograd for lrnn::selective_scan (S6 / Mamba-1 selective scan, with h0 and
STREAM's dt_A).

The forward op returns (y, h_last, chunk_states); chunk_states (B, D, (L // 64 + 1) * N), the
state before every 64-step chunk, is what autograd saves besides the inputs, and the backward op recomputes each chunk's
states from it, so no (B, D, L, N) tensor is ever stored. The backward is the registered op
lrnn::selective_scan_backward, so autograd works under torch.compile, torch.export and AOTInductor.
"""
from __future__ import annotations

import torch

_OP = "lrnn::selective_scan"
_BWD = "lrnn::selective_scan_backward"
CHUNK = 64  # LRNN_SELECTIVE_SCAN_CHUNK in csrc/include/lrnn/selective_scan.h


def _weight_dtype(u: torch.Tensor) -> torch.dtype:
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _new_sequence(like: torch.Tensor) -> torch.Tensor:
    """A (B, D, L) tensor laid out like `like` (batch-first storage for a transposed view);
    mirrors new_sequence in ops/selective_scan.cpp."""
    B, D, L = like.shape
    if like.stride(1) == 1 and like.stride(2) != 1:
        return like.new_empty((B, L, D)).transpose(1, 2)
    return like.new_empty((B, D, L))


@torch.library.register_fake(_OP)
def _selective_scan_fake(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, h0=None,
                         dt_A=None):
    torch._check(u.dim() == 3, lambda: f"{_OP}: argument 'u' must have shape (B, D, L), got {tuple(u.shape)}")
    torch._check(A.dim() == 2, lambda: f"{_OP}: argument 'A' must have shape (D, N), got {tuple(A.shape)}")
    Bn, Dd, L = u.shape
    N = A.shape[1]
    wt = _weight_dtype(u)
    return (_new_sequence(u), u.new_empty((Bn, Dd, N), dtype=wt),
            u.new_empty((Bn, Dd, (L // CHUNK + 1) * N), dtype=wt))


@torch.library.register_fake(_BWD)
def _selective_scan_backward_fake(grad_y, grad_h_last, u, delta, A, B, C, D, z, delta_bias, delta_softplus, h0,
                                  dt_A, chunk_states):
    Bn, Dd, L = u.shape
    N = A.shape[1]
    wt = _weight_dtype(u)

    def grad_bc(M):
        if M.dim() == 2:
            return u.new_empty((Dd, N), dtype=wt)
        G = M.shape[1] if M.dim() == 4 else 1
        return u.new_empty((Bn, G, N, L), dtype=wt)

    seq_or_empty = lambda t: _new_sequence(u) if t is not None else u.new_empty((0,))  # noqa: E731
    return (_new_sequence(u), _new_sequence(u), u.new_empty((Dd, N), dtype=wt), grad_bc(B), grad_bc(C),
            u.new_empty((Dd,), dtype=wt), seq_or_empty(z), u.new_empty((Dd,), dtype=wt),
            u.new_empty((Bn, Dd, N), dtype=wt), seq_or_empty(dt_A))


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, delta_softplus, h0, dt_A = inputs
    chunk_states = output[2]
    ctx.mark_non_differentiable(chunk_states)
    # unused outputs get None, not materialized zeros: no (B, D, N) fill for h_last and no
    # (B, D, chunks * N) fill for chunk_states on every backward (the op takes grad_h_last=None)
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, h0, dt_A, chunk_states)
    ctx.delta_softplus = delta_softplus


def _backward(ctx, grad_y, grad_h_last, _grad_chunk_states):
    u, delta, A, B, C, D, z, delta_bias, h0, dt_A, chunk_states = ctx.saved_tensors
    if grad_y is None:
        grad_y = torch.zeros_like(u)
    (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dh0, ddt_A) = torch.ops.lrnn.selective_scan_backward(
        grad_y, grad_h_last, u, delta, A, B, C, D, z, delta_bias, ctx.delta_softplus, h0, dt_A, chunk_states)
    need = ctx.needs_input_grad
    return (du if need[0] else None, ddelta if need[1] else None, dA if need[2] else None,
            dB.reshape(B.shape).to(B.dtype) if need[3] else None,
            dC.reshape(C.shape).to(C.dtype) if need[4] else None,
            dD if D is not None and need[5] else None,
            dz if z is not None and need[6] else None,
            ddelta_bias if delta_bias is not None and need[7] else None,
            None,
            dh0 if h0 is not None and need[9] else None,
            ddt_A if dt_A is not None and need[10] else None)


torch.library.register_autograd(_OP, _backward, setup_context=_setup_context)
