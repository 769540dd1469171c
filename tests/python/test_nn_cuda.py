"""The time-invariant layers (S5, LRU, Centaurus) and a stacked model on a CUDA device: the same
parameters give the CPU float64 result, step == forward, bf16 autocast and torch.compile run.
Scan-mode cases need the CUDA kernel of lrnn::linear_scan and are skipped where it is absent;
everything is skipped without a GPU."""
from __future__ import annotations

import copy

import pytest
import torch

import lrnn
from lrnn.nn import LRU, S5, Centaurus

from layer_testing import assert_rel, run_steps

pytestmark = pytest.mark.cuda

HAS_GPU = torch.cuda.is_available()
SCAN_ON_GPU = HAS_GPU and "CUDA" in torch._C._dispatch_dump("lrnn::linear_scan")


def cases(compile_subset: bool = False):
    """GPU cases; compile_subset keeps one per layer family (compilation dominates the run time)."""
    out = []
    for mode in ("scan", "conv"):
        marks = [] if mode == "conv" or SCAN_ON_GPU else [pytest.mark.skip(reason="no CUDA linear_scan kernel")]
        out.append(pytest.param(lambda m=mode: S5(32, 32, 4, mode=m), id=f"s5-{mode}", marks=marks))
        out.append(pytest.param(lambda m=mode: S5(32, 32, 4, mode=m, bidirectional=True, conj_sym=False),
                                id=f"s5-bidir-{mode}", marks=marks))
        out.append(pytest.param(lambda m=mode: LRU(32, 24, r_min=0.9, mode=m), id=f"lru-{mode}", marks=marks))
    for mode in Centaurus.MODES:
        out.append(pytest.param(lambda m=mode: Centaurus(32, 8, 4, mode=m).eval(), id=f"centaurus-{mode}"))
    if compile_subset:
        keep = {"s5-scan", "s5-conv", "lru-scan", "centaurus-neck", "centaurus-dws"}
        out = [c for c in out if c.id in keep]
    return out


needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="no CUDA device")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@needs_gpu
@pytest.mark.parametrize("factory", cases())
def test_cuda_matches_cpu_float64(factory):
    """float32 on the GPU vs float64 on the CPU: within ~300 float32 roundings (projections of
    width 32, FFT of size 2L, scan over L = 500)."""
    layer = factory()
    x = torch.randn(4, 500, 32)
    want = copy.deepcopy(layer).double()(x.double())
    got = layer.cuda()(x.cuda())
    assert_rel(got, want, 300 * 2.0**-24, "cuda fp32 vs cpu fp64")


@needs_gpu
@pytest.mark.parametrize("factory", cases())
def test_cuda_step_equals_forward(factory):
    layer = factory()
    if getattr(layer, "bidirectional", False):
        pytest.skip("bidirectional layers have no step")
    layer = layer.cuda().double()
    x = torch.randn(2, 64, 32, device="cuda", dtype=torch.float64)
    ys, _ = run_steps(layer, x)
    assert_rel(ys, layer(x), 1e-10, "step vs forward")


@needs_gpu
@pytest.mark.parametrize("factory", cases())
def test_cuda_bf16_autocast_and_backward(factory):
    layer = factory().cuda()
    x = torch.randn(4, 256, 32, device="cuda")
    want = layer(x)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = layer(x)
        got.float().pow(2).mean().backward()
    assert_rel(got, want, 6e-2, "bf16 autocast")
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())


@needs_gpu
@pytest.mark.parametrize("factory", cases(compile_subset=True))
def test_cuda_compile_fullgraph(factory):
    layer = factory().cuda()
    x = torch.randn(2, 128, 32, device="cuda")
    assert_rel(torch.compile(layer, fullgraph=True)(x), layer(x), 1e-5, "compiled")


@needs_gpu
@pytest.mark.skipif(not SCAN_ON_GPU, reason="no CUDA linear_scan kernel")
def test_cuda_stacked_model_trains_one_step():
    model = lrnn.models.SequenceModel(8, 10, 64, 2, "s5", {"d_state": 64, "blocks": 4}).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, target = torch.randn(8, 256, 8, device="cuda"), torch.randint(0, 10, (8,), device="cuda")
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
