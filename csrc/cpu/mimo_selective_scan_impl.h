/* mimo_selective_scan_impl.h: the CPU stages "in" and "out" of S7's MIMO selective scan
 * (lrnn/mimo_selective_scan.h), written once and instantiated per input type by
 * mimo_selective_scan.c — a C "template" included once per type with these macros set:
 *
 *   SUFFIX      name suffix of the instantiation
 *   T           storage type of u, y, du;  LOAD_T(x) converts it to ACC, STORE_T(x) back
 *   ACC         arithmetic / weight type (float, or double for float64 u)
 *   CX          complex struct with fields re, im of type ACC (v, h, gh, dv)
 *
 * A call owns the tokens [begin, end) (token k = b * L + t). The per-token matrices B_t and
 * C_t are never stored: every entry is a dot product of a weight row with u_t, recomputed where
 * it is needed. Gradient sums over tokens go into the call's own contiguous slice of dw / db,
 * so concurrent calls on disjoint token ranges and slices never write the same memory.
 * u, dy and du are read through LOAD_T in the inner loops instead of being staged in a
 * buffer: the kernels must not allocate, and H has no upper bound. du is stored once per
 * element and stage (its partial sums live in a small local tile), so a bf16 du is rounded
 * once by out_bwd and once by in_bwd. */

#define MCAT_(a, b) a##b
#define MCAT(a, b) MCAT_(a, b)
#define MFN(name) MCAT(name, SUFFIX)

/* Outputs of du computed together, as local accumulators (the q-tile of in_bwd / out_bwd). */
#ifndef LRNN_MIMO_TILE
#define LRNN_MIMO_TILE 32
#endif

/* Re + i Im of sum_i w[(c = 0, 1), i] u[i] + bias: one entry of B_t or C_t. w points at the
 * c = 0 row; bias (stride bs per component) may be NULL. */
static inline CX MFN(mimo_entry)(const ACC *w, int64_t wc_stride, int64_t wi_stride, const ACC *bias,
                                 int64_t bs, const T *u, int64_t us, int64_t H) {
  ACC re = 0, im = 0;
  const ACC *w1 = w + wc_stride;
  for (int64_t i = 0; i < H; ++i) {
    const ACC ui = LOAD_T(u[i * us]);
    re += w[i * wi_stride] * ui;
    im += w1[i * wi_stride] * ui;
  }
  if (bias) {
    re += bias[0];
    im += bias[bs];
  }
  CX r;
  r.re = re;
  r.im = im;
  return r;
}

/* v_t[p] = sum_j B_t[p, j] u_t[j] */
static void MFN(mimo_in_fwd)(const lrnn_mimo_params *p, int64_t begin, int64_t end) {
  const int64_t L = p->length, H = p->in_dim, P = p->state_dim;
  const T *ub = (const T *)p->u;
  const ACC *wb = (const ACC *)p->wb, *bb = (const ACC *)p->bb;
  CX *vb = (CX *)p->v;
  for (int64_t k = begin; k < end; ++k) {
    const int64_t b = k / L, t = k % L;
    const T *u = ub + b * p->u_stride[0] + t * p->u_stride[1];
    CX *v = vb + b * p->v_stride[0] + t * p->v_stride[1];
    for (int64_t s = 0; s < P; ++s) {
      ACC re = 0, im = 0;
      for (int64_t j = 0; j < H; ++j) {
        const CX e = MFN(mimo_entry)(wb + s * p->wb_stride[0] + j * p->wb_stride[1], p->wb_stride[2],
                                     p->wb_stride[3], bb ? bb + s * p->bb_stride[0] + j * p->bb_stride[1] : NULL,
                                     p->bb_stride[2], u, p->u_stride[2], H);
        const ACC uj = LOAD_T(u[j * p->u_stride[2]]);
        re += e.re * uj;
        im += e.im * uj;
      }
      v[s * p->v_stride[2]].re = re;
      v[s * p->v_stride[2]].im = im;
    }
  }
}

/* y_t[o] = Re sum_p C_t[o, p] h_t[p] */
static void MFN(mimo_out_fwd)(const lrnn_mimo_params *p, int64_t begin, int64_t end) {
  const int64_t L = p->length, H = p->in_dim, P = p->state_dim, O = p->out_dim;
  const T *ub = (const T *)p->u;
  const ACC *wc = (const ACC *)p->wc, *bc = (const ACC *)p->bc;
  const CX *hb = (const CX *)p->h;
  T *yb = (T *)p->y;
  for (int64_t k = begin; k < end; ++k) {
    const int64_t b = k / L, t = k % L;
    const T *u = ub + b * p->u_stride[0] + t * p->u_stride[1];
    const CX *h = hb + b * p->h_stride[0] + t * p->h_stride[1];
    T *y = yb + b * p->y_stride[0] + t * p->y_stride[1];
    for (int64_t o = 0; o < O; ++o) {
      ACC acc = 0;
      for (int64_t s = 0; s < P; ++s) {
        const CX c = MFN(mimo_entry)(wc + o * p->wc_stride[0] + s * p->wc_stride[1], p->wc_stride[2],
                                     p->wc_stride[3], bc ? bc + o * p->bc_stride[0] + s * p->bc_stride[1] : NULL,
                                     p->bc_stride[2], u, p->u_stride[2], H);
        const CX hs = h[s * p->h_stride[2]];
        acc += c.re * hs.re - c.im * hs.im;
      }
      y[o * p->y_stride[2]] = STORE_T(acc);
    }
  }
}

/* One output entry's weight-gradient rows, (re, im): row[i] += gre * u[i], row[H + i] += gim * u[i],
 * and its bias-gradient pair when db is given. */
static void MFN(mimo_grad_rows)(ACC *row, ACC *db, ACC gre, ACC gim, const T *u, int64_t u_stride, int64_t H) {
  for (int64_t i = 0; i < H; ++i) {
    const ACC ui = LOAD_T(u[i * u_stride]);
    row[i] += gre * ui;
    row[H + i] += gim * ui;
  }
  if (db) {
    db[0] += gre;
    db[1] += gim;
  }
}

/* The backward stages' weight- and bias-gradient partials of `slice` (nw and nb entries), zeroed;
 * *db is NULL without a bias. */
static ACC *MFN(mimo_partials)(const lrnn_mimo_params *p, int64_t slice, int64_t nw, int64_t nb, ACC **db) {
  ACC *dw = (ACC *)p->dw + slice * nw;
  *db = p->db ? (ACC *)p->db + slice * nb : NULL;
  for (int64_t e = 0; e < nw; ++e) dw[e] = 0;
  if (*db)
    for (int64_t e = 0; e < nb; ++e) (*db)[e] = 0;
  return dw;
}

/* Backward of the out stage: gh = sum_o dy[o] conj(C[o, :]), du = sum wc gC (overwritten),
 * dwc / dbc partials += gC (x) u with gC[o, p] = dy[o] conj(h[p]). */
static void MFN(mimo_out_bwd)(const lrnn_mimo_params *p, int64_t begin, int64_t end, int64_t slice) {
  const int64_t L = p->length, H = p->in_dim, P = p->state_dim, O = p->out_dim;
  const int64_t nw = O * P * 2 * H, nb = O * P * 2;
  const T *ub = (const T *)p->u;
  const T *dyb = (const T *)p->y;
  const ACC *wc = (const ACC *)p->wc, *bc = (const ACC *)p->bc;
  const CX *hsb = (const CX *)p->hs;
  CX *ghb = (CX *)p->h;
  T *dub = (T *)p->du;
  ACC *db;
  ACC *dw = MFN(mimo_partials)(p, slice, nw, nb, &db);
  for (int64_t k = begin; k < end; ++k) {
    const int64_t b = k / L, t = k % L;
    const T *u = ub + b * p->u_stride[0] + t * p->u_stride[1];
    const T *dy = dyb + b * p->y_stride[0] + t * p->y_stride[1];
    const CX *hs = hsb + b * p->hs_stride[0] + t * p->hs_stride[1];
    CX *gh = ghb + b * p->h_stride[0] + t * p->h_stride[1];
    T *du = dub + b * p->du_stride[0] + t * p->du_stride[1];
    for (int64_t s = 0; s < P; ++s) {
      ACC re = 0, im = 0;
      for (int64_t o = 0; o < O; ++o) {
        const CX c = MFN(mimo_entry)(wc + o * p->wc_stride[0] + s * p->wc_stride[1], p->wc_stride[2],
                                     p->wc_stride[3], bc ? bc + o * p->bc_stride[0] + s * p->bc_stride[1] : NULL,
                                     p->bc_stride[2], u, p->u_stride[2], H);
        const ACC g = LOAD_T(dy[o * p->y_stride[2]]);
        re += g * c.re;
        im -= g * c.im;
      }
      gh[s * p->h_stride[2]].re = re;
      gh[s * p->h_stride[2]].im = im;
    }
    /* weight / bias gradient partials: row (o, s, c) += gC_c * u */
    for (int64_t o = 0; o < O; ++o) {
      const ACC g = LOAD_T(dy[o * p->y_stride[2]]);
      for (int64_t s = 0; s < P; ++s) {
        const CX hv = hs[s * p->hs_stride[2]];
        const ACC gre = g * hv.re, gim = -g * hv.im;
        MFN(mimo_grad_rows)(dw + ((o * P + s) * 2) * H, db ? db + (o * P + s) * 2 : NULL, gre, gim, u,
                            p->u_stride[2], H);
      }
    }
    /* du[i] = sum_{o, s, c} wc[o, s, c, i] gC[o, s]_c, a tile of i at a time */
    for (int64_t i0 = 0; i0 < H; i0 += LRNN_MIMO_TILE) {
      const int64_t n = H - i0 < LRNN_MIMO_TILE ? H - i0 : LRNN_MIMO_TILE;
      ACC acc[LRNN_MIMO_TILE];
      for (int64_t q = 0; q < n; ++q) acc[q] = 0;
      for (int64_t o = 0; o < O; ++o) {
        const ACC g = LOAD_T(dy[o * p->y_stride[2]]);
        for (int64_t s = 0; s < P; ++s) {
          const CX hv = hs[s * p->hs_stride[2]];
          const ACC gre = g * hv.re, gim = -g * hv.im;
          const ACC *w0 = wc + o * p->wc_stride[0] + s * p->wc_stride[1] + i0 * p->wc_stride[3];
          const ACC *w1 = w0 + p->wc_stride[2];
          for (int64_t q = 0; q < n; ++q) acc[q] += w0[q * p->wc_stride[3]] * gre + w1[q * p->wc_stride[3]] * gim;
        }
      }
      for (int64_t q = 0; q < n; ++q) du[(i0 + q) * p->du_stride[2]] = STORE_T(acc[q]);
    }
  }
}

/* Backward of the in stage: du[q] += sum_p Re(conj(dv[p]) B[p, q]) + sum_{p, j, c} wb[p, j, c, q] gB[p, j]_c,
 * dwb / dbb partials += gB (x) u with gB[p, j] = dv[p] u[j]. */
static void MFN(mimo_in_bwd)(const lrnn_mimo_params *p, int64_t begin, int64_t end, int64_t slice) {
  const int64_t L = p->length, H = p->in_dim, P = p->state_dim;
  const int64_t nw = P * H * 2 * H, nb = P * H * 2;
  const T *ub = (const T *)p->u;
  const ACC *wb = (const ACC *)p->wb, *bb = (const ACC *)p->bb;
  const CX *dvb = (const CX *)p->v;
  T *dub = (T *)p->du;
  ACC *db;
  ACC *dw = MFN(mimo_partials)(p, slice, nw, nb, &db);
  for (int64_t k = begin; k < end; ++k) {
    const int64_t b = k / L, t = k % L;
    const T *u = ub + b * p->u_stride[0] + t * p->u_stride[1];
    const CX *dv = dvb + b * p->v_stride[0] + t * p->v_stride[1];
    T *du = dub + b * p->du_stride[0] + t * p->du_stride[1];
    /* weight / bias gradient partials: row (s, j, c) += dv[s]_c u[j] * u */
    for (int64_t s = 0; s < P; ++s) {
      const CX g = dv[s * p->v_stride[2]];
      for (int64_t j = 0; j < H; ++j) {
        const ACC uj = LOAD_T(u[j * p->u_stride[2]]);
        const ACC gre = g.re * uj, gim = g.im * uj;
        MFN(mimo_grad_rows)(dw + ((s * H + j) * 2) * H, db ? db + (s * H + j) * 2 : NULL, gre, gim, u,
                            p->u_stride[2], H);
      }
    }
    for (int64_t q0 = 0; q0 < H; q0 += LRNN_MIMO_TILE) {
      const int64_t n = H - q0 < LRNN_MIMO_TILE ? H - q0 : LRNN_MIMO_TILE;
      ACC acc[LRNN_MIMO_TILE];
      /* through the second factor u[j] of v = B u: Re(conj(dv) B[:, q]) */
      for (int64_t q = 0; q < n; ++q) {
        ACC a = 0;
        for (int64_t s = 0; s < P; ++s) {
          const CX e = MFN(mimo_entry)(wb + s * p->wb_stride[0] + (q0 + q) * p->wb_stride[1], p->wb_stride[2],
                                       p->wb_stride[3],
                                       bb ? bb + s * p->bb_stride[0] + (q0 + q) * p->bb_stride[1] : NULL,
                                       p->bb_stride[2], u, p->u_stride[2], H);
          const CX g = dv[s * p->v_stride[2]];
          a += g.re * e.re + g.im * e.im;
        }
        acc[q] = a;
      }
      /* through B's dependence on u: sum_{s, j, c} wb[s, j, c, q] gB[s, j]_c */
      for (int64_t s = 0; s < P; ++s) {
        const CX g = dv[s * p->v_stride[2]];
        for (int64_t j = 0; j < H; ++j) {
          const ACC uj = LOAD_T(u[j * p->u_stride[2]]);
          const ACC gre = g.re * uj, gim = g.im * uj;
          const ACC *w0 = wb + s * p->wb_stride[0] + j * p->wb_stride[1] + q0 * p->wb_stride[3];
          const ACC *w1 = w0 + p->wb_stride[2];
          for (int64_t q = 0; q < n; ++q) acc[q] += w0[q * p->wb_stride[3]] * gre + w1[q * p->wb_stride[3]] * gim;
        }
      }
      for (int64_t q = 0; q < n; ++q) {
        T *d = du + (q0 + q) * p->du_stride[2];
        *d = STORE_T(LOAD_T(*d) + acc[q]);
      }
    }
  }
}

#undef MFN
#undef MCAT
#undef MCAT_
