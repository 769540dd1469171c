/* lrnn/selective_scan.h: the C API of the selective scan of S6 / Mamba-1 (and STREAM).
 *
 * Per batch b, channel d (of D) and state n (of N), over time t = 0..L-1:
 *
 *     dt[t]  = delta[t] + delta_bias[d],   then softplus(dt[t]) when delta_softplus
 *     dtA[t] = dt_A[t] when dt_A is given (STREAM's separate step for A), else dt[t]
 *     h[t,n] = exp(dtA[t] * A[d,n]) * h[t-1,n] + dt[t] * B[t,n] * u[t]      h[-1] = h0 (or 0)
 *     y[t]   = (sum_n C[t,n] * h[t,n] + D[d] * u[t]) * silu(z[t])            (silu only with z)
 *
 * Sequence tensors u, delta, z, dt_A, y are addressed as (batch, channel, time) with strides,
 * so mamba's (B, D, L) layout and a batch-first (B, L, D) tensor seen as a transposed view are
 * both read in place. B and C are either "variable", (batch, group, state, time) with G groups
 * (channel d uses group d / (D / G)), or time-invariant (channel, state), one per channel.
 *
 * Element types: sequence tensors and variable B/C share `dtype` (f32, f64, bf16, f16); the
 * "weights" A, D, delta_bias, time-invariant B/C, h0, h_last, the chunk states and every
 * weight gradient use `wdtype`: f32, or f64 when dtype is f64. The state is accumulated in
 * wdtype. N <= LRNN_SELECTIVE_SCAN_MAX_STATE.
 *
 * Saved for the backward: the forward writes `chunk_states` (batch, channel, chunk, state) in
 * wdtype, the state *before* each chunk of LRNN_SELECTIVE_SCAN_CHUNK time steps (chunk 0 holds
 * h0). The backward recomputes each chunk's states from it, so nothing of size B*D*L*N is ever
 * stored: the extra memory is N / CHUNK wdtype values per (b, d, t) (1/4 of a f32 sequence at
 * N = 16), the extra compute one exp per (b, d, t, n).
 *
 * Determinism: reductions over batch/channels (dA, dD, d(delta_bias), time-invariant dB/dC,
 * and variable dB/dC summed over the channels of a group) are written as per-row or per-part
 * partials into caller-provided workspaces and summed in a fixed order by the reduce kernel,
 * so results do not depend on how work was split across threads. */
#ifndef LRNN_SELECTIVE_SCAN_H
#define LRNN_SELECTIVE_SCAN_H

#include "lrnn/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LRNN_SELECTIVE_SCAN_CHUNK 64
#define LRNN_SELECTIVE_SCAN_MAX_STATE 256

typedef struct lrnn_selective_scan_params {
  /* outputs */
  void *y;                    /* (batch, channel, time) dtype */
  void *h_last;               /* (B, D, N) wdtype */
  void *chunk_states;         /* (B, D, n_chunks, N) wdtype, or NULL (no backward will follow) */
  /* inputs */
  const void *u, *delta;      /* (batch, channel, time) dtype */
  const void *A;              /* (D, N) wdtype */
  const void *Bm, *Cm;        /* variable: (B, G, N, L) dtype; time-invariant: (D, N) wdtype */
  const void *D;              /* (D,) wdtype or NULL */
  const void *z;              /* (batch, channel, time) dtype or NULL */
  const void *delta_bias;     /* (D,) wdtype or NULL */
  const void *h0;             /* (B, D, N) wdtype or NULL (zeros) */
  const void *dt_A;           /* (batch, channel, time) dtype or NULL (use dt) */
  int64_t batch, dim, length, dstate, groups;  /* B, D, L, N, G (G ignored when time-invariant) */
  int B_variable, C_variable;  /* nonzero: (B, G, N, L); zero: (D, N) */
  int delta_softplus;
  /* strides, in elements */
  int64_t u_stride[3], delta_stride[3], z_stride[3], dt_A_stride[3], y_stride[3];  /* (b, d, t) */
  int64_t B_stride[4], C_stride[4];   /* variable: (b, g, n, t); time-invariant: [0] = d, [1] = n */
  int64_t A_stride[2];                /* (d, n) */
  int64_t D_stride, delta_bias_stride;
  int64_t h0_stride[3], h_last_stride[3];  /* (b, d, n) */
  int64_t chunk_states_stride[4];          /* (b, d, chunk, n) */
  lrnn_dtype dtype, wdtype;
  /* CUDA only: 0 (the default) lets the launchers split long sequences over time when B*D is
   * small; > 0 forces time segments of about this many steps where chunk_states is available
   * (tests use it to reach the split paths at small sizes). The CPU kernels ignore it. */
  int64_t time_segment;
} lrnn_selective_scan_params;

/* Backward. `fwd` describes the forward's inputs exactly as they were given (its y / h_last
 * outputs are not read; chunk_states must be the forward's). Gradient outputs: */
typedef struct lrnn_selective_scan_bwd_params {
  lrnn_selective_scan_params fwd;
  const void *grad_y;                 /* (batch, channel, time) dtype */
  const void *grad_h_last;            /* (B, D, N) wdtype, or NULL */
  int64_t grad_y_stride[3], grad_h_last_stride[3];
  /* per-element gradients, written directly */
  void *du, *ddelta;                  /* (batch, channel, time) dtype */
  void *dz;                           /* (batch, channel, time) dtype; NULL when fwd.z is NULL */
  void *ddt_A;                        /* (batch, channel, time) dtype; NULL when fwd.dt_A is NULL */
  void *dh0;                          /* (B, D, N) wdtype */
  int64_t du_stride[3], ddelta_stride[3], dz_stride[3], ddt_A_stride[3], dh0_stride[3];
  /* workspaces (wdtype, contiguous, any initial content) written by the backward kernel: */
  void *dA_part;                      /* (B, D, N): per-row dA */
  void *dD_part, *ddelta_bias_part;   /* (B, D) */
  void *dB_part, *dC_part;            /* variable: (parts, B, G, N, L); time-invariant: (B, D, N) */
  int64_t parts;                      /* >= 1: channels of a group are split into `parts` ranges */
  /* reduced outputs (wdtype, contiguous) written by the reduce kernel: */
  void *dA;                           /* (D, N) */
  void *dD, *ddelta_bias;             /* (D,) */
  void *dB, *dC;                      /* variable: (B, G, N, L); time-invariant: (D, N) */
  /* CUDA time split (0 or 1: none; the CPU kernels need 1): segments =
   * lrnn_selective_scan_cuda_bwd_segments(&fwd). Then dA_part, dD_part, ddelta_bias_part and the
   * time-invariant dB_part / dC_part hold `segments` copies of their (B, ...) shape, segment-major
   * (each segment's rows), and seg_state is a (segments, B, D, 2, N) wdtype workspace. */
  int64_t segments;
  void *seg_state;
} lrnn_selective_scan_bwd_params;

/* Number of chunk states the forward writes for `length` steps: length / CHUNK + 1 (the last
 * one is the state before a possibly empty final chunk; the simple formula keeps symbolic shapes
 * in torch.compile free of max()). */
static inline int64_t lrnn_selective_scan_num_chunks(int64_t length) {
  return length / LRNN_SELECTIVE_SCAN_CHUNK + 1;
}

/* CPU forward: rows [row_begin, row_end) of the B*D rows (row = b*D + d). */
lrnn_status lrnn_selective_scan_fwd_cpu(const lrnn_selective_scan_params *p, int64_t row_begin, int64_t row_end);

/* CPU backward, phase 1: work items [item_begin, item_end) of lrnn_selective_scan_bwd_items(p)
 * = B * S * parts items. S = G segments when B or C is variable (group g = channels
 * [g*D/G, (g+1)*D/G)), else S = 1 (all D channels); each segment's channels are cut into `parts`
 * contiguous ranges of near-equal size, and item (b, s, part) owns those channels of batch b:
 * it writes only its rows of the outputs and workspaces, and its own (part, b, g) slice of the
 * variable dB/dC workspace. */
int64_t lrnn_selective_scan_bwd_items(const lrnn_selective_scan_bwd_params *p);
lrnn_status lrnn_selective_scan_bwd_cpu(const lrnn_selective_scan_bwd_params *p, int64_t item_begin,
                                        int64_t item_end);

/* CPU backward, phase 2: sums the partials, in a fixed order, into dA, dD, ddelta_bias, dB, dC.
 * Elements [begin, end) of lrnn_selective_scan_reduce_size(p) independent outputs. */
int64_t lrnn_selective_scan_reduce_size(const lrnn_selective_scan_bwd_params *p);
lrnn_status lrnn_selective_scan_reduce_cpu(const lrnn_selective_scan_bwd_params *p, int64_t begin, int64_t end);

/* CUDA launchers: the whole problem on `stream` (a cudaStream_t), asynchronously; the backward
 * runs both phases. dtype f32, bf16 or f16 (wdtype f32). */
lrnn_status lrnn_selective_scan_fwd_cuda(const lrnn_selective_scan_params *p, void *stream);
lrnn_status lrnn_selective_scan_bwd_cuda(const lrnn_selective_scan_bwd_params *p, void *stream);
/* The CUDA backward runs one block per work item and handles at most this many channels per
 * item: the caller picks parts >= ceil(channels per segment / this). */
int64_t lrnn_selective_scan_cuda_channels_per_block(int64_t dstate);
/* Nonzero when the CUDA backward adds variable dB/dC over channels with float atomics straight
 * into dB/dC (N > 32: per-block partials would need D/16 to D slices) — those two gradients are
 * then not bitwise reproducible, and dB_part/dC_part are not read (one slot suffices). */
int lrnn_selective_scan_cuda_atomic_bc(int64_t dstate);
/* Time segments of the CUDA backward for these forward params (1: no split; more when B*D is small
 * and L long, or when p->time_segment forces it): sizes the workspaces (see `segments`). */
int64_t lrnn_selective_scan_cuda_bwd_segments(const lrnn_selective_scan_params *p);

#ifdef __cplusplus
}
#endif

#endif /* LRNN_SELECTIVE_SCAN_H */
