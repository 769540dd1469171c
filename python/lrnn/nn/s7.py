"""lrnn.nn.S7: the S7 layer (Soydan et al. 2024) with the official code's semantics — an
Event-SSM whose step Delta_k, input matrix B_k and output matrix C_k depend on the event:

    [s_k, B_k, C_k] = x_proj(u_k)      B_k in C^{P x H_in}, C_k in C^{H_out x P} (2P with bidirectional)
    Delta_k = step_rescale * softplus(step_proj(s_k))               (P,), Mamba-style init
    x_k = exp(Lambda Delta_k dt_k) x_{k-1} + g_k (B_k u_k)          g_k by zoh / dirac / async
    y_k = Re(C_k x_k) (x2 with conj_sym) + D u_k

Computation: one lrnn::mimo_selective_scan call (two when bidirectional). Its kernels form
B_k and C_k on the fly from x_proj's weight rows, passed as views of x_proj.weight / .bias (no
copies): B_k u_k, the event scan with the per-event Delta (B, L, P) (transitions never stored),
and Re(C_k x_k). Materialized per layer: Delta (B, L, P) float32 and the step projection's
(B, L, dt_rank) input, B_k u_k and the states, (B, L, P) complex64 each (8 B L P bytes each,
held for backward), and y; no per-event matrix exists in memory, so the activation memory is
O(L (H + P)) without checkpointing (the old composed path held 8 B L P (H_in + H_out) bytes).
A bidirectional layer runs a second scan with reverse=True over the same inputs, using the
other column half of C_k (a strided view). D u_k, the conj_sym factor 2 and the event
pooling are applied outside the op; with stride > 1 the outputs are read at the events whose
states the layer emits.

Lambda reparameterizations (w = (Lambda_re, Lambda_im) the stored parameter, Lambda0 the HiPPO
init):
  log_a         Lambda = -exp(w)                init w = log(-Lambda0)       (Lambda = Lambda0 at init)
  stablessm_a   Lambda = -1 / (a w^2 + b)       init w = sqrt((-1/Lambda0 - b) / a)
                (the StableSSM map the paper describes; init and forward are inverses, so the
                layer starts at the HiPPO spectrum.)
  neither       Lambda = w
With ``official_reparam=True`` the official code's maps are used instead, bug for bug
(models.md §7.5): log_a inits w = log1p(Lambda0) (so Lambda starts at -1 - Lambda0) and
stablessm_a computes Lambda = -sqrt((-1 - b w) / (a w)) from the init above, which is not its
inverse (HiPPO -0.5 starts at about -1.147i, marginally stable). ``clip_eigs`` clips Re(Lambda) at
-1e-4 after the map (official: the raw Lambda_re before it).

Bidirectional: a second scan runs backward in time over the same transitions and inputs;
C_k has 2P columns. step() is then unavailable (the output needs the future).
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from ..functional import mimo_selective_scan
from .event_ssm import CONVENTIONS, POOL_MODES, block_hippo, event_pool, log_uniform, read_index, trunc_normal


class S7(nn.Module):
    """S7 layer: (B, L, H_in) events with gaps dt (B, L) -> (B, L // stride, H_out).

    Args:
        d_model, d_state, d_out, block_size, discretization, dt_min, dt_max, conj_sym, clip_eigs,
        step_rescale, stride, pooling_mode, dt_convention: as :class:`lrnn.nn.EventSSM`.
        log_a, stablessm_a, a, b, official_reparam: the Lambda map (module docstring).
        bidirectional: add a reverse-time scan (C_k gets 2P columns).
    """

    def __init__(self, d_model: int, d_state: int, d_out: int | None = None, *, block_size: int | None = None,
                 discretization: str = "async", dt_min: float = 1e-3, dt_max: float = 1e-1, conj_sym: bool = True,
                 clip_eigs: bool = False, step_rescale: float = 1.0, stride: int = 1, pooling_mode: str = "last",
                 dt_convention: str = "next", log_a: bool = False, stablessm_a: bool = False, a: float = 1.0,
                 b: float = 0.5, official_reparam: bool = False, bidirectional: bool = False, generator=None):
        super().__init__()
        if discretization not in ("zoh", "dirac", "async"):
            raise ValueError(f"discretization must be 'zoh', 'dirac' or 'async', got {discretization!r}")
        if pooling_mode not in POOL_MODES:
            raise ValueError(f"pooling_mode must be one of {POOL_MODES}, got {pooling_mode!r}")
        if dt_convention not in CONVENTIONS:
            raise ValueError(f"dt_convention must be one of {CONVENTIONS}, got {dt_convention!r}")
        if log_a and stablessm_a:
            raise ValueError("S7: log_a and stablessm_a are exclusive")
        self.d_model, self.d_state = d_model, d_state
        self.d_out = d_model if d_out is None else d_out
        self.discretization, self.conj_sym, self.clip_eigs = discretization, conj_sym, clip_eigs
        self.step_rescale, self.stride, self.pooling_mode = step_rescale, stride, pooling_mode
        self.dt_convention, self.bidirectional = dt_convention, bidirectional
        self.log_a, self.stablessm_a, self.a, self.b = log_a, stablessm_a, a, b
        self.official_reparam = official_reparam
        lam, _, _ = block_hippo(d_state, block_size or d_state, conj_sym)
        P = self.P = lam.shape[0]
        if log_a:
            w = torch.log1p(lam) if official_reparam else torch.log(-lam)
        elif stablessm_a:
            w = torch.sqrt((-1 / lam - b) / a)
        else:
            w = lam
        self.Lambda_re = nn.Parameter(w.real.float())
        self.Lambda_im = nn.Parameter(w.imag.float())
        self.dt_rank = math.ceil(d_model / 16)
        n_c = (2 if bidirectional else 1) * P * self.d_out * 2
        self.x_proj = nn.Linear(d_model, self.dt_rank + P * d_model * 2 + n_c)
        with torch.no_grad():   # flax Dense default: lecun_normal kernel, zero bias
            self.x_proj.weight.copy_(trunc_normal(self.x_proj.weight.shape, 1 / math.sqrt(d_model), generator))
            self.x_proj.bias.zero_()
        std = self.dt_rank ** -0.5 * step_rescale
        self.step_proj_kernel = nn.Parameter((torch.rand(self.dt_rank, P, generator=generator) * 2 - 1) * std)
        dt0 = torch.exp(log_uniform(P, dt_min, dt_max, generator)).clamp(min=1e-4)
        self.step_proj_bias = nn.Parameter((dt0 + torch.log(-torch.expm1(-dt0))).float())   # softplus^-1
        self.step_proj_bias._no_weight_decay = True
        if self.d_out == d_model:
            self.D = nn.Parameter(torch.randn(d_model, generator=generator))
        else:
            self.D = nn.Parameter(trunc_normal((self.d_out, d_model), math.sqrt(2 / (d_model + self.d_out)),
                                               generator).float())
        for p in (self.Lambda_re, self.Lambda_im):
            p._optim = {"weight_decay": 0.0, "group": "ssm"}

    def Lambda(self) -> torch.Tensor:
        w = torch.complex(self.Lambda_re, self.Lambda_im)
        if self.official_reparam and self.clip_eigs:
            w = torch.complex(self.Lambda_re.clamp(max=-1e-4), self.Lambda_im)
        if self.log_a:
            lam = -torch.exp(w)
        elif self.stablessm_a:
            lam = (-torch.sqrt((-1 - self.b * w) / (self.a * w)) if self.official_reparam
                   else -1 / (self.a * w * w + self.b))
        else:
            lam = w
        if self.clip_eigs and not self.official_reparam:
            lam = torch.complex(lam.real.clamp(max=-1e-4), lam.imag)
        return lam

    def _operands(self, x: torch.Tensor):
        """(u, acc dtype, Lambda, x_proj views (wb, bb, wc, bc) of the forward and (wc, bc) of the
        reverse direction) for the op. The weights are views of x_proj's rows (no copies when
        they already have the op's weight dtype: float32, or float64 for float64 inputs)."""
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        u = x if x.dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64) else x.to(acc)
        r, P, Hi, O = self.dt_rank, self.P, self.d_model, self.d_out
        W, bias = self.x_proj.weight.to(acc), self.x_proj.bias.to(acc)
        n_b = 2 * P * Hi
        wb, bb = W[r:r + n_b].view(P, Hi, 2, Hi), bias[r:r + n_b].view(P, Hi, 2)
        Pc = 2 * P if self.bidirectional else P
        wc, bc = W[r + n_b:].view(O, Pc, 2, Hi), bias[r + n_b:].view(O, Pc, 2)
        lam = self.Lambda().to(torch.complex128 if acc == torch.float64 else torch.complex64)
        return u, acc, lam, (wb, bb, wc[:, :P], bc[:, :P]), (wc[:, P:], bc[:, P:])

    def _delta(self, u: torch.Tensor) -> torch.Tensor:
        """Delta_k (..., P) from u (..., H_in) in the weight dtype: the step rows of x_proj."""
        r = self.dt_rank
        W, bias = self.x_proj.weight[:r].to(u.dtype), self.x_proj.bias[:r].to(u.dtype)
        s = F.linear(u, W, bias)
        return self.step_rescale * F.softplus(s @ self.step_proj_kernel.to(u.dtype) + self.step_proj_bias.to(u.dtype))

    def _skip(self, u_skip: torch.Tensor) -> torch.Tensor:
        D = self.D.to(u_skip.dtype)
        return u_skip * D if D.dim() == 1 else u_skip @ D.T

    def initial_state(self, batch_size: int, device=None, dtype=None) -> torch.Tensor:
        return torch.zeros(batch_size, self.P, dtype=torch.complex64,
                           device=device if device is not None else self.Lambda_re.device)

    def _check(self, x, dt, rank):
        if x.dim() != rank or x.shape[-1] != self.d_model:
            raise ValueError(f"S7: expected input of shape {'(B, L, H)' if rank == 3 else '(B, H)'} with "
                             f"H = {self.d_model}, got {tuple(x.shape)}")
        if dt is None:
            raise ValueError("S7: the time gaps dt are required (use ones for a regularly sampled stream)")
        if dt.shape != x.shape[:-1]:
            raise ValueError(f"S7: dt must have shape {tuple(x.shape[:-1])}, got {tuple(dt.shape)}")
        return dt.to(torch.float64 if x.dtype == torch.float64 else torch.float32).detach()

    def forward(self, x: torch.Tensor, dt: torch.Tensor | None = None, state: torch.Tensor | None = None, *,
                return_state: bool = False, return_dt: bool = False):
        """x (B, L, H_in), dt (B, L) -> y (B, L // stride, H_out) [, final forward state (B, P)]
        [, pooled dt]. A carried `state` continues the forward-time scan (unidirectional only)."""
        dt = self._check(x, dt, 3)
        if self.bidirectional and (state is not None or return_state):
            raise ValueError("S7: a bidirectional layer has no carried state (its output needs the future)")
        u, acc, lam, fwd_w, rev_w = self._operands(x)
        u_acc = x.to(acc)
        delta = self._delta(u_acc)
        y, h_last = mimo_selective_scan(u, lam, delta, dt, *fwd_w, state, self.discretization)
        y = y.to(acc)
        if self.bidirectional:
            wc, bc = rev_w
            y = y + mimo_selective_scan(u, lam, delta, dt, fwd_w[0], fwd_w[1], wc, bc, None, self.discretization,
                                        reverse=True)[0].to(acc)
        dt_out, u_skip = dt, u_acc
        if self.stride > 1:
            y = y[:, read_index(x.shape[1], self.stride, self.dt_convention)]
            u_skip, dt_out = event_pool(u_acc, dt, self.stride, self.pooling_mode, self.dt_convention)
        if self.conj_sym:
            y = 2 * y
        y = (y + self._skip(u_skip)).to(x.dtype)
        out = (y,)
        if return_state:
            out += (h_last,)
        if return_dt:
            out += (dt_out,)
        return out[0] if len(out) == 1 else out

    def step(self, x_t: torch.Tensor, state: torch.Tensor, dt_t: torch.Tensor | None = None):
        """One event: x_t (B, H_in), dt_t (B,) -> (y_t (B, H_out), new state (B, P)); O(1) in the
        stream length (the op with L = 1). Unidirectional layers with stride 1 only."""
        if self.bidirectional or self.stride != 1:
            raise ValueError("S7.step: needs a unidirectional layer with stride 1 (a bidirectional output "
                             "needs the future; a subsampling layer emits one output per group)")
        dt_t = self._check(x_t, dt_t, 2)
        u, acc, lam, fwd_w, _ = self._operands(x_t[:, None])
        u_acc = x_t.to(acc)
        delta = self._delta(u_acc)[:, None]
        y, h = mimo_selective_scan(u, lam, delta, dt_t[:, None], *fwd_w, state, self.discretization)
        y = y[:, 0].to(acc)
        if self.conj_sym:
            y = 2 * y
        return (y + self._skip(u_acc)).to(x_t.dtype), h
