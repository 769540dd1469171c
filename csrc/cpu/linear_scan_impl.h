/* linear_scan_impl.h: the CPU linear-scan kernels, written once and instantiated per element
 * type by linear_scan.c (a C "template": it is included once per type with these macros set):
 *
 *   SUFFIX               name suffix of the instantiation
 *   T_X, ACC_X           storage and arithmetic type of the state side (b, h, h0, grads)
 *   T_A, ACC_A           storage and arithmetic type of a (and da)
 *   LOAD_X, STORE_X, LOAD_A, STORE_A      storage <-> arithmetic conversions
 *   ZERO_X, ZERO_A       arithmetic zeros
 *   MUL_AX(a, x)         a * x            ADD_X(x, y), ADD_A(x, y)   sums
 *   CONJ_A(a)            conj(a)          DA_TERM(lam, h)  lam * conj(h), as the type of a
 *
 * Work is a slice of rows (row = b * D + d). Channels of one batch element are processed in
 * blocks of up to BLOCK rows with time in the outer loop: consecutive channels are adjacent in
 * memory for (B, L, D) tensors, and for (B, D, L) tensors each block row is one forward stream,
 * so both layouts read memory in order without a copy. */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SUFFIX)

#ifndef LRNN_SCAN_BLOCK
#define LRNN_SCAN_BLOCK 64
#endif

/* Time index of the s-th step taken. */
static inline int64_t FN(step_time)(int64_t s, int64_t length, int reverse) {
  return reverse ? length - 1 - s : s;
}

static void FN(scan_fwd)(const lrnn_linear_scan_params *p, int64_t b, int64_t d0, int64_t n) {
  const T_A *a = (const T_A *)p->a + b * p->a_stride[0] + d0 * p->a_stride[2];
  const T_X *x = (const T_X *)p->b + b * p->b_stride[0] + d0 * p->b_stride[2];
  T_X *h = (T_X *)p->h + b * p->h_stride[0] + d0 * p->h_stride[2];
  ACC_X state[LRNN_SCAN_BLOCK];
  for (int64_t j = 0; j < n; ++j) {
    state[j] = p->h0 ? LOAD_X(((const T_X *)p->h0)[b * p->h0_stride[0] + (d0 + j) * p->h0_stride[1]])
                     : ZERO_X;
  }
  for (int64_t s = 0; s < p->length; ++s) {
    const int64_t t = FN(step_time)(s, p->length, p->reverse);
    const T_A *at = a + t * p->a_stride[1];
    const T_X *xt = x + t * p->b_stride[1];
    T_X *ht = h + t * p->h_stride[1];
    for (int64_t j = 0; j < n; ++j) {
      /* h[t] = a[t] * h[t-1] + b[t] */
      state[j] = ADD_X(MUL_AX(LOAD_A(at[j * p->a_stride[2]]), state[j]), LOAD_X(xt[j * p->b_stride[2]]));
      ht[j * p->h_stride[2]] = STORE_X(state[j]);
    }
  }
  T_X *last = (T_X *)p->h_last + b * p->h_last_stride[0] + d0 * p->h_last_stride[1];
  for (int64_t j = 0; j < n; ++j) last[j * p->h_last_stride[1]] = STORE_X(state[j]);
}

static void FN(scan_bwd)(const lrnn_linear_scan_bwd_params *p, int64_t b, int64_t d0, int64_t n) {
  const T_A *a = (const T_A *)p->a + b * p->a_stride[0] + d0 * p->a_stride[2];
  const T_X *g = (const T_X *)p->grad_h + b * p->grad_h_stride[0] + d0 * p->grad_h_stride[2];
  const T_X *h = (const T_X *)p->h + b * p->h_stride[0] + d0 * p->h_stride[2];
  T_X *db = (T_X *)p->db + b * p->db_stride[0] + d0 * p->db_stride[2];
  ACC_X lam[LRNN_SCAN_BLOCK];   /* carried adjoint: conj(a[next]) * lam[next] */
  ACC_A da_sum[LRNN_SCAN_BLOCK];
  for (int64_t j = 0; j < n; ++j) {
    lam[j] = p->grad_h_last
                 ? LOAD_X(((const T_X *)p->grad_h_last)[b * p->grad_h_last_stride[0] +
                                                      (d0 + j) * p->grad_h_last_stride[1]])
                 : ZERO_X;
    da_sum[j] = ZERO_A;
  }
  for (int64_t s = p->length - 1; s >= 0; --s) {
    const int64_t t = FN(step_time)(s, p->length, p->reverse);
    const T_A *at = a + t * p->a_stride[1];
    const T_X *gt = g + t * p->grad_h_stride[1];
    T_X *dbt = db + t * p->db_stride[1];
    for (int64_t j = 0; j < n; ++j) {
      /* h[t-1]: the state before step s (h0 or zero before the first step) */
      ACC_X hprev = ZERO_X;
      if (s > 0) {
        hprev = LOAD_X(h[FN(step_time)(s - 1, p->length, p->reverse) * p->h_stride[1] + j * p->h_stride[2]]);
      } else if (p->h0) {
        hprev = LOAD_X(((const T_X *)p->h0)[b * p->h0_stride[0] + (d0 + j) * p->h0_stride[1]]);
      }
      /* lam[t] = grad_h[t] + conj(a[t+1]) * lam[t+1];  db[t] = lam[t] */
      const ACC_X lam_t = ADD_X(LOAD_X(gt[j * p->grad_h_stride[2]]), lam[j]);
      dbt[j * p->db_stride[2]] = STORE_X(lam_t);
      /* da[t] = lam[t] * conj(h[t-1]) */
      const ACC_A da_t = DA_TERM(lam_t, hprev);
      if (p->da_sum_time) {
        da_sum[j] = ADD_A(da_sum[j], da_t);
      } else {
        ((T_A *)p->da)[b * p->da_stride[0] + t * p->da_stride[1] + (d0 + j) * p->da_stride[2]] = STORE_A(da_t);
      }
      lam[j] = MUL_AX(CONJ_A(LOAD_A(at[j * p->a_stride[2]])), lam_t);
    }
  }
  /* dh0 = conj(a[first]) * lam[first]: exactly what the loop carries out */
  T_X *dh0 = (T_X *)p->dh0 + b * p->dh0_stride[0] + d0 * p->dh0_stride[1];
  for (int64_t j = 0; j < n; ++j) dh0[j * p->dh0_stride[1]] = STORE_X(lam[j]);
  if (p->da_sum_time) {
    ACC_A *da = (ACC_A *)p->da + b * p->da_stride[0] + d0 * p->da_stride[2];
    for (int64_t j = 0; j < n; ++j) da[j * p->da_stride[2]] = da_sum[j];
  }
}

/* Split rows [row_begin, row_end) into blocks of channels of one batch element. */
static void FN(scan_fwd_rows)(const lrnn_linear_scan_params *p, int64_t row_begin, int64_t row_end) {
  for (int64_t row = row_begin; row < row_end;) {
    const int64_t b = row / p->dim, d = row % p->dim;
    int64_t n = p->dim - d;
    if (n > row_end - row) n = row_end - row;
    if (n > LRNN_SCAN_BLOCK) n = LRNN_SCAN_BLOCK;
    FN(scan_fwd)(p, b, d, n);
    row += n;
  }
}

static void FN(scan_bwd_rows)(const lrnn_linear_scan_bwd_params *p, int64_t row_begin, int64_t row_end) {
  for (int64_t row = row_begin; row < row_end;) {
    const int64_t b = row / p->dim, d = row % p->dim;
    int64_t n = p->dim - d;
    if (n > row_end - row) n = row_end - row;
    if (n > LRNN_SCAN_BLOCK) n = LRNN_SCAN_BLOCK;
    FN(scan_bwd)(p, b, d, n);
    row += n;
  }
}

#undef FN
#undef CAT
#undef CAT_
