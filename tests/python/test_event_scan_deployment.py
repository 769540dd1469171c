"""Deployment of lrnn::event_scan: a small module using lrnn.functional.event_scan exported with
torch.export (dynamic batch and length), compiled and packaged by AOTInductor, reloaded, and run
against eager on new shapes. CPU here; the same on CUDA (marked cuda) on the GPU machine."""
from __future__ import annotations

import pytest
import torch

import lrnn.functional as F

from conftest import has_cuda_kernel

P = 6


class EventModel(torch.nn.Module):
    """Projection to a complex state, the fused event scan (async), and a readout that also uses
    the final state: the shape of an Event-SSM block."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.Lambda = torch.nn.Parameter(torch.complex(-0.1 - torch.rand(P, generator=g), torch.randn(P, generator=g)))
        self.log_delta = torch.nn.Parameter(torch.randn(P, generator=g) * 0.3 - 1)
        self.B = torch.nn.Parameter(torch.randn(P, 3, generator=g, dtype=torch.complex64) * 0.5)

    def forward(self, u: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        v = u.to(torch.complex64) @ self.B.T
        h, h_last = F.event_scan(self.Lambda, self.log_delta.exp(), dt, v, None, "async")
        return (h + h_last.unsqueeze(1)).real * 2.0


def inputs(B=2, L=33, device="cpu"):
    g = torch.Generator().manual_seed(B * 1000 + L)
    dt = torch.rand(B, L, generator=g)
    dt[:, ::5] = 0   # identity steps, as padding events use
    return torch.randn(B, L, 3, generator=g).to(device), dt.to(device)


def aoti_roundtrip(tmp_path, device):
    model = EventModel().to(device)
    Bd, Ld = torch.export.Dim("B"), torch.export.Dim("L", min=2)
    with torch.no_grad():
        ep = torch.export.export(model, inputs(device=device), dynamic_shapes={"u": {0: Bd, 1: Ld}, "dt": {0: Bd, 1: Ld}})
        path = torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp_path / f"event_{device}.pt2"))
    loaded = torch._inductor.aoti_load_package(path)
    for shape in [(2, 33), (3, 70), (1, 5)]:
        args = inputs(*shape, device=device)
        with torch.no_grad():
            want = model(*args)
        got = loaded(*args)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        assert got.abs().max() > 0


def test_aoti_package_cpu(tmp_path):
    aoti_roundtrip(tmp_path, "cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not has_cuda_kernel("lrnn::event_scan"), reason="needs the CUDA build of lrnn::event_scan and a GPU")
def test_aoti_package_cuda(tmp_path):
    aoti_roundtrip(tmp_path, "cuda")
