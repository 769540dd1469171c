/* lti_common.cuh: device helpers shared by the CUDA kernel-generation kernels (ssm_kernel.cu,
 * cauchy.cu): complex storage types, exp(z * l) with the phase reduced in double precision, and a
 * warp sum. Internal to csrc/cuda. */
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

namespace lrnn_cuda {

template <typename T>
struct Cplx {
  T re, im;
};

/* Real weights for the cosine basis and complex ones otherwise, read as complex. */
template <typename T>
__device__ __forceinline__ Cplx<T> load_w(const void* w, int64_t idx, bool complex_w) {
  if (complex_w) return reinterpret_cast<const Cplx<T>*>(w)[idx];
  return Cplx<T>{reinterpret_cast<const T*>(w)[idx], T(0)};
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
    sincosf((float)red, &s, &c);
    const float m = expf((float)mag_arg);
    return Cplx<T>{m * c, m * s};
  } else {
    sincos(red, &s, &c);
    const double m = exp(mag_arg);
    return Cplx<T>{m * c, m * s};
  }
}

template <typename T>
__device__ __forceinline__ T warp_sum(T x) {
  for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace lrnn_cuda
