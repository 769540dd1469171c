/* linear_scan.c: CPU forward and backward of the diagonal linear scan (lrnn/linear_scan.h) for
 * every supported element type. The loops themselves live in linear_scan_impl.h, instantiated
 * here once per (state type, a type) pair; this file only defines the arithmetic of each type
 * and picks the instantiation. */
#include "lrnn/linear_scan.h"

#include "scalar.h"

#define LRNN_SCAN_BLOCK 256 /* channels per block when channels are adjacent in memory */

/* ---- real states: a and b share one type ---- */
#define ZERO_X 0
#define ZERO_A 0
#define MUL_AX(a, x) ((a) * (x))
#define ADD_X(x, y) ((x) + (y))
#define ADD_A(x, y) ((x) + (y))
#define CONJ_A(a) (a)
#define DA_TERM(lam, h) ((lam) * (h))

#define SUFFIX _f32
#define T_X float
#define T_A float
#define ACC_X float
#define ACC_A float
#define LOAD_X(v) (v)
#define STORE_X(v) (v)
#define LOAD_A(v) (v)
#define STORE_A(v) (v)
#include "linear_scan_impl.h"
#undef SUFFIX
#undef T_X
#undef T_A
#undef ACC_X
#undef ACC_A

#define SUFFIX _f64
#define T_X double
#define T_A double
#define ACC_X double
#define ACC_A double
#include "linear_scan_impl.h"
#undef SUFFIX
#undef T_X
#undef T_A
#undef ACC_X
#undef ACC_A
#undef LOAD_X
#undef STORE_X
#undef LOAD_A
#undef STORE_A

#define SUFFIX _bf16
#define T_X uint16_t
#define T_A uint16_t
#define ACC_X float
#define ACC_A float
#define LOAD_X(v) lrnn_bf16_to_f32(v)
#define STORE_X(v) lrnn_f32_to_bf16(v)
#define LOAD_A(v) lrnn_bf16_to_f32(v)
#define STORE_A(v) lrnn_f32_to_bf16(v)
#include "linear_scan_impl.h"
#undef SUFFIX
#undef LOAD_X
#undef STORE_X
#undef LOAD_A
#undef STORE_A

#define SUFFIX _f16
#define LOAD_X(v) lrnn_f16_to_f32(v)
#define STORE_X(v) lrnn_f32_to_f16(v)
#define LOAD_A(v) lrnn_f16_to_f32(v)
#define STORE_A(v) lrnn_f32_to_f16(v)
#include "linear_scan_impl.h"
#undef SUFFIX
#undef T_X
#undef T_A
#undef ACC_X
#undef ACC_A
#undef LOAD_X
#undef STORE_X
#undef LOAD_A
#undef STORE_A

#undef ZERO_X
#undef ZERO_A
#undef MUL_AX
#undef ADD_X
#undef ADD_A
#undef CONJ_A
#undef DA_TERM

/* ---- complex states ---- */
static const lrnn_cf cf_zero = {0.0f, 0.0f};
static const lrnn_cd cd_zero = {0.0, 0.0};
#define LOAD_X(v) (v)
#define STORE_X(v) (v)
#define LOAD_A(v) (v)
#define STORE_A(v) (v)

/* complex a */
#define SUFFIX _c64
#define T_X lrnn_cf
#define T_A lrnn_cf
#define ACC_X lrnn_cf
#define ACC_A lrnn_cf
#define ZERO_X cf_zero
#define ZERO_A cf_zero
#define MUL_AX(a, x) lrnn_cf_mul(a, x)
#define ADD_X(x, y) lrnn_cf_add(x, y)
#define ADD_A(x, y) lrnn_cf_add(x, y)
#define CONJ_A(a) lrnn_cf_conj(a)
#define DA_TERM(lam, h) lrnn_cf_mul(lam, lrnn_cf_conj(h))
#include "linear_scan_impl.h"
#undef SUFFIX
#undef T_A
#undef ACC_A
#undef ZERO_A
#undef MUL_AX
#undef ADD_A
#undef CONJ_A
#undef DA_TERM

/* real a (float) with a complex64 state: da = Re(lam * conj(h)) */
#define SUFFIX _c64_real_a
#define T_A float
#define ACC_A float
#define ZERO_A 0.0f
#define MUL_AX(a, x) lrnn_cf_scale(a, x)
#define ADD_A(x, y) ((x) + (y))
#define CONJ_A(a) (a)
#define DA_TERM(lam, h) ((lam).re * (h).re + (lam).im * (h).im)
#include "linear_scan_impl.h"
#undef SUFFIX
#undef T_X
#undef T_A
#undef ACC_X
#undef ACC_A
#undef ZERO_X
#undef ZERO_A
#undef MUL_AX
#undef ADD_X
#undef ADD_A
#undef CONJ_A
#undef DA_TERM

#define SUFFIX _c128
#define T_X lrnn_cd
#define T_A lrnn_cd
#define ACC_X lrnn_cd
#define ACC_A lrnn_cd
#define ZERO_X cd_zero
#define ZERO_A cd_zero
#define MUL_AX(a, x) lrnn_cd_mul(a, x)
#define ADD_X(x, y) lrnn_cd_add(x, y)
#define ADD_A(x, y) lrnn_cd_add(x, y)
#define CONJ_A(a) lrnn_cd_conj(a)
#define DA_TERM(lam, h) lrnn_cd_mul(lam, lrnn_cd_conj(h))
#include "linear_scan_impl.h"
#undef SUFFIX
#undef T_A
#undef ACC_A
#undef ZERO_A
#undef MUL_AX
#undef ADD_A
#undef CONJ_A
#undef DA_TERM

#define SUFFIX _c128_real_a
#define T_A double
#define ACC_A double
#define ZERO_A 0.0
#define MUL_AX(a, x) lrnn_cd_scale(a, x)
#define ADD_A(x, y) ((x) + (y))
#define CONJ_A(a) (a)
#define DA_TERM(lam, h) ((lam).re * (h).re + (lam).im * (h).im)
#include "linear_scan_impl.h"

static int valid_rows(int64_t batch, int64_t length, int64_t dim, int64_t row_begin, int64_t row_end) {
  return batch >= 0 && length >= 0 && dim >= 0 && row_begin >= 0 && row_begin <= row_end &&
         row_end <= batch * dim;
}

lrnn_status lrnn_linear_scan_fwd_cpu(const lrnn_linear_scan_params *p, int64_t row_begin, int64_t row_end) {
  if (!p || !valid_rows(p->batch, p->length, p->dim, row_begin, row_end)) return LRNN_ERR_ARGUMENT;
  if (row_begin == row_end) return LRNN_OK;
  if (!p->h_last || (p->length > 0 && (!p->a || !p->b || !p->h))) return LRNN_ERR_ARGUMENT;
  switch (p->dtype) {
    case LRNN_F32: if (p->a_dtype != LRNN_F32) return LRNN_ERR_DTYPE; scan_fwd_rows_f32(p, row_begin, row_end); break;
    case LRNN_F64: if (p->a_dtype != LRNN_F64) return LRNN_ERR_DTYPE; scan_fwd_rows_f64(p, row_begin, row_end); break;
    case LRNN_BF16: if (p->a_dtype != LRNN_BF16) return LRNN_ERR_DTYPE; scan_fwd_rows_bf16(p, row_begin, row_end); break;
    case LRNN_F16: if (p->a_dtype != LRNN_F16) return LRNN_ERR_DTYPE; scan_fwd_rows_f16(p, row_begin, row_end); break;
    case LRNN_C64:
      if (p->a_dtype == LRNN_C64) scan_fwd_rows_c64(p, row_begin, row_end);
      else if (p->a_dtype == LRNN_F32) scan_fwd_rows_c64_real_a(p, row_begin, row_end);
      else return LRNN_ERR_DTYPE;
      break;
    case LRNN_C128:
      if (p->a_dtype == LRNN_C128) scan_fwd_rows_c128(p, row_begin, row_end);
      else if (p->a_dtype == LRNN_F64) scan_fwd_rows_c128_real_a(p, row_begin, row_end);
      else return LRNN_ERR_DTYPE;
      break;
    default: return LRNN_ERR_DTYPE;
  }
  return LRNN_OK;
}

lrnn_status lrnn_linear_scan_bwd_cpu(const lrnn_linear_scan_bwd_params *p, int64_t row_begin, int64_t row_end) {
  if (!p || !valid_rows(p->batch, p->length, p->dim, row_begin, row_end)) return LRNN_ERR_ARGUMENT;
  if (row_begin == row_end) return LRNN_OK;
  if (!p->dh0 || ((p->length > 0 || p->da_sum_time) && !p->da)) return LRNN_ERR_ARGUMENT;
  if (p->length > 0 && (!p->a || !p->grad_h || !p->h || !p->db)) return LRNN_ERR_ARGUMENT;
  switch (p->dtype) {
    case LRNN_F32: if (p->a_dtype != LRNN_F32) return LRNN_ERR_DTYPE; scan_bwd_rows_f32(p, row_begin, row_end); break;
    case LRNN_F64: if (p->a_dtype != LRNN_F64) return LRNN_ERR_DTYPE; scan_bwd_rows_f64(p, row_begin, row_end); break;
    case LRNN_BF16: if (p->a_dtype != LRNN_BF16) return LRNN_ERR_DTYPE; scan_bwd_rows_bf16(p, row_begin, row_end); break;
    case LRNN_F16: if (p->a_dtype != LRNN_F16) return LRNN_ERR_DTYPE; scan_bwd_rows_f16(p, row_begin, row_end); break;
    case LRNN_C64:
      if (p->a_dtype == LRNN_C64) scan_bwd_rows_c64(p, row_begin, row_end);
      else if (p->a_dtype == LRNN_F32) scan_bwd_rows_c64_real_a(p, row_begin, row_end);
      else return LRNN_ERR_DTYPE;
      break;
    case LRNN_C128:
      if (p->a_dtype == LRNN_C128) scan_bwd_rows_c128(p, row_begin, row_end);
      else if (p->a_dtype == LRNN_F64) scan_bwd_rows_c128_real_a(p, row_begin, row_end);
      else return LRNN_ERR_DTYPE;
      break;
    default: return LRNN_ERR_DTYPE;
  }
  return LRNN_OK;
}
