"""lrnn.nn.EventSSM: the Event-SSM layer (Schöne et al. 2024) — S5 with a time gap per event.

    a_k = exp(Lambda * Delta * dt_k)            x_k = a_k * x_{k-1} + g_k * (B u_k)
    y_k = Re(C x_k) (x2 with conj_sym) + D u_k  (D a vector when H_in == H_out, else a matrix)

with the input scale g_k of the discretization ("zoh", "dirac", "async"; models.md §4.1), run by
the fused lrnn::event_scan (transitions never stored). Optional in-layer subsampling
(`stride` > 1) reads the states at one event per group of `stride` and pools the skip path with
EventPooling ("last", "avgpool", "timepool"); the pooled events' time gaps are summed.

Time-gap convention (``dt_convention``), i.e. which gap the layer pairs with event k:
  "next"      dt[k] = t[k+1] - t[k] (the Event-SSM reference collate: gaps by np.diff, last
              event dropped). Under "zoh" this is exact ("input held until the next event");
              output k depends on the next timestamp. Subsampling reads group g at its first
              event, whose summed gap reaches the first event of group g+1 (as the reference).
  "previous"  dt[k] = t[k] - t[k-1] (causal: online inference needs only past timestamps).
              Subsampling reads each group at its last event, whose summed gap reaches back to
              the last event of the previous group.
`gaps_from_timestamps` builds dt from timestamps for either convention.

Padding: a padding event has zero input (token -1 embeds to zeros, see
lrnn.models.event_classifier) and dt = 0, an identity transition; right-padding therefore leaves
every causal output before it unchanged.

The HiPPO-LegS diagonal init is S5's (`lrnn.nn.s5.hippo_legs_normal`), shared with S7.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from ..functional import event_scan
from .s5 import hippo_legs_normal

POOL_MODES = ("last", "avgpool", "timepool")
CONVENTIONS = ("next", "previous")


def block_hippo(P: int, block_size: int, conj_sym: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Block-diagonal HiPPO init of a P-state system in blocks of `block_size` (S5 §2.2): returns
    Lambda (P_local,), V (P, P_local) and V^-1 = V^H (P_local, P), P_local = P/2 with conj_sym."""
    if P % block_size:
        raise ValueError(f"d_state ({P}) must be a multiple of block_size ({block_size})")
    if conj_sym and block_size % 2:
        raise ValueError(f"conj_sym needs an even block_size, got {block_size}")
    lam, V = hippo_legs_normal(block_size)
    keep = block_size // 2 if conj_sym else block_size
    lam, V = lam[:keep], V[:, :keep]
    blocks = P // block_size
    return lam.repeat(blocks), torch.block_diag(*[V] * blocks), torch.block_diag(*[V.conj().T] * blocks)


def trunc_normal(shape, std: float, generator=None) -> torch.Tensor:
    """Normal(0, std) truncated to 2 std, rescaled to keep the variance (JAX's lecun_normal)."""
    t = torch.empty(shape, dtype=torch.float64)
    nn.init.trunc_normal_(t, 0.0, 1.0, -2.0, 2.0, generator=generator)
    return t * (std / 0.87962566103423978)


def log_uniform(n: int, lo: float, hi: float, generator=None) -> torch.Tensor:
    return torch.rand(n, dtype=torch.float64, generator=generator) * (math.log(hi) - math.log(lo)) + math.log(lo)


def gaps_from_timestamps(t: torch.Tensor, convention: str = "next", lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Time gaps (B, L) from event timestamps (B, L) for `convention` ("next": t[k+1] - t[k], the
    last valid event gets 0; "previous": t[k] - t[k-1], the first event gets 0). Events at or past
    `lengths` (padding) get 0."""
    if convention not in CONVENTIONS:
        raise ValueError(f"dt_convention must be one of {CONVENTIONS}, got {convention!r}")
    d = torch.diff(t, dim=1)
    zero = torch.zeros_like(t[:, :1])
    dt = torch.cat([d, zero], 1) if convention == "next" else torch.cat([zero, d], 1)
    if lengths is not None:
        idx = torch.arange(t.shape[1], device=t.device)
        last = lengths[:, None] - (1 if convention == "next" else 0)
        dt = torch.where(idx[None] < last, dt, torch.zeros_like(dt))
    return dt


def event_pool(x: torch.Tensor, dt: torch.Tensor, stride: int, mode: str, convention: str = "next",
               eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """EventPooling: groups of `stride` events -> one (remainder dropped). x (B, L, H), dt (B, L).
    "last" keeps the event the states are read at (first of the group under the "next"
    convention, as the reference; last under "previous"), "avgpool" the mean, "timepool" the
    dt-weighted mean. The pooled gap is the sum of the group's gaps."""
    B, L, H = x.shape
    n = L // stride
    xg = x[:, :n * stride].reshape(B, n, stride, H)
    dg = dt[:, :n * stride].reshape(B, n, stride)
    if mode == "last":
        xp = xg[:, :, 0] if convention == "next" else xg[:, :, -1]
    elif mode == "avgpool":
        xp = xg.mean(2)
    elif mode == "timepool":
        w = (dg + eps).to(x.dtype)[..., None]
        xp = (xg * w).sum(2) / w.sum(2)
    else:
        raise ValueError(f"pooling_mode must be one of {POOL_MODES}, got {mode!r}")
    return xp, dg.sum(2)


def read_index(L: int, stride: int, convention: str) -> slice:
    """The events whose states a subsampling layer outputs (one per full group)."""
    n = (L // stride) * stride
    return slice(0, n, stride) if convention == "next" else slice(stride - 1, n, stride)


class EventSSM(nn.Module):
    """Event-SSM layer: (B, L, H_in) events with gaps dt (B, L) -> (B, L // stride, H_out).

    Args:
        d_model: input features H_in.
        d_state: states P (complex; P/2 stored with conj_sym).
        d_out: output features H_out (default H_in; D becomes an (H_out, H_in) matrix if different).
        block_size: HiPPO block size (default d_state).
        discretization: "zoh", "dirac" or "async" (the reference configs use "async").
        dt_min, dt_max: range of the learned per-state step Delta = step_rescale * exp(log_step).
        conj_sym, clip_eigs, step_rescale, C_init: as S5 ("trunc_standard_normal",
            "lecun_normal", "complex_normal").
        stride, pooling_mode: in-layer subsampling (EventPooling) of the events.
        dt_convention: "next" (reference) or "previous"; see the module docstring.
    """

    def __init__(self, d_model: int, d_state: int, d_out: int | None = None, *, block_size: int | None = None,
                 discretization: str = "async", dt_min: float = 1e-3, dt_max: float = 1e-1, conj_sym: bool = True,
                 clip_eigs: bool = False, step_rescale: float = 1.0, C_init: str = "trunc_standard_normal",
                 stride: int = 1, pooling_mode: str = "last", dt_convention: str = "next", generator=None):
        super().__init__()
        if discretization not in ("zoh", "dirac", "async"):
            raise ValueError(f"discretization must be 'zoh', 'dirac' or 'async', got {discretization!r}")
        if pooling_mode not in POOL_MODES:
            raise ValueError(f"pooling_mode must be one of {POOL_MODES}, got {pooling_mode!r}")
        if dt_convention not in CONVENTIONS:
            raise ValueError(f"dt_convention must be one of {CONVENTIONS}, got {dt_convention!r}")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.d_model, self.d_state = d_model, d_state
        self.d_out = d_model if d_out is None else d_out
        self.discretization, self.conj_sym, self.clip_eigs = discretization, conj_sym, clip_eigs
        self.step_rescale, self.stride, self.pooling_mode = step_rescale, stride, pooling_mode
        self.dt_convention = dt_convention
        lam, V, Vinv = block_hippo(d_state, block_size or d_state, conj_sym)
        P = lam.shape[0]
        self.Lambda_re = nn.Parameter(lam.real.float())
        self.Lambda_im = nn.Parameter(lam.imag.float())
        B = trunc_normal((d_state, d_model), 1 / math.sqrt(d_model), generator).to(torch.complex128)
        self.B = nn.Parameter(torch.view_as_real(Vinv @ B).float())                       # (P, H_in, 2)
        if C_init == "complex_normal":
            C = torch.randn(self.d_out, P, 2, dtype=torch.float64, generator=generator) * math.sqrt(0.5)
        elif C_init in ("trunc_standard_normal", "lecun_normal"):
            std = 1 / math.sqrt(d_state) if C_init == "trunc_standard_normal" else 1 / math.sqrt(d_state * self.d_out)
            Cf = torch.view_as_complex(trunc_normal((self.d_out, d_state, 2), std, generator).contiguous())
            C = torch.view_as_real(Cf @ V)
        else:
            raise ValueError(f"C_init must be trunc_standard_normal, lecun_normal or complex_normal, got {C_init!r}")
        self.C = nn.Parameter(C.float())                                                    # (H_out, P, 2)
        if self.d_out == d_model:
            self.D = nn.Parameter(torch.randn(d_model, generator=generator))
        else:
            std = math.sqrt(2 / (d_model + self.d_out))
            self.D = nn.Parameter(trunc_normal((self.d_out, d_model), std, generator).float())
        self.log_step = nn.Parameter(log_uniform(P, dt_min, dt_max, generator).float()[:, None])
        for p in (self.Lambda_re, self.Lambda_im, self.B, self.log_step):
            p._optim = {"weight_decay": 0.0, "group": "ssm"}

    def param_groups(self, lr: float, weight_decay: float, ssm_lr: float | None = None) -> list[dict]:
        """The reference recipe: Lambda, B and log_step at ssm_lr without weight decay; the rest at lr."""
        ssm = [p for p in self.parameters() if getattr(p, "_optim", {}).get("group") == "ssm"]
        rest = [p for p in self.parameters() if getattr(p, "_optim", {}).get("group") != "ssm"]
        return [{"params": ssm, "lr": ssm_lr or lr, "weight_decay": 0.0},
                {"params": rest, "lr": lr, "weight_decay": weight_decay}]

    # ---- parameters in the form the scan takes ----
    def Lambda(self) -> torch.Tensor:
        re = self.Lambda_re.clamp(max=-1e-4) if self.clip_eigs else self.Lambda_re
        return torch.complex(re, self.Lambda_im)

    def delta(self) -> torch.Tensor:
        return self.step_rescale * torch.exp(self.log_step[:, 0])

    def project_in(self, u: torch.Tensor) -> torch.Tensor:
        """B u as complex (..., P) from real u (..., H_in), without a complex copy of u."""
        return torch.complex(u @ self.B[..., 0].T, u @ self.B[..., 1].T)

    def project_out(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        y = x.real @ self.C[..., 0].T - x.imag @ self.C[..., 1].T
        if self.conj_sym:
            y = 2 * y
        return y + (u * self.D if self.D.dim() == 1 else u @ self.D.T)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> torch.Tensor:
        return torch.zeros(batch_size, self.Lambda_re.shape[0], dtype=torch.complex64,
                           device=device if device is not None else self.Lambda_re.device)

    def _check(self, x: torch.Tensor, dt: torch.Tensor | None, rank: int) -> torch.Tensor:
        if x.dim() != rank or x.shape[-1] != self.d_model:
            raise ValueError(f"EventSSM: expected input of shape {'(B, L, H)' if rank == 3 else '(B, H)'} with "
                             f"H = {self.d_model}, got {tuple(x.shape)}")
        if dt is None:
            raise ValueError("EventSSM: the time gaps dt are required (use ones for a regularly sampled stream)")
        if dt.shape != x.shape[:-1]:
            raise ValueError(f"EventSSM: dt must have shape {tuple(x.shape[:-1])}, got {tuple(dt.shape)}")
        return dt.to(torch.float32)

    def forward(self, x: torch.Tensor, dt: torch.Tensor | None = None, state: torch.Tensor | None = None, *,
                return_state: bool = False, return_dt: bool = False):
        """x (B, L, H_in), dt (B, L) -> y (B, L // stride, H_out) [, final state (B, P) complex64]
        [, pooled dt (B, L // stride) when return_dt]. With stride > 1, chunks passed with a
        carried state must have lengths that are multiples of the stride."""
        dt = self._check(x, dt, 3)
        u = x.float()
        h, h_last = event_scan(self.Lambda(), self.delta(), dt.detach(), self.project_in(u), state,
                               self.discretization)
        dt_out = dt
        if self.stride > 1:
            h = h[:, read_index(x.shape[1], self.stride, self.dt_convention)]
            u, dt_out = event_pool(u, dt, self.stride, self.pooling_mode, self.dt_convention)
        y = self.project_out(h, u).to(x.dtype)
        out = (y,)
        if return_state:
            out += (h_last,)
        if return_dt:
            out += (dt_out,)
        return out[0] if len(out) == 1 else out

    def step(self, x_t: torch.Tensor, state: torch.Tensor, dt_t: torch.Tensor | None = None):
        """One event: x_t (B, H_in), dt_t (B,) -> (y_t (B, H_out), new state), O(1) in the stream
        length (the same fused kernel on a length-1 stream). Needs stride == 1: a subsampling
        layer emits one output per group of events, which forward() handles."""
        if self.stride != 1:
            raise ValueError("EventSSM.step: a subsampling layer (stride > 1) emits one output per "
                             f"{self.stride} events; use forward() on whole groups")
        dt_t = self._check(x_t, dt_t, 2)
        u = x_t.float()
        _, h = event_scan(self.Lambda(), self.delta(), dt_t[:, None].detach(), self.project_in(u)[:, None], state,
                          self.discretization)
        return self.project_out(h, u).to(x_t.dtype), h
