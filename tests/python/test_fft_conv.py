"""lrnn.functional.fft_conv: the FFT causal convolution against direct convolution (depthwise and
channel-contracting forms, kernels shorter and longer than the input, D skip), float32 under
autocast, gradients, and torch.compile."""
from __future__ import annotations

import pytest
import torch

import lrnn
from lrnn.reference import fft_conv_ref

from conftest import assert_close_rel


@pytest.mark.parametrize("B,L,H,Lk", [(1, 1, 1, 1), (2, 37, 5, 37), (3, 100, 4, 20), (2, 50, 3, 80)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_depthwise_matches_direct_convolution(B, L, H, Lk, dtype):
    u, k, D = torch.randn(B, L, H, dtype=dtype), torch.randn(H, Lk, dtype=dtype), torch.randn(H, dtype=dtype)
    y = lrnn.fft_conv(u, k, D)
    assert y.dtype == dtype and y.shape == (B, L, H)
    # an FFT of size n has error ~ log2(n) roundings of the largest partial sum
    assert_close_rel(y, fft_conv_ref(u.double(), k.double(), D.double()), dtype, factor=64 * L ** 0.5)


@pytest.mark.parametrize("D_shape", [None, "vector", "matrix"])
def test_full_form_contracts_channels(D_shape):
    B, L, H_in, H_out, Lk = 2, 64, 3, 5, 40
    u, k = torch.randn(B, L, H_in), torch.randn(H_out, H_in, Lk)
    D = {None: None, "vector": torch.randn(H_in), "matrix": torch.randn(H_out, H_in)}[D_shape]
    if D_shape == "vector":
        k = torch.randn(H_in, H_in, Lk)
    y = lrnn.fft_conv(u, k, D)
    want = fft_conv_ref(u.double(), k.double(), None if D is None else D.double())
    assert_close_rel(y, want, torch.float32, factor=64 * L ** 0.5)


def test_full_form_with_diagonal_kernel_equals_depthwise():
    u, k = torch.randn(2, 33, 4, dtype=torch.float64), torch.randn(4, 33, dtype=torch.float64)
    full = torch.diag_embed(k.t()).permute(1, 2, 0)
    assert_close_rel(lrnn.fft_conv(u, full), lrnn.fft_conv(u, k), torch.float64, factor=64)


def test_runs_in_float32_under_autocast_and_is_causal():
    u, k = torch.randn(2, 256, 3, dtype=torch.bfloat16), torch.randn(3, 256)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = lrnn.fft_conv(u, k)
    assert y.dtype == torch.float32
    assert_close_rel(y, fft_conv_ref(u.double(), k.double()), torch.float32, factor=64 * 16)
    u2 = u.clone()
    u2[:, 100:] = 0  # changing the future does not change the past
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y2 = lrnn.fft_conv(u2, k)
    assert (y2[:, :100] - y[:, :100]).abs().max() < 1e-5 * y.abs().max()


def test_gradients_match_direct_convolution():
    u = torch.randn(2, 20, 2, dtype=torch.float64, requires_grad=True)
    k = torch.randn(3, 2, 15, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lrnn.fft_conv, (u, k))


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="fft_conv: argument 'u'"):
        lrnn.fft_conv(torch.randn(3, 4), torch.randn(4, 3))
    with pytest.raises(ValueError, match="fft_conv: 'u' has 4 channels"):
        lrnn.fft_conv(torch.randn(1, 3, 4), torch.randn(5, 3))


def test_compiles_without_graph_breaks():
    u, k = torch.randn(2, 48, 3), torch.randn(3, 48)
    compiled = torch.compile(lrnn.fft_conv, fullgraph=True)
    assert_close_rel(compiled(u, k), lrnn.fft_conv(u, k), torch.float32, factor=64)


@pytest.mark.parametrize("form", ["depthwise", "full"])
def test_complex_inputs_use_the_full_fft(form):
    """State-wise convolutions (S5/LRU conv mode) convolve complex powers with complex inputs."""
    u = torch.randn(2, 40, 3, dtype=torch.complex128)
    k = torch.randn(3, 40, dtype=torch.complex128) if form == "depthwise" else torch.randn(4, 3, 40, dtype=torch.complex128)
    y = lrnn.fft_conv(u, k)
    assert y.dtype == torch.complex128
    assert_close_rel(y, fft_conv_ref(u, k), torch.float64, factor=64 * 40 ** 0.5)
    y32 = lrnn.fft_conv(u.real.float(), k.to(torch.complex64))
    assert y32.dtype == torch.complex64
    assert_close_rel(y32, fft_conv_ref(u.real, k), torch.float32, factor=64 * 40 ** 0.5)
