"""lrnn::linear_scan on the CPU: values and gradients against the float64 reference, layouts,
broadcast transitions, opcheck, gradcheck and error messages."""
from __future__ import annotations

import pytest
import torch

import lrnn
from lrnn.reference import linear_scan_ref

from conftest import assert_close_rel

REAL = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
COMPLEX = [torch.complex64, torch.complex128]
REAL_OF = {torch.complex64: torch.float32, torch.complex128: torch.float64}


def make_sequence(B, L, D, dtype, layout="BLD"):
    """Random (B, L, D) tensor of `dtype` stored in the given layout (never zeros)."""
    wide = torch.complex128 if dtype.is_complex else torch.float64
    if layout == "BLD":
        x = torch.randn(B, L, D, dtype=wide)
    elif layout == "BDL":  # channel-major storage, a transposed view
        x = torch.randn(B, D, L, dtype=wide).transpose(1, 2)
    elif layout == "strided":  # every other channel of a wider tensor
        x = torch.randn(B, L, 2 * D, dtype=wide)[..., ::2]
    else:
        raise ValueError(layout)
    return x.to(dtype)


def make_transition(shape, dtype, layout="BLD"):
    """Random transitions with 0.5 <= |a| <= 0.99 (random sign or phase): a stable recurrence."""
    wide = torch.complex128 if dtype.is_complex else torch.float64
    mag = 0.5 + 0.49 * torch.rand(shape, dtype=torch.float64)
    if dtype.is_complex:
        a = torch.polar(mag, (torch.rand(shape, dtype=torch.float64) - 0.5) * 6.0)
    else:
        a = mag * torch.where(torch.rand(shape) < 0.5, -1.0, 1.0).to(torch.float64)
    if layout == "BDL" and len(shape) == 3:
        a = a.transpose(1, 2).contiguous().transpose(1, 2)
    return a.to(wide).to(dtype)


def reference(a, b, h0, reverse):
    wide = torch.complex128 if b.is_complex() else torch.float64
    a64 = a.to(torch.complex128 if a.is_complex() else torch.float64)
    return linear_scan_ref(a64, b.to(wide), None if h0 is None else h0.to(wide), reverse)


@pytest.mark.parametrize("dtype", REAL + COMPLEX)
@pytest.mark.parametrize("layout", ["BLD", "BDL", "strided"])
@pytest.mark.parametrize("reverse", [False, True])
def test_forward_matches_float64_reference(dtype, layout, reverse):
    B, L, D = 3, 129, 37
    a = make_transition((B, L, D), dtype, layout)
    b = make_sequence(B, L, D, dtype, layout)
    h0 = make_sequence(B, 1, D, dtype)[:, 0]
    h, h_last = lrnn.linear_scan(a, b, h0, reverse)
    h_ref, last_ref = reference(a, b, h0, reverse)
    assert h.dtype == dtype and h_last.dtype == dtype
    assert_close_rel(h, h_ref, dtype, what="h")
    assert_close_rel(h_last, last_ref, dtype, what="h_last")


@pytest.mark.parametrize("L", [1, 2, 3, 1000])
def test_odd_lengths(L):
    a = make_transition((2, L, 5), torch.float32)
    b = make_sequence(2, L, 5, torch.float32)
    h, h_last = lrnn.linear_scan(a, b)
    h_ref, last_ref = reference(a, b, None, False)
    assert_close_rel(h, h_ref, torch.float32)
    assert_close_rel(h_last, last_ref, torch.float32)


def test_channel_major_input_gives_channel_major_output_without_copy():
    b = make_sequence(2, 64, 8, torch.float32, "BDL")
    a = make_transition((2, 64, 8), torch.float32, "BDL")
    h, _ = lrnn.linear_scan(a, b)
    assert h.stride() == b.stride()


@pytest.mark.parametrize("a_shape", [(37,), (1, 37), (129, 37), (3, 1, 37), (1, 129, 37), (1, 1, 37)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64, torch.bfloat16])
def test_broadcast_transition(a_shape, dtype):
    B, L, D = 3, 129, 37
    a = make_transition(a_shape, dtype)
    b = make_sequence(B, L, D, dtype)
    h, h_last = lrnn.linear_scan(a, b)
    h_ref, last_ref = reference(a, b, None, False)
    assert_close_rel(h, h_ref, dtype)
    assert_close_rel(h_last, last_ref, dtype)


@pytest.mark.parametrize("dtype", COMPLEX)
def test_real_transition_with_complex_state(dtype):
    a = make_transition((2, 50, 6), REAL_OF[dtype])
    b = make_sequence(2, 50, 6, dtype)
    h, h_last = lrnn.linear_scan(a, b)
    h_ref, last_ref = reference(a, b, None, False)
    assert_close_rel(h, h_ref, dtype)
    assert_close_rel(h_last, last_ref, dtype)


def grads_of(fn, inputs, weights):
    """Gradients of sum(w_h * h) + sum(w_last * h_last) (real part for complex)."""
    inputs = [x.detach().requires_grad_() if x is not None else None for x in inputs]
    h, h_last = fn(*inputs)
    loss = (weights[0].conj() * h).real.sum() + (weights[1].conj() * h_last).real.sum() if h.is_complex() \
        else (weights[0] * h).sum() + (weights[1] * h_last).sum()
    loss.backward()
    return [None if x is None else x.grad for x in inputs]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.complex64,
                                   torch.complex128])
@pytest.mark.parametrize("a_shape", ["full", (23,), (1, 71, 23), (3, 1, 23)])
@pytest.mark.parametrize("reverse", [False, True])
def test_gradients_match_float64_reference(dtype, a_shape, reverse):
    B, L, D = 3, 71, 23
    a = make_transition((B, L, D) if a_shape == "full" else a_shape, dtype)
    b = make_sequence(B, L, D, dtype)
    h0 = make_sequence(B, 1, D, dtype)[:, 0]
    w = (make_sequence(B, L, D, dtype), make_sequence(B, 1, D, dtype)[:, 0])
    got = grads_of(lambda a_, b_, h0_: lrnn.linear_scan(a_, b_, h0_, reverse), [a, b, h0], w)
    wide = torch.complex128 if dtype.is_complex else torch.float64
    want = grads_of(lambda a_, b_, h0_: linear_scan_ref(a_, b_, h0_, reverse),
                    [a.to(wide), b.to(wide), h0.to(wide)], [x.to(wide) for x in w])
    for name, g, r in zip(["a", "b", "h0"], got, want):
        assert g.shape == r.shape and g.dtype == dtype, name
        # da sums L products (and B for broadcast a): allow proportionally more rounding.
        assert_close_rel(g, r, dtype, factor=64.0 if name == "a" else 16.0, what=f"grad {name}")


def test_gradient_through_h_last_only_and_h0():
    a = make_transition((2, 9, 4), torch.float64)
    b = make_sequence(2, 9, 4, torch.float64)
    h0 = make_sequence(2, 1, 4, torch.float64)[:, 0]
    for fn in (lrnn.linear_scan, linear_scan_ref):
        ins = [x.clone().requires_grad_() for x in (a, b, h0)]
        fn(*ins)[1].sum().backward()
        if fn is lrnn.linear_scan:
            got = [x.grad for x in ins]
        else:
            want = [x.grad for x in ins]
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)
    assert want[2].abs().sum() > 0  # h0 does receive gradient through h_last


@pytest.mark.parametrize("dtype,a_shape", [(torch.float64, "full"), (torch.float64, (5,)),
                                           (torch.complex128, "full"), (torch.complex128, (5,)),
                                           (torch.complex128, "real")])
@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck(dtype, a_shape, reverse):
    B, L, D = 2, 6, 5
    if a_shape == "real":
        a = make_transition((B, L, D), REAL_OF[dtype])
    else:
        a = make_transition((B, L, D) if a_shape == "full" else a_shape, dtype)
    b = make_sequence(B, L, D, dtype)
    h0 = make_sequence(B, 1, D, dtype)[:, 0]
    inputs = [x.requires_grad_() for x in (a, b, h0)]
    assert torch.autograd.gradcheck(lambda *x: lrnn.linear_scan(*x, reverse=reverse), inputs)


@pytest.mark.parametrize("layout", ["BLD", "BDL"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64, torch.bfloat16])
def test_opcheck(layout, dtype):
    a = make_transition((2, 17, 6), dtype, layout)
    b = make_sequence(2, 17, 6, dtype, layout)
    h0 = make_sequence(2, 1, 6, dtype)[:, 0]
    for args in [(a, b, h0, False), (a[0, 0], b, None, True)]:
        args = tuple(x.requires_grad_() if isinstance(x, torch.Tensor) else x for x in args)
        torch.library.opcheck(torch.ops.lrnn.linear_scan.default, args)
    a, h0 = a.detach(), h0.detach()
    h, _ = lrnn.linear_scan(a, b.detach(), h0)
    g = make_sequence(2, 17, 6, dtype, layout)
    g_last = make_sequence(2, 1, 6, dtype)[:, 0]
    torch.library.opcheck(torch.ops.lrnn.linear_scan_backward.default, (g, g_last, a, h.detach(), h0, False))
    torch.library.opcheck(torch.ops.lrnn.linear_scan_backward.default, (g, None, a[0, 0], h.detach(), None, True))


def test_zero_length_returns_initial_state():
    b = torch.randn(2, 0, 3)
    h0 = torch.randn(2, 3, requires_grad=True)
    h, h_last = lrnn.linear_scan(torch.rand(3), b, h0)
    assert h.shape == (2, 0, 3)
    torch.testing.assert_close(h_last, h0)
    h_last.sum().backward()
    torch.testing.assert_close(h0.grad, torch.ones(2, 3))
    _, h_last = lrnn.linear_scan(torch.rand(3), b)
    torch.testing.assert_close(h_last, torch.zeros(2, 3))


def test_empty_batch_and_channels():
    for B, D in [(0, 3), (2, 0)]:
        h, h_last = lrnn.linear_scan(torch.rand(B, 4, D), torch.randn(B, 4, D))
        assert h.shape == (B, 4, D) and h_last.shape == (B, D)


@pytest.mark.parametrize("args,match", [
    ((torch.rand(2, 5, 3), torch.randn(5, 3)), r"lrnn::linear_scan: argument 'b' must have shape \(B, L, D\), got \(5, 3\)"),
    ((torch.rand(2, 5, 4), torch.randn(2, 5, 3)), r"argument 'a' must be \(B, L, D\) = \(2, 5, 3\) or broadcastable"),
    ((torch.rand(2, 4, 3), torch.randn(2, 5, 3)), r"argument 'a' must be .* got \(2, 4, 3\)"),
    ((torch.rand(3, 5, 3), torch.randn(2, 5, 3)), r"argument 'a' must be .* got \(3, 5, 3\)"),
    ((torch.rand(1, 2, 5, 3), torch.randn(2, 5, 3)), r"argument 'a' must be"),
    ((torch.rand(3, dtype=torch.float64), torch.randn(2, 5, 3)), r"argument 'a' must have the dtype of 'b' \(float32\), got float64"),
    ((torch.rand(3), torch.randn(2, 5, 3, dtype=torch.complex128)), r"argument 'a' must have the dtype of 'b' \(complex128\) or its real dtype, got float32"),
    ((torch.ones(3, dtype=torch.int64), torch.ones(2, 5, 3, dtype=torch.int64)), r"argument 'b' must be float32, float64, bfloat16, float16, complex64 or complex128, got int64"),
])
def test_bad_input_errors(args, match):
    with pytest.raises(RuntimeError, match=match):
        torch.ops.lrnn.linear_scan(*args)


@pytest.mark.parametrize("h0,match", [
    (torch.randn(2, 4), r"argument 'h0' must have shape \(B, D\) = \(2, 3\), got \(2, 4\)"),
    (torch.randn(3), r"argument 'h0' must have shape \(B, D\) = \(2, 3\), got \(3,\)"),
    (torch.randn(2, 3, dtype=torch.float64), r"argument 'h0' must have dtype float32 \(the dtype of 'b'\), got float64"),
])
def test_bad_initial_state_errors(h0, match):
    with pytest.raises(RuntimeError, match=match):
        torch.ops.lrnn.linear_scan(torch.rand(3), torch.randn(2, 5, 3), h0)


def test_backward_op_rejects_mismatched_gradient():
    h = torch.randn(2, 5, 3)
    with pytest.raises(RuntimeError, match=r"lrnn::linear_scan_backward: argument 'grad_h' must have shape"):
        torch.ops.lrnn.linear_scan_backward(torch.randn(2, 4, 3), None, torch.rand(3), h, None, False)
    with pytest.raises(RuntimeError, match=r"argument 'grad_h_last' must have shape \(B, D\)"):
        torch.ops.lrnn.linear_scan_backward(torch.randn(2, 5, 3), torch.randn(3), torch.rand(3), h, None, False)


def test_double_backward_raises_clear_error():
    a = make_transition((2, 5, 3), torch.float64).requires_grad_()
    b = make_sequence(2, 5, 3, torch.float64).requires_grad_()
    h, _ = lrnn.linear_scan(a, b)
    (ga,) = torch.autograd.grad(h.sum(), a, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward .* not supported"):
        ga.sum().backward()


def test_reverse_equals_flipped_forward():
    a = make_transition((2, 33, 4), torch.float64)
    b = make_sequence(2, 33, 4, torch.float64)
    h0 = make_sequence(2, 1, 4, torch.float64)[:, 0]
    h_rev, last_rev = lrnn.linear_scan(a, b, h0, reverse=True)
    h_fwd, last_fwd = lrnn.linear_scan(a.flip(1), b.flip(1), h0)
    torch.testing.assert_close(h_rev, h_fwd.flip(1), rtol=0, atol=0)
    torch.testing.assert_close(last_rev, last_fwd, rtol=0, atol=0)
    torch.testing.assert_close(last_rev, h_rev[:, 0], rtol=0, atol=0)


def test_build_info_reports_build():
    info = lrnn.build_info()
    assert info["torch_version"].split("+")[0].count(".") == 2
    assert "cpu" in info["devices"]
    assert info["stable_abi_target"] == "2.11"
    assert info["git_revision"]
