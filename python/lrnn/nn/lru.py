"""LRU, the Linear Recurrent Unit (Orvieto et al., ICML 2023), a directly discrete diagonal layer.

    x[t] = lambda * x[t-1] + gamma * (B u[t])        y[t] = Re(C x[t]) + D * u[t]
    lambda = exp(-exp(nu_log) + i exp(theta_log)),   gamma = exp(gamma_log)

|lambda| < 1 for every value of the parameters. Init (minimal-LRU, the paper's pseudo-code):
|lambda| uniform over the ring area r_min <= |lambda| <= r_max, phase uniform in [0, max_phase],
gamma = sqrt(1 - |lambda|^2), B ~ N(0, 1/(2H)) per real component, C ~ N(0, 1/N), D ~ N(0, 1).
Parameter names follow minimal-LRU (``nu_log``, ``theta_log``, ``gamma_log``, ``B_re``, ``B_im``,
``C_re``, ``C_im``, ``D``). The recipe trains nu, theta, gamma and B with half the learning rate and
no weight decay: ``param_groups`` returns those groups, and the parameters carry ``_optim`` hints.

Not here: the GELU/GLU/norm/residual around it (lrnn.models).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ._lti import diag_ssm, project_in, project_out


class LRU(nn.Module):
    """LRU layer, (B, L, H) -> (B, L, H).

    Args:
        d_model: H, input and output features.
        d_state: N, number of complex states (the reference's ``d_hidden``).
        r_min, r_max: ring radii of the eigenvalues at init (0 <= r_min < r_max <= 1).
        max_phase: largest eigenvalue phase at init.
        mode: "scan" (lrnn.linear_scan) or "conv" (FFT convolution with lambda^l); same output.
        contraction: conv mode only, "auto" (from the shapes), "kernel" or "states".
        lr_factor: learning-rate multiplier of nu, theta, gamma, B in ``param_groups`` (0.5).
    """

    SSM_PARAMS = ("nu_log", "theta_log", "gamma_log", "B_re", "B_im")

    def __init__(self, d_model: int, d_state: int = 128, *, r_min: float = 0.0, r_max: float = 1.0,
                 max_phase: float = 6.28, mode: str = "scan", contraction: str = "auto",
                 lr_factor: float = 0.5, device=None, dtype=None):
        super().__init__()
        if not 0.0 <= r_min < r_max <= 1.0:
            raise ValueError(f"LRU: need 0 <= r_min < r_max <= 1, got r_min={r_min}, r_max={r_max}")
        if mode not in ("scan", "conv"):
            raise ValueError(f"LRU: mode must be 'scan' or 'conv', got {mode!r}")
        self.d_model, self.d_state = d_model, d_state
        self.mode, self.contraction, self.lr_factor = mode, contraction, lr_factor
        H, N = d_model, d_state
        f64 = torch.float64
        u1, u2 = torch.rand(N, dtype=f64), torch.rand(N, dtype=f64)
        nu_log = torch.log(-0.5 * torch.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        theta_log = torch.log(max_phase * u2)
        modulus = torch.exp(-torch.exp(nu_log))
        gamma_log = torch.log(torch.sqrt(1 - modulus**2))
        factory = {"device": device, "dtype": dtype or torch.get_default_dtype()}

        def param(t):
            return nn.Parameter(t.to(**factory))

        self.nu_log = param(nu_log)
        self.theta_log = param(theta_log)
        self.gamma_log = param(gamma_log)
        self.B_re = param(torch.randn(N, H, dtype=f64) / math.sqrt(2 * H))
        self.B_im = param(torch.randn(N, H, dtype=f64) / math.sqrt(2 * H))
        self.C_re = param(torch.randn(H, N, dtype=f64) / math.sqrt(N))
        self.C_im = param(torch.randn(H, N, dtype=f64) / math.sqrt(N))
        self.D = param(torch.randn(H, dtype=f64))
        for name in self.SSM_PARAMS:
            getattr(self, name)._optim = {"lr_factor": lr_factor, "weight_decay": 0.0}

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """Optimizer groups of the reference recipe: nu, theta, gamma, B at ``lr_factor * lr`` and
        no weight decay; C and D at ``lr`` with ``weight_decay``."""
        ssm = [getattr(self, n) for n in self.SSM_PARAMS]
        rest = [p for n, p in self.named_parameters() if n not in self.SSM_PARAMS]
        return [{"params": ssm, "lr": self.lr_factor * lr, "weight_decay": 0.0},
                {"params": rest, "lr": lr, "weight_decay": weight_decay}]

    def discrete(self):
        """(lambda, log lambda, gamma * B, C) as complex tensors, autocast off."""
        with torch.autocast(self.D.device.type, enabled=False):
            z = torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log))
            B = torch.complex(self.B_re, self.B_im) * torch.exp(self.gamma_log).unsqueeze(-1)
            C = torch.complex(self.C_re, self.C_im)
            return torch.exp(z), z, B, C

    def _check(self, x: torch.Tensor, what: str, rank: int, state: torch.Tensor | None):
        if x.dim() != rank or x.shape[-1] != self.d_model:
            want = "(B, L, H)" if rank == 3 else "(B, H)"
            raise ValueError(f"LRU: argument '{what}' must have shape {want} with H = {self.d_model}, "
                             f"got {tuple(x.shape)}")
        if state is not None and (state.shape != (x.shape[0], self.d_state) or not state.is_complex()):
            raise ValueError(f"LRU: argument 'state' must be complex of shape ({x.shape[0]}, {self.d_state}), "
                             f"got {tuple(state.shape)} {state.dtype}")

    def initial_state(self, batch_size: int, device=None, dtype=None) -> torch.Tensor:
        """Zero state (batch_size, N), complex (complex64 for float32 parameters)."""
        cplx = torch.promote_types(dtype or self.D.dtype, torch.complex64)
        return torch.zeros(batch_size, self.d_state, device=device or self.D.device, dtype=cplx)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None, *, return_state: bool = False):
        """x (B, L, H) -> y (B, L, H) [, final state (B, N) complex]; ``state`` continues a sequence."""
        self._check(x, "x", 3, state)
        lam, z, B, C = self.discrete()
        u = x.to(self.D.dtype)
        y, h_last = diag_ssm(u, lam, z, B, C, 1.0, state, self.mode, self.contraction,
                             need_state=return_state)
        y = torch.addcmul(y, self.D, u).to(x.dtype)
        return (y, h_last) if return_state else y

    def step(self, x_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One token: x_t (B, H), state (B, N) -> (y_t (B, H), new state)."""
        self._check(x_t, "x_t", 2, state)
        lam, _, B, C = self.discrete()
        u = x_t.to(self.D.dtype).unsqueeze(1)
        state = lam * state + project_in(u, B)[:, 0]
        y = project_out(state.unsqueeze(1), C, 1.0)[:, 0] + self.D * u[:, 0]
        return y.to(x_t.dtype), state
