// linear_scan_cuda.cpp: the CUDA implementations of lrnn::linear_scan and its backward — the
// checks and allocation of linear_scan.h, then one launch of the CUDA C kernel on the current
// stream of the tensors' device. Compiled by the host C++ compiler with USE_CUDA defined.
#include <torch/csrc/stable/accelerator.h>

#include "linear_scan.h"

namespace lrnn {
namespace {

std::tuple<Tensor, Tensor> linear_scan_cuda(Tensor a, Tensor b, std::optional<Tensor> h0, bool reverse) {
  torch::stable::accelerator::DeviceGuard guard(b.get_device_index());
  LinearScanForward f = linear_scan_prepare(a, b, h0, reverse);
  check_status(lrnn_linear_scan_fwd_cuda(&f.params, current_cuda_stream(b, "linear_scan")), "linear_scan");
  return {f.h, f.h_last};
}

std::tuple<Tensor, Tensor, Tensor> linear_scan_backward_cuda(Tensor grad_h, std::optional<Tensor> grad_h_last,
                                                             Tensor a, Tensor h, std::optional<Tensor> h0,
                                                             bool reverse) {
  torch::stable::accelerator::DeviceGuard guard(h.get_device_index());
  LinearScanBackward g = linear_scan_backward_prepare(grad_h, grad_h_last, a, h, h0, reverse);
  check_status(lrnn_linear_scan_bwd_cuda(&g.params, current_cuda_stream(h, "linear_scan_backward")),
               "linear_scan_backward");
  return {g.grad_a, g.grad_b, g.grad_h0};
}

}  // namespace
}  // namespace lrnn

STABLE_TORCH_LIBRARY_IMPL(lrnn, CUDA, m) {
  m.impl("linear_scan", TORCH_BOX(&lrnn::linear_scan_cuda));
  m.impl("linear_scan_backward", TORCH_BOX(&lrnn::linear_scan_backward_cuda));
}
