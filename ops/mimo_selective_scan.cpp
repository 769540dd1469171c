// mimo_selective_scan.cpp: checks and allocation for lrnn::mimo_selective_scan{,_backward}
// (see mimo_selective_scan.h).
#include "mimo_selective_scan.h"

#include <vector>

namespace lrnn {
namespace {

constexpr const char* kFwd = "mimo_selective_scan";
constexpr const char* kBwd = "mimo_selective_scan_backward";

struct Shape {
  int64_t B, L, H, P, O;
};

std::string shape_of(std::initializer_list<int64_t> dims) {
  std::ostringstream s;
  s << "(";
  int i = 0;
  for (int64_t d : dims) s << (i++ ? ", " : "") << d;
  if (dims.size() == 1) s << ",";
  s << ")";
  return s.str();
}

bool has_shape(const Tensor& t, std::initializer_list<int64_t> dims) {
  if (t.dim() != static_cast<int64_t>(dims.size())) return false;
  int64_t i = 0;
  for (int64_t d : dims)
    if (t.size(i++) != d) return false;
  return true;
}

// Checks `t` (argument `name`) for shape `dims` (described as `what`), dtype `dt` and u's device.
void check_arg(const char* op, const Tensor& t, const char* name, const char* what,
               std::initializer_list<int64_t> dims, ScalarType dt, const char* dt_why, const Tensor& u) {
  LRNN_CHECK(has_shape(t, dims), op, "argument '", name, "' must have shape ", what, " = ", shape_of(dims),
             ", got ", shape_str(t));
  LRNN_CHECK(t.scalar_type() == dt, op, "argument '", name, "' must have dtype ", dtype_name(dt), " (", dt_why,
             "), got ", dtype_name(t.scalar_type()));
  check_same_device(t, u, op, name, "u");
}

// Checks everything both ops share and returns the sizes.
Shape check_inputs(const char* op, const Tensor& u, const Tensor& Lambda, const Tensor& delta, const Tensor& dt,
                   const Tensor& wb, const std::optional<Tensor>& bb, const Tensor& wc,
                   const std::optional<Tensor>& bc, const std::optional<Tensor>& h0, int64_t discretization) {
  LRNN_CHECK(u.dim() == 3, op, "argument 'u' must have shape (B, L, H), got ", shape_str(u));
  const ScalarType ut = u.scalar_type();
  LRNN_CHECK(ut == ScalarType::Float || ut == ScalarType::BFloat16 || ut == ScalarType::Half ||
                 ut == ScalarType::Double,
             op, "argument 'u' must be float32, bfloat16, float16 or float64, got ", dtype_name(ut));
  LRNN_CHECK(wb.dim() == 4 && wb.size(2) == 2, op, "argument 'wb' must have shape (P, H, 2, H), got ",
             shape_str(wb));
  LRNN_CHECK(wc.dim() == 4 && wc.size(2) == 2, op, "argument 'wc' must have shape (O, P, 2, H), got ",
             shape_str(wc));
  const Shape s{u.size(0), u.size(1), u.size(2), wb.size(0), wc.size(0)};
  LRNN_CHECK(s.H >= 1 && s.P >= 1 && s.O >= 1, op, "sizes H, P, O must be at least 1, got H = ", s.H,
             ", P = ", s.P, ", O = ", s.O);
  const bool f64 = ut == ScalarType::Double;
  const ScalarType acc = f64 ? ScalarType::Double : ScalarType::Float;
  const ScalarType state = f64 ? ScalarType::ComplexDouble : ScalarType::ComplexFloat;
  const char* acc_why = f64 ? "the weight type for float64 u" : "the weight type for float32 / bfloat16 / float16 u";
  const char* state_why = f64 ? "the state type for float64 u" : "the state type for float32 / bfloat16 / float16 u";
  check_arg(op, wb, "wb", "(P, H, 2, H)", {s.P, s.H, 2, s.H}, acc, acc_why, u);
  if (bb) check_arg(op, *bb, "bb", "(P, H, 2)", {s.P, s.H, 2}, acc, acc_why, u);
  check_arg(op, wc, "wc", "(O, P, 2, H)", {s.O, s.P, 2, s.H}, acc, acc_why, u);
  if (bc) check_arg(op, *bc, "bc", "(O, P, 2)", {s.O, s.P, 2}, acc, acc_why, u);
  check_arg(op, Lambda, "Lambda", "(P,)", {s.P}, state, state_why, u);
  LRNN_CHECK(has_shape(delta, {s.P}) || has_shape(delta, {s.B, s.L, s.P}), op,
             "argument 'delta' must have shape (P,) = (", s.P, ",) or (B, L, P) = (", s.B, ", ", s.L, ", ", s.P,
             "), got ", shape_str(delta));
  LRNN_CHECK(delta.scalar_type() == acc, op, "argument 'delta' must have dtype ", dtype_name(acc), " (",
             acc_why, "), got ", dtype_name(delta.scalar_type()));
  check_same_device(delta, u, op, "delta", "u");
  check_arg(op, dt, "dt", "(B, L)", {s.B, s.L}, acc, acc_why, u);
  if (h0) check_arg(op, *h0, "h0", "(B, P)", {s.B, s.P}, state, state_why, u);
  LRNN_CHECK(discretization >= LRNN_DISC_ZOH && discretization <= LRNN_DISC_ASYNC, op,
             "argument 'discretization' must be 0 (zoh), 1 (dirac) or 2 (async), got ", discretization);
  return s;
}

// The params of the in / out stages: sizes, types, u and the weights.
lrnn_mimo_params base_params(const Shape& s, const Tensor& u, const Tensor& wb, const std::optional<Tensor>& bb,
                             const Tensor& wc, const std::optional<Tensor>& bc) {
  lrnn_mimo_params p{};
  p.u = u.data_ptr();
  copy_strides<3>(p.u_stride, u);
  p.wb = wb.data_ptr();
  copy_strides<4>(p.wb_stride, wb);
  p.bb = bb ? bb->data_ptr() : nullptr;
  if (bb) copy_strides<3>(p.bb_stride, *bb);
  p.wc = wc.data_ptr();
  copy_strides<4>(p.wc_stride, wc);
  p.bc = bc ? bc->data_ptr() : nullptr;
  if (bc) copy_strides<3>(p.bc_stride, *bc);
  p.batch = s.B;
  p.length = s.L;
  p.in_dim = s.H;
  p.state_dim = s.P;
  p.out_dim = s.O;
  p.dtype = *to_lrnn_dtype(u.scalar_type());
  p.state_dtype = u.scalar_type() == ScalarType::Double ? LRNN_C128 : LRNN_C64;
  return p;
}

ScalarType state_type(const Tensor& u) {
  return u.scalar_type() == ScalarType::Double ? ScalarType::ComplexDouble : ScalarType::ComplexFloat;
}
ScalarType acc_type(const Tensor& u) {
  return u.scalar_type() == ScalarType::Double ? ScalarType::Double : ScalarType::Float;
}

}  // namespace

MimoForward mimo_prepare(const Tensor& u, const Tensor& Lambda, const Tensor& delta, const Tensor& dt,
                         const Tensor& wb, const std::optional<Tensor>& bb, const Tensor& wc,
                         const std::optional<Tensor>& bc, const std::optional<Tensor>& h0, int64_t discretization,
                         bool reverse) {
  const Shape s = check_inputs(kFwd, u, Lambda, delta, dt, wb, bb, wc, bc, h0, discretization);
  MimoForward out;
  out.v = torch::stable::new_empty(u, {s.B, s.L, s.P}, state_type(u));
  out.y = torch::stable::new_empty(u, {s.B, s.L, s.O});
  // every argument of the scan was checked above, so its own checks cannot fail here
  out.scan = event_scan_prepare(Lambda, delta, dt, out.v, h0, discretization, reverse);
  lrnn_mimo_params& p = out.params;
  p = base_params(s, u, wb, bb, wc, bc);
  p.v = out.v.data_ptr();
  copy_strides<3>(p.v_stride, out.v);
  p.h = out.scan.h.data_ptr();
  copy_strides<3>(p.h_stride, out.scan.h);
  p.y = out.y.data_ptr();
  copy_strides<3>(p.y_stride, out.y);
  return out;
}

MimoBackward mimo_backward_prepare(const Tensor& grad_y, const std::optional<Tensor>& grad_h_last, const Tensor& u,
                                   const Tensor& Lambda, const Tensor& delta, const Tensor& dt, const Tensor& wb,
                                   const std::optional<Tensor>& bb, const Tensor& wc,
                                   const std::optional<Tensor>& bc, const std::optional<Tensor>& h0,
                                   const Tensor& h, const Tensor& v, int64_t discretization, bool reverse,
                                   int64_t slices) {
  const Shape s = check_inputs(kBwd, u, Lambda, delta, dt, wb, bb, wc, bc, h0, discretization);
  const ScalarType st = state_type(u), acc = acc_type(u);
  check_arg(kBwd, grad_y, "grad_y", "(B, L, O)", {s.B, s.L, s.O}, u.scalar_type(), "the dtype of 'u'", u);
  check_arg(kBwd, h, "h", "(B, L, P)", {s.B, s.L, s.P}, st, "the state type", u);
  check_arg(kBwd, v, "v", "(B, L, P)", {s.B, s.L, s.P}, st, "the state type", u);
  if (grad_h_last) check_arg(kBwd, *grad_h_last, "grad_h_last", "(B, P)", {s.B, s.P}, st, "the state type", u);

  MimoBackward g;
  g.slices = slices;
  g.has_bb = bb.has_value();
  g.has_bc = bc.has_value();
  g.grad_h = torch::stable::new_empty(u, {s.B, s.L, s.P}, st);
  g.grad_u = torch::stable::new_empty(u, {s.B, s.L, s.H});
  g.wc_partial = torch::stable::new_empty(u, {slices, s.O * s.P * 2 * s.H}, acc);
  g.bc_partial = torch::stable::new_empty(u, {slices, g.has_bc ? s.O * s.P * 2 : 0}, acc);
  g.wb_partial = torch::stable::new_empty(u, {slices, s.P * s.H * 2 * s.H}, acc);
  g.bb_partial = torch::stable::new_empty(u, {slices, g.has_bb ? s.P * s.H * 2 : 0}, acc);
  g.scan = event_scan_backward_prepare(g.grad_h, grad_h_last, Lambda, delta, dt, v, h, h0, discretization, reverse);
  lrnn_mimo_params& p = g.params;
  p = base_params(s, u, wb, bb, wc, bc);
  p.y = const_cast<void*>(grad_y.data_ptr());
  copy_strides<3>(p.y_stride, grad_y);
  p.hs = h.data_ptr();
  copy_strides<3>(p.hs_stride, h);
  p.h = g.grad_h.data_ptr();
  copy_strides<3>(p.h_stride, g.grad_h);
  p.v = g.scan.grad_v.data_ptr();
  copy_strides<3>(p.v_stride, g.scan.grad_v);
  p.du = g.grad_u.data_ptr();
  copy_strides<3>(p.du_stride, g.grad_u);
  return g;
}

void mimo_select_stage(MimoBackward& g, bool stage_in) {
  if (stage_in) {
    g.params.dw = g.wb_partial.data_ptr();
    g.params.db = g.has_bb ? g.bb_partial.data_ptr() : nullptr;
  } else {
    g.params.dw = g.wc_partial.data_ptr();
    g.params.db = g.has_bc ? g.bc_partial.data_ptr() : nullptr;
  }
}

MimoGrads mimo_backward_finish(MimoBackward& g, const Tensor& dwb, const Tensor& dbb, const Tensor& dwc,
                               const Tensor& dbc) {
  const lrnn_mimo_params& p = g.params;
  const int64_t H = p.in_dim, P = p.state_dim, O = p.out_dim;
  auto [grad_lambda, grad_delta, grad_v, grad_h0] = event_scan_backward_finish(g.scan);
  (void)grad_v;   // consumed by the in stage, not an output
  Tensor gwb = torch::stable::view(dwb, {P, H, 2, H});
  Tensor gwc = torch::stable::view(dwc, {O, P, 2, H});
  Tensor gbb = g.has_bb ? torch::stable::view(dbb, {P, H, 2}) : dbb;
  Tensor gbc = g.has_bc ? torch::stable::view(dbc, {O, P, 2}) : dbc;
  return {g.grad_u, grad_lambda, grad_delta, gwb, gbb, gwc, gbc, grad_h0};
}

}  // namespace lrnn
