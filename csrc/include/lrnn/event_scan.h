/* lrnn/event_scan.h: the C API of the event scan, the Event-SSM / S7 recurrence with the
 * discretization fused into the scan:
 *
 *     z[t]  = Lambda * delta[t] * dt[t]                       (complex, per channel p)
 *     a[t]  = exp(z[t])
 *     h[t]  = a[t] * h[t-1] + g[t] * v[t],   h[-1] = h0 (zero when absent),  h_last = h[L-1]
 *
 * with the input scale g[t] ("gamma bar") chosen by the discretization:
 *     ZOH    g[t] = (a[t] - 1) / Lambda            = delta[t]*dt[t] * phi(z[t])
 *     DIRAC  g[t] = 1
 *     ASYNC  g[t] = (exp(Lambda*delta[t]) - 1) / Lambda = delta[t] * phi(Lambda*delta[t])
 * where phi(z) = (exp(z) - 1) / z is evaluated through a cancellation-free complex expm1, so the
 * scales stay exact as Lambda -> 0. dt = 0 gives a[t] = 1 (identity transition): with a zero
 * input this is how padded events leave the state untouched.
 *
 * Shapes: Lambda (P,) complex; delta (P,) shared by every event (Event-SSM) or (B, L, P) per
 * event (S7's input-dependent step), given by strides with zeros for broadcast dimensions;
 * dt (B, L) real; v, h (B, L, P) complex; h0, h_last (B, P) complex.
 * With `reverse` the scan runs from t = L-1 down to 0 (h[L] = h0) and h_last = h[0].
 * The transitions a[t] and scales g[t] are computed in the kernel and never stored.
 *
 * Types: the state type (`dtype`, of Lambda, v, h, h0, h_last) is LRNN_C64 or LRNN_C128; the
 * real type (`real_dtype`, of delta and dt) is LRNN_F32 or LRNN_BF16 with LRNN_C64, and LRNN_F64
 * with LRNN_C128. Arithmetic is in float for C64 and double for C128.
 *
 * Not here: allocation, argument checking beyond NULL/size sanity, threads. The caller splits
 * the B*P independent rows (row = b*P + p) into slices and may run slices concurrently. */
#ifndef LRNN_EVENT_SCAN_H
#define LRNN_EVENT_SCAN_H

#include "lrnn/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The discretization, as an integer so that it crosses the op schema and the C boundary as a
 * plain int (the Python layer maps the names "zoh", "dirac", "async" onto it). */
typedef enum lrnn_event_disc {
  LRNN_DISC_ZOH = 0,
  LRNN_DISC_DIRAC = 1,
  LRNN_DISC_ASYNC = 2
} lrnn_event_disc;

typedef struct lrnn_event_scan_params {
  /* outputs */
  void *h;                   /* (B, L, P) dtype */
  void *h_last;              /* (B, P) dtype */
  /* inputs */
  const void *lambda;        /* (P,) dtype */
  const void *delta;         /* (B, L, P) real_dtype; broadcast dimensions have stride 0 */
  const void *dt;            /* (B, L) real_dtype */
  const void *v;             /* (B, L, P) dtype */
  const void *h0;            /* (B, P) dtype, or NULL for a zero initial state */
  int64_t batch, length, dim;                      /* B, L, P */
  int64_t lambda_stride;
  int64_t delta_stride[3], v_stride[3], h_stride[3];   /* elements, (batch, time, channel) */
  int64_t dt_stride[2];                                /* elements, (batch, time) */
  int64_t h0_stride[2], h_last_stride[2];              /* elements, (batch, channel) */
  lrnn_dtype dtype;          /* LRNN_C64 or LRNN_C128 */
  lrnn_dtype real_dtype;     /* LRNN_F32 / LRNN_BF16 (with C64) or LRNN_F64 (with C128) */
  int disc;                  /* an lrnn_event_disc */
  int reverse;               /* nonzero: scan from t = L-1 down to t = 0 */
} lrnn_event_scan_params;

/* Backward, given the gradient of the loss w.r.t. h (and h_last), in PyTorch's complex
 * convention (grad = dL/dRe + i dL/dIm). With lam[t] the total gradient of h[t]:
 *     lam[t] = grad_h[t] + conj(a[t+1]) * lam[t+1]          (t+1: the step taken after t)
 *     dv[t] = conj(g[t]) * lam[t],      dh0 = conj(a[first]) * lam[first]
 *     dLambda += conj(da/dLambda) * lam[t]*conj(h[t-1]) + conj(dg/dLambda) * lam[t]*conj(v[t])
 *     ddelta[t] = Re(conj(da/ddelta) * lam[t]*conj(h[t-1]) + conj(dg/ddelta) * lam[t]*conj(v[t]))
 * dLambda is written per batch row, summed over time: a (B, P) tensor of partials that the
 * caller reduces over the batch in a fixed order (no atomics, so results are reproducible).
 * ddelta is (B, L, P) when delta is given per event (nonzero time stride), else (B, P)
 * partials summed over time like dLambda. dLambda and ddelta are stored in the accumulation
 * type: C64/F32 for C64 states, C128/F64 for C128 states. dt gets no gradient (it is data). */
typedef struct lrnn_event_scan_bwd_params {
  /* outputs */
  void *dlambda;             /* (B, P) accumulation complex type */
  void *ddelta;              /* (B, L, P) or (B, P), accumulation real type */
  void *dv;                  /* (B, L, P) dtype */
  void *dh0;                 /* (B, P) dtype */
  /* inputs */
  const void *grad_h;        /* (B, L, P) dtype */
  const void *grad_h_last;   /* (B, P) dtype, or NULL when h_last gets no gradient */
  const void *lambda, *delta, *dt, *v;   /* as in the forward */
  const void *h;             /* (B, L, P) dtype: the forward output */
  const void *h0;            /* (B, P) dtype, or NULL */
  int64_t batch, length, dim;
  int64_t lambda_stride;
  int64_t delta_stride[3], v_stride[3], h_stride[3], grad_h_stride[3], dv_stride[3];
  int64_t dt_stride[2];
  int64_t grad_h_last_stride[2], h0_stride[2], dh0_stride[2], dlambda_stride[2];
  int64_t ddelta_stride[3];  /* time stride ignored when delta is shared over time */
  lrnn_dtype dtype;
  lrnn_dtype real_dtype;
  int disc;
  int reverse;
} lrnn_event_scan_bwd_params;

/* CPU kernels: compute rows [row_begin, row_end) of the B*P rows. */
lrnn_status lrnn_event_scan_fwd_cpu(const lrnn_event_scan_params *p, int64_t row_begin, int64_t row_end);
lrnn_status lrnn_event_scan_bwd_cpu(const lrnn_event_scan_bwd_params *p, int64_t row_begin, int64_t row_end);

/* CUDA launchers: the whole problem on `stream` (a cudaStream_t), asynchronously.
 * Supported on CUDA: C64 with F32 or BF16, and C128 with F64. Each needs a device workspace of
 * the given number of bytes (any initial contents: the kernels write every word before reading
 * it; used only by this launch). The results are bitwise reproducible. */
int64_t lrnn_event_scan_fwd_workspace_bytes(const lrnn_event_scan_params *p);
int64_t lrnn_event_scan_bwd_workspace_bytes(const lrnn_event_scan_bwd_params *p);
lrnn_status lrnn_event_scan_fwd_cuda(const lrnn_event_scan_params *p, void *workspace, void *stream);
lrnn_status lrnn_event_scan_bwd_cuda(const lrnn_event_scan_bwd_params *p, void *workspace, void *stream);

#ifdef __cplusplus
}
#endif

#endif /* LRNN_EVENT_SCAN_H */
