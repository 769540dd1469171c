"""Tests of the Mamba and STREAM layers (lrnn.nn): mamba_ssm-compatible parameters and init, the
forward against a pure-PyTorch block built on the reference scan, step() == forward(), chunked
forward with carried state == whole, torch.compile(fullgraph) and torch.export, bf16 autocast."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lrnn.nn import STREAM, Mamba
from lrnn.reference import selective_scan_ref


def make(cls=Mamba, d_model=24, dtype=torch.float64, **kw):
    torch.manual_seed(0)
    m = cls(d_model, d_state=8, **kw).to(dtype)
    with torch.no_grad():  # non-trivial values everywhere (the real init has zero conv bias etc.)
        m.conv1d.bias.uniform_(-0.3, 0.3)
        m.D.uniform_(0.5, 1.5)
    return m


def block_ref(m, x, dt=None):
    """The Mamba block written out on lrnn.reference.selective_scan_ref, channel-first like mamba_ssm."""
    L = x.shape[1]
    xz = m.in_proj(x).transpose(1, 2)
    xi, z = xz.chunk(2, dim=1)
    xc = F.silu(m.conv1d(xi)[..., :L])
    dlt, Bm, Cm = torch.split(m.x_proj(xc.transpose(1, 2)), [m.dt_rank, m.d_state, m.d_state], dim=-1)
    delta = (dlt @ m.dt_proj.weight.t()).transpose(1, 2)
    dt_A = None
    if isinstance(m, STREAM):
        rate = F.softplus(m.dtA_bias)
        dt_A = (torch.ones_like(x[..., 0]) if dt is None else dt)[:, None, :] * rate[None, :, None]
    y, _ = selective_scan_ref(xc, delta, -torch.exp(m.A_log), Bm.transpose(1, 2), Cm.transpose(1, 2), m.D, z,
                              m.dt_proj.bias, True, None, dt_A)
    return m.out_proj(y.transpose(1, 2))


def test_parameters_match_mamba_ssm():
    m = Mamba(40, d_state=16, d_conv=4, expand=2, dtype=torch.float32)
    d_inner, dt_rank = 80, math.ceil(40 / 16)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {
        "in_proj.weight": (2 * d_inner, 40), "conv1d.weight": (d_inner, 1, 4), "conv1d.bias": (d_inner,),
        "x_proj.weight": (dt_rank + 32, d_inner), "dt_proj.weight": (d_inner, dt_rank), "dt_proj.bias": (d_inner,),
        "A_log": (d_inner, 16), "D": (d_inner,), "out_proj.weight": (40, d_inner)}
    torch.testing.assert_close(m.A_log, torch.log(torch.arange(1, 17.0)).repeat(d_inner, 1))
    assert torch.equal(m.D.detach(), torch.ones(d_inner))
    dt = F.softplus(m.dt_proj.bias.detach())
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001
    bound = dt_rank ** -0.5
    assert m.dt_proj.weight.abs().max() <= bound
    assert m.A_log._no_weight_decay and m.D._no_weight_decay and m.dt_proj.bias._no_reinit
    groups = m.param_groups(1e-3, 0.1)
    assert {id(p) for p in groups[1]["params"]} == {id(m.A_log), id(m.D)} and groups[1]["weight_decay"] == 0.0


@pytest.mark.parametrize("cls", [Mamba, STREAM])
def test_forward_matches_reference_block(cls):
    m = make(cls)
    x = torch.randn(2, 37, 24, dtype=torch.float64)
    dt = torch.rand(2, 37, dtype=torch.float64) if cls is STREAM else None
    y = m(x) if dt is None else m(x, dt)
    torch.testing.assert_close(y, block_ref(m, x, dt))
    if cls is STREAM:
        torch.testing.assert_close(m(x), block_ref(m, x, None))


@pytest.mark.parametrize("cls", [Mamba, STREAM])
def test_step_equals_forward(cls):
    m = make(cls)
    x = torch.randn(2, 21, 24, dtype=torch.float64)
    dt = torch.rand(2, 21, dtype=torch.float64) if cls is STREAM else None
    args = (x,) if dt is None else (x, dt)
    y, final = m(*args, return_state=True)
    state = m.initial_state(2)
    ys = []
    for t in range(21):
        yt, state = m.step(x[:, t], state) if dt is None else m.step(x[:, t], state, dt[:, t])
        ys.append(yt)
    torch.testing.assert_close(torch.stack(ys, 1), y)
    torch.testing.assert_close(state[0], final[0])
    torch.testing.assert_close(state[1], final[1])


@pytest.mark.parametrize("cls", [Mamba, STREAM])
@pytest.mark.parametrize("split", [1, 2, 30])
def test_chunked_forward_equals_whole(cls, split):
    m = make(cls)
    x = torch.randn(2, 70, 24, dtype=torch.float64)
    dt = torch.rand(2, 70, dtype=torch.float64) if cls is STREAM else None
    kw = {} if dt is None else {"dt": dt}
    y, final = m(x, **kw, return_state=True)
    kw1 = {} if dt is None else {"dt": dt[:, :split]}
    kw2 = {} if dt is None else {"dt": dt[:, split:]}
    y1, s1 = m(x[:, :split], **kw1, return_state=True)
    y2, s2 = m(x[:, split:], **kw2, state=s1, return_state=True)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y)
    torch.testing.assert_close(s2[1], final[1])
    torch.testing.assert_close(s2[0], final[0])


def test_gradients_through_state_and_dt():
    m = make(STREAM)
    x = torch.randn(2, 40, 24, dtype=torch.float64)
    dt = torch.rand(2, 40, dtype=torch.float64)
    y, (conv_state, h) = m(x, dt, state=m.initial_state(2), return_state=True)
    (y.sum() + h.sum()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # every parameter gradient (dtA_bias included) against the reference block
    got = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    block_ref(m, x, dt).sum().backward()
    m2 = make(STREAM)
    m2(x, dt).sum().backward()
    for n, p in m2.named_parameters():
        torch.testing.assert_close(p.grad, dict(m.named_parameters())[n].grad, msg=n)
    assert got["dtA_bias"].abs().sum() > 0


@pytest.mark.parametrize("cls", [Mamba, STREAM])
def test_compile_fullgraph(cls):
    m = make(cls, dtype=torch.float32)
    x = torch.randn(2, 33, 24, requires_grad=True)
    args = (x,) if cls is Mamba else (x, torch.rand(2, 33))
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    y = compiled(*args)
    torch.testing.assert_close(y, m(*args))
    y.sum().backward()
    assert x.grad is not None


@pytest.mark.parametrize("cls", [Mamba, STREAM])
def test_export_dynamic(cls):
    m = make(cls, dtype=torch.float32)
    x = torch.randn(2, 33, 24)
    args = (x,) if cls is Mamba else (x, torch.rand(2, 33))
    batch, length = torch.export.Dim("batch", min=1), torch.export.Dim("length", min=2)
    shapes = ({0: batch, 1: length},) if cls is Mamba else ({0: batch, 1: length}, {0: batch, 1: length})
    ep = torch.export.export(m, args, dynamic_shapes=shapes)
    x3 = torch.randn(3, 70, 24)
    args3 = (x3,) if cls is Mamba else (x3, torch.rand(3, 70))
    torch.testing.assert_close(ep.module()(*args3), m(*args3))


@pytest.mark.parametrize("cls", [Mamba, STREAM])
def test_bf16_autocast(cls):
    m = make(cls, dtype=torch.float32)
    x = torch.randn(2, 50, 24)
    args = (x,) if cls is Mamba else (x, torch.rand(2, 50))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(*args)
    assert y.dtype == torch.bfloat16
    ref = m(*args)
    assert (y.float() - ref).abs().max() <= 0.05 * ref.abs().max()
    y.float().sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_short_sequence_conv_state():
    """A sequence shorter than the conv kernel still leaves a state that continues correctly."""
    m = make(Mamba)
    x = torch.randn(1, 7, 24, dtype=torch.float64)
    y1, s = m(x[:, :2], return_state=True)
    y2 = m(x[:, 2:], state=s)
    torch.testing.assert_close(torch.cat([y1, y2], 1), m(x))
