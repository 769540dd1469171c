// test_lti_kernels.cpp: the CPU Vandermonde (ssm_kernel) and Cauchy kernels, forward and
// backward, against naive double-precision loops over (h, n, l) written straight from the
// formulas in lrnn/ssm_kernel.h and lrnn/cauchy.h. Inputs are random with a fixed seed; the
// tolerances are a small multiple of the working precision times the size of the sums.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <cstdint>
#include <random>
#include <vector>

#include "lrnn/cauchy.h"
#include "lrnn/ssm_kernel.h"

namespace {

using cd = std::complex<double>;

template <typename T>
struct Prec;
template <>
struct Prec<float> {
  static constexpr lrnn_dtype dtype = LRNN_C64;
  static constexpr double eps = 1.2e-7;
};
template <>
struct Prec<double> {
  static constexpr lrnn_dtype dtype = LRNN_C128;
  static constexpr double eps = 2.3e-16;
};

// Decaying modes like an S4D/S5 discretization: Re z in [-0.5, -1e-3], Im z in [-3, 3].
template <typename T>
void random_modes(std::mt19937& gen, int64_t count, std::vector<std::complex<T>>& z, std::vector<std::complex<T>>& w) {
  std::uniform_real_distribution<double> re(-0.5, -1e-3), im(-3.0, 3.0), u(-1.0, 1.0);
  z.resize(count);
  w.resize(count);
  for (int64_t i = 0; i < count; ++i) {
    z[i] = std::complex<T>((T)re(gen), (T)im(gen));
    w[i] = std::complex<T>((T)u(gen), (T)u(gen));
  }
}

double max_abs(const std::vector<double>& x) {
  double m = 0;
  for (double v : x) m = std::max(m, std::fabs(v));
  return m;
}

// ---------------------------------------------------------------- ssm_kernel
template <typename T>
void check_ssm_kernel(int64_t H, int64_t N, int64_t L, lrnn_ssm_basis basis, uint32_t seed) {
  std::mt19937 gen(seed);
  std::vector<std::complex<T>> z, w;
  random_modes<T>(gen, H * N, z, w);
  std::vector<T> wreal(H * N);
  for (int64_t i = 0; i < H * N; ++i) wreal[i] = w[i].real();
  const bool cplx = basis == LRNN_BASIS_COMPLEX;
  const double scale = cplx ? 2.0 : 1.0;
  auto wval = [&](int64_t i) { return cplx ? cd(w[i]) : cd(wreal[i], 0.0); };
  auto ez = [&](int64_t i, int64_t l) { return std::exp(cd(z[i]) * (double)l); };

  // K stored transposed, (L, H)-contiguous, to exercise the strides.
  std::vector<T> k(L * H, (T)NAN);
  lrnn_ssm_kernel_params p{};
  p.k = k.data();
  p.w = cplx ? (const void*)w.data() : (const void*)wreal.data();
  p.z = z.data();
  p.heads = H; p.state = N; p.length = L;
  p.w_stride[0] = N; p.w_stride[1] = 1;
  p.z_stride[0] = N; p.z_stride[1] = 1;
  p.k_stride[0] = 1; p.k_stride[1] = H;
  p.dtype = Prec<T>::dtype;
  p.basis = basis;
  ASSERT_EQ(lrnn_ssm_kernel_fwd_cpu(&p, 0, H), LRNN_OK);
  std::vector<double> err, ref;
  for (int64_t h = 0; h < H; ++h)
    for (int64_t l = 0; l < L; ++l) {
      cd s = 0;
      for (int64_t n = 0; n < N; ++n) s += wval(h * N + n) * ez(h * N + n, l);
      ref.push_back(scale * s.real());
      err.push_back(k[l * H + h] - scale * s.real());
    }
  const double tol_f = 64 * Prec<T>::eps * (N + LRNN_SSM_KERNEL_BLOCK) * std::max(1.0, max_abs(ref));
  EXPECT_LE(max_abs(err), tol_f) << "forward H=" << H << " N=" << N << " L=" << L;

  // Backward with a random dK.
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<T> gk(H * L);
  for (auto& x : gk) x = (T)u(gen);
  std::vector<std::complex<T>> gw(H * N), gz(H * N);
  std::vector<T> gwr(H * N);
  lrnn_ssm_kernel_bwd_params b{};
  b.grad_w = cplx ? (void*)gw.data() : (void*)gwr.data();
  b.grad_z = gz.data();
  b.grad_k = gk.data();
  b.w = p.w; b.z = p.z;
  b.heads = H; b.state = N; b.length = L;
  b.grad_k_stride[0] = L; b.grad_k_stride[1] = 1;
  b.w_stride[0] = N; b.w_stride[1] = 1;
  b.z_stride[0] = N; b.z_stride[1] = 1;
  b.grad_w_stride[0] = N; b.grad_w_stride[1] = 1;
  b.grad_z_stride[0] = N; b.grad_z_stride[1] = 1;
  b.dtype = Prec<T>::dtype;
  b.basis = basis;
  ASSERT_EQ(lrnn_ssm_kernel_bwd_cpu(&b, 0, H), LRNN_OK);
  std::vector<double> ew, ezr;
  double mag_w = 1, mag_z = 1;
  for (int64_t i = 0; i < H * N; ++i) {
    const int64_t h = i / N;
    cd s0 = 0, s1 = 0;
    for (int64_t l = 0; l < L; ++l) {
      s0 += (double)gk[h * L + l] * std::conj(ez(i, l));
      s1 += (double)l * gk[h * L + l] * std::conj(ez(i, l));
    }
    const cd rw = scale * s0, rz = scale * std::conj(wval(i)) * s1;
    const cd got_w = cplx ? cd(gw[i]) : cd(gwr[i], 0.0);
    const cd want_w = cplx ? rw : cd(rw.real(), 0.0);
    ew.push_back(std::abs(got_w - want_w));
    ezr.push_back(std::abs(cd(gz[i]) - rz));
    mag_w = std::max(mag_w, std::abs(want_w));
    mag_z = std::max(mag_z, std::abs(rz));
  }
  const double tol_b = 64 * Prec<T>::eps * (LRNN_SSM_KERNEL_BLOCK + std::sqrt((double)L));
  EXPECT_LE(max_abs(ew), tol_b * mag_w) << "grad_w H=" << H << " N=" << N << " L=" << L;
  EXPECT_LE(max_abs(ezr), tol_b * mag_z) << "grad_z H=" << H << " N=" << N << " L=" << L;
}

TEST(SsmKernel, ComplexBasisFloat) {
  check_ssm_kernel<float>(3, 5, 1, LRNN_BASIS_COMPLEX, 1);
  check_ssm_kernel<float>(2, 1, 7, LRNN_BASIS_COMPLEX, 2);
  check_ssm_kernel<float>(4, 13, 100, LRNN_BASIS_COMPLEX, 3);
  check_ssm_kernel<float>(2, 70, 1000, LRNN_BASIS_COMPLEX, 4);
}
TEST(SsmKernel, ComplexBasisDouble) {
  check_ssm_kernel<double>(3, 5, 1, LRNN_BASIS_COMPLEX, 5);
  check_ssm_kernel<double>(4, 13, 100, LRNN_BASIS_COMPLEX, 6);
  check_ssm_kernel<double>(2, 70, 1000, LRNN_BASIS_COMPLEX, 7);
}
TEST(SsmKernel, CosineBasis) {
  check_ssm_kernel<float>(3, 9, 33, LRNN_BASIS_COSINE, 8);
  check_ssm_kernel<float>(2, 65, 500, LRNN_BASIS_COSINE, 9);
  check_ssm_kernel<double>(3, 9, 33, LRNN_BASIS_COSINE, 10);
  check_ssm_kernel<double>(2, 65, 500, LRNN_BASIS_COSINE, 11);
}

// Slowly decaying, fast-rotating modes over a long kernel: the re-anchored powers must not
// drift (a plain running product loses ~L*eps relative accuracy, i.e. 1e-2 at L = 1e5 in f32).
TEST(SsmKernel, LongKernelDoesNotDrift) {
  const int64_t N = 4, L = 100000;
  std::vector<std::complex<float>> z = {{-1e-5f, 2.9f}, {-2e-5f, 0.7f}, {-1e-6f, 3.1f}, {-3e-5f, 1.3f}};
  std::vector<std::complex<float>> w = {{0.5f, -0.2f}, {0.1f, 0.3f}, {-0.4f, 0.2f}, {0.3f, 0.1f}};
  std::vector<float> k(L);
  lrnn_ssm_kernel_params p{};
  p.k = k.data(); p.w = w.data(); p.z = z.data();
  p.heads = 1; p.state = N; p.length = L;
  p.w_stride[1] = 1; p.z_stride[1] = 1; p.k_stride[1] = 1;
  p.dtype = LRNN_C64; p.basis = LRNN_BASIS_COMPLEX;
  ASSERT_EQ(lrnn_ssm_kernel_fwd_cpu(&p, 0, 1), LRNN_OK);
  double worst = 0;
  for (int64_t l = 0; l < L; l += 7) {
    cd s = 0;
    for (int64_t n = 0; n < N; ++n) s += cd(w[n]) * std::exp(cd(z[n]) * (double)l);
    worst = std::max(worst, std::fabs(k[l] - 2 * s.real()));
  }
  EXPECT_LE(worst, 2e-5);
}

TEST(SsmKernel, BadArguments) {
  lrnn_ssm_kernel_params p{};
  p.heads = 2; p.state = 2; p.length = 3; p.dtype = LRNN_C64;
  EXPECT_EQ(lrnn_ssm_kernel_fwd_cpu(&p, 0, 2), LRNN_ERR_ARGUMENT);  // NULL pointers
  EXPECT_EQ(lrnn_ssm_kernel_fwd_cpu(&p, 0, 3), LRNN_ERR_ARGUMENT);  // range past H
  float k[6];
  std::complex<float> wz[4];
  p.k = k; p.w = wz; p.z = wz;
  p.dtype = LRNN_F32;
  EXPECT_EQ(lrnn_ssm_kernel_fwd_cpu(&p, 0, 2), LRNN_ERR_DTYPE);
  EXPECT_EQ(lrnn_ssm_kernel_fwd_cpu(nullptr, 0, 0), LRNN_ERR_ARGUMENT);
}

// ---------------------------------------------------------------- cauchy
template <typename T>
void check_cauchy(int64_t H, int64_t N, int64_t L, bool symmetric, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0), re(-1.0, -0.1);
  std::vector<std::complex<T>> v(H * N), lam(H * N), om(L);
  for (auto& x : v) x = {(T)u(gen), (T)u(gen)};
  for (auto& x : lam) x = {(T)re(gen), (T)(3 * u(gen))};
  for (auto& x : om) x = {(T)0, (T)(4 * u(gen))};  // S4's nodes lie on the imaginary axis
  std::vector<std::complex<T>> out(H * L);
  lrnn_cauchy_params p{};
  p.out = out.data(); p.v = v.data(); p.omega = om.data(); p.lam = lam.data();
  p.heads = H; p.state = N; p.length = L;
  p.v_stride[0] = N; p.v_stride[1] = 1;
  p.lam_stride[0] = N; p.lam_stride[1] = 1;
  p.omega_stride = 1;
  p.out_stride[0] = L; p.out_stride[1] = 1;
  p.dtype = Prec<T>::dtype;
  p.symmetric = symmetric;
  ASSERT_EQ(lrnn_cauchy_fwd_cpu(&p, 0, H), LRNN_OK);
  double worst = 0, mag = 1;
  for (int64_t h = 0; h < H; ++h)
    for (int64_t l = 0; l < L; ++l) {
      cd s = 0;
      for (int64_t n = 0; n < N; ++n) {
        const cd vn = v[h * N + n], ln = lam[h * N + n], o = om[l];
        s += vn / (o - ln);
        if (symmetric) s += std::conj(vn) / (o - std::conj(ln));
      }
      worst = std::max(worst, std::abs(cd(out[h * L + l]) - s));
      mag = std::max(mag, std::abs(s));
    }
  // |1/(omega - lam)| <= 10 here, so each term is at most ~14 in magnitude.
  EXPECT_LE(worst, 64 * Prec<T>::eps * 14 * N) << "forward H=" << H << " N=" << N << " L=" << L;

  std::vector<std::complex<T>> g(H * L), gv(H * N), gl(H * N);
  for (auto& x : g) x = {(T)u(gen), (T)u(gen)};
  lrnn_cauchy_bwd_params b{};
  b.grad_v = gv.data(); b.grad_lam = gl.data(); b.grad_out = g.data();
  b.v = v.data(); b.omega = om.data(); b.lam = lam.data();
  b.heads = H; b.state = N; b.length = L;
  b.grad_out_stride[0] = L; b.grad_out_stride[1] = 1;
  b.v_stride[0] = N; b.v_stride[1] = 1;
  b.lam_stride[0] = N; b.lam_stride[1] = 1;
  b.omega_stride = 1;
  b.grad_v_stride[0] = N; b.grad_v_stride[1] = 1;
  b.grad_lam_stride[0] = N; b.grad_lam_stride[1] = 1;
  b.dtype = Prec<T>::dtype;
  b.symmetric = symmetric;
  ASSERT_EQ(lrnn_cauchy_bwd_cpu(&b, 0, H), LRNN_OK);
  double wv = 0, wl = 0, mv = 1, ml = 1;
  for (int64_t i = 0; i < H * N; ++i) {
    const int64_t h = i / N;
    cd sv = 0, sl = 0;
    for (int64_t l = 0; l < L; ++l) {
      const cd G = g[h * L + l], o = om[l], ln = lam[i], vn = v[i];
      // holomorphic term: grad = conj(f'(x)) * G; conjugate term: grad = conj(G * g'(x))
      sv += std::conj(1.0 / (o - ln)) * G;
      sl += std::conj(vn / ((o - ln) * (o - ln))) * G;
      if (symmetric) {
        const cd d2 = std::conj(o) - ln;
        sv += std::conj(G / d2);
        sl += std::conj(G * vn / (d2 * d2));
      }
    }
    mv = std::max(mv, std::abs(sv));
    ml = std::max(ml, std::abs(sl));
    wv = std::max(wv, std::abs(cd(gv[i]) - sv));
    wl = std::max(wl, std::abs(cd(gl[i]) - sl));
  }
  // relative to the largest gradient: terms reach |r1|^2 |v| ~ 100, so sums cancel heavily
  const double tol = 64 * Prec<T>::eps * 100 * (64.0 + std::sqrt((double)L));
  EXPECT_LE(wv, tol * mv) << "grad_v H=" << H << " N=" << N << " L=" << L;
  EXPECT_LE(wl, tol * ml) << "grad_lam H=" << H << " N=" << N << " L=" << L;
}

TEST(Cauchy, SymmetricFloat) {
  check_cauchy<float>(3, 1, 1, true, 21);
  check_cauchy<float>(2, 7, 65, true, 22);
  check_cauchy<float>(4, 67, 301, true, 23);
}
TEST(Cauchy, SymmetricDouble) {
  check_cauchy<double>(3, 1, 1, true, 24);
  check_cauchy<double>(4, 67, 301, true, 25);
}
TEST(Cauchy, Plain) {
  check_cauchy<float>(2, 9, 130, false, 26);
  check_cauchy<double>(2, 9, 130, false, 27);
}

TEST(Cauchy, BadArguments) {
  lrnn_cauchy_params p{};
  p.heads = 1; p.state = 1; p.length = 1; p.dtype = LRNN_C64;
  EXPECT_EQ(lrnn_cauchy_fwd_cpu(&p, 0, 1), LRNN_ERR_ARGUMENT);
  std::complex<float> x[1];
  p.out = x; p.v = x; p.lam = x; p.omega = x;
  p.dtype = LRNN_F64;
  EXPECT_EQ(lrnn_cauchy_fwd_cpu(&p, 0, 1), LRNN_ERR_DTYPE);
}

}  // namespace
