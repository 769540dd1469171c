// event_scan_cuda.cpp: the CUDA implementations of lrnn::event_scan and its backward — the
// checks and allocation of event_scan.cpp, a workspace, then the CUDA launcher on the current stream.
// Compiled by the host compiler with USE_CUDA; the kernels are in csrc/cuda/event_scan.cu.
#include <torch/csrc/stable/accelerator.h>

#include "event_scan.h"

namespace lrnn {
namespace {

// Scratch of the kernels' three-pass scan (per tile and channel: its map and entering state, 24
// bytes, and in the backward its gradient partials, 12 more; see csrc/cuda/event_scan_kernels.cuh).
// Tiles have at least 64 steps: at most 5% of the size of v (0.5% forward, 1.8% backward at
// (8, 65536, 128)); freed when the op returns.
Tensor workspace(const Tensor& like, int64_t bytes) {
  return torch::stable::new_empty(like, {(bytes + 7) / 8}, ScalarType::Double);
}

std::tuple<Tensor, Tensor> event_scan_cuda(Tensor Lambda, Tensor delta, Tensor dt, Tensor v,
                                           std::optional<Tensor> h0, int64_t discretization, bool reverse) {
  torch::stable::accelerator::DeviceGuard guard(v.get_device_index());
  EventScanForward f = event_scan_prepare(Lambda, delta, dt, v, h0, discretization, reverse);
  Tensor ws = workspace(v, lrnn_event_scan_fwd_workspace_bytes(&f.params));
  check_status(lrnn_event_scan_fwd_cuda(&f.params, ws.data_ptr(), current_cuda_stream(v, "event_scan")), "event_scan");
  return {f.h, f.h_last};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> event_scan_backward_cuda(Tensor grad_h, std::optional<Tensor> grad_h_last,
                                                                    Tensor Lambda, Tensor delta, Tensor dt, Tensor v,
                                                                    Tensor h, std::optional<Tensor> h0,
                                                                    int64_t discretization, bool reverse) {
  torch::stable::accelerator::DeviceGuard guard(v.get_device_index());
  EventScanBackward g =
      event_scan_backward_prepare(grad_h, grad_h_last, Lambda, delta, dt, v, h, h0, discretization, reverse);
  Tensor ws = workspace(v, lrnn_event_scan_bwd_workspace_bytes(&g.params));
  check_status(lrnn_event_scan_bwd_cuda(&g.params, ws.data_ptr(), current_cuda_stream(v, "event_scan_backward")),
               "event_scan_backward");
  return event_scan_backward_finish(g);
}

}  // namespace
}  // namespace lrnn

STABLE_TORCH_LIBRARY_IMPL(lrnn, CUDA, m) {
  m.impl("event_scan", TORCH_BOX(&lrnn::event_scan_cuda));
  m.impl("event_scan_backward", TORCH_BOX(&lrnn::event_scan_backward_cuda));
}
