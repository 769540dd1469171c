/* lti_common.cuh: device helpers shared by the CUDA kernel-generation kernels (ssm_kernel.cu,
 * cauchy.cu): complex storage types and products, exp(z * l) with the phase reduced in double
 * precision, a one-instruction reciprocal, and the deterministic two-pass reduction of the
 * backwards (per-tile partial sums in a double workspace, then a fixed-order sum over tiles).
 * Internal to csrc/cuda. */
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

namespace lrnn_cuda {

template <typename T>
struct Cplx {
  T re, im;
};

/* Complex aligned to its size: one 8-byte (float) or 16-byte (double) shared-memory access. */
template <typename T>
struct alignas(2 * sizeof(T)) CplxA {
  T re, im;
};

template <typename T>
__device__ __forceinline__ Cplx<T> cmul(Cplx<T> a, Cplx<T> b) {
  return Cplx<T>{a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re};
}

/* Real weights for the cosine basis and complex ones otherwise, read as complex. */
template <typename T>
__device__ __forceinline__ Cplx<T> load_w(const void* w, int64_t idx, bool complex_w) {
  if (complex_w) return reinterpret_cast<const Cplx<T>*>(w)[idx];
  return Cplx<T>{reinterpret_cast<const T*>(w)[idx], T(0)};
}

/* sin and cos of x, |x| <= pi (a phase already reduced), in float without branches (sincosf
 * carries a branch to its slow path for huge arguments, which keeps the compiler from
 * overlapping several evaluations): r = x - q pi/2 with q the nearest quadrant (pi/2 in three
 * parts), |r| <= pi/4, and the Taylor polynomials of sin r through r^9 and of cos r through r^10
 * (truncation below 2e-9), then the quadrant's sign and swap. */
__device__ __forceinline__ void sincos_reduced(float x, float* s, float* c) {
  const float q = rintf(x * 0.636619772f);
  float r = fmaf(q, -1.57079625129699707f, x);
  r = fmaf(q, -7.54978941586159635e-08f, r);
  r = fmaf(q, -5.39030295347423839e-15f, r);
  const float r2 = r * r;
  float ps = fmaf(r2, 2.75573192e-06f, -1.98412698e-04f);
  ps = fmaf(ps, r2, 8.33333333e-03f);
  ps = fmaf(ps, r2, -1.66666667e-01f);
  const float sn = fmaf(ps * r2, r, r);
  float pc = fmaf(r2, -2.75573192e-07f, 2.48015873e-05f);
  pc = fmaf(pc, r2, -1.38888889e-03f);
  pc = fmaf(pc, r2, 4.16666667e-02f);
  pc = fmaf(pc, r2, -0.5f);
  const float cs = fmaf(pc, r2, 1.0f);
  const int quad = (int)q & 3;   // x = q pi/2 + r
  const float s0 = (quad & 1) ? cs : sn, c0 = (quad & 1) ? sn : cs;
  *s = (quad & 2) ? -s0 : s0;
  *c = (quad == 1 || quad == 2) ? -c0 : c0;
}

/* exp(z * x) for a possibly huge x: z*x is formed in double and the phase reduced to [-pi, pi]
 * in double, so a float result is accurate to a few float ulps whatever x is. */
template <typename T>
__device__ __forceinline__ Cplx<T> exp_scaled(T zr, T zi, double x) {
  const double two_pi = 6.283185307179586, inv_two_pi = 0.15915494309189535;
  const double ph = (double)zi * x;
  const double red = ph - two_pi * rint(ph * inv_two_pi);
  const double mag_arg = (double)zr * x;
  T s, c;
  if constexpr (sizeof(T) == 4) {
    sincos_reduced((float)red, &s, &c);
    const float m = expf((float)mag_arg);
    return Cplx<T>{m * c, m * s};
  } else {
    sincos(red, &s, &c);
    const double m = exp(mag_arg);
    return Cplx<T>{m * c, m * s};
  }
}

/* 1/x. In float on the device one MUFU.RCP (max error 1 ulp, denormals flushed): the Cauchy
 * sums are bound by instruction issue and IEEE division costs ~10 instructions with a slow path.
 * Exact division in double and in the CPU emulation. */
__device__ __forceinline__ float fast_rcp(float x) {
#ifdef __CUDA_ARCH__
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
#else
  return 1.0f / x;
#endif
}
__device__ __forceinline__ double fast_rcp(double x) { return 1.0 / x; }

/* Tensor-core products in float with float-level accuracy ("3xTF32"): x = hi + lo with hi the
 * TF32 rounding of x and lo the rest (the tensor core reads its top 19 bits, so lo holds the next
 * ~11 bits of x), and a b ~ a_hi b_hi + a_hi b_lo + a_lo b_hi: the dropped a_lo b_lo and the
 * truncation of lo are ~2^-22 relative, at fp32 accumulation. */
struct Tf32 {
  uint32_t hi, lo;
};

/* The bits of x as another type of the same size (f2u, u2f below): a copy, which the compilers
 * turn into a register move, and which the CPU emulation runs as written. */
template <typename To, typename From>
__device__ __forceinline__ To bits_as(From x) {
  static_assert(sizeof(To) == sizeof(From), "same size");
  To y;
  __builtin_memcpy(&y, &x, sizeof(To));
  return y;
}
__device__ __forceinline__ uint32_t f2u(float x) { return bits_as<uint32_t>(x); }
__device__ __forceinline__ float u2f(uint32_t u) { return bits_as<float>(u); }

/* hi: x rounded to 10 mantissa bits, ties away, by an integer add and mask (2 instructions; sm_90
 * has no TF32 conversion instruction, cvt.rna.tf32 becomes ~5 with checks for inf/NaN, which the
 * finite operands here do not need); lo = x - hi is exact. */
__device__ __forceinline__ Tf32 split_tf32(float x) {
  const uint32_t hi = (f2u(x) + 0x1000u) & 0xffffe000u;
  return Tf32{hi, f2u(x - u2f(hi))};
}

/* d += A B for one warp: A 16 x 8 (row-major fragment a[4]), B 8 x 8 (column fragment b[2]),
 * d the 16 x 8 float fragment, lane = 4 g + t: a = {A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4]},
 * b = {B[t][g], B[t+4][g]}, d = {D[g][2t], D[g][2t+1], D[g+8][2t], D[g+8][2t+1]}. The CPU
 * emulation computes the same products from the operands' TF32 bits (blocks run one at a
 * time there, so one static table serves a block's threads). */
__device__ __forceinline__ void mma_tf32(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#ifdef __CUDA_ARCH__
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  static uint32_t frag[1024][6];
  const int tid = threadIdx.x, base = tid & ~31, lane = tid & 31, g = lane >> 2, t = lane & 3;
  for (int i = 0; i < 4; ++i) frag[tid][i] = a[i];
  frag[tid][4] = b0;
  frag[tid][5] = b1;
  __syncwarp();
  for (int e = 0; e < 4; ++e) {
    const int row = g + 8 * (e >> 1), col = 2 * t + (e & 1);
    double s = 0;
    for (int k = 0; k < 8; ++k) {
      const float av = u2f(frag[base + (row % 8) * 4 + k % 4][(row >= 8) + 2 * (k >= 4)] & 0xffffe000u);
      const float bv = u2f(frag[base + col * 4 + k % 4][4 + (k >= 4)] & 0xffffe000u);
      s += (double)av * bv;
    }
    d[e] = (float)(d[e] + s);
  }
  __syncwarp();
#endif
}

template <typename T>
__device__ __forceinline__ T warp_sum(T x) {
  for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

/* The backward workspace holds 4 partial sums per (tile, head, state), in double. */
__device__ __forceinline__ double* partial_slot(double* ws, int64_t tile, int64_t heads, int64_t state, int64_t h,
                                                int64_t n) {
  return ws + ((tile * heads + h) * state + n) * 4;
}

struct alignas(16) D2 {
  double x, y;
};

/* Second pass: the partials of (h, n) summed over tiles in tile order (deterministic). A slot is
 * 32 bytes, read as two 16-byte loads; tiles are taken 4 at a time so that 8 loads are in flight
 * before their sums (the pass is bound by load latency: few threads, up to L / tile partials). */
__device__ __forceinline__ void sum_partials(const double* ws, int64_t n_tiles, int64_t heads, int64_t state, int64_t h,
                                             int64_t n, double s[4]) {
  s[0] = s[1] = s[2] = s[3] = 0;
  const int64_t step = heads * state * 4;
  const double* o = ws + (h * state + n) * 4;
  int64_t tile = 0;
  for (; tile + 4 <= n_tiles; tile += 4, o += 4 * step) {
    D2 v[4][2];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      v[k][0] = reinterpret_cast<const D2*>(o + k * step)[0];
      v[k][1] = reinterpret_cast<const D2*>(o + k * step)[1];
    }
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      s[0] += v[k][0].x;
      s[1] += v[k][0].y;
      s[2] += v[k][1].x;
      s[3] += v[k][1].y;
    }
  }
  for (; tile < n_tiles; ++tile, o += step)
    for (int q = 0; q < 4; ++q) s[q] += o[q];
}

/* Threads per block of the second pass: small blocks spread its few threads (heads * states)
 * over all SMs. */
constexpr int kFinishThreads = 64;

inline int64_t partials_bytes(int64_t n_tiles, int64_t heads, int64_t state) {
  return n_tiles * heads * state * 4 * (int64_t)sizeof(double);
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace lrnn_cuda
