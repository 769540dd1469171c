/* mimo_c.cu: the CUDA stages of the MIMO selective scan (csrc/cuda/mimo_selective_scan.cu)
 * through their plain C API (no torch): each launcher checked against double loops at a small
 * odd size for every dtype (max error relative to the largest reference entry; the backward run
 * twice must be bitwise equal), then each stage timed at the S7 benchmark shapes.
 *
 * Build and run on a GPU machine from the repository root (tests/gpu/s7cuda.sh does this):
 *   nvcc -O3 -arch=sm_90 --use_fast_math -std=c++17 -Icsrc/include benchmarks/cuda/mimo_c.cu \
 *        csrc/cuda/mimo_selective_scan.cu -o build/mimo_c && build/mimo_c [check|f32|prof]
 * Timing: median of 15 CUDA-event timings after 3 warm-up calls. The percentage after each stage
 * is the cost model's MAC count (forming B_t or C_t: 2*P*H*H resp. 2*O*P*H real MACs per token,
 * times 2 in the backward stages for the du and weight-gradient products) over the time and the
 * H200's fp32 FMA rate (33.5 T/s): 100% is SIMT peak on the useful work alone. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "lrnn/mimo_selective_scan.h"

#define CK(x)                                                                             \
  do {                                                                                    \
    cudaError_t e_ = (x);                                                                 \
    if (e_ != cudaSuccess) {                                                              \
      fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));  \
      exit(1);                                                                            \
    }                                                                                     \
  } while (0)
#define ST(x)                                                                  \
  do {                                                                         \
    lrnn_status s_ = (x);                                                      \
    if (s_ != LRNN_OK) {                                                       \
      fprintf(stderr, "%s:%d %s: status %d\n", __FILE__, __LINE__, #x, (int)s_); \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

namespace {

constexpr double kFmaPeak = 33.5e12;
std::mt19937_64 rng(1);

/* the forward stages' workspace: one device buffer per stage, grown on demand */
void* fwd_ws(const lrnn_mimo_params& p, int in) {
  static void* buf[2] = {nullptr, nullptr};
  static int64_t have[2] = {0, 0};
  const int64_t need = lrnn_mimo_fwd_workspace_bytes_cuda(&p, in);
  if (need > have[in]) {
    if (buf[in]) CK(cudaFree(buf[in]));
    CK(cudaMalloc(&buf[in], need));
    have[in] = need;
  }
  return buf[in];
}

int esize(lrnn_dtype t) { return t == LRNN_F32 ? 4 : 2; }
const char* name(lrnn_dtype t) { return t == LRNN_F32 ? "float32" : t == LRNN_BF16 ? "bfloat16" : "float16"; }

/* host values rounded to dtype, and their device bytes */
struct HostVec {
  std::vector<double> val;
  std::vector<unsigned char> raw;
};
HostVec random_vec(lrnn_dtype t, int64_t n, double lo, double hi) {
  HostVec h;
  h.val.resize(n);
  h.raw.resize(n * esize(t));
  std::uniform_real_distribution<double> d(lo, hi);
  for (int64_t i = 0; i < n; ++i) {
    const float f = (float)d(rng);
    if (t == LRNN_F32) {
      memcpy(&h.raw[i * 4], &f, 4);
      h.val[i] = f;
    } else if (t == LRNN_BF16) {
      const __nv_bfloat16 b = __float2bfloat16(f);
      memcpy(&h.raw[i * 2], &b, 2);
      h.val[i] = __bfloat162float(b);
    } else {
      const __half b = __float2half(f);
      memcpy(&h.raw[i * 2], &b, 2);
      h.val[i] = __half2float(b);
    }
  }
  return h;
}
double to_d(lrnn_dtype t, const unsigned char* p) {
  if (t == LRNN_F32) { float f; memcpy(&f, p, 4); return f; }
  if (t == LRNN_BF16) { __nv_bfloat16 b; memcpy(&b, p, 2); return __bfloat162float(b); }
  __half b; memcpy(&b, p, 2); return __half2float(b);
}
void* dev_copy(const void* src, size_t bytes) {
  void* d = nullptr;
  CK(cudaMalloc(&d, bytes > 0 ? bytes : 1));
  if (bytes) CK(cudaMemcpy(d, src, bytes, cudaMemcpyHostToDevice));
  return d;
}
template <typename T>
std::vector<T> host_copy(const void* d, size_t n) {
  std::vector<T> h(n);
  CK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

/* contiguous params for (B, L, H, P, O) with the given device buffers */
lrnn_mimo_params make_params(int64_t B, int64_t L, int64_t H, int64_t P, int64_t O, lrnn_dtype t) {
  lrnn_mimo_params p{};
  auto tok = [&](int64_t* st, int64_t X) { st[0] = L * X; st[1] = X; st[2] = 1; };
  tok(p.u_stride, H); tok(p.du_stride, H); tok(p.v_stride, P); tok(p.h_stride, P); tok(p.hs_stride, P);
  tok(p.y_stride, O);
  auto w = [&](int64_t* st, int64_t A, int64_t Bd) { st[0] = Bd * 2 * H; st[1] = 2 * H; st[2] = H; st[3] = 1; (void)A; };
  w(p.wb_stride, P, H); w(p.wc_stride, O, P);
  p.bb_stride[0] = H * 2; p.bb_stride[1] = 2; p.bb_stride[2] = 1;
  p.bc_stride[0] = P * 2; p.bc_stride[1] = 2; p.bc_stride[2] = 1;
  p.batch = B; p.length = L; p.in_dim = H; p.state_dim = P; p.out_dim = O;
  p.dtype = t; p.state_dtype = LRNN_C64;
  return p;
}

double max_rel(const std::vector<double>& got, const std::vector<double>& want) {
  double scale = 1e-30, worst = 0;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (size_t i = 0; i < want.size(); ++i) {
    const double e = std::fabs(got[i] - want[i]);
    worst = std::isnan(e) ? INFINITY : std::max(worst, e);
  }
  return worst / scale;
}

/* every stage at a small odd size vs double loops; returns false on a failure */
bool check(lrnn_dtype t) {
  const int64_t B = 2, L = 37, H = 23, P = 5, O = 19, N = B * L;
  const double tol = t == LRNN_F32 ? 1e-5 : t == LRNN_BF16 ? 1e-2 : 2e-3, tolc = 1e-5;
  HostVec u = random_vec(t, N * H, -1, 1), dy = random_vec(t, N * O, -1, 1);
  HostVec wb = random_vec(LRNN_F32, P * H * 2 * H, -0.5, 0.5), bb = random_vec(LRNN_F32, P * H * 2, -0.5, 0.5);
  HostVec wc = random_vec(LRNN_F32, O * P * 2 * H, -0.5, 0.5), bc = random_vec(LRNN_F32, O * P * 2, -0.5, 0.5);
  HostVec h = random_vec(LRNN_F32, N * P * 2, -1, 1), dv = random_vec(LRNN_F32, N * P * 2, -1, 1);
  lrnn_mimo_params p = make_params(B, L, H, P, O, t);
  p.u = dev_copy(u.raw.data(), u.raw.size());
  p.wb = dev_copy(wb.raw.data(), wb.raw.size()); p.bb = dev_copy(bb.raw.data(), bb.raw.size());
  p.wc = dev_copy(wc.raw.data(), wc.raw.size()); p.bc = dev_copy(bc.raw.data(), bc.raw.size());
  CK(cudaMalloc(&p.v, N * P * 8));
  p.h = dev_copy(h.raw.data(), h.raw.size());
  CK(cudaMalloc(&p.y, N * O * esize(t)));
  ST(lrnn_mimo_in_fwd_cuda(&p, fwd_ws(p, 1), nullptr));
  ST(lrnn_mimo_out_fwd_cuda(&p, fwd_ws(p, 0), nullptr));
  /* backward inputs */
  lrnn_mimo_params q = p;
  q.y = dev_copy(dy.raw.data(), dy.raw.size());
  q.hs = p.h;
  CK(cudaMalloc(&q.h, N * P * 8));
  CK(cudaMalloc(&q.du, N * H * esize(t)));
  CK(cudaMalloc(&q.dw, O * P * 2 * H * 4));
  CK(cudaMalloc(&q.db, O * P * 2 * 4));
  void *ws0, *ws1;
  CK(cudaMalloc(&ws0, lrnn_mimo_bwd_workspace_bytes_cuda(&q, 0)));
  ST(lrnn_mimo_out_bwd_cuda(&q, ws0, nullptr));
  CK(cudaDeviceSynchronize());
  auto v_g = host_copy<float>(p.v, N * P * 2), gh_g = host_copy<float>(q.h, N * P * 2);
  auto dwc_g = host_copy<float>(q.dw, O * P * 2 * H), dbc_g = host_copy<float>(q.db, O * P * 2);
  auto y_raw = host_copy<unsigned char>(p.y, N * O * esize(t)), du_raw = host_copy<unsigned char>(q.du, N * H * esize(t));
  lrnn_mimo_params r = q;
  r.v = dev_copy(dv.raw.data(), dv.raw.size());
  CK(cudaMalloc(&r.dw, P * H * 2 * H * 4));
  CK(cudaMalloc(&r.db, P * H * 2 * 4));
  CK(cudaMalloc(&ws1, lrnn_mimo_bwd_workspace_bytes_cuda(&r, 1)));
  ST(lrnn_mimo_in_bwd_cuda(&r, ws1, nullptr));
  CK(cudaDeviceSynchronize());
  auto dwb_g = host_copy<float>(r.dw, P * H * 2 * H), dbb_g = host_copy<float>(r.db, P * H * 2);
  auto du2_raw = host_copy<unsigned char>(q.du, N * H * esize(t));
  /* reproducibility: both backward stages again from the same inputs */
  CK(cudaMemcpy(q.du, du_raw.data(), du_raw.size(), cudaMemcpyHostToDevice));
  ST(lrnn_mimo_in_bwd_cuda(&r, ws1, nullptr));
  CK(cudaDeviceSynchronize());
  const bool same = host_copy<float>(r.dw, P * H * 2 * H) == dwb_g && host_copy<unsigned char>(q.du, N * H * esize(t)) == du2_raw;

  /* double references */
  auto U = [&](int64_t k, int64_t i) { return u.val[k * H + i]; };
  std::vector<double> Bt(N * P * H * 2), Ct(N * O * P * 2);
  for (int64_t k = 0; k < N; ++k) {
    for (int64_t r2 = 0; r2 < P * H * 2; ++r2) {
      double s = bb.val[r2];
      for (int64_t i = 0; i < H; ++i) s += wb.val[r2 * H + i] * U(k, i);
      Bt[k * P * H * 2 + r2] = s;
    }
    for (int64_t r2 = 0; r2 < O * P * 2; ++r2) {
      double s = bc.val[r2];
      for (int64_t i = 0; i < H; ++i) s += wc.val[r2 * H + i] * U(k, i);
      Ct[k * O * P * 2 + r2] = s;
    }
  }
  std::vector<double> v_r(N * P * 2), y_r(N * O), gh_r(N * P * 2), du_r(N * H), dwc_r(O * P * 2 * H), dbc_r(O * P * 2);
  std::vector<double> du2_r(N * H), dwb_r(P * H * 2 * H), dbb_r(P * H * 2);
  for (int64_t k = 0; k < N; ++k) {
    for (int64_t pp = 0; pp < P; ++pp)
      for (int c = 0; c < 2; ++c)
        for (int64_t j = 0; j < H; ++j) v_r[(k * P + pp) * 2 + c] += Bt[k * P * H * 2 + (pp * H + j) * 2 + c] * U(k, j);
    for (int64_t o = 0; o < O; ++o) {
      const double d = dy.val[k * O + o];
      for (int64_t pp = 0; pp < P; ++pp) {
        const double hr = h.val[(k * P + pp) * 2], hi = h.val[(k * P + pp) * 2 + 1];
        const double cr = Ct[k * O * P * 2 + (o * P + pp) * 2], ci = Ct[k * O * P * 2 + (o * P + pp) * 2 + 1];
        y_r[k * O + o] += cr * hr - ci * hi;
        gh_r[(k * P + pp) * 2] += d * cr;
        gh_r[(k * P + pp) * 2 + 1] -= d * ci;
        const double g[2] = {d * hr, -d * hi};
        for (int c = 0; c < 2; ++c) {
          const int64_t row = (o * P + pp) * 2 + c;
          dbc_r[row] += g[c];
          for (int64_t i = 0; i < H; ++i) {
            du_r[k * H + i] += wc.val[row * H + i] * g[c];
            dwc_r[row * H + i] += g[c] * U(k, i);
          }
        }
      }
    }
    for (int64_t i = 0; i < H; ++i) du2_r[k * H + i] = to_d(t, &du_raw[(k * H + i) * esize(t)]);
    for (int64_t pp = 0; pp < P; ++pp)
      for (int c = 0; c < 2; ++c) {
        const double d = dv.val[(k * P + pp) * 2 + c];
        for (int64_t j = 0; j < H; ++j) {
          const int64_t row = (pp * H + j) * 2 + c;
          du2_r[k * H + j] += d * Bt[k * P * H * 2 + row];
          dbb_r[row] += d * U(k, j);
          for (int64_t i = 0; i < H; ++i) {
            du2_r[k * H + i] += wb.val[row * H + i] * d * U(k, j);
            dwb_r[row * H + i] += d * U(k, j) * U(k, i);
          }
        }
      }
  }
  auto f2d = [](const std::vector<float>& x) { return std::vector<double>(x.begin(), x.end()); };
  auto t2d = [&](const std::vector<unsigned char>& x) {
    std::vector<double> o(x.size() / esize(t));
    for (size_t i = 0; i < o.size(); ++i) o[i] = to_d(t, &x[i * esize(t)]);
    return o;
  };
  struct Row { const char* what; double err, tol; } rows[] = {
      {"v", max_rel(f2d(v_g), v_r), tolc},       {"y", max_rel(t2d(y_raw), y_r), tol},
      {"gh", max_rel(f2d(gh_g), gh_r), tolc},    {"du(out)", max_rel(t2d(du_raw), du_r), tol},
      {"dwc", max_rel(f2d(dwc_g), dwc_r), tolc}, {"dbc", max_rel(f2d(dbc_g), dbc_r), tolc},
      {"du(in)", max_rel(t2d(du2_raw), du2_r), tol}, {"dwb", max_rel(f2d(dwb_g), dwb_r), tolc},
      {"dbb", max_rel(f2d(dbb_g), dbb_r), tolc}};
  bool ok = same;
  printf("check %-8s (B,L,H,P,O)=(%lld,%lld,%lld,%lld,%lld):", name(t), (long long)B, (long long)L, (long long)H,
         (long long)P, (long long)O);
  for (const Row& x : rows) {
    printf(" %s %.1e%s", x.what, x.err, x.err <= x.tol ? "" : "(FAIL)");
    ok = ok && x.err <= x.tol;
  }
  printf(" | bitwise repeat %s\n", same ? "ok" : "FAIL");
  for (void* d : {(void*)p.u, (void*)p.wb, (void*)p.bb, (void*)p.wc, (void*)p.bc, p.v, p.h, p.y, q.y, q.h, q.du, q.dw,
                  q.db, r.v, r.dw, r.db, ws0, ws1})
    CK(cudaFree(d));
  return ok;
}

template <typename F>
double median_ms(F f) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) f();
  std::vector<float> ms;
  for (int i = 0; i < 15; ++i) {
    CK(cudaEventRecord(a));
    f();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float x;
    CK(cudaEventElapsedTime(&x, a, b));
    ms.push_back(x);
  }
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

void bench(lrnn_dtype t, int64_t B, int64_t L, int64_t P, int64_t H, double base_fwd, double base_all,
           bool once = false) {
  const int64_t O = H, N = B * L;
  HostVec u = random_vec(t, N * H, -1, 1), dy = random_vec(t, N * O, -1, 1);
  HostVec wb = random_vec(LRNN_F32, P * H * 2 * H, -0.1, 0.1), bb = random_vec(LRNN_F32, P * H * 2, -0.1, 0.1);
  HostVec wc = random_vec(LRNN_F32, O * P * 2 * H, -0.1, 0.1), bc = random_vec(LRNN_F32, O * P * 2, -0.1, 0.1);
  HostVec h = random_vec(LRNN_F32, N * P * 2, -1, 1);
  lrnn_mimo_params p = make_params(B, L, H, P, O, t);
  p.u = dev_copy(u.raw.data(), u.raw.size());
  p.wb = dev_copy(wb.raw.data(), wb.raw.size()); p.bb = dev_copy(bb.raw.data(), bb.raw.size());
  p.wc = dev_copy(wc.raw.data(), wc.raw.size()); p.bc = dev_copy(bc.raw.data(), bc.raw.size());
  CK(cudaMalloc(&p.v, N * P * 8));
  p.h = dev_copy(h.raw.data(), h.raw.size());
  CK(cudaMalloc(&p.y, N * O * esize(t)));
  lrnn_mimo_params q = p;
  q.y = dev_copy(dy.raw.data(), dy.raw.size());
  q.hs = p.h;
  CK(cudaMalloc(&q.h, N * P * 8));
  CK(cudaMalloc(&q.du, N * H * esize(t)));
  CK(cudaMalloc(&q.dw, O * P * 2 * H * 4));
  CK(cudaMalloc(&q.db, O * P * 2 * 4));
  lrnn_mimo_params r = q;
  r.v = q.h;   /* any c64 tensor serves as dv for timing */
  CK(cudaMalloc(&r.dw, P * H * 2 * H * 4));
  CK(cudaMalloc(&r.db, P * H * 2 * 4));
  const int64_t b0 = lrnn_mimo_bwd_workspace_bytes_cuda(&q, 0), b1 = lrnn_mimo_bwd_workspace_bytes_cuda(&r, 1);
  void *ws0, *ws1;
  CK(cudaMalloc(&ws0, b0));
  CK(cudaMalloc(&ws1, b1));
  if (once) {   /* one call of each stage, for a profiler */
    ST(lrnn_mimo_in_fwd_cuda(&p, fwd_ws(p, 1), nullptr));
    ST(lrnn_mimo_out_fwd_cuda(&p, fwd_ws(p, 0), nullptr));
    ST(lrnn_mimo_out_bwd_cuda(&q, ws0, nullptr));
    ST(lrnn_mimo_in_bwd_cuda(&r, ws1, nullptr));
    CK(cudaDeviceSynchronize());
  }
  const double in_mac = (double)N * 2 * P * H * H, out_mac = (double)N * 2 * O * P * H;
  if (once) {
    for (void* d : {(void*)p.u, (void*)p.wb, (void*)p.bb, (void*)p.wc, (void*)p.bc, p.v, p.h, p.y, q.y, q.h, q.du, q.dw,
                    q.db, r.dw, r.db, ws0, ws1})
      CK(cudaFree(d));
    return;
  }
  struct Stage { const char* name; double mac, ms; } st[4] = {
      {"in_fwd", in_mac, median_ms([&] { ST(lrnn_mimo_in_fwd_cuda(&p, fwd_ws(p, 1), nullptr)); })},
      {"out_fwd", out_mac, median_ms([&] { ST(lrnn_mimo_out_fwd_cuda(&p, fwd_ws(p, 0), nullptr)); })},
      {"out_bwd", 2 * out_mac, median_ms([&] { ST(lrnn_mimo_out_bwd_cuda(&q, ws0, nullptr)); })},
      {"in_bwd", 2 * in_mac, median_ms([&] { ST(lrnn_mimo_in_bwd_cuda(&r, ws1, nullptr)); })}};
  printf("%-8s (%lld,%lld,%lld,%lld):", name(t), (long long)B, (long long)L, (long long)P, (long long)H);
  for (const Stage& s : st) printf(" %s %.3f ms %.0f%%", s.name, s.ms, 100.0 * s.mac / (s.ms * 1e-3) / kFmaPeak);
  const double fwd = st[0].ms + st[1].ms, all = fwd + st[2].ms + st[3].ms;
  printf("\n    stages fwd %.3f, fwd+bwd %.3f ms (no event scan; fp32 materialized %.2f / %.2f); ws %.0f + %.0f MB\n",
         fwd, all, base_fwd, base_all, b0 / 1e6, b1 / 1e6);
  for (void* d : {(void*)p.u, (void*)p.wb, (void*)p.bb, (void*)p.wc, (void*)p.bc, p.v, p.h, p.y, q.y, q.h, q.du, q.dw,
                  q.db, r.dw, r.db, ws0, ws1})
    CK(cudaFree(d));
}

}  // namespace

int main(int argc, char** argv) {
  /* no argument: checks and all timings; "check": checks only; "f32": float32 timings only;
   * "prof": one in_fwd, out_fwd, out_bwd, in_bwd at the second shape, for ncu */
  const char* what = argc > 1 ? argv[1] : "all";
  const bool all = strcmp(what, "all") == 0;
  bool ok = true;
  if (all || strcmp(what, "check") == 0)
    for (lrnn_dtype t : {LRNN_F32, LRNN_BF16, LRNN_F16}) ok = check(t) && ok;
  if (strcmp(what, "prof") == 0) bench(LRNN_F32, 8, 4096, 64, 128, 0, 0, true);
  if (all || strcmp(what, "f32") == 0) {
    bench(LRNN_F32, 8, 16384, 16, 64, 3.76, 9.08);
    bench(LRNN_F32, 8, 4096, 64, 128, 8.40, 18.56);
  }
  if (all) {
    bench(LRNN_BF16, 8, 16384, 16, 64, 3.76, 9.08);
    bench(LRNN_BF16, 8, 4096, 64, 128, 8.40, 18.56);
  }
  printf("mimo_c: checks %s\n", ok ? "passed" : "FAILED");
  return ok ? 0 : 1;
}
