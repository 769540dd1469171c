/* cauchy_impl.h: the CPU Cauchy kernel (lrnn/cauchy.h), written once and instantiated per
 * precision by cauchy.c (SUFFIX, T the real type, TC its complex struct).
 *
 * Forward: per head, nodes in chunks of LRNN_CY_CHUNK held as split re/im arrays; the loop over
 * states is outside, the loop over the chunk's nodes inside (independent lanes: it vectorizes).
 * Backward: per head, states in chunks as the vector lanes, nodes in the outer loop, partial
 * sums per LRNN_CY_BLOCK nodes in T joined in double. */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SUFFIX)

static void FN(cy_fwd_head)(const lrnn_cauchy_params *p, int64_t h) {
  const TC *v = (const TC *)p->v + h * p->v_stride[0];
  const TC *lam = (const TC *)p->lam + h * p->lam_stride[0];
  const TC *om = (const TC *)p->omega;
  TC *out = (TC *)p->out + h * p->out_stride[0];
  T orr[LRNN_CY_CHUNK], oi[LRNN_CY_CHUNK], accr[LRNN_CY_CHUNK], acci[LRNN_CY_CHUNK];
  for (int64_t l0 = 0; l0 < p->length; l0 += LRNN_CY_CHUNK) {
    const int64_t lc = p->length - l0 < LRNN_CY_CHUNK ? p->length - l0 : LRNN_CY_CHUNK;
    for (int64_t j = 0; j < lc; ++j) {
      orr[j] = om[(l0 + j) * p->omega_stride].re;
      oi[j] = om[(l0 + j) * p->omega_stride].im;
      accr[j] = acci[j] = 0;
    }
    for (int64_t n = 0; n < p->state; ++n) {
      const TC vn = v[n * p->v_stride[1]], ln = lam[n * p->lam_stride[1]];
      for (int64_t j = 0; j < lc; ++j) {
        /* v / (omega - lam) = v * conj(d) / |d|^2 */
        const T dr = orr[j] - ln.re, di = oi[j] - ln.im;
        const T inv = 1 / (dr * dr + di * di);
        accr[j] += (vn.re * dr + vn.im * di) * inv;
        acci[j] += (vn.im * dr - vn.re * di) * inv;
      }
      if (p->symmetric) {
        for (int64_t j = 0; j < lc; ++j) {
          /* conj(v) / (omega - conj(lam)) */
          const T dr = orr[j] - ln.re, di = oi[j] + ln.im;
          const T inv = 1 / (dr * dr + di * di);
          accr[j] += (vn.re * dr - vn.im * di) * inv;
          acci[j] += (-vn.im * dr - vn.re * di) * inv;
        }
      }
    }
    for (int64_t j = 0; j < lc; ++j) {
      out[(l0 + j) * p->out_stride[1]].re = accr[j];
      out[(l0 + j) * p->out_stride[1]].im = acci[j];
    }
  }
}

static void FN(cy_bwd_head)(const lrnn_cauchy_bwd_params *p, int64_t h) {
  const TC *v = (const TC *)p->v + h * p->v_stride[0];
  const TC *lam = (const TC *)p->lam + h * p->lam_stride[0];
  const TC *om = (const TC *)p->omega;
  const TC *g = (const TC *)p->grad_out + h * p->grad_out_stride[0];
  T lr[LRNN_CY_CHUNK], li[LRNN_CY_CHUNK];
  T par[LRNN_CY_CHUNK], pai[LRNN_CY_CHUNK], pbr[LRNN_CY_CHUNK], pbi[LRNN_CY_CHUNK];
  double sar[LRNN_CY_CHUNK], sai[LRNN_CY_CHUNK], sbr[LRNN_CY_CHUNK], sbi[LRNN_CY_CHUNK];
  for (int64_t n0 = 0; n0 < p->state; n0 += LRNN_CY_CHUNK) {
    const int64_t nc = p->state - n0 < LRNN_CY_CHUNK ? p->state - n0 : LRNN_CY_CHUNK;
    for (int64_t j = 0; j < nc; ++j) {
      lr[j] = lam[(n0 + j) * p->lam_stride[1]].re;
      li[j] = lam[(n0 + j) * p->lam_stride[1]].im;
      sar[j] = sai[j] = sbr[j] = sbi[j] = 0;
    }
    for (int64_t l0 = 0; l0 < p->length; l0 += LRNN_CY_BLOCK) {
      const int64_t l1 = l0 + LRNN_CY_BLOCK < p->length ? l0 + LRNN_CY_BLOCK : p->length;
      for (int64_t j = 0; j < nc; ++j) par[j] = pai[j] = pbr[j] = pbi[j] = 0;
      for (int64_t l = l0; l < l1; ++l) {
        const TC gl = g[l * p->grad_out_stride[1]], ol = om[l * p->omega_stride];
        for (int64_t j = 0; j < nc; ++j) {
          /* r1 = 1/(omega - lam);  A += r1 * conj(G);  B += r1^2 * conj(G) */
          const T dr = ol.re - lr[j], di = ol.im - li[j];
          const T inv = 1 / (dr * dr + di * di);
          const T rr = dr * inv, ri = -di * inv;
          const T ar = rr * gl.re + ri * gl.im, ai = ri * gl.re - rr * gl.im;   /* r1 * conj(G) */
          par[j] += ar;
          pai[j] += ai;
          pbr[j] += rr * ar - ri * ai;
          pbi[j] += rr * ai + ri * ar;
        }
        if (p->symmetric) {
          for (int64_t j = 0; j < nc; ++j) {
            /* r2 = 1/(conj(omega) - lam);  A += r2 * G;  B += r2^2 * G */
            const T dr = ol.re - lr[j], di = -ol.im - li[j];
            const T inv = 1 / (dr * dr + di * di);
            const T rr = dr * inv, ri = -di * inv;
            const T ar = rr * gl.re - ri * gl.im, ai = rr * gl.im + ri * gl.re;   /* r2 * G */
            par[j] += ar;
            pai[j] += ai;
            pbr[j] += rr * ar - ri * ai;
            pbi[j] += rr * ai + ri * ar;
          }
        }
      }
      for (int64_t j = 0; j < nc; ++j) {
        sar[j] += par[j];
        sai[j] += pai[j];
        sbr[j] += pbr[j];
        sbi[j] += pbi[j];
      }
    }
    for (int64_t j = 0; j < nc; ++j) {
      const int64_t n = n0 + j;
      const TC vn = v[n * p->v_stride[1]];
      TC *gv = (TC *)p->grad_v + h * p->grad_v_stride[0] + n * p->grad_v_stride[1];
      TC *gl = (TC *)p->grad_lam + h * p->grad_lam_stride[0] + n * p->grad_lam_stride[1];
      /* grad_v = conj(A);  grad_lam = conj(v * B) */
      gv->re = (T)sar[j];
      gv->im = (T)(-sai[j]);
      gl->re = (T)(vn.re * sbr[j] - vn.im * sbi[j]);
      gl->im = (T)(-(vn.re * sbi[j] + vn.im * sbr[j]));
    }
  }
}

#undef FN
#undef CAT
#undef CAT_
