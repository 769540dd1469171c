"""lrnn.nn.LRU: recurrence against a float64 loop oracle, step == forward, chunked == whole,
scan == convolution, ring initialization, optimizer groups, deployment, bf16 autocast, gradients,
argument errors."""
from __future__ import annotations

import math

import pytest
import torch

import lrnn  # noqa: F401
from lrnn.nn import LRU

from layer_testing import (EXACT, assert_rel, check_bf16_autocast, check_chunks_equal_whole,
                           check_compile_and_export, check_gradients_reach_every_parameter,
                           check_step_equals_forward)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def make(H=6, N=10, dtype=torch.float64, **kw):
    kw.setdefault("r_min", 0.4)
    return LRU(H, N, dtype=dtype, **kw)


def lru_oracle(layer: LRU, x: torch.Tensor) -> torch.Tensor:
    """models.md §14: x = lambda x + gamma (B u), y = Re(C x) + D u, parameters mapped here."""
    p = {n: t.detach().double() for n, t in layer.named_parameters()}
    lam = torch.exp(-torch.exp(p["nu_log"]) + 1j * torch.exp(p["theta_log"]))
    Bn = torch.exp(p["gamma_log"])[:, None] * (p["B_re"] + 1j * p["B_im"])
    C = p["C_re"] + 1j * p["C_im"]
    h = torch.zeros(x.shape[0], lam.shape[0], dtype=torch.complex128)
    ys = []
    for t in range(x.shape[1]):
        h = lam * h + x[:, t].double().to(torch.complex128) @ Bn.t()
        ys.append((h @ C.t()).real + p["D"] * x[:, t].double())
    return torch.stack(ys, 1)


@pytest.mark.parametrize("mode,contraction", [("scan", "auto"), ("conv", "kernel"), ("conv", "states")])
def test_forward_matches_loop_oracle(mode, contraction):
    layer = make(mode=mode, contraction=contraction)
    x = torch.randn(3, 41, 6, dtype=torch.float64)
    assert_rel(layer(x), lru_oracle(layer, x), EXACT, f"{mode}/{contraction}")


def test_step_equals_forward():
    check_step_equals_forward(make(), torch.randn(2, 25, 6, dtype=torch.float64))


@pytest.mark.parametrize("mode,contraction", [("scan", "auto"), ("conv", "kernel"), ("conv", "states")])
def test_chunks_with_carried_state_equal_whole(mode, contraction):
    check_chunks_equal_whole(make(mode=mode, contraction=contraction), torch.randn(2, 30, 6, dtype=torch.float64))


def test_scan_equals_conv_long_memory():
    """|lambda| close to 1 (r_min = 0.99): long memory, where a truncated or mis-scaled convolution
    kernel would show."""
    layer = make(r_min=0.99, r_max=0.999)
    x = torch.randn(2, 400, 6, dtype=torch.float64)
    y = layer(x)
    layer.mode = "conv"
    assert_rel(layer(x), y, EXACT, "conv vs scan")


def test_ring_init_statistics():
    """|lambda| in [r_min, r_max] with |lambda|^2 uniform over the ring, phases in [0, max_phase],
    gamma = sqrt(1 - |lambda|^2), B ~ N(0, 1/(2H)), C ~ N(0, 1/N) (std within 10%)."""
    H, N, r_min, r_max, max_phase = 64, 4096, 0.5, 0.9, math.pi / 10
    layer = LRU(H, N, r_min=r_min, r_max=r_max, max_phase=max_phase, dtype=torch.float64)
    lam, *_ = layer.discrete()
    mod, phase = lam.abs(), torch.exp(layer.theta_log.detach())
    assert mod.min() >= r_min - 1e-12 and mod.max() <= r_max + 1e-12
    u = (mod**2 - r_min**2) / (r_max**2 - r_min**2)     # uniform on [0, 1] if the ring init is right
    assert abs(u.mean().item() - 0.5) < 0.03 and abs(u.var().item() - 1 / 12) < 0.01
    assert phase.min() >= 0 and phase.max() <= max_phase
    assert_rel(torch.exp(layer.gamma_log.detach()), torch.sqrt(1 - mod**2), 1e-12, "gamma")
    assert abs(layer.B_re.std().item() * math.sqrt(2 * H) - 1) < 0.1
    assert abs(layer.C_im.std().item() * math.sqrt(N) - 1) < 0.1


def test_param_groups_follow_the_recipe():
    layer = make()
    groups = layer.param_groups(lr=1e-3, weight_decay=0.05)
    ssm = {id(p) for p in groups[0]["params"]}
    assert ssm == {id(getattr(layer, n)) for n in ("nu_log", "theta_log", "gamma_log", "B_re", "B_im")}
    assert groups[0]["lr"] == pytest.approx(5e-4) and groups[0]["weight_decay"] == 0.0
    assert {id(p) for p in groups[1]["params"]} == {id(layer.C_re), id(layer.C_im), id(layer.D)}
    assert groups[1]["weight_decay"] == 0.05
    torch.optim.AdamW(groups)  # a valid optimizer spec
    assert layer.nu_log._optim == {"lr_factor": 0.5, "weight_decay": 0.0}


@pytest.mark.parametrize("mode", ["scan", "conv"])
def test_compile_and_export(mode):
    check_compile_and_export(make(dtype=torch.float32, mode=mode), torch.randn(2, 16, 6))


@pytest.mark.parametrize("mode", ["scan", "conv"])
def test_bf16_autocast(mode):
    check_bf16_autocast(make(dtype=torch.float32, mode=mode), torch.randn(2, 64, 6))


@pytest.mark.parametrize("mode", ["scan", "conv"])
def test_gradients_reach_every_parameter(mode):
    check_gradients_reach_every_parameter(make(mode=mode), torch.randn(2, 21, 6, dtype=torch.float64))


def test_gradcheck_through_both_modes():
    layer = make(H=3, N=4)
    x = torch.randn(1, 9, 3, dtype=torch.float64, requires_grad=True)
    for mode in ("scan", "conv"):
        layer.mode = mode
        assert torch.autograd.gradcheck(lambda x: layer(x), (x,))


def test_bad_arguments():
    with pytest.raises(ValueError, match="r_min"):
        LRU(4, 8, r_min=0.9, r_max=0.5)
    with pytest.raises(ValueError, match="mode"):
        LRU(4, 8, mode="fft")
    layer = make()
    with pytest.raises(ValueError, match="argument 'x'"):
        layer(torch.randn(2, 5, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match="argument 'state'"):
        layer(torch.randn(2, 5, 6, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.complex128))
    with pytest.raises(ValueError, match="argument 'state'"):
        layer.step(torch.randn(2, 6, dtype=torch.float64), torch.zeros(2, 10))
