// selective_scan.cpp: checks and allocation for lrnn::selective_scan{,_backward} (see
// selective_scan.h). Sequence tensors are logical (B, D, L) with any strides: mamba's contiguous
// layout and a batch-first (B, L, D) tensor passed as a transposed view are both used in place,
// and outputs get the layout of `u`.
#include "selective_scan.h"

namespace lrnn {
namespace {

constexpr const char* kFwd = "selective_scan";
constexpr const char* kBwd = "selective_scan_backward";

// A (B, D, L) tensor laid out like `like`: (B, L, D) storage when `like` is a transposed
// batch-first view, so the caller's layout survives without copies.
Tensor new_sequence(const Tensor& like, ScalarType dtype) {
  const int64_t B = like.size(0), D = like.size(1), L = like.size(2);
  const bool batch_first = like.stride(1) == 1 && like.stride(2) != 1;
  if (batch_first) return torch::stable::transpose(torch::stable::new_empty(like, {B, L, D}, dtype), 1, 2);
  return torch::stable::new_empty(like, {B, D, L}, dtype);
}

lrnn_dtype seq_dtype(const Tensor& u, const char* op) {
  const ScalarType t = u.scalar_type();
  LRNN_CHECK(t == ScalarType::Float || t == ScalarType::Double || t == ScalarType::BFloat16 || t == ScalarType::Half,
             op, "argument 'u' must be float32, float64, bfloat16 or float16, got ", dtype_name(t));
  return *to_lrnn_dtype(t);
}

void check_seq(const Tensor& t, const Tensor& u, const char* op, const char* name) {
  LRNN_CHECK(t.dim() == 3 && t.size(0) == u.size(0) && t.size(1) == u.size(1) && t.size(2) == u.size(2), op,
             "argument '", name, "' must have the shape of 'u' (B, D, L) = ", shape_str(u), ", got ", shape_str(t));
  LRNN_CHECK(t.scalar_type() == u.scalar_type(), op, "argument '", name, "' must have the dtype of 'u' (",
             dtype_name(u.scalar_type()), "), got ", dtype_name(t.scalar_type()));
  check_same_device(t, u, op, name, "u");
}

void check_weight(const Tensor& t, const Tensor& u, ScalarType wt, const char* op, const char* name,
                  std::initializer_list<int64_t> shape, const char* shape_name) {
  bool ok = t.dim() == static_cast<int64_t>(shape.size());
  int64_t i = 0;
  for (int64_t s : shape) ok = ok && t.size(i++) == s;
  std::ostringstream want;
  want << "(";
  i = 0;
  for (int64_t s : shape) want << (i++ ? ", " : "") << s;
  want << (shape.size() == 1 ? ",)" : ")");
  LRNN_CHECK(ok, op, "argument '", name, "' must have shape ", shape_name, " = ", want.str(), ", got ", shape_str(t));
  LRNN_CHECK(t.scalar_type() == wt, op, "argument '", name, "' must be ", dtype_name(wt),
             wt == ScalarType::Double ? " (float64 inputs take float64 weights)" : "", ", got ",
             dtype_name(t.scalar_type()));
  check_same_device(t, u, op, name, "u");
}

void copy_seq_strides(int64_t* dst, const Tensor& t) {
  for (int i = 0; i < 3; ++i) dst[i] = t.stride(i);
}

// B or C: variable (B, N, L) or (B, G, N, L) in u's dtype, or time-invariant (D, N) in wdtype.
// Returns G (1 for 3-D, 0 for time-invariant) and fills the 4 strides of the C params.
int64_t check_bc(const Tensor& M, const Tensor& u, ScalarType wt, int64_t N, const char* op, const char* name,
                 int64_t* stride) {
  const int64_t Bn = u.size(0), D = u.size(1), L = u.size(2);
  check_same_device(M, u, op, name, "u");
  if (M.dim() == 2) {
    check_weight(M, u, wt, op, name, {D, N}, "(D, N)");
    stride[0] = M.stride(0);
    stride[1] = M.stride(1);
    stride[2] = stride[3] = 0;
    return 0;
  }
  LRNN_CHECK(M.dim() == 3 || M.dim() == 4, op, "argument '", name,
             "' must be (D, N), (B, N, L) or (B, G, N, L), got ", shape_str(M));
  const int64_t G = M.dim() == 4 ? M.size(1) : 1;
  const bool ok = M.size(0) == Bn && M.size(-2) == N && M.size(-1) == L;
  LRNN_CHECK(ok, op, "argument '", name, "' must be (B, N, L) = (", Bn, ", ", N, ", ", L, ") or (B, G, N, L), got ",
             shape_str(M));
  LRNN_CHECK(G >= 1 && D % G == 0, op, "argument '", name, "' has ", G, " groups, which do not divide the ", D,
             " channels of 'u'");
  LRNN_CHECK(M.scalar_type() == u.scalar_type(), op, "argument '", name, "' (time-varying) must have the dtype of 'u' (",
             dtype_name(u.scalar_type()), "), got ", dtype_name(M.scalar_type()));
  stride[0] = M.stride(0);
  stride[1] = M.dim() == 4 ? M.stride(1) : 0;
  stride[2] = M.stride(-2);
  stride[3] = M.stride(-1);
  return G;
}

// Fills the forward params from checked inputs (shared by both ops).
void fill_params(lrnn_selective_scan_params& p, const char* op, const Tensor& u, const Tensor& delta, const Tensor& A,
                 const Tensor& B, const Tensor& C, const SelectiveScanOptional& opt) {
  const lrnn_dtype dt = seq_dtype(u, op);
  LRNN_CHECK(u.dim() == 3, op, "argument 'u' must have shape (B, D, L), got ", shape_str(u));
  const int64_t Bn = u.size(0), D = u.size(1), L = u.size(2);
  const ScalarType wt = u.scalar_type() == ScalarType::Double ? ScalarType::Double : ScalarType::Float;
  check_seq(delta, u, op, "delta");
  LRNN_CHECK(A.dim() == 2 && A.size(0) == D, op, "argument 'A' must have shape (D, N) with D = ", D,
             " (the channels of 'u'), got ", shape_str(A));
  const int64_t N = A.size(1);
  LRNN_CHECK(N >= 1 && N <= LRNN_SELECTIVE_SCAN_MAX_STATE, op, "the state size N = ", N, " (A.size(1)) must be in [1, ",
             LRNN_SELECTIVE_SCAN_MAX_STATE, "]");
  check_weight(A, u, wt, op, "A", {D, N}, "(D, N)");
  p = lrnn_selective_scan_params{};
  const int64_t gB = check_bc(B, u, wt, N, op, "B", p.B_stride);
  const int64_t gC = check_bc(C, u, wt, N, op, "C", p.C_stride);
  LRNN_CHECK(gB == 0 || gC == 0 || gB == gC, op, "arguments 'B' and 'C' must have the same number of groups, got ",
             gB, " and ", gC);
  if (opt.D) check_weight(*opt.D, u, wt, op, "D", {D}, "(D,)");
  if (opt.delta_bias) check_weight(*opt.delta_bias, u, wt, op, "delta_bias", {D}, "(D,)");
  if (opt.h0) check_weight(*opt.h0, u, wt, op, "h0", {Bn, D, N}, "(B, D, N)");
  if (opt.z) check_seq(*opt.z, u, op, "z");
  if (opt.dt_A) check_seq(*opt.dt_A, u, op, "dt_A");

  p.u = u.data_ptr();
  p.delta = delta.data_ptr();
  p.A = A.data_ptr();
  p.Bm = B.data_ptr();
  p.Cm = C.data_ptr();
  p.D = opt.D ? opt.D->data_ptr() : nullptr;
  p.z = opt.z ? opt.z->data_ptr() : nullptr;
  p.delta_bias = opt.delta_bias ? opt.delta_bias->data_ptr() : nullptr;
  p.h0 = opt.h0 ? opt.h0->data_ptr() : nullptr;
  p.dt_A = opt.dt_A ? opt.dt_A->data_ptr() : nullptr;
  p.batch = Bn;
  p.dim = D;
  p.length = L;
  p.dstate = N;
  p.groups = gB ? gB : (gC ? gC : 1);
  p.B_variable = gB != 0;
  p.C_variable = gC != 0;
  p.delta_softplus = opt.delta_softplus ? 1 : 0;
  copy_seq_strides(p.u_stride, u);
  copy_seq_strides(p.delta_stride, delta);
  if (opt.z) copy_seq_strides(p.z_stride, *opt.z);
  if (opt.dt_A) copy_seq_strides(p.dt_A_stride, *opt.dt_A);
  p.A_stride[0] = A.stride(0);
  p.A_stride[1] = A.stride(1);
  p.D_stride = opt.D ? opt.D->stride(0) : 0;
  p.delta_bias_stride = opt.delta_bias ? opt.delta_bias->stride(0) : 0;
  if (opt.h0)
    for (int i = 0; i < 3; ++i) p.h0_stride[i] = opt.h0->stride(i);
  p.dtype = dt;
  p.wdtype = wt == ScalarType::Double ? LRNN_F64 : LRNN_F32;
}

// chunk_states is (B, D, chunk * N): (b, d, chunk, n) strides of the C params.
void set_chunk_strides(lrnn_selective_scan_params& p, const Tensor& cs) {
  p.chunk_states_stride[0] = cs.stride(0);
  p.chunk_states_stride[1] = cs.stride(1);
  p.chunk_states_stride[2] = p.dstate * cs.stride(2);
  p.chunk_states_stride[3] = cs.stride(2);
}

ScalarType weight_type(const Tensor& u) {
  return u.scalar_type() == ScalarType::Double ? ScalarType::Double : ScalarType::Float;
}

}  // namespace

SelectiveScanForward selective_scan_prepare(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                                            const Tensor& C, const SelectiveScanOptional& opt) {
  SelectiveScanForward out;
  lrnn_selective_scan_params& p = out.params;
  fill_params(p, kFwd, u, delta, A, B, C, opt);
  const ScalarType wt = weight_type(u);
  const int64_t nc = lrnn_selective_scan_num_chunks(p.length);
  out.y = new_sequence(u, u.scalar_type());
  out.h_last = torch::stable::new_empty(u, {p.batch, p.dim, p.dstate}, wt);
  // (B, D, chunk * N) flattened: a separate chunk dimension of size 1 (L < 64) would make
  // torch.export specialize the length on it.
  out.chunk_states = torch::stable::new_empty(u, {p.batch, p.dim, nc * p.dstate}, wt);
  p.y = out.y.data_ptr();
  p.h_last = out.h_last.data_ptr();
  p.chunk_states = out.chunk_states.data_ptr();
  copy_seq_strides(p.y_stride, out.y);
  for (int i = 0; i < 3; ++i) p.h_last_stride[i] = out.h_last.stride(i);
  set_chunk_strides(p, out.chunk_states);
  return out;
}

SelectiveScanBackward selective_scan_backward_prepare(const Tensor& grad_y, const std::optional<Tensor>& grad_h_last,
                                                      const Tensor& u, const Tensor& delta, const Tensor& A,
                                                      const Tensor& B, const Tensor& C,
                                                      const SelectiveScanOptional& opt, const Tensor& chunk_states,
                                                      int64_t (*parts)(int64_t, int64_t, int64_t, int64_t),
                                                      bool variable_bc_partials,
                                                      int64_t (*segments)(const lrnn_selective_scan_params*)) {
  SelectiveScanBackward out;
  lrnn_selective_scan_bwd_params& q = out.params;
  q = lrnn_selective_scan_bwd_params{};
  lrnn_selective_scan_params& p = q.fwd;
  fill_params(p, kBwd, u, delta, A, B, C, opt);
  const ScalarType wt = weight_type(u);
  const int64_t Bn = p.batch, D = p.dim, L = p.length, N = p.dstate, G = p.groups;
  check_seq(grad_y, u, kBwd, "grad_y");
  if (grad_h_last) check_weight(*grad_h_last, u, wt, kBwd, "grad_h_last", {Bn, D, N}, "(B, D, N)");
  const int64_t nc = lrnn_selective_scan_num_chunks(L);
  check_weight(chunk_states, u, wt, kBwd, "chunk_states", {Bn, D, nc * N}, "(B, D, (L / 64 + 1) * N)");
  p.chunk_states = chunk_states.data_ptr();
  set_chunk_strides(p, chunk_states);

  const bool variable = p.B_variable || p.C_variable;
  const int64_t S = variable ? G : 1;
  q.parts = D > 0 ? parts(Bn, S, D / S, N) : 1;
  q.segments = segments ? segments(&p) : 1;
  const int64_t rows = q.segments * Bn;  // the per-row partials: one copy per time segment

  out.du = new_sequence(u, u.scalar_type());
  out.ddelta = new_sequence(u, u.scalar_type());
  out.dz = opt.z ? new_sequence(u, u.scalar_type()) : torch::stable::new_empty(u, {0});
  out.ddt_A = opt.dt_A ? new_sequence(u, u.scalar_type()) : torch::stable::new_empty(u, {0});
  out.dh0 = torch::stable::new_empty(u, {Bn, D, N}, wt);
  out.dA = torch::stable::new_empty(u, {D, N}, wt);
  out.dD = torch::stable::new_empty(u, {D}, wt);
  out.ddelta_bias = torch::stable::new_empty(u, {D}, wt);
  // The per-row partials, the variable dB/dC partials and seg_state share one workspace tensor:
  // each allocation through the stable ABI costs host time that the GPU waits for at small sizes.
  // Sub-buffers start at multiples of 64 elements (vector stores in the kernels).
  const int64_t nB = p.B_variable ? (variable_bc_partials ? q.parts : 1) * Bn * G * N * L : rows * D * N;
  const int64_t nC = p.C_variable ? (variable_bc_partials ? q.parts : 1) * Bn * G * N * L : rows * D * N;
  const int64_t sizes[6] = {rows * D * N, rows * D, rows * D, nB, nC, q.segments > 1 ? q.segments * Bn * D * 2 * N : 0};
  int64_t offs[6], total = 0;
  for (int i = 0; i < 6; ++i) {
    offs[i] = total;
    total += (sizes[i] + 63) / 64 * 64;
  }
  out.workspace = torch::stable::new_empty(u, {total}, wt);
  char* ws = static_cast<char*>(out.workspace.data_ptr());
  const int64_t esize = wt == ScalarType::Double ? 8 : 4;
  auto at = [&](int i) { return static_cast<void*>(ws + offs[i] * esize); };
  auto grad_bc = [&](bool var) {
    return var ? torch::stable::new_empty(u, {Bn, G, N, L}, wt) : torch::stable::new_empty(u, {D, N}, wt);
  };
  out.dB = grad_bc(p.B_variable);
  out.dC = grad_bc(p.C_variable);

  q.grad_y = grad_y.data_ptr();
  copy_seq_strides(q.grad_y_stride, grad_y);
  q.grad_h_last = grad_h_last ? grad_h_last->data_ptr() : nullptr;
  if (grad_h_last)
    for (int i = 0; i < 3; ++i) q.grad_h_last_stride[i] = grad_h_last->stride(i);
  q.du = out.du.data_ptr();
  q.ddelta = out.ddelta.data_ptr();
  q.dz = opt.z ? out.dz.data_ptr() : nullptr;
  q.ddt_A = opt.dt_A ? out.ddt_A.data_ptr() : nullptr;
  q.dh0 = out.dh0.data_ptr();
  copy_seq_strides(q.du_stride, out.du);
  copy_seq_strides(q.ddelta_stride, out.ddelta);
  if (opt.z) copy_seq_strides(q.dz_stride, out.dz);
  if (opt.dt_A) copy_seq_strides(q.ddt_A_stride, out.ddt_A);
  for (int i = 0; i < 3; ++i) q.dh0_stride[i] = out.dh0.stride(i);
  q.dA_part = at(0);
  q.dD_part = at(1);
  q.ddelta_bias_part = at(2);
  q.dB_part = at(3);
  q.dC_part = at(4);
  q.seg_state = q.segments > 1 ? at(5) : nullptr;
  q.dA = out.dA.data_ptr();
  q.dD = out.dD.data_ptr();
  q.ddelta_bias = out.ddelta_bias.data_ptr();
  q.dB = out.dB.data_ptr();
  q.dC = out.dC.data_ptr();
  return out;
}

}  // namespace lrnn
