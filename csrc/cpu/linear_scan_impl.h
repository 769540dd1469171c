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
 * blocks with time in the outer loop and channels in the inner loop: for (B, L, D) tensors the
 * inner loop is unit-stride (and is compiled separately with constant unit strides so that it
 * vectorizes); for (B, D, L) tensors a block of 8 channels is 8 forward streams, few enough for
 * the caches and prefetchers to follow, and 8 independent recurrences keep the core busy. */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SUFFIX)

/* Time index of the s-th step taken. */
static inline int64_t FN(step_time)(int64_t s, int64_t length, int reverse) {
  return reverse ? length - 1 - s : s;
}

/* One forward step over n channels: state = a * state + x;  h = state. */
static inline void FN(fwd_step)(ACC_X *LRNN_RESTRICT state, const T_A *LRNN_RESTRICT a, int64_t sa,
                                const T_X *LRNN_RESTRICT x, int64_t sx, T_X *LRNN_RESTRICT h, int64_t sh,
                                int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    state[j] = ADD_X(MUL_AX(LOAD_A(a[j * sa]), state[j]), LOAD_X(x[j * sx]));
    h[j * sh] = STORE_X(state[j]);
  }
}

/* One backward step over n channels, with lam carrying conj(a[next]) * lam[next]:
 *   lam[t] = g[t] + conj(a[t+1]) * lam[t+1];  db[t] = lam[t];  da[t] = lam[t] * conj(h[t-1]).
 * With sum_time, da[t] is added to da_sum instead of stored. */
static inline void FN(bwd_step)(ACC_X *LRNN_RESTRICT lam, ACC_A *LRNN_RESTRICT da_sum, int sum_time,
                                const T_A *LRNN_RESTRICT a, int64_t sa, const T_X *LRNN_RESTRICT g, int64_t sg,
                                const T_X *LRNN_RESTRICT hprev, int64_t shp, T_X *LRNN_RESTRICT db, int64_t sdb,
                                T_A *LRNN_RESTRICT da, int64_t sda, int64_t n) {
  if (sum_time) {
    for (int64_t j = 0; j < n; ++j) {
      const ACC_X lam_t = ADD_X(LOAD_X(g[j * sg]), lam[j]);
      db[j * sdb] = STORE_X(lam_t);
      da_sum[j] = ADD_A(da_sum[j], DA_TERM(lam_t, LOAD_X(hprev[j * shp])));
      lam[j] = MUL_AX(CONJ_A(LOAD_A(a[j * sa])), lam_t);
    }
  } else {
    for (int64_t j = 0; j < n; ++j) {
      const ACC_X lam_t = ADD_X(LOAD_X(g[j * sg]), lam[j]);
      db[j * sdb] = STORE_X(lam_t);
      da[j * sda] = STORE_A(DA_TERM(lam_t, LOAD_X(hprev[j * shp])));
      lam[j] = MUL_AX(CONJ_A(LOAD_A(a[j * sa])), lam_t);
    }
  }
}

static void FN(scan_fwd)(const lrnn_linear_scan_params *p, int64_t b, int64_t d0, int64_t n) {
  const T_A *a = (const T_A *)p->a + b * p->a_stride[0] + d0 * p->a_stride[2];
  const T_X *x = (const T_X *)p->b + b * p->b_stride[0] + d0 * p->b_stride[2];
  T_X *h = (T_X *)p->h + b * p->h_stride[0] + d0 * p->h_stride[2];
  const int64_t sa = p->a_stride[2], sx = p->b_stride[2], sh = p->h_stride[2];
  const int unit = sa == 1 && sx == 1 && sh == 1;
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
    if (unit) FN(fwd_step)(state, at, 1, xt, 1, ht, 1, n);
    else FN(fwd_step)(state, at, sa, xt, sx, ht, sh, n);
  }
  T_X *last = (T_X *)p->h_last + b * p->h_last_stride[0] + d0 * p->h_last_stride[1];
  for (int64_t j = 0; j < n; ++j) last[j * p->h_last_stride[1]] = STORE_X(state[j]);
}

static void FN(scan_bwd)(const lrnn_linear_scan_bwd_params *p, int64_t b, int64_t d0, int64_t n) {
  static const T_X zeros[LRNN_SCAN_BLOCK]; /* h[-1] when there is no h0 */
  const T_A *a = (const T_A *)p->a + b * p->a_stride[0] + d0 * p->a_stride[2];
  const T_X *g = (const T_X *)p->grad_h + b * p->grad_h_stride[0] + d0 * p->grad_h_stride[2];
  const T_X *h = (const T_X *)p->h + b * p->h_stride[0] + d0 * p->h_stride[2];
  T_X *db = (T_X *)p->db + b * p->db_stride[0] + d0 * p->db_stride[2];
  T_A *da = p->da_sum_time ? NULL : (T_A *)p->da + b * p->da_stride[0] + d0 * p->da_stride[2];
  const int64_t sa = p->a_stride[2], sg = p->grad_h_stride[2], sh = p->h_stride[2], sdb = p->db_stride[2],
                sda = p->da_stride[2];
  const int unit = sa == 1 && sg == 1 && sh == 1 && sdb == 1 && (p->da_sum_time || sda == 1);
  ACC_X lam[LRNN_SCAN_BLOCK];
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
    /* h[t-1]: the state before step s — h0 (or zero) before the first step */
    const T_X *hprev = zeros;
    int64_t shp = 1;
    if (s > 0) {
      hprev = h + FN(step_time)(s - 1, p->length, p->reverse) * p->h_stride[1];
      shp = sh;
    } else if (p->h0) {
      hprev = (const T_X *)p->h0 + b * p->h0_stride[0] + d0 * p->h0_stride[1];
      shp = p->h0_stride[1];
    }
    T_A *dat = da ? da + t * p->da_stride[1] : NULL;
    if (unit && shp == 1)
      FN(bwd_step)(lam, da_sum, p->da_sum_time, at, 1, g + t * p->grad_h_stride[1], 1, hprev, 1,
                   db + t * p->db_stride[1], 1, dat, 1, n);
    else
      FN(bwd_step)(lam, da_sum, p->da_sum_time, at, sa, g + t * p->grad_h_stride[1], sg, hprev, shp,
                   db + t * p->db_stride[1], sdb, dat, sda, n);
  }
  /* dh0 = conj(a[first]) * lam[first]: exactly what the loop carries out */
  T_X *dh0 = (T_X *)p->dh0 + b * p->dh0_stride[0] + d0 * p->dh0_stride[1];
  for (int64_t j = 0; j < n; ++j) dh0[j * p->dh0_stride[1]] = STORE_X(lam[j]);
  if (p->da_sum_time) {
    ACC_A *das = (ACC_A *)p->da + b * p->da_stride[0] + d0 * p->da_stride[2];
    for (int64_t j = 0; j < n; ++j) das[j * p->da_stride[2]] = da_sum[j];
  }
}

/* Split rows [row_begin, row_end) into blocks of channels of one batch element: wide blocks when
 * channels are adjacent in memory, 8 channels (8 memory streams per tensor) otherwise. */
static int64_t FN(block_len)(int64_t row, int64_t row_end, int64_t dim, int unit_channels) {
  int64_t n = dim - row % dim;
  if (n > row_end - row) n = row_end - row;
  const int64_t cap = unit_channels ? LRNN_SCAN_BLOCK : 8;
  return n > cap ? cap : n;
}

static void FN(scan_fwd_rows)(const lrnn_linear_scan_params *p, int64_t row_begin, int64_t row_end) {
  const int unit = p->b_stride[2] == 1 && p->h_stride[2] == 1;
  for (int64_t row = row_begin; row < row_end;) {
    const int64_t n = FN(block_len)(row, row_end, p->dim, unit);
    FN(scan_fwd)(p, row / p->dim, row % p->dim, n);
    row += n;
  }
}

static void FN(scan_bwd_rows)(const lrnn_linear_scan_bwd_params *p, int64_t row_begin, int64_t row_end) {
  const int unit = p->grad_h_stride[2] == 1 && p->h_stride[2] == 1;
  for (int64_t row = row_begin; row < row_end;) {
    const int64_t n = FN(block_len)(row, row_end, p->dim, unit);
    FN(scan_bwd)(p, row / p->dim, row % p->dim, n);
    row += n;
  }
}

#undef FN
#undef CAT
#undef CAT_
