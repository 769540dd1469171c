/* event_scan.c: CPU forward and backward of the event scan (lrnn/event_scan.h). The loops live
 * in event_scan_impl.h, instantiated here once per (state type, real input type):
 * complex64 with float32 or bfloat16 delta/dt (float arithmetic), complex128 with float64. */
#include "lrnn/event_scan.h"

#include "scalar.h"

#define SUFFIX _c64_f32
#define R float
#define CX lrnn_cf
#define T_R float
#define LOAD_R(v) (v)
#define EXP_ expf
#define EXPM1_ expm1f
#define COS_ cosf
#define SIN_ sinf
#include "event_scan_impl.h"
#undef SUFFIX
#undef T_R
#undef LOAD_R

#define SUFFIX _c64_bf16
#define T_R uint16_t
#define LOAD_R(v) lrnn_bf16_to_f32(v)
#include "event_scan_impl.h"
#undef SUFFIX
#undef R
#undef CX
#undef T_R
#undef LOAD_R
#undef EXP_
#undef EXPM1_
#undef COS_
#undef SIN_

#define SUFFIX _c128_f64
#define R double
#define CX lrnn_cd
#define T_R double
#define LOAD_R(v) (v)
#define EXP_ exp
#define EXPM1_ expm1
#define COS_ cos
#define SIN_ sin
#include "event_scan_impl.h"

static int valid_rows(int64_t batch, int64_t length, int64_t dim, int64_t row_begin, int64_t row_end) {
  return batch >= 0 && length >= 0 && dim >= 0 && row_begin >= 0 && row_begin <= row_end &&
         row_end <= batch * dim;
}

static int valid_disc(int disc) {
  return disc == LRNN_DISC_ZOH || disc == LRNN_DISC_DIRAC || disc == LRNN_DISC_ASYNC;
}

lrnn_status lrnn_event_scan_fwd_cpu(const lrnn_event_scan_params *p, int64_t row_begin, int64_t row_end) {
  if (!p || !valid_rows(p->batch, p->length, p->dim, row_begin, row_end) || !valid_disc(p->disc))
    return LRNN_ERR_ARGUMENT;
  if (row_begin == row_end) return LRNN_OK;
  if (!p->h_last || !p->lambda || (!p->delta && (p->length > 0 || p->delta_stride[1] == 0)) ||
      (p->length > 0 && (!p->dt || !p->v || !p->h)))
    return LRNN_ERR_ARGUMENT;
  if (p->dtype == LRNN_C64 && p->real_dtype == LRNN_F32) event_fwd_rows_c64_f32(p, row_begin, row_end);
  else if (p->dtype == LRNN_C64 && p->real_dtype == LRNN_BF16) event_fwd_rows_c64_bf16(p, row_begin, row_end);
  else if (p->dtype == LRNN_C128 && p->real_dtype == LRNN_F64) event_fwd_rows_c128_f64(p, row_begin, row_end);
  else return LRNN_ERR_DTYPE;
  return LRNN_OK;
}

lrnn_status lrnn_event_scan_bwd_cpu(const lrnn_event_scan_bwd_params *p, int64_t row_begin, int64_t row_end) {
  if (!p || !valid_rows(p->batch, p->length, p->dim, row_begin, row_end) || !valid_disc(p->disc))
    return LRNN_ERR_ARGUMENT;
  if (row_begin == row_end) return LRNN_OK;
  if (!p->dlambda || !p->dh0 || !p->lambda || (!p->delta && (p->length > 0 || p->delta_stride[1] == 0)))
    return LRNN_ERR_ARGUMENT;
  if (!p->ddelta && (p->length > 0 || p->delta_stride[1] == 0)) return LRNN_ERR_ARGUMENT;
  if (p->length > 0 && (!p->dt || !p->v || !p->h || !p->grad_h || !p->dv)) return LRNN_ERR_ARGUMENT;
  if (p->dtype == LRNN_C64 && p->real_dtype == LRNN_F32) event_bwd_rows_c64_f32(p, row_begin, row_end);
  else if (p->dtype == LRNN_C64 && p->real_dtype == LRNN_BF16) event_bwd_rows_c64_bf16(p, row_begin, row_end);
  else if (p->dtype == LRNN_C128 && p->real_dtype == LRNN_F64) event_bwd_rows_c128_f64(p, row_begin, row_end);
  else return LRNN_ERR_DTYPE;
  return LRNN_OK;
}
