/* cuda_fp16.h (emulation): __half as 16-bit storage with the CPU kernels' conversions. */
#pragma once
#include "../../csrc/cpu/scalar.h"
struct __half {
  uint16_t bits;
};
inline float __half2float(__half h) { return lrnn_f16_to_f32(h.bits); }
inline __half __float2half_rn(float f) { return __half{lrnn_f32_to_f16(f)}; }
inline __half __float2half(float f) { return __float2half_rn(f); }
