"""lrnn.nn.Centaurus: each mode's convolution kernel against the formula of models.md §8.1 / §14
(float64, direct causal convolution), both contraction orders, step == forward, chunked streaming ==
full forward, reference initialization, the shape rule, deployment, bf16 autocast, gradients and
argument errors."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

import lrnn  # noqa: F401
from lrnn.nn import Centaurus
from lrnn.nn._lti import use_kernel_order

from layer_testing import (EXACT, assert_rel, check_bf16_autocast, check_chunks_equal_whole,
                           check_compile_and_export, check_gradients_reach_every_parameter,
                           check_step_equals_forward)

MODES = Centaurus.MODES


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def make(mode, c=5, d=4, N=3, r=2, dtype=torch.float64, **kw):
    layer = Centaurus(c, N, r, mode=mode, d_out=d, dtype=dtype, **kw)
    with torch.no_grad():  # move off the symmetric init so that every index matters
        for p in layer.parameters():
            p.mul_(1 + 0.3 * torch.rand_like(p))
    return layer.eval()


def oracle_kernel(layer: Centaurus, L: int) -> torch.Tensor:
    """k[d, c, l] (dws: diagonal in (d, c)) written from the reference formulas, in float64."""
    p = {n: t.detach().double() for n, t in layer.named_parameters()}
    dt = torch.exp(p["log_dt"])
    A = torch.complex(-F.softplus(p["A"][..., 0]), p["A"][..., 1])
    l = torch.arange(L, dtype=torch.float64)

    def basis(dtA):  # exp(Re dtA l) cos(Im dtA l)
        return torch.exp(dtA.real[..., None] * l) * torch.cos(dtA.imag[..., None] * l)

    if layer.mode == "dws":
        k = (p["E"] * dt)[..., None].mul(basis(dt * A)).sum(-2)                       # (c, L)
        return torch.diag_embed(k.t()).permute(1, 2, 0)                               # (c, c, L)
    if layer.mode == "s5":
        Bh = p["B"] * dt[:, None]
        return torch.einsum("dn,nc,nl->dcl", p["C"], Bh, basis(dt * A))
    if layer.mode == "neck":
        Bh = p["B"] * dt[:, None]
        Kr = (p["E"][..., None] * basis(dt[:, None] * A)).sum(1)
        return torch.einsum("dr,rc,rl->dcl", p["C"], Bh, Kr)
    dt = dt[:, None, :]
    return ((p["E"] * dt)[..., None] * basis(dt * A)).sum(-2)


def oracle(layer: Centaurus, x: torch.Tensor) -> torch.Tensor:
    B, L, c = x.shape
    k = oracle_kernel(layer, L)
    y = torch.zeros(B, L, k.shape[0], dtype=torch.float64)
    for t in range(L):
        for s in range(t + 1):
            y[:, t] += x[:, s].double() @ k[:, :, t - s].t()
    return layer.mixer(y)


@pytest.mark.parametrize("contraction", ["kernel", "states", "auto"])
@pytest.mark.parametrize("mode", MODES)
def test_forward_matches_kernel_formula(mode, contraction):
    layer = make(mode, contraction=contraction)
    x = torch.randn(3, 33, 5, dtype=torch.float64)
    assert_rel(layer(x), oracle(layer, x), EXACT, f"{mode}/{contraction}")


@pytest.mark.parametrize("mode", MODES)
def test_step_equals_forward(mode):
    check_step_equals_forward(make(mode), torch.randn(2, 27, 5, dtype=torch.float64))


@pytest.mark.parametrize("mode", MODES)
def test_chunked_streaming_equals_full_forward(mode):
    layer = make(mode, use_activations=True)
    check_chunks_equal_whole(layer, torch.randn(2, 40, 5, dtype=torch.float64), cuts=(1, 2, 9, 25))


def test_reference_initialization():
    c, d, N, r = 6, 4, 8, 3
    for mode in MODES:
        layer = Centaurus(c, N, r, mode=mode, d_out=d, dtype=torch.float64)
        A = layer.A.detach()
        assert_rel(-F.softplus(A[..., 0]), torch.full_like(A[..., 0], -0.5), 1e-12, f"{mode} Re A")
        im = math.pi * torch.arange(N, dtype=torch.float64)                 # S4D-Lin, per block
        assert_rel(A[..., 1], im.repeat(r) if mode == "s5" else im.expand_as(A[..., 1]), 1e-12, f"{mode} Im A")
        assert layer.A.sensitive and layer.log_dt.sensitive
        count = {"dws": c, "full": d, "s5": r, "neck": r}[mode]
        want_dt = torch.logspace(-3, -1, count, dtype=torch.float64)
        dt = torch.exp(layer.log_dt.detach())
        dt = dt[:, 0] if mode in ("dws", "full") else dt[::N] if mode == "s5" else dt
        assert_rel(dt, want_dt, 1e-12, f"{mode} geometric dt")
        if mode in ("s5", "neck"):
            assert torch.equal(layer.B.detach(), torch.full_like(layer.B, 1 / math.sqrt(c)))
    assert Centaurus(c, N, r, mode="s5").A.shape == (r * N, 2)
    assert Centaurus(c, N, r, mode="neck", d_out=d).C.shape == (d, r)
    assert Centaurus(c, N, r, mode="full", d_out=d).E.shape == (d, c, N)
    assert Centaurus(c, N, r, mode="dws").E.shape == (c, N)


def test_contraction_rule_from_shapes():
    """Kernel order when channels are few relative to batch and states, states order otherwise
    (models.md §8.3: use the kernel iff 1/c + 1/d > 1/batch + 1/N)."""
    assert use_kernel_order(64, 4, 4, 64)
    assert not use_kernel_order(16, 512, 512, 64)
    assert use_kernel_order(8, 2, 3, 5) == (1 / 2 + 1 / 3 > 1 / 8 + 1 / 5)


@pytest.mark.parametrize("mode", MODES)
def test_compile_and_export(mode):
    check_compile_and_export(make(mode, dtype=torch.float32), torch.randn(2, 16, 5))


@pytest.mark.parametrize("mode", MODES)
def test_bf16_autocast(mode):
    check_bf16_autocast(make(mode, dtype=torch.float32).train(), torch.randn(2, 64, 5))


@pytest.mark.parametrize("mode", MODES)
def test_gradients_reach_every_parameter(mode):
    layer = make(mode, use_activations=True).train()
    check_gradients_reach_every_parameter(layer, torch.randn(2, 21, 5, dtype=torch.float64))


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        Centaurus(4, mode="depthwise")
    with pytest.raises(ValueError, match="contraction"):
        Centaurus(4, contraction="best")
    with pytest.raises(ValueError, match="norm"):
        Centaurus(4, mode="dws", norm="group")
    layer = make("neck")
    with pytest.raises(ValueError, match="argument 'x'"):
        layer(torch.randn(2, 5, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="argument 'state'"):
        layer(torch.randn(2, 5, 5, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.complex128))
    with pytest.raises(ValueError, match="argument 'state'"):
        layer.step(torch.randn(2, 5, dtype=torch.float64), torch.zeros(2, 2, 3))


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_through_carried_state(mode):
    layer = make(mode, c=2, d=2, N=2, r=2)
    x = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)
    s0 = torch.randn(2, *layer.state_shape, dtype=torch.complex128, requires_grad=True)

    def f(x, s0):
        y, s = layer(x, s0, return_state=True)
        return y, torch.view_as_real(s)

    assert torch.autograd.gradcheck(f, (x, s0))


@pytest.mark.parametrize("mode", MODES)
def test_inference_run_mode_streams_chunks(mode):
    """The reference's set_run_mode('inference'): chunks fed one call at a time give the output of
    one call on the whole sequence; reset_state starts a new stream."""
    layer = make(mode)
    x = torch.randn(2, 30, 5, dtype=torch.float64)
    want = layer(x)
    layer.set_run_mode("inference")
    for _ in range(2):
        got = torch.cat([layer(x[:, a:b]) for a, b in ((0, 4), (4, 5), (5, 19), (19, 30))], 1)
        assert_rel(got, want, EXACT, mode)
        layer.reset_state()
    layer(x[:, :4])                                   # leaves a stream state behind
    layer.set_run_mode("training")                    # every training-mode call starts from zero
    for _ in range(2):
        assert_rel(layer(x[:, 4:]), oracle(layer, x[:, 4:]), EXACT, "training mode starts from zero")
    with pytest.raises(ValueError, match="run_mode"):
        layer.set_run_mode("streaming")
