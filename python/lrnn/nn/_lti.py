"""Shared computation of the time-invariant diagonal layers (S5, LRU, Centaurus).

A diagonal LTI system with per-state transition ``lam = exp(z)`` (complex, shape (P,)),
input map ``Bm`` (P, H_in) and output map ``Cm`` (H_out, P):

    x[t] = lam * x[t-1] + Bm @ u[t]          y[t] = scale * Re(Cm @ x[t])

is evaluated here either as a scan (``lrnn.functional.linear_scan`` with the broadcast,
never materialized ``lam``) or as a causal convolution, in one of two contraction orders:
``"kernel"`` materializes the (H_out, H_in, L) kernel and convolves channel-contracting, ``"states"``
projects the input onto the P states, convolves each state with lam^l and projects out.

What this is not: the kernel math, which is in the operators ``lrnn.functional.ssm_kernel``,
``fft_conv`` and ``linear_scan``; the layers reach them through this module so that one place picks
the implementation.
"""
from __future__ import annotations

import torch
from torch.fx.experimental.symbolic_shapes import statically_known_true

from ..functional import fft_conv, linear_scan, ssm_kernel  # noqa: F401  (the layers call these through here)


# ---------------------------------------------------------------------------------------------
def use_kernel_order(batch, h_in: int, h_out: int, states: int) -> bool:
    """Contraction order from the shapes alone (Centaurus' rule, models.md §8.3): materialize the
    (H_out, H_in, L) kernel iff 1/H_in + 1/H_out > 1/batch + 1/states, i.e.
    H_in H_out (states + batch) < batch states (H_in + H_out): building that kernel and contracting
    channels in frequency is cheaper than pushing the batch through the states (small channel
    counts relative to batch and state count). With a symbolic (dynamic) batch size the rule is
    evaluated only if it holds for every batch size, so no guard specializes the graph; otherwise
    the states order is taken."""
    return statically_known_true(h_in * h_out * (states + batch) < batch * states * (h_in + h_out))


def project_in(u: torch.Tensor, Bm: torch.Tensor) -> torch.Tensor:
    """``Bm @ u[t]`` for real u (B, L, H) and complex Bm (P, H) -> complex (B, L, P), as ONE real
    matmul against the interleaved (re, im) rows of Bm (autocast may run it in low precision; the
    result is brought back to the complex dtype of Bm)."""
    P, H = Bm.shape
    w = torch.view_as_real(Bm).permute(0, 2, 1).reshape(2 * P, H)
    bu = torch.matmul(u, w.t()).to(Bm.real.dtype)
    return torch.view_as_complex(bu.reshape(*bu.shape[:-1], P, 2))


def project_out(x: torch.Tensor, Cm: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * Re(Cm @ x[t])`` for complex x (B, L, P), Cm (H, P) -> real (B, L, H), as one real
    matmul: Re(c x) = c_re x_re - c_im x_im over the interleaved (re, im) view of x."""
    H, P = Cm.shape
    w = (scale * torch.stack((Cm.real, -Cm.imag), -1)).reshape(H, 2 * P)   # scale folded into the weights
    xr = torch.view_as_real(x).reshape(*x.shape[:-1], 2 * P)
    return torch.matmul(xr, w.t())


def powers(z: torch.Tensor, L: int, shift: int = 0) -> torch.Tensor:
    """``exp(z * (l + shift))`` for l = 0..L-1: (P,) complex -> (P, L)."""
    l = torch.arange(shift, L + shift, device=z.device, dtype=z.real.dtype)
    return torch.exp(z.unsqueeze(-1) * l)


def diag_ssm(u: torch.Tensor, lam: torch.Tensor, z: torch.Tensor, Bm: torch.Tensor, Cm: torch.Tensor,
             scale: float, h0: torch.Tensor | None, mode: str, contraction: str = "auto",
             reverse: bool = False, need_state: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Output ``scale * Re(Cm x)`` of the diagonal LTI system above and its final state.

    Args:
        u: (B, L, H_in) real, in the computation dtype (float32 or float64).
        lam, z: (P,) complex transitions and their logarithm (``lam = exp(z)``).
        Bm: (P, H_in) complex; Cm: (H_out, P) complex.
        h0: (B, P) complex initial state or None.
        mode: "scan" or "conv"; contraction: "auto", "kernel" or "states" (conv mode only).
        reverse: run anti-causally (``x[t] = lam x[t+1] + Bm u[t]``), for bidirectional layers.
        need_state: also return the final state (B, P) (the state after the last step taken).
    Returns:
        y (B, L, H_out) real and the final state (or None when not needed).
    """
    if mode == "scan":
        h, h_last = linear_scan(lam, project_in(u, Bm), h0, reverse)
        return project_out(h, Cm, scale), (h_last if need_state else None)
    if reverse:  # anti-causal = causal on the time-flipped sequence
        y, h_last = diag_ssm(u.flip(1), lam, z, Bm, Cm, scale, h0, mode, contraction, False, need_state)
        return y.flip(1), h_last
    B, L, H_in = u.shape
    H_out, P = Cm.shape
    order = contraction
    if order == "auto":
        order = "kernel" if use_kernel_order(B, H_in, H_out, P) else "states"
    h_last = None
    if order == "states":
        x = fft_conv(project_in(u, Bm), powers(z, L))
        y = project_out(x, Cm, scale)
        if need_state:
            h_last = x[:, -1]
    elif order == "kernel":
        w = (Cm.unsqueeze(1) * Bm.t().unsqueeze(0)).reshape(H_out * H_in, P)  # w[(o,i),p] = C[o,p] B[p,i]
        k = ssm_kernel(w, z.expand(H_out * H_in, P), L, "complex").reshape(H_out, H_in, L)
        y = fft_conv(u, k * (scale / 2.0))
        if need_state:  # x[L-1] = sum_s lam^(L-1-s) Bm u[s]
            weights = powers(z, L).flip(-1)
            h_last = torch.einsum("blh,pl,ph->bp", u.to(Bm.dtype), weights, Bm)
    else:
        raise ValueError(f"contraction must be 'auto', 'kernel' or 'states', got {contraction!r}")
    if h0 is not None:  # the free response of the carried state: scale Re(Cm lam^(t+1) h0)
        y = y + project_out(h0.unsqueeze(1) * powers(z, L, 1).t(), Cm, scale)
        if need_state:
            h_last = h_last + torch.exp(z * L) * h0
    return y, h_last
