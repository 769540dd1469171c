/* event_scan_impl.h: the CPU event-scan kernels (lrnn/event_scan.h), written once and
 * instantiated per (state type, real input type) by event_scan.c — a C "template" included
 * once per type with these macros set:
 *
 *   SUFFIX        name suffix of the instantiation
 *   R             arithmetic real type (float for complex64 states, double for complex128)
 *   CX            complex storage/arithmetic struct with fields re, im of type R
 *   T_R           storage type of delta and dt;  LOAD_R(v) converts it to R
 *   EXP_, EXPM1_, COS_, SIN_    libm functions of type R
 *
 * Work is a slice of rows (row = b * P + p), processed in blocks of up to BLOCK channels of one
 * batch element with time in the outer loop, so (B, L, P)-contiguous tensors are read in order.
 * Each (b, p) row is owned by exactly one call, so the per-row gradient partials need no
 * atomics; the ops layer reduces them over the batch. */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SUFFIX)

#ifndef LRNN_EVENT_BLOCK
#define LRNN_EVENT_BLOCK 64
#endif

static inline CX FN(cx)(R re, R im) { CX r; r.re = re; r.im = im; return r; }
static inline CX FN(cmul)(CX x, CX y) { return FN(cx)(x.re * y.re - x.im * y.im, x.re * y.im + x.im * y.re); }
static inline CX FN(cadd)(CX x, CX y) { return FN(cx)(x.re + y.re, x.im + y.im); }
static inline CX FN(cscale)(R s, CX x) { return FN(cx)(s * x.re, s * x.im); }
static inline CX FN(cconj)(CX x) { return FN(cx)(x.re, -x.im); }
/* conj(x) * y, the building block of every gradient in PyTorch's convention */
static inline CX FN(cmulc)(CX x, CX y) { return FN(cx)(x.re * y.re + x.im * y.im, x.re * y.im - x.im * y.re); }
/* Re(conj(x) * y) */
static inline R FN(cdotr)(CX x, CX y) { return x.re * y.re + x.im * y.im; }
/* x / y by Smith's algorithm: no overflow or underflow of |y|^2 for tiny or huge y. */
static inline CX FN(cdiv)(CX x, CX y) {
  if ((y.re < 0 ? -y.re : y.re) >= (y.im < 0 ? -y.im : y.im)) {
    const R r = y.im / y.re, d = y.re + y.im * r;
    return FN(cx)((x.re + x.im * r) / d, (x.im - x.re * r) / d);
  }
  const R r = y.re / y.im, d = y.re * r + y.im;
  return FN(cx)((x.re * r + x.im) / d, (x.im * r - x.re) / d);
}
static inline CX FN(cexp)(CX z) {
  const R e = EXP_(z.re);
  return FN(cx)(e * COS_(z.im), e * SIN_(z.im));
}
/* exp(z) - 1 without cancellation: Re = expm1(x) cos(y) - 2 sin^2(y/2), Im = exp(x) sin(y). */
static inline CX FN(cexpm1)(CX z) {
  const R sh = SIN_(z.im * (R)0.5);
  return FN(cx)(EXPM1_(z.re) * COS_(z.im) - (R)2 * sh * sh, EXP_(z.re) * SIN_(z.im));
}
/* phi(z) = (exp(z) - 1) / z, phi(0) = 1. */
static inline CX FN(phi)(CX z) {
  if (z.re == 0 && z.im == 0) return FN(cx)(1, 0);
  return FN(cdiv)(FN(cexpm1)(z), z);
}
/* psi(z) = phi'(z) = (exp(z) - phi(z)) / z. The direct form cancels for small z, where the
 * series psi(z) = sum_k (k+1) z^k / (k+2)! is used (18 terms: below 1e-16 for |z| < 1). */
static inline CX FN(psi)(CX z) {
  if (z.re * z.re + z.im * z.im < 1) {
    static const double c[18] = {
        1.0 / 2, 2.0 / 6, 3.0 / 24, 4.0 / 120, 5.0 / 720, 6.0 / 5040, 7.0 / 40320, 8.0 / 362880,
        9.0 / 3628800, 10.0 / 39916800, 11.0 / 479001600, 12.0 / 6227020800.0,
        13.0 / 87178291200.0, 14.0 / 1307674368000.0, 15.0 / 20922789888000.0,
        16.0 / 355687428096000.0, 17.0 / 6402373705728000.0, 18.0 / 121645100408832000.0};
    CX acc = FN(cx)((R)c[17], 0);
    for (int k = 16; k >= 0; --k) {
      acc = FN(cmul)(acc, z);
      acc.re += (R)c[k];
    }
    return acc;
  }
  CX e = FN(cexp)(z), f = FN(phi)(z);
  return FN(cdiv)(FN(cx)(e.re - f.re, e.im - f.im), z);
}

/* The input scale g of one event and, when `grad`, its derivatives by Lambda (holomorphic) and
 * by delta (real). `a` = exp(Lambda*delta*dt) is already known. */
static inline void FN(input_scale)(int disc, CX lam, R delta, R dt, CX a, int grad, CX *g, CX *dg_dlam,
                                   CX *dg_ddelta) {
  if (disc == LRNN_DISC_ZOH) {
    const R s = delta * dt;
    *g = FN(cscale)(s, FN(phi)(FN(cscale)(s, lam)));
    if (grad) {
      *dg_dlam = FN(cscale)(s * s, FN(psi)(FN(cscale)(s, lam)));
      *dg_ddelta = FN(cscale)(dt, a);
    }
  } else if (disc == LRNN_DISC_ASYNC) {
    const CX w = FN(cscale)(delta, lam);
    *g = FN(cscale)(delta, FN(phi)(w));
    if (grad) {
      *dg_dlam = FN(cscale)(delta * delta, FN(psi)(w));
      *dg_ddelta = FN(cexp)(w);
    }
  } else { /* DIRAC */
    *g = FN(cx)(1, 0);
    if (grad) {
      *dg_dlam = FN(cx)(0, 0);
      *dg_ddelta = FN(cx)(0, 0);
    }
  }
}

static inline int64_t FN(ev_time)(int64_t s, int64_t length, int reverse) {
  return reverse ? length - 1 - s : s;
}

static void FN(event_fwd)(const lrnn_event_scan_params *p, int64_t b, int64_t d0, int64_t n) {
  const CX *lambda = (const CX *)p->lambda + d0 * p->lambda_stride;
  const T_R *delta = (const T_R *)p->delta + b * p->delta_stride[0] + d0 * p->delta_stride[2];
  const T_R *dt = (const T_R *)p->dt + b * p->dt_stride[0];
  const CX *v = (const CX *)p->v + b * p->v_stride[0] + d0 * p->v_stride[2];
  CX *h = (CX *)p->h + b * p->h_stride[0] + d0 * p->h_stride[2];
  /* delta shared over time (Event-SSM): the async scale is then one constant per channel */
  const int const_delta = p->delta_stride[1] == 0;
  CX lam[LRNN_EVENT_BLOCK], state[LRNN_EVENT_BLOCK], g_const[LRNN_EVENT_BLOCK];
  R del_const[LRNN_EVENT_BLOCK];
  for (int64_t j = 0; j < n; ++j) {
    lam[j] = lambda[j * p->lambda_stride];
    state[j] = p->h0 ? ((const CX *)p->h0)[b * p->h0_stride[0] + (d0 + j) * p->h0_stride[1]] : FN(cx)(0, 0);
    if (const_delta) {
      del_const[j] = LOAD_R(delta[j * p->delta_stride[2]]);
      FN(input_scale)(p->disc, lam[j], del_const[j], 0, FN(cx)(1, 0), 0, &g_const[j], NULL, NULL);
    }
  }
  const int g_is_const = const_delta && p->disc != LRNN_DISC_ZOH;
  for (int64_t s = 0; s < p->length; ++s) {
    const int64_t t = FN(ev_time)(s, p->length, p->reverse);
    const R tau = LOAD_R(dt[t * p->dt_stride[1]]);
    const T_R *dl = delta + t * p->delta_stride[1];
    const CX *vt = v + t * p->v_stride[1];
    CX *ht = h + t * p->h_stride[1];
    for (int64_t j = 0; j < n; ++j) {
      const R del = const_delta ? del_const[j] : LOAD_R(dl[j * p->delta_stride[2]]);
      const CX a = FN(cexp)(FN(cscale)(del * tau, lam[j]));
      CX g;
      if (g_is_const) g = g_const[j];
      else FN(input_scale)(p->disc, lam[j], del, tau, a, 0, &g, NULL, NULL);
      /* h[t] = a[t] * h[t-1] + g[t] * v[t] */
      state[j] = FN(cadd)(FN(cmul)(a, state[j]), FN(cmul)(g, vt[j * p->v_stride[2]]));
      ht[j * p->h_stride[2]] = state[j];
    }
  }
  CX *last = (CX *)p->h_last + b * p->h_last_stride[0] + d0 * p->h_last_stride[1];
  for (int64_t j = 0; j < n; ++j) last[j * p->h_last_stride[1]] = state[j];
}

static void FN(event_bwd)(const lrnn_event_scan_bwd_params *p, int64_t b, int64_t d0, int64_t n) {
  const CX *lambda = (const CX *)p->lambda + d0 * p->lambda_stride;
  const T_R *delta = (const T_R *)p->delta + b * p->delta_stride[0] + d0 * p->delta_stride[2];
  const T_R *dt = (const T_R *)p->dt + b * p->dt_stride[0];
  const CX *v = (const CX *)p->v + b * p->v_stride[0] + d0 * p->v_stride[2];
  const CX *h = (const CX *)p->h + b * p->h_stride[0] + d0 * p->h_stride[2];
  const CX *gh = (const CX *)p->grad_h + b * p->grad_h_stride[0] + d0 * p->grad_h_stride[2];
  CX *dv = (CX *)p->dv + b * p->dv_stride[0] + d0 * p->dv_stride[2];
  R *ddelta = (R *)p->ddelta + b * p->ddelta_stride[0] + d0 * p->ddelta_stride[2];
  const int const_delta = p->delta_stride[1] == 0;
  const int g_is_const = const_delta && p->disc != LRNN_DISC_ZOH;
  CX lam[LRNN_EVENT_BLOCK], carry[LRNN_EVENT_BLOCK], dlam[LRNN_EVENT_BLOCK];
  CX g_c[LRNN_EVENT_BLOCK], dgl_c[LRNN_EVENT_BLOCK], dgd_c[LRNN_EVENT_BLOCK], ggsum[LRNN_EVENT_BLOCK];
  R del_const[LRNN_EVENT_BLOCK], ddel[LRNN_EVENT_BLOCK];
  for (int64_t j = 0; j < n; ++j) {
    lam[j] = lambda[j * p->lambda_stride];
    carry[j] = p->grad_h_last ? ((const CX *)p->grad_h_last)[b * p->grad_h_last_stride[0] +
                                                             (d0 + j) * p->grad_h_last_stride[1]]
                              : FN(cx)(0, 0);
    dlam[j] = FN(cx)(0, 0);
    ggsum[j] = FN(cx)(0, 0);
    ddel[j] = 0;
    if (const_delta) {
      del_const[j] = LOAD_R(delta[j * p->delta_stride[2]]);
      FN(input_scale)(p->disc, lam[j], del_const[j], 0, FN(cx)(1, 0), 1, &g_c[j], &dgl_c[j], &dgd_c[j]);
    }
  }
  for (int64_t s = p->length - 1; s >= 0; --s) {
    const int64_t t = FN(ev_time)(s, p->length, p->reverse);
    const int64_t tp = s > 0 ? FN(ev_time)(s - 1, p->length, p->reverse) : -1;
    const R tau = LOAD_R(dt[t * p->dt_stride[1]]);
    const T_R *dl = delta + t * p->delta_stride[1];
    for (int64_t j = 0; j < n; ++j) {
      const R del = const_delta ? del_const[j] : LOAD_R(dl[j * p->delta_stride[2]]);
      const R sdt = del * tau;
      const CX a = FN(cexp)(FN(cscale)(sdt, lam[j]));
      CX hprev = FN(cx)(0, 0);
      if (tp >= 0) hprev = h[tp * p->h_stride[1] + j * p->h_stride[2]];
      else if (p->h0) hprev = ((const CX *)p->h0)[b * p->h0_stride[0] + (d0 + j) * p->h0_stride[1]];
      const CX vt = v[t * p->v_stride[1] + j * p->v_stride[2]];
      /* lam[t] = grad_h[t] + conj(a[t+1]) lam[t+1] */
      const CX lt = FN(cadd)(gh[t * p->grad_h_stride[1] + j * p->grad_h_stride[2]], carry[j]);
      const CX ga = FN(cmulc)(hprev, lt);   /* grad of a[t]: lam conj(h[t-1]) */
      const CX gg = FN(cmulc)(vt, lt);      /* grad of g[t]: lam conj(v[t]) */
      /* transition: da/dLambda = s a, da/ddelta = Lambda dt a */
      dlam[j] = FN(cadd)(dlam[j], FN(cscale)(sdt, FN(cmulc)(a, ga)));
      R dd = tau * FN(cdotr)(FN(cmul)(lam[j], a), ga);
      CX g;
      if (g_is_const) {
        g = g_c[j];
        ggsum[j] = FN(cadd)(ggsum[j], gg);   /* constant scale: its terms factor out of the sum */
      } else {
        CX dgl, dgd;
        FN(input_scale)(p->disc, lam[j], del, tau, a, 1, &g, &dgl, &dgd);
        dlam[j] = FN(cadd)(dlam[j], FN(cmulc)(dgl, gg));
        dd += FN(cdotr)(dgd, gg);
      }
      dv[t * p->dv_stride[1] + j * p->dv_stride[2]] = FN(cmulc)(g, lt);
      if (const_delta) ddel[j] += dd;
      else ddelta[t * p->ddelta_stride[1] + j * p->ddelta_stride[2]] = dd;
      carry[j] = FN(cmulc)(a, lt);
    }
  }
  CX *dh0 = (CX *)p->dh0 + b * p->dh0_stride[0] + d0 * p->dh0_stride[1];
  CX *dl_out = (CX *)p->dlambda + b * p->dlambda_stride[0] + d0 * p->dlambda_stride[1];
  for (int64_t j = 0; j < n; ++j) {
    dh0[j * p->dh0_stride[1]] = carry[j];   /* conj(a[first]) lam[first] */
    if (g_is_const) {
      dlam[j] = FN(cadd)(dlam[j], FN(cmulc)(dgl_c[j], ggsum[j]));
      ddel[j] += FN(cdotr)(dgd_c[j], ggsum[j]);
    }
    dl_out[j * p->dlambda_stride[1]] = dlam[j];
    if (const_delta) ddelta[j * p->ddelta_stride[2]] = ddel[j];
  }
}

static void FN(event_fwd_rows)(const lrnn_event_scan_params *p, int64_t row_begin, int64_t row_end) {
  for (int64_t row = row_begin; row < row_end;) {
    const int64_t b = row / p->dim, d = row % p->dim;
    int64_t n = p->dim - d;
    if (n > row_end - row) n = row_end - row;
    if (n > LRNN_EVENT_BLOCK) n = LRNN_EVENT_BLOCK;
    FN(event_fwd)(p, b, d, n);
    row += n;
  }
}

static void FN(event_bwd_rows)(const lrnn_event_scan_bwd_params *p, int64_t row_begin, int64_t row_end) {
  for (int64_t row = row_begin; row < row_end;) {
    const int64_t b = row / p->dim, d = row % p->dim;
    int64_t n = p->dim - d;
    if (n > row_end - row) n = row_end - row;
    if (n > LRNN_EVENT_BLOCK) n = LRNN_EVENT_BLOCK;
    FN(event_bwd)(p, b, d, n);
    row += n;
  }
}

#undef FN
#undef CAT
#undef CAT_
