/* ssm_kernel_impl.h: the CPU Vandermonde kernel (lrnn/ssm_kernel.h), written once and
 * instantiated per precision by ssm_kernel.c (a C "template": included once per type with
 *   SUFFIX  name suffix,  T  the real working type (float or double),  TC  its complex struct).
 *
 * Layout of the work: one head at a time; its states in chunks of up to LRNN_SK_CHUNK held as
 * split real/imaginary arrays (so the inner loops over states vectorize); time in blocks of
 * LRNN_SSM_KERNEL_BLOCK steps. At each block start the powers exp(z*l0) come from a double
 * precision anchor (advanced by exp(z*BLOCK) in double and recomputed directly every
 * LRNN_SK_REANCHOR blocks); inside a block they advance by one multiplication with exp(z) in
 * T, so the rounding drift is bounded by the block length whatever L is. */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SUFFIX)

/* Loads the anchors exp(z*l0) of a chunk and its per-block multiplier exp(z*BLOCK) (double). */
static void FN(sk_load_chunk)(const TC *z, int64_t zs, const void *w, int64_t ws, int w_complex, int64_t nc,
                              T *wr, T *wi, T *rr, T *ri, double *zr, double *zi, double *mr, double *mi) {
  for (int64_t j = 0; j < LRNN_SK_CHUNK; ++j) {
    if (j < nc) {
      const TC zj = z[j * zs];
      zr[j] = zj.re;
      zi[j] = zj.im;
      if (w_complex) {
        const TC wj = ((const TC *)w)[j * ws];
        wr[j] = wj.re;
        wi[j] = wj.im;
      } else {
        wr[j] = ((const T *)w)[j * ws];
        wi[j] = 0;
      }
    } else { /* padding states: zero weight and zero powers contribute nothing */
      zr[j] = zi[j] = 0;
      wr[j] = wi[j] = 0;
    }
    /* exp(z): one step;  exp(z * BLOCK): one block, kept in double */
    const double e1 = exp(zr[j]), eb = exp(zr[j] * LRNN_SSM_KERNEL_BLOCK);
    rr[j] = (T)(e1 * cos(zi[j]));
    ri[j] = (T)(e1 * sin(zi[j]));
    mr[j] = eb * cos(zi[j] * LRNN_SSM_KERNEL_BLOCK);
    mi[j] = eb * sin(zi[j] * LRNN_SSM_KERNEL_BLOCK);
  }
}

/* Anchor exp(z * l0) for block index blk: recomputed directly every LRNN_SK_REANCHOR blocks,
 * advanced by the double-precision block multiplier in between. */
static void FN(sk_anchor)(int64_t blk, const double *zr, const double *zi, const double *mr, const double *mi,
                          double *ar, double *ai) {
  if (blk % LRNN_SK_REANCHOR == 0) {
    const double l0 = (double)(blk * LRNN_SSM_KERNEL_BLOCK);
    for (int64_t j = 0; j < LRNN_SK_CHUNK; ++j) {
      const double mag = exp(zr[j] * l0), ph = fmod(zi[j] * l0, 2.0 * M_PI);
      ar[j] = mag * cos(ph);
      ai[j] = mag * sin(ph);
    }
  } else {
    for (int64_t j = 0; j < LRNN_SK_CHUNK; ++j) {
      const double t = ar[j] * mr[j] - ai[j] * mi[j];
      ai[j] = ar[j] * mi[j] + ai[j] * mr[j];
      ar[j] = t;
    }
  }
}

static void FN(sk_fwd_head)(const lrnn_ssm_kernel_params *p, int64_t h) {
  const int w_complex = p->basis == LRNN_BASIS_COMPLEX;
  const T scale = w_complex ? 2 : 1;
  const TC *z = (const TC *)p->z + h * p->z_stride[0];
  const void *w = w_complex ? (const void *)((const TC *)p->w + h * p->w_stride[0])
                            : (const void *)((const T *)p->w + h * p->w_stride[0]);
  T *k = (T *)p->k + h * p->k_stride[0];
  const int64_t ks = p->k_stride[1], L = p->length;
  for (int64_t l = 0; l < L; ++l) k[l * ks] = 0;

  T wr[LRNN_SK_CHUNK], wi[LRNN_SK_CHUNK], rr[LRNN_SK_CHUNK], ri[LRNN_SK_CHUNK];
  T ur[LRNN_SK_CHUNK], ui[LRNN_SK_CHUNK];
  double zr[LRNN_SK_CHUNK], zi[LRNN_SK_CHUNK], mr[LRNN_SK_CHUNK], mi[LRNN_SK_CHUNK];
  double ar[LRNN_SK_CHUNK], ai[LRNN_SK_CHUNK];
  for (int64_t n0 = 0; n0 < p->state; n0 += LRNN_SK_CHUNK) {
    const int64_t nc = p->state - n0 < LRNN_SK_CHUNK ? p->state - n0 : LRNN_SK_CHUNK;
    const int64_t ws = p->w_stride[1];
    const void *wn = w_complex ? (const void *)((const TC *)w + n0 * ws) : (const void *)((const T *)w + n0 * ws);
    FN(sk_load_chunk)(z + n0 * p->z_stride[1], p->z_stride[1], wn, ws, w_complex, nc, wr, wi, rr, ri, zr, zi, mr, mi);
    const int64_t nv = (nc + 7) / 8 * 8; /* whole groups of 8 lanes; padding lanes are zero */
    for (int64_t blk = 0, l0 = 0; l0 < L; ++blk, l0 += LRNN_SSM_KERNEL_BLOCK) {
      FN(sk_anchor)(blk, zr, zi, mr, mi, ar, ai);
      /* u = w * exp(z * l0) */
      for (int64_t j = 0; j < nv; ++j) {
        ur[j] = (T)(wr[j] * ar[j] - wi[j] * ai[j]);
        ui[j] = (T)(wr[j] * ai[j] + wi[j] * ar[j]);
      }
      const int64_t l1 = l0 + LRNN_SSM_KERNEL_BLOCK < L ? l0 + LRNN_SSM_KERNEL_BLOCK : L;
      for (int64_t l = l0; l < l1; ++l) {
        /* K[l] += scale * Re(sum_n u_n), with 8 partial sums so the loop vectorizes */
        T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t j = 0; j < nv; j += 8)
          for (int q = 0; q < 8; ++q) acc[q] += ur[j + q];
        k[l * ks] += scale * (((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])));
        /* u <- u * exp(z) */
        for (int64_t j = 0; j < nv; ++j) {
          const T t = ur[j] * rr[j] - ui[j] * ri[j];
          ui[j] = ur[j] * ri[j] + ui[j] * rr[j];
          ur[j] = t;
        }
      }
    }
  }
}

static void FN(sk_bwd_head)(const lrnn_ssm_kernel_bwd_params *p, int64_t h) {
  const int w_complex = p->basis == LRNN_BASIS_COMPLEX;
  const double scale = w_complex ? 2 : 1;
  const TC *z = (const TC *)p->z + h * p->z_stride[0];
  const T *g = (const T *)p->grad_k + h * p->grad_k_stride[0];
  const int64_t gs = p->grad_k_stride[1], L = p->length;

  T wr[LRNN_SK_CHUNK], wi[LRNN_SK_CHUNK], rr[LRNN_SK_CHUNK], ri[LRNN_SK_CHUNK];
  T er[LRNN_SK_CHUNK], ei[LRNN_SK_CHUNK];
  T p0r[LRNN_SK_CHUNK], p0i[LRNN_SK_CHUNK], p1r[LRNN_SK_CHUNK], p1i[LRNN_SK_CHUNK];
  double zr[LRNN_SK_CHUNK], zi[LRNN_SK_CHUNK], mr[LRNN_SK_CHUNK], mi[LRNN_SK_CHUNK];
  double ar[LRNN_SK_CHUNK], ai[LRNN_SK_CHUNK];
  double s0r[LRNN_SK_CHUNK], s0i[LRNN_SK_CHUNK], s1r[LRNN_SK_CHUNK], s1i[LRNN_SK_CHUNK];
  for (int64_t n0 = 0; n0 < p->state; n0 += LRNN_SK_CHUNK) {
    const int64_t nc = p->state - n0 < LRNN_SK_CHUNK ? p->state - n0 : LRNN_SK_CHUNK;
    const int64_t ws = p->w_stride[1];
    const void *wn = w_complex ? (const void *)((const TC *)p->w + h * p->w_stride[0] + n0 * ws)
                               : (const void *)((const T *)p->w + h * p->w_stride[0] + n0 * ws);
    FN(sk_load_chunk)(z + n0 * p->z_stride[1], p->z_stride[1], wn, ws, w_complex, nc, wr, wi, rr, ri, zr, zi, mr, mi);
    const int64_t nv = (nc + 7) / 8 * 8;
    for (int64_t j = 0; j < LRNN_SK_CHUNK; ++j) s0r[j] = s0i[j] = s1r[j] = s1i[j] = 0;
    for (int64_t blk = 0, l0 = 0; l0 < L; ++blk, l0 += LRNN_SSM_KERNEL_BLOCK) {
      FN(sk_anchor)(blk, zr, zi, mr, mi, ar, ai);
      for (int64_t j = 0; j < nv; ++j) {
        er[j] = (T)ar[j];
        ei[j] = (T)ai[j];
        p0r[j] = p0i[j] = p1r[j] = p1i[j] = 0;
      }
      const int64_t l1 = l0 + LRNN_SSM_KERNEL_BLOCK < L ? l0 + LRNN_SSM_KERNEL_BLOCK : L;
      for (int64_t l = l0; l < l1; ++l) {
        /* S0 += dK[l] * E,  S1 += l * dK[l] * E  (E = exp(z l); conjugated at the end) */
        const T gl = g[l * gs], gll = gl * (T)l;
        /* two simple loops (sums, then powers) vectorize where one fused loop did not */
        for (int64_t j = 0; j < nv; ++j) {
          p0r[j] += gl * er[j];
          p0i[j] += gl * ei[j];
          p1r[j] += gll * er[j];
          p1i[j] += gll * ei[j];
        }
        for (int64_t j = 0; j < nv; ++j) {
          const T t = er[j] * rr[j] - ei[j] * ri[j];
          ei[j] = er[j] * ri[j] + ei[j] * rr[j];
          er[j] = t;
        }
      }
      /* block partial sums join the totals in double */
      for (int64_t j = 0; j < nv; ++j) {
        s0r[j] += p0r[j];
        s0i[j] += p0i[j];
        s1r[j] += p1r[j];
        s1i[j] += p1i[j];
      }
    }
    for (int64_t j = 0; j < nc; ++j) {
      const int64_t n = n0 + j;
      /* grad_w = s * conj(S0) */
      if (w_complex) {
        TC *gw = (TC *)p->grad_w + h * p->grad_w_stride[0] + n * p->grad_w_stride[1];
        gw->re = (T)(scale * s0r[j]);
        gw->im = (T)(-scale * s0i[j]);
      } else {
        ((T *)p->grad_w)[h * p->grad_w_stride[0] + n * p->grad_w_stride[1]] = (T)(scale * s0r[j]);
      }
      /* grad_z = s * conj(w * S1) */
      const double wre = wr[j], wim = wi[j];
      TC *gz = (TC *)p->grad_z + h * p->grad_z_stride[0] + n * p->grad_z_stride[1];
      gz->re = (T)(scale * (wre * s1r[j] - wim * s1i[j]));
      gz->im = (T)(-scale * (wre * s1i[j] + wim * s1r[j]));
    }
  }
}

#undef FN
#undef CAT
#undef CAT_
