"""lrnn::linear_scan and lrnn::linear_scan_backward on CUDA, checked against the float64 CPU op.

Every comparison runs the CUDA op on inputs of the tested dtype and the CPU op on the same values
upcast to float64/complex128 (the CPU op is itself checked against naive loops and gradcheck).
Output memory is poisoned with NaN before each CUDA call, so an element a kernel fails to write
is caught. Lengths straddle the kernels' tile and round boundaries; layouts cover both fast
paths (time-major, channel-major) and the generic/strided ones.

Tolerances (conftest.assert_close_rel: max error relative to max|reference|, in roundings of the
stored dtype): the kernels accumulate in float32 (float64 for float64/complex128) in another
association order than the sequential reference. With transitions |a| <= 0.95 the recurrence
forgets errors geometrically, so the accumulated error stays below ~ 1 / (1 - 0.95) = 20
roundings of the accumulation type per element; with a 4x margin that is 160 float32 roundings
(for float32/complex64 results, and below the 1e-12 floor for float64). Low-precision results are
dominated by the final rounding to the stored dtype (half an ulp): 2 roundings of bfloat16/float16.
"""
from __future__ import annotations

import pytest
import torch

import lrnn
from conftest import assert_close_rel

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

DEV = "cuda"
# (name, dtype of b, dtype of a)
DTYPES = [
    ("float32", torch.float32, torch.float32),
    ("float64", torch.float64, torch.float64),
    ("bfloat16", torch.bfloat16, torch.bfloat16),
    ("float16", torch.float16, torch.float16),
    ("complex64", torch.complex64, torch.complex64),
    ("complex64-real-a", torch.complex64, torch.float32),
    ("complex128", torch.complex128, torch.complex128),
    ("complex128-real-a", torch.complex128, torch.float64),
]
DTYPE_IDS = [d[0] for d in DTYPES]
LAYOUTS = ["time-major", "channel-major", "time-major-strided", "channel-major-offset"]
LENGTHS = [1, 2, 3, 127, 128, 129, 4096, 65537]
# roundings of the stored dtype allowed (see the module docstring)
_FACTOR = {torch.bfloat16: 2.0, torch.float16: 2.0}


def assert_close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, what: str, scale_mul: float = 1.0):
    assert_close_rel(got, want, dtype, factor=_FACTOR.get(dtype, 160.0) * scale_mul, what=what)


def ref_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype.is_complex else torch.float64


def poison(*shapes_and_dtypes):
    """Leaves NaN bytes in the CUDA caching allocator's free blocks of the given sizes, so the
    op's outputs (allocated right after, same sizes) start as NaN instead of stale values."""
    bufs = []
    for shape, dtype in shapes_and_dtypes:
        n = 1
        for s in shape:
            n *= s
        nbytes = n * torch.empty((), dtype=dtype).element_size()
        bufs.append(torch.full((max(nbytes, 1),), 0xFF, dtype=torch.uint8, device=DEV))
    torch.cuda.synchronize()
    del bufs


def make_seq(B, L, D, dtype, layout, gen, transition=False):
    """A (B, L, D) tensor in the requested memory layout, random and never zero."""
    def draw(*shape):
        real = dtype.to_real() if dtype.is_complex else dtype
        if transition:  # |a| in [0.5, 0.95], random sign (real) or phase (complex)
            mag = torch.rand(*shape, generator=gen, dtype=torch.float64) * 0.45 + 0.5
            if dtype.is_complex:
                ph = (torch.rand(*shape, generator=gen, dtype=torch.float64) - 0.5) * 2.0
                return torch.polar(mag, ph).to(dtype)
            sign = torch.where(torch.rand(*shape, generator=gen) < 0.2, -1.0, 1.0).double()
            return (mag * sign).to(real)
        x = torch.rand(*shape, generator=gen, dtype=torch.float64) * 2 - 1
        x = torch.where(x.abs() < 1e-3, torch.full_like(x, 0.5), x)
        if dtype.is_complex:
            y = torch.rand(*shape, generator=gen, dtype=torch.float64) * 2 - 1
            return torch.complex(x, y).to(dtype)
        return x.to(real)

    if layout == "time-major":
        t = draw(B, L, D)
    elif layout == "channel-major":
        t = draw(B, D, L).transpose(1, 2)
    elif layout == "time-major-strided":
        t = draw(B, L, 2 * D)[:, :, ::2]
    elif layout == "channel-major-offset":  # rows not 16-byte aligned: the scalar-load path
        t = draw(B, D, L + 1)[:, :, 1:].transpose(1, 2)
    else:
        raise ValueError(layout)
    return t.to(DEV)


def make_a(B, L, D, dtype, layout, mode, gen):
    if mode == "full":
        return make_seq(B, L, D, dtype, layout, gen, transition=True)
    if mode == "time-invariant":  # (D,)
        return make_seq(1, 1, D, dtype, "time-major", gen, transition=True).reshape(D)
    if mode == "batch-broadcast":  # (1, L, D)
        return make_seq(1, L, D, dtype, layout, gen, transition=True)
    raise ValueError(mode)


def to_ref(t):
    return None if t is None else t.detach().cpu().to(ref_dtype(t.dtype))


def run_forward(a, b, h0, reverse):
    B, L, D = b.shape
    poison(((B, L, D), b.dtype), ((B, D), b.dtype))
    h, h_last = torch.ops.lrnn.linear_scan(a, b, h0, reverse)
    torch.cuda.synchronize()
    return h, h_last


def check_forward(dtype_id, layout, B, L, D, reverse=False, a_mode="full", with_h0=True, seed=0):
    _, dt, adt = DTYPES[DTYPE_IDS.index(dtype_id)]
    gen = torch.Generator().manual_seed(seed)
    a = make_a(B, L, D, adt, layout, a_mode, gen)
    b = make_seq(B, L, D, dt, layout, gen)
    h0 = make_seq(B, 1, D, dt, "time-major", gen)[:, 0] if with_h0 else None
    h, h_last = run_forward(a, b, h0, reverse)
    assert h.dtype == dt and h_last.dtype == dt
    h_ref, h_last_ref = torch.ops.lrnn.linear_scan(to_ref(a), to_ref(b), to_ref(h0), reverse)
    assert_close(h, h_ref, dt, "h")
    assert_close(h_last, h_last_ref, dt, "h_last")


@pytest.mark.parametrize("L", LENGTHS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype_id", DTYPE_IDS)
def test_forward_matches_float64(dtype_id, layout, L):
    D = 37 if L <= 4096 else 5
    check_forward(dtype_id, layout, 2, L, D, seed=L)


@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("a_mode", ["full", "time-invariant", "batch-broadcast"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("L", [129, 5000])
@pytest.mark.parametrize("layout", ["time-major", "channel-major"])
@pytest.mark.parametrize("dtype_id", DTYPE_IDS)
def test_forward_variants(dtype_id, layout, L, reverse, a_mode, with_h0):
    check_forward(dtype_id, layout, 3, L, 9, reverse=reverse, a_mode=a_mode, with_h0=with_h0, seed=7)


@pytest.mark.parametrize("layout", ["time-major", "channel-major"])
@pytest.mark.parametrize("dtype_id", ["float32", "bfloat16", "complex64"])
def test_forward_large_shape(dtype_id, layout):
    """The launch shapes of the benchmark (many rows: time-major lanes, channel-major tiles)."""
    check_forward(dtype_id, layout, 8, 1000, 1536, seed=3)


@pytest.mark.parametrize("L", [1, 2, 127, 129, 1000, 65537])
@pytest.mark.parametrize("dtype_id", DTYPE_IDS)
def test_time_major_pipelined(dtype_id, L):
    """Aligned time-major inputs (channels contiguous, at least 32 of them) take the
    warp-sequential or the pipelined kernels (tm_route in csrc/cuda/linear_scan.cu), with one
    row group per SM here and with few (the L = 65537 case). A partial last row group, a partial
    last round, both directions, every form of a, forward and backward, and a repeatable
    time-invariant da."""
    if L <= 1000:  # one row group per SM, plus a partial one of 8 channels
        sms = torch.cuda.get_device_properties(0).multi_processor_count
        B, D = 2, 32 * ((sms + 1) // 2) + 8
    else:
        B, D = 2, 40
    for reverse, a_mode, first in ((False, "full", True), (True, "time-invariant", False),
                                   (True, "batch-broadcast", True)):
        check_forward(dtype_id, "time-major", B, L, D, reverse=reverse, a_mode=a_mode, with_h0=first, seed=L + 2)
        check_backward(dtype_id, "time-major", B, L, D, reverse=reverse, a_mode=a_mode, with_h0=first,
                       with_ghl=not first, seed=L + 3)
    _, dt, adt = DTYPES[DTYPE_IDS.index(dtype_id)]
    gen = torch.Generator().manual_seed(L)
    a = make_a(B, L, D, adt, "time-major", "time-invariant", gen)
    b = make_seq(B, L, D, dt, "time-major", gen)
    h, _ = torch.ops.lrnn.linear_scan(a, b, None, False)
    g = make_seq(B, L, D, dt, "time-major", gen)
    first = torch.ops.lrnn.linear_scan_backward(g, None, a, h, None, False)
    again = torch.ops.lrnn.linear_scan_backward(g, None, a, h, None, False)
    for x, y in zip(first, again):
        assert torch.equal(x, y)


@pytest.mark.parametrize("dtype_id,route", [
    (d, r) for d in ("float32", "bfloat16", "float16", "complex64", "complex64-real-a")
    for r in ("tw", "tp", "tpcl", "tm") + (("tw2", "tp2", "tpcl2") if d in ("bfloat16", "float16") else ())])
def test_time_major_every_kernel(dtype_id, route, monkeypatch):
    """Each kernel an aligned time-major problem can take, forced with LRNN_LINEAR_SCAN_TM (read
    at every launch; tw2/tp2/tpcl2: two channels per lane for 2-byte types), and both widths of the
    2-byte time-invariant channel-major kernel."""
    monkeypatch.setenv("LRNN_LINEAR_SCAN_TM", route)
    monkeypatch.setenv("LRNN_LINEAR_SCAN_CM", "wide" if route in ("tp", "tm") else "narrow")
    for L, reverse, a_mode in ((1000, False, "full"), (129, True, "time-invariant"), (300, False, "batch-broadcast")):
        for layout in ("time-major", "channel-major"):
            check_forward(dtype_id, layout, 2, L, 40, reverse=reverse, a_mode=a_mode, seed=L)
            check_backward(dtype_id, layout, 2, L, 40, reverse=reverse, a_mode=a_mode, seed=L + 1)


def check_backward(dtype_id, layout, B, L, D, reverse=False, a_mode="full", with_h0=True, with_ghl=True,
                   grad_layout=None, seed=0):
    _, dt, adt = DTYPES[DTYPE_IDS.index(dtype_id)]
    gen = torch.Generator().manual_seed(seed)
    a = make_a(B, L, D, adt, layout, a_mode, gen)
    b = make_seq(B, L, D, dt, layout, gen)
    h0 = make_seq(B, 1, D, dt, "time-major", gen)[:, 0] if with_h0 else None
    h, _ = torch.ops.lrnn.linear_scan(a, b, h0, reverse)
    g = make_seq(B, L, D, dt, grad_layout or layout, gen)
    ghl = make_seq(B, 1, D, dt, "time-major", gen)[:, 0] if with_ghl else None
    ti = a.dim() < 2 or a.shape[-2] == 1
    da_dtype = torch.float32 if ti and adt in (torch.bfloat16, torch.float16) else adt
    poison(((B, D) if ti else (B, L, D), da_dtype), ((B, L, D), dt), ((B, D), dt))
    da, db, dh0 = torch.ops.lrnn.linear_scan_backward(g, ghl, a, h, h0, reverse)
    torch.cuda.synchronize()
    assert da.dtype == da_dtype and db.dtype == dt and dh0.dtype == dt
    da_ref, db_ref, dh0_ref = torch.ops.lrnn.linear_scan_backward(
        to_ref(g), to_ref(ghl), to_ref(a), to_ref(h), to_ref(h0), reverse)
    assert_close(db, db_ref, dt, "db")
    assert_close(dh0, dh0_ref, dt, "dh0")
    # a time-invariant da is a sum over L terms kept in the accumulation type: its error grows
    # with the number of partial sums, not with the stored dtype
    assert_close(da, da_ref, dt, "da", scale_mul=4.0 if ti else 1.0)


@pytest.mark.parametrize("L", LENGTHS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype_id", DTYPE_IDS)
def test_backward_matches_float64(dtype_id, layout, L):
    D = 37 if L <= 4096 else 5
    check_backward(dtype_id, layout, 2, L, D, seed=L + 1)


@pytest.mark.parametrize("with_ghl", [False, True])
@pytest.mark.parametrize("a_mode", ["full", "time-invariant", "batch-broadcast"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("L", [129, 5000])
@pytest.mark.parametrize("layout", ["time-major", "channel-major"])
@pytest.mark.parametrize("dtype_id", DTYPE_IDS)
def test_backward_variants(dtype_id, layout, L, reverse, a_mode, with_ghl):
    check_backward(dtype_id, layout, 3, L, 9, reverse=reverse, a_mode=a_mode, with_h0=not with_ghl,
                   with_ghl=with_ghl, seed=11)


@pytest.mark.parametrize("grad_layout", ["time-major", "channel-major-offset", "expanded"])
@pytest.mark.parametrize("layout", ["time-major", "channel-major"])
def test_backward_gradient_in_another_layout(layout, grad_layout):
    """Autograd hands the backward whatever layout the upstream produced, even stride 0."""
    if grad_layout == "expanded":
        gen = torch.Generator().manual_seed(5)
        a = make_a(2, 300, 7, torch.float32, layout, "full", gen)
        b = make_seq(2, 300, 7, torch.float32, layout, gen)
        h, _ = torch.ops.lrnn.linear_scan(a, b, None, False)
        g = torch.full((), 0.7, device=DEV).expand(2, 300, 7)
        da, db, dh0 = torch.ops.lrnn.linear_scan_backward(g, None, a, h, None, False)
        ref = torch.ops.lrnn.linear_scan_backward(to_ref(g), None, to_ref(a), to_ref(h), None, False)
        for got, want, what in zip((da, db, dh0), ref, ("da", "db", "dh0")):
            assert_close(got, want, torch.float32, what)
    else:
        check_backward("float32", layout, 2, 300, 7, grad_layout=grad_layout, seed=5)


@pytest.mark.parametrize("a_mode", ["full", "time-invariant", "batch-broadcast"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("layout", ["time-major", "channel-major"])
@pytest.mark.parametrize("dtype_id", ["float32", "complex64", "complex64-real-a"])
def test_autograd_matches_cpu_float64(dtype_id, layout, reverse, a_mode):
    """End to end: gradients of a loss through h and h_last w.r.t. a, b and h0."""
    _, dt, adt = DTYPES[DTYPE_IDS.index(dtype_id)]
    gen = torch.Generator().manual_seed(13)
    B, L, D = 2, 700, 6
    a = make_a(B, L, D, adt, layout, a_mode, gen)
    b = make_seq(B, L, D, dt, layout, gen)
    h0 = make_seq(B, 1, D, dt, "time-major", gen)[:, 0]
    w = make_seq(B, L, D, dt, "time-major", gen)
    w_last = make_seq(B, 1, D, dt, "time-major", gen)[:, 0]

    def grads(a, b, h0, w, w_last):
        a, b, h0 = (t.detach().requires_grad_() for t in (a, b, h0))
        h, h_last = lrnn.linear_scan(a, b, h0, reverse)
        loss = (h * w).sum() + (h_last * w_last).sum()
        loss = loss.real if loss.is_complex() else loss
        return torch.autograd.grad(loss, (a, b, h0))

    got = grads(a, b, h0, w, w_last)
    want = grads(*(to_ref(t) for t in (a, b, h0, w, w_last)))
    for g, r, what in zip(got, want, ("grad a", "grad b", "grad h0")):
        assert_close(g, r, dt, what, scale_mul=4.0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("layout", ["time-major", "channel-major"])
def test_gradcheck_cuda(dtype, layout):
    gen = torch.Generator().manual_seed(17)
    a = make_a(2, 19, 3, dtype, layout, "full", gen).requires_grad_()
    b = make_seq(2, 19, 3, dtype, layout, gen).requires_grad_()
    h0 = make_seq(2, 1, 3, dtype, "time-major", gen)[:, 0].requires_grad_()
    for reverse in (False, True):
        assert torch.autograd.gradcheck(lambda a, b, h0: lrnn.linear_scan(a, b, h0, reverse), (a, b, h0))


@pytest.mark.parametrize("dtype_id", ["float32", "float64", "complex128", "bfloat16"])
def test_time_invariant_da_is_deterministic(dtype_id):
    _, dt, adt = DTYPES[DTYPE_IDS.index(dtype_id)]
    gen = torch.Generator().manual_seed(19)
    for layout in ("time-major", "channel-major"):
        a = make_a(4, 20000, 16, adt, layout, "time-invariant", gen)
        b = make_seq(4, 20000, 16, dt, layout, gen)
        h, _ = torch.ops.lrnn.linear_scan(a, b, None, False)
        g = make_seq(4, 20000, 16, dt, layout, gen)
        first = torch.ops.lrnn.linear_scan_backward(g, None, a, h, None, False)
        for _ in range(3):
            again = torch.ops.lrnn.linear_scan_backward(g, None, a, h, None, False)
            for x, y in zip(first, again):
                assert torch.equal(x, y)


@pytest.mark.parametrize("B,L,D", [(2, 0, 5), (0, 7, 5), (2, 7, 0), (0, 0, 0)])
def test_empty_sizes(B, L, D):
    """L = 0 gives h_last = h0 (zeros without h0) and dh0 = grad_h_last; B*D = 0 launches nothing."""
    b = torch.randn(B, L, D, device=DEV)
    a = torch.rand(D, device=DEV)
    h0 = torch.randn(B, D, device=DEV)
    h, h_last = torch.ops.lrnn.linear_scan(a, b, h0, False)
    assert h.shape == (B, L, D) and h_last.shape == (B, D)
    _, h_last_none = torch.ops.lrnn.linear_scan(a, b, None, False)
    ghl = torch.randn(B, D, device=DEV)
    da, db, dh0 = torch.ops.lrnn.linear_scan_backward(torch.zeros_like(h), ghl, a, h, h0, False)
    assert da.shape == (B, D) and db.shape == (B, L, D) and dh0.shape == (B, D)
    if L == 0:
        assert torch.equal(h_last, h0)
        assert torch.equal(h_last_none, torch.zeros(B, D, device=DEV))
        assert torch.equal(dh0, ghl) and torch.equal(da, torch.zeros_like(da))


def test_cuda_kernel_is_registered():
    assert "CUDA" in torch._C._dispatch_dump("lrnn::linear_scan")
    assert "CUDA" in torch._C._dispatch_dump("lrnn::linear_scan_backward")


def test_mixed_devices_error_names_argument():
    b = torch.randn(2, 5, 3, device=DEV)
    with pytest.raises(RuntimeError, match=r"lrnn::linear_scan: argument 'a' is on cpu"):
        torch.ops.lrnn.linear_scan(torch.rand(3), b)
    with pytest.raises(RuntimeError, match=r"argument 'h0' is on cpu"):
        torch.ops.lrnn.linear_scan(torch.rand(3, device=DEV), b, torch.zeros(2, 3))


@pytest.mark.parametrize("layout", ["time-major", "channel-major"])
@pytest.mark.parametrize("dtype_id", ["float32", "bfloat16", "complex64"])
def test_opcheck_cuda(dtype_id, layout):
    _, dt, adt = DTYPES[DTYPE_IDS.index(dtype_id)]
    gen = torch.Generator().manual_seed(23)
    a = make_a(2, 33, 4, adt, layout, "full", gen)
    b = make_seq(2, 33, 4, dt, layout, gen)
    h0 = make_seq(2, 1, 4, dt, "time-major", gen)[:, 0]
    torch.library.opcheck(torch.ops.lrnn.linear_scan.default, (a, b, h0, True))
    h, _ = torch.ops.lrnn.linear_scan(a, b, h0, True)
    g = make_seq(2, 33, 4, dt, layout, gen)
    torch.library.opcheck(torch.ops.lrnn.linear_scan_backward.default, (g, h0, a, h, h0, True))
    ti = a[0, 0]
    torch.library.opcheck(torch.ops.lrnn.linear_scan.default, (ti, b, None, False))


def test_torch_compile_fullgraph_matches_eager():
    gen = torch.Generator().manual_seed(29)
    a = make_a(2, 513, 8, torch.float32, "channel-major", "full", gen).requires_grad_()
    b = make_seq(2, 513, 8, torch.float32, "channel-major", gen).requires_grad_()
    h0 = make_seq(2, 1, 8, torch.float32, "time-major", gen)[:, 0].requires_grad_()

    def f(a, b, h0):
        h, h_last = lrnn.linear_scan(a, b, h0, False)
        return (h.sin().sum() + h_last.square().sum())

    compiled = torch.compile(f, fullgraph=True)
    eager_loss = f(a, b, h0)
    eager_grads = torch.autograd.grad(eager_loss, (a, b, h0))
    comp_loss = compiled(a, b, h0)
    comp_grads = torch.autograd.grad(comp_loss, (a, b, h0))
    torch.testing.assert_close(comp_loss, eager_loss, rtol=1e-5, atol=1e-5)
    for x, y in zip(comp_grads, eager_grads):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["time-major", "channel-major"])
def test_cuda_graph_on_side_stream_matches_eager(layout):
    """Captured on a non-default stream (a launch on another stream would break the capture),
    replayed after the inputs change in place."""
    gen = torch.Generator().manual_seed(31)
    B, L, D = 2, 3000, 40
    a = make_a(B, L, D, torch.float32, layout, "full", gen)
    b = make_seq(B, L, D, torch.float32, layout, gen)
    h0 = make_seq(B, 1, D, torch.float32, "time-major", gen)[:, 0]
    g = make_seq(B, L, D, torch.float32, layout, gen)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):  # warm-up outside the capture
            h, h_last = torch.ops.lrnn.linear_scan(a, b, h0, False)
            torch.ops.lrnn.linear_scan_backward(g, h_last, a, h, h0, False)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=side):
        h, h_last = torch.ops.lrnn.linear_scan(a, b, h0, False)
        da, db, dh0 = torch.ops.lrnn.linear_scan_backward(g, h_last, a, h, h0, False)
    for step in range(2):
        b.copy_(make_seq(B, L, D, torch.float32, layout, gen))
        g.copy_(make_seq(B, L, D, torch.float32, layout, gen))
        graph.replay()
        torch.cuda.synchronize()
        h_e, h_last_e = torch.ops.lrnn.linear_scan(a, b, h0, False)
        da_e, db_e, dh0_e = torch.ops.lrnn.linear_scan_backward(g, h_last_e, a, h_e, h0, False)
        for x, y in zip((h, h_last, da, db, dh0), (h_e, h_last_e, da_e, db_e, dh0_e)):
            assert torch.equal(x, y), f"replay {step} differs from eager"
