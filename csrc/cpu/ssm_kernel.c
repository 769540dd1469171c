/* ssm_kernel.c: CPU forward and backward of the Vandermonde SSM kernel (lrnn/ssm_kernel.h) for
 * complex64 and complex128 z. The loops live in ssm_kernel_impl.h, instantiated here per
 * precision; this file picks the instantiation and runs a slice of heads. */
#include "lrnn/ssm_kernel.h"

#include "scalar.h"

#if defined(__SSE2__) || defined(_M_X64)
#include <xmmintrin.h>
/* Decaying modes (Re z < 0) reach subnormal magnitudes after a few hundred steps, and x86 runs
 * subnormal arithmetic ~100x slower. Such terms are below the working precision of any normal
 * result, so each call flushes subnormals to zero (FTZ/DAZ, this thread only) and restores the
 * caller's mode on return. */
#define LRNN_FTZ_BEGIN const unsigned lrnn_csr_ = _mm_getcsr(); _mm_setcsr(lrnn_csr_ | 0x8040u)
#define LRNN_FTZ_END _mm_setcsr(lrnn_csr_)
#else
#define LRNN_FTZ_BEGIN do {} while (0)
#define LRNN_FTZ_END do {} while (0)
#endif

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* States per chunk (a multiple of 8: the inner loops run in groups of 8 lanes). */
#define LRNN_SK_CHUNK 64
/* Blocks between direct recomputations of the double-precision anchor. */
#define LRNN_SK_REANCHOR 32

#define SUFFIX _f32
#define T float
#define TC lrnn_cf
#include "ssm_kernel_impl.h"
#undef SUFFIX
#undef T
#undef TC

#define SUFFIX _f64
#define T double
#define TC lrnn_cd
#include "ssm_kernel_impl.h"
#undef SUFFIX
#undef T
#undef TC

static int valid_heads(int64_t heads, int64_t state, int64_t length, int64_t h_begin, int64_t h_end) {
  return heads >= 0 && state >= 0 && length >= 0 && h_begin >= 0 && h_begin <= h_end && h_end <= heads;
}

static int valid_basis(lrnn_ssm_basis basis) {
  return basis == LRNN_BASIS_COMPLEX || basis == LRNN_BASIS_COSINE;
}

lrnn_status lrnn_ssm_kernel_fwd_cpu(const lrnn_ssm_kernel_params *p, int64_t h_begin, int64_t h_end) {
  if (!p || !valid_heads(p->heads, p->state, p->length, h_begin, h_end)) return LRNN_ERR_ARGUMENT;
  if (!valid_basis(p->basis)) return LRNN_ERR_ARGUMENT;
  if (h_begin == h_end || p->length == 0) return LRNN_OK;
  if (!p->k || (p->state > 0 && (!p->w || !p->z))) return LRNN_ERR_ARGUMENT;
  if (p->dtype != LRNN_C64 && p->dtype != LRNN_C128) return LRNN_ERR_DTYPE;
  LRNN_FTZ_BEGIN;
  for (int64_t h = h_begin; h < h_end; ++h) {
    if (p->dtype == LRNN_C64) sk_fwd_head_f32(p, h);
    else sk_fwd_head_f64(p, h);
  }
  LRNN_FTZ_END;
  return LRNN_OK;
}

lrnn_status lrnn_ssm_kernel_bwd_cpu(const lrnn_ssm_kernel_bwd_params *p, int64_t h_begin, int64_t h_end) {
  if (!p || !valid_heads(p->heads, p->state, p->length, h_begin, h_end)) return LRNN_ERR_ARGUMENT;
  if (!valid_basis(p->basis)) return LRNN_ERR_ARGUMENT;
  if (h_begin == h_end || p->state == 0) return LRNN_OK;
  if (!p->grad_w || !p->grad_z || !p->w || !p->z || (p->length > 0 && !p->grad_k)) return LRNN_ERR_ARGUMENT;
  if (p->dtype != LRNN_C64 && p->dtype != LRNN_C128) return LRNN_ERR_DTYPE;
  LRNN_FTZ_BEGIN;
  for (int64_t h = h_begin; h < h_end; ++h) {
    if (p->dtype == LRNN_C64) sk_bwd_head_f32(p, h);
    else sk_bwd_head_f64(p, h);
  }
  LRNN_FTZ_END;
  return LRNN_OK;
}
