// test_emu_linear_scan.cpp: runs the CUDA linear-scan launchers (csrc/cuda/linear_scan.cu, on the
// CPU through the emulation in this folder) against the CPU kernels (csrc/cpu) on random inputs:
// every dtype, time-major / channel-major / padded / misaligned / strided layouts, broadcast a,
// h0, grad_h_last, reverse, lengths around the tile and round boundaries. Outputs are poisoned
// with NaN first, so an element a kernel fails to write shows up as a mismatch.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "lrnn/linear_scan.h"

extern "C" {
#include "../../csrc/cpu/scalar.h"
}

namespace {

struct DType {
  const char *name;
  lrnn_dtype x, a;
  double tol;  // relative to the largest magnitude of the output (c64: a complex a rounds 4 products per step)
};
const DType kTypes[] = {
    {"f32", LRNN_F32, LRNN_F32, 2e-5},      {"f64", LRNN_F64, LRNN_F64, 1e-12},
    {"bf16", LRNN_BF16, LRNN_BF16, 1.6e-2}, {"f16", LRNN_F16, LRNN_F16, 2e-3},
    {"c64", LRNN_C64, LRNN_C64, 4e-5},      {"c64_real_a", LRNN_C64, LRNN_F32, 2e-5},
    {"c128", LRNN_C128, LRNN_C128, 1e-12},  {"c128_real_a", LRNN_C128, LRNN_F64, 1e-12},
};

int elem_size(lrnn_dtype t) {
  switch (t) {
    case LRNN_F32: return 4;
    case LRNN_F64: return 8;
    case LRNN_BF16: case LRNN_F16: return 2;
    case LRNN_C64: return 8;
    case LRNN_C128: return 16;
  }
  return 0;
}
bool is_complex(lrnn_dtype t) { return t == LRNN_C64 || t == LRNN_C128; }
lrnn_dtype acc_type(lrnn_dtype a) {
  return (a == LRNN_BF16 || a == LRNN_F16) ? LRNN_F32 : a;
}

void put(lrnn_dtype t, void *base, int64_t i, double re, double im) {
  switch (t) {
    case LRNN_F32: ((float *)base)[i] = (float)re; break;
    case LRNN_F64: ((double *)base)[i] = re; break;
    case LRNN_BF16: ((uint16_t *)base)[i] = lrnn_f32_to_bf16((float)re); break;
    case LRNN_F16: ((uint16_t *)base)[i] = lrnn_f32_to_f16((float)re); break;
    case LRNN_C64: ((float *)base)[2 * i] = (float)re; ((float *)base)[2 * i + 1] = (float)im; break;
    case LRNN_C128: ((double *)base)[2 * i] = re; ((double *)base)[2 * i + 1] = im; break;
  }
}
void get(lrnn_dtype t, const void *base, int64_t i, double *re, double *im) {
  *im = 0;
  switch (t) {
    case LRNN_F32: *re = ((const float *)base)[i]; break;
    case LRNN_F64: *re = ((const double *)base)[i]; break;
    case LRNN_BF16: *re = lrnn_bf16_to_f32(((const uint16_t *)base)[i]); break;
    case LRNN_F16: *re = lrnn_f16_to_f32(((const uint16_t *)base)[i]); break;
    case LRNN_C64: *re = ((const float *)base)[2 * i]; *im = ((const float *)base)[2 * i + 1]; break;
    case LRNN_C128: *re = ((const double *)base)[2 * i]; *im = ((const double *)base)[2 * i + 1]; break;
  }
}

// A strided 3-d (or 2-d) buffer of exactly the bytes its strides reach (plus `offset` leading
// elements), so that AddressSanitizer sees any access beyond it.
struct Buf {
  lrnn_dtype t;
  std::vector<int64_t> size, stride;
  int offset = 0;
  unsigned char *mem = nullptr;
  void *ptr = nullptr;
  Buf(lrnn_dtype t_, std::vector<int64_t> size_, std::vector<int64_t> stride_, int offset_ = 0)
      : t(t_), size(size_), stride(stride_), offset(offset_) {
    int64_t span = 1;
    for (size_t k = 0; k < size.size(); ++k)
      if (size[k] == 0) span = 0;
    if (span) {
      for (size_t k = 0; k < size.size(); ++k) span += (size[k] - 1) * stride[k];
    }
    const size_t bytes = (size_t)(span + offset) * elem_size(t);
    mem = (unsigned char *)aligned_alloc(64, ((bytes + 63) / 64) * 64 + 64);
    ptr = mem + (size_t)offset * elem_size(t);
    poison((size_t)(span + offset));
  }
  ~Buf() { free(mem); }
  Buf(const Buf &) = delete;
  void poison(size_t n) {
    for (size_t i = 0; i < n; ++i) put(t, mem, (int64_t)i, NAN, NAN);
  }
  int64_t at(int64_t i, int64_t j, int64_t k = 0) const {
    return i * stride[0] + j * stride[1] + (size.size() > 2 ? k * stride[2] : 0);
  }
};

enum Layout { TM, CM, CM_PAD, CM_MISALIGNED, TM_STRIDED };
const char *kLayoutNames[] = {"time-major", "channel-major", "channel-major-padded", "channel-major-misaligned",
                              "time-major-strided"};

Buf *make_seq(lrnn_dtype t, Layout lay, int64_t B, int64_t L, int64_t D) {
  switch (lay) {
    case TM: return new Buf(t, {B, L, D}, {L * D, D, 1});
    case CM: return new Buf(t, {B, L, D}, {D * L, 1, L});
    case CM_PAD: return new Buf(t, {B, L, D}, {D * (L + 3), 1, L + 3});
    case CM_MISALIGNED: return new Buf(t, {B, L, D}, {D * L, 1, L}, 1);
    case TM_STRIDED: return new Buf(t, {B, L, D}, {L * D * 2, D * 2, 2});
  }
  return nullptr;
}

std::mt19937_64 rng(1234);
double uni(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }

void fill_seq(Buf &b, int64_t B, int64_t L, int64_t D, bool transition) {
  for (int64_t i = 0; i < B; ++i)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t d = 0; d < D; ++d) {
        // transitions inside the unit disc keep states bounded; never zero
        const double re = transition ? uni(0.5, 0.99) * (uni(0, 1) < 0.2 ? -1 : 1) : uni(-1, 1);
        const double im = transition ? uni(-0.3, 0.3) : uni(-1, 1);
        put(b.t, b.ptr, b.at(i, t, d), re, im);
      }
}

int failures = 0, checks = 0;

void compare(const char *what, const std::string &tag, const Buf &got, const Buf &want, int64_t n0, int64_t n1,
             int64_t n2, double tol) {
  double scale = 1e-30, worst = 0;
  for (int64_t i = 0; i < n0; ++i)
    for (int64_t j = 0; j < n1; ++j)
      for (int64_t k = 0; k < n2; ++k) {
        double re, im;
        get(want.t, want.ptr, want.at(i, j, k), &re, &im);
        scale = std::max(scale, std::hypot(re, im));
      }
  int64_t bad_i = -1, bad_j = -1, bad_k = -1;
  for (int64_t i = 0; i < n0; ++i)
    for (int64_t j = 0; j < n1; ++j)
      for (int64_t k = 0; k < n2; ++k) {
        double r1, i1, r2, i2;
        get(got.t, got.ptr, got.at(i, j, k), &r1, &i1);
        get(want.t, want.ptr, want.at(i, j, k), &r2, &i2);
        const double e = std::hypot(r1 - r2, i1 - i2) / scale;
        if (!(e <= worst)) {
          worst = std::isnan(e) ? INFINITY : e;
          bad_i = i, bad_j = j, bad_k = k;
        }
      }
  ++checks;
  if (!(worst <= tol)) {
    ++failures;
    std::printf("FAIL %-6s %s: max rel err %.3g > %.3g at (%lld, %lld, %lld)\n", what, tag.c_str(), worst, tol,
                (long long)bad_i, (long long)bad_j, (long long)bad_k);
  }
}

enum AMode { A_FULL, A_TIME_INVARIANT, A_BATCH_BROADCAST, A_OTHER_LAYOUT };
const char *kAModeNames[] = {"a-full", "a-(D,)", "a-(1,L,D)", "a-other-layout"};

void run_case(const DType &dt, Layout lay, AMode am, int64_t B, int64_t L, int64_t D, bool h0, bool ghl, int rev,
              Layout glay) {
  char tagbuf[256];
  std::snprintf(tagbuf, sizeof tagbuf, "%s %s %s B=%lld L=%lld D=%lld h0=%d ghl=%d rev=%d g=%s", dt.name,
                kLayoutNames[lay], kAModeNames[am], (long long)B, (long long)L, (long long)D, h0, ghl, rev,
                kLayoutNames[glay]);
  const std::string tag = tagbuf;
  std::unique_ptr<Buf> b(make_seq(dt.x, lay, B, L, D));
  fill_seq(*b, B, L, D, false);
  std::unique_ptr<Buf> a;
  int64_t as[3];
  switch (am) {
    case A_FULL: a.reset(make_seq(dt.a, lay, B, L, D)); break;
    case A_OTHER_LAYOUT: a.reset(make_seq(dt.a, lay == TM ? CM : TM, B, L, D)); break;
    case A_TIME_INVARIANT: a.reset(new Buf(dt.a, {1, 1, D}, {D, D, 1})); break;
    case A_BATCH_BROADCAST: a.reset(make_seq(dt.a, lay, 1, L, D)); break;
  }
  const int64_t aB = am == A_TIME_INVARIANT || am == A_BATCH_BROADCAST ? 1 : B;
  const int64_t aL = am == A_TIME_INVARIANT ? 1 : L;
  fill_seq(*a, aB, aL, D, true);
  for (int k = 0; k < 3; ++k) as[k] = a->stride[k];
  if (aB == 1) as[0] = 0;
  if (aL == 1 && L != 1) as[1] = 0;
  Buf h0b(dt.x, {B, D}, {1, B});  // column-major (B, D): a non-contiguous state
  for (int64_t i = 0; i < B; ++i)
    for (int64_t d = 0; d < D; ++d) put(dt.x, h0b.ptr, h0b.at(i, d), uni(-1, 1), uni(-1, 1));

  // forward: emulated CUDA into `h` (layout like b, as the ops layer allocates), CPU into `hc`
  const Layout hlay = (lay == TM || lay == TM_STRIDED) ? TM : CM;
  std::unique_ptr<Buf> h(make_seq(dt.x, hlay, B, L, D)), hc(make_seq(dt.x, TM, B, L, D));
  Buf hl(dt.x, {B, D}, {D, 1}), hlc(dt.x, {B, D}, {D, 1});
  lrnn_linear_scan_params p{};
  p.a = a->ptr;
  p.b = b->ptr;
  p.h0 = h0 ? h0b.ptr : nullptr;
  p.batch = B, p.length = L, p.dim = D;
  for (int k = 0; k < 3; ++k) p.a_stride[k] = as[k], p.b_stride[k] = b->stride[k];
  p.h0_stride[0] = h0b.stride[0], p.h0_stride[1] = h0b.stride[1];
  p.h_last_stride[0] = D, p.h_last_stride[1] = 1;
  p.dtype = dt.x, p.a_dtype = dt.a, p.reverse = rev;
  lrnn_linear_scan_params pc = p;
  p.h = h->ptr, p.h_last = hl.ptr;
  for (int k = 0; k < 3; ++k) p.h_stride[k] = h->stride[k];
  pc.h = hc->ptr, pc.h_last = hlc.ptr;
  for (int k = 0; k < 3; ++k) pc.h_stride[k] = hc->stride[k];
  if (lrnn_linear_scan_fwd_cuda(&p, nullptr) != LRNN_OK) {
    ++failures;
    std::printf("FAIL fwd status %s\n", tag.c_str());
    return;
  }
  lrnn_linear_scan_fwd_cpu(&pc, 0, B * D);
  compare("h", tag, *h, *hc, B, L, D, dt.tol);
  compare("h_last", tag, hl, hlc, B, D, 1, dt.tol);

  // backward from the emulated h, with grad_h in layout `glay`
  std::unique_ptr<Buf> g(make_seq(dt.x, glay, B, L, D));
  fill_seq(*g, B, L, D, false);
  Buf ghlb(dt.x, {B, D}, {D, 1});
  for (int64_t i = 0; i < B; ++i)
    for (int64_t d = 0; d < D; ++d) put(dt.x, ghlb.ptr, ghlb.at(i, d), uni(-1, 1), uni(-1, 1));
  const bool sum_time = as[1] == 0 || aL == 1;
  const lrnn_dtype da_t = sum_time ? acc_type(dt.a) : dt.a;
  std::unique_ptr<Buf> da, dac;
  if (sum_time) {
    da.reset(new Buf(da_t, {B, 1, D}, {D, 0, 1}));
    dac.reset(new Buf(da_t, {B, 1, D}, {D, 0, 1}));
  } else {
    da.reset(make_seq(da_t, hlay, B, L, D));
    dac.reset(make_seq(da_t, TM, B, L, D));
  }
  std::unique_ptr<Buf> db(make_seq(dt.x, hlay, B, L, D)), dbc(make_seq(dt.x, TM, B, L, D));
  Buf dh0(dt.x, {B, D}, {D, 1}), dh0c(dt.x, {B, D}, {D, 1});
  lrnn_linear_scan_bwd_params q{};
  q.grad_h = g->ptr;
  q.grad_h_last = ghl ? ghlb.ptr : nullptr;
  q.a = a->ptr;
  q.h = h->ptr;
  q.h0 = p.h0;
  q.batch = B, q.length = L, q.dim = D;
  for (int k = 0; k < 3; ++k)
    q.grad_h_stride[k] = g->stride[k], q.a_stride[k] = as[k], q.h_stride[k] = h->stride[k];
  q.grad_h_last_stride[0] = D, q.grad_h_last_stride[1] = 1;
  q.h0_stride[0] = h0b.stride[0], q.h0_stride[1] = h0b.stride[1];
  q.dh0_stride[0] = D, q.dh0_stride[1] = 1;
  q.dtype = dt.x, q.a_dtype = dt.a, q.reverse = rev, q.da_sum_time = sum_time;
  lrnn_linear_scan_bwd_params qc = q;
  q.da = da->ptr, q.db = db->ptr, q.dh0 = dh0.ptr;
  qc.da = dac->ptr, qc.db = dbc->ptr, qc.dh0 = dh0c.ptr;
  for (int k = 0; k < 3; ++k) q.da_stride[k] = da->stride[k], q.db_stride[k] = db->stride[k];
  for (int k = 0; k < 3; ++k) qc.da_stride[k] = dac->stride[k], qc.db_stride[k] = dbc->stride[k];
  if (lrnn_linear_scan_bwd_cuda(&q, nullptr) != LRNN_OK) {
    ++failures;
    std::printf("FAIL bwd status %s\n", tag.c_str());
    return;
  }
  lrnn_linear_scan_bwd_cpu(&qc, 0, B * D);
  // da over long sequences sums many terms in a different order: a looser bound in low precision
  const double da_tol = dt.tol * (sum_time && dt.tol > 1e-4 ? 4 : 1);
  compare("db", tag, *db, *dbc, B, L, D, dt.tol);
  compare("dh0", tag, dh0, dh0c, B, D, 1, dt.tol);
  if (sum_time) compare("da_sum", tag, *da, *dac, B, 1, D, da_tol);
  else compare("da", tag, *da, *dac, B, L, D, da_tol);
}

}  // namespace

namespace emu { extern int sms; }

int main(int argc, char **argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const int ncases = argc > 1 ? std::atoi(argv[1]) : 200;
  // optional second argument "tm": only the time-major fixed cases (for iterating on those kernels)
  const bool tm_only = argc > 2 && std::strcmp(argv[2], "tm") == 0;
  const int64_t lengths[] = {0, 1, 2, 3, 7, 16, 17, 127, 128, 129, 1000, 2049, 4500};
  // 32 and 40 channels (with aligned rows) take the pipelined time-major kernels, the rest the generic ones
  const int64_t dims[] = {1, 3, 5, 8, 33, 32, 40};
  // fixed cases first: every dtype in both fast layouts at a multi-tile length
  int n = 0;
  for (const DType &dt : kTypes)
    for (Layout lay : {TM, CM})
      for (int rev = 0; rev < 2 && !(tm_only && lay != TM); ++rev) {
        run_case(dt, lay, A_FULL, 2, 4500, 3, true, true, rev, lay);
        run_case(dt, lay, A_TIME_INVARIANT, 2, 1000, 5, rev == 0, rev == 1, rev, lay);
        // every kernel an aligned time-major problem can take (LRNN_LINEAR_SCAN_TM, see tm_route)
        // and both widths of the 2-byte time-invariant channel-major one (LRNN_LINEAR_SCAN_CM): a
        // partial last row group, a partial last round, deep and shallow pipelines (one SM: many
        // blocks per SM)
        // (2-byte types also on channel pairs: tw2, tp2, tpcl2)
        const char *routes[] = {"tw", "tp", "tpcl", "tw2", "tp2", "tpcl2"}, *cm_routes[] = {"narrow", "wide"};
        const bool two_byte = dt.x == LRNN_BF16 || dt.x == LRNN_F16;  // the only ones with a wide variant
        for (int ri = 0; ri < (lay == TM ? (two_byte ? 6 : 3) : two_byte ? 2 : 1); ++ri) {
          setenv("LRNN_LINEAR_SCAN_TM", routes[ri], 1);
          setenv("LRNN_LINEAR_SCAN_CM", cm_routes[ri % 2], 1);
          emu::sms = rev ? 1 : 132;
          run_case(dt, lay, A_FULL, 2, 1000, 40, true, true, rev, lay);
          run_case(dt, lay, A_TIME_INVARIANT, 1, 1025, 64, rev == 0, rev == 1, rev, lay);
          run_case(dt, lay, A_BATCH_BROADCAST, 2, 129, 32, true, false, rev, lay);
          emu::sms = 132;
        }
        unsetenv("LRNN_LINEAR_SCAN_TM");
        unsetenv("LRNN_LINEAR_SCAN_CM");
        ++n;
      }
  for (int c = 0; c < ncases; ++c) {
    const DType &dt = kTypes[rng() % 8];
    const Layout lay = (Layout)(rng() % 5);
    const AMode am = (AMode)(rng() % 4);
    const int64_t L = lengths[rng() % 13], D = dims[rng() % 7], B = 1 + rng() % 3;
    const Layout glay = (Layout)(rng() % 5);
    emu::sms = (rng() % 2) ? 132 : 1;
    const char *routes[] = {"tw", "tp", "tpcl", "tm", "tw2", "tp2", "tpcl2"};
    setenv("LRNN_LINEAR_SCAN_TM", routes[rng() % 7], 1);
    setenv("LRNN_LINEAR_SCAN_CM", rng() % 2 ? "wide" : "narrow", 1);
    run_case(dt, lay, am, B, L, D, rng() % 2, rng() % 2, (int)(rng() % 2), glay);
  }
  unsetenv("LRNN_LINEAR_SCAN_TM");
  unsetenv("LRNN_LINEAR_SCAN_CM");
  std::printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
