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
 * in the same run. Inputs are filled on the device; the check gathers the sampled rows on the
 * device and copies them back.
 *
 * Linked with other builds of the kernels whose two entry points are renamed
 * lrnn_{base,v1,v2,v3}_linear_scan_{fwd,bwd}_cuda (e.g. an older version as "base", compiled with
 * -Dlrnn_linear_scan_fwd_cuda=lrnn_base_linear_scan_fwd_cuda and the same for bwd), it
 * times all of them in the same run and adds one line per case starting with "=": the % of the
 * floor of each build, fwd, bwd and fwd+bwd. Environment: ONLY (substring of the case label),
 * REPS (timed runs, median), VARIANTS (display names of v1..v3, comma-separated), SIDE=cur (run
 * only the current kernels, e.g. under ncu), SWEEP_ENV and SWEEP (the current kernels once per
 * value of an environment variable, see below). */
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "lrnn/linear_scan.h"

/* Other builds of the kernels, linked in when present (weak: absent ones are null): "base" an
 * older version, v1..v3 variants compiled with other -D flags; each has its two entry points
 * renamed lrnn_<name>_linear_scan_{fwd,bwd}_cuda. */
#define LSC_SIDE(name)                                                                                         \
  extern "C" __attribute__((weak)) lrnn_status lrnn_##name##_linear_scan_fwd_cuda(const lrnn_linear_scan_params *, \
                                                                                  void *);                     \
  extern "C" __attribute__((weak)) lrnn_status lrnn_##name##_linear_scan_bwd_cuda(                              \
      const lrnn_linear_scan_bwd_params *, void *);
LSC_SIDE(base)
LSC_SIDE(v1)
LSC_SIDE(v2)
LSC_SIDE(v3)

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

float from_bf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* Fills n elements of dtype t on the device with values in [lo, hi) from a hash of the index
 * (the arrays reach 1.6 GB: a host generator and copy would dominate the run). */
__global__ void fill_kernel(void *p, lrnn_dtype t, size_t n, float lo, float hi, uint32_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint64_t z = (i + 1) * 0x9E3779B97F4A7C15ull + seed;  /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const float v0 = lo + (hi - lo) * (float)((z >> 40) * (1.0 / 16777216.0));
    const float v1 = lo + (hi - lo) * (float)((z & 0xffffffu) * (1.0 / 16777216.0));
    if (t == LRNN_BF16) {
      uint32_t u = __float_as_uint(v0);
      ((uint16_t *)p)[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    } else if (t == LRNN_C64) {
      ((float2 *)p)[i] = make_float2(v0, v1);
    } else {
      ((float *)p)[i] = v0;
    }
  }
}
void fill(void *p, lrnn_dtype t, size_t n, float lo, float hi, uint32_t seed) {
  fill_kernel<<<1024, 256>>>(p, t, n, lo, hi, seed);
  CK(cudaGetLastError());
}

/* Gathers the L elements of es bytes that lie `stride` bytes apart into dst. */
__global__ void gather_kernel(unsigned char *dst, const unsigned char *src, size_t es, int64_t stride, int64_t L) {
  for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < L; t += (int64_t)gridDim.x * blockDim.x)
    for (size_t k = 0; k < es; ++k) dst[t * es + k] = src[t * stride + k];
}

/* Copies the L elements of row (bi, d) of an array with strides s (elements of es bytes) to the
 * host, through `scratch` (a device buffer of at least L * es bytes). */
std::vector<unsigned char> row_to_host(const void *dev, size_t es, const int64_t s[3], int64_t bi, int64_t d,
                                       int64_t L, void *scratch) {
  std::vector<unsigned char> out((size_t)L * es);
  const unsigned char *src = (const unsigned char *)dev + (bi * s[0] + d * s[2]) * (int64_t)es;
  gather_kernel<<<256, 256>>>((unsigned char *)scratch, src, es, s[1] * (int64_t)es, L);
  CK(cudaGetLastError());
  CK(cudaMemcpy(out.data(), scratch, (size_t)L * es, cudaMemcpyDeviceToHost));
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

using Fwd = lrnn_status (*)(const lrnn_linear_scan_params *, void *);
using Bwd = lrnn_status (*)(const lrnn_linear_scan_bwd_params *, void *);

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
  const char *side = getenv("SIDE");
  struct Side {
    std::string name;
    Fwd fwd;
    Bwd bwd;
    double rel, fwd_ms, bwd_ms;
    std::string env;  /* the value of SWEEP_ENV for this side ("auto": unset) */
  };
  std::vector<Side> others = {{"base", lrnn_base_linear_scan_fwd_cuda, lrnn_base_linear_scan_bwd_cuda, 0, 0, 0, ""},
                              {"v1", lrnn_v1_linear_scan_fwd_cuda, lrnn_v1_linear_scan_bwd_cuda, 0, 0, 0, ""},
                              {"v2", lrnn_v2_linear_scan_fwd_cuda, lrnn_v2_linear_scan_bwd_cuda, 0, 0, 0, ""},
                              {"v3", lrnn_v3_linear_scan_fwd_cuda, lrnn_v3_linear_scan_bwd_cuda, 0, 0, 0, ""}};
  /* SWEEP_ENV=NAME SWEEP=v1,v2,...: the current kernels once per value of the environment
   * variable NAME (e.g. LRNN_LINEAR_SCAN_TM, which picks the time-major kernel) */
  const char *sweep_env = getenv("SWEEP_ENV");
  std::vector<std::string> sweep;
  if (sweep_env && getenv("SWEEP")) {
    std::string all = getenv("SWEEP");
    for (size_t pos = 0; pos <= all.size();) {
      const size_t e = std::min(all.find(',', pos), all.size());
      if (e > pos) sweep.push_back(all.substr(pos, e - pos));
      pos = e + 1;
    }
  }
  if (const char *names = getenv("VARIANTS")) {  /* display names of v1..v3 */
    std::string all = names;
    for (size_t k = 1, pos = 0; k < others.size() && pos <= all.size(); ++k) {
      const size_t e = std::min(all.find(',', pos), all.size());
      if (e > pos) others[k].name = all.substr(pos, e - pos);
      pos = e + 1;
    }
  }
  {
    std::string hdr = "= builds:";
    for (const Side &v : others)
      if (v.fwd && v.bwd && !(side && !strcmp(side, "cur"))) hdr += " " + v.name;
    if (sweep.empty()) hdr += " cur";
    for (const std::string &v : sweep) hdr += " " + v;
    printf("%s (%% of the floor: fwd | bwd | fwd+bwd; worst max rel)\n", hdr.c_str());
  }
  printf("%-22s %-10s %-4s %-5s %-7s %9s %8s %7s %10s %s\n", "shape (B,L,D)", "dtype", "lay", "a", "pass", "ms", "GB/s",
         "%floor", "max rel", "build");

  const Case cases[] = {
      {LRNN_F32, LRNN_F32, false, false}, {LRNN_F32, LRNN_F32, true, false},
      {LRNN_BF16, LRNN_BF16, false, false}, {LRNN_BF16, LRNN_BF16, true, false},
      {LRNN_C64, LRNN_C64, false, false}, {LRNN_C64, LRNN_C64, true, false},
      {LRNN_F32, LRNN_F32, false, true}, {LRNN_F32, LRNN_F32, true, true},
      {LRNN_BF16, LRNN_BF16, false, true}, {LRNN_BF16, LRNN_BF16, true, true},
      {LRNN_C64, LRNN_F32, false, true}, {LRNN_C64, LRNN_F32, true, true},
  };
  uint32_t seed = 1234;
  for (const auto &sh : shapes) {
    const int64_t B = sh[0], L = sh[1], D = sh[2], n = B * L * D;
    void *scratch;
    CK(cudaMalloc(&scratch, (size_t)L * 16));
    for (const Case &c : cases) {
      char label[128];
      snprintf(label, sizeof label, "(%lld,%lld,%lld) %s %s %s", (long long)B, (long long)L, (long long)D,
               dtype_name(c.dtype), c.time_major ? "tm" : "cm", c.a_invariant ? "inv" : "full");
      if (only && !strstr(label, only)) continue;
      const size_t es = elem_size(c.dtype), as = elem_size(c.a_dtype);
      const size_t na = c.a_invariant ? (size_t)D : (size_t)n;
      /* |a| < 1 so that long sequences stay finite */
      const float a_hi = reals(c.a_dtype) == 2 ? 0.69f : 0.99f, a_lo = reals(c.a_dtype) == 2 ? 0.4f : 0.6f;
      void *da_, *db_, *dh, *dhl, *dg, *dda, *ddb, *ddh0;
      CK(cudaMalloc(&da_, na * as));
      CK(cudaMalloc(&db_, n * es));
      CK(cudaMalloc(&dh, n * es));
      CK(cudaMalloc(&dg, n * es));
      CK(cudaMalloc(&dhl, B * D * es));
      CK(cudaMalloc(&dda, c.a_invariant ? B * D * 8 : n * as));
      CK(cudaMalloc(&ddb, n * es));
      CK(cudaMalloc(&ddh0, B * D * es));
      fill(da_, c.a_dtype, na, a_lo, a_hi, seed++);
      fill(db_, c.dtype, n, -1.f, 1.f, seed++);
      fill(dg, c.dtype, n, -1.f, 1.f, seed++);

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

      std::vector<Side> sides;
      if (!(side && !strcmp(side, "cur")))
        for (const Side &v : others)
          if (v.fwd && v.bwd) sides.push_back(v);
      if (sweep.empty()) sides.push_back({"cur", lrnn_linear_scan_fwd_cuda, lrnn_linear_scan_bwd_cuda, 0, 0, 0, ""});
      for (const std::string &v : sweep) sides.push_back({v, lrnn_linear_scan_fwd_cuda, lrnn_linear_scan_bwd_cuda, 0, 0, 0, v});
      for (Side &sd : sides) {
        if (!sd.env.empty()) {
          if (sd.env == "auto") unsetenv(sweep_env);
          else setenv(sweep_env, sd.env.c_str(), 1);
        }
        /* correctness: the CPU kernel on a sample of rows (every output is poisoned first) */
        CK(cudaMemset(dh, 0xff, n * es));
        CK(cudaMemset(ddb, 0xff, n * es));
        CK(cudaMemset(dda, 0xff, c.a_invariant ? B * D * 8 : n * as));
        if (sd.fwd(&p, nullptr) != LRNN_OK) { printf("%s: fwd launch failed\n", label); return 1; }
        if (sd.bwd(&q, nullptr) != LRNN_OK) { printf("%s: bwd launch failed\n", label); return 1; }
        CK(cudaDeviceSynchronize());
        double err = 0, scale = 0;
        const int64_t rows = B * D, step = std::max<int64_t>(1, rows / 7);
        const int64_t inv_s[3] = {0, 0, 1};
        for (int64_t r = 0; r < rows; r += step) {
          const int64_t bi = r / D, d = r % D;
          /* the row alone, as a (1, L, 1) problem on the CPU */
          auto ha = c.a_invariant ? row_to_host(da_, as, inv_s, 0, d, 1, scratch)
                                  : row_to_host(da_, as, p.a_stride, bi, d, L, scratch);
          auto hb = row_to_host(db_, es, p.b_stride, bi, d, L, scratch);
          auto hg = row_to_host(dg, es, p.b_stride, bi, d, L, scratch);
          auto gh = row_to_host(dh, es, p.h_stride, bi, d, L, scratch);
          auto gdb = row_to_host(ddb, es, p.b_stride, bi, d, L, scratch);
          std::vector<unsigned char> ch(L * es), chl(es), cdb(L * es), cda(c.a_invariant ? 16 : L * as), cdh0(es);
          lrnn_linear_scan_params pc = p;
          pc.h = ch.data(); pc.h_last = chl.data(); pc.a = ha.data(); pc.b = hb.data();
          pc.batch = 1; pc.dim = 1;
          const int64_t row_s[3] = {L, 1, 1};
          memcpy(pc.b_stride, row_s, sizeof row_s);
          memcpy(pc.h_stride, row_s, sizeof row_s);
          if (!c.a_invariant) memcpy(pc.a_stride, row_s, sizeof row_s);
          lrnn_linear_scan_bwd_params qc = q;
          qc.da = cda.data(); qc.db = cdb.data(); qc.dh0 = cdh0.data(); qc.grad_h = hg.data(); qc.a = ha.data();
          qc.h = ch.data(); qc.batch = 1; qc.dim = 1;
          memcpy(qc.grad_h_stride, row_s, sizeof row_s);
          memcpy(qc.h_stride, row_s, sizeof row_s);
          memcpy(qc.db_stride, row_s, sizeof row_s);
          memcpy(qc.a_stride, pc.a_stride, sizeof row_s);
          if (!c.a_invariant) memcpy(qc.da_stride, row_s, sizeof row_s);
          if (lrnn_linear_scan_fwd_cpu(&pc, 0, 1) != LRNN_OK || lrnn_linear_scan_bwd_cpu(&qc, 0, 1) != LRNN_OK) {
            printf("%s: cpu failed\n", label);
            return 1;
          }
          const lrnn_dtype vt = c.dtype == LRNN_C64 ? LRNN_F32 : c.dtype;
          for (int64_t i = 0; i < L * reals(c.dtype); ++i) {
            const float gv = value(vt, gh.data(), i), cv = value(vt, ch.data(), i);
            const float gb = value(vt, gdb.data(), i), cb = value(vt, cdb.data(), i);
            err = std::max({err, (double)std::fabs(gv - cv), (double)std::fabs(gb - cb)});
            if (!(std::isfinite(gv) && std::isfinite(gb))) err = INFINITY;
            scale = std::max({scale, (double)std::fabs(cv), (double)std::fabs(cb)});
          }
        }
        sd.rel = err / std::max(scale, 1e-30);
        sd.fwd_ms = median_ms([&] { sd.fwd(&p, nullptr); }, flush, flush_bytes, reps);
        sd.bwd_ms = median_ms([&] { sd.bwd(&q, nullptr); }, flush, flush_bytes, reps);
      }
      /* minimal bytes: fwd reads a, b, writes h; bwd reads g, a, h, writes da, db */
      const double sa = c.a_invariant ? 0 : (double)n * as, sx = (double)n * es;
      const double fwd_bytes = sa + 2 * sx, bwd_bytes = 2 * sa + 3 * sx, fb_bytes = fwd_bytes + bwd_bytes;
      const char *lay = c.time_major ? "tm" : "cm", *ak = c.a_invariant ? "inv" : "full";
      char shape[48];
      snprintf(shape, sizeof shape, "(%lld,%lld,%lld)", (long long)B, (long long)L, (long long)D);
      auto pct = [&](double bytes, double ms) { return 100.0 * bytes / bw / (ms * 1e-3); };
      for (const Side &sd : sides) {
        const double fb_ms = sd.fwd_ms + sd.bwd_ms;
        printf("%-22s %-10s %-4s %-5s %-7s %9.4f %8.0f %6.1f%% %10.2e %s\n", shape, dtype_name(c.dtype), lay, ak, "fwd",
               sd.fwd_ms, fwd_bytes / sd.fwd_ms * 1e-6, pct(fwd_bytes, sd.fwd_ms), sd.rel, sd.name.c_str());
        printf("%-22s %-10s %-4s %-5s %-7s %9.4f %8.0f %6.1f%% %10s %s\n", shape, dtype_name(c.dtype), lay, ak, "bwd",
               sd.bwd_ms, bwd_bytes / sd.bwd_ms * 1e-6, pct(bwd_bytes, sd.bwd_ms), "", sd.name.c_str());
        printf("%-22s %-10s %-4s %-5s %-7s %9.4f %8.0f %6.1f%% %10s %s\n", shape, dtype_name(c.dtype), lay, ak, "fwd+bwd",
               fb_ms, fb_bytes / fb_ms * 1e-6, pct(fb_bytes, fb_ms), "", sd.name.c_str());
      }
      if (sides.size() > 1) {  /* the compact line: fwd, bwd, fwd+bwd % of the floor per build, worst rel */
        std::string line = "= " + std::string(shape) + " " + std::string(dtype_name(c.dtype)).substr(0, 4) + " " + lay + " " + ak;
        char buf[32];
        double worst = 0;
        for (int k = 0; k < 3; ++k) {
          line += " |";
          for (const Side &sd : sides) {
            const double ms = k == 0 ? sd.fwd_ms : k == 1 ? sd.bwd_ms : sd.fwd_ms + sd.bwd_ms;
            snprintf(buf, sizeof buf, " %5.1f", pct(k == 0 ? fwd_bytes : k == 1 ? bwd_bytes : fb_bytes, ms));
            line += buf;
            worst = std::max(worst, sd.rel);
          }
        }
        snprintf(buf, sizeof buf, " | %.1e", worst);
        printf("%s%s\n", line.c_str(), buf);
      }
      fflush(stdout);
      for (void *ptr : {da_, db_, dh, dhl, dg, dda, ddb, ddh0}) CK(cudaFree(ptr));
    }
    CK(cudaFree(scratch));
  }
  CK(cudaFree(flush));
  return 0;
}
