// lti_kernels_cpu.cpp: the CPU implementations of lrnn::ssm_kernel, lrnn::cauchy and their
// backwards — run the C kernels over the H independent heads in parallel.
#include <algorithm>
#include <atomic>

#include "lti_kernels.h"

namespace lrnn {
namespace {

// Heads per task: about 256K state-steps per task to amortize scheduling.
int64_t head_grain(int64_t state, int64_t length) {
  return std::max<int64_t>(1, (1 << 18) / std::max<int64_t>(1, state * length));
}

template <typename Params, typename Kernel>
void run_heads(const Params& p, Kernel kernel, const char* op) {
  std::atomic<int> status{LRNN_OK};
  torch::stable::parallel_for(0, p.heads, head_grain(p.state, p.length), [&](int64_t begin, int64_t end) {
    const lrnn_status s = kernel(&p, begin, end);
    if (s != LRNN_OK) status = s;
  });
  check_status(static_cast<lrnn_status>(status.load()), op);
}

Tensor ssm_kernel_cpu(Tensor w, Tensor z, int64_t L, std::string basis) {
  SsmKernelForward f = ssm_kernel_prepare(w, z, L, basis);
  run_heads(f.params, lrnn_ssm_kernel_fwd_cpu, "ssm_kernel");
  return f.k;
}

std::tuple<Tensor, Tensor> ssm_kernel_backward_cpu(Tensor grad_k, Tensor w, Tensor z, std::string basis) {
  SsmKernelBackward g = ssm_kernel_backward_prepare(grad_k, w, z, basis);
  run_heads(g.params, lrnn_ssm_kernel_bwd_cpu, "ssm_kernel_backward");
  return {g.grad_w, g.grad_z};
}

Tensor cauchy_cpu(Tensor v, Tensor omega, Tensor lam, bool symmetric) {
  CauchyForward f = cauchy_prepare(v, omega, lam, symmetric);
  run_heads(f.params, lrnn_cauchy_fwd_cpu, "cauchy");
  return f.out;
}

std::tuple<Tensor, Tensor> cauchy_backward_cpu(Tensor grad_out, Tensor v, Tensor omega, Tensor lam, bool symmetric) {
  CauchyBackward g = cauchy_backward_prepare(grad_out, v, omega, lam, symmetric);
  run_heads(g.params, lrnn_cauchy_bwd_cpu, "cauchy_backward");
  return {g.grad_v, g.grad_lam};
}

}  // namespace
}  // namespace lrnn

STABLE_TORCH_LIBRARY_IMPL(lrnn, CPU, m) {
  m.impl("ssm_kernel", TORCH_BOX(&lrnn::ssm_kernel_cpu));
  m.impl("ssm_kernel_backward", TORCH_BOX(&lrnn::ssm_kernel_backward_cpu));
  m.impl("cauchy", TORCH_BOX(&lrnn::cauchy_cpu));
  m.impl("cauchy_backward", TORCH_BOX(&lrnn::cauchy_backward_cpu));
}
