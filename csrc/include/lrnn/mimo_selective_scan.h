/* lrnn/mimo_selective_scan.h: the C API of S7's MIMO selective scan. Per batch b, event t
 * (token k = b*L + t), state p < P, inputs i, j < H, outputs o < O:
 *
 *     B_t[p, j] = sum_i wb[p, j, :, i] u_t[i] + bb[p, j, :]       complex, (re, im) on the ":" axis
 *     v_t[p]    = sum_j B_t[p, j] u_t[j]                              (stage "in")
 *     h_t       = exp(Lambda delta_t dt_t) h_{t-1} + g_t v_t          (the event scan, lrnn/event_scan.h)
 *     C_t[o, p] = sum_i wc[o, p, :, i] u_t[i] + bc[o, p, :]
 *     y_t[o]    = Re sum_p C_t[o, p] h_t[p]                           (stage "out")
 *
 * The per-event matrices B_t (P x H) and C_t (O x P) are formed in registers, never in memory:
 * wb and wc are S7's x_proj weight rows viewed as (P, H, 2, H) and (O, P, 2, H) (row index
 * (p*H + j)*2 + c and (o*P + p)*2 + c), bb and bc its bias entries. What is stored: v and h,
 * (B, L, P) complex each (h is the forward output the backward reads).
 *
 * The op runs three stages; the caller (the ops layer) sequences them and fills the event
 * scan's params from these for the middle one:
 *     forward:  in_fwd (u -> v), event scan (v -> h, h_last), out_fwd (u, h -> y)
 *     backward: out_bwd (dy, u, h -> gh, du, dwc, dbc), event scan backward (gh, grad_h_last ->
 *               dv, dLambda, ddelta, dh0), in_bwd (dv, u -> du +=, dwb, dbb)
 * Gradients of the real weights from a complex gradient g (PyTorch convention, dL/dRe + i dL/dIm):
 *     gC_t[o, p] = dy_t[o] conj(h_t[p]),  gh_t[p] = sum_o dy_t[o] conj(C_t[o, p])
 *     gB_t[p, j] = dv_t[p] u_t[j],        du_t[j] += sum_p Re(conj(dv_t[p]) B_t[p, j])
 *     dwc[o, p, c, i] = sum_t gC_t[o, p]_c u_t[i],   du_t[i] += sum_{o,p,c} wc[o, p, c, i] gC_t[o, p]_c
 *     dwb[p, j, c, i] = sum_t gB_t[p, j]_c u_t[i],   du_t[i] += sum_{p,j,c} wb[p, j, c, i] gB_t[p, j]_c
 * Weight gradients are sums over all B*L tokens, done without atomics in a fixed order, so
 * results are reproducible.
 *
 * Types: u, y, du in `dtype` (LRNN_F32, LRNN_BF16, LRNN_F16; LRNN_F64 on the CPU only); wb, bb,
 * wc, bc, dwb, dbb, dwc, dbc in the accumulation type (F32, or F64 with F64 u); v, h, gh, dv in
 * `state_dtype` (C64, or C128 with F64 u). Arithmetic is in float (double for F64).
 * Not here: allocation, threads, argument checking beyond NULL/size sanity. */
#ifndef LRNN_MIMO_SELECTIVE_SCAN_H
#define LRNN_MIMO_SELECTIVE_SCAN_H

#include "lrnn/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lrnn_mimo_params {
  /* token-indexed tensors, strides (batch, time, last) in elements */
  const void *u;      int64_t u_stride[3];        /* (B, L, H) dtype */
  void *v;            int64_t v_stride[3];        /* (B, L, P) state_dtype: in_fwd writes, in_bwd reads as dv */
  void *h;            int64_t h_stride[3];        /* (B, L, P) state_dtype: out_fwd reads h, out_bwd writes gh */
  void *y;            int64_t y_stride[3];        /* (B, L, O) dtype: out_fwd writes y, out_bwd reads dy */
  const void *hs;     int64_t hs_stride[3];       /* (B, L, P) state_dtype: the forward h, read by out_bwd */
  void *du;           int64_t du_stride[3];       /* (B, L, H) dtype: out_bwd writes, in_bwd adds */
  /* weights (accumulation type), strides in elements; bb / bc may be NULL (no bias) */
  const void *wb;     int64_t wb_stride[4];       /* (P, H, 2, H) */
  const void *bb;     int64_t bb_stride[3];       /* (P, H, 2) */
  const void *wc;     int64_t wc_stride[4];       /* (O, P, 2, H) */
  const void *bc;     int64_t bc_stride[3];       /* (O, P, 2) */
  /* weight gradients: one contiguous partial per token slice, reduced by lrnn_mimo_reduce */
  void *dw;           /* (slices, P*H*2*H) for in_bwd, (slices, O*P*2*H) for out_bwd */
  void *db;           /* (slices, P*H*2) / (slices, O*P*2), or NULL when the bias is NULL */
  int64_t batch, length, in_dim, state_dim, out_dim;   /* B, L, H, P, O */
  lrnn_dtype dtype, state_dtype;
} lrnn_mimo_params;

/* CPU stages over tokens [token_begin, token_end) of the B*L tokens. The backward stages write
 * their weight-gradient partial into slice `slice` of dw/db (overwriting it). */
lrnn_status lrnn_mimo_in_fwd_cpu(const lrnn_mimo_params *p, int64_t token_begin, int64_t token_end);
lrnn_status lrnn_mimo_out_fwd_cpu(const lrnn_mimo_params *p, int64_t token_begin, int64_t token_end);
lrnn_status lrnn_mimo_out_bwd_cpu(const lrnn_mimo_params *p, int64_t token_begin, int64_t token_end, int64_t slice);
lrnn_status lrnn_mimo_in_bwd_cpu(const lrnn_mimo_params *p, int64_t token_begin, int64_t token_end, int64_t slice);
/* Sum `slices` contiguous partials of `n` accumulation-type elements into out[0..n), slice 0 first. */
lrnn_status lrnn_mimo_reduce_cpu(void *out, const void *partials, int64_t slices, int64_t n, lrnn_dtype acc_dtype,
                                 int64_t begin, int64_t end);

/* CUDA: each stage over all tokens on `stream` (a cudaStream_t), asynchronously, using a device
 * workspace of the given size (the stage's weights re-laid out; NULL allowed when the size is 0);
 * the weight gradients come out reduced in dw[0..n) / db[0..n).
 * Supported on CUDA: F32, BF16, F16 with C64. Bitwise reproducible. */
int64_t lrnn_mimo_fwd_workspace_bytes_cuda(const lrnn_mimo_params *p, int stage_in);
int64_t lrnn_mimo_bwd_workspace_bytes_cuda(const lrnn_mimo_params *p, int stage_in);
lrnn_status lrnn_mimo_in_fwd_cuda(const lrnn_mimo_params *p, void *workspace, void *stream);
lrnn_status lrnn_mimo_out_fwd_cuda(const lrnn_mimo_params *p, void *workspace, void *stream);
lrnn_status lrnn_mimo_out_bwd_cuda(const lrnn_mimo_params *p, void *workspace, void *stream);
lrnn_status lrnn_mimo_in_bwd_cuda(const lrnn_mimo_params *p, void *workspace, void *stream);

#ifdef __cplusplus
}
#endif

#endif /* LRNN_MIMO_SELECTIVE_SCAN_H */
