"""S4 and S4D layers (Gu, Goel, Ré 2022; Gu, Gupta, Goel, Ré 2022): H independent SISO state-space
models with N states each, trained as long causal convolutions, run step by step for inference.

Both map ``x (B, L, H) -> y (B, L, H)``:  ``y = act(K * x + D x)`` with the SSM kernel
``K[h, l] = C dA^l dB`` (``dA, dB`` the discretized ``A, B`` of channel h), ``act`` GELU by default
(the reference ``FFTConv``). States are complex; a real input drives each state and its conjugate
alike, so only one of each conjugate pair is stored (``d_state`` counts both: N/2 are kept) and the
output takes ``2 Re(...)``.

* ``S4D``: diagonal ``A = diag(Λ)``; kernel by ``lrnn.functional.ssm_kernel`` (Vandermonde, no
  (H, N, L) tensor); ZOH or bilinear discretization; step is O(N).
* ``S4``: DPLR ``A = diag(Λ) − P P*`` from HiPPO-LegS, bilinear discretization; kernel from the
  truncated generating function evaluated at the roots of unity with ``lrnn.functional.cauchy`` and
  the rank-1 Woodbury identity; the stored ``C`` is ``C̃ = C (I − dA^l_max)`` (see ``S4``).

Not here: the reference's ``channels > 1`` output copies, dropout, the gated/bottleneck ``S4Block``
wrapper and the position-wise output layer (lrnn.models composes blocks).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..functional import cauchy, fft_conv, ssm_kernel

_ACTIVATIONS = {"gelu": F.gelu, "silu": F.silu, "relu": F.relu, None: None, "id": None}
_CPLX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def hippo_legs(N: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HiPPO-LegS in float64: ``A`` (N, N) with ``A[n, k] = −sqrt(2n+1) sqrt(2k+1)`` (n > k),
    ``−(n+1)`` (n = k), 0 (n < k); ``B[n] = sqrt(2n+1)``; the rank-1 correction ``P[n] = sqrt(n + 1/2)``
    that makes ``A + P Pᵀ`` equal to ``−I/2`` plus a skew-symmetric matrix."""
    q = torch.sqrt(2 * torch.arange(N, dtype=torch.float64) + 1)
    A = -torch.tril(q[:, None] * q[None, :], -1) - torch.diag(torch.arange(N, dtype=torch.float64) + 1)
    return A, q.clone(), torch.sqrt(torch.arange(N, dtype=torch.float64) + 0.5)


def hippo_legs_dplr(N: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Diagonal-plus-low-rank form of HiPPO-LegS, one state per conjugate pair:
    ``Λ`` (N/2,), ``B̃ = V* B`` and ``P̃ = V* P`` (N/2,) complex128, where ``A + P Pᵀ = V diag(Λ) V*`` is
    diagonalized exactly (it is normal: −I/2 + skew). Keeps the eigenvalues with negative imaginary
    part (their conjugates are the dropped half), sorted by frequency."""
    A, B, P = hippo_legs(N)
    S = A + P[:, None] * P[None, :]                     # -I/2 + skew-symmetric
    skew = S + 0.5 * torch.eye(N, dtype=torch.float64)
    w, V = torch.linalg.eigh(1j * skew.to(torch.complex128))   # i*skew is Hermitian: skew V = -i w V
    lam = -0.5 - 1j * w                                  # eigenvalues of S
    keep = torch.nonzero(w > 0).squeeze(-1)              # Im(lam) < 0
    keep = keep[torch.argsort(w[keep])]
    V = V[:, keep]
    Vh = V.conj().transpose(0, 1)
    return lam[keep], Vh @ B.to(torch.complex128), Vh @ P.to(torch.complex128)


def _check_d_state(d_state: int, name: str) -> int:
    if d_state < 2 or d_state % 2:
        raise ValueError(f"{name}: d_state={d_state} must be an even number >= 2: states come in conjugate "
                         f"pairs and only d_state/2 are stored (an odd count would silently lose one)")
    return d_state // 2


def _tag(param: nn.Parameter, lr: float | None) -> nn.Parameter:
    """The reference's per-parameter optimizer hint: SSM parameters get their own lr and no weight decay."""
    if lr is not None:
        param._optim = {"lr": lr, "weight_decay": 0.0}
    return param


class _SSMBase(nn.Module):
    """What S4 and S4D share: D skip, activation, (B, L, H) checks, parameter groups, and the
    diagonal-system state algebra (``_diag_system`` supplies ``lam, dB, C, scale`` with
    ``x[t] = lam x[t-1] + dB u[t]``, ``y[t] = scale Re(C x[t]) + D u[t]``)."""

    def __init__(self, d_model: int, activation: str | None, bidirectional: bool):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"{type(self).__name__}: activation must be one of {list(_ACTIVATIONS)}, got {activation!r}")
        self.d_model = d_model
        self.activation = activation
        self.bidirectional = bidirectional
        self.D = nn.Parameter(torch.randn(d_model))

    def _act(self, y: torch.Tensor) -> torch.Tensor:
        f = _ACTIVATIONS[self.activation]
        return y if f is None else f(y)

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """Optimizer groups: parameters tagged with ``_optim`` (the SSM's A, B, dt) get their own lr and
        no weight decay; the rest (C, D) get ``lr`` and ``weight_decay``."""
        plain, special = [], {}
        for p in self.parameters():
            hint = getattr(p, "_optim", None)
            if hint is None:
                plain.append(p)
            else:
                special.setdefault(tuple(sorted(hint.items())), []).append(p)
        groups = [{"params": plain, "lr": lr, "weight_decay": weight_decay}]
        groups += [{"params": ps, **dict(k)} for k, ps in special.items()]
        return groups

    def _check_input(self, x: torch.Tensor, rank: int, what: str):
        if x.dim() != rank or x.shape[-1] != self.d_model:
            shape = "(B, L, H)" if rank == 3 else "(B, H)"
            raise ValueError(f"{type(self).__name__}: {what} must have shape {shape} with H = {self.d_model}, "
                             f"got {tuple(x.shape)}")

    def _check_state(self, state: torch.Tensor, batch: int, states: int):
        if self.bidirectional:
            raise ValueError(f"{type(self).__name__}: a bidirectional layer has no recurrent state "
                             "(its output depends on the future)")
        if state.shape != (batch, self.d_model, states) or not state.is_complex():
            raise ValueError(f"{type(self).__name__}: state must be complex of shape (B, H, S) = "
                             f"({batch}, {self.d_model}, {states}), got {tuple(state.shape)} {state.dtype}")

    # ---- diagonal-system algebra shared by both layers
    def _state_response(self, lam, C, scale, x0, L: int) -> torch.Tensor:
        """Free response of the initial state: ``scale Re(sum_n C lam^(t+1) x0)`` for t < L, (B, L, H)."""
        Bsz, H, S = x0.shape
        w = (C * lam * x0).reshape(Bsz * H, S) * (scale / 2)     # ssm_kernel's complex basis is 2 Re
        z = torch.log(lam).expand(Bsz, H, S).reshape(Bsz * H, S)
        return ssm_kernel(w, z, L).reshape(Bsz, H, L).transpose(1, 2)

    def _final_state(self, lam, dB, x: torch.Tensor, x0: torch.Tensor | None) -> torch.Tensor:
        """State after the last step: ``lam^L x0 + dB sum_s lam^(L-1-s) u[s]``. Materializes the
        (H, S, L) powers of this call (bounded by the chunk length in streaming use)."""
        L = x.shape[1]
        z = torch.log(lam)
        powers = torch.exp(z.unsqueeze(-1) * torch.arange(L - 1, -1, -1, device=z.device, dtype=z.real.dtype))
        xs = dB * torch.einsum("bsh,hns->bhn", x.to(lam.dtype), powers)
        if x0 is not None:
            xs = xs + torch.exp(z * L) * x0
        return xs

    def _conv_forward(self, x, k, state, return_state, diag):
        """y = act(K * x + D x) (+ the state's free response); k (channels, H, >= L)."""
        L = x.shape[1]
        y = fft_conv(x, k[0], self.D)
        if self.bidirectional:
            # anti-causal half: y[t] += sum_{s>t} k1[s-t-1] x[s], a causal conv in reversed time
            y = y + fft_conv(x.flip(1), F.pad(k[1], (1, 0))).flip(1)
        if state is not None or return_state:
            lam, dB, C, scale = diag()
            if state is not None:
                y = y + self._state_response(lam, C, scale, state.to(lam.dtype), L)
        y = self._act(y).to(x.dtype)
        if not return_state:
            return y
        return y, self._final_state(lam, dB, x, None if state is None else state.to(lam.dtype))

    def _diag_step(self, x_t, state, diag):
        lam, dB, C, scale = diag()
        state = lam * state.to(lam.dtype) + dB * x_t.to(lam.dtype).unsqueeze(-1)
        y = scale * (C * state).sum(-1).real + self.D * x_t
        return self._act(y).to(x_t.dtype), state


class S4D(_SSMBase):
    """S4D: a diagonal SSM per channel, ``A = diag(Λ)``, ``Λ = −exp(A_real) − i A_imag``.

    Args:
        d_model: channels H.
        d_state: states N per channel, counting both halves of each conjugate pair (must be even;
            N/2 complex states are stored).
        init: ``"diag-lin"`` (Λ_n = −1/2 + iπn, the reference S4D default), ``"diag-inv"``
            (−1/2 + i(N/π)(N/(2n+1) − 1)), ``"diag-legs"`` (the diagonal part of HiPPO-LegS, B from
            HiPPO), ``"diag-real"`` (−(n+1)). B is all ones except for diag-legs.
        disc: ``"zoh"`` (``dA = exp(ΔΛ)``, ``dB = (exp(ΔΛ) − 1)/Λ · B``) or ``"bilinear"``.
        dt_min, dt_max: Δ is log-uniform in [dt_min, dt_max] per channel; ``inv_dt = log Δ``.
        lr: learning rate hint (``param._optim``, weight decay 0) for inv_dt, A_real, A_imag, B
            (the reference config's 1e-3); None for no hint. See ``param_groups``.
        bidirectional: a second kernel (its own C) runs backwards in time; no step() then.
        activation: ``"gelu"`` (reference), ``"silu"``, ``"relu"`` or None.

    Parameters (reference names): ``inv_dt`` (H, 1), ``A_real``, ``A_imag`` (H, N/2), ``B`` (H, N/2, 2)
    and ``C`` (channels, H, N/2, 2) complex stored as real pairs, ``D`` (H,).
    State: (B, H, N/2) complex.
    """

    def __init__(self, d_model: int, d_state: int = 64, *, init: str = "diag-lin", disc: str = "zoh",
                 dt_min: float = 1e-3, dt_max: float = 1e-1, lr: float | None = 1e-3,
                 bidirectional: bool = False, activation: str | None = "gelu"):
        super().__init__(d_model, activation, bidirectional)
        N2 = _check_d_state(d_state, "S4D")
        if disc not in ("zoh", "bilinear"):
            raise ValueError(f"S4D: disc must be 'zoh' or 'bilinear', got {disc!r}")
        self.d_state, self.disc, self.init = d_state, disc, init
        n = torch.arange(N2, dtype=torch.float64)
        B = torch.ones(N2, dtype=torch.complex128)
        if init == "diag-lin":
            lam = -0.5 + 1j * math.pi * n
        elif init == "diag-inv":
            lam = -0.5 + 1j * (d_state / math.pi) * (d_state / (2 * n + 1) - 1)
        elif init == "diag-legs":
            lam, B, _ = hippo_legs_dplr(d_state)
        elif init == "diag-real":
            lam = -(n + 1) + 0j
        else:
            raise ValueError(f"S4D: init must be 'diag-lin', 'diag-inv', 'diag-legs' or 'diag-real', got {init!r}")
        H = d_model
        log_dt = math.log(dt_min) + torch.rand(H, 1, dtype=torch.float64) * (math.log(dt_max) - math.log(dt_min))
        channels = 2 if bidirectional else 1
        self.inv_dt = _tag(nn.Parameter(log_dt.float()), lr)
        self.A_real = _tag(nn.Parameter(torch.log(-lam.real).expand(H, N2).float().clone()), lr)
        self.A_imag = _tag(nn.Parameter((-lam.imag).expand(H, N2).float().clone()), lr)
        self.B = _tag(nn.Parameter(torch.view_as_real(B.expand(H, N2).to(torch.complex64)).clone()), lr)
        self.C = nn.Parameter(torch.view_as_real(torch.randn(channels, H, N2, dtype=torch.complex64)))

    def _discrete(self):
        """(dA, dB, C (channels, H, N/2), z = log dA) in the parameters' complex dtype."""
        cdt = _CPLX[self.A_real.dtype]
        dt = torch.exp(self.inv_dt).to(cdt)
        A = torch.complex(-torch.exp(self.A_real), -self.A_imag)
        B, C = torch.view_as_complex(self.B), torch.view_as_complex(self.C)
        dtA = dt * A
        if self.disc == "zoh":
            dA, dB, z = torch.exp(dtA), B * torch.expm1(dtA) / A, dtA
        else:
            denom = 1 - dtA / 2
            dA = (1 + dtA / 2) / denom
            dB, z = B * dt / denom, torch.log(dA)
        return dA, dB, C, z

    def kernel(self, L: int) -> torch.Tensor:
        """The convolution kernel(s) (channels, H, L), float32 (float64 for float64 parameters)."""
        with torch.autocast(self.A_real.device.type, enabled=False):
            _, dB, C, z = self._discrete()
            ch, H, N2 = C.shape
            w = (C * dB).reshape(ch * H, N2)
            return ssm_kernel(w, z if ch == 1 else z.repeat(ch, 1), L).reshape(ch, H, L)

    def _diag(self):
        dA, dB, C, _ = self._discrete()
        return dA, dB, C[0], 2.0

    def initial_state(self, batch_size: int, device=None, dtype=None) -> torch.Tensor:
        cdt = _CPLX[self.A_real.dtype] if dtype is None else dtype
        return torch.zeros(batch_size, self.d_model, self.d_state // 2, device=device or self.D.device, dtype=cdt)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None, *, return_state: bool = False):
        """x (B, L, H) -> y (B, L, H) (and the final state (B, H, N/2) when ``return_state``);
        ``state`` continues from a previous call."""
        self._check_input(x, 3, "x")
        if state is not None or return_state:
            self._check_state(state if state is not None else self.initial_state(x.shape[0], x.device),
                              x.shape[0], self.d_state // 2)
        with torch.autocast(x.device.type, enabled=False):
            return self._conv_forward(x, self.kernel(x.shape[1]), state, return_state, self._diag)

    def step(self, x_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step, O(N): x_t (B, H) -> (y_t (B, H), new state)."""
        self._check_input(x_t, 2, "x_t")
        self._check_state(state, x_t.shape[0], self.d_state // 2)
        with torch.autocast(x_t.device.type, enabled=False):
            return self._diag_step(x_t, state, self._diag)


class S4(_SSMBase):
    """S4 with the DPLR (NPLR) parameterization: ``A = diag(Λ) − P P*`` (rank 1), HiPPO-LegS init,
    bilinear discretization.

    Kernel (training): the generating function ``Σ_{l<L} C dA^l dB ω^l = C̃ (I − ω dA)^{-1} dB`` with
    ``C̃ = C (I − dA^L)`` is evaluated at the L-th roots of unity: with ``g = (2/Δ)(1−ω)/(1+ω)``,
    ``(I − ω dA)^{-1} dB = 2/(1+ω) (g − A)^{-1} B``, and ``(g − A)^{-1}`` follows from the diagonal
    resolvent by the rank-1 Woodbury identity: four symmetric Cauchy sums (``lrnn.functional.cauchy``)
    ``k_ij`` give ``K̂ = 2/(1+ω) (k00 − k01 k10 / (1 + k11))``, and ``K = irfft(K̂)``. At ω = −1 (even
    L) the limit ``Δ Re(Σ C̃ B)`` is used.

    ``C`` stores ``C̃`` for the kernel length ``l_max``. A forward with L ≤ l_max truncates the
    l_max kernel (as the reference does); a longer L converts ``C̃`` to ``C̃ (I − dA^l_max)^{-1} (I − dA^L')``
    for L' = l_max·2^k ≥ L on the fly (dense N×N algebra per channel; nothing is modified in place).

    Step: ``step_mode="diagonal"`` (default, O(N)): the dense bilinear ``dA`` of the full
    (conjugate-completed, N-state) system is diagonalized once per call (or once by ``setup_step()``),
    and the state lives in its eigenbasis; ``"dense"``: the state is the full N-vector and a step is
    a dense N×N product. ``forward(x, state)`` uses the coordinates of ``step_mode``. The eigenbasis
    is ill-conditioned (condition ~1e9 for HiPPO), so a diagonal-mode state is complex128 (give
    it a complex64 state and it loses most digits); the dense mode's state has the parameters'
    complex dtype.

    Args like ``S4D`` plus ``l_max`` (default 1024) and ``step_mode``. Parameters: ``inv_dt`` (H, 1),
    ``A_real``, ``A_imag`` (H, N/2), ``B``, ``P`` (H, N/2, 2), ``C`` (channels, H, N/2, 2) = C̃, ``D`` (H,).
    State: (B, H, N) complex (complex128 in diagonal mode).
    """

    def __init__(self, d_model: int, d_state: int = 64, *, l_max: int = 1024, dt_min: float = 1e-3,
                 dt_max: float = 1e-1, lr: float | None = 1e-3, bidirectional: bool = False,
                 activation: str | None = "gelu", step_mode: str = "diagonal"):
        super().__init__(d_model, activation, bidirectional)
        N2 = _check_d_state(d_state, "S4")
        if step_mode not in ("diagonal", "dense"):
            raise ValueError(f"S4: step_mode must be 'diagonal' or 'dense', got {step_mode!r}")
        if l_max < 1:
            raise ValueError(f"S4: l_max must be >= 1, got {l_max}")
        self.d_state, self.l_max, self.step_mode = d_state, l_max, step_mode
        lam, B, P = hippo_legs_dplr(d_state)
        H = d_model
        log_dt = math.log(dt_min) + torch.rand(H, 1, dtype=torch.float64) * (math.log(dt_max) - math.log(dt_min))
        channels = 2 if bidirectional else 1
        self.inv_dt = _tag(nn.Parameter(log_dt.float()), lr)
        self.A_real = _tag(nn.Parameter(torch.log(-lam.real).expand(H, N2).float().clone()), lr)
        self.A_imag = _tag(nn.Parameter((-lam.imag).expand(H, N2).float().clone()), lr)
        self.B = _tag(nn.Parameter(torch.view_as_real(B.expand(H, N2).to(torch.complex64)).clone()), lr)
        self.P = _tag(nn.Parameter(torch.view_as_real(P.expand(H, N2).to(torch.complex64)).clone()), lr)
        # C̃ for l_max, initialized from a random C (the reference draws C̃ directly; same distribution)
        self.C = nn.Parameter(torch.view_as_real(torch.randn(channels, H, N2, dtype=torch.complex64)))
        self._step_cache = None

    # ---- continuous and discrete parameters
    def _params(self, wide: bool = False):
        """dt (H, 1), Λ, B, P (H, N/2), C̃ (ch, H, N/2); in float64/complex128 when ``wide``."""
        cast = (lambda t: t.double()) if wide else (lambda t: t)   # noqa: E731
        dt = torch.exp(cast(self.inv_dt))
        lam = torch.complex(-torch.exp(cast(self.A_real)), -cast(self.A_imag))
        return (dt, lam, torch.view_as_complex(cast(self.B)), torch.view_as_complex(cast(self.P)),
                torch.view_as_complex(cast(self.C)))

    def _dense(self, wide: bool = True):
        """The full conjugate-completed system (N states): dA (H, N, N), dB (H, N), C̃ (ch, H, N).
        In complex128 by default: the DPLR matrix is far from normal (HiPPO), and its powers,
        the C̃ <-> C conversion and its eigenvectors lose most of float32's digits."""
        dt, lam, B, P, Ct = self._params(wide)
        full = lambda v: torch.cat([v, v.conj()], -1)      # noqa: E731
        lamf, Bf, Pf, Ctf = full(lam), full(B), full(P), full(Ct)
        A = torch.diag_embed(lamf) - Pf.unsqueeze(-1) * Pf.conj().unsqueeze(-2)
        N = A.shape[-1]
        eye = torch.eye(N, dtype=A.dtype, device=A.device)
        half = (dt.to(A.dtype) / 2).unsqueeze(-1) * A
        inv = torch.linalg.inv(eye - half)
        dA = inv @ (eye + half)
        dB = (inv @ Bf.unsqueeze(-1)).squeeze(-1) * dt.to(A.dtype)
        return dA, dB, Ctf

    def _c_tilde_for(self, dA, Ctf, L: int):
        """C̃ for length L from the stored C̃ for l_max: C̃ (I − dA^l_max)^{-1} (I − dA^L)."""
        eye = torch.eye(dA.shape[-1], dtype=dA.dtype, device=dA.device)
        C = torch.linalg.solve((eye - torch.linalg.matrix_power(dA, self.l_max)).transpose(-1, -2),
                               Ctf.unsqueeze(-1)).squeeze(-1)          # C (I - dA^l_max)^{-1}
        return (C.unsqueeze(-2) @ (eye - torch.linalg.matrix_power(dA, L))).squeeze(-2)

    def kernel(self, L: int) -> torch.Tensor:
        """The convolution kernel(s) (channels, H, L) by Cauchy + Woodbury (see the class doc)."""
        return self._kernel_full(L)[..., :L]

    def _kernel_full(self, L: int) -> torch.Tensor:
        """The kernel at its generated length (l_max, or l_max * 2^k >= L), (channels, H, Lk)."""
        with torch.autocast(self.A_real.device.type, enabled=False):
            dt, lam, B, P, Ct = self._params()
            Lk = self.l_max
            if L > self.l_max:
                Lk = self.l_max * 2 ** math.ceil(math.log2(L / self.l_max))
                dA, _, Ctf = self._dense()
                Ct = self._c_tilde_for(dA, Ctf, Lk)[..., : Ct.shape[-1]].to(Ct.dtype)
            ch, H, N2 = Ct.shape
            cdt = lam.dtype
            # nodes: omega_k = exp(-2 pi i k / Lk), k <= Lk/2, without omega = -1 (handled below)
            nk = (Lk - 1) // 2 + 1
            k = torch.arange(nk, device=lam.device, dtype=dt.dtype)
            omega = torch.polar(torch.ones_like(k), -2 * math.pi * k / Lk).to(cdt)
            znodes = 2 * (1 - omega) / (1 + omega)
            dtc = dt.to(cdt)                                                 # (H, 1)
            # rows: C̃_c B, C̃_c P (per output channel c), P* B, P* P; numerators scaled by dt
            v = torch.cat([(Ct * B).reshape(ch * H, N2), (Ct * P).reshape(ch * H, N2),
                           P.conj() * B, P.conj() * P], 0) * dtc.repeat(2 * ch + 2, 1)
            poles = (dtc * lam).repeat(2 * ch + 2, 1)
            r = cauchy(v, znodes, poles)                                    # (rows, nk)
            k00 = r[: ch * H].reshape(ch, H, nk)
            k01 = r[ch * H: 2 * ch * H].reshape(ch, H, nk)
            k10, k11 = r[2 * ch * H: 2 * ch * H + H], r[2 * ch * H + H:]
            khat = (k00 - k01 * k10 / (1 + k11)) * (2 / (1 + omega))
            if Lk % 2 == 0:                                                  # omega = -1: the limit
                last = (dt.squeeze(-1) * (Ct * B).sum(-1).real).to(cdt).unsqueeze(-1)   # (ch, H, 1)
                khat = torch.cat([khat, last], -1)
            return torch.fft.irfft(khat, n=Lk)

    # ---- the recurrent view
    def setup_step(self):
        """Caches the discrete system for step() (call again after changing the parameters)."""
        self._step_cache = self._system()

    def _system(self):
        """(dA, dB, C, lam, V, Vinv) of the full system with the true C; lam, V: eigen-decomposition of dA."""
        dA, dB, Ctf = self._dense()
        eye = torch.eye(dA.shape[-1], dtype=dA.dtype, device=dA.device)
        C = torch.linalg.solve((eye - torch.linalg.matrix_power(dA, self.l_max)).transpose(-1, -2),
                               Ctf[0].unsqueeze(-1)).squeeze(-1)
        lam, V = torch.linalg.eig(dA)
        return dA, dB, C, lam, V, torch.linalg.inv(V)

    def _diag_from(self, system):
        _, dB, C, lam, V, Vinv = system
        return lam, (Vinv @ dB.unsqueeze(-1)).squeeze(-1), (C.unsqueeze(-2) @ V).squeeze(-2), 1.0

    def _state_dtype(self) -> torch.dtype:
        # An eigenbasis state is complex128 whatever the parameters: the eigenvectors of the HiPPO
        # DPLR matrix have condition numbers ~1e9, and C V s cancels away a complex64 state.
        return torch.complex128 if self.step_mode == "diagonal" else _CPLX[self.A_real.dtype]

    def initial_state(self, batch_size: int, device=None, dtype=None) -> torch.Tensor:
        cdt = self._state_dtype() if dtype is None else dtype
        return torch.zeros(batch_size, self.d_model, self.d_state, device=device or self.D.device, dtype=cdt)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None, *, return_state: bool = False):
        """x (B, L, H) -> y (B, L, H) (and the final state (B, H, N) when ``return_state``)."""
        self._check_input(x, 3, "x")
        if state is not None or return_state:
            self._check_state(state if state is not None else self.initial_state(x.shape[0], x.device),
                              x.shape[0], self.d_state)
        state_dtype = None if state is None else state.dtype
        with torch.autocast(x.device.type, enabled=False):
            if state is None and not return_state:
                return self._conv_forward(x, self._kernel_full(x.shape[1]), None, False, None)
            system = self._system()
            V, Vinv = system[4], system[5]
            if self.step_mode == "dense" and state is not None:      # full coordinates -> eigenbasis
                state = (Vinv @ state.to(V.dtype).unsqueeze(-1)).squeeze(-1)
            out = self._conv_forward(x, self._kernel_full(x.shape[1]), state, return_state,
                                     lambda: self._diag_from(system))
            if not return_state:
                return out
            y, last = out
            if self.step_mode == "dense":
                last = (V @ last.unsqueeze(-1)).squeeze(-1)
            return y, last.to(self._state_dtype() if state_dtype is None else state_dtype)

    def step(self, x_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: x_t (B, H) -> (y_t (B, H), new state); O(N) diagonal or O(N^2) dense."""
        self._check_input(x_t, 2, "x_t")
        self._check_state(state, x_t.shape[0], self.d_state)
        with torch.autocast(x_t.device.type, enabled=False):
            system = self._step_cache if self._step_cache is not None else self._system()
            if self.step_mode == "diagonal":
                y, new = self._diag_step(x_t, state, lambda: self._diag_from(system))
                return y, new.to(state.dtype)
            dA, dB, C = system[0], system[1], system[2]
            new = (dA @ state.to(dA.dtype).unsqueeze(-1)).squeeze(-1) + dB * x_t.to(dA.dtype).unsqueeze(-1)
            y = (C * new).sum(-1).real + self.D * x_t
            return self._act(y).to(x_t.dtype), new.to(state.dtype)
