"""Deployment paths of the ops: torch.compile (forward and backward, no graph break),
torch.export with dynamic batch and length, an AOTInductor package, TorchScript, and a plain C++
LibTorch program (tests/cpp/run_ops.cpp) that links liblrnn_ops and runs the op, the AOTInductor
package and the TorchScript file made here, checked against Python's results."""
from __future__ import annotations

import struct
import subprocess

import pytest
import torch

import lrnn

from conftest import build_dir


class ScanModel(torch.nn.Module):
    """A small model around the op: the scan plus a use of the final state."""

    def forward(self, a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        h, h_last = torch.ops.lrnn.linear_scan(a, b, h0, False)
        return h * 2.0 + h_last.unsqueeze(1)


def inputs(B=3, L=40, D=8):
    return torch.rand(B, L, D) * 0.5 + 0.45, torch.randn(B, L, D), torch.randn(B, D)


def test_compile_fullgraph_forward_and_backward():
    def loss_fn(a, b, h0):
        h, h_last = lrnn.linear_scan(a, b, h0)
        h_rev, _ = lrnn.linear_scan(a[0, 0], b, None, reverse=True)
        return (h.sin() * h_rev).sum() + h_last.square().sum()

    compiled = torch.compile(loss_fn, fullgraph=True, backend="inductor")
    a, b, h0 = inputs()
    eager_in = [x.clone().requires_grad_() for x in (a, b, h0)]
    comp_in = [x.clone().requires_grad_() for x in (a, b, h0)]
    loss_fn(*eager_in).backward()
    compiled(*comp_in).backward()
    for e, c in zip(eager_in, comp_in):
        torch.testing.assert_close(c.grad, e.grad, rtol=1e-5, atol=1e-5)


def test_export_dynamic_batch_and_length():
    B, L = torch.export.Dim("B"), torch.export.Dim("L")
    ep = torch.export.export(ScanModel(), inputs(), dynamic_shapes={"a": {0: B, 1: L}, "b": {0: B, 1: L}, "h0": {0: B}})
    for shape in [(2, 17, 8), (5, 64, 8)]:
        args = inputs(*shape)
        torch.testing.assert_close(ep.module()(*args), ScanModel()(*args), rtol=0, atol=0)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """An AOTInductor package and a TorchScript file of ScanModel, plus inputs, in one folder."""
    folder = tmp_path_factory.mktemp("deploy")
    B, L = torch.export.Dim("B"), torch.export.Dim("L")
    ep = torch.export.export(ScanModel(), inputs(), dynamic_shapes={"a": {0: B, 1: L}, "b": {0: B, 1: L}, "h0": {0: B}})
    torch._inductor.aoti_compile_and_package(ep, package_path=str(folder / "model.pt2"))
    torch.jit.script(ScanModel()).save(str(folder / "scripted.pt"))
    return folder


def test_aoti_package_compiled_saved_reloaded(artifacts):
    model = torch._inductor.aoti_load_package(str(artifacts / "model.pt2"))
    for shape in [(3, 40, 8), (4, 9, 8)]:
        args = inputs(*shape)
        torch.testing.assert_close(model(*args), ScanModel()(*args), rtol=1e-6, atol=1e-6)


def test_torchscript_function_calling_the_op(artifacts):
    @torch.jit.script
    def scripted_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.ops.lrnn.linear_scan(a, b, None, True)[0]

    a, b, h0 = inputs()
    torch.testing.assert_close(scripted_scan(a, b), lrnn.linear_scan(a, b, reverse=True)[0], rtol=0, atol=0)
    loaded = torch.jit.load(str(artifacts / "scripted.pt"))
    torch.testing.assert_close(loaded(a, b, h0), ScanModel()(a, b, h0), rtol=0, atol=0)


def write_raw(path, t: torch.Tensor):
    t = t.float().contiguous()
    with open(path, "wb") as f:
        f.write(struct.pack("<q", t.dim()) + struct.pack(f"<{t.dim()}q", *t.shape))
        f.write(t.numpy().tobytes())


def read_raw(path) -> torch.Tensor:
    data = open(path, "rb").read()
    (rank,) = struct.unpack_from("<q", data)
    shape = struct.unpack_from(f"<{rank}q", data, 8)
    return torch.frombuffer(bytearray(data[8 + 8 * rank:]), dtype=torch.float32).reshape(shape)


def test_cpp_program_runs_op_aoti_package_and_torchscript(artifacts):
    exe = build_dir() / "lrnn_cpp_example"
    assert exe.exists(), f"{exe} is missing: build with `pip install --no-build-isolation -e .`"
    a, b, h0 = inputs(B=2, L=33, D=8)
    for name, t in {"a": a, "b": b, "h0": h0}.items():
        write_raw(artifacts / f"{name}.bin", t)
    proc = subprocess.run([str(exe), str(artifacts)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    h, h_last = lrnn.linear_scan(a, b, h0)
    torch.testing.assert_close(read_raw(artifacts / "h_op_cpp.bin"), h, rtol=0, atol=0)
    torch.testing.assert_close(read_raw(artifacts / "h_last_op_cpp.bin"), h_last, rtol=0, atol=0)
    y = ScanModel()(a, b, h0)
    torch.testing.assert_close(read_raw(artifacts / "y_aoti_cpp.bin"), y, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(read_raw(artifacts / "y_script_cpp.bin"), y, rtol=0, atol=0)
