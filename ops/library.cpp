// library.cpp: every lrnn operator schema, in one place, and the library's C entry points.
// Device implementations register in <op>_cpu.cpp / <op>_cuda.cpp; fake kernels and autograd
// are registered from Python (python/lrnn/ops/).
#include <torch/csrc/stable/library.h>

#include "build_info.h"

STABLE_TORCH_LIBRARY(lrnn, m) {
  // h[t] = a[t] * h[t-1] + b[t] over dim 1 of b (B, L, D); a is (B, L, D) or broadcast along
  // batch/time, e.g. (D,). h_last is the state after the last step taken.
  m.def("linear_scan(Tensor a, Tensor b, Tensor? h0=None, bool reverse=False) -> (Tensor h, Tensor h_last)");
  // grad_a is (B, L, D), or (B, D) summed over time when a's time extent is 1.
  m.def(
      "linear_scan_backward(Tensor grad_h, Tensor? grad_h_last, Tensor a, Tensor h, Tensor? h0, bool reverse)"
      " -> (Tensor grad_a, Tensor grad_b, Tensor grad_h0)");
  // K[h, l] = s * Re(sum_n w[h, n] * exp(z[h, n] * l)), l < L; basis "complex" (w complex, s = 2)
  // or "cosine" (w real, s = 1). w, z: (H, N) or (N,), broadcast together; K: (H, L) real.
  m.def("ssm_kernel(Tensor w, Tensor z, SymInt L, str basis=\"complex\") -> Tensor");
  m.def("ssm_kernel_backward(Tensor grad_k, Tensor w, Tensor z, str basis) -> (Tensor grad_w, Tensor grad_z)");
  // out[h, l] = sum_n v/(omega[l] - lam) (+ conj(v)/(omega[l] - conj(lam)) when symmetric).
  m.def("cauchy(Tensor v, Tensor omega, Tensor lam, bool symmetric=True) -> Tensor");
  m.def(
      "cauchy_backward(Tensor grad_out, Tensor v, Tensor omega, Tensor lam, bool symmetric)"
      " -> (Tensor grad_v, Tensor grad_lam)");
  // S6 / Mamba-1 selective scan (mamba_ssm's selective_scan_fn argument order and (B, D, L)
  // layout; a batch-first tensor may be passed as a transposed view). h0: (B, D, N) initial
  // state; dt_A: (B, D, L) separate step for exp(dt_A * A) (STREAM). chunk_states is the state
  // before every 64-step chunk, (B, D, (L / 64 + 1) * N), saved for the backward.
  m.def(
      "selective_scan(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D=None, Tensor? z=None,"
      " Tensor? delta_bias=None, bool delta_softplus=False, Tensor? h0=None, Tensor? dt_A=None)"
      " -> (Tensor y, Tensor h_last, Tensor chunk_states)");
  // Gradients in the weight dtype (float32; float64 for float64 u) for A, B, C (when variable:
  // (B, G, N, L)), D, delta_bias and h0; grad_z / grad_dt_A are empty when z / dt_A are None.
  m.def(
      "selective_scan_backward(Tensor grad_y, Tensor? grad_h_last, Tensor u, Tensor delta, Tensor A, Tensor B,"
      " Tensor C, Tensor? D, Tensor? z, Tensor? delta_bias, bool delta_softplus, Tensor? h0, Tensor? dt_A,"
      " Tensor chunk_states) -> (Tensor grad_u, Tensor grad_delta, Tensor grad_A, Tensor grad_B, Tensor grad_C,"
      " Tensor grad_D, Tensor grad_z, Tensor grad_delta_bias, Tensor grad_h0, Tensor grad_dt_A)");
  // Event-SSM / S7 scan: h[t] = exp(Lambda*delta*dt[t]) * h[t-1] + g[t] * v[t] over dim 1 of v
  // (B, L, P); delta is (P,) or (B, L, P); discretization 0 = zoh, 1 = dirac, 2 = async (g[t]
  // per lrnn/event_scan.h). An int, not a string: the C kernels and the CUDA launch take it as is.
  m.def(
      "event_scan(Tensor Lambda, Tensor delta, Tensor dt, Tensor v, Tensor? h0=None, int discretization=2,"
      " bool reverse=False) -> (Tensor h, Tensor h_last)");
  // grad_delta has the shape of delta, in float32 (complex64 state) or float64.
  m.def(
      "event_scan_backward(Tensor grad_h, Tensor? grad_h_last, Tensor Lambda, Tensor delta, Tensor dt, Tensor v,"
      " Tensor h, Tensor? h0, int discretization, bool reverse)"
      " -> (Tensor grad_Lambda, Tensor grad_delta, Tensor grad_v, Tensor grad_h0)");
  // S7's MIMO selective scan (lrnn/mimo_selective_scan.h): v = B_t u_t, the event scan v -> h,
  // y = Re(C_t h_t), with B_t / C_t formed from the x_proj weight rows wb (P, H, 2, H), wc
  // (O, P, 2, H) and biases bb (P, H, 2), bc (O, P, 2). h and v (B, L, P) are returned for the
  // backward (not differentiable outputs); delta is (P,) or (B, L, P).
  m.def(
      "mimo_selective_scan(Tensor u, Tensor Lambda, Tensor delta, Tensor dt, Tensor wb, Tensor? bb, Tensor wc,"
      " Tensor? bc, Tensor? h0=None, int discretization=2, bool reverse=False)"
      " -> (Tensor y, Tensor h_last, Tensor h, Tensor v)");
  // Weight gradients in the weight dtype; grad_bb / grad_bc are empty (0,) without bias.
  m.def(
      "mimo_selective_scan_backward(Tensor grad_y, Tensor? grad_h_last, Tensor u, Tensor Lambda, Tensor delta,"
      " Tensor dt, Tensor wb, Tensor? bb, Tensor wc, Tensor? bc, Tensor? h0, Tensor h, Tensor v,"
      " int discretization, bool reverse) -> (Tensor grad_u, Tensor grad_Lambda, Tensor grad_delta,"
      " Tensor grad_wb, Tensor grad_bb, Tensor grad_wc, Tensor grad_bc, Tensor grad_h0)");
}

// A C++ program that links liblrnn_ops calls this once so the linker keeps the library (and
// its static op registrations) even though nothing else references it.
extern "C" __attribute__((visibility("default"))) void lrnn_ops_init(void) {}

// JSON with the build's torch version, devices, CUDA architectures and git revision.
extern "C" __attribute__((visibility("default"))) const char* lrnn_build_info(void) { return LRNN_BUILD_INFO; }
