"""S6 / Mamba-1 block (`Mamba`) and its geometric / event variant (`STREAM`) on lrnn.selective_scan.

`Mamba` has the parameters, shapes and initialization of state-spaces/mamba's `Mamba`
(mamba_ssm/modules/mamba_simple.py): in_proj, conv1d (depthwise, causal), x_proj, dt_proj,
A_log, D, out_proj, so its checkpoints load with `load_state_dict`. The sequence runs batch-first
(B, L, H) end to end: the scan reads the projections' (B, L, D) outputs in place.

State (both layers): `(conv_state, ssm_state)` as in mamba's inference cache: conv_state
(B, d_inner, d_conv) holds the last d_conv inputs of the convolution (oldest first), ssm_state
(B, d_inner, d_state) float32. forward(x, state) continues from it, and step() advances it by
one token, so prefill in chunks, token-by-token decoding and truncated BPTT share one format.

`STREAM` (Schöne et al., arXiv 2411.12603, as implemented publicly in lrnnx) adds per-token
integration timesteps: A is discretized with dt_A[t, d] = dt[t] * softplus(dtA_bias[d]) while B
keeps Mamba's selective step. Convention: dt[:, t] is the time (or coordinate) gap *before*
token t, i.e. from token t-1 to token t, so the state decays over that gap and then takes token
t's input; dt[:, 0] is the gap from the end of the previous chunk (or from the sequence start).
dtA_bias is input-independent (one rate per channel).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..functional import selective_scan


def _state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The SSM state and the scan's weights are float32, or float64 for a float64 model."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _no_weight_decay(p: nn.Parameter) -> nn.Parameter:
    p._no_weight_decay = True  # the flag mamba's training recipes read
    p._optim = {"weight_decay": 0.0}
    return p


class Mamba(nn.Module):
    """Mamba-1 (S6) block: (B, L, d_model) -> (B, L, d_model).

    Arguments and defaults as mamba_ssm's `Mamba` (d_state=16, d_conv=4, expand=2,
    dt_rank="auto" = ceil(d_model / 16), dt_min=1e-3, dt_max=0.1, dt_init="random",
    dt_scale=1.0, dt_init_floor=1e-4, conv_bias=True, bias=False).
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: float = 2,
                 dt_rank: int | str = "auto", dt_min: float = 0.001, dt_max: float = 0.1, dt_init: str = "random",
                 dt_scale: float = 1.0, dt_init_floor: float = 1e-4, conv_bias: bool = True, bias: bool = False,
                 layer_idx: int | None = None, device=None, dtype=None):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.layer_idx = layer_idx
        self.in_proj = nn.Linear(d_model, self.d_inner * 2, bias=bias, **fk)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
                                padding=d_conv - 1, bias=conv_bias, **fk)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **fk)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **fk)
        # dt_proj: weight ~ U(+-dt_rank^-1/2 * dt_scale) (or constant), bias = softplus^-1(dt) with dt
        # log-uniform in [dt_min, dt_max], floored; the bias must survive model-level re-inits.
        std = self.dt_rank ** -0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        else:
            raise ValueError(f"Mamba: dt_init must be 'random' or 'constant', got {dt_init!r}")
        self.dt_proj.bias._no_reinit = True
        with torch.no_grad():
            self.dt_proj.bias.copy_(self._inverse_softplus_dt(dt_min, dt_max, dt_init_floor, device))
        # S4D-real A = -(1..N) per channel, stored as log in float32; D = 1; neither decays.
        A = torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = _no_weight_decay(nn.Parameter(torch.log(A)))
        self.D = _no_weight_decay(nn.Parameter(torch.ones(self.d_inner, device=device)))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **fk)

    def _inverse_softplus_dt(self, dt_min, dt_max, floor, device):
        dt = torch.exp(torch.rand(self.d_inner, device=device) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=floor)
        return dt + torch.log(-torch.expm1(-dt))

    def param_groups(self, lr: float, weight_decay: float):
        """Optimizer groups: A_log and D without weight decay (mamba's recipe), the rest with it."""
        no_wd = [p for p in self.parameters() if getattr(p, "_no_weight_decay", False)]
        rest = [p for p in self.parameters() if not getattr(p, "_no_weight_decay", False)]
        return [{"params": rest, "lr": lr, "weight_decay": weight_decay},
                {"params": no_wd, "lr": lr, "weight_decay": 0.0}]

    def initial_state(self, batch_size: int, device=None, dtype=None):
        device = self.conv1d.weight.device if device is None else device
        dtype = self.conv1d.weight.dtype if dtype is None else dtype
        return (torch.zeros(batch_size, self.d_inner, self.d_conv, device=device, dtype=dtype),
                torch.zeros(batch_size, self.d_inner, self.d_state, device=device, dtype=_state_dtype(dtype)))

    # -- the parts shared by forward and step --
    def _conv(self, x, conv_state):
        """Causal depthwise conv over (B, L, D) x continuing conv_state; returns (B, L, D), state."""
        xt = x.transpose(1, 2)  # (B, D, L) view
        if conv_state is None:  # zeros: the causal padding of a fresh sequence
            conv_state = xt.new_zeros(xt.shape[0], self.d_inner, self.d_conv)
        # one path for both cases, so no branch on the (possibly symbolic) length
        full = torch.cat([conv_state[..., 1:].to(xt.dtype), xt], -1)
        out = F.conv1d(full, self.conv1d.weight, self.conv1d.bias, groups=self.d_inner)
        new_state = full[..., -self.d_conv:]  # the last d_conv inputs (L >= 1)
        return F.silu(out).transpose(1, 2), new_state

    def _dt_A(self, delta, dt):
        return None

    def _mix(self, x, z, ssm_state, dt=None):
        """x, z (B, L, D) -> gated scan output (B, L, D) and the final SSM state."""
        x_dbl = self.x_proj(x)
        dlt, Bm, Cm = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dlt, self.dt_proj.weight)  # the bias goes into the scan (delta_bias)
        t, w = x.dtype, _state_dtype(x.dtype)
        A = -torch.exp(self.A_log.to(w))
        dt_A = self._dt_A(delta, dt)
        y, h = selective_scan(x, delta.to(t), A, Bm.to(t), Cm.to(t), self.D.to(w), z.to(t),
                              self.dt_proj.bias.to(w), True, True, h0=None if ssm_state is None else ssm_state.to(w),
                              dt_A=None if dt_A is None else dt_A.to(t), batch_first=True)
        return y, h

    def _forward(self, x, state, dt):
        B, L, _ = x.shape
        xz = self.in_proj(x)
        xi, z = xz.chunk(2, dim=-1)
        conv_state, ssm_state = (None, None) if state is None else state
        xc, new_conv = self._conv(xi, conv_state)
        y, h = self._mix(xc, z, ssm_state, dt)
        return self.out_proj(y.to(xz.dtype)), (new_conv, h)

    def forward(self, x: torch.Tensor, state=None, *, return_state: bool = False):
        """x (B, L, d_model), L >= 1 -> y (B, L, d_model), or (y, state) with return_state."""
        y, new_state = self._forward(x, state, None)
        return (y, new_state) if return_state else y

    def _step_dt_A(self, delta, dt_t):
        return delta

    def step(self, x_t: torch.Tensor, state):
        """One token: x_t (B, d_model) -> (y_t (B, d_model), new state); O(1) in the sequence length."""
        return self._step(x_t, state, None)

    def _step(self, x_t, state, dt_t):
        conv_state, h = state
        xz = self.in_proj(x_t)
        x, z = xz.chunk(2, dim=-1)
        conv_state = torch.cat([conv_state[..., 1:], x.unsqueeze(-1).to(conv_state.dtype)], -1)
        x = (conv_state * self.conv1d.weight[:, 0, :]).sum(-1)
        if self.conv1d.bias is not None:
            x = x + self.conv1d.bias
        x = F.silu(x)
        dlt, Bm, Cm = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        w = _state_dtype(x.dtype)
        delta = F.softplus(F.linear(dlt, self.dt_proj.weight).to(w) + self.dt_proj.bias.to(w))
        dA_step = self._step_dt_A(delta, dt_t)
        A = -torch.exp(self.A_log.to(w))
        xf = x.to(w)
        h = torch.exp(dA_step[..., None] * A) * h.to(w) + (delta * xf)[..., None] * Bm.to(w)[:, None, :]
        y = (h * Cm.to(w)[:, None, :]).sum(-1) + self.D.to(w) * xf
        y = y * F.silu(z.to(w))
        return self.out_proj(y.to(xz.dtype)), (conv_state, h)


class STREAM(Mamba):
    """Mamba block whose A is discretized with per-token integration timesteps (STREAM):
    exp(dt[t] * softplus(dtA_bias) * A), while B keeps Mamba's selective step.

    forward(x, dt=None, state=None, *, return_state=False) with dt (B, L): the gap before each
    token (see the module docstring); dt=None means unit gaps. Initialization of dtA_bias:
    dtA_init="uniform" (default) draws U(+-dt_rank^-1/2), what lrnnx's implementation gets from the
    default init of its dtA_proj (whose weight it never uses); dtA_init="dt" uses Mamba's
    inverse-softplus dt init (log-uniform in [dt_min, dt_max]) instead.
    """

    def __init__(self, d_model: int, *args, dtA_init: str = "uniform", **kwargs):
        super().__init__(d_model, *args, **kwargs)
        w = self.dt_proj.weight
        if dtA_init == "uniform":
            bound = self.dt_rank ** -0.5
            init = torch.empty(self.d_inner, device=w.device).uniform_(-bound, bound)
        elif dtA_init == "dt":
            init = self._inverse_softplus_dt(kwargs.get("dt_min", 0.001), kwargs.get("dt_max", 0.1),
                                             kwargs.get("dt_init_floor", 1e-4), w.device)
        else:
            raise ValueError(f"STREAM: dtA_init must be 'uniform' or 'dt', got {dtA_init!r}")
        self.dtA_bias = nn.Parameter(init.to(w.dtype))
        self.dtA_bias._no_reinit = True

    def _dt_A(self, delta, dt):
        rate = F.softplus(self.dtA_bias.to(_state_dtype(delta.dtype)))
        if dt is None:
            return rate.expand_as(delta)
        return dt.to(rate.dtype)[..., None] * rate

    def _step_dt_A(self, delta, dt_t):
        rate = F.softplus(self.dtA_bias.to(delta.dtype))
        return rate.expand_as(delta) if dt_t is None else dt_t.to(delta.dtype)[:, None] * rate

    def forward(self, x: torch.Tensor, dt: torch.Tensor | None = None, state=None, *, return_state: bool = False):
        y, new_state = self._forward(x, state, dt)
        return (y, new_state) if return_state else y

    def step(self, x_t: torch.Tensor, state, dt_t: torch.Tensor | None = None):
        return self._step(x_t, state, dt_t)
