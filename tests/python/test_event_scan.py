"""lrnn::event_scan (Event-SSM / S7 scan with fused discretization): values against the float64
loop reference on random event streams (time gaps with exact zeros, padded tails), gradients
(gradcheck in complex128, and float32 against the reference's autograd), opcheck, the Lambda -> 0
limit, and bad input."""
import re

import pytest
import torch

import lrnn
from lrnn.reference import event_scan_ref

DISCS = ["zoh", "dirac", "async"]


def stream(B, L, P, dtype=torch.complex64, rdtype=torch.float32, per_event=False, pad=0, seed=0):
    """A random event stream: Lambda with Re < 0, gaps >= 0 with ~20% exact zeros, and `pad`
    padding events at the end (v = 0 and dt = 0, as Event-SSM's collate pads)."""
    g = torch.Generator().manual_seed(seed)
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    Lam = torch.complex(-0.05 - torch.rand(P, generator=g, dtype=real), 4 * torch.randn(P, generator=g, dtype=real))
    delta = 0.02 + torch.rand((B, L, P) if per_event else (P,), generator=g, dtype=real)
    dt = torch.rand(B, L, generator=g, dtype=real) * 2
    dt[torch.rand(B, L, generator=g) < 0.2] = 0
    v = torch.randn(B, L, P, generator=g, dtype=dtype)
    if pad:
        v[:, L - pad:] = 0
        dt[:, L - pad:] = 0
    h0 = torch.randn(B, P, generator=g, dtype=dtype)
    return [Lam.to(dtype), delta.to(rdtype), dt.to(rdtype), v, h0]


def tol(dtype, rdtype):
    if dtype == torch.complex128:
        return 1e-10
    return 2e-2 if rdtype == torch.bfloat16 else 2e-4


@pytest.mark.parametrize("L", [1, 5, 1000, 4097])
@pytest.mark.parametrize("disc", DISCS)
def test_values_match_float64_reference(L, disc):
    for per_event in (False, True):
        Lam, delta, dt, v, h0 = stream(2, L, 67, per_event=per_event, pad=min(3, L - 1), seed=L)
        h, last = lrnn.event_scan(Lam, delta, dt, v, h0, disc)
        hr, lr = event_scan_ref(Lam.cdouble(), delta.double(), dt.double(), v.cdouble(), h0.cdouble(), disc)
        scale = hr.abs().max().clamp(min=1)
        assert (h.cdouble() - hr).abs().max() / scale < 2e-4
        assert (last.cdouble() - lr).abs().max() / scale < 2e-4


@pytest.mark.parametrize("dtype,rdtype", [(torch.complex64, torch.float32), (torch.complex64, torch.bfloat16),
                                          (torch.complex128, torch.float64)])
@pytest.mark.parametrize("disc", DISCS)
def test_dtypes_reverse_and_no_h0(dtype, rdtype, disc):
    Lam, delta, dt, v, h0 = stream(3, 33, 5, dtype, rdtype, per_event=True)
    for reverse in (False, True):
        for init in (None, h0):
            h, last = lrnn.event_scan(Lam, delta, dt, v, init, disc, reverse)
            hr, lr = event_scan_ref(Lam, delta, dt, v, init, disc, reverse)  # same stored inputs, float64 math
            assert h.dtype == dtype and last.shape == (3, 5)
            s = hr.abs().max().clamp(min=1)
            assert (h - hr).abs().max() / s < tol(dtype, rdtype)
            assert (last - lr).abs().max() / s < tol(dtype, rdtype)
            assert torch.equal(last, h[:, 0] if reverse else h[:, -1])


def test_padding_leaves_state_unchanged_and_zero_gap_is_identity():
    Lam, delta, dt, v, h0 = stream(2, 50, 8, pad=10)
    for disc in DISCS:
        h, last = lrnn.event_scan(Lam, delta, dt, v, h0, disc)
        assert torch.equal(h[:, -10:], h[:, -11:-10].expand(-1, 10, -1))
        assert torch.equal(last, h[:, 39])
    # zoh with dt = 0 ignores the input altogether (its scale (exp(0) - 1) / Lambda is 0)
    h, _ = lrnn.event_scan(Lam, delta, torch.zeros_like(dt), v, h0, "zoh")
    assert torch.equal(h, h0[:, None].expand_as(h))


def test_non_contiguous_inputs():
    Lam, delta, dt, v, h0 = stream(3, 40, 6, per_event=True)
    v_t = v.transpose(1, 2).contiguous().transpose(1, 2)            # (B, P, L) storage
    delta_t = delta.transpose(1, 2).contiguous().transpose(1, 2)
    dt_t = dt.t().contiguous().t()
    Lam_s = torch.stack([Lam, Lam], 1)[:, 0]                        # stride 2
    h_ref, _ = lrnn.event_scan(Lam, delta, dt, v, h0)
    h, _ = lrnn.event_scan(Lam_s, delta_t, dt_t, v_t, h0.t().contiguous().t())
    torch.testing.assert_close(h, h_ref)


def test_lambda_to_zero_stays_finite_and_exact():
    # (exp(Lambda s) - 1) / Lambda -> s: evaluated through expm1, no cancellation
    Lam = torch.tensor([0j, 1e-30 + 0j, -1e-8 + 1e-8j, -0.5 + 2j], dtype=torch.complex128)
    delta = torch.tensor([0.3, 0.7, 1.1, 0.2], dtype=torch.float64)
    dt = torch.rand(2, 9, dtype=torch.float64)
    v = torch.randn(2, 9, 4, dtype=torch.complex128)
    for disc in ("zoh", "async"):
        s = delta * (dt[..., None] if disc == "zoh" else 1)
        Lq = Lam.clone().requires_grad_()
        h, _ = lrnn.event_scan(Lq, delta, dt, v, None, disc)
        # Lambda = 0 and 1e-30: the state is a plain sum of s * v
        torch.testing.assert_close(h[..., :2].detach(), torch.cumsum(s * v, 1)[..., :2], rtol=1e-14, atol=1e-14)
        (gl,) = torch.autograd.grad(h.real.sum(), Lq)
        assert torch.isfinite(gl).all()
        # The gradient is continuous into Lambda = 0 (the naive (exp(z) - 1) / z derivative
        # cancels catastrophically there) and matches the reference where the reference is exact.
        Lt = torch.tensor([1e-9j, 1e-9, -1e-8 + 1e-8j, -0.5 + 2j], dtype=torch.complex128, requires_grad=True)
        ht, _ = lrnn.event_scan(Lt, delta, dt, v, None, disc)
        (glt,) = torch.autograd.grad(ht.real.sum(), Lt)
        torch.testing.assert_close(gl, glt, rtol=1e-7, atol=1e-7)
        Lm = torch.tensor([1e-3j, -1e-3, -1e-3 + 1e-3j, -0.5 + 2j], dtype=torch.complex128)
        for impl in (lrnn.event_scan, event_scan_ref):
            Lq = Lm.clone().requires_grad_()
            hq, _ = impl(Lq, delta, dt, v, None, disc)
            (g,) = torch.autograd.grad(hq.real.sum(), Lq)
            if impl is lrnn.event_scan:
                g_kernel = g
        torch.testing.assert_close(g_kernel, g, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("disc", DISCS)
@pytest.mark.parametrize("per_event", [False, True])
def test_gradcheck_complex128(disc, per_event):
    Lam, delta, dt, v, h0 = stream(2, 7, 3, torch.complex128, torch.float64, per_event=per_event)
    for reverse in (False, True):
        args = [t.clone().requires_grad_() for t in (Lam, delta, v, h0)]
        assert torch.autograd.gradcheck(
            lambda L_, d_, v_, h_: lrnn.event_scan(L_, d_, dt, v_, h_, disc, reverse), args)


@pytest.mark.parametrize("disc", DISCS)
def test_float32_gradients_match_reference_autograd(disc):
    Lam, delta, dt, v, h0 = stream(2, 300, 9, per_event=False, pad=5)
    gy = torch.randn(2, 300, 9, dtype=torch.complex64)
    gl = torch.randn(2, 9, dtype=torch.complex64)
    ins = [t.clone().requires_grad_() for t in (Lam, delta, v, h0)]
    h, last = lrnn.event_scan(ins[0], ins[1], dt, ins[2], ins[3], disc)
    got = torch.autograd.grad((h * gy.conj()).real.sum() + (last * gl.conj()).real.sum(), ins)
    ref_ins = [t.detach().to(torch.complex128 if t.is_complex() else torch.float64).requires_grad_() for t in ins]
    hr, lr = event_scan_ref(ref_ins[0], ref_ins[1], dt.double(), ref_ins[2], ref_ins[3], disc)
    want = torch.autograd.grad((hr * gy.cdouble().conj()).real.sum() + (lr * gl.cdouble().conj()).real.sum(), ref_ins)
    for a, b in zip(got, want):
        assert (a.to(b.dtype) - b).abs().max() / b.abs().max().clamp(min=1) < 1e-3


def test_grad_through_h_last_only():
    Lam, delta, dt, v, h0 = stream(2, 11, 4, torch.complex128, torch.float64)
    args = [t.clone().requires_grad_() for t in (Lam, delta, v, h0)]
    assert torch.autograd.gradcheck(lambda a, b, c, d: lrnn.event_scan(a, b, dt, c, d, "zoh")[1], args)


def test_backward_is_deterministic():
    Lam, delta, dt, v, h0 = stream(8, 500, 70)
    outs = []
    for _ in range(2):
        ins = [t.clone().requires_grad_() for t in (Lam, delta, v)]
        h, _ = lrnn.event_scan(ins[0], ins[1], dt, ins[2], h0)
        outs.append(torch.autograd.grad(h.abs().sum(), ins))
    for a, b in zip(*outs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("per_event", [False, True])
def test_opcheck(per_event):
    Lam, delta, dt, v, h0 = stream(2, 9, 5, per_event=per_event)
    Lam.requires_grad_()
    delta.requires_grad_()
    v.requires_grad_()
    torch.library.opcheck(torch.ops.lrnn.event_scan.default, (Lam, delta, dt, v, h0, 0, False))
    torch.library.opcheck(torch.ops.lrnn.event_scan.default, (Lam, delta, dt, v, None, 2, True))
    h = torch.randn(2, 9, 5, dtype=torch.complex64)
    torch.library.opcheck(torch.ops.lrnn.event_scan_backward.default,
                          (h, None, Lam.detach(), delta.detach(), dt, v.detach(), h, h0, 1, False))


def test_zero_length():
    Lam, delta, dt, v, h0 = stream(2, 0, 3)
    h, last = lrnn.event_scan(Lam, delta, dt, v, h0)
    assert h.shape == (2, 0, 3) and torch.equal(last, h0)
    h, last = lrnn.event_scan(Lam, delta, dt, v)
    assert torch.equal(last, torch.zeros_like(h0))


def test_compile_fullgraph_with_backward():
    Lam, delta, dt, v, h0 = stream(2, 20, 4)
    ins = [t.clone().requires_grad_() for t in (Lam, delta, v)]

    def f(a, b, c):
        h, last = lrnn.event_scan(a, b, dt, c, h0, "zoh")
        return h.real.sum() + last.imag.sum()

    want = torch.autograd.grad(f(*ins), ins)
    got = torch.autograd.grad(torch.compile(f, fullgraph=True)(*ins), ins)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


BAD = [
    (lambda a: a.update(v=a["v"][0]), "argument 'v' must have shape (B, L, P)"),
    (lambda a: a.update(v=a["v"].real.contiguous()), "argument 'v' must be complex64 or complex128"),
    (lambda a: a.update(Lambda=a["Lambda"][:-1]), "argument 'Lambda' must have shape (P,)"),
    (lambda a: a.update(Lambda=a["Lambda"].cdouble()), "argument 'Lambda' must have dtype complex64"),
    (lambda a: a.update(delta=a["delta"][:2]), "argument 'delta' must have shape (P,)"),
    (lambda a: a.update(delta=a["delta"].double()), "argument 'delta' must be float32 or bfloat16"),
    (lambda a: a.update(dt=a["dt"][:, :-1]), "argument 'dt' must have shape (B, L)"),
    (lambda a: a.update(dt=a["dt"].bfloat16()), "argument 'dt' must have dtype float32"),
    (lambda a: a.update(h0=a["h0"][:, :1]), "argument 'h0' must have shape (B, P)"),
    (lambda a: a.update(h0=a["h0"].cdouble()), "argument 'h0' must have dtype complex64"),
    (lambda a: a.update(discretization=5), "argument 'discretization' must be 0 (zoh), 1 (dirac) or 2 (async)"),
]


@pytest.mark.parametrize("mutate,message", BAD)
def test_bad_input_names_op_and_argument(mutate, message):
    Lam, delta, dt, v, h0 = stream(2, 6, 4)
    a = dict(Lambda=Lam, delta=delta, dt=dt, v=v, h0=h0, discretization=2, reverse=False)
    mutate(a)
    with pytest.raises(RuntimeError, match="lrnn::event_scan: " + re.escape(message)):
        torch.ops.lrnn.event_scan(**a)


def test_backward_bad_input():
    Lam, delta, dt, v, h0 = stream(2, 6, 4)
    with pytest.raises(RuntimeError, match=r"lrnn::event_scan_backward: argument 'grad_h' must have shape"):
        torch.ops.lrnn.event_scan_backward(v[:, :-1], None, Lam, delta, dt, v, v, h0, 2, False)


def test_functional_errors():
    Lam, delta, dt, v, h0 = stream(1, 3, 2)
    with pytest.raises(ValueError, match="discretization must be one of"):
        lrnn.event_scan(Lam, delta, dt, v, h0, "bilinear")
    with pytest.raises(ValueError, match="dt .* is data"):
        lrnn.event_scan(Lam, delta, dt.requires_grad_(), v, h0)


def _has_cuda_kernel():
    return "CUDA" in torch._C._dispatch_dump("lrnn::event_scan") and torch.cuda.is_available()


@pytest.mark.cuda
@pytest.mark.skipif(not _has_cuda_kernel(), reason="needs the CUDA build of lrnn::event_scan and a GPU")
@pytest.mark.parametrize("disc", DISCS)
@pytest.mark.parametrize("dtype,rdtype", [(torch.complex64, torch.float32), (torch.complex64, torch.bfloat16),
                                          (torch.complex128, torch.float64)])
@pytest.mark.parametrize("L", [1, 5, 1000, 4097])
def test_cuda_matches_cpu(disc, dtype, rdtype, L):
    for per_event in (False, True):
        for reverse in (False, True):
            cpu = stream(3, L, 67, dtype, rdtype, per_event=per_event, pad=min(3, L - 1), seed=L)
            gy = torch.randn(3, L, 67, dtype=dtype)
            gl = torch.randn(3, 67, dtype=dtype)
            res = []
            for dev in ("cpu", "cuda"):
                Lam, delta, dt, v, h0 = [t.to(dev) for t in cpu]
                ins = [t.clone().requires_grad_() for t in (Lam, delta, v, h0)]
                h, last = lrnn.event_scan(ins[0], ins[1], dt, ins[2], ins[3], disc, reverse)
                loss = (h * gy.to(dev).conj()).real.sum() + (last * gl.to(dev).conj()).real.sum()
                grads = torch.autograd.grad(loss, ins)
                res.append([x.detach().cpu() for x in (h, last, *grads)])
            for a, b in zip(*res):
                # bf16 results (the delta gradient when delta is bf16) differ by their rounding.
                tol = 1e-9 if dtype == torch.complex128 else 1e-2 if a.dtype == torch.bfloat16 else 2e-3
                s = b.abs().max().clamp(min=1).double()
                assert (a - b).abs().max().double() / s < tol
