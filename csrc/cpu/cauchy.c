/* cauchy.c: CPU forward and backward of the Cauchy kernel (lrnn/cauchy.h) for complex64 and
 * complex128. The loops live in cauchy_impl.h, instantiated here per precision. */
#include "lrnn/cauchy.h"

#include "scalar.h"

/* Nodes per forward chunk and states per backward chunk: the vector lanes. */
#define LRNN_CY_CHUNK 64
/* Nodes per partial sum in the backward before joining the double totals. */
#define LRNN_CY_BLOCK 64

#define SUFFIX _f32
#define T float
#define TC lrnn_cf
#include "cauchy_impl.h"
#undef SUFFIX
#undef T
#undef TC

#define SUFFIX _f64
#define T double
#define TC lrnn_cd
#include "cauchy_impl.h"
#undef SUFFIX
#undef T
#undef TC

static int valid_heads(int64_t heads, int64_t state, int64_t length, int64_t h_begin, int64_t h_end) {
  return heads >= 0 && state >= 0 && length >= 0 && h_begin >= 0 && h_begin <= h_end && h_end <= heads;
}

lrnn_status lrnn_cauchy_fwd_cpu(const lrnn_cauchy_params *p, int64_t h_begin, int64_t h_end) {
  if (!p || !valid_heads(p->heads, p->state, p->length, h_begin, h_end)) return LRNN_ERR_ARGUMENT;
  if (h_begin == h_end || p->length == 0) return LRNN_OK;
  if (!p->out || !p->omega || (p->state > 0 && (!p->v || !p->lam))) return LRNN_ERR_ARGUMENT;
  for (int64_t h = h_begin; h < h_end; ++h) {
    switch (p->dtype) {
      case LRNN_C64: cy_fwd_head_f32(p, h); break;
      case LRNN_C128: cy_fwd_head_f64(p, h); break;
      default: return LRNN_ERR_DTYPE;
    }
  }
  return LRNN_OK;
}

lrnn_status lrnn_cauchy_bwd_cpu(const lrnn_cauchy_bwd_params *p, int64_t h_begin, int64_t h_end) {
  if (!p || !valid_heads(p->heads, p->state, p->length, h_begin, h_end)) return LRNN_ERR_ARGUMENT;
  if (h_begin == h_end || p->state == 0) return LRNN_OK;
  if (!p->grad_v || !p->grad_lam || !p->v || !p->lam || (p->length > 0 && (!p->grad_out || !p->omega)))
    return LRNN_ERR_ARGUMENT;
  for (int64_t h = h_begin; h < h_end; ++h) {
    switch (p->dtype) {
      case LRNN_C64: cy_bwd_head_f32(p, h); break;
      case LRNN_C128: cy_bwd_head_f64(p, h); break;
      default: return LRNN_ERR_DTYPE;
    }
  }
  return LRNN_OK;
}
