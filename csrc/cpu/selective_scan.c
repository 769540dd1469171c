/* selective_scan.c: CPU forward and backward of the selective scan (lrnn/selective_scan.h) for
 * f32, f64, bf16 and f16 sequences. The loops live in selective_scan_impl.h, instantiated here
 * once per storage type; this file defines the arithmetic of each type, validates the params,
 * dispatches, and implements the fixed-order reduction of the backward's partials. */
#include "lrnn/selective_scan.h"

#include "scalar.h"

/* exp for float that the compiler can vectorize (libm's expf is an opaque call, which keeps the
 * per-state loops scalar): exp(x) = 2^k exp(r), k = round(x / ln 2), |r| <= ln 2 / 2, with a
 * degree-6 polynomial for exp(r) (Cephes' coefficients, within 2 ulp). x is clamped to
 * [-87, 88], so results below ~1.6e-38 are returned as ~1.6e-38 instead of a subnormal or 0 —
 * irrelevant next to the O(1) terms they are added to. NaN propagates. */
static inline float ss_expf(float x) {
  x = x > 88.0f ? 88.0f : x;
  x = x < -87.0f ? -87.0f : x;
  float k = x * 1.44269504088896341f + 12582912.0f; /* 1.5 * 2^23: rounds to an integer */
  k -= 12582912.0f;
  float r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = ((int32_t)k + 127) * 8388608; /* 2^k as float bits */
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

#define EXPW ss_expf
#define LOG1PW log1pf
#define W float

#define SUFFIX _f32
#define T float
#define LOAD(v) (v)
#define STORE(v) (v)
#include "selective_scan_impl.h"
#undef SUFFIX
#undef T
#undef LOAD
#undef STORE

#define SUFFIX _bf16
#define T uint16_t
#define LOAD(v) lrnn_bf16_to_f32(v)
#define STORE(v) lrnn_f32_to_bf16(v)
#include "selective_scan_impl.h"
#undef SUFFIX
#undef LOAD
#undef STORE

#define SUFFIX _f16
#define LOAD(v) lrnn_f16_to_f32(v)
#define STORE(v) lrnn_f32_to_f16(v)
#include "selective_scan_impl.h"
#undef SUFFIX
#undef T
#undef LOAD
#undef STORE
#undef W
#undef EXPW
#undef LOG1PW

#define SUFFIX _f64
#define T double
#define W double
#define LOAD(v) (v)
#define STORE(v) (v)
#define EXPW exp
#define LOG1PW log1p
#include "selective_scan_impl.h"
#undef SUFFIX
#undef T
#undef W
#undef LOAD
#undef STORE
#undef EXPW
#undef LOG1PW

static int check_fwd(const lrnn_selective_scan_params *p) {
  if (!p || p->batch < 0 || p->dim < 0 || p->length < 0 || p->dstate < 1 ||
      p->dstate > LRNN_SELECTIVE_SCAN_MAX_STATE)
    return LRNN_ERR_SHAPE;
  const int variable = p->B_variable || p->C_variable;
  if (variable && (p->groups < 1 || p->dim % p->groups != 0)) return LRNN_ERR_SHAPE;
  if (!p->A) return LRNN_ERR_ARGUMENT;
  if (p->length > 0 && (!p->u || !p->delta || !p->Bm || !p->Cm)) return LRNN_ERR_ARGUMENT;
  const lrnn_dtype want_w = p->dtype == LRNN_F64 ? LRNN_F64 : LRNN_F32;
  if (p->wdtype != want_w) return LRNN_ERR_DTYPE;
  if (p->dtype != LRNN_F32 && p->dtype != LRNN_F64 && p->dtype != LRNN_BF16 && p->dtype != LRNN_F16)
    return LRNN_ERR_DTYPE;
  return LRNN_OK;
}

lrnn_status lrnn_selective_scan_fwd_cpu(const lrnn_selective_scan_params *p, int64_t row_begin, int64_t row_end) {
  const int st = check_fwd(p);
  if (st != LRNN_OK) return (lrnn_status)st;
  if (row_begin < 0 || row_begin > row_end || row_end > p->batch * p->dim) return LRNN_ERR_ARGUMENT;
  if (row_begin == row_end) return LRNN_OK;
  if (!p->h_last || (p->length > 0 && !p->y)) return LRNN_ERR_ARGUMENT;
  switch (p->dtype) {
    case LRNN_F32: fwd_rows_f32(p, row_begin, row_end); break;
    case LRNN_F64: fwd_rows_f64(p, row_begin, row_end); break;
    case LRNN_BF16: fwd_rows_bf16(p, row_begin, row_end); break;
    case LRNN_F16: fwd_rows_f16(p, row_begin, row_end); break;
    default: return LRNN_ERR_DTYPE;
  }
  return LRNN_OK;
}

int64_t lrnn_selective_scan_bwd_items(const lrnn_selective_scan_bwd_params *q) {
  const lrnn_selective_scan_params *p = &q->fwd;
  const int64_t S = (p->B_variable || p->C_variable) ? p->groups : 1;
  return p->batch * S * q->parts;
}

lrnn_status lrnn_selective_scan_bwd_cpu(const lrnn_selective_scan_bwd_params *q, int64_t item_begin,
                                        int64_t item_end) {
  if (!q) return LRNN_ERR_ARGUMENT;
  const lrnn_selective_scan_params *p = &q->fwd;
  const int st = check_fwd(p);
  if (st != LRNN_OK) return (lrnn_status)st;
  const int64_t S = (p->B_variable || p->C_variable) ? p->groups : 1;
  if (q->parts < 1 || (p->dim > 0 && q->parts > p->dim / S)) return LRNN_ERR_ARGUMENT;
  if (item_begin < 0 || item_begin > item_end || item_end > lrnn_selective_scan_bwd_items(q)) return LRNN_ERR_ARGUMENT;
  if (item_begin == item_end) return LRNN_OK;
  if (!q->dh0 || !q->dA_part || !q->dD_part || !q->ddelta_bias_part || !q->dB_part || !q->dC_part)
    return LRNN_ERR_ARGUMENT;
  if (p->length > 0 && (!p->chunk_states || !q->grad_y || !q->du || !q->ddelta || (p->z && !q->dz) ||
                        (p->dt_A && !q->ddt_A)))
    return LRNN_ERR_ARGUMENT;
  switch (p->dtype) {
    case LRNN_F32: bwd_items_f32(q, item_begin, item_end); break;
    case LRNN_F64: bwd_items_f64(q, item_begin, item_end); break;
    case LRNN_BF16: bwd_items_bf16(q, item_begin, item_end); break;
    case LRNN_F16: bwd_items_f16(q, item_begin, item_end); break;
    default: return LRNN_ERR_DTYPE;
  }
  return LRNN_OK;
}

/* Sizes of the reduced outputs, in the order the reduce index space lists them. */
static void reduce_sizes(const lrnn_selective_scan_bwd_params *q, int64_t *nA, int64_t *nD, int64_t *nB, int64_t *nC) {
  const lrnn_selective_scan_params *p = &q->fwd;
  const int64_t var = p->batch * p->groups * p->dstate * p->length, ti = p->dim * p->dstate;
  *nA = p->dim * p->dstate;
  *nD = p->dim;
  *nB = p->B_variable ? var : ti;
  *nC = p->C_variable ? var : ti;
}

int64_t lrnn_selective_scan_reduce_size(const lrnn_selective_scan_bwd_params *q) {
  int64_t nA, nD, nB, nC;
  reduce_sizes(q, &nA, &nD, &nB, &nC);
  return nA + 2 * nD + nB + nC;
}

/* out[i] = sum over k of part[k * stride + i], k ascending: the fixed order that makes the
 * backward independent of how its items were scheduled. */
#define LRNN_REDUCE_BODY(W)                                                              \
  for (int64_t i = begin; i < end; ++i) {                                                 \
    int64_t j = i;                                                                        \
    const W *src;                                                                         \
    W *dst;                                                                               \
    int64_t count, stride;                                                                \
    if (j < nA) { src = (const W *)q->dA_part; dst = (W *)q->dA; count = B; stride = nA; } \
    else if ((j -= nA) < nD) { src = (const W *)q->dD_part; dst = (W *)q->dD; count = B; stride = nD; } \
    else if ((j -= nD) < nD) { src = (const W *)q->ddelta_bias_part; dst = (W *)q->ddelta_bias; count = B; stride = nD; } \
    else if ((j -= nD) < nB) { src = (const W *)q->dB_part; dst = (W *)q->dB; count = p->B_variable ? q->parts : B; stride = nB; } \
    else { j -= nB; src = (const W *)q->dC_part; dst = (W *)q->dC; count = p->C_variable ? q->parts : B; stride = nC; } \
    W acc = 0;                                                                            \
    for (int64_t k = 0; k < count; ++k) acc += src[k * stride + j];                      \
    dst[j] = acc;                                                                         \
  }

lrnn_status lrnn_selective_scan_reduce_cpu(const lrnn_selective_scan_bwd_params *q, int64_t begin, int64_t end) {
  if (!q) return LRNN_ERR_ARGUMENT;
  const lrnn_selective_scan_params *p = &q->fwd;
  if (begin < 0 || begin > end || end > lrnn_selective_scan_reduce_size(q)) return LRNN_ERR_ARGUMENT;
  if (begin == end) return LRNN_OK;
  if (!q->dA || !q->dD || !q->ddelta_bias || !q->dB || !q->dC || !q->dA_part || !q->dD_part ||
      !q->ddelta_bias_part || !q->dB_part || !q->dC_part)
    return LRNN_ERR_ARGUMENT;
  int64_t nA, nD, nB, nC;
  reduce_sizes(q, &nA, &nD, &nB, &nC);
  const int64_t B = p->batch;
  if (p->wdtype == LRNN_F64) {
    LRNN_REDUCE_BODY(double)
  } else if (p->wdtype == LRNN_F32) {
    LRNN_REDUCE_BODY(float)
  } else {
    return LRNN_ERR_DTYPE;
  }
  return LRNN_OK;
}
