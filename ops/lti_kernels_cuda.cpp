// lti_kernels_cuda.cpp: the CUDA implementations of lrnn::ssm_kernel, lrnn::cauchy and their
// backwards — same checks and allocation as the CPU path (lti_kernels.cpp), then one launch of the
// C/CUDA kernels on the current stream of the inputs' device. The backwards allocate the double
// workspace their deterministic two-pass reductions need.
#include <torch/csrc/stable/accelerator.h>

#include "lti_kernels.h"

namespace lrnn {
namespace {

Tensor workspace(const Tensor& like, int64_t bytes) {
  return torch::stable::new_empty(like, {(bytes + 7) / 8}, ScalarType::Double);
}

Tensor ssm_kernel_cuda(Tensor w, Tensor z, int64_t L, std::string basis) {
  torch::stable::accelerator::DeviceGuard guard(z.get_device_index());
  SsmKernelForward f = ssm_kernel_prepare(w, z, L, basis);
  check_status(lrnn_ssm_kernel_fwd_cuda(&f.params, current_cuda_stream(z, "ssm_kernel")), "ssm_kernel");
  return f.k;
}

std::tuple<Tensor, Tensor> ssm_kernel_backward_cuda(Tensor grad_k, Tensor w, Tensor z, std::string basis) {
  torch::stable::accelerator::DeviceGuard guard(z.get_device_index());
  SsmKernelBackward g = ssm_kernel_backward_prepare(grad_k, w, z, basis);
  Tensor ws = workspace(z, lrnn_ssm_kernel_bwd_workspace_bytes(&g.params));
  check_status(lrnn_ssm_kernel_bwd_cuda(&g.params, ws.data_ptr(), current_cuda_stream(z, "ssm_kernel_backward")), "ssm_kernel_backward");
  return {g.grad_w, g.grad_z};
}

Tensor cauchy_cuda(Tensor v, Tensor omega, Tensor lam, bool symmetric) {
  torch::stable::accelerator::DeviceGuard guard(v.get_device_index());
  CauchyForward f = cauchy_prepare(v, omega, lam, symmetric);
  check_status(lrnn_cauchy_fwd_cuda(&f.params, current_cuda_stream(v, "cauchy")), "cauchy");
  return f.out;
}

std::tuple<Tensor, Tensor> cauchy_backward_cuda(Tensor grad_out, Tensor v, Tensor omega, Tensor lam, bool symmetric) {
  torch::stable::accelerator::DeviceGuard guard(v.get_device_index());
  CauchyBackward g = cauchy_backward_prepare(grad_out, v, omega, lam, symmetric);
  Tensor ws = workspace(v, lrnn_cauchy_bwd_workspace_bytes(&g.params));
  check_status(lrnn_cauchy_bwd_cuda(&g.params, ws.data_ptr(), current_cuda_stream(v, "cauchy_backward")), "cauchy_backward");
  return {g.grad_v, g.grad_lam};
}

}  // namespace
}  // namespace lrnn

STABLE_TORCH_LIBRARY_IMPL(lrnn, CUDA, m) {
  m.impl("ssm_kernel", TORCH_BOX(&lrnn::ssm_kernel_cuda));
  m.impl("ssm_kernel_backward", TORCH_BOX(&lrnn::ssm_kernel_backward_cuda));
  m.impl("cauchy", TORCH_BOX(&lrnn::cauchy_cuda));
  m.impl("cauchy_backward", TORCH_BOX(&lrnn::cauchy_backward_cuda));
}
