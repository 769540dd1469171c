// test_emu_lti_kernels.cpp: runs the CUDA ssm_kernel and cauchy launchers (csrc/cuda, on the CPU
// through the emulation in this folder) against the CPU kernels (csrc/cpu) on random inputs:
// both dtypes, both bases / symmetric and plain, strided inputs and outputs (the backwards read
// their output gradient with a step of 2 at odd lengths), lengths and state counts around the tile
// and chunk boundaries. Outputs are poisoned with NaN first, so an element a kernel fails to write
// shows up as a mismatch. Errors are relative to the largest magnitude.
#include <cmath>
#include <complex>
#include <cstdio>
#include <random>
#include <vector>

#include "lrnn/cauchy.h"
#include "lrnn/ssm_kernel.h"

namespace {

std::mt19937_64 rng(99);
double uni(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }
int failures = 0;

template <typename T>
double rel_err(const std::vector<T>& a, const std::vector<T>& b) {
  double m = 0, e = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    m = std::max(m, (double)std::abs(b[i]));
    const double d = std::abs(a[i] - b[i]);
    e = std::isnan(d) ? INFINITY : std::max(e, d);
  }
  return e / (m > 0 ? m : 1);
}

void report(const char* what, double err, double tol) {
  const bool ok = err <= tol;
  if (!ok) ++failures;
  std::printf("%-60s err %.2e (tol %.0e) %s\n", what, err, tol, ok ? "ok" : "FAIL");
}

template <typename T>
void ssm_case(int64_t H, int64_t N, int64_t L, lrnn_ssm_basis basis) {
  using C = std::complex<T>;
  const bool cw = basis == LRNN_BASIS_COMPLEX;
  const lrnn_dtype dt = sizeof(T) == 4 ? LRNN_C64 : LRNN_C128;
  const double tol = sizeof(T) == 4 ? 5e-5 : 1e-11;
  // z, w stored with a row stride of N + 1 and w's states 2 apart (non-contiguous)
  std::vector<C> z(H * (N + 1)), wc(H * 2 * N);
  std::vector<T> wr(H * 2 * N);
  for (auto& x : z) x = C((T)uni(-0.3, -1e-3), (T)uni(-3, 3));
  for (auto& x : wc) x = C((T)uni(-1, 1), (T)uni(-1, 1));
  for (auto& x : wr) x = (T)uni(-1, 1);
  lrnn_ssm_kernel_params p{};
  p.w = cw ? (const void*)wc.data() : (const void*)wr.data();
  p.z = z.data();
  p.heads = H, p.state = N, p.length = L;
  p.w_stride[0] = 2 * N, p.w_stride[1] = 2;
  p.z_stride[0] = N + 1, p.z_stride[1] = 1;
  p.k_stride[0] = L + 3, p.k_stride[1] = 1;
  p.dtype = dt, p.basis = basis;
  std::vector<T> k_cpu(H * (L + 3), (T)NAN), k_gpu(H * (L + 3), (T)NAN);
  p.k = k_cpu.data();
  lrnn_ssm_kernel_fwd_cpu(&p, 0, H);
  p.k = k_gpu.data();
  const lrnn_status s1 = lrnn_ssm_kernel_fwd_cuda(&p, nullptr);
  for (int64_t h = 0; h < H; ++h)   // the row padding is never written
    for (int64_t l = L; l < L + 3; ++l) k_cpu[h * (L + 3) + l] = k_gpu[h * (L + 3) + l] = 0;
  char name[128];
  std::snprintf(name, sizeof name, "ssm_kernel fwd %s %s H%lld N%lld L%lld", sizeof(T) == 4 ? "c64" : "c128",
                cw ? "complex" : "cosine", (long long)H, (long long)N, (long long)L);
  report(name, s1 == LRNN_OK ? rel_err(k_gpu, k_cpu) : INFINITY, tol);

  // dK read with a step of 2 at odd L (every other element is never read), contiguous at even L
  const int64_t step = 1 + (L & 1);
  std::vector<T> g(H * step * L);
  for (auto& x : g) x = (T)uni(-1, 1);
  lrnn_ssm_kernel_bwd_params b{};
  b.grad_k = g.data(), b.w = p.w, b.z = p.z;
  b.heads = H, b.state = N, b.length = L;
  b.grad_k_stride[0] = step * L, b.grad_k_stride[1] = step;
  b.w_stride[0] = p.w_stride[0], b.w_stride[1] = p.w_stride[1];
  b.z_stride[0] = p.z_stride[0], b.z_stride[1] = p.z_stride[1];
  b.grad_w_stride[0] = N, b.grad_w_stride[1] = 1, b.grad_z_stride[0] = N, b.grad_z_stride[1] = 1;
  b.dtype = dt, b.basis = basis;
  std::vector<C> gz_cpu(H * N, C(NAN, NAN)), gz_gpu(H * N, C(NAN, NAN)), gwc_cpu(H * N, C(NAN, NAN)),
      gwc_gpu(H * N, C(NAN, NAN));
  std::vector<T> gwr_cpu(H * N, (T)NAN), gwr_gpu(H * N, (T)NAN);
  b.grad_z = gz_cpu.data(), b.grad_w = cw ? (void*)gwc_cpu.data() : (void*)gwr_cpu.data();
  lrnn_ssm_kernel_bwd_cpu(&b, 0, H);
  b.grad_z = gz_gpu.data(), b.grad_w = cw ? (void*)gwc_gpu.data() : (void*)gwr_gpu.data();
  std::vector<unsigned char> ws(lrnn_ssm_kernel_bwd_workspace_bytes(&b) + 8);
  const lrnn_status s2 = lrnn_ssm_kernel_bwd_cuda(&b, ws.data(), nullptr);
  std::snprintf(name, sizeof name, "ssm_kernel bwd %s %s H%lld N%lld L%lld", sizeof(T) == 4 ? "c64" : "c128",
                cw ? "complex" : "cosine", (long long)H, (long long)N, (long long)L);
  const double e = s2 != LRNN_OK ? INFINITY
                                 : std::max(rel_err(gz_gpu, gz_cpu),
                                            cw ? rel_err(gwc_gpu, gwc_cpu) : rel_err(gwr_gpu, gwr_cpu));
  report(name, e, tol);
}

template <typename T>
void cauchy_case(int64_t H, int64_t N, int64_t L, int symmetric) {
  using C = std::complex<T>;
  const lrnn_dtype dt = sizeof(T) == 4 ? LRNN_C64 : LRNN_C128;
  const double tol = sizeof(T) == 4 ? 2e-5 : 1e-11;
  std::vector<C> v(H * N), lam(H * N), om(2 * L);
  for (auto& x : v) x = C((T)uni(-1, 1), (T)uni(-1, 1));
  for (auto& x : lam) x = C((T)uni(-1.1, -0.1), (T)uni(-3, 3));
  for (auto& x : om) x = C((T)uni(-0.2, 0.2), (T)uni(-4, 4));
  lrnn_cauchy_params p{};
  p.v = v.data(), p.lam = lam.data(), p.omega = om.data();
  p.heads = H, p.state = N, p.length = L;
  p.v_stride[0] = N, p.v_stride[1] = 1, p.lam_stride[0] = N, p.lam_stride[1] = 1;
  p.omega_stride = 2, p.out_stride[0] = L, p.out_stride[1] = 1;
  p.dtype = dt, p.symmetric = symmetric;
  std::vector<C> o_cpu(H * L, C(NAN, NAN)), o_gpu(H * L, C(NAN, NAN));
  p.out = o_cpu.data();
  lrnn_cauchy_fwd_cpu(&p, 0, H);
  p.out = o_gpu.data();
  const lrnn_status s1 = lrnn_cauchy_fwd_cuda(&p, nullptr);
  char name[128];
  std::snprintf(name, sizeof name, "cauchy fwd %s sym%d H%lld N%lld L%lld", sizeof(T) == 4 ? "c64" : "c128",
                symmetric, (long long)H, (long long)N, (long long)L);
  report(name, s1 == LRNN_OK ? rel_err(o_gpu, o_cpu) : INFINITY, tol);

  // the output gradient read with a step of 2 at odd L, contiguous at even L
  const int64_t step = 1 + (L & 1);
  std::vector<C> g(H * step * L);
  for (auto& x : g) x = C((T)uni(-1, 1), (T)uni(-1, 1));
  lrnn_cauchy_bwd_params b{};
  b.grad_out = g.data(), b.v = p.v, b.omega = p.omega, b.lam = p.lam;
  b.heads = H, b.state = N, b.length = L;
  b.grad_out_stride[0] = step * L, b.grad_out_stride[1] = step;
  b.v_stride[0] = N, b.v_stride[1] = 1, b.lam_stride[0] = N, b.lam_stride[1] = 1, b.omega_stride = 2;
  b.grad_v_stride[0] = N, b.grad_v_stride[1] = 1, b.grad_lam_stride[0] = N, b.grad_lam_stride[1] = 1;
  b.dtype = dt, b.symmetric = symmetric;
  std::vector<C> gv_cpu(H * N, C(NAN, NAN)), gv_gpu(H * N, C(NAN, NAN)), gl_cpu(H * N, C(NAN, NAN)),
      gl_gpu(H * N, C(NAN, NAN));
  b.grad_v = gv_cpu.data(), b.grad_lam = gl_cpu.data();
  lrnn_cauchy_bwd_cpu(&b, 0, H);
  b.grad_v = gv_gpu.data(), b.grad_lam = gl_gpu.data();
  std::vector<unsigned char> ws(lrnn_cauchy_bwd_workspace_bytes(&b) + 8);
  const lrnn_status s2 = lrnn_cauchy_bwd_cuda(&b, ws.data(), nullptr);
  std::snprintf(name, sizeof name, "cauchy bwd %s sym%d H%lld N%lld L%lld", sizeof(T) == 4 ? "c64" : "c128",
                symmetric, (long long)H, (long long)N, (long long)L);
  report(name, s2 == LRNN_OK ? std::max(rel_err(gv_gpu, gv_cpu), rel_err(gl_gpu, gl_cpu)) : INFINITY, tol);
}

}  // namespace

int main() {
  const int64_t shapes[][3] = {{2, 19, 4096 + 37}, {1, 16, 64}, {3, 5, 1}, {1, 33, 2 * 4096}, {2, 1, 700}, {1, 16, 70001}, {1, 70, 300}};
  for (auto& s : shapes) {
    ssm_case<float>(s[0], s[1], s[2], LRNN_BASIS_COMPLEX);
    ssm_case<float>(s[0], s[1], s[2], LRNN_BASIS_COSINE);
    ssm_case<double>(s[0], s[1], s[2], LRNN_BASIS_COMPLEX);
  }
  const int64_t cshapes[][3] = {{2, 37, 1100}, {1, 300, 515}, {3, 1, 1}, {1, 8, 5121}};
  for (auto& s : cshapes)
    for (int sym = 0; sym < 2; ++sym) {
      cauchy_case<float>(s[0], s[1], s[2], sym);
      cauchy_case<double>(s[0], s[1], s[2], sym);
    }
  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "passed", failures);
  return failures ? 1 : 0;
}
