"""lrnn::mimo_selective_scan (S7's MIMO selective scan, B_t / C_t formed in the kernels): values and
gradients against the float64 reference that forms every B_t and C_t explicitly, on random event
streams (time gaps with exact zeros, per-event delta), every input dtype, odd sizes, lengths
1 / 5 / 1000 / 4097, non-contiguous inputs, with and without biases / h0, both directions, all three
discretizations; gradcheck (float64 / complex128), opcheck, reproducible weight gradients, bad-input
messages, torch.compile(fullgraph=True) and torch.export of the op and of the S7 layer. CUDA tests
(marked cuda) compare the GPU with the float64 CPU reference."""
import re

import pytest
import torch

import lrnn
from conftest import has_cuda_kernel
from lrnn.nn import S7
from lrnn.reference import mimo_selective_scan_ref

DISCS = ["zoh", "dirac", "async"]
NAMES = ["u", "Lambda", "delta", "wb", "bb", "wc", "bc", "h0"]

# max error relative to max |reference| per stored dtype of the result: float32 sums of ~H*P terms,
# bf16 / f16 one or two roundings of the stored output (du is rounded by both stages)
TOL = {torch.float64: 1e-10, torch.complex128: 1e-10, torch.float32: 1e-4, torch.complex64: 1e-4,
       torch.bfloat16: 3e-2, torch.float16: 4e-3}


def problem(B, L, H, P, O, dtype=torch.float32, per_event=True, bias=True, h0=True, seed=0, device="cpu"):
    """A random S7 problem: weights scaled so that B_t and C_t entries are O(1); Lambda with Re < 0;
    gaps >= 0 with ~20% exact zeros; wc / bc are the second column half of an (O, 2P, 2, H) weight
    (strided, as the bidirectional layer passes them)."""
    g = torch.Generator().manual_seed(seed)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    st = torch.complex128 if dtype == torch.float64 else torch.complex64
    d = {
        "u": torch.randn(B, L, H, generator=g, dtype=torch.float64).to(dtype),
        "Lambda": torch.complex(-0.05 - torch.rand(P, generator=g, dtype=torch.float64),
                                3 * torch.randn(P, generator=g, dtype=torch.float64)).to(st),
        "delta": (0.02 + torch.rand((B, L, P) if per_event else (P,), generator=g, dtype=torch.float64)).to(acc),
        "dt": torch.rand(B, L, generator=g, dtype=torch.float64).to(acc) * 1.5,
        "wb": (torch.randn(P, H, 2, H, generator=g, dtype=torch.float64) / H ** 0.5).to(acc),
        "bb": (0.3 * torch.randn(P, H, 2, generator=g, dtype=torch.float64)).to(acc) if bias else None,
        "wc": (torch.randn(O, 2 * P, 2, H, generator=g, dtype=torch.float64) / H ** 0.5).to(acc)[:, P:],
        "bc": (0.3 * torch.randn(O, 2 * P, 2, generator=g, dtype=torch.float64)).to(acc)[:, P:] if bias else None,
        "h0": torch.randn(B, P, generator=g, dtype=torch.float64).to(st) if h0 else None,
    }
    d["dt"][torch.rand(B, L, generator=g) < 0.2] = 0
    return {k: (v.to(device) if v is not None else None) for k, v in d.items()}


def run(fn, p, disc, reverse, gy, gl, need_grad=True):
    """y, h_last and the gradients of <y, gy> + Re<h_last, gl> w.r.t. every tensor input."""
    ins = {k: (p[k].detach().clone().requires_grad_(need_grad) if p[k] is not None else None) for k in NAMES}
    y, hl = fn(ins["u"], ins["Lambda"], ins["delta"], p["dt"], ins["wb"], ins["bb"], ins["wc"], ins["bc"], ins["h0"],
               disc, reverse)
    out = {"y": y.detach(), "h_last": hl.detach()}
    if need_grad:
        loss = (y.to(gy.dtype) * gy).sum() + (hl * gl.to(hl.dtype).conj()).real.sum()
        names = [k for k in NAMES if ins[k] is not None]
        for k, gk in zip(names, torch.autograd.grad(loss, [ins[k] for k in names])):
            out["d" + k] = gk
    return out


def ref_of(p):
    """The same stored inputs in float64 / complex128 (the reference's arithmetic)."""
    return {k: (v.detach().cpu().to(torch.complex128 if v.is_complex() else torch.float64) if v is not None else None)
            for k, v in p.items()}


def check(got, want, what=""):
    for k, w in want.items():
        a = got[k]
        tol = TOL[a.dtype]
        scale = max(w.abs().max().item() if w.numel() else 0.0, 1.0)
        err = (a.detach().cpu().to(w.dtype) - w).abs().max().item() if w.numel() else 0.0
        assert err <= tol * scale, f"{what} {k}: max error {err:.3e} > {tol * scale:.3e} ({a.dtype})"


def compare(p, disc, reverse, seed=1, fn=lrnn.mimo_selective_scan, what="", ref=mimo_selective_scan_ref):
    B, L, O = p["u"].shape[0], p["u"].shape[1], p["wc"].shape[0]
    g = torch.Generator().manual_seed(seed)
    gy = torch.randn(B, L, O, generator=g, dtype=torch.float64)
    gl = torch.randn(B, p["Lambda"].shape[0], generator=g, dtype=torch.complex128)
    got = run(fn, p, disc, reverse, gy.to(p["u"].dtype).to(p["u"].device), gl.to(p["u"].device))
    # the reference sees the cotangent the op saw (rounded to u's dtype)
    want = run(ref, ref_of(p), disc, reverse, gy.to(p["u"].dtype).double(), gl)
    check(got, want, what)


@pytest.mark.parametrize("L,disc", [(1, "zoh"), (5, "dirac"), (1000, "async"), (4097, "zoh")])
def test_lengths_values_and_gradients(L, disc):
    p = problem(2 if L < 4097 else 1, L, 7, 5, 3, seed=L)
    compare(p, disc, reverse=L == 1000, what=f"L={L}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("disc", DISCS)
def test_dtypes_values_and_gradients(dtype, disc):
    p = problem(2, 33, 9, 5, 3, dtype, seed=3)
    compare(p, disc, reverse=False, what=str(dtype))


@pytest.mark.parametrize("bias,h0,per_event,reverse", [(False, False, True, False), (True, False, False, True),
                                                        (False, True, False, False), (True, True, True, True)])
def test_optional_inputs_shared_delta_and_reverse(bias, h0, per_event, reverse):
    p = problem(3, 21, 6, 3, 5, bias=bias, h0=h0, per_event=per_event, seed=7)
    compare(p, "async", reverse)


def test_non_contiguous_inputs():
    p = problem(2, 17, 5, 3, 4, seed=11)
    q = dict(p)
    q["u"] = p["u"].transpose(0, 1).contiguous().transpose(0, 1)          # (L, B, H) storage
    q["delta"] = p["delta"].permute(2, 0, 1).contiguous().permute(1, 2, 0)  # channel-major storage
    q["dt"] = p["dt"].t().contiguous().t()
    q["wb"] = p["wb"].permute(3, 0, 1, 2).contiguous().permute(1, 2, 3, 0)  # input index slowest
    q["bb"] = p["bb"].transpose(0, 1).contiguous().transpose(0, 1)
    q["h0"] = p["h0"].t().contiguous().t()
    for k in ("u", "delta", "dt", "wb", "bb", "wc", "bc", "h0"):
        assert not q[k].is_contiguous(), k
    compare(q, "zoh", reverse=True)
    y = lrnn.mimo_selective_scan(q["u"], q["Lambda"], q["delta"], q["dt"], q["wb"], q["bb"], q["wc"], q["bc"],
                                 q["h0"])[0]
    y_contig = lrnn.mimo_selective_scan(*[p[k].contiguous() if p[k] is not None else None for k in
                                          ("u", "Lambda", "delta", "dt", "wb", "bb", "wc", "bc", "h0")])[0]
    torch.testing.assert_close(y, y_contig, rtol=1e-6, atol=1e-6)


def test_zero_gaps_leave_the_state_to_the_input():
    # dt = 0 everywhere: identity transitions, h_t = h_{t-1} + g_t v_t (dirac: g = 1)
    p = problem(2, 6, 4, 3, 2, torch.float64, seed=2)
    p["dt"].zero_()
    _, h_last, h, v = torch.ops.lrnn.mimo_selective_scan(p["u"], p["Lambda"], p["delta"], p["dt"], p["wb"], p["bb"],
                                                         p["wc"], p["bc"], p["h0"], 1, False)
    torch.testing.assert_close(h_last, p["h0"] + v.sum(1))
    torch.testing.assert_close(h, p["h0"][:, None] + v.cumsum(1))


def test_zero_length():
    p = problem(2, 0, 3, 2, 4, seed=1)
    got = run(lrnn.mimo_selective_scan, p, "async", False, torch.randn(2, 0, 4), torch.randn(2, 2, dtype=torch.cfloat))
    assert got["y"].shape == (2, 0, 4) and torch.equal(got["h_last"], p["h0"])
    assert got["dwb"].abs().max() == 0 and got["dwc"].abs().max() == 0 and got["du"].shape == (2, 0, 3)


@pytest.mark.parametrize("reverse,per_event", [(False, True), (True, False)])
def test_gradcheck_float64(reverse, per_event):
    p = problem(2, 4, 3, 2, 2, torch.float64, per_event=per_event, seed=5)
    args = [p[k].clone().requires_grad_() for k in NAMES]

    def f(u, lam, delta, wb, bb, wc, bc, h0):
        y, hl = lrnn.mimo_selective_scan(u, lam, delta, p["dt"], wb, bb, wc, bc, h0, "zoh", reverse)
        return y, torch.view_as_real(hl)

    assert torch.autograd.gradcheck(f, args)


def test_backward_is_reproducible():
    # several token slices in the CPU backward: the weight gradients are summed in a fixed order
    p = problem(2, 700, 5, 3, 4, seed=9)
    gy, gl = torch.randn(2, 700, 4), torch.randn(2, 3, dtype=torch.cfloat)
    a = run(lrnn.mimo_selective_scan, p, "async", False, gy, gl)
    b = run(lrnn.mimo_selective_scan, p, "async", False, gy, gl)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("bias", [True, False])
def test_opcheck(bias):
    p = problem(2, 5, 3, 2, 3, bias=bias, seed=4)
    args = (p["u"], p["Lambda"], p["delta"], p["dt"], p["wb"], p["bb"], p["wc"], p["bc"], p["h0"], 0, False)
    torch.library.opcheck(torch.ops.lrnn.mimo_selective_scan.default, args)
    pd = problem(2, 5, 3, 2, 3, torch.float64, bias=bias, per_event=False, seed=4)
    ins = {k: (v.requires_grad_() if v is not None and k != "dt" else v) for k, v in pd.items()}
    torch.library.opcheck(torch.ops.lrnn.mimo_selective_scan.default,
                          (ins["u"], ins["Lambda"], ins["delta"], pd["dt"], ins["wb"], ins["bb"], ins["wc"],
                           ins["bc"], ins["h0"], 2, True))
    _, _, h, v = torch.ops.lrnn.mimo_selective_scan(*args)
    torch.library.opcheck(torch.ops.lrnn.mimo_selective_scan_backward.default,
                          (torch.randn(2, 5, 3), torch.randn(2, 2, dtype=torch.cfloat), *args[:9], h, v, 0, False))


def test_compile_fullgraph_and_export_of_the_op():
    p = problem(2, 9, 4, 3, 2, seed=6)
    ins = [p[k].clone().requires_grad_() for k in NAMES]

    def f(u, lam, delta, wb, bb, wc, bc, h0):
        y, hl = lrnn.mimo_selective_scan(u, lam, delta, p["dt"], wb, bb, wc, bc, h0, "zoh", True)
        return y.square().sum() + hl.real.sum()

    want = torch.autograd.grad(f(*ins), ins)
    got = torch.autograd.grad(torch.compile(f, fullgraph=True)(*ins), ins)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)

    class Op(torch.nn.Module):
        def forward(self, u, lam, delta, dt, wb, bb, wc, bc, h0):
            return lrnn.mimo_selective_scan(u, lam, delta, dt, wb, bb, wc, bc, h0, "async")

    args = tuple(p[k] for k in ("u", "Lambda", "delta", "dt", "wb", "bb", "wc", "bc", "h0"))
    ep = torch.export.export(Op(), args)
    for a, b in zip(ep.module()(*args), Op()(*args)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kw", [{}, {"bidirectional": True, "stride": 2}])
def test_layer_compile_fullgraph_and_export(kw):
    m = S7(10, 6, **kw)
    x, dt = torch.randn(2, 12, 10), torch.rand(2, 12)
    want = m(x, dt)
    torch.testing.assert_close(torch.compile(m, fullgraph=True)(x, dt), want)
    ep = torch.export.export(m, (x, dt))
    torch.testing.assert_close(ep.module()(x, dt), want)


def _args():
    p = problem(2, 6, 4, 3, 2, seed=8)
    return dict(u=p["u"], Lambda=p["Lambda"], delta=p["delta"], dt=p["dt"], wb=p["wb"], bb=p["bb"], wc=p["wc"],
                bc=p["bc"], h0=p["h0"], discretization=2, reverse=False)


BAD = [
    (lambda a: a.update(u=a["u"][0]), "argument 'u' must have shape (B, L, H)"),
    (lambda a: a.update(u=a["u"].to(torch.int32)), "argument 'u' must be float32, bfloat16, float16 or float64"),
    (lambda a: a.update(wb=a["wb"][..., 0, :]), "argument 'wb' must have shape (P, H, 2, H)"),
    (lambda a: a.update(wb=a["wb"][:, :, :, :-1]), "argument 'wb' must have shape (P, H, 2, H) = (3, 4, 2, 4)"),
    (lambda a: a.update(wb=a["wb"].double()), "argument 'wb' must have dtype float32"),
    (lambda a: a.update(bb=a["bb"][:2]), "argument 'bb' must have shape (P, H, 2) = (3, 4, 2)"),
    (lambda a: a.update(wc=a["wc"][:, :2]), "argument 'wc' must have shape (O, P, 2, H) = (2, 3, 2, 4)"),
    (lambda a: a.update(bc=a["bc"].bfloat16()), "argument 'bc' must have dtype float32"),
    (lambda a: a.update(Lambda=a["Lambda"][:-1]), "argument 'Lambda' must have shape (P,) = (3,)"),
    (lambda a: a.update(Lambda=a["Lambda"].cdouble()), "argument 'Lambda' must have dtype complex64"),
    (lambda a: a.update(delta=a["delta"][:, :2]), "argument 'delta' must have shape (P,) = (3,) or (B, L, P)"),
    (lambda a: a.update(delta=a["delta"].bfloat16()), "argument 'delta' must have dtype float32"),
    (lambda a: a.update(dt=a["dt"][:, :-1]), "argument 'dt' must have shape (B, L) = (2, 6)"),
    (lambda a: a.update(h0=a["h0"][:1]), "argument 'h0' must have shape (B, P) = (2, 3)"),
    (lambda a: a.update(h0=a["h0"].cdouble()), "argument 'h0' must have dtype complex64"),
    (lambda a: a.update(discretization=3), "argument 'discretization' must be 0 (zoh), 1 (dirac) or 2 (async)"),
]


@pytest.mark.parametrize("mutate,message", BAD)
def test_bad_input_names_op_and_argument(mutate, message):
    a = _args()
    mutate(a)
    with pytest.raises(RuntimeError, match="lrnn::mimo_selective_scan: " + re.escape(message)):
        torch.ops.lrnn.mimo_selective_scan(**a)


def test_backward_bad_input_and_functional_errors():
    a = _args()
    y, hl, h, v = torch.ops.lrnn.mimo_selective_scan(**a)
    pos = [a[k] for k in ("u", "Lambda", "delta", "dt", "wb", "bb", "wc", "bc", "h0")]
    with pytest.raises(RuntimeError, match=r"lrnn::mimo_selective_scan_backward: argument 'grad_y' must have shape"):
        torch.ops.lrnn.mimo_selective_scan_backward(y[:, :-1], None, *pos, h, v, 2, False)
    with pytest.raises(RuntimeError, match=r"lrnn::mimo_selective_scan_backward: argument 'v' must have dtype"):
        torch.ops.lrnn.mimo_selective_scan_backward(y, None, *pos, h, v.cdouble(), 2, False)
    with pytest.raises(ValueError, match="discretization must be one of"):
        lrnn.mimo_selective_scan(*pos, discretization="bilinear")
    with pytest.raises(ValueError, match="dt .* is data"):
        lrnn.mimo_selective_scan(a["u"], a["Lambda"], a["delta"], a["dt"].requires_grad_(), *pos[4:])


# ---- CUDA (marked cuda): the GPU against the float64 CPU reference ----
# The reference here is the CPU op in float64 (checked against the explicit-matrix reference by the
# tests above): the Python reference loop would take minutes at these lengths.

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("L", [1, 5, 1000, 4097])
@pytest.mark.parametrize("disc", DISCS)
@pytest.mark.cuda
@pytest.mark.skipif(not has_cuda_kernel("lrnn::mimo_selective_scan"),
                    reason="needs the CUDA build of lrnn::mimo_selective_scan and a GPU")
def test_cuda_matches_float64_reference(dtype, L, disc):
    for bias, h0, per_event, reverse in [(True, True, True, False), (False, False, False, True)]:
        p = problem(3, L, 13, 7, 5, dtype, bias=bias, h0=h0, per_event=per_event, seed=L, device="cuda")
        compare(p, disc, reverse, what=f"cuda {dtype} L={L} bias={bias} reverse={reverse}",
                ref=lrnn.mimo_selective_scan)


@pytest.mark.parametrize("B,L,H,P,O", [(8, 512, 64, 16, 64), (2, 300, 128, 64, 128), (3, 77, 33, 19, 17)])
@pytest.mark.cuda
@pytest.mark.skipif(not has_cuda_kernel("lrnn::mimo_selective_scan"),
                    reason="needs the CUDA build of lrnn::mimo_selective_scan and a GPU")
def test_cuda_benchmark_like_sizes_and_non_contiguous(B, L, H, P, O):
    p = problem(B, L, H, P, O, seed=P, device="cuda")
    p["u"] = p["u"].transpose(0, 1).contiguous().transpose(0, 1)
    compare(p, "async", False, what=f"cuda ({B}, {L}, {H}, {P}, {O})", ref=lrnn.mimo_selective_scan)


@pytest.mark.cuda
@pytest.mark.skipif(not has_cuda_kernel("lrnn::mimo_selective_scan"),
                    reason="needs the CUDA build of lrnn::mimo_selective_scan and a GPU")
def test_cuda_bitwise_reproducible():
    p = problem(4, 2000, 32, 16, 24, seed=3, device="cuda")
    gy = torch.randn(4, 2000, 24, device="cuda")
    gl = torch.randn(4, 16, dtype=torch.complex64, device="cuda")
    a = run(lrnn.mimo_selective_scan, p, "zoh", False, gy, gl)
    b = run(lrnn.mimo_selective_scan, p, "zoh", False, gy, gl)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("kw", [{"stablessm_a": True}, {"bidirectional": True, "discretization": "zoh", "stride": 2}])
@pytest.mark.cuda
@pytest.mark.skipif(not has_cuda_kernel("lrnn::mimo_selective_scan"),
                    reason="needs the CUDA build of lrnn::mimo_selective_scan and a GPU")
def test_cuda_layer_matches_cpu_float64(kw):
    m = S7(24, 16, **kw)
    x, dt = torch.randn(3, 301, 24), torch.rand(3, 301)
    dt[:, ::5] = 0
    md = S7(24, 16, **kw).double()
    md.load_state_dict(m.state_dict())
    want = md(x.double(), dt.double())
    gd = torch.autograd.grad(want.square().sum(), list(md.parameters()))
    mc = m.cuda()
    got = mc(x.cuda(), dt.cuda())
    gc = torch.autograd.grad(got.square().sum(), list(mc.parameters()))
    check({"y": got}, {"y": want})
    # The parameter gradients also pass through the CUDA event scan, whose transitions use fast-math
    # exp / sin / cos: its own CUDA tests allow 2e-3 (test_event_scan.py). Here the stablessm_a map makes
    # the Lambda gradients ~1e8 with cancellation; the H200 measured 2.0e-4 on Lambda_re (CPU float32: 1e-5).
    for (n, _), a, b in zip(mc.named_parameters(), gc, gd):
        scale = max(b.abs().max().item(), 1.0)
        err = (a.cpu().to(b.dtype) - b).abs().max().item()
        assert err <= 2e-3 * scale, f"{n}: max error {err:.3e} > {2e-3 * scale:.3e}"
