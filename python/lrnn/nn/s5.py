"""S5 (Smith, Warrington, Linderman, ICLR 2023): one MIMO complex-diagonal state-space layer.

    x[t] = Lambda_bar * x[t-1] + B_bar u[t]        y[t] = s * Re(C_tilde x[t]) + D * u[t]

with s = 2 under conjugate symmetry (only one of each conjugate pair of states is stored), one
time step per state (``log_step``), zoh or bilinear discretization, block-diagonal HiPPO-N
initialization (``B_tilde = V^-1 B``, ``C_tilde = C V`` at init) and an optional anti-causal second
pass (bidirectional). Parameter names and shapes follow the reference (lindermanlab/S5):
``Lambda_re``, ``Lambda_im`` (P,), ``B`` (P, H, 2), ``C`` or ``C1``/``C2`` (H, P, 2), ``D`` (H,),
``log_step`` (P, 1), where P is the number of STORED states (d_state / 2 under conj_sym).
As in the reference recipe, Lambda, B and log_step train at the SSM learning rate without weight
decay (``param_groups``; the parameters carry ``_optim`` hints).

Not here: the norm/activation/residual around the layer (lrnn.models), kernels (lrnn.functional).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ._lti import diag_ssm, project_in, project_out


def hippo_legs_normal(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of the normal part of HiPPO-LegS, in float64.

    ``S = A_LegS + p p^T`` with ``p_k = sqrt(k + 1/2)`` is -1/2 I plus a skew-symmetric matrix, so its
    eigenvalues are ``-1/2 + i w`` with ``w, V = eigh(-i S_skew)`` (Hermitian).
    Returns Lambda (n,) complex128 (imaginary parts ascending) and V (n, n) complex128 unitary.
    """
    k = torch.arange(n, dtype=torch.float64)
    q = torch.sqrt(2 * k + 1)
    A = -(torch.tril(q[:, None] * q[None, :]) - torch.diag(k))
    p = torch.sqrt(k + 0.5)
    S = A + p[:, None] * p[None, :]
    diag = torch.diagonal(S)
    w, V = torch.linalg.eigh(-1j * (S - torch.diag(diag)))
    return torch.complex(diag.mean().expand(n), w), V


def _trunc_lecun(shape, fan_in: int, generator=None) -> torch.Tensor:
    """JAX's lecun_normal: a normal truncated at +-2 std whose std after truncation is 1/sqrt(fan_in)."""
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
    t = torch.empty(shape, dtype=torch.float64)
    return nn.init.trunc_normal_(t, 0.0, std, -2 * std, 2 * std, generator=generator)


class S5(nn.Module):
    """S5 layer, (B, L, H) -> (B, L, H).

    Args:
        d_model: H, input and output features.
        d_state: P, the full state size (the reference's ``ssm_size``); P/2 states are stored when
            ``conj_sym``.
        blocks: J, number of HiPPO-N blocks on the diagonal of the init (P divisible by J, and
            P/J even under ``conj_sym``).
        conj_sym: store one state of each conjugate pair and output 2 Re(.).
        clip_eigs: clamp Re(Lambda) <= -1e-4 (recommended for unbounded lengths).
        bidirectional: add an anti-causal pass with its own output matrix (C1 forward, C2 backward).
        discretization: "zoh" or "bilinear".
        dt_min, dt_max: log-uniform range of the per-state time step at init.
        step_rescale: multiplies every time step (change of sampling rate after training).
        C_init: "trunc_standard_normal" (default), "lecun_normal" or "complex_normal".
        mode: "scan" (lrnn.linear_scan) or "conv" (FFT convolution); both compute the same output.
        contraction: conv mode only, "auto" (from the shapes), "kernel" or "states".
    """

    def __init__(self, d_model: int, d_state: int = 256, blocks: int = 8, *, conj_sym: bool = True,
                 clip_eigs: bool = False, bidirectional: bool = False, discretization: str = "zoh",
                 dt_min: float = 1e-3, dt_max: float = 1e-1, step_rescale: float = 1.0,
                 C_init: str = "trunc_standard_normal", mode: str = "scan", contraction: str = "auto",
                 device=None, dtype=None):
        super().__init__()
        if d_state % blocks:
            raise ValueError(f"S5: d_state ({d_state}) must be divisible by blocks ({blocks})")
        block = d_state // blocks
        if conj_sym and block % 2:
            raise ValueError(f"S5: with conj_sym the block size d_state/blocks ({block}) must be even")
        if discretization not in ("zoh", "bilinear"):
            raise ValueError(f"S5: discretization must be 'zoh' or 'bilinear', got {discretization!r}")
        if mode not in ("scan", "conv"):
            raise ValueError(f"S5: mode must be 'scan' or 'conv', got {mode!r}")
        if C_init not in ("trunc_standard_normal", "lecun_normal", "complex_normal"):
            raise ValueError(f"S5: unknown C_init {C_init!r}")
        self.d_model, self.d_state, self.blocks = d_model, d_state, blocks
        self.conj_sym, self.clip_eigs, self.bidirectional = conj_sym, clip_eigs, bidirectional
        self.discretization, self.step_rescale = discretization, step_rescale
        self.mode, self.contraction = mode, contraction
        H = d_model
        half = block // 2 if conj_sym else block
        P = half * blocks
        self.P = P

        # Block-diagonal HiPPO-N init, computed in float64.
        lam, V = hippo_legs_normal(block)
        lam, V = lam[:half], V[:, :half]
        Vb = torch.block_diag(*([V] * blocks))                  # (d_state, P)
        Vinv = torch.block_diag(*([V.conj().t()] * blocks))    # (P, d_state)
        lam = lam.repeat(blocks)
        B = Vinv @ _trunc_lecun((d_state, H), d_state).to(torch.complex128)

        def sample_C():
            if C_init == "complex_normal":
                return torch.randn(H, P, dtype=torch.complex128)  # N(0, 1/2) per real component
            fan_in = d_state if C_init == "trunc_standard_normal" else d_state * H
            c = _trunc_lecun((H, d_state, 2), fan_in)
            return torch.view_as_complex(c) @ Vb

        factory = {"device": device, "dtype": dtype or torch.get_default_dtype()}

        def param(t):
            return nn.Parameter(t.to(**factory))

        self.Lambda_re = param(lam.real)
        self.Lambda_im = param(lam.imag)
        self.B = param(torch.view_as_real(B))
        if bidirectional:
            self.C1 = param(torch.view_as_real(sample_C()))
            self.C2 = param(torch.view_as_real(sample_C()))
        else:
            self.C = param(torch.view_as_real(sample_C()))
        self.D = param(torch.randn(H, dtype=torch.float64))
        log_lo, log_hi = math.log(dt_min), math.log(dt_max)
        self.log_step = param(torch.rand(P, 1, dtype=torch.float64) * (log_hi - log_lo) + log_lo)
        for name in self.SSM_PARAMS:
            getattr(self, name)._optim = {"group": "ssm", "weight_decay": 0.0}

    SSM_PARAMS = ("Lambda_re", "Lambda_im", "B", "log_step")

    def param_groups(self, lr: float, weight_decay: float, ssm_lr: float | None = None) -> list[dict]:
        """Optimizer groups of the reference recipe: Lambda, B and log_step at ``ssm_lr`` (default
        ``lr``) without weight decay; C and D at ``lr`` with ``weight_decay``."""
        ssm = [getattr(self, n) for n in self.SSM_PARAMS]
        rest = [p for n, p in self.named_parameters() if n not in self.SSM_PARAMS]
        return [{"params": ssm, "lr": lr if ssm_lr is None else ssm_lr, "weight_decay": 0.0},
                {"params": rest, "lr": lr, "weight_decay": weight_decay}]

    # -- discretization ---------------------------------------------------------------------
    def discrete(self):
        """(Lambda_bar, log Lambda_bar, B_bar, C_tilde list): the discrete system, in the
        parameters' precision (autocast off)."""
        with torch.autocast(self.D.device.type, enabled=False):
            re = self.Lambda_re.clamp(max=-1e-4) if self.clip_eigs else self.Lambda_re
            Lam = torch.complex(re, self.Lambda_im)
            step = self.step_rescale * torch.exp(self.log_step[:, 0])
            B_tilde = torch.view_as_complex(self.B)
            if self.discretization == "zoh":
                z = Lam * step
                lam = torch.exp(z)
                B_bar = ((lam - 1) / Lam).unsqueeze(-1) * B_tilde
            else:
                inv = 1 / (1 - (step / 2) * Lam)
                lam = inv * (1 + (step / 2) * Lam)
                z = torch.log(lam)
                B_bar = (inv * step).unsqueeze(-1) * B_tilde
            if self.bidirectional:
                Cs = [torch.view_as_complex(self.C1), torch.view_as_complex(self.C2)]
            else:
                Cs = [torch.view_as_complex(self.C)]
        return lam, z, B_bar, Cs

    @property
    def _scale(self) -> float:
        return 2.0 if self.conj_sym else 1.0

    def _check_input(self, x: torch.Tensor, what: str, rank: int):
        if x.dim() != rank or x.shape[-1] != self.d_model:
            want = "(B, L, H)" if rank == 3 else "(B, H)"
            raise ValueError(f"S5: argument '{what}' must have shape {want} with H = {self.d_model}, "
                             f"got {tuple(x.shape)}")

    def _check_state(self, state: torch.Tensor, batch: int):
        if self.bidirectional:
            raise ValueError("S5: a bidirectional layer is not causal: it has no carried state or step()")
        if state.shape != (batch, self.P) or not state.is_complex():
            raise ValueError(f"S5: argument 'state' must be complex of shape ({batch}, {self.P}), "
                             f"got {tuple(state.shape)} {state.dtype}")

    # -- public API -------------------------------------------------------------------------
    def initial_state(self, batch_size: int, device=None, dtype=None) -> torch.Tensor:
        """Zero state (batch_size, P), complex (complex64 for float32 parameters)."""
        cplx = torch.promote_types(dtype or self.D.dtype, torch.complex64)
        return torch.zeros(batch_size, self.P, device=device or self.D.device, dtype=cplx)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None, *, return_state: bool = False):
        """x (B, L, H) -> y (B, L, H) [, final state (B, P) complex]; ``state`` continues a sequence."""
        self._check_input(x, "x", 3)
        if self.bidirectional and (state is not None or return_state):
            raise ValueError("S5: a bidirectional layer is not causal: it has no carried state or step()")
        if state is not None:
            self._check_state(state, x.shape[0])
        lam, z, B_bar, Cs = self.discrete()
        u = x.to(self.D.dtype)
        y, h_last = diag_ssm(u, lam, z, B_bar, Cs[0], self._scale, state, self.mode, self.contraction,
                             need_state=return_state)
        if self.bidirectional:
            y2, _ = diag_ssm(u, lam, z, B_bar, Cs[1], self._scale, None, self.mode, self.contraction,
                             reverse=True)
            y = y + y2
        y = torch.addcmul(y, self.D, u).to(x.dtype)
        return (y, h_last) if return_state else y

    def step(self, x_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One token: x_t (B, H), state (B, P) -> (y_t (B, H), new state)."""
        self._check_input(x_t, "x_t", 2)
        self._check_state(state, x_t.shape[0])
        lam, _, B_bar, Cs = self.discrete()
        u = x_t.to(self.D.dtype).unsqueeze(1)
        state = lam * state + project_in(u, B_bar)[:, 0]
        y = project_out(state.unsqueeze(1), Cs[0], self._scale)[:, 0] + self.D * u[:, 0]
        return y.to(x_t.dtype), state
