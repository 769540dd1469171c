"""lrnn::ssm_kernel and lrnn::cauchy (CPU, and CUDA when present): values against the float64
materializing references, broadcasting, non-contiguous inputs, long kernels, opcheck, gradcheck
in complex128 and error messages."""
from __future__ import annotations

import pytest
import torch

import lrnn
from lrnn.reference import cauchy_ref, ssm_kernel_ref

from conftest import assert_close_rel, has_cuda_kernel

COMPLEX = [torch.complex64, torch.complex128]
REAL_OF = {torch.complex64: torch.float32, torch.complex128: torch.float64}


def modes(H, N, dtype, device="cpu"):
    """Decaying, rotating modes like a discretized S4D/S5 (Re z in [-0.5, -1e-3], |Im z| < 3) and
    complex weights: the (w, z) of an SSM kernel."""
    z = torch.complex(-(1e-3 + 0.5 * torch.rand(H, N, dtype=torch.float64)),
                      6 * torch.rand(H, N, dtype=torch.float64) - 3)
    w = torch.randn(H, N, dtype=torch.complex128)
    return w.to(device, dtype), z.to(device, dtype)


def weights(w, basis):
    return w if basis == "complex" else w.real.contiguous()


def wide(t):
    return t.to(torch.complex128 if t.is_complex() else torch.float64)


# ---------------------------------------------------------------- ssm_kernel
@pytest.mark.parametrize("dtype", COMPLEX)
@pytest.mark.parametrize("basis", ["complex", "cosine"])
@pytest.mark.parametrize("H,N,L", [(1, 1, 1), (3, 5, 7), (4, 33, 130), (2, 70, 1000)])
def test_ssm_kernel_matches_float64_reference(dtype, basis, H, N, L):
    w, z = modes(H, N, dtype)
    w = weights(w, basis)
    k = lrnn.ssm_kernel(w, z, L, basis)
    assert k.dtype == REAL_OF[dtype] and k.shape == (H, L)
    # N terms per output plus 32 steps of drift since the last anchor
    assert_close_rel(k, ssm_kernel_ref(wide(w), wide(z), L, basis), k.dtype, factor=4 * (N + 32))


@pytest.mark.parametrize("basis", ["complex", "cosine"])
def test_ssm_kernel_backward_matches_reference_gradients(basis):
    H, N, L = 3, 21, 300
    w, z = modes(H, N, torch.complex64)
    w = weights(w, basis).requires_grad_()
    z = z.requires_grad_()
    g = torch.randn(H, L)
    gw, gz = torch.autograd.grad(lrnn.ssm_kernel(w, z, L, basis), (w, z), g)
    w64, z64 = wide(w.detach()).requires_grad_(), wide(z.detach()).requires_grad_()
    rw, rz = torch.autograd.grad(ssm_kernel_ref(w64, z64, L, basis), (w64, z64), g.double())
    # sums over L of terms up to L*|w|: relative to the largest gradient
    assert_close_rel(gw, rw, torch.float32, factor=8 * (32 + L ** 0.5), what="grad_w")
    assert_close_rel(gz, rz, torch.float32, factor=8 * (32 + L ** 0.5), what="grad_z")


def test_ssm_kernel_broadcasts_shared_modes_and_reduces_their_gradient():
    H, N, L = 4, 6, 50
    w, z = modes(H, N, torch.complex128)
    z1 = z[0].clone().requires_grad_()            # (N,): one set of modes for every row
    w = w.requires_grad_()
    k = lrnn.ssm_kernel(w, z1, L)
    k_ref = ssm_kernel_ref(w, z1.expand(H, N), L)
    assert_close_rel(k, k_ref, torch.float64, factor=64)
    g = torch.randn(H, L, dtype=torch.float64)
    gz, = torch.autograd.grad(k, z1, g)
    gz_ref, = torch.autograd.grad(k_ref, z1, g)
    assert gz.shape == (N,)
    assert_close_rel(gz, gz_ref, torch.float64, factor=1e4)


def test_ssm_kernel_reads_non_contiguous_inputs():
    H, N, L = 5, 9, 64
    w, z = modes(2 * H, 2 * N, torch.complex64)
    w, z = w[::2, ::2], z.t().contiguous().t()[::2, 1::2]    # strided rows, column-major modes
    assert not w.is_contiguous() and not z.is_contiguous()
    assert_close_rel(lrnn.ssm_kernel(w, z, L), ssm_kernel_ref(wide(w), wide(z), L), torch.float32, factor=4 * (N + 32))


def test_ssm_kernel_long_kernel_stays_accurate():
    """L = 65536 with slowly decaying fast-rotating modes: a running product would drift by
    ~L * eps (4e-3 in float32); the re-anchored powers stay at the float32 level of one block."""
    N, L = 8, 65536
    z = torch.complex(-torch.rand(1, N, dtype=torch.float64) * 1e-4, torch.rand(1, N, dtype=torch.float64) * 3)
    w = torch.randn(1, N, dtype=torch.complex128)
    k = lrnn.ssm_kernel(w.to(torch.complex64), z.to(torch.complex64), L)
    k_ref = ssm_kernel_ref(w.to(torch.complex64).to(torch.complex128), z.to(torch.complex64).to(torch.complex128), L)
    assert (k.double() - k_ref).abs().max().item() < 64 * 2**-24 * (N + 32) * k_ref.abs().max().item()


@pytest.mark.parametrize("basis", ["complex", "cosine"])
def test_ssm_kernel_gradcheck(basis):
    w, z = modes(2, 3, torch.complex128)
    w = weights(w, basis).requires_grad_()
    z = z.requires_grad_()
    assert torch.autograd.gradcheck(lambda w, z: lrnn.ssm_kernel(w, z, 40, basis), (w, z))


def test_ssm_kernel_opcheck():
    w, z = modes(3, 5, torch.complex64)
    torch.library.opcheck(torch.ops.lrnn.ssm_kernel.default, (w.requires_grad_(), z.requires_grad_(), 17, "complex"))
    torch.library.opcheck(torch.ops.lrnn.ssm_kernel.default, (w.real.contiguous(), z[0], 9, "cosine"))
    g = torch.randn(3, 17)
    torch.library.opcheck(torch.ops.lrnn.ssm_kernel_backward.default, (g, w.detach(), z.detach(), "complex"))


def test_ssm_kernel_zero_length_and_zero_states():
    w, z = modes(3, 4, torch.complex64)
    assert lrnn.ssm_kernel(w, z, 0).shape == (3, 0)
    k = lrnn.ssm_kernel(w[:, :0], z[:, :0], 5)
    assert k.shape == (3, 5) and (k == 0).all()


def test_ssm_kernel_errors_name_op_and_argument():
    w, z = modes(2, 3, torch.complex64)
    with pytest.raises(RuntimeError, match=r"lrnn::ssm_kernel: argument 'basis'"):
        lrnn.ssm_kernel(w, z, 4, "legs")
    with pytest.raises(RuntimeError, match=r"lrnn::ssm_kernel: argument 'z' must be complex"):
        lrnn.ssm_kernel(w.real, z.real, 4, "cosine")
    with pytest.raises(RuntimeError, match=r"lrnn::ssm_kernel: argument 'w' must have dtype float32"):
        lrnn.ssm_kernel(w, z, 4, "cosine")
    with pytest.raises(RuntimeError, match=r"lrnn::ssm_kernel: argument 'w' must have dtype complex64"):
        lrnn.ssm_kernel(w.to(torch.complex128), z, 4)
    with pytest.raises(RuntimeError, match=r"lrnn::ssm_kernel: arguments 'w' .* do not broadcast"):
        lrnn.ssm_kernel(w, z[:, :2], 4)
    with pytest.raises(RuntimeError, match=r"lrnn::ssm_kernel: argument 'L' must be >= 0"):
        lrnn.ssm_kernel(w, z, -1)
    with pytest.raises(RuntimeError, match=r"lrnn::ssm_kernel: argument 'w' must have shape"):
        lrnn.ssm_kernel(w[None], z, 4)


# ---------------------------------------------------------------- cauchy
def cauchy_inputs(H, N, L, dtype, device="cpu"):
    """S4-like: poles dt*Lambda in the left half plane, nodes on the imaginary axis."""
    v = torch.randn(H, N, dtype=torch.complex128)
    lam = torch.complex(-(0.1 + torch.rand(H, N, dtype=torch.float64)), 6 * torch.rand(H, N, dtype=torch.float64) - 3)
    omega = torch.complex(torch.zeros(L, dtype=torch.float64), 8 * torch.rand(L, dtype=torch.float64) - 4)
    return v.to(device, dtype), omega.to(device, dtype), lam.to(device, dtype)


@pytest.mark.parametrize("dtype", COMPLEX)
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("H,N,L", [(1, 1, 1), (3, 5, 7), (4, 33, 130), (2, 67, 1001)])
def test_cauchy_matches_float64_reference(dtype, symmetric, H, N, L):
    v, omega, lam = cauchy_inputs(H, N, L, dtype)
    out = lrnn.cauchy(v, omega, lam, symmetric)
    assert out.dtype == dtype and out.shape == (H, L)
    # |1/(omega - lam)| <= 10: terms up to 10|v|, N of them (2N when symmetric)
    assert_close_rel(out, cauchy_ref(wide(v), wide(omega), wide(lam), symmetric), dtype, factor=40 * N)


@pytest.mark.parametrize("symmetric", [True, False])
def test_cauchy_backward_matches_reference_gradients(symmetric):
    H, N, L = 3, 17, 200
    v, omega, lam = cauchy_inputs(H, N, L, torch.complex64)
    v, lam = v.requires_grad_(), lam.requires_grad_()
    g = torch.randn(H, L, dtype=torch.complex64)
    gv, gl = torch.autograd.grad(lrnn.cauchy(v, omega, lam, symmetric), (v, lam), g)
    v64, lam64 = wide(v.detach()).requires_grad_(), wide(lam.detach()).requires_grad_()
    rv, rl = torch.autograd.grad(cauchy_ref(v64, wide(omega), lam64, symmetric), (v64, lam64), wide(g))
    assert_close_rel(gv, rv, torch.complex64, factor=400 * (64 + L ** 0.5), what="grad_v")
    assert_close_rel(gl, rl, torch.complex64, factor=400 * (64 + L ** 0.5), what="grad_lam")


def test_cauchy_broadcasts_poles_over_rows():
    """S4 evaluates four numerators against one set of poles: v (4H, N) rows, lam (N,) shared."""
    v, omega, lam = cauchy_inputs(6, 5, 40, torch.complex128)
    lam1 = lam[0].clone().requires_grad_()
    out = lrnn.cauchy(v, omega, lam1)
    ref = cauchy_ref(v, omega, lam1.expand(6, 5))
    assert_close_rel(out, ref, torch.complex128, factor=1e3)
    g = torch.randn_like(out)
    (gl,), (gl_ref,) = torch.autograd.grad(out, lam1, g), torch.autograd.grad(ref, lam1, g)
    assert gl.shape == (5,)
    assert_close_rel(gl, gl_ref, torch.complex128, factor=1e4)


def test_cauchy_reads_non_contiguous_inputs():
    v, omega, lam = cauchy_inputs(8, 12, 90, torch.complex64)
    v, lam, omega = v[::2, ::3], lam.t().contiguous().t()[::2, ::3], omega[::2]
    assert_close_rel(lrnn.cauchy(v, omega, lam), cauchy_ref(wide(v), wide(omega), wide(lam)), torch.complex64,
                     factor=40 * 8)


@pytest.mark.parametrize("symmetric", [True, False])
def test_cauchy_gradcheck(symmetric):
    v, omega, lam = cauchy_inputs(2, 3, 11, torch.complex128)
    assert torch.autograd.gradcheck(lambda v, lam: lrnn.cauchy(v, omega, lam, symmetric),
                                    (v.requires_grad_(), lam.requires_grad_()))


def test_cauchy_opcheck():
    v, omega, lam = cauchy_inputs(3, 5, 13, torch.complex64)
    torch.library.opcheck(torch.ops.lrnn.cauchy.default, (v.requires_grad_(), omega, lam.requires_grad_(), True))
    torch.library.opcheck(torch.ops.lrnn.cauchy.default, (v.detach(), omega, lam[0].detach(), False))
    g = torch.randn(3, 13, dtype=torch.complex64)
    torch.library.opcheck(torch.ops.lrnn.cauchy_backward.default, (g, v.detach(), omega, lam.detach(), True))


def test_cauchy_errors_name_op_and_argument():
    v, omega, lam = cauchy_inputs(2, 3, 5, torch.complex64)
    with pytest.raises(RuntimeError, match=r"lrnn::cauchy: argument 'v' must be complex"):
        lrnn.cauchy(v.real, omega, lam)
    with pytest.raises(RuntimeError, match=r"lrnn::cauchy: argument 'lam' must have dtype complex64"):
        lrnn.cauchy(v, omega, lam.to(torch.complex128))
    with pytest.raises(RuntimeError, match=r"lrnn::cauchy: argument 'omega' must have shape \(L,\)"):
        lrnn.cauchy(v, omega[None], lam)
    with pytest.raises(RuntimeError, match=r"lrnn::cauchy: arguments 'v' .* do not broadcast"):
        lrnn.cauchy(v, omega, lam[:, :2])


# ---------------------------------------------------------------- CUDA
cuda_sk = pytest.mark.skipif(not has_cuda_kernel("lrnn::ssm_kernel"), reason="no CUDA device or no CUDA kernel built")
cuda_cy = pytest.mark.skipif(not has_cuda_kernel("lrnn::cauchy"), reason="no CUDA device or no CUDA kernel built")


@pytest.mark.cuda
@cuda_sk
@pytest.mark.parametrize("dtype", COMPLEX)
@pytest.mark.parametrize("basis", ["complex", "cosine"])
@pytest.mark.parametrize("H,N,L", [(1, 1, 1), (3, 5, 7), (4, 33, 1300), (5, 64, 4099), (2, 70, 65536)])
def test_ssm_kernel_cuda_matches_cpu(dtype, basis, H, N, L):
    w, z = modes(H, N, dtype)
    w = weights(w, basis)
    k = lrnn.ssm_kernel(w.cuda(), z.cuda(), L, basis)
    assert_close_rel(k.cpu(), ssm_kernel_ref(wide(w), wide(z), L, basis), k.dtype, factor=4 * (N + 64))
    g = torch.randn(H, L, dtype=REAL_OF[dtype])
    gw, gz = torch.ops.lrnn.ssm_kernel_backward(g.cuda(), w.cuda(), z.cuda(), basis)
    rw, rz = torch.ops.lrnn.ssm_kernel_backward(wide(g), wide(w), wide(z), basis)
    assert_close_rel(gw.cpu(), rw, REAL_OF[dtype], factor=16 * (64 + L ** 0.5), what="grad_w")
    assert_close_rel(gz.cpu(), rz, REAL_OF[dtype], factor=16 * (64 + L ** 0.5), what="grad_z")


@pytest.mark.cuda
@cuda_cy
@pytest.mark.parametrize("dtype", COMPLEX)
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("H,N,L", [(1, 1, 1), (3, 5, 7), (4, 33, 1300), (5, 64, 2049)])
def test_cauchy_cuda_matches_cpu(dtype, symmetric, H, N, L):
    v, omega, lam = cauchy_inputs(H, N, L, dtype)
    out = lrnn.cauchy(v.cuda(), omega.cuda(), lam.cuda(), symmetric)
    assert_close_rel(out.cpu(), cauchy_ref(wide(v), wide(omega), wide(lam), symmetric), dtype, factor=40 * N)
    g = torch.randn(H, L, dtype=dtype)
    gv, gl = torch.ops.lrnn.cauchy_backward(g.cuda(), v.cuda(), omega.cuda(), lam.cuda(), symmetric)
    rv, rl = torch.ops.lrnn.cauchy_backward(wide(g), wide(v), wide(omega), wide(lam), symmetric)
    assert_close_rel(gv.cpu(), rv, dtype, factor=400 * (64 + L ** 0.5), what="grad_v")
    assert_close_rel(gl.cpu(), rl, dtype, factor=400 * (64 + L ** 0.5), what="grad_lam")


@pytest.mark.cuda
@cuda_sk
def test_lti_ops_cuda_gradcheck():
    w, z = modes(2, 3, torch.complex128, "cuda")
    assert torch.autograd.gradcheck(lambda w, z: lrnn.ssm_kernel(w, z, 40), (w.requires_grad_(), z.requires_grad_()))
    v, omega, lam = cauchy_inputs(2, 3, 11, torch.complex128, "cuda")
    assert torch.autograd.gradcheck(lambda v, lam: lrnn.cauchy(v, omega, lam), (v.requires_grad_(), lam.requires_grad_()))
    torch.library.opcheck(torch.ops.lrnn.ssm_kernel.default, (w.detach(), z.detach(), 17, "complex"))
    torch.library.opcheck(torch.ops.lrnn.cauchy.default, (v.detach(), omega, lam.detach(), True))


def test_ops_compile_and_export_with_dynamic_length():
    """L is a SymInt in the schema: an exported graph serves every kernel length."""
    class Gen(torch.nn.Module):
        def forward(self, x, w, z, v, omega, lam):
            return lrnn.ssm_kernel(w, z, x.shape[1]), lrnn.cauchy(v, omega, lam)

    w, z = modes(3, 5, torch.complex64)
    v, omega, lam = cauchy_inputs(3, 5, 32, torch.complex64)
    x = torch.randn(2, 32, 3)
    dims = ({1: torch.export.Dim("l", min=2, max=4096)}, None, None, None, {0: torch.export.Dim("m")}, None)
    ep = torch.export.export(Gen(), (x, w, z, v, omega, lam), dynamic_shapes=dims)
    omega2 = cauchy_inputs(3, 5, 77, torch.complex64)[1]
    k, c = ep.module()(torch.randn(2, 61, 3), w, z, v, omega2, lam)
    assert k.shape == (3, 61) and c.shape == (3, 77)
    assert_close_rel(k, lrnn.ssm_kernel(w, z, 61), torch.float32, factor=8)
    compiled = torch.compile(lambda w, z: lrnn.ssm_kernel(w, z, 40, "complex"), fullgraph=True)
    assert_close_rel(compiled(w, z), lrnn.ssm_kernel(w, z, 40), torch.float32, factor=8)
