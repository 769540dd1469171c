"""lrnn.nn.EventSSM, lrnn.nn.S7 and lrnn.models.EventClassifier: outputs and gradients against
float64 loop oracles written from models.md §14, step() == forward(), chunked forward with a
carried state == whole, subsampling/pooling alignment, padding semantics, the S7 Lambda maps,
torch.compile(fullgraph=True) and torch.export, and bad input."""
import math

import pytest
import torch

from lrnn.models import EventClassifier
from lrnn.nn import S7, EventSSM
from lrnn.nn.event_ssm import event_pool, gaps_from_timestamps, read_index
from lrnn.reference import mimo_selective_scan_ref
from lrnn.nn.s5 import hippo_legs_normal

DISCS = ["zoh", "dirac", "async"]


def data(B=2, L=30, H=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, H, generator=g)
    dt = torch.rand(B, L, generator=g) * 1.5
    dt[:, ::4] = 0
    return x, dt


def scale_of(disc, lam, d, tau):
    if disc == "zoh":
        return (torch.exp(lam * d * tau) - 1) / lam
    if disc == "dirac":
        return torch.ones_like(lam)
    return (torch.exp(lam * d) - 1) / lam


def event_ssm_oracle(m: EventSSM, x, dt):
    """§14 Event-SSM loop in float64 from the layer's parameters (stride 1)."""
    lam = m.Lambda().detach().cdouble()
    d = m.delta().detach().double()
    Bm = torch.view_as_complex(m.B.detach().double().contiguous())
    Cm = torch.view_as_complex(m.C.detach().double().contiguous())
    D = m.D.detach().double()
    u = x.double()
    h = torch.zeros(x.shape[0], lam.shape[0], dtype=torch.complex128)
    ys = []
    for k in range(x.shape[1]):
        tau = dt[:, k, None].double()
        h = torch.exp(lam * d * tau) * h + scale_of(m.discretization, lam, d, tau) * (u[:, k].to(Bm.dtype) @ Bm.T)
        y = (h @ Cm.T).real * (2 if m.conj_sym else 1)
        ys.append(y + (u[:, k] * D if D.dim() == 1 else u[:, k] @ D.T))
    return torch.stack(ys, 1)


def s7_oracle(m: S7, x, dt, params=None):
    """§14 S7 loop (official semantics) in float64; differentiable in `params` when given."""
    p = params or {n: t.detach().double() for n, t in m.named_parameters()}
    w = torch.complex(p["Lambda_re"], p["Lambda_im"])
    if m.log_a:
        lam = -torch.exp(w)
    elif m.stablessm_a:
        lam = -1 / (m.a * w * w + m.b)
    else:
        lam = w
    u = x.double()
    z = u @ p["x_proj.weight"].T + p["x_proj.bias"]
    r, P, Hi, Ho = m.dt_rank, m.P, m.d_model, m.d_out
    s, Bp, Cp = z[..., :r], z[..., r:r + 2 * P * Hi], z[..., r + 2 * P * Hi:]
    delta = m.step_rescale * torch.nn.functional.softplus(s @ p["step_proj_kernel"] + p["step_proj_bias"])
    Bk = torch.complex(*Bp.unflatten(-1, (P, Hi, 2)).unbind(-1))
    Ck = torch.complex(*Cp.unflatten(-1, (Ho, -1, 2)).unbind(-1))
    B_, L = x.shape[:2]
    v = (Bk @ u.to(Bk.dtype)[..., None])[..., 0]

    def scan(order):
        h = torch.zeros(B_, P, dtype=torch.complex128)
        out = [None] * L
        for k in order:
            tau = dt[:, k, None].double()
            h = torch.exp(lam * delta[:, k] * tau) * h + scale_of(m.discretization, lam, delta[:, k], tau) * v[:, k]
            out[k] = h
        return torch.stack(out, 1)

    hs = scan(range(L))
    if m.bidirectional:
        hs = torch.cat([hs, scan(range(L - 1, -1, -1))], -1)
    y = (Ck @ hs[..., None])[..., 0].real * (2 if m.conj_sym else 1)
    D = p["D"]
    return y + (u * D if D.dim() == 1 else u @ D.T)


@pytest.mark.parametrize("disc", DISCS)
@pytest.mark.parametrize("conj_sym,d_out", [(True, None), (False, 7)])
def test_event_ssm_matches_oracle_and_step(disc, conj_sym, d_out):
    x, dt = data()
    m = EventSSM(12, 16, d_out, block_size=8, discretization=disc, conj_sym=conj_sym, clip_eigs=True)
    y = m(x, dt)
    want = event_ssm_oracle(m, x, dt)
    assert (y.double() - want).abs().max() / want.abs().max() < 1e-5
    state, ys = m.initial_state(2), []
    for k in range(x.shape[1]):
        yk, state = m.step(x[:, k], state, dt[:, k])
        ys.append(yk)
    torch.testing.assert_close(torch.stack(ys, 1), y, rtol=1e-5, atol=1e-5)
    y1, s1 = m(x[:, :13], dt[:, :13], return_state=True)
    y2, s2 = m(x[:, 13:], dt[:, 13:], s1, return_state=True)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, rtol=1e-4, atol=1e-4)  # matmul blocking differs by length
    torch.testing.assert_close(s2, state, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("reparam", [{}, {"log_a": True}, {"stablessm_a": True}])
@pytest.mark.parametrize("disc", DISCS)
def test_s7_matches_oracle_and_step(reparam, disc):
    x, dt = data()
    m = S7(12, 8, discretization=disc, **reparam)
    y = m(x, dt)
    want = s7_oracle(m, x, dt)
    assert (y.double() - want).abs().max() / want.abs().max() < 1e-4
    state, ys = m.initial_state(2), []
    for k in range(x.shape[1]):
        yk, state = m.step(x[:, k], state, dt[:, k])
        ys.append(yk)
    torch.testing.assert_close(torch.stack(ys, 1), y, rtol=1e-4, atol=1e-4)
    y1, s1 = m(x[:, :11], dt[:, :11], return_state=True)
    y2, _ = m(x[:, 11:], dt[:, 11:], s1, return_state=True)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, rtol=1e-4, atol=1e-4)  # matmul blocking differs by length


def test_s7_bidirectional_and_d_matrix_match_oracle():
    x, dt = data()
    m = S7(12, 8, 5, bidirectional=True, discretization="zoh", conj_sym=False)
    want = s7_oracle(m, x, dt)
    y = m(x, dt)
    assert (y.double() - want).abs().max() / want.abs().max() < 1e-4
    with pytest.raises(ValueError, match="bidirectional"):
        m.step(x[:, 0], m.initial_state(2), dt[:, 0])


def test_s7_gradients_match_oracle_autograd():
    x, dt = data(L=17)
    m = S7(12, 8, stablessm_a=True, discretization="async")
    y = m(x, dt)
    gy = torch.randn_like(y)
    got = dict(zip([n for n, _ in m.named_parameters()], torch.autograd.grad((y * gy).sum(), list(m.parameters()))))
    params = {n: t.detach().double().requires_grad_() for n, t in m.named_parameters()}
    want = s7_oracle(m, x, dt, params)
    grads = torch.autograd.grad((want * gy.double()).sum(), list(params.values()))
    for (n, _), g in zip(params.items(), grads):
        assert (got[n].double() - g).abs().max() / g.abs().max().clamp(min=1e-3) < 2e-3, n


def test_event_ssm_gradients_match_oracle_autograd():
    x, dt = data(L=17)
    m = EventSSM(12, 8, discretization="zoh")
    y = m(x, dt)
    gy = torch.randn_like(y)
    names = [n for n, _ in m.named_parameters()]
    got = dict(zip(names, torch.autograd.grad((y * gy).sum(), list(m.parameters()))))
    # the oracle in float64, differentiable through the same parameterization
    m64 = EventSSM(12, 8, discretization="zoh").double()
    m64.load_state_dict({k: v.double() for k, v in m.state_dict().items()})
    lam = m64.Lambda()
    d = m64.delta()
    Bm, Cm = torch.view_as_complex(m64.B), torch.view_as_complex(m64.C)
    h = torch.zeros(2, 4, dtype=torch.complex128)
    ys = []
    for k in range(17):
        tau = dt[:, k, None].double()
        h = torch.exp(lam * d * tau) * h + scale_of("zoh", lam, d, tau) * (x[:, k].double().to(Bm.dtype) @ Bm.T)
        ys.append(2 * (h @ Cm.T).real + x[:, k].double() * m64.D)
    want = torch.autograd.grad((torch.stack(ys, 1) * gy.double()).sum(), list(m64.parameters()))
    for n, g in zip(names, want):
        assert (got[n].double() - g).abs().max() / g.abs().max() < 1e-3, n


@pytest.mark.parametrize("cls", [EventSSM, S7])
@pytest.mark.parametrize("convention", ["next", "previous"])
def test_subsampling_reads_the_convention_event(cls, convention):
    x, dt = data(L=30)
    torch.manual_seed(0)
    full = cls(12, 8, stride=1)
    torch.manual_seed(0)
    sub = cls(12, 8, stride=4, pooling_mode="last", dt_convention=convention)
    sub.load_state_dict(full.state_dict())
    y, dt_p = sub(x, dt, return_dt=True)
    idx = slice(0, 28, 4) if convention == "next" else slice(3, 28, 4)
    torch.testing.assert_close(y, full(x, dt)[:, idx], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dt_p, dt[:, :28].reshape(2, 7, 4).sum(-1), rtol=1e-4, atol=1e-4)
    # chunks that are whole groups continue exactly
    y1, s1 = sub(x[:, :12], dt[:, :12], return_state=True)
    y2 = sub(x[:, 12:], dt[:, 12:], s1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, rtol=1e-4, atol=1e-4)  # matmul blocking differs by length


def test_event_pool_modes():
    x, dt = data(L=10)
    xp, dp = event_pool(x, dt, 3, "avgpool")
    torch.testing.assert_close(xp, x[:, :9].reshape(2, 3, 3, 12).mean(2), rtol=1e-4, atol=1e-4)
    xp, _ = event_pool(x, dt, 3, "timepool")
    w = dt[:, :9].reshape(2, 3, 3, 1) + 1e-6
    torch.testing.assert_close(xp, (x[:, :9].reshape(2, 3, 3, 12) * w).sum(2) / w.sum(2), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dp, dt[:, :9].reshape(2, 3, 3).sum(-1), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="pooling_mode"):
        event_pool(x, dt, 3, "max")


@pytest.mark.parametrize("disc", DISCS)
def test_padding_is_exact(disc):
    x, dt = data(L=20)
    m = EventSSM(12, 8, discretization=disc)
    y, s = m(x, dt, return_state=True)
    xp = torch.cat([x, torch.zeros(2, 7, 12)], 1)
    dtp = torch.cat([dt, torch.zeros(2, 7)], 1)
    yp, sp = m(xp, dtp, return_state=True)
    torch.testing.assert_close(yp[:, :20], y, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sp, s, rtol=1e-4, atol=1e-4)


def test_gaps_from_timestamps():
    t = torch.tensor([[0.0, 1.0, 3.0, 6.0, 0.0]])
    torch.testing.assert_close(gaps_from_timestamps(t, "next", torch.tensor([4])), torch.tensor([[1.0, 2.0, 3.0, 0, 0]]), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gaps_from_timestamps(t, "previous", torch.tensor([4])),
                               torch.tensor([[0.0, 1.0, 2.0, 3.0, 0]]))


def test_s7_lambda_maps():
    # the stable (paper) map inverts its init: the layer starts at the HiPPO spectrum
    lam0, _ = hippo_legs_normal(8)
    m = S7(4, 8, stablessm_a=True)
    torch.testing.assert_close(m.Lambda().detach().cdouble(), lam0[:4], rtol=1e-4, atol=1e-4)
    m = S7(4, 8, log_a=True)
    torch.testing.assert_close(m.Lambda().detach().cdouble(), lam0[:4], rtol=1e-5, atol=1e-5)
    # the official maps, kept behind the flag: HiPPO -0.5 -> about -1.147i (models.md §7.5), and
    # log_a's log1p init gives -1 - Lambda0
    m = S7(4, 8, stablessm_a=True, official_reparam=True)
    w = math.sqrt((-1 / -0.5 - 0.5) / 1.0)
    with torch.no_grad():
        m.Lambda_re.fill_(w)
        m.Lambda_im.zero_()
    lam = m.Lambda().detach()
    assert abs(lam[0].real) < 1e-6 and abs(lam[0].imag + 1.147) < 1e-3
    m = S7(4, 8, log_a=True, official_reparam=True)
    torch.testing.assert_close(m.Lambda().detach().cdouble(), -1 - lam0[:4], rtol=1e-5, atol=1e-5)


def test_s7_dt_init_is_mamba_style():
    m = S7(32, 64, dt_min=1e-3, dt_max=1e-1)
    dt0 = torch.nn.functional.softplus(m.step_proj_bias)
    assert dt0.min() >= 1e-3 * 0.999 and dt0.max() <= 1e-1 * 1.001
    bound = m.dt_rank ** -0.5
    assert m.step_proj_kernel.abs().max() <= bound


@pytest.mark.parametrize("cls", [EventSSM, S7])
def test_compile_and_export(cls):
    x, dt = data(L=16)
    m = cls(12, 8)
    y = m(x, dt)
    torch.testing.assert_close(torch.compile(m, fullgraph=True)(x, dt), y, rtol=1e-4, atol=1e-4)
    ep = torch.export.export(m, (x, dt))
    torch.testing.assert_close(ep.module()(x, dt), y, rtol=1e-4, atol=1e-4)


def test_classifier_padding_heads_compile():
    g = torch.Generator().manual_seed(0)
    tok = torch.randint(0, 40, (3, 48), generator=g)
    dt = torch.rand(3, 48, generator=g)
    for ssm in ("event_ssm", "s7"):
        for head in ("pool", "timepool", "last"):
            m = EventClassifier(40, 5, 16, 16, stages=2, layers_per_stage=2, pooling_stride=2, head=head, ssm=ssm,
                                pooling_mode="timepool").eval()
            out = m(tok[:1, :24], dt[:1, :24])
            # right-padding with token -1 and dt = 0 does not change the logits
            tp = torch.cat([tok[:1, :24], torch.full((1, 24), -1)], 1)
            dp = torch.cat([dt[:1, :24], torch.zeros(1, 24)], 1)
            torch.testing.assert_close(m(tp, dp), out, rtol=1e-5, atol=1e-5)
    m = EventClassifier(40, 5, 16, 16, stages=1, layers_per_stage=1).eval()
    torch.testing.assert_close(torch.compile(m, fullgraph=True)(tok, dt), m(tok, dt), rtol=1e-4, atol=1e-4)


def test_bad_input():
    x, dt = data()
    m = EventSSM(12, 8)
    with pytest.raises(ValueError, match="dt are required"):
        m(x)
    with pytest.raises(ValueError, match="dt must have shape"):
        m(x, dt[:, :-1])
    with pytest.raises(ValueError, match="expected input of shape"):
        m(x[..., :5], dt)
    with pytest.raises(ValueError, match="stride"):
        EventSSM(12, 8, stride=2).step(x[:, 0], m.initial_state(2), dt[:, 0])
    with pytest.raises(ValueError, match="discretization"):
        EventSSM(12, 8, discretization="bilinear")
    with pytest.raises(ValueError, match="exclusive"):
        S7(12, 8, log_a=True, stablessm_a=True)
    with pytest.raises(ValueError, match="no carried state"):
        S7(12, 8, bidirectional=True)(x, dt, return_state=True)
    with pytest.raises(ValueError, match="multiple of block_size"):
        EventSSM(12, 10, block_size=4)


def s7_materialized(m: S7, x, dt):
    """The old composed S7 path on the layer's own parameters, in float64: B_k and C_k
    materialized for every event (lrnn.reference.mimo_selective_scan_ref forms them
    explicitly from the same x_proj rows), C_k with 2P columns split into the two directions,
    then the conj_sym factor, event pooling and D outside. Differentiable in m's parameters."""
    r, P, Hi, Ho = m.dt_rank, m.P, m.d_model, m.d_out
    W, bias = m.x_proj.weight, m.x_proj.bias
    u = x.double()
    delta = m.step_rescale * torch.nn.functional.softplus(
        torch.nn.functional.linear(u, W[:r], bias[:r]) @ m.step_proj_kernel + m.step_proj_bias)
    n_b = 2 * P * Hi
    wb, bb = W[r:r + n_b].reshape(P, Hi, 2, Hi), bias[r:r + n_b].reshape(P, Hi, 2)
    Pc = 2 * P if m.bidirectional else P
    wc, bc = W[r + n_b:].reshape(Ho, Pc, 2, Hi), bias[r + n_b:].reshape(Ho, Pc, 2)
    lam = m.Lambda()
    y, _ = mimo_selective_scan_ref(u, lam, delta, dt.double(), wb, bb, wc[:, :P], bc[:, :P], None, m.discretization)
    if m.bidirectional:
        y = y + mimo_selective_scan_ref(u, lam, delta, dt.double(), wb, bb, wc[:, P:], bc[:, P:], None,
                                        m.discretization, reverse=True)[0]
    u_skip = u
    if m.stride > 1:
        y = y[:, read_index(x.shape[1], m.stride, m.dt_convention)]
        u_skip, _ = event_pool(u, dt.double(), m.stride, m.pooling_mode, m.dt_convention)
    y = 2 * y if m.conj_sym else y
    return y + (u_skip * m.D if m.D.dim() == 1 else u_skip @ m.D.T)


@pytest.mark.parametrize("kw", [{}, {"stride": 4, "pooling_mode": "avgpool"}, {"bidirectional": True, "stride": 3},
                                {"bidirectional": True, "conj_sym": False, "d_out": 5, "discretization": "zoh"}])
def test_s7_fused_op_matches_materialized_composition(kw):
    # The layer through lrnn::mimo_selective_scan (views of x_proj, per-event matrices never
    # formed) equals the composition with B_k / C_k materialized, values and every parameter
    # gradient, in float64 on the same parameters.
    x, dt = data(L=50)
    kw = dict(kw)
    d_out = kw.pop("d_out", None)
    m = S7(12, 8, d_out, **kw).double()
    y = m(x.double(), dt.double())
    want = s7_materialized(m, x, dt)
    torch.testing.assert_close(y, want, rtol=1e-10, atol=1e-10)
    gy = torch.randn_like(y)
    params = list(m.parameters())
    g = torch.autograd.grad((y * gy).sum(), params)
    gw = torch.autograd.grad((want * gy).sum(), params)
    for (n, _), a, b in zip(m.named_parameters(), g, gw):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=n)


def test_bfloat16_activations():
    # parameters and the scan stay in float32/complex64; bf16 activations in and out
    x, dt = data()
    for m in (EventSSM(12, 8), S7(12, 8)):
        y = m(x, dt)
        yb = m(x.bfloat16(), dt.bfloat16())
        assert yb.dtype == torch.bfloat16
        assert (yb.float() - y).abs().max() / y.abs().max() < 3e-2


def _cuda_ready():   # S7 runs lrnn::mimo_selective_scan, EventSSM lrnn::event_scan
    return torch.cuda.is_available() and all("CUDA" in torch._C._dispatch_dump(op)
                                              for op in ("lrnn::event_scan", "lrnn::mimo_selective_scan"))


@pytest.mark.cuda
@pytest.mark.skipif(not _cuda_ready(), reason="needs the CUDA build of lrnn::event_scan / mimo_selective_scan and a GPU")
@pytest.mark.parametrize("cls,kw", [(EventSSM, {"stride": 2}), (S7, {"stablessm_a": True}),
                                    (S7, {"bidirectional": True, "discretization": "zoh"})])
def test_layers_cuda_match_cpu(cls, kw):
    x, dt = data(L=300)
    m = cls(12, 16, **kw)
    y = m(x, dt)
    grads = torch.autograd.grad(y.square().sum(), list(m.parameters()))
    mc = m.cuda()
    yc = mc(x.cuda(), dt.cuda())
    grads_c = torch.autograd.grad(yc.square().sum(), list(mc.parameters()))
    torch.testing.assert_close(yc.cpu(), y, rtol=1e-3, atol=1e-3)
    for a, b in zip(grads_c, grads):
        assert (a.cpu() - b).abs().max() / b.abs().max().clamp(min=1e-3) < 1e-2
