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
}

// A C++ program that links liblrnn_ops calls this once so the linker keeps the library (and
// its static op registrations) even though nothing else references it.
extern "C" __attribute__((visibility("default"))) void lrnn_ops_init(void) {}

// JSON with the build's torch version, devices, CUDA architectures and git revision.
extern "C" __attribute__((visibility("default"))) const char* lrnn_build_info(void) { return LRNN_BUILD_INFO; }
