/* scalar.h: element types and arithmetic shared by the CPU kernels — bf16/f16 storage with
 * f32 arithmetic, and small complex structs (C11 has _Complex, C++ does not, so we spell
 * complex arithmetic out). Internal to csrc/cpu; not part of the public API. */
#ifndef LRNN_CPU_SCALAR_H
#define LRNN_CPU_SCALAR_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* `restrict` is C99; C++ compilers spell it __restrict. */
#ifdef __cplusplus
#define LRNN_RESTRICT __restrict
#else
#define LRNN_RESTRICT restrict
#endif

typedef struct lrnn_cf { float re, im; } lrnn_cf;    /* complex64 storage and arithmetic */
typedef struct lrnn_cd { double re, im; } lrnn_cd;   /* complex128 */

static inline float lrnn_bf16_to_f32(uint16_t x) {
  uint32_t u = (uint32_t)x << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline uint16_t lrnn_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest, ties to even */
  return (uint16_t)(u >> 16);
}

static inline float lrnn_f16_to_f32(uint16_t x) {
  const uint32_t sign = (uint32_t)(x & 0x8000u) << 16;
  uint32_t exp = (x >> 10) & 0x1fu, man = x & 0x3ffu, u;
  if (exp == 0x1fu) {
    u = sign | 0x7f800000u | (man << 13);            /* inf / NaN */
  } else if (exp != 0) {
    u = sign | ((exp + 112u) << 23) | (man << 13);   /* normal: rebias 15 -> 127 */
  } else if (man == 0) {
    u = sign;                                        /* signed zero */
  } else {                                           /* subnormal: normalize */
    exp = 113u;
    while (!(man & 0x400u)) { man <<= 1; exp--; }
    u = sign | (exp << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline uint16_t lrnn_f32_to_f16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);   /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  /* rounds to >= 65520: inf */
  if (a < 0x38800000u) {                                    /* below 2^-14: subnormal or 0 */
    const float mag = fabsf(f) * 16777216.0f;                /* in units of 2^-24 */
    return (uint16_t)(sign | (uint16_t)lrintf(mag));         /* current mode: nearest-even */
  }
  uint32_t r = a + 0xfffu + ((a >> 13) & 1u);                /* round to nearest, ties to even */
  return (uint16_t)(sign | (uint16_t)((r - 0x38000000u) >> 13));
}

static inline lrnn_cf lrnn_cf_mul(lrnn_cf x, lrnn_cf y) {
  lrnn_cf r = {x.re * y.re - x.im * y.im, x.re * y.im + x.im * y.re};
  return r;
}
static inline lrnn_cf lrnn_cf_add(lrnn_cf x, lrnn_cf y) {
  lrnn_cf r = {x.re + y.re, x.im + y.im};
  return r;
}
static inline lrnn_cf lrnn_cf_conj(lrnn_cf x) {
  lrnn_cf r = {x.re, -x.im};
  return r;
}
static inline lrnn_cf lrnn_cf_scale(float s, lrnn_cf x) {
  lrnn_cf r = {s * x.re, s * x.im};
  return r;
}
static inline lrnn_cd lrnn_cd_mul(lrnn_cd x, lrnn_cd y) {
  lrnn_cd r = {x.re * y.re - x.im * y.im, x.re * y.im + x.im * y.re};
  return r;
}
static inline lrnn_cd lrnn_cd_add(lrnn_cd x, lrnn_cd y) {
  lrnn_cd r = {x.re + y.re, x.im + y.im};
  return r;
}
static inline lrnn_cd lrnn_cd_conj(lrnn_cd x) {
  lrnn_cd r = {x.re, -x.im};
  return r;
}
static inline lrnn_cd lrnn_cd_scale(double s, lrnn_cd x) {
  lrnn_cd r = {s * x.re, s * x.im};
  return r;
}

#endif /* LRNN_CPU_SCALAR_H */
