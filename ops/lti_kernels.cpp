// lti_kernels.cpp: checks and allocation for lrnn::ssm_kernel and lrnn::cauchy (see lti_kernels.h).
#include "lti_kernels.h"

namespace lrnn {
namespace {

constexpr const char* kSk = "ssm_kernel";
constexpr const char* kSkB = "ssm_kernel_backward";
constexpr const char* kCy = "cauchy";
constexpr const char* kCyB = "cauchy_backward";

lrnn_ssm_basis parse_basis(const std::string& basis, const char* op) {
  if (basis == "complex") return LRNN_BASIS_COMPLEX;
  if (basis == "cosine") return LRNN_BASIS_COSINE;
  fail(op, "argument 'basis' must be \"complex\" or \"cosine\", got \"", basis, "\"");
}

void check_complex(const Tensor& t, const char* op, const char* name) {
  LRNN_CHECK(t.scalar_type() == ScalarType::ComplexFloat || t.scalar_type() == ScalarType::ComplexDouble, op,
             "argument '", name, "' must be complex64 or complex128, got ", dtype_name(t.scalar_type()));
}

// (H, N) from two per-state tensors of rank 1 (N,) or 2 (H, N) that broadcast together.
std::array<int64_t, 2> state_shape(const Tensor& a, const char* an, const Tensor& b, const char* bn,
                                   const char* op) {
  for (const Tensor* t : {&a, &b})
    LRNN_CHECK(t->dim() == 1 || t->dim() == 2, op, "argument '", t == &a ? an : bn,
               "' must have shape (H, N) or (N,), got ", shape_str(*t));
  auto size = [](const Tensor& t, int i) { return i == 0 ? (t.dim() == 2 ? t.size(0) : 1) : t.size(-1); };
  std::array<int64_t, 2> shape{};
  for (int i = 0; i < 2; ++i) {
    const int64_t x = size(a, i), y = size(b, i);
    LRNN_CHECK(x == y || x == 1 || y == 1, op, "arguments '", an, "' ", shape_str(a), " and '", bn, "' ",
               shape_str(b), " do not broadcast to one (H, N)");
    shape[i] = x == 1 ? y : x;
  }
  return shape;
}

void set_strides(int64_t* dst, const Tensor& t, const std::array<int64_t, 2>& shape) {
  const auto s = broadcast_strides<2>(t, shape);
  dst[0] = s[0];
  dst[1] = s[1];
}

void check_w(const Tensor& w, const Tensor& z, lrnn_ssm_basis basis, const char* op) {
  const ScalarType want = basis == LRNN_BASIS_COMPLEX ? z.scalar_type() : real_type(z.scalar_type());
  LRNN_CHECK(w.scalar_type() == want, op, "argument 'w' must have dtype ", dtype_name(want), " for basis \"",
             basis == LRNN_BASIS_COMPLEX ? "complex" : "cosine", "\" with z of dtype ", dtype_name(z.scalar_type()),
             ", got ", dtype_name(w.scalar_type()));
  check_same_device(w, z, op, "w", "z");
}

}  // namespace

SsmKernelForward ssm_kernel_prepare(const Tensor& w, const Tensor& z, int64_t L, const std::string& basis) {
  const lrnn_ssm_basis b = parse_basis(basis, kSk);
  check_complex(z, kSk, "z");
  check_w(w, z, b, kSk);
  LRNN_CHECK(L >= 0, kSk, "argument 'L' must be >= 0, got ", L);
  const auto hn = state_shape(w, "w", z, "z", kSk);
  SsmKernelForward out;
  out.k = torch::stable::new_empty(z, {hn[0], L}, real_type(z.scalar_type()));
  lrnn_ssm_kernel_params& p = out.params;
  p = lrnn_ssm_kernel_params{};
  p.k = out.k.data_ptr();
  p.w = w.data_ptr();
  p.z = z.data_ptr();
  p.heads = hn[0];
  p.state = hn[1];
  p.length = L;
  set_strides(p.w_stride, w, hn);
  set_strides(p.z_stride, z, hn);
  p.k_stride[0] = out.k.stride(0);
  p.k_stride[1] = out.k.stride(1);
  p.dtype = *to_lrnn_dtype(z.scalar_type());
  p.basis = b;
  return out;
}

SsmKernelBackward ssm_kernel_backward_prepare(const Tensor& grad_k, const Tensor& w, const Tensor& z,
                                              const std::string& basis) {
  const lrnn_ssm_basis b = parse_basis(basis, kSkB);
  check_complex(z, kSkB, "z");
  check_w(w, z, b, kSkB);
  const auto hn = state_shape(w, "w", z, "z", kSkB);
  LRNN_CHECK(grad_k.dim() == 2 && grad_k.size(0) == hn[0], kSkB, "argument 'grad_k' must have shape (H, L) with H = ",
             hn[0], ", got ", shape_str(grad_k));
  LRNN_CHECK(grad_k.scalar_type() == real_type(z.scalar_type()), kSkB, "argument 'grad_k' must have dtype ",
             dtype_name(real_type(z.scalar_type())), ", got ", dtype_name(grad_k.scalar_type()));
  check_same_device(grad_k, z, kSkB, "grad_k", "z");
  SsmKernelBackward out;
  out.grad_w = torch::stable::new_empty(z, {hn[0], hn[1]}, w.scalar_type());
  out.grad_z = torch::stable::new_empty(z, {hn[0], hn[1]});
  lrnn_ssm_kernel_bwd_params& p = out.params;
  p = lrnn_ssm_kernel_bwd_params{};
  p.grad_w = out.grad_w.data_ptr();
  p.grad_z = out.grad_z.data_ptr();
  p.grad_k = grad_k.data_ptr();
  p.w = w.data_ptr();
  p.z = z.data_ptr();
  p.heads = hn[0];
  p.state = hn[1];
  p.length = grad_k.size(1);
  p.grad_k_stride[0] = grad_k.stride(0);
  p.grad_k_stride[1] = grad_k.stride(1);
  set_strides(p.w_stride, w, hn);
  set_strides(p.z_stride, z, hn);
  for (int i = 0; i < 2; ++i) {
    p.grad_w_stride[i] = out.grad_w.stride(i);
    p.grad_z_stride[i] = out.grad_z.stride(i);
  }
  p.dtype = *to_lrnn_dtype(z.scalar_type());
  p.basis = b;
  return out;
}

namespace {

void check_cauchy_args(const Tensor& v, const Tensor& omega, const Tensor& lam, const char* op) {
  check_complex(v, op, "v");
  for (auto [t, name] : {std::pair<const Tensor*, const char*>{&omega, "omega"}, {&lam, "lam"}}) {
    LRNN_CHECK(t->scalar_type() == v.scalar_type(), op, "argument '", name, "' must have dtype ",
               dtype_name(v.scalar_type()), " (the dtype of 'v'), got ", dtype_name(t->scalar_type()));
    check_same_device(*t, v, op, name, "v");
  }
  LRNN_CHECK(omega.dim() == 1, op, "argument 'omega' must have shape (L,), got ", shape_str(omega));
}

}  // namespace

CauchyForward cauchy_prepare(const Tensor& v, const Tensor& omega, const Tensor& lam, bool symmetric) {
  check_cauchy_args(v, omega, lam, kCy);
  const auto hn = state_shape(v, "v", lam, "lam", kCy);
  const int64_t L = omega.size(0);
  CauchyForward out;
  out.out = torch::stable::new_empty(v, {hn[0], L});
  lrnn_cauchy_params& p = out.params;
  p = lrnn_cauchy_params{};
  p.out = out.out.data_ptr();
  p.v = v.data_ptr();
  p.omega = omega.data_ptr();
  p.lam = lam.data_ptr();
  p.heads = hn[0];
  p.state = hn[1];
  p.length = L;
  set_strides(p.v_stride, v, hn);
  set_strides(p.lam_stride, lam, hn);
  p.omega_stride = omega.stride(0);
  p.out_stride[0] = out.out.stride(0);
  p.out_stride[1] = out.out.stride(1);
  p.dtype = *to_lrnn_dtype(v.scalar_type());
  p.symmetric = symmetric ? 1 : 0;
  return out;
}

CauchyBackward cauchy_backward_prepare(const Tensor& grad_out, const Tensor& v, const Tensor& omega,
                                       const Tensor& lam, bool symmetric) {
  check_cauchy_args(v, omega, lam, kCyB);
  const auto hn = state_shape(v, "v", lam, "lam", kCyB);
  const int64_t L = omega.size(0);
  LRNN_CHECK(grad_out.dim() == 2 && grad_out.size(0) == hn[0] && grad_out.size(1) == L, kCyB,
             "argument 'grad_out' must have shape (H, L) = (", hn[0], ", ", L, "), got ", shape_str(grad_out));
  LRNN_CHECK(grad_out.scalar_type() == v.scalar_type(), kCyB, "argument 'grad_out' must have dtype ",
             dtype_name(v.scalar_type()), ", got ", dtype_name(grad_out.scalar_type()));
  check_same_device(grad_out, v, kCyB, "grad_out", "v");
  CauchyBackward out;
  out.grad_v = torch::stable::new_empty(v, {hn[0], hn[1]});
  out.grad_lam = torch::stable::new_empty(v, {hn[0], hn[1]});
  lrnn_cauchy_bwd_params& p = out.params;
  p = lrnn_cauchy_bwd_params{};
  p.grad_v = out.grad_v.data_ptr();
  p.grad_lam = out.grad_lam.data_ptr();
  p.grad_out = grad_out.data_ptr();
  p.v = v.data_ptr();
  p.omega = omega.data_ptr();
  p.lam = lam.data_ptr();
  p.heads = hn[0];
  p.state = hn[1];
  p.length = L;
  p.grad_out_stride[0] = grad_out.stride(0);
  p.grad_out_stride[1] = grad_out.stride(1);
  set_strides(p.v_stride, v, hn);
  set_strides(p.lam_stride, lam, hn);
  p.omega_stride = omega.stride(0);
  for (int i = 0; i < 2; ++i) {
    p.grad_v_stride[i] = out.grad_v.stride(i);
    p.grad_lam_stride[i] = out.grad_lam.stride(i);
  }
  p.dtype = *to_lrnn_dtype(v.scalar_type());
  p.symmetric = symmetric ? 1 : 0;
  return out;
}

}  // namespace lrnn
