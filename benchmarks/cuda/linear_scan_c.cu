/* linear_scan_c.cu: the CUDA linear-scan kernels timed through their plain C API (no torch), with
 * every result checked against the C CPU kernel on a sample of rows.
 *
 * Build and run on a GPU machine from the repository root (benchmarks/cuda/run.sh does this):
 *   nvcc -O3 -arch=sm_90 --use_fast_math -Icsrc/include benchmarks/cuda/linear_scan_c.cu \
 *        csrc/cuda/linear_scan.cu csrc/cpu/linear_scan.c csrc/cpu/common.c -o build/linear_scan_c
 *   build/linear_scan_c [B L D] ...
 * It is the fast loop for kernel work (seconds to build instead of the whole extension) and the
 * C level's benchmark: time (median of CUDA-event timings, L2 flushed), GB/s and fraction of the
 * floor, where the floor is the minimal bytes over the device-to-device copy bandwidth measured
 * in the same run. */
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "lrnn/linear_scan.h"

#define CK(x)                                                                         \
  do {                                                                                \
    cudaError_t e_ = (x);                                                             \
    if (e_ != cudaSuccess) {                                                          \
      fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

namespace {

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
const char *dtype_name(lrnn_dtype t) {
  switch (t) {
    case LRNN_F32: return "float32";
    case LRNN_F64: return "float64";
    case LRNN_BF16: return "bfloat16";
    case LRNN_F16: return "float16";
    case LRNN_C64: return "complex64";
    case LRNN_C128: return "complex128";
  }
  return "?";
}
int reals(lrnn_dtype t) { return t == LRNN_C64 || t == LRNN_C128 ? 2 : 1; }

uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
float from_bf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* Host array of n elements of dtype t filled from real values in [lo, hi). */
std::vector<unsigned char> random_array(lrnn_dtype t, size_t n, float lo, float hi, std::mt19937 &rng) {
  std::vector<unsigned char> out(n * elem_size(t));
  uint64_t state = rng() | 1;  /* xorshift: the arrays are large, std::uniform_real_distribution slow */
  for (size_t i = 0; i < n * reals(t); ++i) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    const float v = lo + (hi - lo) * (float)((state >> 40) * (1.0 / 16777216.0));
    if (t == LRNN_BF16) {
      const uint16_t h = to_bf16(v);
      memcpy(&out[i * 2], &h, 2);
    } else {
      memcpy(&out[i * 4], &v, 4);
    }
  }
  return out;
}
float value(lrnn_dtype t, const unsigned char *p, size_t i) {
  if (t == LRNN_BF16) {
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return from_bf16(h);
  }
  float f;
  memcpy(&f, p + 4 * i, 4);
  return f;
}

struct Case {
  lrnn_dtype dtype, a_dtype;
  bool time_major, a_invariant;
};

float time_ms(cudaEvent_t e0, cudaEvent_t e1) {
  float ms = 0;
  CK(cudaEventElapsedTime(&ms, e0, e1));
  return ms;
}

/* Median over `reps` runs of fn, with the L2 flushed (a 256 MB memset) before each. */
template <typename F> double median_ms(F fn, void *flush, size_t flush_bytes, int reps) {
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<float> t;
  for (int r = 0; r < reps + 2; ++r) {
    CK(cudaMemsetAsync(flush, r, flush_bytes));
    CK(cudaEventRecord(e0));
    fn();
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    if (r >= 2) t.push_back(time_ms(e0, e1));
  }
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void strides(bool tm, int64_t L, int64_t D, int64_t s[3]) {
  if (tm) { s[0] = L * D; s[1] = D; s[2] = 1; }
  else { s[0] = L * D; s[1] = 1; s[2] = L; }
}

}  // namespace

int main(int argc, char **argv) {
  std::vector<std::array<int64_t, 3>> shapes;
  for (int i = 1; i + 2 < argc; i += 3) shapes.push_back({atoll(argv[i]), atoll(argv[i + 1]), atoll(argv[i + 2])});
  if (shapes.empty()) shapes = {{8, 4096, 1536}, {2, 65536, 1536}};
  const char *only = getenv("ONLY");  /* substring filter on the case label */
  const int reps = getenv("REPS") ? atoi(getenv("REPS")) : 20;

  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  const size_t flush_bytes = 256u << 20, copy_bytes = 1u << 30;
  void *flush, *c0, *c1;
  CK(cudaMalloc(&flush, flush_bytes));
  CK(cudaMalloc(&c0, copy_bytes));
  CK(cudaMalloc(&c1, copy_bytes));
  const double copy_ms = median_ms([&] { CK(cudaMemcpyAsync(c1, c0, copy_bytes, cudaMemcpyDeviceToDevice)); },
                                   flush, flush_bytes, reps);
  const double bw = 2.0 * copy_bytes / (copy_ms * 1e-3);  /* read + write bytes per second */
  CK(cudaFree(c0));
  CK(cudaFree(c1));
  printf("# %s, copy bandwidth %.0f GB/s (read+write)\n", prop.name, bw * 1e-9);
  printf("%-22s %-10s %-4s %-5s %-7s %9s %8s %7s %10s\n", "shape (B,L,D)", "dtype", "lay", "a", "pass", "ms", "GB/s",
         "%floor", "max rel");

  const Case cases[] = {
      {LRNN_F32, LRNN_F32, false, false}, {LRNN_F32, LRNN_F32, true, false},
      {LRNN_BF16, LRNN_BF16, false, false}, {LRNN_BF16, LRNN_BF16, true, false},
      {LRNN_C64, LRNN_C64, false, false}, {LRNN_C64, LRNN_C64, true, false},
      {LRNN_F32, LRNN_F32, false, true}, {LRNN_F32, LRNN_F32, true, true},
      {LRNN_BF16, LRNN_BF16, false, true}, {LRNN_BF16, LRNN_BF16, true, true},
      {LRNN_C64, LRNN_F32, false, true}, {LRNN_C64, LRNN_F32, true, true},
  };
  std::mt19937 rng(1234);
  for (const auto &sh : shapes) {
    const int64_t B = sh[0], L = sh[1], D = sh[2], n = B * L * D;
    for (const Case &c : cases) {
      char label[128];
      snprintf(label, sizeof label, "(%lld,%lld,%lld) %s %s %s", (long long)B, (long long)L, (long long)D,
               dtype_name(c.dtype), c.time_major ? "tm" : "cm", c.a_invariant ? "inv" : "full");
      if (only && !strstr(label, only)) continue;
      const size_t es = elem_size(c.dtype), as = elem_size(c.a_dtype);
      const size_t na = c.a_invariant ? (size_t)D : (size_t)n;
      /* |a| < 1 so that long sequences stay finite */
      const float a_hi = reals(c.a_dtype) == 2 ? 0.69f : 0.99f, a_lo = reals(c.a_dtype) == 2 ? 0.4f : 0.6f;
      auto ha = random_array(c.a_dtype, na, a_lo, a_hi, rng);
      auto hb = random_array(c.dtype, n, -1.f, 1.f, rng);
      auto hg = random_array(c.dtype, n, -1.f, 1.f, rng);
      void *da_, *db_, *dh, *dhl, *dg, *dda, *ddb, *ddh0;
      CK(cudaMalloc(&da_, na * as));
      CK(cudaMalloc(&db_, n * es));
      CK(cudaMalloc(&dh, n * es));
      CK(cudaMalloc(&dg, n * es));
      CK(cudaMalloc(&dhl, B * D * es));
      CK(cudaMalloc(&dda, c.a_invariant ? B * D * 8 : n * as));
      CK(cudaMalloc(&ddb, n * es));
      CK(cudaMalloc(&ddh0, B * D * es));
      CK(cudaMemcpy(da_, ha.data(), na * as, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(db_, hb.data(), n * es, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(dg, hg.data(), n * es, cudaMemcpyHostToDevice));

      lrnn_linear_scan_params p = {};
      p.h = dh; p.h_last = dhl; p.a = da_; p.b = db_; p.h0 = nullptr;
      p.batch = B; p.length = L; p.dim = D;
      strides(c.time_major, L, D, p.b_stride);
      strides(c.time_major, L, D, p.h_stride);
      if (c.a_invariant) { p.a_stride[0] = 0; p.a_stride[1] = 0; p.a_stride[2] = 1; }
      else strides(c.time_major, L, D, p.a_stride);
      p.h0_stride[0] = D; p.h0_stride[1] = 1; p.h_last_stride[0] = D; p.h_last_stride[1] = 1;
      p.dtype = c.dtype; p.a_dtype = c.a_dtype;

      lrnn_linear_scan_bwd_params q = {};
      q.da = dda; q.db = ddb; q.dh0 = ddh0; q.grad_h = dg; q.grad_h_last = nullptr; q.a = da_; q.h = dh;
      q.batch = B; q.length = L; q.dim = D;
      memcpy(q.grad_h_stride, p.b_stride, sizeof q.grad_h_stride);
      memcpy(q.a_stride, p.a_stride, sizeof q.a_stride);
      memcpy(q.h_stride, p.h_stride, sizeof q.h_stride);
      memcpy(q.db_stride, p.b_stride, sizeof q.db_stride);
      if (c.a_invariant) { q.da_stride[0] = D; q.da_stride[1] = 0; q.da_stride[2] = 1; }
      else memcpy(q.da_stride, p.a_stride, sizeof q.da_stride);
      q.h0_stride[0] = D; q.h0_stride[1] = 1; q.dh0_stride[0] = D; q.dh0_stride[1] = 1;
      q.dtype = c.dtype; q.a_dtype = c.a_dtype; q.da_sum_time = c.a_invariant;

      /* correctness: the CPU kernel on a sample of rows (every row's outputs are poisoned first) */
      CK(cudaMemset(dh, 0xff, n * es));
      CK(cudaMemset(ddb, 0xff, n * es));
      CK(cudaMemset(dda, 0xff, c.a_invariant ? B * D * 8 : n * as));
      if (lrnn_linear_scan_fwd_cuda(&p, nullptr) != LRNN_OK) { printf("%s: fwd launch failed\n", label); return 1; }
      if (lrnn_linear_scan_bwd_cuda(&q, nullptr) != LRNN_OK) { printf("%s: bwd launch failed\n", label); return 1; }
      CK(cudaDeviceSynchronize());
      std::vector<unsigned char> gh(n * es), gdb(n * es);
      CK(cudaMemcpy(gh.data(), dh, n * es, cudaMemcpyDeviceToHost));
      CK(cudaMemcpy(gdb.data(), ddb, n * es, cudaMemcpyDeviceToHost));
      std::vector<unsigned char> ch(n * es), chl(B * D * es), cdb(n * es), cda(c.a_invariant ? B * D * 8 : n * as),
          cdh0(B * D * es);
      lrnn_linear_scan_params pc = p;
      pc.h = ch.data(); pc.h_last = chl.data(); pc.a = ha.data(); pc.b = hb.data();
      lrnn_linear_scan_bwd_params qc = q;
      qc.da = cda.data(); qc.db = cdb.data(); qc.dh0 = cdh0.data(); qc.grad_h = hg.data(); qc.a = ha.data();
      qc.h = ch.data();
      double err = 0, scale = 0;
      const int64_t rows = B * D, step = std::max<int64_t>(1, rows / 7);
      for (int64_t r = 0; r < rows; r += step) {
        if (lrnn_linear_scan_fwd_cpu(&pc, r, r + 1) != LRNN_OK || lrnn_linear_scan_bwd_cpu(&qc, r, r + 1) != LRNN_OK) {
          printf("%s: cpu failed\n", label);
          return 1;
        }
        const int64_t bi = r / D, d = r % D;
        for (int64_t t = 0; t < L; ++t) {
          const int64_t off = bi * p.h_stride[0] + t * p.h_stride[1] + d * p.h_stride[2];
          for (int k = 0; k < reals(c.dtype); ++k) {
            const float gv = value(c.dtype == LRNN_C64 ? LRNN_F32 : c.dtype, gh.data(), off * reals(c.dtype) + k);
            const float cv = value(c.dtype == LRNN_C64 ? LRNN_F32 : c.dtype, ch.data(), off * reals(c.dtype) + k);
            const float gb = value(c.dtype == LRNN_C64 ? LRNN_F32 : c.dtype, gdb.data(), off * reals(c.dtype) + k);
            const float cb = value(c.dtype == LRNN_C64 ? LRNN_F32 : c.dtype, cdb.data(), off * reals(c.dtype) + k);
            err = std::max({err, (double)std::fabs(gv - cv), (double)std::fabs(gb - cb)});
            if (!(std::isfinite(gv) && std::isfinite(gb))) err = INFINITY;
            scale = std::max({scale, (double)std::fabs(cv), (double)std::fabs(cb)});
          }
        }
      }
      const double rel = err / std::max(scale, 1e-30);

      const double fwd_ms = median_ms([&] { lrnn_linear_scan_fwd_cuda(&p, nullptr); }, flush, flush_bytes, reps);
      const double bwd_ms = median_ms([&] { lrnn_linear_scan_bwd_cuda(&q, nullptr); }, flush, flush_bytes, reps);
      /* minimal bytes: fwd reads a, b, writes h; bwd reads g, a, h, writes da, db */
      const double sa = c.a_invariant ? 0 : (double)n * as, sx = (double)n * es;
      const double fwd_bytes = sa + 2 * sx, bwd_bytes = 2 * sa + 3 * sx;
      const char *lay = c.time_major ? "tm" : "cm", *ak = c.a_invariant ? "inv" : "full";
      char shape[48];
      snprintf(shape, sizeof shape, "(%lld,%lld,%lld)", (long long)B, (long long)L, (long long)D);
      const double fb_ms = fwd_ms + bwd_ms, fb_bytes = fwd_bytes + bwd_bytes;
      printf("%-22s %-10s %-4s %-5s %-7s %9.4f %8.0f %6.1f%% %10.2e\n", shape, dtype_name(c.dtype), lay, ak, "fwd", fwd_ms,
             fwd_bytes / fwd_ms * 1e-6, 100.0 * fwd_bytes / bw / (fwd_ms * 1e-3), rel);
      printf("%-22s %-10s %-4s %-5s %-7s %9.4f %8.0f %6.1f%%\n", shape, dtype_name(c.dtype), lay, ak, "bwd", bwd_ms,
             bwd_bytes / bwd_ms * 1e-6, 100.0 * bwd_bytes / bw / (bwd_ms * 1e-3));
      printf("%-22s %-10s %-4s %-5s %-7s %9.4f %8.0f %6.1f%%\n", shape, dtype_name(c.dtype), lay, ak, "fwd+bwd", fb_ms,
             fb_bytes / fb_ms * 1e-6, 100.0 * fb_bytes / bw / (fb_ms * 1e-3));
      fflush(stdout);
      for (void *ptr : {da_, db_, dh, dhl, dg, dda, ddb, ddh0}) CK(cudaFree(ptr));
    }
  }
  CK(cudaFree(flush));
  return 0;
}
