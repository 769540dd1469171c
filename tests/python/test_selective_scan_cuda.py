"""CUDA tests of lrnn::selective_scan: the CUDA kernels against the CPU kernels run in float64 on
the same (rounded) inputs, for values and every gradient, across state sizes (each kernel
configuration), groups, options, odd lengths and channel counts; outputs are poisoned (the
allocator hands back NaN-filled memory) so unwritten elements fail; determinism; errors."""
from __future__ import annotations

import pytest
import torch

import lrnn  # noqa: F401  (loads the ops)

from test_selective_scan import ARGS, TOL, call_op, make_inputs, rel_err

pytestmark = pytest.mark.cuda

if "CUDA" not in torch._C._dispatch_dump("lrnn::selective_scan") or not torch.cuda.is_available():
    pytest.skip("lrnn was built without CUDA or no GPU is present", allow_module_level=True)

CUDA_TOL = {torch.float32: 2e-4, torch.bfloat16: 4e-2, torch.float16: 1e-2}


def poison():
    """Fill the allocator's cache with NaN so that an output element the kernel forgets is NaN."""
    x = torch.full((64 << 20,), float("nan"), device="cuda")
    del x


def to(inp, device, double=False):
    out = {}
    for k, v in inp.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device)
            if double:
                v = v.double()
        out[k] = v
    return out


def check_cuda_vs_cpu(inp, tol):
    diff = [k for k in ARGS if isinstance(inp[k], torch.Tensor)]
    gpu = {k: (v.cuda().requires_grad_() if k in diff else v) for k, v in inp.items()}
    cpu = {k: (v.double().requires_grad_() if k in diff else v) for k, v in inp.items()}
    poison()
    y, h, _ = call_op(gpu)
    y_ref, h_ref, _ = call_op(cpu)
    assert y.dtype == inp["u"].dtype
    assert rel_err(y.cpu(), y_ref) <= tol, f"y {rel_err(y.cpu(), y_ref)}"
    assert rel_err(h.cpu(), h_ref) <= tol, f"h_last {rel_err(h.cpu(), h_ref)}"
    g = torch.Generator().manual_seed(3)
    W = torch.rand(y.shape, generator=g, dtype=torch.float64) - 0.5
    V = torch.rand(h.shape, generator=g, dtype=torch.float64) - 0.5
    poison()
    ((y.double() * W.cuda()).sum() + (h.double() * V.cuda()).sum()).backward()
    ((y_ref * W).sum() + (h_ref * V).sum()).backward()
    for k in diff:
        got, want = gpu[k].grad, cpu[k].grad
        assert got is not None and got.shape == gpu[k].shape, k
        assert rel_err(got.cpu(), want) <= tol, f"grad {k}: {rel_err(got.cpu(), want)}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("N", [1, 5, 16, 33, 64, 100, 256])
def test_state_sizes(dtype, N):
    check_cuda_vs_cpu(make_inputs(Bn=2, D=13, L=131, N=N, G=1, dtype=dtype), CUDA_TOL[dtype])


OPTION_SETS = [dict(), dict(G=2, D=40), dict(B_var=False, C_var=False), dict(B_var=False, G=2),
               dict(C_var=False), dict(has_D=False, has_z=False, has_bias=False, softplus=False, has_h0=False),
               dict(has_dtA=True), dict(has_dtA=True, G=2, has_z=False)]


@pytest.mark.parametrize("opts", OPTION_SETS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "all")
@pytest.mark.parametrize("L", [1, 7, 64, 65, 2049])
def test_options_and_lengths(opts, L):
    opts = dict(dict(Bn=2, D=12, N=16), **opts)
    check_cuda_vs_cpu(make_inputs(L=L, dtype=torch.float32, **opts), CUDA_TOL[torch.float32])


def test_many_channels_per_group():
    # more channels per group than one block handles: several dB/dC partials per group
    check_cuda_vs_cpu(make_inputs(Bn=2, D=70, L=300, N=16, G=2, dtype=torch.float32), CUDA_TOL[torch.float32])


def test_batch_first_and_unaligned():
    inp = make_inputs(Bn=2, D=24, L=99, N=16, dtype=torch.bfloat16)
    for k in ["u", "delta", "z"]:
        inp[k] = inp[k].transpose(1, 2).contiguous().transpose(1, 2)
    check_cuda_vs_cpu(inp, CUDA_TOL[torch.bfloat16])
    odd = make_inputs(Bn=2, D=8, L=101, N=16, dtype=torch.float32)
    odd["B"] = torch.cat([odd["B"], odd["B"]], -1)[..., 1:102]  # row starts not 16-byte aligned
    check_cuda_vs_cpu(odd, CUDA_TOL[torch.float32])


def test_long_sequence_bf16():
    check_cuda_vs_cpu(make_inputs(Bn=1, D=4, L=5000, N=16, dtype=torch.bfloat16), CUDA_TOL[torch.bfloat16])


@pytest.mark.parametrize("N", [8, 16, 32])
def test_backward_deterministic(N):
    # N <= 32: per-block dB/dC partials (N > 32 adds dB/dC with atomics, see selective_scan.cu);
    # one case per backward configuration, each with several blocks per B/C group
    inp = to(make_inputs(Bn=4, D=64, L=1000, N=N, G=1, dtype=torch.bfloat16), "cuda")
    grads = []
    for _ in range(2):
        t = {k: (v.clone().requires_grad_() if isinstance(v, torch.Tensor) else v) for k, v in inp.items()}
        y, h, _ = call_op(t)
        (y.float().sum() + h.sum()).backward()
        grads.append([t[k].grad for k in ["u", "delta", "A", "B", "C", "D", "delta_bias", "h0", "z"]])
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_opcheck_cuda():
    inp = to(make_inputs(Bn=2, D=8, L=70, N=16, dtype=torch.float32, has_dtA=True), "cuda")
    torch.library.opcheck(torch.ops.lrnn.selective_scan.default, [inp[k] for k in ARGS])


def test_errors_cuda():
    inp = to(make_inputs(), "cuda")
    bad = dict(inp, A=inp["A"].cpu())
    with pytest.raises(RuntimeError, match=r"lrnn::selective_scan: argument 'A' is on cpu but 'u' is on cuda"):
        call_op(bad)
    dbl = to(make_inputs(dtype=torch.float64), "cuda")
    with pytest.raises(RuntimeError, match=r"float64 runs on the CPU only"):
        call_op(dbl)
