// test_emu_mimo_selective_scan.cpp: runs the CUDA stages of the MIMO selective scan
// (csrc/cuda/mimo_selective_scan.cu, on the CPU through the emulation in this folder) against
// naive double loops written here from the formulas of lrnn/mimo_selective_scan.h: in_fwd (v),
// out_fwd (y), out_bwd (gh, du, dwc, dbc), in_bwd (du +=, dwb, dbb). Random inputs; f32 / bf16 /
// f16; odd sizes around the 128-row and 32 / 64-column tiles and the 16-wide chunks, L = 1,
// several token slices of the weight gradients, with and without biases, the kernels' variants
// for wide X (O > 144) and wide u (H > 294); every tensor strided
// (time-major, spaced last axes, permuted weights). Outputs are poisoned with NaN first; in the
// case with several token slices the backward runs twice and must give bitwise equal results.
// Kept small: the emulation starts one thread per CUDA thread, and the blocks of a launch run
// one at a time. Usage: test_emu_mimo_selective_scan [random cases] [only this case index].
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "lrnn/mimo_selective_scan.h"

extern "C" {
#include "../../csrc/cpu/scalar.h"
}

namespace {

std::mt19937_64 rng(7);
double uni(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }

int reals(lrnn_dtype t) { return t == LRNN_C64 ? 2 : 1; }
int esize(lrnn_dtype t) { return t == LRNN_F32 ? 4 : t == LRNN_C64 ? 8 : 2; }
void put(lrnn_dtype t, void *b, int64_t i, double v) {  // i: index of a real
  switch (t) {
    case LRNN_F32: case LRNN_C64: ((float *)b)[i] = (float)v; break;
    case LRNN_BF16: ((uint16_t *)b)[i] = lrnn_f32_to_bf16((float)v); break;
    case LRNN_F16: ((uint16_t *)b)[i] = lrnn_f32_to_f16((float)v); break;
    default: break;
  }
}
double get(lrnn_dtype t, const void *b, int64_t i) {
  switch (t) {
    case LRNN_F32: case LRNN_C64: return ((const float *)b)[i];
    case LRNN_BF16: return lrnn_bf16_to_f32(((const uint16_t *)b)[i]);
    case LRNN_F16: return lrnn_f16_to_f32(((const uint16_t *)b)[i]);
    default: return 0;
  }
}

// A strided tensor: shape, strides (elements; a complex element is 2 reals), storage poisoned
// with NaN; at(idx) is the offset in elements.
struct Ten {
  lrnn_dtype t;
  std::vector<int64_t> shape, st;
  std::vector<unsigned char> mem;
  Ten(lrnn_dtype t_, std::vector<int64_t> shape_, std::vector<int64_t> st_) : t(t_), shape(shape_), st(st_) {
    int64_t span = 1;
    for (size_t k = 0; k < shape.size(); ++k) span += (shape[k] - 1) * st[k];
    mem.resize((size_t)(span * esize(t)) + 16);
    for (int64_t i = 0; i < span * reals(t); ++i) put(t, mem.data(), i, NAN);
  }
  void *ptr() { return mem.data(); }
  int64_t at(std::initializer_list<int64_t> idx) const {
    int64_t o = 0, k = 0;
    for (int64_t i : idx) o += i * st[k++];
    return o;
  }
  double re(int64_t off) const { return get(t, mem.data(), off * reals(t)); }
  double im(int64_t off) const { return get(t, mem.data(), off * reals(t) + 1); }
  void set(int64_t off, double r, double i = 0) {
    put(t, mem.data(), off * reals(t), r);
    if (reals(t) == 2) put(t, mem.data(), off * reals(t) + 1, i);
  }
  int64_t count() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
  // visits every index of the shape
  template <typename F> void each(F f) const {
    std::vector<int64_t> idx(shape.size(), 0);
    for (int64_t n = 0; n < count(); ++n) {
      int64_t o = 0;
      for (size_t k = 0; k < shape.size(); ++k) o += idx[k] * st[k];
      f(idx, o);
      for (int k = (int)shape.size() - 1; k >= 0; --k) {
        if (++idx[k] < shape[k]) break;
        idx[k] = 0;
      }
    }
  }
  void randn(double lo, double hi) {
    each([&](const std::vector<int64_t> &, int64_t o) { set(o, uni(lo, hi), uni(lo, hi)); });
  }
};

// Token tensor (B, L, X): layout 0 contiguous, 1 time-major (L, B, X), 2 last axis spaced by 3.
Ten tok(lrnn_dtype t, int64_t B, int64_t L, int64_t X, int layout) {
  if (layout == 1) return Ten(t, {B, L, X}, {X, B * X, 1});
  if (layout == 2) return Ten(t, {B, L, X}, {L * X * 3, X * 3, 3});
  return Ten(t, {B, L, X}, {L * X, X, 1});
}
// Weight (A, Bd, 2, H): contiguous, or the (re, im) axis outermost with the H axis spaced by 2.
Ten wt(int64_t A, int64_t Bd, int64_t H, bool perm) {
  if (perm) return Ten(LRNN_F32, {A, Bd, 2, H}, {Bd * 2 * H, 2 * H, A * Bd * 2 * H, 2});
  return Ten(LRNN_F32, {A, Bd, 2, H}, {Bd * 2 * H, 2 * H, H, 1});
}
Ten bias_t(int64_t A, int64_t Bd, bool perm) {
  if (perm) return Ten(LRNN_F32, {A, Bd, 2}, {Bd, 1, A * Bd});
  return Ten(LRNN_F32, {A, Bd, 2}, {Bd * 2, 2, 1});
}
void strides(const Ten &x, int64_t *dst) {
  for (size_t k = 0; k < x.st.size(); ++k) dst[k] = x.st[k];
}

int failures = 0, checks = 0;

// max |got - want| over the entries of a tensor against tol * max |want|
template <typename W>
void compare(const std::string &tag, const char *what, const Ten &got, W want, double tol) {
  double scale = 1e-30, worst = 0;
  got.each([&](const std::vector<int64_t> &idx, int64_t) {
    const auto w = want(idx);
    scale = std::fmax(scale, std::fmax(std::fabs(w.first), std::fabs(w.second)));
  });
  got.each([&](const std::vector<int64_t> &idx, int64_t o) {
    const auto w = want(idx);
    double e = std::fabs(got.re(o) - w.first);
    if (reals(got.t) == 2) e = std::fmax(e, std::fabs(got.im(o) - w.second));
    if (!(e <= worst)) worst = std::isnan(e) ? INFINITY : e;
  });
  ++checks;
  if (!(worst <= tol * scale)) {
    ++failures;
    std::printf("FAIL %s %s: max err %.3g (scale %.3g, tol %.3g)\n", tag.c_str(), what, worst, scale, tol);
  }
}

struct Case {
  lrnn_dtype dt;
  int64_t B, L, H, P, O;
  bool bias;
  int layout;   // token tensors
  bool perm;    // weights
  bool again;   // run each backward twice and compare the bits
};

void run_case(const Case &c) {
  const int64_t B = c.B, L = c.L, H = c.H, P = c.P, O = c.O, N = B * L;
  char buf[200];
  std::snprintf(buf, sizeof buf, "dt=%d B=%lld L=%lld H=%lld P=%lld O=%lld bias=%d layout=%d perm=%d", (int)c.dt,
                (long long)B, (long long)L, (long long)H, (long long)P, (long long)O, c.bias, c.layout, c.perm);
  const std::string tag = buf;
  const double tol = c.dt == LRNN_F32 ? 1e-5 : c.dt == LRNN_BF16 ? 1e-2 : 2e-3;   // outputs in dtype
  const double tol_c = 1e-5;                                                       // complex64 / f32 outputs

  Ten u = tok(c.dt, B, L, H, c.layout), wb = wt(P, H, H, c.perm), bb = bias_t(P, H, c.perm), wc = wt(O, P, H, c.perm),
      bc = bias_t(O, P, c.perm);
  u.randn(-1, 1);
  wb.randn(-0.5, 0.5);
  bb.randn(-0.5, 0.5);
  wc.randn(-0.5, 0.5);
  bc.randn(-0.5, 0.5);
  Ten v = tok(LRNN_C64, B, L, P, (c.layout + 1) % 3), h = tok(LRNN_C64, B, L, P, (c.layout + 2) % 3),
      y = tok(c.dt, B, L, O, c.layout);
  h.randn(-1, 1);   // the forward state, input of out_fwd

  lrnn_mimo_params p{};
  p.u = u.ptr(); strides(u, p.u_stride);
  p.wb = wb.ptr(); strides(wb, p.wb_stride);
  p.wc = wc.ptr(); strides(wc, p.wc_stride);
  if (c.bias) {
    p.bb = bb.ptr(); strides(bb, p.bb_stride);
    p.bc = bc.ptr(); strides(bc, p.bc_stride);
  }
  p.batch = B; p.length = L; p.in_dim = H; p.state_dim = P; p.out_dim = O;
  p.dtype = c.dt; p.state_dtype = LRNN_C64;

  auto U = [&](int64_t b, int64_t t, int64_t i) { return u.re(u.at({b, t, i})); };
  auto Bias = [&](const Ten &x, int64_t a, int64_t bd, int64_t cc) { return c.bias ? x.re(x.at({a, bd, cc})) : 0.0; };
  // B_t[p, j, c] and C_t[o, p, c] in double
  auto Bt = [&](int64_t b, int64_t t, int64_t pp, int64_t j, int cc) {
    double s = Bias(bb, pp, j, cc);
    for (int64_t i = 0; i < H; ++i) s += wb.re(wb.at({pp, j, cc, i})) * U(b, t, i);
    return s;
  };
  auto Ct = [&](int64_t b, int64_t t, int64_t o, int64_t pp, int cc) {
    double s = Bias(bc, o, pp, cc);
    for (int64_t i = 0; i < H; ++i) s += wc.re(wc.at({o, pp, cc, i})) * U(b, t, i);
    return s;
  };

  // ---- in_fwd: v[p] = sum_j B[p, j] u[j]
  p.v = v.ptr(); strides(v, p.v_stride);
  std::vector<unsigned char> fws_in((size_t)lrnn_mimo_fwd_workspace_bytes_cuda(&p, 1) + 1, 0xff);
  if (lrnn_mimo_in_fwd_cuda(&p, fws_in.data(), nullptr) != LRNN_OK) { ++failures; std::printf("FAIL in_fwd status %s\n", tag.c_str()); return; }
  compare(tag, "v", v, [&](const std::vector<int64_t> &x) {
    double re = 0, im = 0;
    for (int64_t j = 0; j < H; ++j) {
      re += Bt(x[0], x[1], x[2], j, 0) * U(x[0], x[1], j);
      im += Bt(x[0], x[1], x[2], j, 1) * U(x[0], x[1], j);
    }
    return std::make_pair(re, im);
  }, tol_c);

  // ---- out_fwd: y[o] = Re sum_p C[o, p] h[p]
  p.h = h.ptr(); strides(h, p.h_stride);
  p.y = y.ptr(); strides(y, p.y_stride);
  std::vector<unsigned char> fws_out((size_t)lrnn_mimo_fwd_workspace_bytes_cuda(&p, 0) + 1, 0xff);
  if (lrnn_mimo_out_fwd_cuda(&p, fws_out.data(), nullptr) != LRNN_OK) { ++failures; std::printf("FAIL out_fwd status %s\n", tag.c_str()); return; }
  compare(tag, "y", y, [&](const std::vector<int64_t> &x) {
    double s = 0;
    for (int64_t pp = 0; pp < P; ++pp) {
      const int64_t ho = h.at({x[0], x[1], pp});
      s += Ct(x[0], x[1], x[2], pp, 0) * h.re(ho) - Ct(x[0], x[1], x[2], pp, 1) * h.im(ho);
    }
    return std::make_pair(s, 0.0);
  }, tol);

  // ---- out_bwd: dy (y slot), hs (forward h) -> gh (h slot), du, dwc, dbc
  Ten dy = tok(c.dt, B, L, O, (c.layout + 1) % 3), hs = tok(LRNN_C64, B, L, P, c.layout),
      gh = tok(LRNN_C64, B, L, P, (c.layout + 2) % 3), du = tok(c.dt, B, L, H, (c.layout + 1) % 3);
  dy.randn(-1, 1);
  hs.randn(-1, 1);
  Ten dwc(LRNN_F32, {O * P * 2 * H}, {1}), dbc(LRNN_F32, {O * P * 2}, {1});
  lrnn_mimo_params q = p;
  q.y = dy.ptr(); strides(dy, q.y_stride);
  q.hs = hs.ptr(); strides(hs, q.hs_stride);
  q.h = gh.ptr(); strides(gh, q.h_stride);
  q.du = du.ptr(); strides(du, q.du_stride);
  q.dw = dwc.ptr();
  q.db = c.bias ? dbc.ptr() : nullptr;
  std::vector<unsigned char> ws((size_t)lrnn_mimo_bwd_workspace_bytes_cuda(&q, 0) + 1, 0xff);
  if (lrnn_mimo_out_bwd_cuda(&q, ws.data(), nullptr) != LRNN_OK) { ++failures; std::printf("FAIL out_bwd status %s\n", tag.c_str()); return; }
  auto DY = [&](int64_t b, int64_t t, int64_t o) { return dy.re(dy.at({b, t, o})); };
  auto GC = [&](int64_t b, int64_t t, int64_t o, int64_t pp, int cc) {   // dy[o] conj(h[p]), part cc
    const int64_t ho = hs.at({b, t, pp});
    return DY(b, t, o) * (cc ? -hs.im(ho) : hs.re(ho));
  };
  compare(tag, "gh", gh, [&](const std::vector<int64_t> &x) {
    double re = 0, im = 0;
    for (int64_t o = 0; o < O; ++o) {
      re += DY(x[0], x[1], o) * Ct(x[0], x[1], o, x[2], 0);
      im -= DY(x[0], x[1], o) * Ct(x[0], x[1], o, x[2], 1);
    }
    return std::make_pair(re, im);
  }, tol_c);
  compare(tag, "du (out)", du, [&](const std::vector<int64_t> &x) {
    double s = 0;
    for (int64_t o = 0; o < O; ++o)
      for (int64_t pp = 0; pp < P; ++pp)
        for (int cc = 0; cc < 2; ++cc) s += wc.re(wc.at({o, pp, cc, x[2]})) * GC(x[0], x[1], o, pp, cc);
    return std::make_pair(s, 0.0);
  }, tol);
  compare(tag, "dwc", dwc, [&](const std::vector<int64_t> &x) {
    const int64_t i = x[0] % H, r = x[0] / H, cc = r % 2, pp = (r / 2) % P, o = r / (2 * P);
    double s = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < L; ++t) s += GC(b, t, o, pp, (int)cc) * U(b, t, i);
    return std::make_pair(s, 0.0);
  }, tol_c);
  if (c.bias)
    compare(tag, "dbc", dbc, [&](const std::vector<int64_t> &x) {
      const int64_t cc = x[0] % 2, pp = (x[0] / 2) % P, o = x[0] / (2 * P);
      double s = 0;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < L; ++t) s += GC(b, t, o, pp, (int)cc);
      return std::make_pair(s, 0.0);
    }, tol_c);
  // reproducible: a second run gives the same bits
  std::vector<unsigned char> dwc1 = dwc.mem, du1 = du.mem, gh1 = gh.mem;
  if (c.again && (lrnn_mimo_out_bwd_cuda(&q, ws.data(), nullptr) != LRNN_OK || dwc1 != dwc.mem || du1 != du.mem || gh1 != gh.mem)) {
    ++failures;
    std::printf("FAIL %s out_bwd not reproducible\n", tag.c_str());
  }

  // ---- in_bwd: dv (v slot) -> du += ..., dwb, dbb (du holds the out_bwd result)
  Ten dv = tok(LRNN_C64, B, L, P, (c.layout + 2) % 3);
  dv.randn(-1, 1);
  Ten dwb(LRNN_F32, {P * H * 2 * H}, {1}), dbb(LRNN_F32, {P * H * 2}, {1});
  lrnn_mimo_params r = q;
  r.v = dv.ptr(); strides(dv, r.v_stride);
  r.dw = dwb.ptr();
  r.db = c.bias ? dbb.ptr() : nullptr;
  std::vector<double> du_mid((size_t)(N * H));   // du as stored before in_bwd (rounded to dtype)
  du.each([&](const std::vector<int64_t> &x, int64_t o) { du_mid[(size_t)((x[0] * L + x[1]) * H + x[2])] = du.re(o); });
  std::vector<unsigned char> du_before = du.mem;
  std::vector<unsigned char> ws2((size_t)lrnn_mimo_bwd_workspace_bytes_cuda(&r, 1) + 1, 0xff);
  if (lrnn_mimo_in_bwd_cuda(&r, ws2.data(), nullptr) != LRNN_OK) { ++failures; std::printf("FAIL in_bwd status %s\n", tag.c_str()); return; }
  auto DV = [&](int64_t b, int64_t t, int64_t pp, int cc) {
    const int64_t o = dv.at({b, t, pp});
    return cc ? dv.im(o) : dv.re(o);
  };
  compare(tag, "du (in)", du, [&](const std::vector<int64_t> &x) {
    const int64_t b = x[0], t = x[1], j = x[2];
    double s = du_mid[(size_t)((b * L + t) * H + j)];
    for (int64_t pp = 0; pp < P; ++pp)   // Re(conj(dv[p]) B[p, j])
      s += DV(b, t, pp, 0) * Bt(b, t, pp, j, 0) + DV(b, t, pp, 1) * Bt(b, t, pp, j, 1);
    for (int64_t pp = 0; pp < P; ++pp)   // sum_{p, j', c} wb[p, j', c, i] dv[p]_c u[j'] at i = j
      for (int64_t jj = 0; jj < H; ++jj)
        for (int cc = 0; cc < 2; ++cc) s += wb.re(wb.at({pp, jj, cc, j})) * DV(b, t, pp, cc) * U(b, t, jj);
    return std::make_pair(s, 0.0);
  }, tol);
  compare(tag, "dwb", dwb, [&](const std::vector<int64_t> &x) {
    const int64_t i = x[0] % H, rr = x[0] / H, cc = rr % 2, j = (rr / 2) % H, pp = rr / (2 * H);
    double s = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < L; ++t) s += DV(b, t, pp, (int)cc) * U(b, t, j) * U(b, t, i);
    return std::make_pair(s, 0.0);
  }, tol_c);
  if (c.bias)
    compare(tag, "dbb", dbb, [&](const std::vector<int64_t> &x) {
      const int64_t cc = x[0] % 2, j = (x[0] / 2) % H, pp = x[0] / (2 * H);
      double s = 0;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < L; ++t) s += DV(b, t, pp, (int)cc) * U(b, t, j);
      return std::make_pair(s, 0.0);
    }, tol_c);
  std::vector<unsigned char> dwb1 = dwb.mem, du2 = du.mem;
  du.mem = du_before;
  if (c.again && (lrnn_mimo_in_bwd_cuda(&r, ws2.data(), nullptr) != LRNN_OK || dwb1 != dwb.mem || du2 != du.mem)) {
    ++failures;
    std::printf("FAIL %s in_bwd not reproducible\n", tag.c_str());
  }
}

}  // namespace

int main(int argc, char **argv) {
  const int extra = argc > 1 ? std::atoi(argv[1]) : 0;
  const lrnn_dtype F = LRNN_F32, BF = LRNN_BF16, HF = LRNN_F16;
  std::vector<Case> cases = {
      {F, 2, 7, 5, 3, 2, true, 0, false},            // small, contiguous
      {BF, 1, 1, 7, 2, 3, true, 1, true},            // L = 1
      {HF, 3, 50, 11, 5, 4, true, 1, false},         // two token tiles (150 tokens)
      {F, 2, 260, 2, 1, 2, true, 2, true, true},     // 520 tokens: two slices of the weight gradients
      {F, 1, 40, 66, 1, 2, false, 2, false},         // H > 64: two passes over i, five K chunks; no bias
      {BF, 2, 9, 3, 17, 1, true, 0, true},           // 2P = 34: 64-wide column tiles
      {HF, 1, 5, 5, 1, 129, false, 2, true},         // O = 129: three 64-wide column tiles
      {F, 3, 1, 8, 8, 8, true, 1, false},            // powers of two, L = 1
      {HF, 1, 20, 5, 2, 150, true, 1, false},        // O = 150: out_bwd without X in shared memory
  };
  // H = 300: the forward stages without the panel (fwd2). Three minutes under ASan on two cores, so
  // `make test` leaves it out; EMU_MIMO_WIDE=1 tests/cuda_emu/run.sh 0 mimo runs it.
  if (std::getenv("EMU_MIMO_WIDE")) cases.push_back({F, 1, 3, 300, 1, 2, true, 2, false});
  for (int k = 0; k < extra; ++k) {
    const lrnn_dtype d = k % 3 == 0 ? F : k % 3 == 1 ? BF : HF;
    cases.push_back({d, 1 + (int64_t)(rng() % 3), 1 + (int64_t)(rng() % 40), 1 + (int64_t)(rng() % 20),
                     1 + (int64_t)(rng() % 9), 1 + (int64_t)(rng() % 9), rng() % 2 == 0, (int)(rng() % 3),
                     rng() % 2 == 0, false});
  }
  const int only = argc > 2 ? std::atoi(argv[2]) : -1;   // one case (its index), for timing
  for (size_t k = 0; k < cases.size(); ++k)
    if (only < 0 || (size_t)only == k) run_case(cases[k]);
  std::printf("test_emu_mimo_selective_scan: %d cases, %d checks, %d failures\n", (int)cases.size(), checks, failures);
  return failures ? 1 : 0;
}
