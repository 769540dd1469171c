// test_event_scan.cpp: the CPU event-scan kernels against a naive complex-double loop written
// from the definitions, and the backward against central finite differences of that loop (so
// the adjoint formulas are checked independently). Random inputs with a fixed seed; time gaps
// include exact zeros (identity transitions).
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "lrnn/event_scan.h"
#include "../../csrc/cpu/scalar.h"

namespace {

using cd = std::complex<double>;

struct Case {
  int64_t B, L, P;
  lrnn_dtype dtype, real_dtype;
  int disc;
  bool per_event_delta = false, reverse = false, has_h0 = true;
};

// Inputs in double precision, already rounded to the storage types the kernel reads.
struct Problem {
  Case c;
  std::vector<cd> lambda, v, h0;
  std::vector<double> delta, dt;
  explicit Problem(const Case& cs) : c(cs) {
    std::mt19937 rng(4321);
    std::uniform_real_distribution<double> u(0.0, 1.0), s(-1.0, 1.0);
    for (int64_t p = 0; p < c.P; ++p) lambda.push_back(cd(-0.05 - u(rng), 4 * s(rng)));
    delta.resize(c.per_event_delta ? c.B * c.L * c.P : c.P);
    for (double& d : delta) d = round_real(0.02 + u(rng));
    dt.resize(c.B * c.L);
    for (size_t i = 0; i < dt.size(); ++i) dt[i] = (i % 5 == 2) ? 0.0 : round_real(2 * u(rng));
    for (int64_t i = 0; i < c.B * c.L * c.P; ++i) v.push_back(round_c(cd(s(rng), s(rng))));
    for (int64_t i = 0; i < c.B * c.P; ++i) h0.push_back(round_c(cd(s(rng), s(rng))));
    for (cd& l : lambda) l = round_c(l);
  }
  double round_real(double x) const {
    if (c.real_dtype == LRNN_BF16) return lrnn_bf16_to_f32(lrnn_f32_to_bf16((float)x));
    if (c.real_dtype == LRNN_F32) return (float)x;
    return x;
  }
  cd round_c(cd x) const { return c.dtype == LRNN_C64 ? cd((float)x.real(), (float)x.imag()) : x; }
  double del(int64_t b, int64_t t, int64_t p) const {
    return c.per_event_delta ? delta[(b * c.L + t) * c.P + p] : delta[p];
  }
  int64_t time(int64_t s) const { return c.reverse ? c.L - 1 - s : s; }
};

cd scale(int disc, cd lam, double d, double tau) {
  if (disc == LRNN_DISC_DIRAC) return 1.0;
  const double s = disc == LRNN_DISC_ZOH ? d * tau : d;
  if (lam == cd(0)) return s;                      // the limit of (exp(lam s) - 1) / lam
  return (std::exp(lam * s) - 1.0) / lam;
}

void naive(const Problem& pr, std::vector<cd>& h, std::vector<cd>& last) {
  const Case& c = pr.c;
  h.assign(c.B * c.L * c.P, 0);
  last.assign(c.B * c.P, 0);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t p = 0; p < c.P; ++p) {
      cd x = c.has_h0 ? pr.h0[b * c.P + p] : cd(0);
      for (int64_t s = 0; s < c.L; ++s) {
        const int64_t t = pr.time(s);
        const double d = pr.del(b, t, p), tau = pr.dt[b * c.L + t];
        x = std::exp(pr.lambda[p] * d * tau) * x + scale(c.disc, pr.lambda[p], d, tau) * pr.v[(b * c.L + t) * c.P + p];
        h[(b * c.L + t) * c.P + p] = x;
      }
      last[b * c.P + p] = x;
    }
}

// Typed storage for the kernel.
struct Store {
  std::vector<uint8_t> lambda, delta, dt, v, h0, h, h_last;
};
size_t csize(lrnn_dtype t) { return t == LRNN_C64 ? 8 : 16; }
size_t rsize(lrnn_dtype t) { return t == LRNN_F64 ? 8 : t == LRNN_F32 ? 4 : 2; }
void put_c(std::vector<uint8_t>& buf, lrnn_dtype t, const std::vector<cd>& x) {
  buf.resize(x.size() * csize(t));
  for (size_t i = 0; i < x.size(); ++i) {
    if (t == LRNN_C64) { float f[2] = {(float)x[i].real(), (float)x[i].imag()}; memcpy(&buf[i * 8], f, 8); }
    else { double f[2] = {x[i].real(), x[i].imag()}; memcpy(&buf[i * 16], f, 16); }
  }
}
void put_r(std::vector<uint8_t>& buf, lrnn_dtype t, const std::vector<double>& x) {
  buf.resize(x.size() * rsize(t));
  for (size_t i = 0; i < x.size(); ++i) {
    if (t == LRNN_F64) memcpy(&buf[i * 8], &x[i], 8);
    else if (t == LRNN_F32) { float f = (float)x[i]; memcpy(&buf[i * 4], &f, 4); }
    else { uint16_t f = lrnn_f32_to_bf16((float)x[i]); memcpy(&buf[i * 2], &f, 2); }
  }
}
cd get_c(const std::vector<uint8_t>& buf, lrnn_dtype t, size_t i) {
  if (t == LRNN_C64) { float f[2]; memcpy(f, &buf[i * 8], 8); return cd(f[0], f[1]); }
  double f[2]; memcpy(f, &buf[i * 16], 16); return cd(f[0], f[1]);
}

lrnn_event_scan_params make_fwd(const Problem& pr, Store& st) {
  const Case& c = pr.c;
  put_c(st.lambda, c.dtype, pr.lambda);
  put_r(st.delta, c.real_dtype, pr.delta);
  put_r(st.dt, c.real_dtype, pr.dt);
  put_c(st.v, c.dtype, pr.v);
  put_c(st.h0, c.dtype, pr.h0);
  st.h.assign(c.B * c.L * c.P * csize(c.dtype), 0xA5);   // poisoned
  st.h_last.assign(c.B * c.P * csize(c.dtype), 0xA5);
  lrnn_event_scan_params q{};
  q.h = st.h.data(); q.h_last = st.h_last.data();
  q.lambda = st.lambda.data(); q.delta = st.delta.data(); q.dt = st.dt.data(); q.v = st.v.data();
  q.h0 = c.has_h0 ? st.h0.data() : nullptr;
  q.batch = c.B; q.length = c.L; q.dim = c.P;
  q.lambda_stride = 1;
  if (c.per_event_delta) { q.delta_stride[0] = c.L * c.P; q.delta_stride[1] = c.P; q.delta_stride[2] = 1; }
  else { q.delta_stride[0] = 0; q.delta_stride[1] = 0; q.delta_stride[2] = 1; }
  for (int64_t* s : {q.v_stride, q.h_stride}) { s[0] = c.L * c.P; s[1] = c.P; s[2] = 1; }
  q.dt_stride[0] = c.L; q.dt_stride[1] = 1;
  q.h0_stride[0] = c.P; q.h0_stride[1] = 1;
  q.h_last_stride[0] = c.P; q.h_last_stride[1] = 1;
  q.dtype = c.dtype; q.real_dtype = c.real_dtype; q.disc = c.disc; q.reverse = c.reverse;
  return q;
}

double rel_err(const std::vector<uint8_t>& got, lrnn_dtype t, const std::vector<cd>& want) {
  double scale = 1, err = 0;
  for (const cd& w : want) scale = std::max(scale, std::abs(w));
  for (size_t i = 0; i < want.size(); ++i) {
    const double e = std::abs(get_c(got, t, i) - want[i]);
    err = std::isnan(e) ? INFINITY : std::max(err, e);
  }
  return err / scale;
}

void check_forward(const Case& c) {
  Problem pr(c);
  Store st;
  lrnn_event_scan_params q = make_fwd(pr, st);
  const int64_t rows = c.B * c.P, mid = rows / 2 + (rows > 2 ? 1 : 0);   // two slices, as in parallel
  ASSERT_EQ(lrnn_event_scan_fwd_cpu(&q, 0, mid), LRNN_OK);
  ASSERT_EQ(lrnn_event_scan_fwd_cpu(&q, mid, rows), LRNN_OK);
  std::vector<cd> h, last;
  naive(pr, h, last);
  const double tol = c.dtype == LRNN_C128 ? 1e-12 : 5e-5;
  EXPECT_LE(rel_err(st.h, c.dtype, h), tol);
  EXPECT_LE(rel_err(st.h_last, c.dtype, last), tol);
}

// loss = Re sum conj(W) h + Re sum conj(V) h_last: its gradient w.r.t. (h, h_last) is (W, V).
void check_backward(const Case& c) {
  Problem pr(c);
  Store st;
  lrnn_event_scan_params q = make_fwd(pr, st);
  ASSERT_EQ(lrnn_event_scan_fwd_cpu(&q, 0, c.B * c.P), LRNN_OK);
  std::mt19937 rng(77);
  std::uniform_real_distribution<double> s(-1.0, 1.0);
  std::vector<cd> W(c.B * c.L * c.P), V(c.B * c.P);
  for (cd& w : W) w = cd(s(rng), s(rng));
  for (cd& w : V) w = cd(s(rng), s(rng));
  std::vector<uint8_t> Wb, Vb;
  put_c(Wb, c.dtype, W);
  put_c(Vb, c.dtype, V);
  std::vector<uint8_t> dlam(c.B * c.P * 16), dv(c.B * c.L * c.P * 16), dh0(c.B * c.P * 16);
  std::vector<double> ddelta(c.per_event_delta ? c.B * c.L * c.P : c.B * c.P);
  lrnn_event_scan_bwd_params g{};
  g.dlambda = dlam.data(); g.ddelta = ddelta.data(); g.dv = dv.data(); g.dh0 = dh0.data();
  g.grad_h = Wb.data(); g.grad_h_last = Vb.data();
  g.lambda = q.lambda; g.delta = q.delta; g.dt = q.dt; g.v = q.v; g.h = q.h; g.h0 = q.h0;
  g.batch = c.B; g.length = c.L; g.dim = c.P; g.lambda_stride = 1;
  memcpy(g.delta_stride, q.delta_stride, sizeof g.delta_stride);
  for (int64_t* st3 : {g.v_stride, g.h_stride, g.grad_h_stride, g.dv_stride}) {
    st3[0] = c.L * c.P; st3[1] = c.P; st3[2] = 1;
  }
  if (c.per_event_delta) { g.ddelta_stride[0] = c.L * c.P; g.ddelta_stride[1] = c.P; g.ddelta_stride[2] = 1; }
  else { g.ddelta_stride[0] = c.P; g.ddelta_stride[1] = 0; g.ddelta_stride[2] = 1; }
  g.dt_stride[0] = c.L; g.dt_stride[1] = 1;
  for (int64_t* s2 : {g.grad_h_last_stride, g.h0_stride, g.dh0_stride, g.dlambda_stride}) { s2[0] = c.P; s2[1] = 1; }
  g.dtype = c.dtype; g.real_dtype = c.real_dtype; g.disc = c.disc; g.reverse = c.reverse;
  ASSERT_EQ(lrnn_event_scan_bwd_cpu(&g, 0, c.B * c.P), LRNN_OK);

  Problem work = pr;
  auto loss = [&]() {
    std::vector<cd> h, last;
    naive(work, h, last);
    double l = 0;
    for (size_t i = 0; i < h.size(); ++i) l += (std::conj(W[i]) * h[i]).real();
    for (size_t i = 0; i < last.size(); ++i) l += (std::conj(V[i]) * last[i]).real();
    return l;
  };
  const double eps = 1e-6, tol = 2e-6;
  auto fd_c = [&](cd& x) {
    const cd x0 = x;
    x = x0 + eps; double lp = loss(); x = x0 - eps; double lm = loss();
    x = x0 + cd(0, eps); double ip = loss(); x = x0 - cd(0, eps); double im = loss();
    x = x0;
    return cd((lp - lm) / (2 * eps), (ip - im) / (2 * eps));
  };
  auto fd_r = [&](double& x) {
    const double x0 = x;
    x = x0 + eps; double lp = loss(); x = x0 - eps; double lm = loss();
    x = x0;
    return (lp - lm) / (2 * eps);
  };
  for (int64_t p = 0; p < c.P; ++p) {
    cd got = 0;
    for (int64_t b = 0; b < c.B; ++b) got += get_c(dlam, LRNN_C128, b * c.P + p);
    EXPECT_NEAR(std::abs(fd_c(work.lambda[p]) - got), 0, tol) << "dLambda " << p;
  }
  for (size_t i = 0; i < work.delta.size(); ++i) {
    double got = 0;
    if (c.per_event_delta) got = ddelta[i];
    else for (int64_t b = 0; b < c.B; ++b) got += ddelta[b * c.P + i];
    EXPECT_NEAR(fd_r(work.delta[i]), got, tol) << "ddelta " << i;
  }
  for (size_t i = 0; i < work.v.size(); ++i)
    EXPECT_NEAR(std::abs(fd_c(work.v[i]) - get_c(dv, LRNN_C128, i)), 0, tol) << "dv " << i;
  if (c.has_h0)
    for (size_t i = 0; i < work.h0.size(); ++i)
      EXPECT_NEAR(std::abs(fd_c(work.h0[i]) - get_c(dh0, LRNN_C128, i)), 0, tol) << "dh0 " << i;
}

}  // namespace

TEST(EventScanForward, AllDiscretizationsTypesAndLengths) {
  const lrnn_dtype types[][2] = {{LRNN_C64, LRNN_F32}, {LRNN_C64, LRNN_BF16}, {LRNN_C128, LRNN_F64}};
  for (auto& t : types)
    for (int disc : {LRNN_DISC_ZOH, LRNN_DISC_DIRAC, LRNN_DISC_ASYNC})
      for (int64_t L : {1, 3, 1000})
        for (bool per_event : {false, true})
          for (bool rev : {false, true}) {
            SCOPED_TRACE(testing::Message() << "dtype " << t[0] << "/" << t[1] << " disc " << disc << " L " << L
                                            << " per_event " << per_event << " rev " << rev);
            check_forward({2, L, 67, t[0], t[1], disc, per_event, rev, L != 3});
          }
}

TEST(EventScanForward, ZeroLambdaUsesTheLimit) {
  for (int disc : {LRNN_DISC_ZOH, LRNN_DISC_ASYNC}) {
    Case c{1, 9, 2, LRNN_C128, LRNN_F64, disc};
    Problem pr(c);
    pr.lambda[0] = 0;
    pr.lambda[1] = cd(0, 1e-300);
    Store st;
    lrnn_event_scan_params q = make_fwd(pr, st);
    ASSERT_EQ(lrnn_event_scan_fwd_cpu(&q, 0, 2), LRNN_OK);
    std::vector<cd> h, last;
    pr.lambda[1] = 0;   // the reference's limit branch; 1e-300i is that limit to double precision
    naive(pr, h, last);
    EXPECT_LE(rel_err(st.h, c.dtype, h), 1e-14);
  }
}

TEST(EventScanForward, ZeroLengthCopiesInitialState) {
  Case c{2, 0, 3, LRNN_C64, LRNN_F32, LRNN_DISC_ASYNC};
  Problem pr(c);
  Store st;
  lrnn_event_scan_params q = make_fwd(pr, st);
  ASSERT_EQ(lrnn_event_scan_fwd_cpu(&q, 0, 6), LRNN_OK);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(get_c(st.h_last, c.dtype, i), pr.h0[i]);
}

TEST(EventScanForward, RejectsBadArguments) {
  Case c{1, 4, 2, LRNN_C64, LRNN_F32, LRNN_DISC_ZOH};
  Problem pr(c);
  Store st;
  lrnn_event_scan_params q = make_fwd(pr, st);
  EXPECT_EQ(lrnn_event_scan_fwd_cpu(&q, 0, 3), LRNN_ERR_ARGUMENT);   // past B*P rows
  EXPECT_EQ(lrnn_event_scan_fwd_cpu(nullptr, 0, 1), LRNN_ERR_ARGUMENT);
  q.real_dtype = LRNN_F64;
  EXPECT_EQ(lrnn_event_scan_fwd_cpu(&q, 0, 2), LRNN_ERR_DTYPE);
  q.real_dtype = LRNN_F32;
  q.disc = 7;
  EXPECT_EQ(lrnn_event_scan_fwd_cpu(&q, 0, 2), LRNN_ERR_ARGUMENT);
  q.disc = LRNN_DISC_ZOH;
  q.v = nullptr;
  EXPECT_EQ(lrnn_event_scan_fwd_cpu(&q, 0, 2), LRNN_ERR_ARGUMENT);
}

TEST(EventScanBackward, MatchesFiniteDifferences) {
  for (int disc : {LRNN_DISC_ZOH, LRNN_DISC_DIRAC, LRNN_DISC_ASYNC})
    for (bool per_event : {false, true})
      for (bool rev : {false, true}) {
        SCOPED_TRACE(testing::Message() << "disc " << disc << " per_event " << per_event << " rev " << rev);
        check_backward({2, 6, 3, LRNN_C128, LRNN_F64, disc, per_event, rev, true});
      }
  check_backward({1, 1, 1, LRNN_C128, LRNN_F64, LRNN_DISC_ZOH, false, false, false});
}
