/* lrnn/ssm_kernel.h: the C API of the Vandermonde kernel of a diagonal LTI state-space model
 *
 *     K[h, l] = scale * Re( sum_n w[h, n] * exp(z[h, n] * l) ),    l = 0 .. L-1
 *
 * in two bases:
 *   LRNN_BASIS_COMPLEX  w complex, scale 2: the conjugate-pair kernel of S4D / S5 / LRU
 *                       (2 Re(...) sums each stored state and its conjugate).
 *   LRNN_BASIS_COSINE   w real, scale 1: Centaurus' damped-cosine basis
 *                       sum_n w * exp(Re z * l) * cos(Im z * l).
 * z is complex in both; K is real (f32 for c64 z, f64 for c128 z).
 *
 * Cost O(H*N*L), memory O(H*L): the (H, N, L) tensor of powers is never formed. Powers are
 * re-anchored every LRNN_SSM_KERNEL_BLOCK steps from a value accurate to the working precision
 * (CPU: a double-precision anchor, itself recomputed directly every 32 blocks, advanced by one
 * multiplication per step; CUDA: z^l = z^(64 t) z^j as a product of two factors, each at most
 * LRNN_SSM_KERNEL_BLOCK/2 multiplications from exp(z*x) evaluated directly with the phase
 * reduced in double), so rounding drift is bounded by the block length, independent of L.
 * Results below the smallest normal number may be flushed to zero. Re z > 0 grows without
 * bound: overflow is the caller's.
 *
 * Not here: allocation, argument checking beyond NULL/size sanity, threads. */
#ifndef LRNN_SSM_KERNEL_H
#define LRNN_SSM_KERNEL_H

#include "lrnn/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Steps between anchors where exp(z*l) is recomputed from scratch. */
#define LRNN_SSM_KERNEL_BLOCK 32

typedef enum lrnn_ssm_basis {
  LRNN_BASIS_COMPLEX = 0,   /* K = 2 Re(sum w exp(z l)), w complex */
  LRNN_BASIS_COSINE = 1     /* K = sum w exp(Re z l) cos(Im z l), w real */
} lrnn_ssm_basis;

typedef struct lrnn_ssm_kernel_params {
  /* output */
  void *k;                      /* (H, L) real: f32 for c64 z, f64 for c128 z */
  /* inputs */
  const void *w;                /* (H, N): complex (dtype) or, for the cosine basis, its real type */
  const void *z;                /* (H, N) complex (dtype) */
  int64_t heads, state, length; /* H, N, L */
  int64_t w_stride[2], z_stride[2], k_stride[2];   /* elements; 0 broadcasts */
  lrnn_dtype dtype;             /* of z: LRNN_C64 or LRNN_C128 */
  lrnn_ssm_basis basis;
} lrnn_ssm_kernel_params;

/* Backward, given dK = dLoss/dK (H, L) real. With E[n, l] = exp(z[n] l) and s the basis scale
 * (PyTorch's complex convention, grad = dL/dRe + i dL/dIm):
 *     grad_w[n] = s * sum_l dK[l] * conj(E[n, l])            (real part only for a real w)
 *     grad_z[n] = s * conj(w[n]) * sum_l l * dK[l] * conj(E[n, l])
 * Sums over l run per block in the working precision and across blocks in double. */
typedef struct lrnn_ssm_kernel_bwd_params {
  /* outputs */
  void *grad_w;                 /* (H, N) like w (a real w gets a real gradient) */
  void *grad_z;                 /* (H, N) complex */
  /* inputs */
  const void *grad_k;           /* (H, L) real */
  const void *w, *z;
  int64_t heads, state, length;
  int64_t grad_k_stride[2], w_stride[2], z_stride[2], grad_w_stride[2], grad_z_stride[2];
  lrnn_dtype dtype;
  lrnn_ssm_basis basis;
} lrnn_ssm_kernel_bwd_params;

/* CPU kernels: rows (heads) [h_begin, h_end). */
lrnn_status lrnn_ssm_kernel_fwd_cpu(const lrnn_ssm_kernel_params *p, int64_t h_begin, int64_t h_end);
lrnn_status lrnn_ssm_kernel_bwd_cpu(const lrnn_ssm_kernel_bwd_params *p, int64_t h_begin, int64_t h_end);

/* CUDA launchers: the whole problem on `stream` (a cudaStream_t), asynchronously. The backward
 * needs a workspace of lrnn_ssm_kernel_bwd_workspace_bytes(p) bytes (device memory, any
 * contents) for its deterministic two-pass reduction over l. */
int64_t lrnn_ssm_kernel_bwd_workspace_bytes(const lrnn_ssm_kernel_bwd_params *p);
lrnn_status lrnn_ssm_kernel_fwd_cuda(const lrnn_ssm_kernel_params *p, void *stream);
lrnn_status lrnn_ssm_kernel_bwd_cuda(const lrnn_ssm_kernel_bwd_params *p, void *workspace, void *stream);

#ifdef __cplusplus
}
#endif

#endif /* LRNN_SSM_KERNEL_H */
