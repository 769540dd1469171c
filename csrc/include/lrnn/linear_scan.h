/* lrnn/linear_scan.h: the C API of the diagonal linear scan
 *
 *     h[t] = a[t] * h[t-1] + b[t],   h[-1] = h0 (zero when absent),   h_last = h[L-1]
 *
 * over the time dimension of (B, L, D) tensors, elementwise in the channel dimension D.
 * With `reverse` the scan runs from t = L-1 down to 0 (h[L] = h0) and h_last = h[0].
 * Real (f32, f64, bf16, f16 with f32 accumulation) and complex (c64, c128) states; a complex
 * state may have a real `a` of the matching precision. `a` is broadcast through zero strides
 * (a time-invariant system has a_stride = {0, 0, 1}) and is never materialized.
 *
 * Not here: allocation, argument checking beyond NULL/size sanity, threads. The caller splits
 * the B*D independent rows (row = b*D + d) into slices and may run slices concurrently. */
#ifndef LRNN_LINEAR_SCAN_H
#define LRNN_LINEAR_SCAN_H

#include "lrnn/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lrnn_linear_scan_params {
  /* outputs */
  void *h;                   /* (B, L, D) dtype */
  void *h_last;              /* (B, D) dtype */
  /* inputs */
  const void *a;             /* (B, L, D) a_dtype; broadcast dimensions have stride 0 */
  const void *b;             /* (B, L, D) dtype */
  const void *h0;            /* (B, D) dtype, or NULL for a zero initial state */
  int64_t batch, length, dim;                  /* B, L, D */
  int64_t a_stride[3], b_stride[3], h_stride[3];  /* elements, in (batch, time, channel) order */
  int64_t h0_stride[2], h_last_stride[2];         /* elements, in (batch, channel) order */
  lrnn_dtype dtype;          /* of b, h, h0, h_last */
  lrnn_dtype a_dtype;        /* dtype, or the real type of the same precision for a complex dtype */
  int reverse;               /* nonzero: scan from t = L-1 down to t = 0 */
} lrnn_linear_scan_params;

/* Backward of the scan, given the gradient of the loss w.r.t. h (and h_last). With
 * lam[t] = dL/dh[t] accumulated through the recurrence (PyTorch's conjugate convention):
 *     lam[t] = grad_h[t] + conj(a[t+1]) * lam[t+1]     (t+1: the step taken after t)
 *     db[t] = lam[t],   da[t] = lam[t] * conj(h[t-1]),   dh0 = conj(a[first]) * lam[first]
 * For a real a with a complex state, da is the real part of the above. */
typedef struct lrnn_linear_scan_bwd_params {
  /* outputs */
  void *da;                  /* (B, L, D) a_dtype; or (B, D) summed over time, see da_sum_time */
  void *db;                  /* (B, L, D) dtype */
  void *dh0;                 /* (B, D) dtype */
  /* inputs */
  const void *grad_h;        /* (B, L, D) dtype */
  const void *grad_h_last;   /* (B, D) dtype, or NULL when h_last gets no gradient */
  const void *a;             /* as in the forward */
  const void *h;             /* (B, L, D) dtype: the forward output */
  const void *h0;            /* (B, D) dtype, or NULL */
  int64_t batch, length, dim;
  int64_t grad_h_stride[3], a_stride[3], h_stride[3], da_stride[3], db_stride[3];
  int64_t grad_h_last_stride[2], h0_stride[2], dh0_stride[2];
  lrnn_dtype dtype;
  lrnn_dtype a_dtype;
  int reverse;
  /* Nonzero for a time-invariant a: da is (B, D), the sum over time, stored in the
   * accumulation type of a (f32 for f32/bf16/f16/c64-real, f64 for f64, c64 for c64, c128 for
   * c128) so that the caller's remaining sum over batch loses no precision; da_stride[1] is
   * ignored. */
  int da_sum_time;
} lrnn_linear_scan_bwd_params;

/* CPU kernels: compute rows [row_begin, row_end) of the B*D rows. */
lrnn_status lrnn_linear_scan_fwd_cpu(const lrnn_linear_scan_params *p,
                                     int64_t row_begin, int64_t row_end);
lrnn_status lrnn_linear_scan_bwd_cpu(const lrnn_linear_scan_bwd_params *p,
                                     int64_t row_begin, int64_t row_end);

/* CUDA launchers: the whole problem on `stream` (a cudaStream_t), asynchronously. */
lrnn_status lrnn_linear_scan_fwd_cuda(const lrnn_linear_scan_params *p, void *stream);
lrnn_status lrnn_linear_scan_bwd_cuda(const lrnn_linear_scan_bwd_params *p, void *stream);

#ifdef __cplusplus
}
#endif

#endif /* LRNN_LINEAR_SCAN_H */
