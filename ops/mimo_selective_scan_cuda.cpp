// mimo_selective_scan_cuda.cpp: the CUDA implementations of lrnn::mimo_selective_scan and its
// backward — the checks and allocation of mimo_selective_scan.cpp, then on the current stream:
// the in stage, the event scan (csrc/cuda/event_scan.cu, with its workspace) and the out stage
// (backward: out, scan, in). The launchers reduce the weight gradients themselves (one
// "slice"), using a workspace. Compiled by the host compiler with USE_CUDA; the stage kernels
// are in csrc/cuda/mimo_selective_scan.cu.
#include <torch/csrc/stable/accelerator.h>

#include "mimo_selective_scan.h"

namespace lrnn {
namespace {

constexpr const char* kFwd = "mimo_selective_scan";
constexpr const char* kBwd = "mimo_selective_scan_backward";

// Scratch of a launcher, freed when the op returns (torch's caching allocator reuses it).
Tensor workspace(const Tensor& like, int64_t bytes) {
  return torch::stable::new_empty(like, {(bytes + 7) / 8}, ScalarType::Double);
}

std::tuple<Tensor, Tensor, Tensor, Tensor> mimo_selective_scan_cuda(Tensor u, Tensor Lambda, Tensor delta,
                                                                    Tensor dt, Tensor wb, std::optional<Tensor> bb,
                                                                    Tensor wc, std::optional<Tensor> bc,
                                                                    std::optional<Tensor> h0, int64_t discretization,
                                                                    bool reverse) {
  torch::stable::accelerator::DeviceGuard guard(u.get_device_index());
  MimoForward f = mimo_prepare(u, Lambda, delta, dt, wb, bb, wc, bc, h0, discretization, reverse);
  void* stream = current_cuda_stream(u, kFwd);
  Tensor ws_in = workspace(u, lrnn_mimo_fwd_workspace_bytes_cuda(&f.params, 1));
  check_status(lrnn_mimo_in_fwd_cuda(&f.params, ws_in.data_ptr(), stream), kFwd);
  Tensor ws = workspace(u, lrnn_event_scan_fwd_workspace_bytes(&f.scan.params));
  check_status(lrnn_event_scan_fwd_cuda(&f.scan.params, ws.data_ptr(), stream), kFwd);
  Tensor ws_out = workspace(u, lrnn_mimo_fwd_workspace_bytes_cuda(&f.params, 0));
  check_status(lrnn_mimo_out_fwd_cuda(&f.params, ws_out.data_ptr(), stream), kFwd);
  return {f.y, f.scan.h_last, f.scan.h, f.v};
}

MimoGrads mimo_selective_scan_backward_cuda(Tensor grad_y, std::optional<Tensor> grad_h_last, Tensor u,
                                            Tensor Lambda, Tensor delta, Tensor dt, Tensor wb,
                                            std::optional<Tensor> bb, Tensor wc, std::optional<Tensor> bc,
                                            std::optional<Tensor> h0, Tensor h, Tensor v, int64_t discretization,
                                            bool reverse) {
  torch::stable::accelerator::DeviceGuard guard(u.get_device_index());
  // one slice: the launchers write the reduced weight gradients into row 0 of the partials
  MimoBackward g = mimo_backward_prepare(grad_y, grad_h_last, u, Lambda, delta, dt, wb, bb, wc, bc, h0, h, v,
                                         discretization, reverse, 1);
  void* stream = current_cuda_stream(u, kBwd);
  mimo_select_stage(g, false);
  Tensor ws_out = workspace(u, lrnn_mimo_bwd_workspace_bytes_cuda(&g.params, 0));
  check_status(lrnn_mimo_out_bwd_cuda(&g.params, ws_out.data_ptr(), stream), kBwd);
  Tensor ws_scan = workspace(u, lrnn_event_scan_bwd_workspace_bytes(&g.scan.params));
  check_status(lrnn_event_scan_bwd_cuda(&g.scan.params, ws_scan.data_ptr(), stream), kBwd);
  mimo_select_stage(g, true);
  Tensor ws_in = workspace(u, lrnn_mimo_bwd_workspace_bytes_cuda(&g.params, 1));
  check_status(lrnn_mimo_in_bwd_cuda(&g.params, ws_in.data_ptr(), stream), kBwd);
  auto row = [](const Tensor& partial) { return torch::stable::view(partial, {partial.size(1)}); };
  return mimo_backward_finish(g, row(g.wb_partial), row(g.bb_partial), row(g.wc_partial), row(g.bc_partial));
}

}  // namespace
}  // namespace lrnn

STABLE_TORCH_LIBRARY_IMPL(lrnn, CUDA, m) {
  m.impl("mimo_selective_scan", TORCH_BOX(&lrnn::mimo_selective_scan_cuda));
  m.impl("mimo_selective_scan_backward", TORCH_BOX(&lrnn::mimo_selective_scan_backward_cuda));
}
