/* event_scan_kernels.cuh: the device code of the CUDA event scan (lrnn/event_scan.h), included
 * by event_scan.cu (which launches it) and by tests/c/test_event_scan_cuda_emulated.cpp (which
 * runs these very kernels on CPU threads, so their logic is tested on machines without a GPU).
 * It uses only CUDA built-ins (threadIdx, blockIdx, __shared__, __syncthreads, math functions).
 *
 * One thread block per (batch element, tile of CB channels); inside it, threadIdx.x is the
 * channel (consecutive threads read consecutive channels: coalesced for (B, L, P) tensors) and
 * threadIdx.y one of K contiguous time chunks. A chunked two-pass scan: each thread scans its
 * chunk from a zero state keeping the product of its transitions, one thread per channel
 * combines the K chunk summaries in order to get every chunk's incoming state, and each thread
 * rescans its chunk from that state writing the outputs. Transitions exp(Lambda*delta*dt) and
 * input scales are recomputed in both passes and never stored. The backward runs the adjoint the
 * same way in reverse time; its Lambda/delta partials are reduced over the K chunks in a fixed
 * order in shared memory and written per batch row (no atomics: reproducible results). */
#pragma once

#include <stdint.h>

#include "lrnn/event_scan.h"

namespace lrnn_event_cuda {

// 4 channels per block: 4 complex64 = one full 32-byte sector per time step; 128 time chunks
// (512 threads), so the (8, 65536, 128) benchmark runs 256 blocks, about two per SM.
constexpr int CB = 4;
constexpr int K = 128;
// Steps whose inputs are loaded together before they are used: U independent loads in flight
// per thread hide memory latency in the otherwise sequential per-thread loops.
constexpr int U = 4;

template <typename R>
struct cx {
  R re, im;
};
template <typename R>
__device__ __forceinline__ cx<R> mk(R re, R im) { return cx<R>{re, im}; }
template <typename R>
__device__ __forceinline__ cx<R> mul(cx<R> x, cx<R> y) { return mk(x.re * y.re - x.im * y.im, x.re * y.im + x.im * y.re); }
template <typename R>
__device__ __forceinline__ cx<R> add(cx<R> x, cx<R> y) { return mk(x.re + y.re, x.im + y.im); }
template <typename R>
__device__ __forceinline__ cx<R> scale(R s, cx<R> x) { return mk(s * x.re, s * x.im); }
// conj(x) * y
template <typename R>
__device__ __forceinline__ cx<R> mulc(cx<R> x, cx<R> y) { return mk(x.re * y.re + x.im * y.im, x.re * y.im - x.im * y.re); }
template <typename R>
__device__ __forceinline__ R dotr(cx<R> x, cx<R> y) { return x.re * y.re + x.im * y.im; }
template <typename R>
__device__ __forceinline__ cx<R> cdiv(cx<R> x, cx<R> y) {   // Smith's algorithm
  if (fabs(y.re) >= fabs(y.im)) {
    const R r = y.im / y.re, d = y.re + y.im * r;
    return mk((x.re + x.im * r) / d, (x.im - x.re * r) / d);
  }
  const R r = y.re / y.im, d = y.re * r + y.im;
  return mk((x.re * r + x.im) / d, (x.im * r - x.re) / d);
}

// sin and cos with the argument reduced to [-pi, pi] first: the build uses --use_fast_math,
// whose float intrinsics are only accurate near zero, and phases Im(Lambda)*delta*dt are large.
__device__ __forceinline__ void sincos_reduced(float y, float* s, float* c) {
  const float r = y - 6.283185307179586f * rintf(y * 0.15915494309189535f);
  sincosf(r, s, c);
}
__device__ __forceinline__ void sincos_reduced(double y, double* s, double* c) { sincos(y, s, c); }

template <typename R>
__device__ __forceinline__ cx<R> cexp_(cx<R> z) {
  R s, c;
  sincos_reduced(z.im, &s, &c);
  const R e = exp(z.re);
  return mk(e * c, e * s);
}
// exp(z) - 1 without cancellation
template <typename R>
__device__ __forceinline__ cx<R> cexpm1_(cx<R> z) {
  R s, c, sh, ch;
  sincos_reduced(z.im, &s, &c);
  sincos_reduced(z.im * R(0.5), &sh, &ch);
  return mk(expm1(z.re) * c - R(2) * sh * sh, exp(z.re) * s);
}
template <typename R>
__device__ __forceinline__ cx<R> phi(cx<R> z) {
  if (z.re == R(0) && z.im == R(0)) return mk(R(1), R(0));
  return cdiv(cexpm1_(z), z);
}
template <typename R>
__device__ __forceinline__ cx<R> psi(cx<R> z) {   // phi'(z), series below |z| = 1
  if (z.re * z.re + z.im * z.im < R(1)) {
    const double c[18] = {1.0 / 2, 2.0 / 6, 3.0 / 24, 4.0 / 120, 5.0 / 720, 6.0 / 5040, 7.0 / 40320,
                          8.0 / 362880, 9.0 / 3628800, 10.0 / 39916800, 11.0 / 479001600,
                          12.0 / 6227020800.0, 13.0 / 87178291200.0, 14.0 / 1307674368000.0,
                          15.0 / 20922789888000.0, 16.0 / 355687428096000.0, 17.0 / 6402373705728000.0,
                          18.0 / 121645100408832000.0};
    cx<R> acc = mk(R(c[17]), R(0));
#pragma unroll
    for (int k = 16; k >= 0; --k) {
      acc = mul(acc, z);
      acc.re += R(c[k]);
    }
    return acc;
  }
  const cx<R> e = cexp_(z), f = phi(z);
  return cdiv(mk(e.re - f.re, e.im - f.im), z);
}

template <typename R>
__device__ __forceinline__ void input_scale(int disc, cx<R> lam, R delta, R dt, cx<R> a, bool grad, cx<R>* g,
                                            cx<R>* dgl, cx<R>* dgd) {
  if (disc == LRNN_DISC_ZOH) {
    const R s = delta * dt;
    *g = scale(s, phi(scale(s, lam)));
    if (grad) {
      *dgl = scale(s * s, psi(scale(s, lam)));
      *dgd = scale(dt, a);
    }
  } else if (disc == LRNN_DISC_ASYNC) {
    const cx<R> w = scale(delta, lam);
    *g = scale(delta, phi(w));
    if (grad) {
      *dgl = scale(delta * delta, psi(w));
      *dgd = cexp_(w);
    }
  } else {
    *g = mk(R(1), R(0));
    if (grad) {
      *dgl = mk(R(0), R(0));
      *dgd = mk(R(0), R(0));
    }
  }
}

template <typename TR>
__device__ __forceinline__ float load_r(const TR* p, int64_t i);
template <>
__device__ __forceinline__ float load_r<float>(const float* p, int64_t i) { return p[i]; }
template <>
__device__ __forceinline__ float load_r<uint16_t>(const uint16_t* p, int64_t i) {
  return __uint_as_float(static_cast<uint32_t>(p[i]) << 16);   // bfloat16 -> float
}
__device__ __forceinline__ double load_r(const double* p, int64_t i) { return p[i]; }

template <typename R, typename TR>
__device__ __forceinline__ R load_real(const TR* p, int64_t i) { return static_cast<R>(load_r(p, i)); }

__device__ __forceinline__ int64_t step_time(int64_t s, int64_t L, int reverse) { return reverse ? L - 1 - s : s; }

template <typename R, typename TR>
__global__ void __launch_bounds__(CB* K) event_fwd_kernel(lrnn_event_scan_params p) {
  __shared__ cx<R> sA[K][CB], sX[K][CB];
  const int j = threadIdx.x, k = threadIdx.y;
  const int64_t b = blockIdx.x, d = static_cast<int64_t>(blockIdx.y) * CB + j;
  const bool active = d < p.dim;
  const int64_t L = p.length, chunk = (L + K - 1) / K;
  const int64_t s0 = min(L, k * chunk), s1 = min(L, s0 + chunk);
  const cx<R>* lambda = static_cast<const cx<R>*>(p.lambda);
  const TR* delta = static_cast<const TR*>(p.delta);
  const TR* dt = static_cast<const TR*>(p.dt) + b * p.dt_stride[0];
  const cx<R>* v = static_cast<const cx<R>*>(p.v) + b * p.v_stride[0] + d * p.v_stride[2];
  cx<R>* h = static_cast<cx<R>*>(p.h) + b * p.h_stride[0] + d * p.h_stride[2];
  const int64_t dbase = b * p.delta_stride[0] + d * p.delta_stride[2];
  const bool const_delta = p.delta_stride[1] == 0;
  cx<R> lam = mk(R(0), R(0)), gc = mk(R(0), R(0));
  R delc = 0;
  if (active) {
    lam = lambda[d * p.lambda_stride];
    if (const_delta) {
      delc = load_real<R>(delta, dbase);
      input_scale<R>(p.disc, lam, delc, R(0), mk(R(1), R(0)), false, &gc, nullptr, nullptr);
    }
  }
  const bool g_const = const_delta && p.disc != LRNN_DISC_ZOH;
  // pass 1: chunk summary (product of transitions, state from zero)
  cx<R> A = mk(R(1), R(0)), X = mk(R(0), R(0));
  if (active) {
    for (int64_t s = s0; s < s1; s += U) {
      R tau[U], del[U];
      cx<R> vv[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (s + u < s1) {
          const int64_t t = step_time(s + u, L, p.reverse);
          tau[u] = load_real<R>(dt, t * p.dt_stride[1]);
          del[u] = const_delta ? delc : load_real<R>(delta, dbase + t * p.delta_stride[1]);
          vv[u] = v[t * p.v_stride[1]];
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (s + u < s1) {
          const cx<R> a = cexp_(scale(del[u] * tau[u], lam));
          cx<R> g = gc;
          if (!g_const) input_scale<R>(p.disc, lam, del[u], tau[u], a, false, &g, nullptr, nullptr);
          X = add(mul(a, X), mul(g, vv[u]));
          A = mul(a, A);
        }
      }
    }
  }
  sA[k][j] = A;
  sX[k][j] = X;
  __syncthreads();
  if (k == 0 && active) {   // in-order combine: incoming state of every chunk
    cx<R> x = p.h0 ? static_cast<const cx<R>*>(p.h0)[b * p.h0_stride[0] + d * p.h0_stride[1]] : mk(R(0), R(0));
    for (int kk = 0; kk < K; ++kk) {
      const cx<R> a = sA[kk][j], xx = sX[kk][j];
      sX[kk][j] = x;
      x = add(mul(a, x), xx);
    }
    static_cast<cx<R>*>(p.h_last)[b * p.h_last_stride[0] + d * p.h_last_stride[1]] = x;
  }
  __syncthreads();
  if (!active) return;
  // pass 2: rescan from the incoming state, writing h
  cx<R> x = sX[k][j];
  for (int64_t s = s0; s < s1; s += U) {
    R tau[U], del[U];
    cx<R> vv[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (s + u < s1) {
        const int64_t t = step_time(s + u, L, p.reverse);
        tau[u] = load_real<R>(dt, t * p.dt_stride[1]);
        del[u] = const_delta ? delc : load_real<R>(delta, dbase + t * p.delta_stride[1]);
        vv[u] = v[t * p.v_stride[1]];
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (s + u < s1) {
        const cx<R> a = cexp_(scale(del[u] * tau[u], lam));
        cx<R> g = gc;
        if (!g_const) input_scale<R>(p.disc, lam, del[u], tau[u], a, false, &g, nullptr, nullptr);
        x = add(mul(a, x), mul(g, vv[u]));
        h[step_time(s + u, L, p.reverse) * p.h_stride[1]] = x;
      }
    }
  }
}

template <typename R, typename TR>
__global__ void __launch_bounds__(CB* K) event_bwd_kernel(lrnn_event_scan_bwd_params p) {
  __shared__ cx<R> sM[K][CB], sC[K][CB], sL[K][CB];
  __shared__ R sD[K][CB];
  const int j = threadIdx.x, k = threadIdx.y;
  const int64_t b = blockIdx.x, d = static_cast<int64_t>(blockIdx.y) * CB + j;
  const bool active = d < p.dim;
  const int64_t L = p.length, chunk = (L + K - 1) / K;
  const int64_t s0 = min(L, k * chunk), s1 = min(L, s0 + chunk);
  const cx<R>* lambda = static_cast<const cx<R>*>(p.lambda);
  const TR* delta = static_cast<const TR*>(p.delta);
  const TR* dt = static_cast<const TR*>(p.dt) + b * p.dt_stride[0];
  const cx<R>* v = static_cast<const cx<R>*>(p.v) + b * p.v_stride[0] + d * p.v_stride[2];
  const cx<R>* h = static_cast<const cx<R>*>(p.h) + b * p.h_stride[0] + d * p.h_stride[2];
  const cx<R>* gh = static_cast<const cx<R>*>(p.grad_h) + b * p.grad_h_stride[0] + d * p.grad_h_stride[2];
  cx<R>* dv = static_cast<cx<R>*>(p.dv) + b * p.dv_stride[0] + d * p.dv_stride[2];
  R* ddelta = static_cast<R*>(p.ddelta) + b * p.ddelta_stride[0] + d * p.ddelta_stride[2];
  const int64_t dbase = b * p.delta_stride[0] + d * p.delta_stride[2];
  const bool const_delta = p.delta_stride[1] == 0;
  const bool g_const = const_delta && p.disc != LRNN_DISC_ZOH;
  const cx<R> zero = mk(R(0), R(0));
  cx<R> lam = zero, gc = zero, dglc = zero, dgdc = zero;
  R delc = 0;
  if (active) {
    lam = lambda[d * p.lambda_stride];
    if (const_delta) {
      delc = load_real<R>(delta, dbase);
      input_scale<R>(p.disc, lam, delc, R(0), mk(R(1), R(0)), true, &gc, &dglc, &dgdc);
    }
  }
  // pass 1: chunk summary of the adjoint, in reverse step order, from a zero carry
  cx<R> M = mk(R(1), R(0)), C = zero;
  if (active) {
    for (int64_t s = s1 - 1; s >= s0; s -= U) {
      R tau[U], del[U];
      cx<R> gg[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (s - u >= s0) {
          const int64_t t = step_time(s - u, L, p.reverse);
          tau[u] = load_real<R>(dt, t * p.dt_stride[1]);
          del[u] = const_delta ? delc : load_real<R>(delta, dbase + t * p.delta_stride[1]);
          gg[u] = gh[t * p.grad_h_stride[1]];
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (s - u >= s0) {
          const cx<R> a = cexp_(scale(del[u] * tau[u], lam));
          C = mulc(a, add(gg[u], C));
          M = mulc(a, M);
        }
      }
    }
  }
  sM[k][j] = M;
  sC[k][j] = C;
  __syncthreads();
  if (k == 0 && active) {   // in-order combine, last chunk first: incoming carry of every chunk
    cx<R> c = p.grad_h_last ? static_cast<const cx<R>*>(p.grad_h_last)[b * p.grad_h_last_stride[0] +
                                                                        d * p.grad_h_last_stride[1]]
                            : zero;
    for (int kk = K - 1; kk >= 0; --kk) {
      const cx<R> m = sM[kk][j], cc = sC[kk][j];
      sC[kk][j] = c;
      c = add(mul(m, c), cc);
    }
    static_cast<cx<R>*>(p.dh0)[b * p.dh0_stride[0] + d * p.dh0_stride[1]] = c;
  }
  __syncthreads();
  // pass 2: the adjoint with the right carry, and every gradient
  cx<R> carry = sC[k][j], dl = zero, gsum = zero;
  R dd_sum = 0;
  if (active) {
    for (int64_t s = s1 - 1; s >= s0; s -= U) {
      R tau[U], del[U];
      cx<R> hp[U], vv[U], gy[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (s - u >= s0) {
          const int64_t t = step_time(s - u, L, p.reverse);
          tau[u] = load_real<R>(dt, t * p.dt_stride[1]);
          del[u] = const_delta ? delc : load_real<R>(delta, dbase + t * p.delta_stride[1]);
          vv[u] = v[t * p.v_stride[1]];
          gy[u] = gh[t * p.grad_h_stride[1]];
          hp[u] = zero;   // h[t-1]: the state before this step (h0 or zero before the first)
          if (s - u > 0) hp[u] = h[step_time(s - u - 1, L, p.reverse) * p.h_stride[1]];
          else if (p.h0) hp[u] = static_cast<const cx<R>*>(p.h0)[b * p.h0_stride[0] + d * p.h0_stride[1]];
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (s - u >= s0) {
          const int64_t t = step_time(s - u, L, p.reverse);
          const R sdt = del[u] * tau[u];
          const cx<R> a = cexp_(scale(sdt, lam));
          const cx<R> lt = add(gy[u], carry);
          const cx<R> ga = mulc(hp[u], lt), gv = mulc(vv[u], lt);
          dl = add(dl, scale(sdt, mulc(a, ga)));
          R dd = tau[u] * dotr(mul(lam, a), ga);
          cx<R> g = gc;
          if (g_const) {
            gsum = add(gsum, gv);
          } else {
            cx<R> dgl, dgd;
            input_scale<R>(p.disc, lam, del[u], tau[u], a, true, &g, &dgl, &dgd);
            dl = add(dl, mulc(dgl, gv));
            dd += dotr(dgd, gv);
          }
          dv[t * p.dv_stride[1]] = mulc(g, lt);
          if (const_delta) dd_sum += dd;
          else ddelta[t * p.ddelta_stride[1]] = dd;
          carry = mulc(a, lt);
        }
      }
    }
    if (g_const) {
      dl = add(dl, mulc(dglc, gsum));
      dd_sum += dotr(dgdc, gsum);
    }
  }
  sL[k][j] = dl;
  sD[k][j] = dd_sum;
  __syncthreads();
  if (k == 0 && active) {   // fixed-order reduction over the chunks
    cx<R> tl = zero;
    R td = 0;
    for (int kk = 0; kk < K; ++kk) {
      tl = add(tl, sL[kk][j]);
      td += sD[kk][j];
    }
    static_cast<cx<R>*>(p.dlambda)[b * p.dlambda_stride[0] + d * p.dlambda_stride[1]] = tl;
    if (const_delta) ddelta[0] = td;
  }
}

}  // namespace lrnn_event_cuda
