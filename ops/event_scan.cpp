// event_scan.cpp: checks and allocation for lrnn::event_scan{,_backward} (see event_scan.h).
#include "event_scan.h"

namespace lrnn {
namespace {

constexpr const char* kFwd = "event_scan";
constexpr const char* kBwd = "event_scan_backward";

struct Shape {
  int64_t B, L, P;
};

// The real dtype delta and dt may have for a state dtype.
bool real_ok(ScalarType state, ScalarType r) {
  if (state == ScalarType::ComplexFloat) return r == ScalarType::Float || r == ScalarType::BFloat16;
  return r == ScalarType::Double;
}

// Checks everything both ops share and returns (B, L, P).
Shape check_inputs(const char* op, const Tensor& Lambda, const Tensor& delta, const Tensor& dt, const Tensor& v,
                   const std::optional<Tensor>& h0, int64_t discretization) {
  LRNN_CHECK(v.dim() == 3, op, "argument 'v' must have shape (B, L, P), got ", shape_str(v));
  const Shape s{v.size(0), v.size(1), v.size(2)};
  const ScalarType vt = v.scalar_type();
  LRNN_CHECK(vt == ScalarType::ComplexFloat || vt == ScalarType::ComplexDouble, op,
             "argument 'v' must be complex64 or complex128, got ", dtype_name(vt));
  LRNN_CHECK(Lambda.dim() == 1 && Lambda.size(0) == s.P, op, "argument 'Lambda' must have shape (P,) = (", s.P,
             ",), got ", shape_str(Lambda));
  LRNN_CHECK(Lambda.scalar_type() == vt, op, "argument 'Lambda' must have dtype ", dtype_name(vt),
             " (the dtype of 'v'), got ", dtype_name(Lambda.scalar_type()));
  const bool delta_shape_ok = (delta.dim() == 1 && delta.size(0) == s.P) ||
                              (delta.dim() == 3 && delta.size(0) == s.B && delta.size(1) == s.L &&
                               delta.size(2) == s.P);
  LRNN_CHECK(delta_shape_ok, op, "argument 'delta' must have shape (P,) = (", s.P, ",) or (B, L, P) = (", s.B,
             ", ", s.L, ", ", s.P, "), got ", shape_str(delta));
  LRNN_CHECK(real_ok(vt, delta.scalar_type()), op, "argument 'delta' must be ",
             vt == ScalarType::ComplexFloat ? "float32 or bfloat16" : "float64", " for a ", dtype_name(vt),
             " state, got ", dtype_name(delta.scalar_type()));
  LRNN_CHECK(dt.dim() == 2 && dt.size(0) == s.B && dt.size(1) == s.L, op, "argument 'dt' must have shape (B, L) = (",
             s.B, ", ", s.L, "), got ", shape_str(dt));
  LRNN_CHECK(dt.scalar_type() == delta.scalar_type(), op, "argument 'dt' must have dtype ",
             dtype_name(delta.scalar_type()), " (the dtype of 'delta'), got ", dtype_name(dt.scalar_type()));
  LRNN_CHECK(discretization >= LRNN_DISC_ZOH && discretization <= LRNN_DISC_ASYNC, op,
             "argument 'discretization' must be 0 (zoh), 1 (dirac) or 2 (async), got ", discretization);
  check_same_device(Lambda, v, op, "Lambda", "v");
  check_same_device(delta, v, op, "delta", "v");
  check_same_device(dt, v, op, "dt", "v");
  if (h0) {
    LRNN_CHECK(h0->dim() == 2 && h0->size(0) == s.B && h0->size(1) == s.P, op,
               "argument 'h0' must have shape (B, P) = (", s.B, ", ", s.P, "), got ", shape_str(*h0));
    LRNN_CHECK(h0->scalar_type() == vt, op, "argument 'h0' must have dtype ", dtype_name(vt),
               " (the dtype of 'v'), got ", dtype_name(h0->scalar_type()));
    check_same_device(*h0, v, op, "h0", "v");
  }
  return s;
}

void delta_strides(int64_t* dst, const Tensor& delta) {
  if (delta.dim() == 1) {
    dst[0] = 0;
    dst[1] = 0;
    dst[2] = delta.stride(0);
  } else {
    copy_strides<3>(dst, delta);
  }
}

}  // namespace

EventScanForward event_scan_prepare(const Tensor& Lambda, const Tensor& delta, const Tensor& dt, const Tensor& v,
                                    const std::optional<Tensor>& h0, int64_t discretization, bool reverse) {
  const Shape s = check_inputs(kFwd, Lambda, delta, dt, v, h0, discretization);
  EventScanForward out;
  out.h = torch::stable::new_empty(v, {s.B, s.L, s.P});
  out.h_last = torch::stable::new_empty(v, {s.B, s.P});
  lrnn_event_scan_params& p = out.params;
  p = lrnn_event_scan_params{};
  p.h = out.h.data_ptr();
  p.h_last = out.h_last.data_ptr();
  p.lambda = Lambda.data_ptr();
  p.delta = delta.data_ptr();
  p.dt = dt.data_ptr();
  p.v = v.data_ptr();
  p.h0 = h0 ? h0->data_ptr() : nullptr;
  p.batch = s.B;
  p.length = s.L;
  p.dim = s.P;
  p.lambda_stride = Lambda.stride(0);
  delta_strides(p.delta_stride, delta);
  copy_strides<3>(p.v_stride, v);
  copy_strides<3>(p.h_stride, out.h);
  copy_strides<2>(p.dt_stride, dt);
  if (h0) copy_strides<2>(p.h0_stride, *h0);
  copy_strides<2>(p.h_last_stride, out.h_last);
  p.dtype = *to_lrnn_dtype(v.scalar_type());
  p.real_dtype = *to_lrnn_dtype(delta.scalar_type());
  p.disc = static_cast<int>(discretization);
  p.reverse = reverse ? 1 : 0;
  return out;
}

EventScanBackward event_scan_backward_prepare(const Tensor& grad_h, const std::optional<Tensor>& grad_h_last,
                                              const Tensor& Lambda, const Tensor& delta, const Tensor& dt,
                                              const Tensor& v, const Tensor& h, const std::optional<Tensor>& h0,
                                              int64_t discretization, bool reverse) {
  const Shape s = check_inputs(kBwd, Lambda, delta, dt, v, h0, discretization);
  const ScalarType vt = v.scalar_type();
  for (const auto& [t, name] : {std::pair<const Tensor*, const char*>{&h, "h"}, {&grad_h, "grad_h"}}) {
    LRNN_CHECK(t->dim() == 3 && t->size(0) == s.B && t->size(1) == s.L && t->size(2) == s.P, kBwd, "argument '",
               name, "' must have shape (B, L, P) = (", s.B, ", ", s.L, ", ", s.P, "), got ", shape_str(*t));
    LRNN_CHECK(t->scalar_type() == vt, kBwd, "argument '", name, "' must have dtype ", dtype_name(vt),
               " (the dtype of 'v'), got ", dtype_name(t->scalar_type()));
    check_same_device(*t, v, kBwd, name, "v");
  }
  if (grad_h_last) {
    LRNN_CHECK(grad_h_last->dim() == 2 && grad_h_last->size(0) == s.B && grad_h_last->size(1) == s.P, kBwd,
               "argument 'grad_h_last' must have shape (B, P) = (", s.B, ", ", s.P, "), got ",
               shape_str(*grad_h_last));
    LRNN_CHECK(grad_h_last->scalar_type() == vt, kBwd, "argument 'grad_h_last' must have dtype ", dtype_name(vt),
               ", got ", dtype_name(grad_h_last->scalar_type()));
    check_same_device(*grad_h_last, v, kBwd, "grad_h_last", "v");
  }

  EventScanBackward out;
  const ScalarType acc_real = vt == ScalarType::ComplexFloat ? ScalarType::Float : ScalarType::Double;
  out.delta_per_event = delta.dim() == 3;
  out.lambda_partial = torch::stable::new_empty(v, {s.B, s.P});
  out.delta_grad = out.delta_per_event ? torch::stable::new_empty(v, {s.B, s.L, s.P}, acc_real)
                                       : torch::stable::new_empty(v, {s.B, s.P}, acc_real);
  out.grad_v = torch::stable::new_empty(v, {s.B, s.L, s.P});
  out.grad_h0 = torch::stable::new_empty(v, {s.B, s.P});

  lrnn_event_scan_bwd_params& p = out.params;
  p = lrnn_event_scan_bwd_params{};
  p.dlambda = out.lambda_partial.data_ptr();
  p.ddelta = out.delta_grad.data_ptr();
  p.dv = out.grad_v.data_ptr();
  p.dh0 = out.grad_h0.data_ptr();
  p.grad_h = grad_h.data_ptr();
  p.grad_h_last = grad_h_last ? grad_h_last->data_ptr() : nullptr;
  p.lambda = Lambda.data_ptr();
  p.delta = delta.data_ptr();
  p.dt = dt.data_ptr();
  p.v = v.data_ptr();
  p.h = h.data_ptr();
  p.h0 = h0 ? h0->data_ptr() : nullptr;
  p.batch = s.B;
  p.length = s.L;
  p.dim = s.P;
  p.lambda_stride = Lambda.stride(0);
  delta_strides(p.delta_stride, delta);
  copy_strides<3>(p.v_stride, v);
  copy_strides<3>(p.h_stride, h);
  copy_strides<3>(p.grad_h_stride, grad_h);
  copy_strides<3>(p.dv_stride, out.grad_v);
  copy_strides<2>(p.dt_stride, dt);
  if (grad_h_last) copy_strides<2>(p.grad_h_last_stride, *grad_h_last);
  if (h0) copy_strides<2>(p.h0_stride, *h0);
  copy_strides<2>(p.dh0_stride, out.grad_h0);
  copy_strides<2>(p.dlambda_stride, out.lambda_partial);
  if (out.delta_per_event) {
    copy_strides<3>(p.ddelta_stride, out.delta_grad);
  } else {
    p.ddelta_stride[0] = out.delta_grad.stride(0);
    p.ddelta_stride[1] = 0;
    p.ddelta_stride[2] = out.delta_grad.stride(1);
  }
  p.dtype = *to_lrnn_dtype(vt);
  p.real_dtype = *to_lrnn_dtype(delta.scalar_type());
  p.disc = static_cast<int>(discretization);
  p.reverse = reverse ? 1 : 0;
  return out;
}

std::tuple<Tensor, Tensor, Tensor, Tensor> event_scan_backward_finish(EventScanBackward& g) {
  const std::vector<int64_t> batch_dim{0};
  Tensor grad_lambda = torch::stable::sum(g.lambda_partial, batch_dim);
  Tensor grad_delta = g.delta_per_event ? g.delta_grad : torch::stable::sum(g.delta_grad, batch_dim);
  return {grad_lambda, grad_delta, g.grad_v, g.grad_h0};
}

}  // namespace lrnn
