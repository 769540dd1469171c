"""Shared pytest fixtures and helpers for the lrnn tests.

Tolerances: a kernel result is compared with a float64 (complex128) reference; the allowed error is
a small multiple of the unit roundoff of the dtype the result is stored in, relative to the
largest reference magnitude (the scans here are contractive, |a| < 1, so errors do not grow with L).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import lrnn  # noqa: F401  (loads the op library)

REPO = Path(__file__).resolve().parents[2]

# Unit roundoff of the stored result; the state itself is accumulated in float32/float64.
_EPS = {
    torch.float64: 2.0**-53, torch.complex128: 2.0**-53,
    torch.float32: 2.0**-24, torch.complex64: 2.0**-24,
    torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11,
}


def tolerance(dtype: torch.dtype, factor: float = 8.0) -> float:
    """Allowed max error relative to max|reference|: `factor` roundings of the stored dtype, with
    a floor of 1e-12 for float64 so that summation-order noise passes."""
    return max(factor * _EPS[dtype], 1e-12)


def assert_close_rel(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, factor: float = 8.0, what=""):
    got = got.detach().to(torch.complex128 if got.is_complex() or want.is_complex() else torch.float64).cpu()
    want = want.detach().to(got.dtype).cpu()
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert torch.isfinite(got).all(), f"{what}: non-finite values"
    scale = max(want.abs().max().item() if want.numel() else 0.0, 1.0)
    err = (got - want).abs().max().item() if want.numel() else 0.0
    tol = tolerance(dtype, factor)
    assert err <= tol * scale, f"{what}: max error {err:.3e} > {tol * scale:.3e} ({dtype})"


def has_cuda_kernel(op: str) -> bool:
    return torch.cuda.is_available() and "CUDA" in torch._C._dispatch_dump(op)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def build_dir() -> Path:
    return Path(os.environ.get("LRNN_BUILD_DIR", REPO / "build"))
