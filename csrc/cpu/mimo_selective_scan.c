/* mimo_selective_scan.c: CPU stages "in" and "out" of S7's MIMO selective scan and the
 * fixed-order reduction of the weight-gradient partials (lrnn/mimo_selective_scan.h). The loops
 * live in mimo_selective_scan_impl.h, instantiated here once per input type: float32, bfloat16
 * and float16 u with float weights and complex64 states, float64 u with double / complex128. */
#include "lrnn/mimo_selective_scan.h"

#include <stddef.h>

#include "scalar.h"

#define SUFFIX _f32
#define T float
#define ACC float
#define CX lrnn_cf
#define LOAD_T(x) (x)
#define STORE_T(x) (x)
#include "mimo_selective_scan_impl.h"
#undef SUFFIX
#undef T
#undef LOAD_T
#undef STORE_T

#define SUFFIX _bf16
#define T uint16_t
#define LOAD_T(x) lrnn_bf16_to_f32(x)
#define STORE_T(x) lrnn_f32_to_bf16(x)
#include "mimo_selective_scan_impl.h"
#undef SUFFIX
#undef LOAD_T
#undef STORE_T

#define SUFFIX _f16
#define LOAD_T(x) lrnn_f16_to_f32(x)
#define STORE_T(x) lrnn_f32_to_f16(x)
#include "mimo_selective_scan_impl.h"
#undef SUFFIX
#undef T
#undef ACC
#undef CX
#undef LOAD_T
#undef STORE_T

#define SUFFIX _f64
#define T double
#define ACC double
#define CX lrnn_cd
#define LOAD_T(x) (x)
#define STORE_T(x) (x)
#include "mimo_selective_scan_impl.h"

/* Which instantiation serves (dtype, state_dtype): 0 f32, 1 bf16, 2 f16, 3 f64, -1 none. */
static int variant(const lrnn_mimo_params *p) {
  if (p->state_dtype == LRNN_C64) {
    if (p->dtype == LRNN_F32) return 0;
    if (p->dtype == LRNN_BF16) return 1;
    if (p->dtype == LRNN_F16) return 2;
  } else if (p->state_dtype == LRNN_C128 && p->dtype == LRNN_F64) {
    return 3;
  }
  return -1;
}

/* Sizes, token range and the pointers every stage reads (u and the stage's weights). */
static lrnn_status check(const lrnn_mimo_params *p, int64_t begin, int64_t end, int stage_in) {
  if (!p) return LRNN_ERR_ARGUMENT;
  if (p->batch < 0 || p->length < 0 || p->in_dim < 0 || p->state_dim < 0 || p->out_dim < 0) return LRNN_ERR_SHAPE;
  if (begin < 0 || begin > end || end > p->batch * p->length) return LRNN_ERR_ARGUMENT;
  if (variant(p) < 0) return LRNN_ERR_DTYPE;
  if (begin < end && !p->u) return LRNN_ERR_ARGUMENT;
  if (stage_in ? !p->wb : !p->wc) return LRNN_ERR_ARGUMENT;
  return LRNN_OK;
}

lrnn_status lrnn_mimo_in_fwd_cpu(const lrnn_mimo_params *p, int64_t token_begin, int64_t token_end) {
  const lrnn_status s = check(p, token_begin, token_end, 1);
  if (s != LRNN_OK) return s;
  if (token_begin < token_end && !p->v) return LRNN_ERR_ARGUMENT;
  switch (variant(p)) {
    case 0: mimo_in_fwd_f32(p, token_begin, token_end); break;
    case 1: mimo_in_fwd_bf16(p, token_begin, token_end); break;
    case 2: mimo_in_fwd_f16(p, token_begin, token_end); break;
    default: mimo_in_fwd_f64(p, token_begin, token_end); break;
  }
  return LRNN_OK;
}

lrnn_status lrnn_mimo_out_fwd_cpu(const lrnn_mimo_params *p, int64_t token_begin, int64_t token_end) {
  const lrnn_status s = check(p, token_begin, token_end, 0);
  if (s != LRNN_OK) return s;
  if (token_begin < token_end && (!p->h || !p->y)) return LRNN_ERR_ARGUMENT;
  switch (variant(p)) {
    case 0: mimo_out_fwd_f32(p, token_begin, token_end); break;
    case 1: mimo_out_fwd_bf16(p, token_begin, token_end); break;
    case 2: mimo_out_fwd_f16(p, token_begin, token_end); break;
    default: mimo_out_fwd_f64(p, token_begin, token_end); break;
  }
  return LRNN_OK;
}

lrnn_status lrnn_mimo_out_bwd_cpu(const lrnn_mimo_params *p, int64_t token_begin, int64_t token_end,
                                  int64_t slice) {
  const lrnn_status s = check(p, token_begin, token_end, 0);
  if (s != LRNN_OK) return s;
  if (slice < 0 || !p->dw || (p->bc && !p->db)) return LRNN_ERR_ARGUMENT;
  if (token_begin < token_end && (!p->y || !p->hs || !p->h || !p->du)) return LRNN_ERR_ARGUMENT;
  switch (variant(p)) {
    case 0: mimo_out_bwd_f32(p, token_begin, token_end, slice); break;
    case 1: mimo_out_bwd_bf16(p, token_begin, token_end, slice); break;
    case 2: mimo_out_bwd_f16(p, token_begin, token_end, slice); break;
    default: mimo_out_bwd_f64(p, token_begin, token_end, slice); break;
  }
  return LRNN_OK;
}

lrnn_status lrnn_mimo_in_bwd_cpu(const lrnn_mimo_params *p, int64_t token_begin, int64_t token_end,
                                 int64_t slice) {
  const lrnn_status s = check(p, token_begin, token_end, 1);
  if (s != LRNN_OK) return s;
  if (slice < 0 || !p->dw || (p->bb && !p->db)) return LRNN_ERR_ARGUMENT;
  if (token_begin < token_end && (!p->v || !p->du)) return LRNN_ERR_ARGUMENT;
  switch (variant(p)) {
    case 0: mimo_in_bwd_f32(p, token_begin, token_end, slice); break;
    case 1: mimo_in_bwd_bf16(p, token_begin, token_end, slice); break;
    case 2: mimo_in_bwd_f16(p, token_begin, token_end, slice); break;
    default: mimo_in_bwd_f64(p, token_begin, token_end, slice); break;
  }
  return LRNN_OK;
}

lrnn_status lrnn_mimo_reduce_cpu(void *out, const void *partials, int64_t slices, int64_t n, lrnn_dtype acc_dtype,
                                 int64_t begin, int64_t end) {
  if (slices < 0 || n < 0) return LRNN_ERR_SHAPE;
  if (begin < 0 || begin > end || end > n) return LRNN_ERR_ARGUMENT;
  if (begin == end) return LRNN_OK;
  if (!out || (slices > 0 && !partials)) return LRNN_ERR_ARGUMENT;
  if (acc_dtype == LRNN_F32) {
    const float *src = (const float *)partials;
    float *dst = (float *)out;
    for (int64_t e = begin; e < end; ++e) dst[e] = 0;
    for (int64_t s = 0; s < slices; ++s)   /* slice-major: streams each partial once, same order per element */
      for (int64_t e = begin; e < end; ++e) dst[e] += src[s * n + e];
  } else if (acc_dtype == LRNN_F64) {
    const double *src = (const double *)partials;
    double *dst = (double *)out;
    for (int64_t e = begin; e < end; ++e) dst[e] = 0;
    for (int64_t s = 0; s < slices; ++s)   /* slice-major: streams each partial once, same order per element */
      for (int64_t e = begin; e < end; ++e) dst[e] += src[s * n + e];
  } else {
    return LRNN_ERR_DTYPE;
  }
  return LRNN_OK;
}
