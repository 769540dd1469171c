/* lrnn/cauchy.h: the C API of the Cauchy kernel of S4's DPLR generating function
 *
 *     out[h, l] = sum_n  v[h, n] / (omega[l] - lam[h, n])
 *                      + conj(v[h, n]) / (omega[l] - conj(lam[h, n]))     (symmetric only)
 *
 * v, lam (H, N) complex: one state of each conjugate pair (S4 keeps N/2 of the N states; the
 * symmetric form adds the other half). omega (L,) complex: the evaluation nodes, shared by
 * every row. out (H, L) complex. Any N and L; cost O(H*N*L) complex divisions, memory O(H*L).
 *
 * Not here: allocation, argument checking beyond NULL/size sanity, threads. */
#ifndef LRNN_CAUCHY_H
#define LRNN_CAUCHY_H

#include "lrnn/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lrnn_cauchy_params {
  /* output */
  void *out;                     /* (H, L) dtype */
  /* inputs */
  const void *v;                 /* (H, N) dtype */
  const void *omega;             /* (L,) dtype */
  const void *lam;               /* (H, N) dtype */
  int64_t heads, state, length;  /* H, N, L */
  int64_t v_stride[2], lam_stride[2], omega_stride, out_stride[2];  /* elements; 0 broadcasts */
  lrnn_dtype dtype;              /* LRNN_C64 or LRNN_C128 */
  int symmetric;                 /* nonzero: add the conjugate-pair terms */
} lrnn_cauchy_params;

/* Backward, given G = grad_out (H, L) (PyTorch's complex convention). With r1 = 1/(omega - lam)
 * and r2 = 1/(conj(omega) - lam) (r2 terms only when symmetric):
 *     grad_v[n]   = conj( sum_l r1 * conj(G[l]) + r2 * G[l] )
 *     grad_lam[n] = conj( v[n] * sum_l r1^2 * conj(G[l]) + r2^2 * G[l] )
 * The nodes omega get no gradient. Sums over l run per block in the working precision and
 * across blocks in double. */
typedef struct lrnn_cauchy_bwd_params {
  /* outputs */
  void *grad_v;                  /* (H, N) dtype */
  void *grad_lam;                /* (H, N) dtype */
  /* inputs */
  const void *grad_out;          /* (H, L) dtype */
  const void *v, *omega, *lam;
  int64_t heads, state, length;
  int64_t grad_out_stride[2], v_stride[2], lam_stride[2], omega_stride, grad_v_stride[2], grad_lam_stride[2];
  lrnn_dtype dtype;
  int symmetric;
} lrnn_cauchy_bwd_params;

/* CPU kernels: rows (heads) [h_begin, h_end). */
lrnn_status lrnn_cauchy_fwd_cpu(const lrnn_cauchy_params *p, int64_t h_begin, int64_t h_end);
lrnn_status lrnn_cauchy_bwd_cpu(const lrnn_cauchy_bwd_params *p, int64_t h_begin, int64_t h_end);

/* CUDA launchers: the whole problem on `stream` (a cudaStream_t), asynchronously. The backward
 * needs lrnn_cauchy_bwd_workspace_bytes(p) bytes of device workspace (any contents). */
int64_t lrnn_cauchy_bwd_workspace_bytes(const lrnn_cauchy_bwd_params *p);
lrnn_status lrnn_cauchy_fwd_cuda(const lrnn_cauchy_params *p, void *stream);
lrnn_status lrnn_cauchy_bwd_cuda(const lrnn_cauchy_bwd_params *p, void *workspace, void *stream);

#ifdef __cplusplus
}
#endif

#endif /* LRNN_CAUCHY_H */
