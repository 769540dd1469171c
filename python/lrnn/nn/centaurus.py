"""Centaurus (Pei, ICLR 2025, "Let SSMs be ConvNets"): LTI state-space blocks with ConvNet-like
connectivity, trained as long causal convolutions with a real damped-cosine basis.

Per state n: ``dtA_n = dt * (-softplus(A[..., 0]) + i A[..., 1])`` and the basis kernel
``K_n(l) = exp(Re dtA_n l) cos(Im dtA_n l) = Re(exp(dtA_n l))``; inputs enter with Euler weights
``B_hat = dt * B``. Modes (c = d_model in, d = d_out, N = d_state, r = state_blocks):

    dws   k[c, l]    = sum_n E_hat[c, n] K_{c,n}(l)                  then norm/act -> 1x1 (c -> d)
    s5    k[d, c, l] = sum_n C[d, n] B_hat[n, c] K_n(l)              n over r*N states
    neck  k[d, c, l] = sum_r C[d, r] B_hat[r, c] sum_n E[r, n] K_{r,n}(l)
    full  k[d, c, l] = sum_n E_hat[d, c, n] K_{d,c,n}(l)

Shapes and init follow the reference (Brainchip-Inc/Centaurus ``SSMLayer``): Re A = -0.5 (through
softplus), Im A = pi n, deterministic geometric dt in [1e-3, 1e-1] over channels or blocks, all-ones
B / sqrt(c), C ~ N(0, 2/fan_in), E as per mode; ``A`` and ``log_dt`` are tagged ``sensitive``
(the reference's hint for a smaller learning rate). Layout here is (B, L, C), the library's.

Because K_n(l) = Re(exp(dtA_n l)) with real weights, every mode is also a complex diagonal
recurrence whose output reads only the real part of the state: that is the streaming state
(``forward(x, state)``, ``step``), so chunked inference equals the full forward exactly.
For s5/neck the contraction order (materialize the (d, c, L) kernel, or project the batch through
the states) is chosen from the shapes (models.md §8.3).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from . import _lti  # kernels through the module: one place (_lti) decides which implementation runs
from ._lti import powers, use_kernel_order


class _PointwiseAct(nn.Module):
    """norm -> activation -> dropout over the last (channel) dim, token by token (BatchNorm uses
    statistics over batch and time, like BatchNorm1d on (B, C, L))."""

    def __init__(self, n: int, norm: str | None, postact: str | None, dropout: float | None, factory: dict):
        super().__init__()
        norms = {"batch": lambda: nn.BatchNorm1d(n, **factory), "layer": lambda: nn.LayerNorm(n, **factory),
                 None: nn.Identity}
        acts = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, None: nn.Identity}
        if norm not in norms or postact not in acts:
            raise ValueError(f"Centaurus: norm must be one of {list(norms)} and postact one of {list(acts)}, "
                             f"got {norm!r}, {postact!r}")
        self.norm, self.act, self.drop = norms[norm](), acts[postact](), nn.Dropout(dropout or 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.norm, nn.BatchNorm1d):
            x = self.norm(x.reshape(-1, x.shape[-1])).reshape(x.shape)
        else:
            x = self.norm(x)
        return self.drop(self.act(x))


class Centaurus(nn.Module):
    """Centaurus SSM layer, (B, L, d_model) -> (B, L, d_out).

    Args:
        d_model: c, input channels.
        d_state: N, states per block / channel (the reference's ``num_states``, default 16).
        state_blocks: r, blocks of states (modes s5 and neck; default 4).
        mode: "dws", "s5", "neck" or "full".
        d_out: d, output channels (default d_model).
        norm, postact, dropout: the pointwise activation block (always before the 1x1 mixer in
            dws; after the layer only when ``use_activations``).
        use_activations: apply norm/act/dropout to the output.
        contraction: s5/neck only, "auto" (from the shapes), "kernel" or "states".
    """

    MODES = ("dws", "s5", "neck", "full")

    def __init__(self, d_model: int, d_state: int = 16, state_blocks: int = 4, *, mode: str = "s5",
                 d_out: int | None = None, norm: str | None = "batch", postact: str | None = "relu",
                 dropout: float | None = None, use_activations: bool = False, contraction: str = "auto",
                 device=None, dtype=None):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"Centaurus: mode must be one of {self.MODES}, got {mode!r}")
        if contraction not in ("auto", "kernel", "states"):
            raise ValueError(f"Centaurus: contraction must be 'auto', 'kernel' or 'states', got {contraction!r}")
        c, N, r = d_model, d_state, state_blocks
        d = d_out or d_model
        self.d_model, self.d_out, self.d_state, self.state_blocks = c, d, N, r
        self.mode, self.contraction = mode, contraction
        f64 = torch.float64
        n = torch.arange(N, dtype=f64)
        A = torch.stack((torch.full((N,), 0.5 + math.log(-math.expm1(-0.5)), dtype=f64), math.pi * n), -1)

        def geom(count):  # deterministic log-spaced time steps in [1e-3, 1e-1]
            return torch.linspace(math.log(1e-3), math.log(1e-1), count, dtype=f64)

        factory = {"device": device, "dtype": dtype or torch.get_default_dtype()}

        def param(t):
            return nn.Parameter(t.to(**factory))

        self.B = self.C = self.E = None
        if mode == "dws":
            log_dt = geom(c)[:, None].expand(c, N)
            A = A.expand(c, N, 2)
            self.E = param(torch.ones(c, N, dtype=f64) / math.sqrt(N))
            self.state_shape = (c, N)
        elif mode == "s5":
            log_dt = geom(r).repeat_interleave(N)
            A = A.repeat(r, 1)
            self.B = param(torch.ones(r * N, c, dtype=f64) / math.sqrt(c))
            self.C = param(torch.randn(d, r * N, dtype=f64) * math.sqrt(2 / (r * N)))
            self.state_shape = (r * N,)
        elif mode == "neck":
            log_dt = geom(r)
            A = A.expand(r, N, 2)
            self.B = param(torch.ones(r, c, dtype=f64) / math.sqrt(c))
            self.C = param(torch.randn(d, r, dtype=f64) * math.sqrt(2 / (r * N)))
            self.E = param(torch.randn(r, N, dtype=f64) * math.sqrt(2.0))
            self.state_shape = (r, N)
        else:
            log_dt = geom(d)[:, None].expand(d, N)
            A = A.expand(d, c, N, 2)
            self.E = param(torch.ones(d, c, N, dtype=f64) / math.sqrt(c))
            self.state_shape = (d, c, N)
        self.A = param(A.contiguous())
        self.log_dt = param(log_dt.contiguous())
        self.A.sensitive = self.log_dt.sensitive = True
        def act(n):
            return _PointwiseAct(n, norm, postact, dropout, factory)

        self.set_run_mode("training")
        if mode == "dws":
            self.mixer = nn.Sequential(act(c), nn.Linear(c, d, bias=False, **factory),
                                       act(d) if use_activations else nn.Identity())
        else:
            self.mixer = act(d) if use_activations else nn.Identity()

    # -- discretization ---------------------------------------------------------------------
    def discrete(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(dtA complex of the state shape, the Euler-weighted tensor: B_hat for s5/neck, E_hat for
        dws/full), autocast off."""
        with torch.autocast(self.A.device.type, enabled=False):
            dt = torch.exp(self.log_dt)
            A = torch.complex(-F.softplus(self.A[..., 0]), self.A[..., 1])
            if self.mode == "neck":
                dt = dt.unsqueeze(-1)                     # (r, 1): one step per block
                return dt * A, self.B * dt
            if self.mode == "full":
                dt = dt.unsqueeze(-2)                     # (d, 1, N): one step per output channel
                return dt * A, self.E * dt
            if self.mode == "dws":
                return dt * A, self.E * dt
            return dt * A, self.B * dt.unsqueeze(-1)

    def _inject(self, u: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """Per-state input of the recurrence: u (B, L, c) -> broadcastable to (B, L, *state_shape)."""
        if self.mode == "dws":
            return u.unsqueeze(-1)
        if self.mode == "s5":
            return u @ W.t()
        if self.mode == "neck":
            return (u @ W.t()).unsqueeze(-1)
        return u[:, :, None, :, None]

    def _readout(self, s: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """Output of the real part of the states: s (B, L, *state_shape) real -> (B, L, c or d)
        (before the mixer)."""
        if self.mode == "dws":
            return (s * W).sum(-1)
        if self.mode == "s5":
            return s @ self.C.t()
        if self.mode == "neck":
            return (s * self.E).sum(-1) @ self.C.t()
        return (s * W).sum((-1, -2))

    def _conv(self, u: torch.Tensor, dtA: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """Zero-state output by FFT convolution (before the mixer): u (B, L, c) -> (B, L, c or d)."""
        B, L, c = u.shape
        if self.mode == "dws":
            return _lti.fft_conv(u, _lti.ssm_kernel(W, dtA, L, "cosine"))
        if self.mode == "full":
            d = self.d_out
            k = _lti.ssm_kernel(W.reshape(d * c, -1), dtA.reshape(d * c, -1), L, "cosine")
            return _lti.fft_conv(u, k.reshape(d, c, L))
        if self.mode == "s5":
            S = dtA.shape[0]
            K = _lti.ssm_kernel(torch.ones_like(dtA.real).unsqueeze(-1), dtA.unsqueeze(-1), L, "cosine")  # (S, L)
        else:
            K = _lti.ssm_kernel(self.E, dtA, L, "cosine")                                    # (r, L)
            S = K.shape[0]
        order = self.contraction
        if order == "auto":
            order = "kernel" if use_kernel_order(B, c, self.d_out, S) else "states"
        if order == "kernel":  # k[d, c, l] = sum_s C[d, s] W[s, c] K[s, l]
            k = (self.C @ (W.unsqueeze(-1) * K.unsqueeze(1)).reshape(S, c * L)).reshape(self.d_out, c, L)
            return _lti.fft_conv(u, k)
        return _lti.fft_conv(u @ W.t(), K) @ self.C.t()

    # -- public API -------------------------------------------------------------------------
    def set_run_mode(self, run_mode: str = "training"):
        """The reference's streaming switch: in "inference" mode a call without an explicit state
        continues from the state the previous call left (held by the module until
        ``reset_state``), so feeding a stream chunk by chunk gives the full-sequence output."""
        if run_mode not in ("training", "inference"):
            raise ValueError(f"Centaurus: run_mode must be 'training' or 'inference', got {run_mode!r}")
        self.run_mode = run_mode
        self.reset_state()

    def reset_state(self):
        """Forget the streaming state of "inference" mode (start a new stream)."""
        self.stream_state = None

    def initial_state(self, batch_size: int, device=None, dtype=None) -> torch.Tensor:
        """Zero streaming state (batch_size, *state_shape), complex (complex64 for float32 parameters);
        state shapes: dws (c, N), s5 (r*N,), neck (r, N), full (d, c, N)."""
        cplx = torch.promote_types(dtype or self.A.dtype, torch.complex64)
        return torch.zeros(batch_size, *self.state_shape, device=device or self.A.device, dtype=cplx)

    def _check(self, x: torch.Tensor, what: str, rank: int, state: torch.Tensor | None):
        if x.dim() != rank or x.shape[-1] != self.d_model:
            want = "(B, L, C)" if rank == 3 else "(B, C)"
            raise ValueError(f"Centaurus: argument '{what}' must have shape {want} with C = {self.d_model}, "
                             f"got {tuple(x.shape)}")
        if state is not None and (tuple(state.shape) != (x.shape[0], *self.state_shape) or not state.is_complex()):
            raise ValueError(f"Centaurus: argument 'state' must be complex of shape "
                             f"{(x.shape[0], *self.state_shape)}, got {tuple(state.shape)} {state.dtype}")

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None, *, return_state: bool = False):
        """x (B, L, c) -> y (B, L, d) [, final state]. With ``state`` (from ``initial_state`` or a
        previous call) the sequence continues: chunked streaming equals one call on the whole.
        In "inference" run mode (``set_run_mode``) the module carries that state itself."""
        self._check(x, "x", 3, state)
        if self.run_mode == "inference" and state is None and not return_state:
            carried = self.stream_state
            if carried is None:
                carried = self.initial_state(x.shape[0], device=x.device)
            y, self.stream_state = self.forward(x, carried, return_state=True)
            return y
        dtA, W = self.discrete()
        u = x.to(self.A.dtype)
        y = self._conv(u, dtA, W)
        new_state = None
        if state is not None or return_state:
            L = u.shape[1]
            flip = powers(dtA, L).flip(-1).movedim(-1, 0)            # (L, *S): exp(dtA (L-1-l))
            new_state = (self._inject(u, W) * flip).sum(1)            # sum_l exp(dtA (L-1-l)) u_l
            if state is not None:
                advance = powers(dtA, L, 1).movedim(-1, 0)           # (L, *S): exp(dtA (l+1))
                y = y + self._readout((state.unsqueeze(1) * advance).real, W)
                new_state = new_state + torch.exp(dtA * L) * state
        y = self.mixer(y).to(x.dtype)
        return (y, new_state) if return_state else y

    def step(self, x_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One token: x_t (B, c), state (B, *state_shape) -> (y_t (B, d), new state)."""
        self._check(x_t, "x_t", 2, state)
        dtA, W = self.discrete()
        u = x_t.to(self.A.dtype).unsqueeze(1)
        state = torch.exp(dtA) * state + self._inject(u, W)[:, 0]
        y = self._readout(state.real.unsqueeze(1), W)
        return self.mixer(y)[:, 0].to(x_t.dtype), state
