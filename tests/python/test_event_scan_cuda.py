"""CUDA-only checks of lrnn::event_scan's tiled kernels beyond test_event_scan.py's CUDA vs CPU
comparison: sizes with many tiles per chain and several chains (a partial channel group), run
concurrently by many blocks, bitwise reproducibility of forward and backward across runs, and
non-contiguous inputs; each for both forward scans (LRNN_EVENT_SCAN_IMPL: the three-pass scan
and the one-pass scan, which the launcher picks by shape; the backward is three-pass). All
marked cuda."""
import functools

import pytest
import torch

import lrnn

from conftest import has_cuda_kernel
from test_event_scan import stream

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not has_cuda_kernel("lrnn::event_scan"),
                                 reason="needs the CUDA build of lrnn::event_scan and a GPU")]


@pytest.fixture(params=["3pass", "1pass"])
def impl(request, monkeypatch):
    monkeypatch.setenv("LRNN_EVENT_SCAN_IMPL", request.param)
    return request.param


def run(dev, Lam, delta, dt, v, h0, disc, reverse, gy, gl):
    ins = [t.to(dev).clone().requires_grad_() for t in (Lam, delta, v, h0)]
    h, last = lrnn.event_scan(ins[0], ins[1], dt.to(dev), ins[2], ins[3], disc, reverse)
    loss = (h * gy.to(dev).conj()).real.sum() + (last * gl.to(dev).conj()).real.sum()
    return [x.detach() for x in (h, last, *torch.autograd.grad(loss, ins))]


@pytest.mark.parametrize("disc,per_event,reverse", [("async", False, False), ("zoh", True, True),
                                                    ("dirac", False, True)])
@functools.lru_cache(maxsize=3)
def long_case(disc, per_event, reverse):
    """Inputs and the float64 CPU results of a long case (cached: every kernel is compared with it)."""
    B, L, P = 4, 20000, 296
    cpu = stream(B, L, P, torch.complex64, torch.float32, per_event=per_event, pad=7, seed=5)
    gy, gl = torch.randn(B, L, P, dtype=torch.complex64), torch.randn(B, P, dtype=torch.complex64)
    want = run("cpu", *[t.to(torch.complex128 if t.is_complex() else torch.float64) for t in cpu], disc, reverse,
               gy.to(torch.complex128), gl.to(torch.complex128))
    return cpu, gy, gl, want


def test_long_many_chains_vs_cpu_float64(disc, per_event, reverse, impl):
    # 40 chains (4 batch rows x 10 channel groups, the last with 8 of 32 channels) of 313 tiles.
    cpu, gy, gl, want = long_case(disc, per_event, reverse)
    got = run("cuda", *cpu, disc, reverse, gy, gl)
    for name, a, b in zip(["h", "h_last", "dLambda", "ddelta", "dv", "dh0"], got, want):
        err = (a.cpu().to(b.dtype) - b).abs().max() / b.abs().max().clamp(min=1)
        assert err < 2e-3, f"{name}: {err:.2e}"


def test_bitwise_reproducible(impl):
    B, L, P = 8, 30000, 128
    ins = stream(B, L, P, seed=9)
    gy, gl = torch.randn(B, L, P, dtype=torch.complex64), torch.randn(B, P, dtype=torch.complex64)
    first = run("cuda", *ins, "async", False, gy, gl)
    for _ in range(3):
        again = run("cuda", *ins, "async", False, gy, gl)
        for a, b in zip(first, again):
            assert torch.equal(a, b)


@pytest.mark.parametrize("per_event", [True, False])
def test_non_contiguous_inputs(per_event, impl):
    B, L, P = 3, 3000, 40
    Lam, delta, dt, v, h0 = [t.cuda() for t in stream(B, L, P, per_event=per_event, seed=2)]
    # (B, P, L) storage viewed as (B, L, P); dt and h0 strided; Lambda every other element
    v_nc = v.transpose(1, 2).contiguous().transpose(1, 2)
    delta_nc = delta.transpose(1, 2).contiguous().transpose(1, 2) if per_event else torch.stack([delta] * 2, -1)[:, 1]
    dt_nc = torch.stack([dt, dt], -1)[..., 0]
    h0_nc = torch.stack([h0, h0], -1)[..., 1]
    lam_nc = torch.stack([Lam, Lam], -1)[:, 0]
    assert not any(t.is_contiguous() for t in (v_nc, delta_nc, dt_nc, h0_nc, lam_nc))
    for disc in ("zoh", "async"):
        h, last = lrnn.event_scan(lam_nc, delta_nc, dt_nc, v_nc, h0_nc, disc)
        h_ref, last_ref = lrnn.event_scan(Lam, delta, dt, v, h0, disc)
        torch.testing.assert_close(h, h_ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(last, last_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype,rdtype", [(torch.complex64, torch.float32), (torch.complex64, torch.bfloat16),
                                          (torch.complex128, torch.float64)])
@pytest.mark.parametrize("L", [1, 255, 257, 5000])
@pytest.mark.parametrize("disc,reverse", [("async", False), ("zoh", True), ("dirac", False)])
def test_forward_kernels_vs_cpu(dtype, rdtype, L, disc, reverse, impl):
    # the forward kernels on few chains (forced: by shape they would run the three-pass scan),
    # chunk boundaries (255 / 257 steps against chunks of 128 and 256) and checkpoints (5000)
    B, P = 2, 45
    ins = stream(B, L, P, dtype, rdtype, pad=3 if L > 3 else 0, seed=L)
    h, last = lrnn.event_scan(*[t.cuda() for t in ins], disc, reverse)
    want_h, want_last = lrnn.event_scan(*[t.to(torch.complex128 if t.is_complex() else torch.float64) for t in ins],
                                        disc, reverse)
    lim = 1e-9 if dtype == torch.complex128 else 2e-3
    for a, b in ((h, want_h), (last, want_last)):
        err = (a.cpu().to(b.dtype) - b).abs().max() / b.abs().max().clamp(min=1)
        assert err < lim
    assert torch.equal(last, h[:, 0 if reverse else -1])
