"""lrnn.nn.S4 and lrnn.nn.S4D: the convolution (kernel) view against the recurrent view, the
DPLR kernel against a dense Krylov kernel, the S4D kernel against the loop oracle of models.md §14,
initializations, bidirectional mode, parameter groups, torch.compile/export and errors."""
from __future__ import annotations

import math

import pytest
import torch

from lrnn.nn import S4, S4D
from lrnn.nn.s4 import hippo_legs, hippo_legs_dplr

from conftest import assert_close_rel, has_cuda_kernel

S4D_INITS = ["diag-lin", "diag-inv", "diag-legs", "diag-real"]


def layers():
    """(name, factory) of every recurrent configuration, float64, no activation (so the linear
    system itself is compared)."""
    cases = [(f"S4D-{i}-{d}", lambda i=i, d=d: S4D(5, 8, init=i, disc=d, activation=None))
             for i in S4D_INITS for d in ("zoh", "bilinear")]
    cases += [(f"S4-{m}-lmax{lm}", lambda m=m, lm=lm: S4(5, 8, l_max=lm, step_mode=m, activation=None))
              for m in ("diagonal", "dense") for lm in (8, 31, 64)]
    return cases


def run_steps(layer, x):
    state = layer.initial_state(x.shape[0], dtype=torch.complex128)
    ys = []
    for t in range(x.shape[1]):
        y, state = layer.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1), state


@pytest.mark.parametrize("name,make", layers(), ids=[n for n, _ in layers()])
def test_step_by_step_equals_forward(name, make):
    torch.manual_seed(1)
    layer = make().double()
    x = torch.randn(2, 23, 5, dtype=torch.float64)
    y, last = layer(x, return_state=True)
    y_steps, last_steps = run_steps(layer, x)
    # float64 throughout; S4's eigendecomposition and dense powers cost a few digits
    assert_close_rel(y_steps, y, torch.float64, factor=1e5, what="y")
    assert_close_rel(last_steps, last, torch.float64, factor=1e5, what="state")


@pytest.mark.parametrize("name,make", layers(), ids=[n for n, _ in layers()])
def test_chunked_forward_equals_whole(name, make):
    torch.manual_seed(2)
    layer = make().double()
    x = torch.randn(3, 40, 5, dtype=torch.float64)
    y, last = layer(x, return_state=True)
    y1, s1 = layer(x[:, :13], return_state=True)
    y2, s2 = layer(x[:, 13:], s1, return_state=True)
    assert_close_rel(torch.cat([y1, y2], 1), y, torch.float64, factor=1e5, what="y")
    assert_close_rel(s2, last, torch.float64, factor=1e5, what="state")


def dense_krylov_kernel(layer: S4, L: int) -> torch.Tensor:
    """K[l] = C dA^l dB of the full N-state system, built densely in float64 from the parameters:
    A = diag(Λ, conj Λ) − p p* with p = (P, conj P), bilinear dA, dB, and C = C̃ (I − dA^l_max)^{-1}."""
    dt = torch.exp(layer.inv_dt.detach().double())[:, 0]
    lam = torch.complex(-torch.exp(layer.A_real.detach().double()), -layer.A_imag.detach().double())
    B, P, Ct = (torch.view_as_complex(t.detach().double()) for t in (layer.B, layer.P, layer.C))
    out = []
    for h in range(lam.shape[0]):
        lf = torch.cat([lam[h], lam[h].conj()])
        p = torch.cat([P[h], P[h].conj()])
        b = torch.cat([B[h], B[h].conj()])
        ct = torch.cat([Ct[0, h], Ct[0, h].conj()])
        A = torch.diag(lf) - torch.outer(p, p.conj())
        I = torch.eye(len(lf), dtype=A.dtype)
        inv = torch.linalg.inv(I - dt[h] / 2 * A)
        dA, dB = inv @ (I + dt[h] / 2 * A), inv @ b * dt[h]
        c = ct @ torch.linalg.inv(I - torch.linalg.matrix_power(dA, layer.l_max))
        row, v = [], dB
        for _ in range(L):
            row.append((c @ v).real)
            v = dA @ v
        out.append(torch.stack(row))
    return torch.stack(out)


@pytest.mark.parametrize("l_max,L", [(16, 16), (33, 20), (64, 64), (8, 30)])
def test_dplr_kernel_equals_dense_krylov_kernel(l_max, L):
    torch.manual_seed(3)
    layer = S4(3, 8, l_max=l_max).double()
    assert_close_rel(layer.kernel(L)[0], dense_krylov_kernel(layer, L), torch.float64, factor=1e5)


def test_s4d_kernel_matches_the_loop_oracle():
    """models.md §14: w = C B (exp(dt Λ) − 1)/Λ, K[l] = 2 Re sum_n w exp(dt Λ l) (ZOH), and the
    bilinear form dA = (1 + dtΛ/2)/(1 − dtΛ/2), w = C B dt/(1 − dtΛ/2), K[l] = 2 Re sum_n w dA^l."""
    torch.manual_seed(4)
    L = 50
    for disc in ("zoh", "bilinear"):
        layer = S4D(3, 10, disc=disc, init="diag-inv").double()
        dt = torch.exp(layer.inv_dt.detach())
        lam = torch.complex(-torch.exp(layer.A_real.detach()), -layer.A_imag.detach())
        B, C = torch.view_as_complex(layer.B.detach()), torch.view_as_complex(layer.C.detach())[0]
        K = torch.zeros(3, L, dtype=torch.float64)
        for h in range(3):
            for n in range(5):
                x = dt[h, 0] * lam[h, n]
                if disc == "zoh":
                    w, a = C[h, n] * B[h, n] * (torch.exp(x) - 1) / lam[h, n], torch.exp(x)
                else:
                    w, a = C[h, n] * B[h, n] * dt[h, 0] / (1 - x / 2), (1 + x / 2) / (1 - x / 2)
                for l in range(L):
                    K[h, l] += 2 * (w * a ** l).real
        assert_close_rel(layer.kernel(L)[0], K, torch.float64, factor=1e4, what=disc)


def test_hippo_dplr_is_similar_to_legs():
    """The DPLR form (both conjugate halves) has the spectrum of HiPPO-LegS itself."""
    N = 16
    A, _, _ = hippo_legs(N)
    lam, B, P = hippo_legs_dplr(N)
    lf, pf = torch.cat([lam, lam.conj()]), torch.cat([P, P.conj()])
    A_dplr = torch.diag(lf) - torch.outer(pf, pf.conj())
    ev_legs = torch.linalg.eigvals(A.to(torch.complex128))
    ev_dplr = torch.linalg.eigvals(A_dplr)
    # LegS's eigenvalues are -1..-N; the matrix is far from normal, so eigvals is accurate to ~1e-5
    key = lambda e: e[torch.argsort(e.real)]   # noqa: E731
    assert (key(ev_legs) - key(ev_dplr)).abs().max() < 1e-3
    assert torch.allclose(lam.real, torch.full_like(lam.real, -0.5)) and (lam.imag < 0).all()


def test_s4d_initializations():
    N = 8
    lin = S4D(2, N, init="diag-lin")
    assert torch.allclose(torch.exp(lin.A_real), torch.full((2, 4), 0.5))
    assert torch.allclose(-lin.A_imag[0], math.pi * torch.arange(4.0))
    inv = S4D(2, N, init="diag-inv")
    n = torch.arange(4.0)
    assert torch.allclose(-inv.A_imag[0], (N / math.pi) * (N / (2 * n + 1) - 1))
    real = S4D(2, N, init="diag-real")
    assert torch.allclose(torch.exp(real.A_real[0]), n + 1) and (real.A_imag == 0).all()
    legs = S4D(2, N, init="diag-legs")
    lam, _, _ = hippo_legs_dplr(N)
    assert torch.allclose(-legs.A_imag[0].double(), lam.imag, atol=1e-5)
    dt = torch.exp(S4D(4096, 2).inv_dt)
    assert dt.min() >= 1e-3 * (1 - 1e-6) and dt.max() <= 1e-1 * (1 + 1e-6)


@pytest.mark.parametrize("cls", [S4, S4D])
def test_odd_d_state_is_an_error(cls):
    with pytest.raises(ValueError, match="d_state=7 must be an even number"):
        cls(4, 7)


@pytest.mark.parametrize("cls", [S4, S4D])
def test_bidirectional_sees_both_directions(cls):
    torch.manual_seed(5)
    layer = cls(3, 8, bidirectional=True, activation=None).double()
    L = 17
    x = torch.randn(2, L, 3, dtype=torch.float64)
    k = layer.kernel(L)
    # dense Toeplitz: lag d >= 0 uses k0[d], lag d < 0 uses k1[-d-1]
    T = torch.zeros(3, L, L, dtype=torch.float64)
    for t in range(L):
        for s in range(L):
            T[:, t, s] = k[0, :, t - s] if s <= t else k[1, :, s - t - 1]
    want = torch.einsum("hts,bsh->bth", T, x) + layer.D.detach() * x
    assert_close_rel(layer(x), want, torch.float64, factor=1e4)
    with pytest.raises(ValueError, match="bidirectional layer has no recurrent state"):
        layer.step(x[:, 0], layer.initial_state(2))


@pytest.mark.parametrize("cls", [S4, S4D])
def test_param_groups_follow_the_lr_tags(cls):
    layer = cls(4, 8, lr=1e-3)
    groups = layer.param_groups(lr=1e-2, weight_decay=0.1)
    tagged = {id(p) for g in groups if g["lr"] == 1e-3 for p in g["params"]}
    assert all(g["weight_decay"] == 0.0 for g in groups if g["lr"] == 1e-3)
    names = {n for n, p in layer.named_parameters() if id(p) in tagged}
    assert names == ({"inv_dt", "A_real", "A_imag", "B", "P"} if cls is S4 else {"inv_dt", "A_real", "A_imag", "B"})
    torch.optim.AdamW(groups)  # accepted by an optimizer as is


@pytest.mark.parametrize("cls", [S4, S4D])
def test_float32_matches_float64_and_gradients_reach_every_parameter(cls):
    torch.manual_seed(6)
    layer = cls(4, 16)
    x = torch.randn(2, 64, 4)
    y = layer(x)
    ref = layer.double()(x.double())
    layer.float()
    assert y.dtype == torch.float32
    assert_close_rel(y, ref, torch.float32, factor=1e4)
    layer(x).square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cls", [S4, S4D])
def test_bfloat16_autocast_runs_the_kernel_in_float32(cls):
    layer = cls(4, 8)
    x = torch.randn(2, 32, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x.bfloat16())
    assert y.dtype == torch.bfloat16
    assert_close_rel(y, layer(x.bfloat16().float()), torch.bfloat16, factor=8)


@pytest.mark.parametrize("cls", [S4, S4D])
def test_compile_and_export(cls):
    torch.manual_seed(7)
    layer = cls(4, 8, activation="gelu")
    x = torch.randn(2, 32, 4)
    want = layer(x)
    compiled = torch.compile(layer, fullgraph=True)
    assert_close_rel(compiled(x), want, torch.float32, factor=64)
    ep = torch.export.export(layer, (x,))
    assert_close_rel(ep.module()(x), want, torch.float32, factor=64)
    # dynamic batch and length (S4: lengths up to l_max share one generated kernel)
    dims = ({0: torch.export.Dim("b"), 1: torch.export.Dim("l", min=2, max=1024)},)
    ep = torch.export.export(layer, (x,), dynamic_shapes=dims)
    x2 = torch.randn(3, 50, 4)
    assert_close_rel(ep.module()(x2), layer(x2), torch.float32, factor=64)


def test_errors_name_the_layer_and_argument():
    layer = S4D(4, 8)
    with pytest.raises(ValueError, match=r"S4D: x must have shape \(B, L, H\) with H = 4"):
        layer(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match=r"S4D: state must be complex of shape"):
        layer(torch.randn(2, 5, 4), torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="S4D: init must be"):
        S4D(4, 8, init="legs")
    with pytest.raises(ValueError, match="S4: step_mode must be"):
        S4(4, 8, step_mode="linear")


@pytest.mark.cuda
@pytest.mark.skipif(not (has_cuda_kernel("lrnn::ssm_kernel") and has_cuda_kernel("lrnn::cauchy")),
                    reason="no CUDA device or no CUDA kernel built")
@pytest.mark.parametrize("cls", [S4, S4D])
def test_cuda_forward_backward_and_state_match_cpu(cls):
    torch.manual_seed(8)
    layer = cls(8, 16, activation=None, **({"step_mode": "dense"} if cls is S4 else {}))
    x, x_next = torch.randn(2, 300, 8), torch.randn(2, 50, 8)
    with torch.no_grad():
        y, last = layer(x, return_state=True)
        y_next = layer(x_next, state=last)
    layer(x).square().sum().backward()
    grads = {n: p.grad.clone() for n, p in layer.named_parameters()}
    layer.zero_grad()
    gpu = layer.cuda()
    with torch.no_grad():
        y_gpu, last_gpu = gpu(x.cuda(), return_state=True)
        y_next_gpu = gpu(x_next.cuda(), state=last_gpu)
    assert_close_rel(y_gpu.cpu(), y, torch.float32, factor=1e4, what="y")
    # The state is compared through what it does: S4's dense state vector lives in a basis whose
    # conditioning (~1e9, see S4's docstring) amplifies rounding differences between devices in
    # directions the output does not see, so the continued outputs are the meaningful check.
    assert_close_rel(y_next_gpu.cpu(), y_next, torch.float32, factor=1e4, what="continued output")
    gpu(x.cuda()).square().sum().backward()
    for n, p in gpu.named_parameters():
        assert_close_rel(p.grad.cpu(), grads[n], torch.float32, factor=1e4, what=n)


@pytest.mark.parametrize("cls,mode", [(S4, "dense"), (S4, "diagonal"), (S4D, None)])
def test_float32_state_and_steps_match_float64(cls, mode):
    """S4's DPLR matrix is far from normal: its eigenvectors and powers are computed in float64 so
    that a float32 layer's carried state keeps float32 accuracy."""
    torch.manual_seed(9)
    layer = cls(8, 16, activation=None, **({"step_mode": mode} if mode else {}))
    x = torch.randn(2, 300, 8)
    with torch.no_grad():
        y, last = layer(x, return_state=True)
        y64, last64 = layer.double()(x.double(), return_state=True)
        layer.float()
        state, ys = layer.initial_state(2), []
        for t in range(x.shape[1]):
            y_t, state = layer.step(x[:, t], state)
            ys.append(y_t)
    assert last.dtype == state.dtype == (torch.complex128 if mode == "diagonal" else torch.complex64)
    assert_close_rel(y, y64, torch.float32, factor=1e3, what="y")
    assert_close_rel(torch.stack(ys, 1), y64, torch.float32, factor=1e3, what="y steps")
    if mode != "diagonal":  # an eigenbasis state is compared through the outputs only
        assert_close_rel(last, last64, torch.float32, factor=1e3, what="state")
        assert_close_rel(state, last64, torch.float32, factor=1e3, what="state steps")
