/* selective_scan_impl.h: the CPU selective-scan kernels (lrnn/selective_scan.h), written once
 * and instantiated per element type by selective_scan.c (a C "template" included once per type):
 *
 *   SUFFIX        name suffix of the instantiation
 *   T             storage type of the sequence tensors and variable B/C
 *   W             weight / state / accumulation type (float, or double for f64)
 *   LOAD(v)       T -> W            STORE(v)   W -> T
 *   EXPW, LOG1PW  exp and log1p in W
 *
 * Layout of the work: channels are processed in blocks of up to RB rows that share one batch
 * element and one B/C group, with time chunks of LRNN_SELECTIVE_SCAN_CHUNK steps as the outer
 * loop, so a variable B/C chunk is converted to W once per block and then read from a small
 * (chunk, state) buffer that stays in L1/L2 while every row of the block scans it. The state of
 * a row (N values) lives in a local array; nothing of size L*N is stored. */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SUFFIX)

#define SS_K LRNN_SELECTIVE_SCAN_CHUNK
#define SS_N LRNN_SELECTIVE_SCAN_MAX_STATE
#ifndef SS_RB
#define SS_RB 8
#endif

static inline W FN(softplus)(W x) { return x <= (W)20 ? LOG1PW(EXPW(x)) : x; }
static inline W FN(sigmoid)(W x) { return (W)1 / ((W)1 + EXPW(-x)); }

/* sum_n x[n] * y[n] with 8 interleaved partial sums: a fixed order (deterministic) that the
 * compiler can vectorize, unlike one serial accumulator. */
static inline W FN(dot)(const W *x, const W *y, int64_t N) {
  W part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t n = 0;
  for (; n + 8 <= N; n += 8)
    for (int j = 0; j < 8; ++j) part[j] += x[n + j] * y[n + j];
  for (int j = 0; n < N; ++n, ++j) part[j] += x[n] * y[n];
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

/* Variable B or C over [t0, t0 + T) for group g of batch b, as buf[t * SS_N + n]. */
static void FN(load_bc)(const T *M, const int64_t *st, int64_t b, int64_t g, int64_t N, int64_t t0, int64_t T_,
                        W *buf) {
  for (int64_t n = 0; n < N; ++n) {
    const T *src = M + b * st[0] + g * st[1] + n * st[2] + t0 * st[3];
    for (int64_t t = 0; t < T_; ++t) buf[t * SS_N + n] = LOAD(src[t * st[3]]);
  }
}

/* Per-step values of one row shared by the forward and the backward: dt (after bias and
 * softplus), the step for A, u, and the pre-softplus dt (for the softplus derivative). */
typedef struct FN(step_vals) { W dt, dta, u, raw; } FN(step_vals);

static inline FN(step_vals) FN(step)(const lrnn_selective_scan_params *p, int64_t b, int64_t d, int64_t t, W bias) {
  FN(step_vals) s;
  s.u = LOAD(((const T *)p->u)[b * p->u_stride[0] + d * p->u_stride[1] + t * p->u_stride[2]]);
  s.raw = LOAD(((const T *)p->delta)[b * p->delta_stride[0] + d * p->delta_stride[1] + t * p->delta_stride[2]]) + bias;
  s.dt = p->delta_softplus ? FN(softplus)(s.raw) : s.raw;
  s.dta = p->dt_A ? LOAD(((const T *)p->dt_A)[b * p->dt_A_stride[0] + d * p->dt_A_stride[1] + t * p->dt_A_stride[2]])
                  : s.dt;
  return s;
}

/* The row's constants: A, time-invariant B/C (when not variable), D and delta_bias. */
static void FN(row_consts)(const lrnn_selective_scan_params *p, int64_t d, W *A, W *Bti, W *Cti, W *Dd, W *bias) {
  const int64_t N = p->dstate;
  for (int64_t n = 0; n < N; ++n) {
    A[n] = ((const W *)p->A)[d * p->A_stride[0] + n * p->A_stride[1]];
    if (!p->B_variable) Bti[n] = ((const W *)p->Bm)[d * p->B_stride[0] + n * p->B_stride[1]];
    if (!p->C_variable) Cti[n] = ((const W *)p->Cm)[d * p->C_stride[0] + n * p->C_stride[1]];
  }
  *Dd = p->D ? ((const W *)p->D)[d * p->D_stride] : (W)0;
  *bias = p->delta_bias ? ((const W *)p->delta_bias)[d * p->delta_bias_stride] : (W)0;
}

static void FN(fwd_block)(const lrnn_selective_scan_params *p, int64_t b, int64_t g, int64_t d0, int64_t nr) {
  const int64_t N = p->dstate, L = p->length;
  W h[SS_RB][SS_N], A[SS_RB][SS_N], Bti[SS_RB][SS_N], Cti[SS_RB][SS_N], Dd[SS_RB], bias[SS_RB];
  W Bc[SS_K * SS_N], Cc[SS_K * SS_N];
  for (int64_t r = 0; r < nr; ++r) {
    FN(row_consts)(p, d0 + r, A[r], Bti[r], Cti[r], &Dd[r], &bias[r]);
    for (int64_t n = 0; n < N; ++n)
      h[r][n] = p->h0 ? ((const W *)p->h0)[b * p->h0_stride[0] + (d0 + r) * p->h0_stride[1] + n * p->h0_stride[2]]
                      : (W)0;
  }
  const int64_t nchunks = lrnn_selective_scan_num_chunks(L);
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t t0 = c * SS_K, T_ = (L - t0 < SS_K) ? L - t0 : SS_K;
    if (p->chunk_states) {
      for (int64_t r = 0; r < nr; ++r) {
        W *cs = (W *)p->chunk_states + b * p->chunk_states_stride[0] + (d0 + r) * p->chunk_states_stride[1] +
                c * p->chunk_states_stride[2];
        for (int64_t n = 0; n < N; ++n) cs[n * p->chunk_states_stride[3]] = h[r][n];
      }
    }
    if (T_ <= 0) break;
    if (p->B_variable) FN(load_bc)((const T *)p->Bm, p->B_stride, b, g, N, t0, T_, Bc);
    if (p->C_variable) FN(load_bc)((const T *)p->Cm, p->C_stride, b, g, N, t0, T_, Cc);
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t d = d0 + r;
      W *hr = h[r];
      const W *Ar = A[r];
      for (int64_t t = 0; t < T_; ++t) {
        const FN(step_vals) s = FN(step)(p, b, d, t0 + t, bias[r]);
        const W dbu = s.dt * s.u;
        const W *Bt = p->B_variable ? Bc + t * SS_N : Bti[r];
        const W *Ct = p->C_variable ? Cc + t * SS_N : Cti[r];
        for (int64_t n = 0; n < N; ++n) hr[n] = EXPW(s.dta * Ar[n]) * hr[n] + dbu * Bt[n];
        W y = FN(dot)(Ct, hr, N) + Dd[r] * s.u;
        if (p->z) {
          const W z = LOAD(((const T *)p->z)[b * p->z_stride[0] + d * p->z_stride[1] + (t0 + t) * p->z_stride[2]]);
          y *= z * FN(sigmoid)(z);
        }
        ((T *)p->y)[b * p->y_stride[0] + d * p->y_stride[1] + (t0 + t) * p->y_stride[2]] = STORE(y);
      }
    }
  }
  for (int64_t r = 0; r < nr; ++r)
    for (int64_t n = 0; n < N; ++n)
      ((W *)p->h_last)[b * p->h_last_stride[0] + (d0 + r) * p->h_last_stride[1] + n * p->h_last_stride[2]] = h[r][n];
}

/* Channels [d0, d1) of batch b share one group: split into blocks of SS_RB. */
static void FN(fwd_rows)(const lrnn_selective_scan_params *p, int64_t row_begin, int64_t row_end) {
  const int64_t D = p->dim, G = (p->B_variable || p->C_variable) ? p->groups : 1, per_group = D / G;
  for (int64_t row = row_begin; row < row_end;) {
    const int64_t b = row / D, d = row % D, g = d / per_group;
    int64_t n = (g + 1) * per_group - d;
    if (n > row_end - row) n = row_end - row;
    if (n > SS_RB) n = SS_RB;
    FN(fwd_block)(p, b, g, d, n);
    row += n;
  }
}

/* Backward of rows [d0, d0 + nr) of batch b (one group g). Variable dB/dC are added into this
 * item's workspace slice (zeroed by the caller); everything else is written per row. */
static void FN(bwd_block)(const lrnn_selective_scan_bwd_params *q, int64_t b, int64_t g, int64_t part, int64_t d0,
                          int64_t nr) {
  const lrnn_selective_scan_params *p = &q->fwd;
  const int64_t N = p->dstate, L = p->length, D = p->dim, G = p->groups;
  W lam[SS_RB][SS_N], A[SS_RB][SS_N], Bti[SS_RB][SS_N], Cti[SS_RB][SS_N], Dd[SS_RB], bias[SS_RB];
  W dA[SS_RB][SS_N], dBti[SS_RB][SS_N], dCti[SS_RB][SS_N], dDs[SS_RB], dbs[SS_RB];
  W Bc[SS_K * SS_N], Cc[SS_K * SS_N], dBc[SS_K * SS_N], dCc[SS_K * SS_N], hs[SS_K * SS_N], hstart[SS_N];
  W lv[SS_N], lah[SS_N];  /* lam[t] and lam[t] * exp(dtA A) h[t-1] of the current step */
  FN(step_vals) sv[SS_K];
  W yo[SS_K];
  for (int64_t r = 0; r < nr; ++r) {
    FN(row_consts)(p, d0 + r, A[r], Bti[r], Cti[r], &Dd[r], &bias[r]);
    for (int64_t n = 0; n < N; ++n) {
      lam[r][n] = q->grad_h_last ? ((const W *)q->grad_h_last)[b * q->grad_h_last_stride[0] +
                                                              (d0 + r) * q->grad_h_last_stride[1] +
                                                              n * q->grad_h_last_stride[2]]
                                 : (W)0;
      dA[r][n] = dBti[r][n] = dCti[r][n] = 0;
    }
    dDs[r] = dbs[r] = 0;
  }
  const int64_t nchunks = lrnn_selective_scan_num_chunks(L);
  for (int64_t c = nchunks - 1; c >= 0 && L > 0; --c) {
    const int64_t t0 = c * SS_K, T_ = (L - t0 < SS_K) ? L - t0 : SS_K;
    if (T_ <= 0) continue;
    if (p->B_variable) {
      FN(load_bc)((const T *)p->Bm, p->B_stride, b, g, N, t0, T_, Bc);
      for (int64_t i = 0; i < T_ * SS_N; ++i) dBc[i] = 0;
    }
    if (p->C_variable) {
      FN(load_bc)((const T *)p->Cm, p->C_stride, b, g, N, t0, T_, Cc);
      for (int64_t i = 0; i < T_ * SS_N; ++i) dCc[i] = 0;
    }
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t d = d0 + r;
      const W *Ar = A[r];
      /* recompute the chunk's states from the saved state before it */
      const W *cs = (const W *)p->chunk_states + b * p->chunk_states_stride[0] + d * p->chunk_states_stride[1] +
                    c * p->chunk_states_stride[2];
      for (int64_t n = 0; n < N; ++n) hstart[n] = cs[n * p->chunk_states_stride[3]];
      for (int64_t t = 0; t < T_; ++t) {
        sv[t] = FN(step)(p, b, d, t0 + t, bias[r]);
        const W dbu = sv[t].dt * sv[t].u;
        const W *Bt = p->B_variable ? Bc + t * SS_N : Bti[r];
        const W *Ct = p->C_variable ? Cc + t * SS_N : Cti[r];
        const W *hp = t ? hs + (t - 1) * SS_N : hstart;
        W *ht = hs + t * SS_N;
        for (int64_t n = 0; n < N; ++n) ht[n] = EXPW(sv[t].dta * Ar[n]) * hp[n] + dbu * Bt[n];
        yo[t] = FN(dot)(Ct, ht, N) + Dd[r] * sv[t].u;
      }
      /* reverse: lam[t] = gyo[t] C[t] + exp(dtA[t+1] A) lam[t+1] */
      W *lr = lam[r];
      for (int64_t t = T_ - 1; t >= 0; --t) {
        const int64_t tt = t0 + t;
        const FN(step_vals) s = sv[t];
        W gyo = LOAD(((const T *)q->grad_y)[b * q->grad_y_stride[0] + d * q->grad_y_stride[1] + tt * q->grad_y_stride[2]]);
        if (p->z) {
          const W z = LOAD(((const T *)p->z)[b * p->z_stride[0] + d * p->z_stride[1] + tt * p->z_stride[2]]);
          const W sz = FN(sigmoid)(z);
          ((T *)q->dz)[b * q->dz_stride[0] + d * q->dz_stride[1] + tt * q->dz_stride[2]] =
              STORE(gyo * yo[t] * sz * ((W)1 + z * ((W)1 - sz)));
          gyo *= z * sz;
        }
        dDs[r] += gyo * s.u;
        const W *Bt = p->B_variable ? Bc + t * SS_N : Bti[r];
        const W *Ct = p->C_variable ? Cc + t * SS_N : Cti[r];
        W *dBt = p->B_variable ? dBc + t * SS_N : dBti[r];
        W *dCt = p->C_variable ? dCc + t * SS_N : dCti[r];
        const W *ht = hs + t * SS_N;
        const W *hp = t ? hs + (t - 1) * SS_N : hstart;
        const W dbu = s.dt * s.u;
        W *dAr = dA[r];
        for (int64_t n = 0; n < N; ++n) {
          const W a = EXPW(s.dta * Ar[n]);
          const W l = gyo * Ct[n] + lr[n];
          const W ah = a * hp[n];
          dCt[n] += gyo * ht[n];
          dBt[n] += l * dbu;
          lv[n] = l;
          lah[n] = l * ah;
          dAr[n] += l * s.dta * ah;
          lr[n] = a * l;
        }
        const W sB = FN(dot)(lv, Bt, N), sA = FN(dot)(lah, Ar, N);
        ((T *)q->du)[b * q->du_stride[0] + d * q->du_stride[1] + tt * q->du_stride[2]] = STORE(gyo * Dd[r] + s.dt * sB);
        W ddt = s.u * sB;
        if (p->dt_A) {
          ((T *)q->ddt_A)[b * q->ddt_A_stride[0] + d * q->ddt_A_stride[1] + tt * q->ddt_A_stride[2]] = STORE(sA);
        } else {
          ddt += sA;
        }
        if (p->delta_softplus && s.raw <= (W)20) ddt *= FN(sigmoid)(s.raw);
        ((T *)q->ddelta)[b * q->ddelta_stride[0] + d * q->ddelta_stride[1] + tt * q->ddelta_stride[2]] = STORE(ddt);
        dbs[r] += ddt;
      }
    }
    /* add this block's variable dB/dC for the chunk into the item's workspace slice */
    const int64_t slice = ((part * p->batch + b) * G + g) * N * L;
    if (p->B_variable) {
      W *ws = (W *)q->dB_part + slice;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t t = 0; t < T_; ++t) ws[n * L + t0 + t] += dBc[t * SS_N + n];
    }
    if (p->C_variable) {
      W *ws = (W *)q->dC_part + slice;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t t = 0; t < T_; ++t) ws[n * L + t0 + t] += dCc[t * SS_N + n];
    }
  }
  for (int64_t r = 0; r < nr; ++r) {
    const int64_t d = d0 + r, row = b * D + d;
    for (int64_t n = 0; n < N; ++n) {
      ((W *)q->dh0)[b * q->dh0_stride[0] + d * q->dh0_stride[1] + n * q->dh0_stride[2]] = lam[r][n];
      ((W *)q->dA_part)[row * N + n] = dA[r][n];
      if (!p->B_variable) ((W *)q->dB_part)[row * N + n] = dBti[r][n];
      if (!p->C_variable) ((W *)q->dC_part)[row * N + n] = dCti[r][n];
    }
    ((W *)q->dD_part)[row] = dDs[r];
    ((W *)q->ddelta_bias_part)[row] = dbs[r];
  }
}

static void FN(bwd_items)(const lrnn_selective_scan_bwd_params *q, int64_t item_begin, int64_t item_end) {
  const lrnn_selective_scan_params *p = &q->fwd;
  const int64_t N = p->dstate, L = p->length;
  const int64_t S = (p->B_variable || p->C_variable) ? p->groups : 1;
  const int64_t seg_len = p->dim / S, parts = q->parts;
  for (int64_t item = item_begin; item < item_end; ++item) {
    const int64_t b = item / (S * parts), s = (item / parts) % S, part = item % parts;
    const int64_t d_lo = s * seg_len + part * seg_len / parts, d_hi = s * seg_len + (part + 1) * seg_len / parts;
    /* the group of the item's channels (all of them when nothing is variable: g unused) */
    const int64_t g = (p->B_variable || p->C_variable) ? s : 0;
    const int64_t slice = ((part * p->batch + b) * p->groups + g) * N * L;
    if (p->B_variable)
      for (int64_t i = 0; i < N * L; ++i) ((W *)q->dB_part)[slice + i] = 0;
    if (p->C_variable)
      for (int64_t i = 0; i < N * L; ++i) ((W *)q->dC_part)[slice + i] = 0;
    for (int64_t d = d_lo; d < d_hi;) {
      int64_t nr = d_hi - d;
      if (nr > SS_RB) nr = SS_RB;
      FN(bwd_block)(q, b, g, part, d, nr);
      d += nr;
    }
  }
}

#undef FN
#undef CAT
#undef CAT_
