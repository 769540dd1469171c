"""Tests of lrnn::selective_scan on the CPU: values and gradients against the float64 loop
reference (lrnn.reference.selective_scan_ref) for every dtype and option, long sequences across
chunk boundaries, batch-first views, opcheck, gradcheck, and bad-input errors."""
from __future__ import annotations

import itertools

import pytest
import torch

import lrnn
from lrnn.reference import selective_scan_ref

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
# max error / max reference magnitude, values and gradients
TOL = {torch.float64: 1e-10, torch.float32: 2e-4, torch.float16: 1e-2, torch.bfloat16: 4e-2}


def make_inputs(Bn=2, D=4, L=37, N=5, G=1, dtype=torch.float32, B_var=True, C_var=True, has_D=True, has_z=True,
                has_bias=True, softplus=True, has_h0=True, has_dtA=False, seed=0, device="cpu"):
    """Random (never zero) inputs in the op's (B, D, L) layout; weights float32 (float64 for f64)."""
    g = torch.Generator().manual_seed(seed)
    wt = torch.float64 if dtype == torch.float64 else torch.float32

    def r(*shape, lo=-1.0, hi=1.0, dt=dtype):
        return (lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)).to(dt).to(device)

    bc_shape = (Bn, G, N, L) if G > 1 else (Bn, N, L)
    return dict(
        u=r(Bn, D, L), delta=r(Bn, D, L, lo=-3.0 if softplus else 0.0, hi=0.5 if softplus else 0.4),
        A=r(D, N, lo=-1.5, hi=-0.1, dt=wt),
        B=r(*bc_shape) if B_var else r(D, N, dt=wt), C=r(*bc_shape) if C_var else r(D, N, dt=wt),
        D=r(D, dt=wt) if has_D else None, z=r(Bn, D, L, lo=-2, hi=2) if has_z else None,
        delta_bias=r(D, lo=-0.5, hi=0.5, dt=wt) if has_bias else None, delta_softplus=softplus,
        h0=r(Bn, D, N, dt=wt) if has_h0 else None, dt_A=r(Bn, D, L, lo=0.0, hi=0.3) if has_dtA else None)


ARGS = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias", "delta_softplus", "h0", "dt_A"]


def call_op(inp):
    return torch.ops.lrnn.selective_scan(*[inp[k] for k in ARGS])


def rel_err(got, want):
    scale = max(want.abs().max().item(), 1.0)
    return (got.double() - want.double()).abs().max().item() / scale


def check_against_reference(inp, tol, grads=True):
    """Op vs reference (float64, from the same rounded inputs): y, h_last, and every gradient of
    loss = <W, y> + <V, h_last>."""
    diff = [k for k in ARGS if isinstance(inp[k], torch.Tensor)]
    op_in = {k: (v.detach().clone().requires_grad_(grads) if k in diff else v) for k, v in inp.items()}
    ref_in = {k: (v.detach().double().requires_grad_(grads) if k in diff else v) for k, v in inp.items()}
    y, h_last, _ = call_op(op_in)
    y_ref, h_ref = selective_scan_ref(*[ref_in[k] for k in ARGS])
    assert y.dtype == inp["u"].dtype and y.shape == inp["u"].shape
    assert rel_err(y, y_ref) <= tol, f"y: {rel_err(y, y_ref)}"
    assert rel_err(h_last, h_ref) <= tol, f"h_last: {rel_err(h_last, h_ref)}"
    if not grads:
        return
    g = torch.Generator().manual_seed(1)
    W = torch.rand(y.shape, generator=g, dtype=torch.float64) - 0.5
    V = torch.rand(h_last.shape, generator=g, dtype=torch.float64) - 0.5
    ((y.double() * W).sum() + (h_last.double() * V).sum()).backward()
    ((y_ref * W).sum() + (h_ref * V).sum()).backward()
    for k in diff:
        got, want = op_in[k].grad, ref_in[k].grad
        assert got is not None and got.dtype == op_in[k].dtype and got.shape == op_in[k].shape, k
        assert rel_err(got, want) <= tol, f"grad {k}: {rel_err(got, want)}"


OPTION_SETS = [
    dict(),                                                                # everything on, G=1
    dict(G=2),
    dict(B_var=False, C_var=False),                                        # time-invariant B and C
    dict(B_var=False, G=2),
    dict(C_var=False),
    dict(has_D=False, has_z=False, has_bias=False, softplus=False, has_h0=False),
    dict(has_dtA=True),                                                    # STREAM
    dict(has_dtA=True, G=2, softplus=False, has_z=False),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("opts", OPTION_SETS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "all")
@pytest.mark.parametrize("L", [1, 7, 130])
def test_values_and_grads(dtype, opts, L):
    check_against_reference(make_inputs(L=L, dtype=dtype, **opts), TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("L", [2048, 2049, 5000])
def test_long_sequences(dtype, L):
    check_against_reference(make_inputs(Bn=1, D=2, L=L, N=4, dtype=dtype, has_dtA=(L == 2049)), TOL[dtype])


def test_large_state():
    check_against_reference(make_inputs(Bn=1, D=3, L=70, N=256, G=1), TOL[torch.float32])


def test_zero_length():
    inp = make_inputs(L=0)
    y, h_last, _ = call_op(inp)
    assert y.shape == (2, 4, 0)
    torch.testing.assert_close(h_last, inp["h0"])


def test_non_contiguous_inputs():
    """Every sequence tensor a strided slice (every other time step, channels of a wider tensor)."""
    base = make_inputs(Bn=2, D=8, L=80, N=3, dtype=torch.float32)
    inp = dict(base)
    for k in ["u", "delta", "z"]:
        inp[k] = torch.cat([base[k], base[k]], -1)[..., ::2]
    inp["B"] = base["B"].transpose(1, 2).contiguous().transpose(1, 2)  # (B, N, L) with N fastest
    assert not inp["u"].is_contiguous()
    check_against_reference(inp, TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_batch_first_without_copy(dtype):
    """batch_first=True reads (B, L, D) tensors in place and returns (B, L, D) y and gradients."""
    inp = make_inputs(Bn=2, D=6, L=50, N=4, G=2, dtype=dtype, has_dtA=True)
    bf = {k: inp[k].transpose(1, 2).contiguous() for k in ["u", "delta", "z", "dt_A"]}
    BC = {k: inp[k].permute(0, 3, 1, 2).contiguous() for k in ["B", "C"]}  # (B, L, G, N)
    u = bf["u"].clone().requires_grad_()
    y, h = lrnn.functional.selective_scan(u, bf["delta"], inp["A"], BC["B"], BC["C"], inp["D"], bf["z"],
                                          inp["delta_bias"], True, True, h0=inp["h0"], dt_A=bf["dt_A"],
                                          batch_first=True)
    assert y.shape == (2, 50, 6) and y.is_contiguous()
    y_ref, h_ref = call_op(inp)[:2]
    torch.testing.assert_close(y, y_ref.transpose(1, 2), rtol=0, atol=0)
    torch.testing.assert_close(h, h_ref, rtol=0, atol=0)
    y.sum().backward()
    assert u.grad.is_contiguous()


def test_functional_matches_mamba_signature():
    inp = make_inputs()
    y = lrnn.functional.selective_scan(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"], inp["z"],
                                       inp["delta_bias"], True)
    y2, last = lrnn.selective_scan(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"], inp["z"],
                                   inp["delta_bias"], True, True)
    torch.testing.assert_close(y, y2, rtol=0, atol=0)
    assert last.shape == (2, 4, 5)


def test_backward_deterministic():
    inp = make_inputs(Bn=3, D=40, L=300, N=8, G=2, dtype=torch.float32)
    grads = []
    for _ in range(2):
        t = {k: (v.clone().requires_grad_() if isinstance(v, torch.Tensor) else v) for k, v in inp.items()}
        y, h, _ = call_op(t)
        (y.sum() + h.sum()).backward()
        grads.append([t[k].grad for k in ["u", "delta", "A", "B", "C", "D", "delta_bias", "h0"]])
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_grad_through_h_last_only():
    inp = make_inputs(L=90, dtype=torch.float64)
    h0 = inp["h0"].clone().requires_grad_()
    u = inp["u"].clone().requires_grad_()
    inp.update(h0=h0, u=u)
    _, h_last, _ = call_op(inp)
    h_last.sum().backward()
    ref_in = dict(inp, h0=inp["h0"].detach().clone().requires_grad_(), u=inp["u"].detach().clone().requires_grad_())
    selective_scan_ref(*[ref_in[k] for k in ARGS])[1].sum().backward()
    torch.testing.assert_close(h0.grad, ref_in["h0"].grad)
    torch.testing.assert_close(u.grad, ref_in["u"].grad)


@pytest.mark.parametrize("opts", [dict(), dict(B_var=False, C_var=False, has_h0=False), dict(G=2, has_dtA=True)],
                         ids=["all", "lti", "grouped_dtA"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_opcheck(opts, dtype):
    inp = make_inputs(Bn=2, D=4, L=70, N=3, dtype=dtype, **opts)
    args = [inp[k] for k in ARGS]
    torch.library.opcheck(torch.ops.lrnn.selective_scan.default, args)
    y, h, cs = call_op(inp)
    bwd_args = [torch.rand_like(y), torch.rand_like(h), *args[:8], args[8], args[9], args[10], cs]
    torch.library.opcheck(torch.ops.lrnn.selective_scan_backward.default, bwd_args)


@pytest.mark.parametrize("opts", [dict(), dict(G=2, has_dtA=True), dict(B_var=False, C_var=False),
                                  dict(has_D=False, has_z=False, has_bias=False, softplus=False, has_h0=False)],
                         ids=["all", "grouped_dtA", "lti", "bare"])
def test_gradcheck(opts):
    inp = make_inputs(Bn=2, D=4, L=67, N=3, dtype=torch.float64, **opts)
    names = [k for k in ARGS if isinstance(inp[k], torch.Tensor)]

    def f(*tensors):
        d = dict(inp, **dict(zip(names, tensors)))
        y, h, _ = call_op(d)
        return y, h

    tensors = [inp[k].clone().requires_grad_() for k in names]
    assert torch.autograd.gradcheck(f, tensors, eps=1e-6, atol=1e-6, rtol=1e-5)


def _error(match, **changes):
    inp = make_inputs()
    inp.update(changes)
    with pytest.raises(RuntimeError, match=match):
        call_op(inp)


def test_errors():
    base = make_inputs()
    _error(r"lrnn::selective_scan: argument 'delta' must have the shape of 'u'", delta=base["delta"][:, :3])
    _error(r"argument 'A' must have shape \(D, N\) with D = 4", A=base["A"][:3])
    _error(r"argument 'A' must be float32, got bfloat16", A=base["A"].bfloat16())
    _error(r"argument 'B' must be \(B, N, L\) = \(2, 5, 37\)", B=base["B"][:, :4])
    _error(r"argument 'C' must be \(B, N, L\) = \(2, 5, 37\)", C=base["C"][..., :36])
    _error(r"argument 'z' must have the shape of 'u'", z=base["z"][..., :36])
    _error(r"argument 'D' must have shape \(D,\) = \(4,\)", D=base["D"][:3])
    _error(r"argument 'h0' must have shape \(B, D, N\)", h0=base["h0"][:, :, :4])
    _error(r"state size N = 257 .* must be in \[1, 256\]", A=torch.full((4, 257), -1.0))
    _error(r"argument 'B' \(time-varying\) must have the dtype of 'u'", B=base["B"].double())
    _error(r"groups, which do not divide the 4 channels", B=torch.rand(2, 3, 5, 37), C=torch.rand(2, 3, 5, 37))
    _error(r"argument 'u' must be float32, float64, bfloat16 or float16, got int32", u=base["u"].int())
