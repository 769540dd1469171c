// test_mimo_selective_scan.cpp: the CPU stages of S7's MIMO selective scan against naive double
// loops that form every B_t and C_t explicitly, with the token range split over several calls
// (slices) and the weight-gradient partials reduced by lrnn_mimo_reduce_cpu; the input-gradient
// formulas are also checked against central finite differences of the forward (float64).
// Random inputs with a fixed seed, odd sizes, strided u and a column-half view of wc.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <random>
#include <vector>

#include "lrnn/mimo_selective_scan.h"
#include "../../csrc/cpu/scalar.h"

namespace {

using cd = std::complex<double>;

struct Case {
  int64_t B, L, H, P, O;
  lrnn_dtype dtype;
  bool bias = true;
  int slices = 3;
};

bool is64(const Case& c) { return c.dtype == LRNN_F64; }

double round_t(lrnn_dtype t, double x) {
  if (t == LRNN_BF16) return lrnn_bf16_to_f32(lrnn_f32_to_bf16((float)x));
  if (t == LRNN_F16) return lrnn_f16_to_f32(lrnn_f32_to_f16((float)x));
  if (t == LRNN_F32) return (float)x;
  return x;
}

// Storage of one typed buffer; values kept in double (already rounded) for the naive loops.
struct Buf {
  lrnn_dtype t;
  std::vector<double> val;
  std::vector<unsigned char> raw;
  Buf(lrnn_dtype type, size_t n) : t(type), val(n, 0.0), raw(n * size()) {}
  size_t size() const { return (t == LRNN_F64 || t == LRNN_C64) ? 8 : t == LRNN_C128 ? 16 : t == LRNN_F32 ? 4 : 2; }
  void set(size_t i, double x) {
    val[i] = round_t(t, x);
    unsigned char* p = raw.data() + i * size();
    if (t == LRNN_F64) { *(double*)p = x; }
    else if (t == LRNN_F32) { *(float*)p = (float)x; }
    else if (t == LRNN_BF16) { *(uint16_t*)p = lrnn_f32_to_bf16((float)x); }
    else { *(uint16_t*)p = lrnn_f32_to_f16((float)x); }
  }
  double get(size_t i) const {
    const unsigned char* p = raw.data() + i * size();
    if (t == LRNN_F64) return *(const double*)p;
    if (t == LRNN_F32) return *(const float*)p;
    if (t == LRNN_BF16) return lrnn_bf16_to_f32(*(const uint16_t*)p);
    return lrnn_f16_to_f32(*(const uint16_t*)p);
  }
  void* data() { return raw.data(); }
};

// Complex (state) buffer: c64 or c128 storage.
struct CBuf {
  bool wide;
  std::vector<cd> val;
  std::vector<lrnn_cf> f;
  std::vector<lrnn_cd> d;
  CBuf(bool w, size_t n) : wide(w), val(n), f(n), d(n) {}
  void set(size_t i, cd x) {
    if (wide) { d[i] = {x.real(), x.imag()}; val[i] = x; }
    else { f[i] = {(float)x.real(), (float)x.imag()}; val[i] = cd(f[i].re, f[i].im); }
  }
  cd get(size_t i) const { return wide ? cd(d[i].re, d[i].im) : cd(f[i].re, f[i].im); }
  void* data() { return wide ? (void*)d.data() : (void*)f.data(); }
};

struct Problem {
  Case c;
  lrnn_dtype acc;
  int64_t us = 3;       // u's feature stride (non-contiguous)
  int64_t half = 2;     // wc is the first column half of an (O, 2P, 2, H) tensor
  Buf u, wb, bb, wc, bc, dy;
  CBuf h, dv;
  explicit Problem(const Case& cs)
      : c(cs), acc(is64(cs) ? LRNN_F64 : LRNN_F32), u(cs.dtype, cs.B * cs.L * cs.H * 3),
        wb(acc, cs.P * cs.H * 2 * cs.H), bb(acc, cs.P * cs.H * 2), wc(acc, cs.O * cs.P * 2 * 2 * cs.H),
        bc(acc, cs.O * cs.P * 2 * 2), dy(cs.dtype, cs.B * cs.L * cs.O), h(is64(cs), cs.B * cs.L * cs.P),
        dv(is64(cs), cs.B * cs.L * cs.P) {
    std::mt19937 rng(1234);
    std::uniform_real_distribution<double> s(-1.0, 1.0);
    for (size_t i = 0; i < u.val.size(); ++i) u.set(i, s(rng));
    const double wsc = 1.0 / std::sqrt((double)c.H);
    for (size_t i = 0; i < wb.val.size(); ++i) wb.set(i, wsc * s(rng));
    for (size_t i = 0; i < bb.val.size(); ++i) bb.set(i, 0.3 * s(rng));
    for (size_t i = 0; i < wc.val.size(); ++i) wc.set(i, wsc * s(rng));
    for (size_t i = 0; i < bc.val.size(); ++i) bc.set(i, 0.3 * s(rng));
    for (size_t i = 0; i < dy.val.size(); ++i) dy.set(i, s(rng));
    for (size_t i = 0; i < h.val.size(); ++i) h.set(i, cd(s(rng), s(rng)));
    for (size_t i = 0; i < dv.val.size(); ++i) dv.set(i, cd(s(rng), s(rng)));
  }
  lrnn_dtype state() const { return is64(c) ? LRNN_C128 : LRNN_C64; }
  double U(int64_t b, int64_t t, int64_t i) const { return u.val[((b * c.L + t) * c.H + i) * us]; }
  double WB(int64_t p, int64_t j, int k, int64_t i) const { return wb.val[((p * c.H + j) * 2 + k) * c.H + i]; }
  double BB(int64_t p, int64_t j, int k) const { return c.bias ? bb.val[(p * c.H + j) * 2 + k] : 0.0; }
  double WC(int64_t o, int64_t p, int k, int64_t i) const {
    return wc.val[((o * c.P * half + p) * 2 + k) * c.H + i];
  }
  double BC(int64_t o, int64_t p, int k) const { return c.bias ? bc.val[(o * c.P * half + p) * 2 + k] : 0.0; }
  cd Bt(int64_t b, int64_t t, int64_t p, int64_t j) const {
    double re = BB(p, j, 0), im = BB(p, j, 1);
    for (int64_t i = 0; i < c.H; ++i) { re += WB(p, j, 0, i) * U(b, t, i); im += WB(p, j, 1, i) * U(b, t, i); }
    return cd(re, im);
  }
  cd Ct(int64_t b, int64_t t, int64_t o, int64_t p) const {
    double re = BC(o, p, 0), im = BC(o, p, 1);
    for (int64_t i = 0; i < c.H; ++i) { re += WC(o, p, 0, i) * U(b, t, i); im += WC(o, p, 1, i) * U(b, t, i); }
    return cd(re, im);
  }
  lrnn_mimo_params params() {
    lrnn_mimo_params p{};
    const int64_t L = c.L, H = c.H, P = c.P, O = c.O;
    p.u = u.data();
    p.u_stride[0] = L * H * us; p.u_stride[1] = H * us; p.u_stride[2] = us;
    p.v_stride[0] = L * P; p.v_stride[1] = P; p.v_stride[2] = 1;
    p.h = h.data();
    p.h_stride[0] = L * P; p.h_stride[1] = P; p.h_stride[2] = 1;
    p.y_stride[0] = L * O; p.y_stride[1] = O; p.y_stride[2] = 1;
    p.hs_stride[0] = L * P; p.hs_stride[1] = P; p.hs_stride[2] = 1;
    p.du_stride[0] = L * H; p.du_stride[1] = H; p.du_stride[2] = 1;
    p.wb = wb.data();
    p.wb_stride[0] = H * 2 * H; p.wb_stride[1] = 2 * H; p.wb_stride[2] = H; p.wb_stride[3] = 1;
    p.bb = c.bias ? bb.data() : nullptr;
    p.bb_stride[0] = H * 2; p.bb_stride[1] = 2; p.bb_stride[2] = 1;
    p.wc = wc.data();
    p.wc_stride[0] = half * P * 2 * H; p.wc_stride[1] = 2 * H; p.wc_stride[2] = H; p.wc_stride[3] = 1;
    p.bc = c.bias ? bc.data() : nullptr;
    p.bc_stride[0] = half * P * 2; p.bc_stride[1] = 2; p.bc_stride[2] = 1;
    p.batch = c.B; p.length = L; p.in_dim = H; p.state_dim = P; p.out_dim = O;
    p.dtype = c.dtype;
    p.state_dtype = state();
    return p;
  }
  // Token ranges of the slices: uneven, the last possibly empty.
  std::vector<std::pair<int64_t, int64_t>> ranges() const {
    const int64_t N = c.B * c.L;
    std::vector<std::pair<int64_t, int64_t>> r;
    int64_t a = 0;
    for (int s = 0; s < c.slices; ++s) {
      const int64_t e = s + 1 == c.slices ? N : std::min(N, a + (N * (s + 2)) / (c.slices * 3 + 1));
      r.push_back({a, e});
      a = e;
    }
    return r;
  }
};

double tol(lrnn_dtype t) {
  if (t == LRNN_F64) return 1e-11;
  if (t == LRNN_F32) return 2e-5;
  if (t == LRNN_BF16) return 1.6e-2;
  return 2e-3;
}

void expect_near(double got, double want, double scale, double tl, const char* what, size_t i) {
  ASSERT_NEAR(got, want, tl * std::max(1.0, scale)) << what << " at " << i;
}

void run_forward(const Case& c) {
  Problem pr(c);
  CBuf v(is64(c), c.B * c.L * c.P);
  Buf y(c.dtype, c.B * c.L * c.O);
  lrnn_mimo_params p = pr.params();
  p.v = v.data();
  p.y = y.data();
  for (auto [a, e] : pr.ranges()) {
    ASSERT_EQ(lrnn_mimo_in_fwd_cpu(&p, a, e), LRNN_OK);
    ASSERT_EQ(lrnn_mimo_out_fwd_cpu(&p, a, e), LRNN_OK);
  }
  const double tl = tol(c.dtype);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t t = 0; t < c.L; ++t) {
      for (int64_t q = 0; q < c.P; ++q) {
        cd want = 0;
        double mag = 0;
        for (int64_t j = 0; j < c.H; ++j) { want += pr.Bt(b, t, q, j) * pr.U(b, t, j); mag += std::abs(pr.Bt(b, t, q, j)); }
        const size_t i = (b * c.L + t) * c.P + q;
        // v is a state-type output: its error is float rounding of sums of size ~mag
        const double vt = is64(c) ? 1e-12 : 1e-5;
        expect_near(v.get(i).real(), want.real(), mag, vt, "v.re", i);
        expect_near(v.get(i).imag(), want.imag(), mag, vt, "v.im", i);
      }
      for (int64_t o = 0; o < c.O; ++o) {
        double want = 0, mag = 0;
        for (int64_t q = 0; q < c.P; ++q) {
          const cd z = pr.Ct(b, t, o, q) * pr.h.val[(b * c.L + t) * c.P + q];
          want += z.real();
          mag += std::abs(z);
        }
        const size_t i = (b * c.L + t) * c.O + o;
        expect_near(y.get(i), want, mag, tl, "y", i);
      }
    }
}

struct Grads {
  std::vector<double> du, dwb, dbb, dwc, dbc;
  std::vector<cd> gh;
};

// The naive backward: gC = dy conj(h), gh = sum_o dy conj(C), gB = dv u, from explicit B_t, C_t.
Grads naive_backward(const Problem& pr) {
  const Case& c = pr.c;
  Grads g;
  g.du.assign(c.B * c.L * c.H, 0.0);
  g.dwb.assign(c.P * c.H * 2 * c.H, 0.0);
  g.dbb.assign(c.P * c.H * 2, 0.0);
  g.dwc.assign(c.O * c.P * 2 * c.H, 0.0);
  g.dbc.assign(c.O * c.P * 2, 0.0);
  g.gh.assign(c.B * c.L * c.P, 0.0);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t t = 0; t < c.L; ++t) {
      const int64_t k = b * c.L + t;
      double* du = &g.du[k * c.H];
      for (int64_t o = 0; o < c.O; ++o)
        for (int64_t q = 0; q < c.P; ++q) {
          const double d = pr.dy.val[k * c.O + o];
          const cd gC = d * std::conj(pr.h.val[k * c.P + q]);
          g.gh[k * c.P + q] += d * std::conj(pr.Ct(b, t, o, q));
          for (int k2 = 0; k2 < 2; ++k2) {
            const double gc = k2 ? gC.imag() : gC.real();
            g.dbc[(o * c.P + q) * 2 + k2] += gc;
            for (int64_t i = 0; i < c.H; ++i) {
              g.dwc[((o * c.P + q) * 2 + k2) * c.H + i] += gc * pr.U(b, t, i);
              du[i] += pr.WC(o, q, k2, i) * gc;
            }
          }
        }
      for (int64_t q = 0; q < c.P; ++q) {
        const cd dv = pr.dv.val[k * c.P + q];
        for (int64_t j = 0; j < c.H; ++j) {
          const cd gB = dv * pr.U(b, t, j);
          du[j] += (std::conj(dv) * pr.Bt(b, t, q, j)).real();
          for (int k2 = 0; k2 < 2; ++k2) {
            const double gb = k2 ? gB.imag() : gB.real();
            g.dbb[(q * c.H + j) * 2 + k2] += gb;
            for (int64_t i = 0; i < c.H; ++i) {
              g.dwb[((q * c.H + j) * 2 + k2) * c.H + i] += gb * pr.U(b, t, i);
              du[i] += pr.WB(q, j, k2, i) * gb;
            }
          }
        }
      }
    }
  return g;
}

void run_backward(const Case& c) {
  Problem pr(c);
  const Grads want = naive_backward(pr);
  const int S = c.slices;
  const int64_t nwc = c.O * c.P * 2 * c.H, nbc = c.O * c.P * 2, nwb = c.P * c.H * 2 * c.H, nbb = c.P * c.H * 2;
  CBuf gh(is64(c), c.B * c.L * c.P);
  Buf du(c.dtype, c.B * c.L * c.H);
  Buf pwc(pr.acc, S * nwc), pbc(pr.acc, S * nbc), pwb(pr.acc, S * nwb), pbb(pr.acc, S * nbb);
  Buf dwc(pr.acc, nwc), dbc(pr.acc, nbc), dwb(pr.acc, nwb), dbb(pr.acc, nbb);
  lrnn_mimo_params p = pr.params();
  p.y = pr.dy.data();
  p.hs = pr.h.data();
  p.h = gh.data();
  p.v = pr.dv.data();
  p.du = du.data();
  const auto rg = pr.ranges();
  // poison the partials: every slice must be overwritten
  for (Buf* b : {&pwc, &pbc, &pwb, &pbb})
    for (size_t i = 0; i < b->val.size(); ++i) b->set(i, 1e3);
  p.dw = pwc.data();
  p.db = c.bias ? pbc.data() : nullptr;
  for (int s = 0; s < S; ++s) ASSERT_EQ(lrnn_mimo_out_bwd_cpu(&p, rg[s].first, rg[s].second, s), LRNN_OK);
  p.dw = pwb.data();
  p.db = c.bias ? pbb.data() : nullptr;
  for (int s = 0; s < S; ++s) ASSERT_EQ(lrnn_mimo_in_bwd_cpu(&p, rg[s].first, rg[s].second, s), LRNN_OK);
  ASSERT_EQ(lrnn_mimo_reduce_cpu(dwc.data(), pwc.data(), S, nwc, pr.acc, 0, nwc), LRNN_OK);
  ASSERT_EQ(lrnn_mimo_reduce_cpu(dwb.data(), pwb.data(), S, nwb, pr.acc, 0, nwb / 2), LRNN_OK);
  ASSERT_EQ(lrnn_mimo_reduce_cpu(dwb.data(), pwb.data(), S, nwb, pr.acc, nwb / 2, nwb), LRNN_OK);
  if (c.bias) {
    ASSERT_EQ(lrnn_mimo_reduce_cpu(dbc.data(), pbc.data(), S, nbc, pr.acc, 0, nbc), LRNN_OK);
    ASSERT_EQ(lrnn_mimo_reduce_cpu(dbb.data(), pbb.data(), S, nbb, pr.acc, 0, nbb), LRNN_OK);
  }
  const double tl = tol(c.dtype) * 2, at = is64(c) ? 1e-11 : 1e-5;
  // scales: sums over tokens and states; the tolerance grows with the number of terms
  const double tokens = (double)(c.B * c.L);
  for (size_t i = 0; i < want.gh.size(); ++i) {
    expect_near(gh.get(i).real(), want.gh[i].real(), (double)c.O, at, "gh.re", i);
    expect_near(gh.get(i).imag(), want.gh[i].imag(), (double)c.O, at, "gh.im", i);
  }
  for (size_t i = 0; i < want.du.size(); ++i)
    expect_near(du.get(i), want.du[i], (double)(c.O + c.P * c.H), tl, "du", i);
  for (size_t i = 0; i < want.dwc.size(); ++i) expect_near(dwc.get(i), want.dwc[i], tokens, at, "dwc", i);
  for (size_t i = 0; i < want.dwb.size(); ++i) expect_near(dwb.get(i), want.dwb[i], tokens, at, "dwb", i);
  if (c.bias) {
    for (size_t i = 0; i < want.dbc.size(); ++i) expect_near(dbc.get(i), want.dbc[i], tokens, at, "dbc", i);
    for (size_t i = 0; i < want.dbb.size(); ++i) expect_near(dbb.get(i), want.dbb[i], tokens, at, "dbb", i);
  }
}

TEST(MimoSelectiveScanForward, EveryDtypeOddSizes) {
  for (lrnn_dtype t : {LRNN_F64, LRNN_F32, LRNN_BF16, LRNN_F16}) {
    SCOPED_TRACE(t);
    run_forward({2, 7, 5, 3, 4, t});
    run_forward({1, 5, 37, 6, 3, t, false, 4});   // H over one du tile
    run_forward({3, 1, 1, 1, 1, t, true, 2});
  }
}

TEST(MimoSelectiveScanBackward, EveryDtypeOddSizes) {
  for (lrnn_dtype t : {LRNN_F64, LRNN_F32, LRNN_BF16, LRNN_F16}) {
    SCOPED_TRACE(t);
    run_backward({2, 7, 5, 3, 4, t});
    run_backward({1, 5, 37, 6, 3, t, false, 4});
    run_backward({3, 1, 1, 1, 1, t, true, 5});   // more slices than tokens: empty slices are zeros
  }
}

// The adjoint of (in, out) against central differences of the float64 forward: the directional
// derivative of J(u) = sum dy * y(u) + Re sum conj(dv) v(u) (with h held fixed) along a random
// direction equals <du, direction>.
TEST(MimoSelectiveScanBackward, InputGradientMatchesFiniteDifferences) {
  const Case c{2, 3, 6, 4, 5, LRNN_F64};
  Problem pr(c);
  std::mt19937 rng(99);
  std::uniform_real_distribution<double> s(-1.0, 1.0);
  std::vector<double> dir(pr.u.val.size());
  for (double& d : dir) d = s(rng);
  auto J = [&](double eps) {
    Problem q(c);
    for (size_t i = 0; i < q.u.val.size(); ++i) q.u.set(i, pr.u.val[i] + eps * dir[i]);
    CBuf v(true, c.B * c.L * c.P);
    Buf y(c.dtype, c.B * c.L * c.O);
    lrnn_mimo_params p = q.params();
    p.v = v.data();
    p.y = y.data();
    EXPECT_EQ(lrnn_mimo_in_fwd_cpu(&p, 0, c.B * c.L), LRNN_OK);
    EXPECT_EQ(lrnn_mimo_out_fwd_cpu(&p, 0, c.B * c.L), LRNN_OK);
    double j = 0;
    for (size_t i = 0; i < y.val.size(); ++i) j += pr.dy.val[i] * y.get(i);
    for (size_t i = 0; i < v.val.size(); ++i) j += (std::conj(pr.dv.val[i]) * v.get(i)).real();
    return j;
  };
  const double eps = 1e-5, fd = (J(eps) - J(-eps)) / (2 * eps);
  Buf du(c.dtype, c.B * c.L * c.H), pw(LRNN_F64, c.P * c.H * 2 * c.H + c.O * c.P * 2 * c.H);
  Buf pdb(LRNN_F64, c.P * c.H * 2 + c.O * c.P * 2);
  CBuf gh(true, c.B * c.L * c.P);
  lrnn_mimo_params p = pr.params();
  p.y = pr.dy.data();
  p.hs = pr.h.data();
  p.h = gh.data();
  p.v = pr.dv.data();
  p.du = du.data();
  p.dw = pw.data();
  p.db = pdb.data();
  ASSERT_EQ(lrnn_mimo_out_bwd_cpu(&p, 0, c.B * c.L, 0), LRNN_OK);
  ASSERT_EQ(lrnn_mimo_in_bwd_cpu(&p, 0, c.B * c.L, 0), LRNN_OK);
  double an = 0;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t t = 0; t < c.L; ++t)
      for (int64_t i = 0; i < c.H; ++i) an += du.get((b * c.L + t) * c.H + i) * dir[((b * c.L + t) * c.H + i) * pr.us];
  EXPECT_NEAR(an, fd, 1e-6 * std::max(1.0, std::abs(fd)));
}

TEST(MimoSelectiveScan, RejectsBadArguments) {
  Problem pr({1, 3, 2, 2, 2, LRNN_F32});
  CBuf v(false, 6);
  lrnn_mimo_params p = pr.params();
  p.v = v.data();
  EXPECT_EQ(lrnn_mimo_in_fwd_cpu(nullptr, 0, 1), LRNN_ERR_ARGUMENT);
  EXPECT_EQ(lrnn_mimo_in_fwd_cpu(&p, 0, 4), LRNN_ERR_ARGUMENT);   // past B*L
  EXPECT_EQ(lrnn_mimo_in_fwd_cpu(&p, 2, 1), LRNN_ERR_ARGUMENT);
  lrnn_mimo_params q = p;
  q.state_dtype = LRNN_C128;
  EXPECT_EQ(lrnn_mimo_in_fwd_cpu(&q, 0, 1), LRNN_ERR_DTYPE);   // float32 u needs complex64 states
  q = p;
  q.state_dim = -1;
  EXPECT_EQ(lrnn_mimo_in_fwd_cpu(&q, 0, 1), LRNN_ERR_SHAPE);
  q = p;
  q.wb = nullptr;
  EXPECT_EQ(lrnn_mimo_in_fwd_cpu(&q, 0, 1), LRNN_ERR_ARGUMENT);
  EXPECT_EQ(lrnn_mimo_out_fwd_cpu(&p, 0, 1), LRNN_ERR_ARGUMENT);   // no y
  EXPECT_EQ(lrnn_mimo_out_bwd_cpu(&p, 0, 1, 0), LRNN_ERR_ARGUMENT);   // no dw
  EXPECT_EQ(lrnn_mimo_reduce_cpu(nullptr, nullptr, 1, 4, LRNN_F32, 0, 4), LRNN_ERR_ARGUMENT);
  float part[8] = {0}, out[4];
  EXPECT_EQ(lrnn_mimo_reduce_cpu(out, part, 2, 4, LRNN_BF16, 0, 4), LRNN_ERR_DTYPE);
  EXPECT_EQ(lrnn_mimo_reduce_cpu(out, part, 2, 4, LRNN_F32, 0, 5), LRNN_ERR_ARGUMENT);
}

}  // namespace
