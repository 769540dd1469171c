/* cuda_bf16.h (emulation): __nv_bfloat16 as 16-bit storage with the CPU kernels' conversions. */
#pragma once
#include "../../csrc/cpu/scalar.h"
struct __nv_bfloat16 {
  uint16_t bits;
};
inline float __bfloat162float(__nv_bfloat16 h) { return lrnn_bf16_to_f32(h.bits); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16{lrnn_f32_to_bf16(f)}; }
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
