// linear_scan.cpp: checks and allocation for lrnn::linear_scan{,_backward} (see linear_scan.h).
#include "linear_scan.h"

namespace lrnn {
namespace {

constexpr const char* kFwd = "linear_scan";
constexpr const char* kBwd = "linear_scan_backward";

// A (B, L, D) output laid out like `like`: channel-major (B, D, L) storage when `like` is a
// transposed (B, D, L)-contiguous view, so that a caller's layout survives without copies.
Tensor new_sequence(const Tensor& like, int64_t B, int64_t L, int64_t D, ScalarType dtype) {
  const bool channel_major = L > 1 && D > 1 && like.stride(1) == 1 && like.stride(2) != 1;
  if (channel_major) return torch::stable::transpose(torch::stable::new_empty(like, {B, D, L}, dtype), 1, 2);
  return torch::stable::new_empty(like, {B, L, D}, dtype);
}

void check_sequence(const Tensor& t, const char* op, const char* name, int64_t B, int64_t L, int64_t D) {
  LRNN_CHECK(t.dim() == 3 && t.size(0) == B && t.size(1) == L && t.size(2) == D, op, "argument '", name,
             "' must have shape (B, L, D) = (", B, ", ", L, ", ", D, "), got ", shape_str(t));
}

void check_state(const Tensor& t, const char* op, const char* name, int64_t B, int64_t D, ScalarType dtype,
                 const Tensor& ref, const char* ref_name) {
  LRNN_CHECK(t.dim() == 2 && t.size(0) == B && t.size(1) == D, op, "argument '", name,
             "' must have shape (B, D) = (", B, ", ", D, "), got ", shape_str(t));
  LRNN_CHECK(t.scalar_type() == dtype, op, "argument '", name, "' must have dtype ", dtype_name(dtype),
             " (the dtype of '", ref_name, "'), got ", dtype_name(t.scalar_type()));
  check_same_device(t, ref, op, name, ref_name);
}

// `a` broadcasts to (B, L, D) along batch and time only; its dtype is the state dtype, or the
// real dtype of the same precision for a complex state.
void check_transition(const Tensor& a, const Tensor& x, const char* op, const char* x_name, int64_t B,
                      int64_t L, int64_t D) {
  const bool rank_ok = a.dim() >= 1 && a.dim() <= 3;
  const bool dims_ok = rank_ok && a.size(-1) == D && (a.dim() < 2 || a.size(-2) == 1 || a.size(-2) == L) &&
                       (a.dim() < 3 || a.size(0) == 1 || a.size(0) == B);
  LRNN_CHECK(dims_ok, op, "argument 'a' must be (B, L, D) = (", B, ", ", L, ", ", D,
             ") or broadcastable to it along batch and time, e.g. (D,) = (", D, ",) or (B, 1, D); got ",
             shape_str(a));
  const ScalarType xt = x.scalar_type();
  LRNN_CHECK(a.scalar_type() == xt || (is_complex(xt) && a.scalar_type() == real_type(xt)), op,
             "argument 'a' must have the dtype of '", x_name, "' (", dtype_name(xt), ")",
             is_complex(xt) ? " or its real dtype" : "", ", got ", dtype_name(a.scalar_type()));
  check_same_device(a, x, op, "a", x_name);
}

lrnn_dtype checked_dtype(const Tensor& t, const char* op, const char* name) {
  const auto dt = to_lrnn_dtype(t.scalar_type());
  LRNN_CHECK(dt.has_value(), op, "argument '", name,
             "' must be float32, float64, bfloat16, float16, complex64 or complex128, got ",
             dtype_name(t.scalar_type()));
  return *dt;
}

// The time extent of `a` is 1: the system is time-invariant and da is summed over time.
bool time_invariant(const Tensor& a) { return a.dim() < 2 || a.size(-2) == 1; }

}  // namespace

LinearScanForward linear_scan_prepare(const Tensor& a, const Tensor& b, const std::optional<Tensor>& h0,
                                      bool reverse) {
  LRNN_CHECK(b.dim() == 3, kFwd, "argument 'b' must have shape (B, L, D), got ", shape_str(b));
  const int64_t B = b.size(0), L = b.size(1), D = b.size(2);
  const lrnn_dtype dtype = checked_dtype(b, kFwd, "b");
  check_transition(a, b, kFwd, "b", B, L, D);
  if (h0) check_state(*h0, kFwd, "h0", B, D, b.scalar_type(), b, "b");

  LinearScanForward out;
  out.h = new_sequence(b, B, L, D, b.scalar_type());
  out.h_last = torch::stable::new_empty(b, {B, D});
  lrnn_linear_scan_params& p = out.params;
  p = lrnn_linear_scan_params{};
  p.h = out.h.data_ptr();
  p.h_last = out.h_last.data_ptr();
  p.a = a.data_ptr();
  p.b = b.data_ptr();
  p.h0 = h0 ? h0->data_ptr() : nullptr;
  p.batch = B;
  p.length = L;
  p.dim = D;
  const auto as = broadcast_strides<3>(a, {B, L, D});
  for (int i = 0; i < 3; ++i) p.a_stride[i] = as[i];
  copy_strides<3>(p.b_stride, b);
  copy_strides<3>(p.h_stride, out.h);
  if (h0) copy_strides<2>(p.h0_stride, *h0);
  copy_strides<2>(p.h_last_stride, out.h_last);
  p.dtype = dtype;
  p.a_dtype = *to_lrnn_dtype(a.scalar_type());
  p.reverse = reverse ? 1 : 0;
  return out;
}

LinearScanBackward linear_scan_backward_prepare(const Tensor& grad_h, const std::optional<Tensor>& grad_h_last,
                                                const Tensor& a, const Tensor& h,
                                                const std::optional<Tensor>& h0, bool reverse) {
  LRNN_CHECK(h.dim() == 3, kBwd, "argument 'h' must have shape (B, L, D), got ", shape_str(h));
  const int64_t B = h.size(0), L = h.size(1), D = h.size(2);
  const lrnn_dtype dtype = checked_dtype(h, kBwd, "h");
  check_sequence(grad_h, kBwd, "grad_h", B, L, D);
  LRNN_CHECK(grad_h.scalar_type() == h.scalar_type(), kBwd, "argument 'grad_h' must have dtype ",
             dtype_name(h.scalar_type()), " (the dtype of 'h'), got ", dtype_name(grad_h.scalar_type()));
  check_same_device(grad_h, h, kBwd, "grad_h", "h");
  check_transition(a, h, kBwd, "h", B, L, D);
  if (grad_h_last) check_state(*grad_h_last, kBwd, "grad_h_last", B, D, h.scalar_type(), h, "h");
  if (h0) check_state(*h0, kBwd, "h0", B, D, h.scalar_type(), h, "h");

  LinearScanBackward out;
  const bool sum_time = time_invariant(a);
  // A time-invariant da is summed over time in the accumulation type (see lrnn/linear_scan.h).
  ScalarType da_type = a.scalar_type();
  if (sum_time && (da_type == ScalarType::BFloat16 || da_type == ScalarType::Half)) da_type = ScalarType::Float;
  out.grad_a = sum_time ? torch::stable::new_empty(h, {B, D}, da_type) : new_sequence(h, B, L, D, da_type);
  out.grad_b = new_sequence(h, B, L, D, h.scalar_type());
  out.grad_h0 = torch::stable::new_empty(h, {B, D});

  lrnn_linear_scan_bwd_params& p = out.params;
  p = lrnn_linear_scan_bwd_params{};
  p.da = out.grad_a.data_ptr();
  p.db = out.grad_b.data_ptr();
  p.dh0 = out.grad_h0.data_ptr();
  p.grad_h = grad_h.data_ptr();
  p.grad_h_last = grad_h_last ? grad_h_last->data_ptr() : nullptr;
  p.a = a.data_ptr();
  p.h = h.data_ptr();
  p.h0 = h0 ? h0->data_ptr() : nullptr;
  p.batch = B;
  p.length = L;
  p.dim = D;
  copy_strides<3>(p.grad_h_stride, grad_h);
  const auto as = broadcast_strides<3>(a, {B, L, D});
  for (int i = 0; i < 3; ++i) p.a_stride[i] = as[i];
  copy_strides<3>(p.h_stride, h);
  if (sum_time) {
    p.da_stride[0] = out.grad_a.stride(0);
    p.da_stride[1] = 0;
    p.da_stride[2] = out.grad_a.stride(1);
  } else {
    copy_strides<3>(p.da_stride, out.grad_a);
  }
  copy_strides<3>(p.db_stride, out.grad_b);
  if (grad_h_last) copy_strides<2>(p.grad_h_last_stride, *grad_h_last);
  if (h0) copy_strides<2>(p.h0_stride, *h0);
  copy_strides<2>(p.dh0_stride, out.grad_h0);
  p.dtype = dtype;
  p.a_dtype = *to_lrnn_dtype(a.scalar_type());
  p.reverse = reverse ? 1 : 0;
  p.da_sum_time = sum_time ? 1 : 0;
  return out;
}

}  // namespace lrnn
