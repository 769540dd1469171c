"""lrnn.nn.S5: recurrence against a float64 loop oracle, step == forward, chunked == whole,
scan == convolution (both contraction orders), S4D-ZOH as a block-structured S5, HiPPO-N init,
deployment (compile, export), bf16 autocast, gradients and argument errors."""
from __future__ import annotations

import math

import pytest
import torch

import lrnn  # noqa: F401
from lrnn.nn import S5
from lrnn.nn.s5 import hippo_legs_normal

from layer_testing import (EXACT, assert_rel, check_bf16_autocast, check_chunks_equal_whole,
                           check_compile_and_export, check_gradients_reach_every_parameter,
                           check_step_equals_forward)

CONFIGS = {
    "default": {},
    "no_conj_sym": {"conj_sym": False},
    "bilinear": {"discretization": "bilinear"},
    "clip_rescale": {"clip_eigs": True, "step_rescale": 2.0},
    "complex_normal_C": {"C_init": "complex_normal"},
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def make(H=6, P=12, J=2, dtype=torch.float64, **kw):
    return S5(H, P, J, dtype=dtype, **kw)


def s5_oracle(layer: S5, x: torch.Tensor) -> torch.Tensor:
    """models.md §14 loop, discretizing the raw parameters here in complex128."""
    Lam = torch.complex(layer.Lambda_re.detach().double(), layer.Lambda_im.detach().double())
    if layer.clip_eigs:
        Lam = torch.complex(Lam.real.clamp(max=-1e-4), Lam.imag)
    dt = layer.step_rescale * torch.exp(layer.log_step.detach().double()[:, 0])
    Bt = torch.view_as_complex(layer.B.detach().double())
    if layer.discretization == "zoh":
        lam = torch.exp(Lam * dt)
        Bb = ((lam - 1) / Lam)[:, None] * Bt
    else:
        g = 1 / (1 - dt / 2 * Lam)
        lam, Bb = g * (1 + dt / 2 * Lam), (g * dt)[:, None] * Bt
    Cs = ([layer.C1, layer.C2] if layer.bidirectional else [layer.C])
    Cs = [torch.view_as_complex(c.detach().double()) for c in Cs]
    s = 2.0 if layer.conj_sym else 1.0
    u = x.double().to(torch.complex128)
    Bsz, L, _ = x.shape

    def run(order):
        xs, h = [None] * L, torch.zeros(Bsz, lam.shape[0], dtype=torch.complex128)
        for t in order:
            h = lam * h + u[:, t] @ Bb.t()
            xs[t] = h
        return torch.stack(xs, 1)

    y = s * (run(range(L)) @ Cs[0].t()).real
    if layer.bidirectional:
        y = y + s * (run(range(L - 1, -1, -1)) @ Cs[1].t()).real
    return y + layer.D.detach().double() * x.double()


@pytest.mark.parametrize("mode", ["scan", "conv"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_forward_matches_loop_oracle(config, mode):
    layer = make(mode=mode, **CONFIGS[config])
    x = torch.randn(3, 37, 6, dtype=torch.float64)
    assert_rel(layer(x), s5_oracle(layer, x), EXACT, f"{config}/{mode}")


@pytest.mark.parametrize("mode", ["scan", "conv"])
def test_bidirectional_matches_loop_oracle(mode):
    layer = make(mode=mode, bidirectional=True)
    x = torch.randn(2, 29, 6, dtype=torch.float64)
    assert_rel(layer(x), s5_oracle(layer, x), EXACT, mode)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_step_equals_forward(config):
    check_step_equals_forward(make(**CONFIGS[config]), torch.randn(2, 23, 6, dtype=torch.float64))


@pytest.mark.parametrize("mode,contraction", [("scan", "auto"), ("conv", "kernel"), ("conv", "states")])
def test_chunks_with_carried_state_equal_whole(mode, contraction):
    layer = make(mode=mode, contraction=contraction)
    check_chunks_equal_whole(layer, torch.randn(2, 31, 6, dtype=torch.float64))


@pytest.mark.parametrize("contraction", ["kernel", "states", "auto"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_scan_equals_conv(contraction, bidirectional):
    layer = make(bidirectional=bidirectional)
    x = torch.randn(4, 50, 6, dtype=torch.float64)
    y_scan = layer(x)
    layer.mode, layer.contraction = "conv", contraction
    assert_rel(layer(x), y_scan, EXACT, contraction)


def test_scan_equals_conv_float32():
    """float32: both paths against the float64 oracle within a few hundred roundings (the FFT of
    length 2L and the state accumulation each contribute ~eps log L)."""
    layer = make(dtype=torch.float32)
    x = torch.randn(2, 300, 6)
    want = s5_oracle(layer, x)
    for mode in ("scan", "conv"):
        layer.mode = mode
        assert_rel(layer(x), want, 300 * 2.0**-24, mode)


def test_block_structured_s5_reproduces_s4d_zoh():
    """models.md §2.6: P = H N/2 states, Lambda_h repeated per channel block, B = blockdiag(b_h),
    C = blockdiag(c_h^T), per-state step = the channel's step -> S4D-ZOH, computed here in float64 as
    K[h, l] = 2 Re sum_n C B (exp(dt Lam) - 1)/Lam exp(dt Lam l) and a direct causal convolution."""
    H, N2, L = 3, 4, 40
    f64 = torch.float64
    Lam = torch.complex(-torch.rand(H, N2, dtype=f64) - 0.1, math.pi * torch.randn(H, N2, dtype=f64))
    b = torch.randn(H, N2, dtype=torch.complex128)
    c = torch.randn(H, N2, dtype=torch.complex128)
    dt = torch.exp(torch.empty(H, dtype=torch.float64).uniform_(math.log(1e-2), math.log(1e-1)))
    D = torch.randn(H, dtype=torch.float64)
    u = torch.randn(2, L, H, dtype=torch.float64)

    dtLam = dt[:, None] * Lam
    w = c * b * (torch.exp(dtLam) - 1) / Lam
    l = torch.arange(L, dtype=torch.float64)
    K = 2 * (w[..., None] * torch.exp(dtLam[..., None] * l)).sum(1).real          # (H, L)
    y_s4d = torch.zeros(2, L, H, dtype=torch.float64)
    for t in range(L):
        for s in range(t + 1):
            y_s4d[:, t] += K[:, t - s] * u[:, s]
    y_s4d += D * u

    layer = S5(H, 2 * H * N2, H, dtype=torch.float64)
    P = H * N2
    Bm = torch.zeros(P, H, dtype=torch.complex128)
    Cm = torch.zeros(H, P, dtype=torch.complex128)
    for h in range(H):
        Bm[h * N2:(h + 1) * N2, h] = b[h]
        Cm[h, h * N2:(h + 1) * N2] = c[h]
    with torch.no_grad():
        layer.Lambda_re.copy_(Lam.real.reshape(P))
        layer.Lambda_im.copy_(Lam.imag.reshape(P))
        layer.B.copy_(torch.view_as_real(Bm))
        layer.C.copy_(torch.view_as_real(Cm))
        layer.D.copy_(D)
        layer.log_step.copy_(torch.log(dt).repeat_interleave(N2)[:, None])
    for mode in ("scan", "conv"):
        layer.mode = mode
        assert_rel(layer(u), y_s4d, EXACT, mode)


def test_hippo_normal_eigendecomposition():
    """V diag(Lambda) V^H rebuilds the normal part A_LegS + p p^T of HiPPO-LegS (written out here
    entrywise), V is unitary, Re Lambda = -1/2."""
    n = 10
    Lam, V = hippo_legs_normal(n)
    A = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            if i > j:
                A[i, j] = -math.sqrt(2 * i + 1) * math.sqrt(2 * j + 1)
            elif i == j:
                A[i, j] = -(i + 1)
    p = torch.sqrt(torch.arange(n, dtype=torch.float64) + 0.5)
    S = A + p[:, None] * p[None, :]
    assert_rel(V @ torch.diag(Lam) @ V.conj().t(), S.to(torch.complex128), 1e-12, "V Lam V^H")
    assert_rel(V.conj().t() @ V, torch.eye(n, dtype=torch.complex128), 1e-12, "unitary")
    assert torch.allclose(Lam.real, torch.full((n,), -0.5, dtype=torch.float64))


def test_init_is_block_diagonal_hippo_with_conjugate_halves():
    H, P, J = 5, 16, 2
    layer = S5(H, P, J, dtype=torch.float64)
    Lam, V = hippo_legs_normal(P // J)
    half = P // J // 2
    assert layer.P == P // 2
    assert_rel(layer.Lambda_re.detach(), torch.full((P // 2,), -0.5, dtype=torch.float64), 1e-14, "Re Lambda")
    assert_rel(layer.Lambda_im.detach(), Lam.imag[:half].repeat(J), 1e-12, "Lambda_im per block")
    # B_tilde = V^-1 B for a real, truncated-normal B: 2 Re(V_half B_tilde) recovers B (conjugate
    # pairs of eigenvectors), whose entries lie within the truncation at 2 std.
    Vb = torch.block_diag(*([V[:, :half]] * J))
    B = 2 * (Vb @ torch.view_as_complex(layer.B.detach())).real
    std = 1 / math.sqrt(P) / 0.87962566103423978
    assert B.abs().max() <= 2 * std + 1e-12 and B.std() > 0.5 / math.sqrt(P)
    dt = torch.exp(layer.log_step.detach())
    assert dt.min() >= 1e-3 and dt.max() <= 1e-1 and layer.log_step.shape == (P // 2, 1)


def test_clip_eigs_keeps_real_parts_negative():
    layer = make(clip_eigs=True)
    with torch.no_grad():
        layer.Lambda_re.fill_(0.3)
    lam, *_ = layer.discrete()
    assert (lam.abs() < 1).all()


@pytest.mark.parametrize("mode", ["scan", "conv"])
def test_compile_and_export(mode):
    layer = make(dtype=torch.float32, mode=mode)
    check_compile_and_export(layer, torch.randn(2, 16, 6))


@pytest.mark.parametrize("mode", ["scan", "conv"])
def test_bf16_autocast(mode):
    layer = make(dtype=torch.float32, mode=mode)
    check_bf16_autocast(layer, torch.randn(2, 64, 6))


@pytest.mark.parametrize("mode", ["scan", "conv"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradients_reach_every_parameter(mode, bidirectional):
    check_gradients_reach_every_parameter(make(mode=mode, bidirectional=bidirectional),
                                          torch.randn(2, 21, 6, dtype=torch.float64))


def test_gradcheck_through_both_modes():
    layer = make(H=3, P=4, J=1)
    x = torch.randn(1, 9, 3, dtype=torch.float64, requires_grad=True)
    for mode in ("scan", "conv"):
        layer.mode = mode
        assert torch.autograd.gradcheck(lambda x: layer(x), (x,))


def test_bad_arguments():
    with pytest.raises(ValueError, match="block size"):
        S5(4, 6, 2)                                  # block of 3 states cannot pair up
    with pytest.raises(ValueError, match="divisible"):
        S5(4, 10, 3)
    with pytest.raises(ValueError, match="discretization"):
        S5(4, 8, 1, discretization="euler")
    with pytest.raises(ValueError, match="mode"):
        S5(4, 8, 1, mode="fft")
    layer = make()
    with pytest.raises(ValueError, match="argument 'x'"):
        layer(torch.randn(2, 5, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match="argument 'x'"):
        layer(torch.randn(5, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="argument 'state'"):
        layer(torch.randn(2, 5, 6, dtype=torch.float64), torch.zeros(2, 5, dtype=torch.complex128))
    with pytest.raises(ValueError, match="argument 'state'"):
        layer.step(torch.randn(2, 6, dtype=torch.float64), torch.zeros(2, layer.P))
    with pytest.raises(ValueError, match="contraction"):
        S5(4, 8, 1, mode="conv", contraction="best")(torch.randn(1, 3, 4))
    bidir = make(bidirectional=True)
    with pytest.raises(ValueError, match="not causal"):
        bidir.step(torch.randn(2, 6, dtype=torch.float64), bidir.initial_state(2))
    with pytest.raises(ValueError, match="not causal"):
        bidir(torch.randn(2, 5, 6, dtype=torch.float64), return_state=True)


def test_param_groups_follow_the_recipe():
    layer = make(bidirectional=True)
    ssm, rest = layer.param_groups(lr=4e-3, weight_decay=0.05, ssm_lr=1e-3)
    assert {id(p) for p in ssm["params"]} == {id(layer.Lambda_re), id(layer.Lambda_im), id(layer.B), id(layer.log_step)}
    assert ssm["lr"] == 1e-3 and ssm["weight_decay"] == 0.0
    assert {id(p) for p in rest["params"]} == {id(layer.C1), id(layer.C2), id(layer.D)}
    assert rest["lr"] == 4e-3 and rest["weight_decay"] == 0.05
    assert layer.B._optim == {"group": "ssm", "weight_decay": 0.0}


@pytest.mark.parametrize("mode,contraction", [("scan", "auto"), ("conv", "kernel"), ("conv", "states")])
def test_gradcheck_through_carried_state(mode, contraction):
    """Gradients flow through the state carried between chunks (input state and final state)."""
    layer = make(H=3, P=4, J=1, mode=mode, contraction=contraction)
    x = torch.randn(2, 7, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, layer.P, dtype=torch.complex128, requires_grad=True)

    def f(x, h0):
        y, h = layer(x, h0, return_state=True)
        return y, torch.view_as_real(h)

    assert torch.autograd.gradcheck(f, (x, h0))
