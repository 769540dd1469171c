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
}

// A C++ program that links liblrnn_ops calls this once so the linker keeps the library (and
// its static op registrations) even though nothing else references it.
extern "C" __attribute__((visibility("default"))) void lrnn_ops_init(void) {}

// JSON with the build's torch version, devices, CUDA architectures and git revision.
extern "C" __attribute__((visibility("default"))) const char* lrnn_build_info(void) { return LRNN_BUILD_INFO; }
