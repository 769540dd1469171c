/* cauchy.cu: CUDA forward and backward of the Cauchy kernel (lrnn/cauchy.h).
 *
 * Forward: one block per (head, tile of kCyThreads * kCyPerThread nodes); thread t owns nodes
 * l0 + t + kCyThreads * j (coalesced), per-state constants staged in shared memory in chunks (one
 * 16-byte broadcast load per state), sums in registers; a conjugate pair costs one reciprocal.
 * Backward: one block per (head, tile of kCyBwdTile nodes), the tile's nodes and output gradients
 * in shared memory; each warp takes kCyBwdStates whole states at once (one load of a node serves
 * them all), each lane a strided subset of the tile's nodes;
 * warp sums go to a double workspace per tile, reduced in a fixed order by a second kernel
 * (lti_common.cuh). Reciprocals are one MUFU.RCP in float (lrnn_cuda::fast_rcp). */
#include "lrnn/cauchy.h"
#include "lti_common.cuh"

using lrnn_cuda::Cplx;

namespace {

constexpr int kCyThreads = 128;
constexpr int kCyPerThread = 4;
constexpr int kCyChunk = 256;
constexpr int kCyTile = kCyThreads * kCyPerThread;
constexpr int kCyBwdThreads = 256;   // 8 blocks of 8 warps per SM: 4096 blocks at (1024, 64, 4096)
constexpr int kCyBwdWarps = kCyBwdThreads / 32;   // are 3.9 full waves (128 threads: 2.4, a 20% tail)
constexpr int kCyBwdTile = 1024;
constexpr int kCyBwdStates = 4;   // states per warp pass

/* Per-state constants staged in shared memory: (Re lam, Im lam, c0, c1) with (c0, c1) =
 * (2 Re v, -2 Im v Im lam) for the symmetric sum (see pair_term) and (Re v, Im v) otherwise. */
template <typename T>
struct alignas(4 * sizeof(T)) State4 {
  T lr, li, c0, c1;
};

/* v / (o - lam) + conj(v) / (o - conj(lam)) added to acc, as one quotient N / D with
 * D = (o - lam)(o - conj(lam)) = dr^2 - a b + i 2 dr Im o (dr = Re o - Re lam, a, b = Im o -/+ Im lam;
 * |D| error ~ ulps of |D|: no cancellation between large terms) and N = 2 Re v (o - Re lam)
 * - 2 Im v Im lam + i 2 Re v Im o: 16 FP32 instructions and one reciprocal for both terms. */
template <typename T>
__device__ __forceinline__ void pair_term(T& ar, T& ai, State4<T> c, T orr, T oi, T oi2) {
  const T dr = orr - c.lr, a = oi - c.li, b = oi + c.li;
  const T Dr = dr * dr - a * b, Di = dr * oi2;
  const T Nr = c.c0 * dr + c.c1, Ni = c.c0 * oi;
  const T inv = lrnn_cuda::fast_rcp(Dr * Dr + Di * Di);
  ar += (Nr * Dr + Ni * Di) * inv;
  ai += (Ni * Dr - Nr * Di) * inv;
}

/* v / (o - lam) added to acc. */
template <typename T>
__device__ __forceinline__ void single_term(T& ar, T& ai, State4<T> c, T orr, T oi) {
  const T dr = orr - c.lr, di = oi - c.li;
  const T inv = lrnn_cuda::fast_rcp(dr * dr + di * di);
  ar += (c.c0 * dr + c.c1 * di) * inv;
  ai += (c.c1 * dr - c.c0 * di) * inv;
}

template <typename T>
__global__ void __launch_bounds__(kCyThreads) cy_fwd_kernel(lrnn_cauchy_params p, int64_t n_tiles) {
  const int64_t h = blockIdx.x / n_tiles, tile = blockIdx.x % n_tiles;
  const int64_t l0 = tile * kCyTile + threadIdx.x;
  __shared__ State4<T> s_c[kCyChunk];
  const Cplx<T>* om = reinterpret_cast<const Cplx<T>*>(p.omega);
  T orr[kCyPerThread], oi[kCyPerThread], oi2[kCyPerThread], accr[kCyPerThread], acci[kCyPerThread];
#pragma unroll
  for (int j = 0; j < kCyPerThread; ++j) {
    const int64_t l = l0 + (int64_t)j * kCyThreads;
    const Cplx<T> o = l < p.length ? om[l * p.omega_stride] : Cplx<T>{T(0), T(0)};
    orr[j] = o.re;
    oi[j] = o.im;
    oi2[j] = T(2) * o.im;
    accr[j] = acci[j] = T(0);
  }
  const Cplx<T>* v = reinterpret_cast<const Cplx<T>*>(p.v) + h * p.v_stride[0];
  const Cplx<T>* lam = reinterpret_cast<const Cplx<T>*>(p.lam) + h * p.lam_stride[0];
  for (int64_t n0 = 0; n0 < p.state; n0 += kCyChunk) {
    const int nc = (int)(p.state - n0 < kCyChunk ? p.state - n0 : kCyChunk);
    __syncthreads();
    for (int j = threadIdx.x; j < nc; j += kCyThreads) {
      const Cplx<T> vn = v[(n0 + j) * p.v_stride[1]], ln = lam[(n0 + j) * p.lam_stride[1]];
      s_c[j] = p.symmetric ? State4<T>{ln.re, ln.im, T(2) * vn.re, T(-2) * vn.im * ln.im}
                           : State4<T>{ln.re, ln.im, vn.re, vn.im};
    }
    __syncthreads();
    if (p.symmetric) {
#pragma unroll 4
      for (int n = 0; n < nc; ++n) {
        const State4<T> c = s_c[n];
#pragma unroll
        for (int j = 0; j < kCyPerThread; ++j) pair_term(accr[j], acci[j], c, orr[j], oi[j], oi2[j]);
      }
    } else {
#pragma unroll 4
      for (int n = 0; n < nc; ++n) {
        const State4<T> c = s_c[n];
#pragma unroll
        for (int j = 0; j < kCyPerThread; ++j) single_term(accr[j], acci[j], c, orr[j], oi[j]);
      }
    }
  }
  Cplx<T>* out = reinterpret_cast<Cplx<T>*>(p.out) + h * p.out_stride[0];
#pragma unroll
  for (int j = 0; j < kCyPerThread; ++j) {
    const int64_t l = l0 + (int64_t)j * kCyThreads;
    if (l < p.length) out[l * p.out_stride[1]] = Cplx<T>{accr[j], acci[j]};
  }
}

/* One term of the plain backward sums for r = 1 / d, d = dr + i di: x = r conj(g), A += x,
 * B += r x: 16 FP32 instructions with the reciprocal, B accumulated by FFMAs. */
template <typename T>
__device__ __forceinline__ void bwd_term(T (&acc)[4], T dr, T di, T gr, T gi) {
  const T inv = lrnn_cuda::fast_rcp(dr * dr + di * di);
  const T rr = dr * inv, ri = -di * inv;
  const T xr = rr * gr + ri * gi, xi = ri * gr - rr * gi;   // r conj(g)
  acc[0] += xr;
  acc[1] += xi;
  acc[2] = fma(rr, xr, acc[2]);
  acc[2] = fma(-ri, xi, acc[2]);
  acc[3] = fma(rr, xi, acc[3]);
  acc[3] = fma(ri, xr, acc[3]);
}

/* Both terms of a conjugate pair at once, with one reciprocal. With u = conj(G), e = omega - Re lam,
 * b = Im lam, d1 = e - i b = omega - lam, d1' = e + i b = omega - conj(lam), D = d1 d1' = e^2 + b^2:
 *   r1 conj(G) + r2 G     = u/d1 + conj(u/d1')     = Re(2 e p) + i 2 b Re(p),          p = u / D
 *   r1^2 conj(G) + r2^2 G = u/d1^2 + conj(u/d1'^2) = Re(2 (e^2 - b^2) W) + i 4 b Re(e W), W = p / D
 * (d1 + d1' = 2 e, d1' - d1 = 2 i b, d1^2 + d1'^2 = 2 (e^2 - b^2), d1'^2 - d1^2 = 4 i b e). D is
 * formed as in the forward (Re D = dr^2 - (y - b)(y + b), y = Im omega: no cancellation of
 * large terms), and as W D = p, Re((e^2 - b^2) W) = Re((D - 2 b^2) W) = Re p - 2 b^2 Re W. So
 * acc = (sum Re(e p), sum Re p, sum Re W, sum Re(e W)) and per state
 *   A = 2 acc0 + i 2 b acc1,   B = 2 acc1 - 4 b^2 acc2 + i 4 b acc3:
 * 25 FP32 instructions with the reciprocal (the two terms separately: 32 and two reciprocals). */
template <typename T>
__device__ __forceinline__ void bwd_pair(T (&acc)[4], T lr, T li, T orr, T oi, T oi2, T gr, T gi) {
  const T dr = orr - lr, ya = oi - li, yb = oi + li;
  const T Dr = dr * dr - ya * yb, Di = dr * oi2;
  const T inv = lrnn_cuda::fast_rcp(Dr * Dr + Di * Di);
  const T Rr = Dr * inv, Ri = -Di * inv;               // 1 / D
  const T pr = gr * Rr + gi * Ri, pi = gr * Ri - gi * Rr;   // conj(G) / D
  acc[0] = fma(dr, pr, acc[0]);
  acc[0] = fma(-oi, pi, acc[0]);
  acc[1] += pr;
  const T Wr = pr * Rr - pi * Ri, Wi = pr * Ri + pi * Rr;   // conj(G) / D^2
  acc[2] += Wr;
  acc[3] = fma(dr, Wr, acc[3]);
  acc[3] = fma(-oi, Wi, acc[3]);
}

/* A = sum r1 conj(G) + r2 G, B = sum r1^2 conj(G) + r2^2 G per tile into ws[tile][h][n][4]. A warp
 * takes kCyBwdStates states at once (lam in registers), each lane a strided subset of the tile's
 * nodes: one 8-byte load each of omega and G per node serves all of them. */
template <typename T>
__global__ void __launch_bounds__(kCyBwdThreads) cy_bwd_partial_kernel(lrnn_cauchy_bwd_params p, int64_t n_tiles,
                                                                    double* ws) {
  const int64_t h = blockIdx.x / n_tiles, tile = blockIdx.x % n_tiles;
  const int64_t t0 = tile * kCyBwdTile;
  const int nt = (int)(p.length - t0 < kCyBwdTile ? p.length - t0 : kCyBwdTile);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __shared__ lrnn_cuda::CplxA<T> s_o[kCyBwdTile], s_g[kCyBwdTile];
  const Cplx<T>* om = reinterpret_cast<const Cplx<T>*>(p.omega);
  const Cplx<T>* g = reinterpret_cast<const Cplx<T>*>(p.grad_out) + h * p.grad_out_stride[0];
  for (int i = threadIdx.x; i < nt; i += kCyBwdThreads) {
    const Cplx<T> o = om[(t0 + i) * p.omega_stride], gi = g[(t0 + i) * p.grad_out_stride[1]];
    s_o[i] = {o.re, o.im};
    s_g[i] = {gi.re, gi.im};
  }
  __syncthreads();
  const Cplx<T>* lam = reinterpret_cast<const Cplx<T>*>(p.lam) + h * p.lam_stride[0];
  for (int64_t n0 = (int64_t)kCyBwdStates * warp; n0 < p.state; n0 += kCyBwdStates * kCyBwdWarps) {
    T lr[kCyBwdStates], li[kCyBwdStates], acc[kCyBwdStates][4];
#pragma unroll
    for (int k = 0; k < kCyBwdStates; ++k) {   // states past the last repeat it; their sums are dropped
      const int64_t n = n0 + k < p.state ? n0 + k : p.state - 1;
      const Cplx<T> ln = lam[n * p.lam_stride[1]];
      lr[k] = ln.re;
      li[k] = ln.im;
      acc[k][0] = acc[k][1] = acc[k][2] = acc[k][3] = T(0);
    }
    if (p.symmetric) {
#pragma unroll 2
      for (int i = lane; i < nt; i += 32) {
        const lrnn_cuda::CplxA<T> o = s_o[i], G = s_g[i];
        const T oi2 = T(2) * o.im;
#pragma unroll
        for (int k = 0; k < kCyBwdStates; ++k) bwd_pair(acc[k], lr[k], li[k], o.re, o.im, oi2, G.re, G.im);
      }
#pragma unroll
      for (int k = 0; k < kCyBwdStates; ++k) {   // to (A, B)
        const T sp = acc[k][1], sw = acc[k][2];
        acc[k][0] *= T(2);
        acc[k][1] = T(2) * li[k] * sp;
        acc[k][2] = T(2) * sp - T(4) * li[k] * li[k] * sw;
        acc[k][3] *= T(4) * li[k];
      }
    } else {
#pragma unroll 2
      for (int i = lane; i < nt; i += 32) {
        const lrnn_cuda::CplxA<T> o = s_o[i], G = s_g[i];
#pragma unroll
        for (int k = 0; k < kCyBwdStates; ++k) bwd_term(acc[k], o.re - lr[k], o.im - li[k], G.re, G.im);
      }
    }
#pragma unroll
    for (int k = 0; k < kCyBwdStates; ++k) {
      const int64_t n = n0 + k < p.state ? n0 + k : p.state - 1;
      T a[4] = {acc[k][0], acc[k][1], acc[k][2], acc[k][3]};
#pragma unroll
      for (int q = 0; q < 4; ++q) a[q] = lrnn_cuda::warp_sum(a[q]);
      if (lane == 0 && n0 + k < p.state) {
        double* o = lrnn_cuda::partial_slot(ws, tile, p.heads, p.state, h, n);
#pragma unroll
        for (int q = 0; q < 4; ++q) o[q] = a[q];
      }
    }
  }
}

/* grad_v = conj(A), grad_lam = conj(v B), tiles summed in order. */
template <typename T>
__global__ void cy_bwd_finish_kernel(lrnn_cauchy_bwd_params p, int64_t n_tiles, const double* ws) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= p.heads * p.state) return;
  const int64_t h = idx / p.state, n = idx % p.state;
  double s[4];
  lrnn_cuda::sum_partials(ws, n_tiles, p.heads, p.state, h, n, s);
  const Cplx<T> v = reinterpret_cast<const Cplx<T>*>(p.v)[h * p.v_stride[0] + n * p.v_stride[1]];
  Cplx<T>* gv = reinterpret_cast<Cplx<T>*>(p.grad_v) + h * p.grad_v_stride[0] + n * p.grad_v_stride[1];
  Cplx<T>* gl = reinterpret_cast<Cplx<T>*>(p.grad_lam) + h * p.grad_lam_stride[0] + n * p.grad_lam_stride[1];
  *gv = Cplx<T>{(T)s[0], (T)(-s[1])};
  const double vr = v.re, vi = v.im;
  *gl = Cplx<T>{(T)(vr * s[2] - vi * s[3]), (T)(-(vr * s[3] + vi * s[2]))};
}

lrnn_status launched() { return cudaGetLastError() == cudaSuccess ? LRNN_OK : LRNN_ERR_CUDA; }

}  // namespace

extern "C" int64_t lrnn_cauchy_bwd_workspace_bytes(const lrnn_cauchy_bwd_params* p) {
  if (!p || p->length <= 0) return 0;
  return lrnn_cuda::partials_bytes(lrnn_cuda::ceil_div(p->length, kCyBwdTile), p->heads, p->state);
}

extern "C" lrnn_status lrnn_cauchy_fwd_cuda(const lrnn_cauchy_params* p, void* stream) {
  if (!p || p->heads < 0 || p->state < 0 || p->length < 0) return LRNN_ERR_ARGUMENT;
  if (p->heads == 0 || p->length == 0) return LRNN_OK;
  const int64_t n_tiles = lrnn_cuda::ceil_div(p->length, kCyTile);
  if (n_tiles * p->heads > INT32_MAX) return LRNN_ERR_SHAPE;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const unsigned blocks = (unsigned)(n_tiles * p->heads);
  switch (p->dtype) {
    case LRNN_C64: cy_fwd_kernel<float><<<blocks, kCyThreads, 0, s>>>(*p, n_tiles); break;
    case LRNN_C128: cy_fwd_kernel<double><<<blocks, kCyThreads, 0, s>>>(*p, n_tiles); break;
    default: return LRNN_ERR_DTYPE;
  }
  return launched();
}

extern "C" lrnn_status lrnn_cauchy_bwd_cuda(const lrnn_cauchy_bwd_params* p, void* workspace, void* stream) {
  if (!p || p->heads < 0 || p->state < 0 || p->length < 0) return LRNN_ERR_ARGUMENT;
  if (p->heads == 0 || p->state == 0) return LRNN_OK;
  if (p->length > 0 && !workspace) return LRNN_ERR_ARGUMENT;
  const int64_t n_tiles = lrnn_cuda::ceil_div(p->length, kCyBwdTile);
  if (n_tiles * p->heads > INT32_MAX) return LRNN_ERR_SHAPE;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  double* ws = static_cast<double*>(workspace);
  const unsigned blocks = (unsigned)(n_tiles * p->heads);
  const unsigned fin_blocks = (unsigned)lrnn_cuda::ceil_div(p->heads * p->state, 256);
  switch (p->dtype) {
    case LRNN_C64:
      if (n_tiles > 0) cy_bwd_partial_kernel<float><<<blocks, kCyBwdThreads, 0, s>>>(*p, n_tiles, ws);
      cy_bwd_finish_kernel<float><<<fin_blocks, 256, 0, s>>>(*p, n_tiles, ws);
      break;
    case LRNN_C128:
      if (n_tiles > 0) cy_bwd_partial_kernel<double><<<blocks, kCyBwdThreads, 0, s>>>(*p, n_tiles, ws);
      cy_bwd_finish_kernel<double><<<fin_blocks, 256, 0, s>>>(*p, n_tiles, ws);
      break;
    default: return LRNN_ERR_DTYPE;
  }
  return launched();
}
