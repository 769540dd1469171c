// test_selective_scan.cpp: the CPU selective-scan kernels against a naive double-precision loop,
// and the backward against central finite differences of that loop (so the adjoint formulas are
// checked independently). Inputs are random with fixed seeds; outputs are poisoned before the
// kernel runs so that unwritten elements fail.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "lrnn/selective_scan.h"
#include "../../csrc/cpu/scalar.h"

namespace {

size_t elem_size(lrnn_dtype t) { return (t == LRNN_F64) ? 8 : (t == LRNN_F32) ? 4 : 2; }

// A typed buffer read and written as doubles; starts poisoned (NaN pattern for every type).
struct Buffer {
  lrnn_dtype dtype;
  std::vector<uint8_t> bytes;
  Buffer(lrnn_dtype t, size_t n) : dtype(t), bytes(n * elem_size(t), 0xFF) {}
  void* data() { return bytes.empty() ? nullptr : bytes.data(); }
  size_t size() const { return bytes.size() / elem_size(dtype); }
  void set(size_t i, double v) {
    uint8_t* p = bytes.data() + i * elem_size(dtype);
    switch (dtype) {
      case LRNN_F32: { float f = (float)v; memcpy(p, &f, 4); break; }
      case LRNN_F64: memcpy(p, &v, 8); break;
      case LRNN_BF16: { uint16_t f = lrnn_f32_to_bf16((float)v); memcpy(p, &f, 2); break; }
      default: { uint16_t f = lrnn_f32_to_f16((float)v); memcpy(p, &f, 2); break; }
    }
  }
  double get(size_t i) const {
    const uint8_t* p = bytes.data() + i * elem_size(dtype);
    switch (dtype) {
      case LRNN_F32: { float f; memcpy(&f, p, 4); return f; }
      case LRNN_F64: { double f; memcpy(&f, p, 8); return f; }
      case LRNN_BF16: { uint16_t f; memcpy(&f, p, 2); return lrnn_bf16_to_f32(f); }
      default: { uint16_t f; memcpy(&f, p, 2); return lrnn_f16_to_f32(f); }
    }
  }
};

struct Case {
  int64_t B, D, L, N, G;
  lrnn_dtype dtype;
  bool B_var = true, C_var = true, has_D = true, has_z = true, has_bias = true, softplus = true,
       has_h0 = true, has_dtA = false, batch_first = false;
};

// All inputs as doubles in logical order: sequences (b, d, t); B/C (b, g, n, t) or (d, n).
struct Inputs {
  std::vector<double> u, delta, z, dtA, A, Bm, Cm, Dv, bias, h0;
};

Inputs random_inputs(const Case& c, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> val(-1.0, 1.0), pos(0.0, 1.0);
  Inputs in;
  const size_t S = c.B * c.D * c.L, var = c.B * c.G * c.N * c.L, ti = c.D * c.N;
  auto fill = [&](std::vector<double>& v, size_t n, double lo, double hi) {
    v.resize(n);
    for (auto& x : v) x = lo + (hi - lo) * pos(rng);
  };
  fill(in.u, S, -1, 1);
  fill(in.delta, S, c.softplus ? -3.0 : 0.0, c.softplus ? 0.5 : 0.4);
  fill(in.z, S, -2, 2);
  fill(in.dtA, S, 0.0, 0.3);
  fill(in.A, ti, -1.5, -0.1);
  fill(in.Bm, c.B_var ? var : ti, -1, 1);
  fill(in.Cm, c.C_var ? var : ti, -1, 1);
  fill(in.Dv, c.D, -1, 1);
  fill(in.bias, c.D, -0.5, 0.5);
  fill(in.h0, c.B * c.D * c.N, -1, 1);
  (void)val;
  return in;
}

struct Outputs {
  std::vector<double> y, h_last;
};

// The definition, in double.
Outputs naive_forward(const Case& c, const Inputs& in) {
  Outputs o;
  o.y.assign(c.B * c.D * c.L, 0);
  o.h_last.assign(c.B * c.D * c.N, 0);
  const int64_t dpg = c.D / c.G;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t d = 0; d < c.D; ++d) {
      const int64_t g = d / dpg;
      std::vector<double> h(c.N, 0);
      if (c.has_h0)
        for (int64_t n = 0; n < c.N; ++n) h[n] = in.h0[(b * c.D + d) * c.N + n];
      for (int64_t t = 0; t < c.L; ++t) {
        const size_t s = (b * c.D + d) * c.L + t;
        double dt = in.delta[s] + (c.has_bias ? in.bias[d] : 0);
        if (c.softplus) dt = dt <= 20 ? std::log1p(std::exp(dt)) : dt;
        const double dta = c.has_dtA ? in.dtA[s] : dt;
        double y = 0;
        for (int64_t n = 0; n < c.N; ++n) {
          const double Bv = c.B_var ? in.Bm[((b * c.G + g) * c.N + n) * c.L + t] : in.Bm[d * c.N + n];
          const double Cv = c.C_var ? in.Cm[((b * c.G + g) * c.N + n) * c.L + t] : in.Cm[d * c.N + n];
          h[n] = std::exp(dta * in.A[d * c.N + n]) * h[n] + dt * Bv * in.u[s];
          y += Cv * h[n];
        }
        if (c.has_D) y += in.Dv[d] * in.u[s];
        if (c.has_z) y *= in.z[s] / (1 + std::exp(-in.z[s]));
        o.y[s] = y;
      }
      for (int64_t n = 0; n < c.N; ++n) o.h_last[(b * c.D + d) * c.N + n] = h[n];
    }
  return o;
}

// Typed storage of the inputs with the case's layout, and the kernel params over it.
struct Problem {
  Case c;
  lrnn_dtype wt;
  int64_t seq_stride[3];
  Buffer u, delta, z, dtA, A, Bm, Cm, Dv, bias, h0, y, h_last, chunks;
  Problem(const Case& cs, const Inputs& in)
      : c(cs), wt(cs.dtype == LRNN_F64 ? LRNN_F64 : LRNN_F32),
        u(cs.dtype, cs.B * cs.D * cs.L), delta(cs.dtype, u.size()), z(cs.dtype, u.size()), dtA(cs.dtype, u.size()),
        A(wt, cs.D * cs.N), Bm(cs.B_var ? cs.dtype : wt, in.Bm.size()), Cm(cs.C_var ? cs.dtype : wt, in.Cm.size()),
        Dv(wt, cs.D), bias(wt, cs.D), h0(wt, cs.B * cs.D * cs.N), y(cs.dtype, u.size()),
        h_last(wt, cs.B * cs.D * cs.N),
        chunks(wt, cs.B * cs.D * cs.N * lrnn_selective_scan_num_chunks(cs.L)) {
    if (c.batch_first) { seq_stride[0] = c.L * c.D; seq_stride[1] = 1; seq_stride[2] = c.D; }
    else { seq_stride[0] = c.D * c.L; seq_stride[1] = c.L; seq_stride[2] = 1; }
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t d = 0; d < c.D; ++d)
        for (int64_t t = 0; t < c.L; ++t) {
          const size_t s = (b * c.D + d) * c.L + t, ph = phys(b, d, t);
          u.set(ph, in.u[s]); delta.set(ph, in.delta[s]); z.set(ph, in.z[s]); dtA.set(ph, in.dtA[s]);
        }
    for (size_t i = 0; i < in.A.size(); ++i) A.set(i, in.A[i]);
    for (size_t i = 0; i < in.Bm.size(); ++i) Bm.set(i, in.Bm[i]);
    for (size_t i = 0; i < in.Cm.size(); ++i) Cm.set(i, in.Cm[i]);
    for (int64_t i = 0; i < c.D; ++i) { Dv.set(i, in.Dv[i]); bias.set(i, in.bias[i]); }
    for (size_t i = 0; i < in.h0.size(); ++i) h0.set(i, in.h0[i]);
  }
  size_t phys(int64_t b, int64_t d, int64_t t) const { return b * seq_stride[0] + d * seq_stride[1] + t * seq_stride[2]; }
  // The inputs as the kernel sees them (rounded to the storage types), in logical order.
  Inputs stored() const {
    Inputs in;
    const size_t S = c.B * c.D * c.L;
    in.u.resize(S); in.delta.resize(S); in.z.resize(S); in.dtA.resize(S);
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t d = 0; d < c.D; ++d)
        for (int64_t t = 0; t < c.L; ++t) {
          const size_t s = (b * c.D + d) * c.L + t, ph = phys(b, d, t);
          in.u[s] = u.get(ph); in.delta[s] = delta.get(ph); in.z[s] = z.get(ph); in.dtA[s] = dtA.get(ph);
        }
    auto all = [](const Buffer& b) { std::vector<double> v(b.size()); for (size_t i = 0; i < v.size(); ++i) v[i] = b.get(i); return v; };
    in.A = all(A); in.Bm = all(Bm); in.Cm = all(Cm); in.Dv = all(Dv); in.bias = all(bias); in.h0 = all(h0);
    return in;
  }
  lrnn_selective_scan_params params() {
    lrnn_selective_scan_params p{};
    p.y = y.data(); p.h_last = h_last.data(); p.chunk_states = chunks.data();
    p.u = u.data(); p.delta = delta.data(); p.A = A.data(); p.Bm = Bm.data(); p.Cm = Cm.data();
    p.D = c.has_D ? Dv.data() : nullptr;
    p.z = c.has_z ? z.data() : nullptr;
    p.delta_bias = c.has_bias ? bias.data() : nullptr;
    p.h0 = c.has_h0 ? h0.data() : nullptr;
    p.dt_A = c.has_dtA ? dtA.data() : nullptr;
    p.batch = c.B; p.dim = c.D; p.length = c.L; p.dstate = c.N; p.groups = c.G;
    p.B_variable = c.B_var; p.C_variable = c.C_var; p.delta_softplus = c.softplus;
    for (int i = 0; i < 3; ++i)
      p.u_stride[i] = p.delta_stride[i] = p.z_stride[i] = p.dt_A_stride[i] = p.y_stride[i] = seq_stride[i];
    const int64_t vs[4] = {c.G * c.N * c.L, c.N * c.L, c.L, 1}, ts[4] = {c.N, 1, 0, 0};
    memcpy(p.B_stride, c.B_var ? vs : ts, sizeof vs);
    memcpy(p.C_stride, c.C_var ? vs : ts, sizeof vs);
    p.A_stride[0] = c.N; p.A_stride[1] = 1;
    p.D_stride = 1; p.delta_bias_stride = 1;
    p.h0_stride[0] = p.h_last_stride[0] = c.D * c.N;
    p.h0_stride[1] = p.h_last_stride[1] = c.N;
    p.h0_stride[2] = p.h_last_stride[2] = 1;
    const int64_t nc = lrnn_selective_scan_num_chunks(c.L);
    p.chunk_states_stride[0] = c.D * nc * c.N; p.chunk_states_stride[1] = nc * c.N;
    p.chunk_states_stride[2] = c.N; p.chunk_states_stride[3] = 1;
    p.dtype = c.dtype; p.wdtype = wt;
    return p;
  }
};

double tolerance(lrnn_dtype t) {
  switch (t) {
    case LRNN_F64: return 1e-12;
    case LRNN_F32: return 2e-5;
    case LRNN_F16: return 2e-3;
    default: return 1e-2;
  }
}

// Max abs error over the largest reference magnitude (at least 1); NaN counts as infinite.
double max_err(const std::vector<double>& got, const std::vector<double>& want) {
  double scale = 1, err = 0;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (size_t i = 0; i < want.size(); ++i) {
    const double e = std::fabs(got[i] - want[i]);
    err = std::isnan(e) ? INFINITY : std::max(err, e);
  }
  return err / scale;
}

void check_forward(const Case& c) {
  Problem pr(c, random_inputs(c, 7));
  lrnn_selective_scan_params p = pr.params();
  // Two slices cutting through a row block, as a parallel caller would do.
  const int64_t rows = c.B * c.D, mid = rows / 2 + (rows > 2 ? 1 : 0);
  ASSERT_EQ(lrnn_selective_scan_fwd_cpu(&p, 0, mid), LRNN_OK);
  ASSERT_EQ(lrnn_selective_scan_fwd_cpu(&p, mid, rows), LRNN_OK);
  const Outputs ref = naive_forward(c, pr.stored());
  std::vector<double> y(ref.y.size()), hl(ref.h_last.size());
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t d = 0; d < c.D; ++d)
      for (int64_t t = 0; t < c.L; ++t) y[(b * c.D + d) * c.L + t] = pr.y.get(pr.phys(b, d, t));
  for (size_t i = 0; i < hl.size(); ++i) hl[i] = pr.h_last.get(i);
  EXPECT_LE(max_err(y, ref.y), tolerance(c.dtype));
  EXPECT_LE(max_err(hl, ref.h_last), tolerance(c.dtype) * 10);  // state error accumulates over L
}

// Runs the backward (items in reverse order, to show scheduling does not matter) and the reduce.
struct Grads {
  std::vector<double> du, ddelta, dz, ddtA, dA, dB, dC, dD, dbias, dh0;
};

Grads run_backward(Problem& pr, const std::vector<double>& W, const std::vector<double>& V, int64_t parts,
                   bool reverse_items = true) {
  const Case& c = pr.c;
  lrnn_selective_scan_bwd_params q{};
  q.fwd = pr.params();
  EXPECT_EQ(lrnn_selective_scan_fwd_cpu(&q.fwd, 0, c.B * c.D), LRNN_OK);
  const size_t S = c.B * c.D * c.L, var = c.B * c.G * c.N * c.L, ti = c.D * c.N;
  Buffer gy(c.dtype, S), gh(pr.wt, c.B * c.D * c.N), du(c.dtype, S), ddelta(c.dtype, S), dz(c.dtype, S),
      ddtA(c.dtype, S), dh0(pr.wt, c.B * c.D * c.N), dA_part(pr.wt, c.B * c.D * c.N), dD_part(pr.wt, c.B * c.D),
      db_part(pr.wt, c.B * c.D), dB_part(pr.wt, c.B_var ? parts * var : c.B * ti),
      dC_part(pr.wt, c.C_var ? parts * var : c.B * ti), dA(pr.wt, ti), dD(pr.wt, c.D), dbias(pr.wt, c.D),
      dB(pr.wt, c.B_var ? var : ti), dC(pr.wt, c.C_var ? var : ti);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t d = 0; d < c.D; ++d)
      for (int64_t t = 0; t < c.L; ++t) gy.set(pr.phys(b, d, t), W[(b * c.D + d) * c.L + t]);
  for (size_t i = 0; i < V.size(); ++i) gh.set(i, V[i]);
  q.grad_y = gy.data(); q.grad_h_last = gh.data();
  q.du = du.data(); q.ddelta = ddelta.data(); q.dz = c.has_z ? dz.data() : nullptr;
  q.ddt_A = c.has_dtA ? ddtA.data() : nullptr; q.dh0 = dh0.data();
  for (int i = 0; i < 3; ++i)
    q.grad_y_stride[i] = q.du_stride[i] = q.ddelta_stride[i] = q.dz_stride[i] = q.ddt_A_stride[i] = pr.seq_stride[i];
  q.grad_h_last_stride[0] = q.dh0_stride[0] = c.D * c.N;
  q.grad_h_last_stride[1] = q.dh0_stride[1] = c.N;
  q.grad_h_last_stride[2] = q.dh0_stride[2] = 1;
  q.dA_part = dA_part.data(); q.dD_part = dD_part.data(); q.ddelta_bias_part = db_part.data();
  q.dB_part = dB_part.data(); q.dC_part = dC_part.data(); q.parts = parts;
  q.dA = dA.data(); q.dD = dD.data(); q.ddelta_bias = dbias.data(); q.dB = dB.data(); q.dC = dC.data();
  const int64_t items = lrnn_selective_scan_bwd_items(&q);
  for (int64_t k = 0; k < items; ++k) {
    const int64_t i = reverse_items ? items - 1 - k : k;
    EXPECT_EQ(lrnn_selective_scan_bwd_cpu(&q, i, i + 1), LRNN_OK);
  }
  const int64_t rs = lrnn_selective_scan_reduce_size(&q);
  EXPECT_EQ(lrnn_selective_scan_reduce_cpu(&q, 0, rs / 3), LRNN_OK);
  EXPECT_EQ(lrnn_selective_scan_reduce_cpu(&q, rs / 3, rs), LRNN_OK);
  Grads g;
  auto seq = [&](const Buffer& buf) {
    std::vector<double> v(S);
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t d = 0; d < c.D; ++d)
        for (int64_t t = 0; t < c.L; ++t) v[(b * c.D + d) * c.L + t] = buf.get(pr.phys(b, d, t));
    return v;
  };
  auto all = [](const Buffer& b) { std::vector<double> v(b.size()); for (size_t i = 0; i < v.size(); ++i) v[i] = b.get(i); return v; };
  g.du = seq(du); g.ddelta = seq(ddelta);
  if (c.has_z) g.dz = seq(dz);
  if (c.has_dtA) g.ddtA = seq(ddtA);
  g.dA = all(dA); g.dB = all(dB); g.dC = all(dC); g.dD = all(dD); g.dbias = all(dbias); g.dh0 = all(dh0);
  return g;
}

void check_backward(const Case& c, int64_t parts) {
  const Inputs in0 = random_inputs(c, 11);
  Problem pr(c, in0);
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> val(-1.0, 1.0);
  std::vector<double> W(c.B * c.D * c.L), V(c.B * c.D * c.N);
  for (auto& x : W) x = val(rng);
  for (auto& x : V) x = val(rng);
  const Grads g = run_backward(pr, W, V, parts);

  Inputs in = pr.stored();
  auto loss = [&]() {
    const Outputs o = naive_forward(c, in);
    double s = 0;
    for (size_t i = 0; i < W.size(); ++i) s += W[i] * o.y[i];
    for (size_t i = 0; i < V.size(); ++i) s += V[i] * o.h_last[i];
    return s;
  };
  auto check = [&](std::vector<double>& x, const std::vector<double>& got, const char* name) {
    ASSERT_EQ(x.size(), got.size()) << name;
    const double eps = 1e-6;
    for (size_t i = 0; i < x.size(); ++i) {
      const double x0 = x[i];
      x[i] = x0 + eps; const double lp = loss();
      x[i] = x0 - eps; const double lm = loss();
      x[i] = x0;
      const double fd = (lp - lm) / (2 * eps);
      ASSERT_NEAR(got[i], fd, 1e-6 * std::max(1.0, std::fabs(fd))) << name << "[" << i << "]";
    }
  };
  check(in.u, g.du, "du");
  check(in.delta, g.ddelta, "ddelta");
  check(in.A, g.dA, "dA");
  check(in.Bm, g.dB, "dB");
  check(in.Cm, g.dC, "dC");
  if (c.has_z) check(in.z, g.dz, "dz");
  if (c.has_dtA) check(in.dtA, g.ddtA, "ddt_A");
  if (c.has_D) check(in.Dv, g.dD, "dD");
  if (c.has_bias) check(in.bias, g.dbias, "ddelta_bias");
  if (c.has_h0) check(in.h0, g.dh0, "dh0");
}

}  // namespace

TEST(SelectiveScanForward, AllDtypesAndLayouts) {
  for (lrnn_dtype t : {LRNN_F32, LRNN_F64, LRNN_BF16, LRNN_F16})
    for (int64_t L : {1, 7, 64, 65, 200})
      for (bool bf : {false, true}) {
        SCOPED_TRACE(testing::Message() << "dtype " << t << " L " << L << " batch_first " << bf);
        Case c{2, 12, L, 5, 2, t};
        c.batch_first = bf;
        check_forward(c);
      }
}

TEST(SelectiveScanForward, Options) {
  for (int mask = 0; mask < 128; ++mask) {
    Case c{2, 10, 70, 3, (mask & 64) ? 2 : 1, LRNN_F32};
    c.B_var = mask & 1; c.C_var = mask & 2; c.has_D = mask & 4; c.has_z = mask & 8;
    c.has_bias = mask & 16; c.softplus = mask & 32; c.has_h0 = !(mask & 1) || (mask & 8);
    c.has_dtA = mask & 16;
    SCOPED_TRACE(testing::Message() << "mask " << mask);
    check_forward(c);
  }
}

TEST(SelectiveScanForward, LargeStateAndBlockEdges) {
  check_forward({1, 19, 130, LRNN_SELECTIVE_SCAN_MAX_STATE, 1, LRNN_F32});
  check_forward({3, 17, 5, 16, 1, LRNN_BF16});  // row blocks that straddle batch elements
}

TEST(SelectiveScanForward, ZeroLengthKeepsInitialState) {
  Case c{2, 3, 0, 4, 1, LRNN_F32};
  Problem pr(c, random_inputs(c, 3));
  lrnn_selective_scan_params p = pr.params();
  ASSERT_EQ(lrnn_selective_scan_fwd_cpu(&p, 0, c.B * c.D), LRNN_OK);
  for (size_t i = 0; i < pr.h_last.size(); ++i) EXPECT_EQ(pr.h_last.get(i), pr.h0.get(i));
}

TEST(SelectiveScanForward, RejectsBadArguments) {
  Case c{1, 4, 8, 3, 1, LRNN_F32};
  Problem pr(c, random_inputs(c, 3));
  lrnn_selective_scan_params p = pr.params();
  EXPECT_EQ(lrnn_selective_scan_fwd_cpu(&p, 0, 5), LRNN_ERR_ARGUMENT);
  EXPECT_EQ(lrnn_selective_scan_fwd_cpu(nullptr, 0, 1), LRNN_ERR_SHAPE);
  p.wdtype = LRNN_F64;
  EXPECT_EQ(lrnn_selective_scan_fwd_cpu(&p, 0, 4), LRNN_ERR_DTYPE);
  p.wdtype = LRNN_F32;
  p.dstate = LRNN_SELECTIVE_SCAN_MAX_STATE + 1;
  EXPECT_EQ(lrnn_selective_scan_fwd_cpu(&p, 0, 4), LRNN_ERR_SHAPE);
  p.dstate = 3;
  p.groups = 3;  // 4 channels do not split into 3 groups
  EXPECT_EQ(lrnn_selective_scan_fwd_cpu(&p, 0, 4), LRNN_ERR_SHAPE);
}

TEST(SelectiveScanBackward, MatchesFiniteDifferences) {
  for (int mask = 0; mask < 16; ++mask) {
    Case c{2, 4, 70, 3, (mask & 8) ? 2 : 1, LRNN_F64};
    c.B_var = mask & 1; c.C_var = mask & 2; c.has_dtA = mask & 4; c.softplus = !(mask & 4);
    c.batch_first = mask & 2;
    SCOPED_TRACE(testing::Message() << "mask " << mask);
    check_backward(c, (mask & 1) ? 2 : 1);
  }
}

TEST(SelectiveScanBackward, MinimalOptions) {
  Case c{1, 3, 5, 2, 1, LRNN_F64};
  c.has_D = c.has_z = c.has_bias = c.softplus = c.has_h0 = false;
  check_backward(c, 3);
}

TEST(SelectiveScanBackward, IndependentOfItemOrder) {
  // Work items run in opposite orders give bitwise identical gradients: items own disjoint
  // slices and the reduction order is fixed.
  Case c{2, 8, 100, 4, 2, LRNN_F32};
  std::vector<double> W(c.B * c.D * c.L, 0.5), V(c.B * c.D * c.N, -0.25);
  Problem p1(c, random_inputs(c, 1)), p2(c, random_inputs(c, 1));
  const Grads g1 = run_backward(p1, W, V, 4, true), g2 = run_backward(p2, W, V, 4, false);
  EXPECT_EQ(g1.dB, g2.dB);
  EXPECT_EQ(g1.du, g2.du);
  EXPECT_EQ(g1.dA, g2.dA);
}
