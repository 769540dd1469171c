// test_linear_scan.cpp: the CPU linear-scan kernels against naive double-precision loops, and
// the backward against central finite differences of the forward (so it is checked
// independently of the adjoint formula). Inputs are random with a fixed seed.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "lrnn/linear_scan.h"
#include "../../csrc/cpu/scalar.h"

namespace {

using cd = std::complex<double>;

bool is_complex(lrnn_dtype t) { return t == LRNN_C64 || t == LRNN_C128; }
size_t elem_size(lrnn_dtype t) {
  switch (t) {
    case LRNN_F32: return 4;
    case LRNN_F64: return 8;
    case LRNN_BF16: case LRNN_F16: return 2;
    case LRNN_C64: return 8;
    case LRNN_C128: return 16;
  }
  return 0;
}

// Values in a typed buffer, read and written as complex doubles (real types drop .imag()).
struct Buffer {
  lrnn_dtype dtype;
  std::vector<uint8_t> bytes;
  Buffer(lrnn_dtype t, size_t n) : dtype(t), bytes(n * elem_size(t), 0xA5) {}  // poisoned
  void* data() { return bytes.data(); }
  size_t size() const { return bytes.size() / elem_size(dtype); }
  void set(size_t i, cd v) {
    uint8_t* p = bytes.data() + i * elem_size(dtype);
    switch (dtype) {
      case LRNN_F32: { float f = (float)v.real(); memcpy(p, &f, 4); break; }
      case LRNN_F64: { double f = v.real(); memcpy(p, &f, 8); break; }
      case LRNN_BF16: { uint16_t f = lrnn_f32_to_bf16((float)v.real()); memcpy(p, &f, 2); break; }
      case LRNN_F16: { uint16_t f = lrnn_f32_to_f16((float)v.real()); memcpy(p, &f, 2); break; }
      case LRNN_C64: { float f[2] = {(float)v.real(), (float)v.imag()}; memcpy(p, f, 8); break; }
      case LRNN_C128: { double f[2] = {v.real(), v.imag()}; memcpy(p, f, 16); break; }
    }
  }
  cd get(size_t i) const {
    const uint8_t* p = bytes.data() + i * elem_size(dtype);
    switch (dtype) {
      case LRNN_F32: { float f; memcpy(&f, p, 4); return f; }
      case LRNN_F64: { double f; memcpy(&f, p, 8); return f; }
      case LRNN_BF16: { uint16_t f; memcpy(&f, p, 2); return lrnn_bf16_to_f32(f); }
      case LRNN_F16: { uint16_t f; memcpy(&f, p, 2); return lrnn_f16_to_f32(f); }
      case LRNN_C64: { float f[2]; memcpy(f, p, 8); return cd(f[0], f[1]); }
      case LRNN_C128: { double f[2]; memcpy(f, p, 16); return cd(f[0], f[1]); }
    }
    return 0;
  }
};

enum class AMode { kFull, kTimeInvariant, kBatchBroadcast };

struct Case {
  int64_t B, L, D;
  lrnn_dtype dtype, a_dtype;
  bool channel_major = false, reverse = false, has_h0 = false;
  AMode a_mode = AMode::kFull;
};

// The problem in logical (b, t, d) terms with concrete strides for every tensor.
struct Problem {
  Case c;
  int64_t seq_stride[3], a_stride[3];
  size_t a_count;
  Buffer a, b, h0;
  explicit Problem(const Case& cs)
      : c(cs),
        a_count(cs.a_mode == AMode::kFull ? cs.B * cs.L * cs.D
                : cs.a_mode == AMode::kTimeInvariant ? cs.D : cs.L * cs.D),
        a(cs.a_dtype, a_count), b(cs.dtype, cs.B * cs.L * cs.D), h0(cs.dtype, cs.B * cs.D) {
    if (c.channel_major) { seq_stride[0] = c.L * c.D; seq_stride[1] = 1; seq_stride[2] = c.L; }
    else { seq_stride[0] = c.L * c.D; seq_stride[1] = c.D; seq_stride[2] = 1; }
    if (c.a_mode == AMode::kFull) memcpy(a_stride, seq_stride, sizeof a_stride);
    else if (c.a_mode == AMode::kTimeInvariant) { a_stride[0] = 0; a_stride[1] = 0; a_stride[2] = 1; }
    else { a_stride[0] = 0; a_stride[1] = c.D; a_stride[2] = 1; }
    std::mt19937 rng(1234);
    std::uniform_real_distribution<double> mag(0.5, 0.99), phase(-3.0, 3.0), val(-1.0, 1.0);
    const bool cplx_a = is_complex(c.a_dtype);
    for (size_t i = 0; i < a_count; ++i) {
      const double r = mag(rng) * (val(rng) < 0 ? -1 : 1);
      a.set(i, cplx_a ? std::polar(std::abs(r), phase(rng)) : cd(r));
    }
    for (size_t i = 0; i < b.size(); ++i) b.set(i, cd(val(rng), is_complex(c.dtype) ? val(rng) : 0.0));
    for (size_t i = 0; i < h0.size(); ++i) h0.set(i, cd(val(rng), is_complex(c.dtype) ? val(rng) : 0.0));
  }
  size_t seq(int64_t b_, int64_t t, int64_t d) const { return b_ * seq_stride[0] + t * seq_stride[1] + d * seq_stride[2]; }
  size_t aidx(int64_t b_, int64_t t, int64_t d) const { return b_ * a_stride[0] + t * a_stride[1] + d * a_stride[2]; }
  int64_t time(int64_t s) const { return c.reverse ? c.L - 1 - s : s; }
};

// h and h_last by the plain recurrence in complex double, from the values as stored.
void naive_forward(const Problem& p, std::vector<cd>& h, std::vector<cd>& h_last,
                   const std::vector<cd>* a_override = nullptr, const std::vector<cd>* b_override = nullptr,
                   const std::vector<cd>* h0_override = nullptr) {
  const Case& c = p.c;
  h.assign(c.B * c.L * c.D, 0);
  h_last.assign(c.B * c.D, 0);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t d = 0; d < c.D; ++d) {
      cd state = c.has_h0 ? (h0_override ? (*h0_override)[b * c.D + d] : p.h0.get(b * c.D + d)) : cd(0);
      for (int64_t s = 0; s < c.L; ++s) {
        const int64_t t = p.time(s);
        const cd at = a_override ? (*a_override)[p.aidx(b, t, d)] : p.a.get(p.aidx(b, t, d));
        const cd bt = b_override ? (*b_override)[p.seq(b, t, d)] : p.b.get(p.seq(b, t, d));
        state = at * state + bt;
        h[p.seq(b, t, d)] = state;
      }
      h_last[b * c.D + d] = state;
    }
}

lrnn_linear_scan_params make_fwd(Problem& p, Buffer& h, Buffer& h_last) {
  lrnn_linear_scan_params q{};
  q.h = h.data();
  q.h_last = h_last.data();
  q.a = p.a.data();
  q.b = p.b.data();
  q.h0 = p.c.has_h0 ? p.h0.data() : nullptr;
  q.batch = p.c.B; q.length = p.c.L; q.dim = p.c.D;
  memcpy(q.a_stride, p.a_stride, sizeof q.a_stride);
  memcpy(q.b_stride, p.seq_stride, sizeof q.b_stride);
  memcpy(q.h_stride, p.seq_stride, sizeof q.h_stride);
  q.h0_stride[0] = p.c.D; q.h0_stride[1] = 1;
  q.h_last_stride[0] = p.c.D; q.h_last_stride[1] = 1;
  q.dtype = p.c.dtype; q.a_dtype = p.c.a_dtype; q.reverse = p.c.reverse;
  return q;
}

double tolerance(lrnn_dtype t) {
  switch (t) {
    case LRNN_F64: case LRNN_C128: return 1e-12;
    case LRNN_F32: case LRNN_C64: return 2e-5;
    case LRNN_F16: return 2e-3;  // one rounding of the output, state kept in f32
    default: return 1e-2;        // bf16
  }
}

// Relative max error, scaled by the largest reference magnitude (at least 1).
double max_err(const Buffer& got, const std::vector<cd>& want) {
  double scale = 1, err = 0;
  for (const cd& w : want) scale = std::max(scale, std::abs(w));
  for (size_t i = 0; i < want.size(); ++i) {
    const double e = std::abs(got.get(i) - want[i]);
    err = std::isnan(e) ? INFINITY : std::max(err, e);
  }
  return err / scale;
}

void check_forward(const Case& c) {
  Problem p(c);
  Buffer h(c.dtype, c.B * c.L * c.D), h_last(c.dtype, c.B * c.D);
  lrnn_linear_scan_params q = make_fwd(p, h, h_last);
  // Two slices with a boundary inside a channel block, as a parallel caller would do.
  const int64_t rows = c.B * c.D, mid = rows / 2 + (rows > 2 ? 1 : 0);
  ASSERT_EQ(lrnn_linear_scan_fwd_cpu(&q, 0, mid), LRNN_OK);
  ASSERT_EQ(lrnn_linear_scan_fwd_cpu(&q, mid, rows), LRNN_OK);
  std::vector<cd> h_ref, last_ref;
  naive_forward(p, h_ref, last_ref);
  EXPECT_LE(max_err(h, h_ref), tolerance(c.dtype));
  EXPECT_LE(max_err(h_last, last_ref), tolerance(c.dtype));
}

// Backward for double-precision cases, against central differences of
// loss = Re sum conj(W) h + Re sum conj(V) h_last, whose gradient w.r.t. (h, h_last) is (W, V).
void check_backward(const Case& c) {
  Problem p(c);
  Buffer h(c.dtype, c.B * c.L * c.D), h_last(c.dtype, c.B * c.D);
  lrnn_linear_scan_params q = make_fwd(p, h, h_last);
  ASSERT_EQ(lrnn_linear_scan_fwd_cpu(&q, 0, c.B * c.D), LRNN_OK);

  const bool cplx = is_complex(c.dtype), cplx_a = is_complex(c.a_dtype);
  std::mt19937 rng(99);
  std::uniform_real_distribution<double> val(-1.0, 1.0);
  Buffer W(c.dtype, c.B * c.L * c.D), V(c.dtype, c.B * c.D);
  for (size_t i = 0; i < W.size(); ++i) W.set(i, cd(val(rng), cplx ? val(rng) : 0));
  for (size_t i = 0; i < V.size(); ++i) V.set(i, cd(val(rng), cplx ? val(rng) : 0));

  const bool sum_time = c.a_mode == AMode::kTimeInvariant;
  Buffer da(c.a_dtype, sum_time ? c.B * c.D : c.B * c.L * c.D), db(c.dtype, c.B * c.L * c.D), dh0(c.dtype, c.B * c.D);
  lrnn_linear_scan_bwd_params g{};
  g.da = da.data(); g.db = db.data(); g.dh0 = dh0.data();
  g.grad_h = W.data(); g.grad_h_last = V.data(); g.a = p.a.data(); g.h = h.data();
  g.h0 = c.has_h0 ? p.h0.data() : nullptr;
  g.batch = c.B; g.length = c.L; g.dim = c.D;
  memcpy(g.grad_h_stride, p.seq_stride, sizeof g.grad_h_stride);
  memcpy(g.a_stride, p.a_stride, sizeof g.a_stride);
  memcpy(g.h_stride, p.seq_stride, sizeof g.h_stride);
  memcpy(g.db_stride, p.seq_stride, sizeof g.db_stride);
  if (sum_time) { g.da_stride[0] = c.D; g.da_stride[1] = 0; g.da_stride[2] = 1; }
  else memcpy(g.da_stride, p.seq_stride, sizeof g.da_stride);
  g.grad_h_last_stride[0] = c.D; g.grad_h_last_stride[1] = 1;
  g.h0_stride[0] = c.D; g.h0_stride[1] = 1;
  g.dh0_stride[0] = c.D; g.dh0_stride[1] = 1;
  g.dtype = c.dtype; g.a_dtype = c.a_dtype; g.reverse = c.reverse; g.da_sum_time = sum_time;
  ASSERT_EQ(lrnn_linear_scan_bwd_cpu(&g, 0, c.B * c.D), LRNN_OK);

  std::vector<cd> A(p.a_count), Bv(p.b.size()), H0(p.h0.size());
  for (size_t i = 0; i < A.size(); ++i) A[i] = p.a.get(i);
  for (size_t i = 0; i < Bv.size(); ++i) Bv[i] = p.b.get(i);
  for (size_t i = 0; i < H0.size(); ++i) H0[i] = p.h0.get(i);
  auto loss = [&]() {
    std::vector<cd> hh, ll;
    naive_forward(p, hh, ll, &A, &Bv, &H0);
    double s = 0;
    for (size_t i = 0; i < hh.size(); ++i) s += (std::conj(W.get(i)) * hh[i]).real();
    for (size_t i = 0; i < ll.size(); ++i) s += (std::conj(V.get(i)) * ll[i]).real();
    return s;
  };
  const double eps = 1e-6;
  auto fd = [&](cd& x, bool cplx_x) {
    const cd x0 = x;
    x = x0 + eps; const double lp = loss(); x = x0 - eps; const double lm = loss();
    double im = 0;
    if (cplx_x) { x = x0 + cd(0, eps); const double ip = loss(); x = x0 - cd(0, eps); im = (ip - loss()) / (2 * eps); }
    x = x0;
    return cd((lp - lm) / (2 * eps), im);
  };
  for (size_t i = 0; i < Bv.size(); ++i) EXPECT_NEAR(std::abs(fd(Bv[i], cplx) - db.get(i)), 0, 1e-6) << "db " << i;
  if (c.has_h0)
    for (size_t i = 0; i < H0.size(); ++i) EXPECT_NEAR(std::abs(fd(H0[i], cplx) - dh0.get(i)), 0, 1e-6) << "dh0 " << i;
  for (size_t i = 0; i < A.size(); ++i) {
    cd got = 0;  // the kernel's gradient of this element of a, reduced over what a broadcasts
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t t = 0; t < c.L; ++t)
        for (int64_t d = 0; d < c.D; ++d) {
          if (p.aidx(b, t, d) != i) continue;
          if (sum_time) { if (t == 0) got += da.get(b * c.D + d); }
          else got += da.get(p.seq(b, t, d));
        }
    EXPECT_NEAR(std::abs(fd(A[i], cplx_a) - got), 0, 1e-6) << "da " << i;
  }
}

}  // namespace

TEST(LinearScanForward, OddLengthsAllDtypes) {
  const lrnn_dtype types[][2] = {{LRNN_F32, LRNN_F32}, {LRNN_F64, LRNN_F64}, {LRNN_BF16, LRNN_BF16},
                                 {LRNN_F16, LRNN_F16}, {LRNN_C64, LRNN_C64}, {LRNN_C64, LRNN_F32},
                                 {LRNN_C128, LRNN_C128}, {LRNN_C128, LRNN_F64}};
  for (auto& t : types)
    for (int64_t L : {1, 2, 3, 1000})
      for (bool cm : {false, true})
        for (bool rev : {false, true}) {
          SCOPED_TRACE(testing::Message() << "dtype " << t[0] << "/" << t[1] << " L " << L << " cm " << cm << " rev " << rev);
          check_forward({2, L, 67, t[0], t[1], cm, rev, true});
        }
}

TEST(LinearScanForward, SingleRowAndSingleChannel) {
  check_forward({1, 1000, 1, LRNN_F32, LRNN_F32});
  check_forward({1, 7, 1, LRNN_C64, LRNN_C64, true, true, true});
  check_forward({3, 5, 1, LRNN_F64, LRNN_F64, false, false, true, AMode::kTimeInvariant});
}

TEST(LinearScanForward, BroadcastA) {
  for (AMode m : {AMode::kTimeInvariant, AMode::kBatchBroadcast})
    for (bool cm : {false, true}) {
      check_forward({3, 129, 70, LRNN_F32, LRNN_F32, cm, false, true, m});
      check_forward({3, 129, 70, LRNN_C64, LRNN_C64, cm, true, false, m});
      check_forward({2, 33, 5, LRNN_BF16, LRNN_BF16, cm, true, true, m});
    }
}

TEST(LinearScanForward, ZeroLengthCopiesInitialState) {
  Case c{2, 0, 3, LRNN_F32, LRNN_F32, false, false, true};
  Problem p(c);
  Buffer h(c.dtype, 0), h_last(c.dtype, c.B * c.D);
  lrnn_linear_scan_params q = make_fwd(p, h, h_last);
  ASSERT_EQ(lrnn_linear_scan_fwd_cpu(&q, 0, c.B * c.D), LRNN_OK);
  for (size_t i = 0; i < h_last.size(); ++i) EXPECT_EQ(h_last.get(i), p.h0.get(i));
}

TEST(LinearScanForward, RejectsBadArguments) {
  Case c{1, 4, 2, LRNN_F32, LRNN_F32};
  Problem p(c);
  Buffer h(c.dtype, 8), h_last(c.dtype, 2);
  lrnn_linear_scan_params q = make_fwd(p, h, h_last);
  EXPECT_EQ(lrnn_linear_scan_fwd_cpu(&q, 0, 3), LRNN_ERR_ARGUMENT);  // past B*D rows
  EXPECT_EQ(lrnn_linear_scan_fwd_cpu(nullptr, 0, 1), LRNN_ERR_ARGUMENT);
  q.a_dtype = LRNN_F64;
  EXPECT_EQ(lrnn_linear_scan_fwd_cpu(&q, 0, 2), LRNN_ERR_DTYPE);
  q.a_dtype = LRNN_F32;
  q.b = nullptr;
  EXPECT_EQ(lrnn_linear_scan_fwd_cpu(&q, 0, 2), LRNN_ERR_ARGUMENT);
}

TEST(LinearScanBackward, MatchesFiniteDifferencesReal) {
  for (AMode m : {AMode::kFull, AMode::kTimeInvariant, AMode::kBatchBroadcast})
    for (bool rev : {false, true})
      for (bool cm : {false, true}) {
        SCOPED_TRACE(testing::Message() << "mode " << (int)m << " rev " << rev << " cm " << cm);
        check_backward({2, 5, 3, LRNN_F64, LRNN_F64, cm, rev, true, m});
      }
  check_backward({1, 1, 1, LRNN_F64, LRNN_F64, false, false, false});
}

TEST(LinearScanBackward, MatchesFiniteDifferencesComplex) {
  for (AMode m : {AMode::kFull, AMode::kTimeInvariant})
    for (bool rev : {false, true}) {
      SCOPED_TRACE(testing::Message() << "mode " << (int)m << " rev " << rev);
      check_backward({2, 4, 3, LRNN_C128, LRNN_C128, false, rev, true, m});
      check_backward({2, 4, 3, LRNN_C128, LRNN_F64, true, rev, true, m});
    }
}
