"""Checks shared by the lrnn.nn layer tests (test_nn_*.py): each is a specification every layer
meets, parameterized by a factory that builds the layer.

Tolerances: exactness checks run in float64, where the step, chunked, scan and convolution paths
differ only by summation order; 1e-10 relative to the output scale leaves room for the FFT
(error ~ eps * log L * |k| * |u| sums) and for L up to a few hundred. Lower precisions compare
with the float64 result at a small multiple of their unit roundoff times the same growth.
"""
from __future__ import annotations

import torch

EXACT = 1e-10


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    wide = torch.complex128 if got.is_complex() or want.is_complex() else torch.float64
    got, want = got.detach().to(wide).cpu(), want.detach().to(wide).cpu()
    assert got.shape == want.shape, f"shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert torch.isfinite(got).all(), "non-finite values"
    return ((got - want).abs().max() / want.abs().max().clamp_min(1.0)).item()


def assert_rel(got, want, tol, what=""):
    err = rel_err(got, want)
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.1e}"


def run_steps(layer, x: torch.Tensor) -> tuple[torch.Tensor, object]:
    """Apply layer.step token by token from the zero state; returns (B, L, H_out) and the last state."""
    state = layer.initial_state(x.shape[0], device=x.device)
    ys = []
    for t in range(x.shape[1]):
        y, state = layer.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1), state


def check_step_equals_forward(layer, x):
    y = layer(x)
    ys, state = run_steps(layer, x)
    assert_rel(ys, y, EXACT, "step vs forward")
    _, final = layer(x, return_state=True)
    assert_rel(state, final, EXACT, "step state vs forward state")


def check_chunks_equal_whole(layer, x, cuts=(1, 7)):
    """Forward over consecutive chunks [0, c1), [c1, c2), [c2, L) with the carried state == forward
    on the whole sequence (output and final state)."""
    y, final = layer(x, return_state=True)
    bounds = [0, *cuts, x.shape[1]]
    state, parts = None, []
    for a, b in zip(bounds[:-1], bounds[1:]):
        yc, state = layer(x[:, a:b], state, return_state=True)
        parts.append(yc)
    assert_rel(torch.cat(parts, 1), y, EXACT, "chunked vs whole")
    assert_rel(state, final, EXACT, "chunked final state")


def check_compile_and_export(layer, x, tol=1e-5):
    """torch.compile(fullgraph=True) and torch.export (dynamic batch and length) give the eager result."""
    want = layer(x)
    compiled = torch.compile(layer, fullgraph=True, dynamic=False)
    assert_rel(compiled(x), want, tol, "torch.compile")
    batch, length = torch.export.Dim("batch", min=1), torch.export.Dim("length", min=2)
    ep = torch.export.export(layer, (x,), dynamic_shapes=({0: batch, 1: length},))
    assert_rel(ep.module()(x), want, tol, "torch.export")
    x2 = torch.randn(x.shape[0] + 1, x.shape[1] + 3, x.shape[2], dtype=x.dtype)
    assert_rel(ep.module()(x2), layer(x2), tol, "torch.export, other batch and length")


def check_gradients_reach_every_parameter(layer, x):
    layer.zero_grad()
    y = layer(x)
    (y * torch.randn_like(y)).sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"
        assert p.grad.abs().max() > 0, f"zero gradient for {name}"


def check_bf16_autocast(layer, x, tol=6e-2):
    """Under bf16 autocast the layer runs, keeps its output finite and stays within a few bf16
    roundings (2^-8 each, through two projections) of the float32 result."""
    want = layer(x)
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        got = layer(x)
        got.float().sum().backward()
    assert_rel(got, want, tol, "bf16 autocast")
    for name, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"bad bf16 gradient for {name}"
