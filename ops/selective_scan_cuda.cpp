// selective_scan_cuda.cpp: the CUDA implementations of lrnn::selective_scan and its backward —
// shared checks/allocation (selective_scan.h), then the C launchers on the current stream.
// Compiled by the host compiler with USE_CUDA; float64 stays on the CPU (gradcheck only).
#include <torch/csrc/stable/accelerator.h>

#include "selective_scan.h"

namespace lrnn {
namespace {

using Opt = std::optional<Tensor>;

void check_cuda_dtype(const Tensor& u, const char* op) {
  LRNN_CHECK(u.scalar_type() != ScalarType::Double, op,
             "float64 runs on the CPU only (for gradcheck); use float32, bfloat16 or float16 on CUDA");
}

// Channel ranges per segment: each CUDA block handles at most channels_per_block(N) channels.
int64_t cuda_parts(int64_t /*batch*/, int64_t /*segments*/, int64_t channels, int64_t dstate) {
  const int64_t per_block = lrnn_selective_scan_cuda_channels_per_block(dstate);
  return (channels + per_block - 1) / per_block;
}

std::tuple<Tensor, Tensor, Tensor> selective_scan_cuda(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Opt D,
                                                       Opt z, Opt delta_bias, bool delta_softplus, Opt h0, Opt dt_A) {
  check_cuda_dtype(u, "selective_scan");
  torch::stable::accelerator::DeviceGuard guard(u.get_device_index());
  SelectiveScanForward f = selective_scan_prepare(u, delta, A, B, C, {D, z, delta_bias, delta_softplus, h0, dt_A});
  check_status(lrnn_selective_scan_fwd_cuda(&f.params, current_cuda_stream(u, "selective_scan")), "selective_scan");
  return {f.y, f.h_last, f.chunk_states};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> selective_scan_backward_cuda(
    Tensor grad_y, Opt grad_h_last, Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Opt D, Opt z,
    Opt delta_bias, bool delta_softplus, Opt h0, Opt dt_A, Tensor chunk_states) {
  check_cuda_dtype(u, "selective_scan_backward");
  torch::stable::accelerator::DeviceGuard guard(u.get_device_index());
  SelectiveScanBackward g = selective_scan_backward_prepare(grad_y, grad_h_last, u, delta, A, B, C,
                                                            {D, z, delta_bias, delta_softplus, h0, dt_A},
                                                            chunk_states, cuda_parts,
                                                            !lrnn_selective_scan_cuda_atomic_bc(A.size(1)),
                                                            lrnn_selective_scan_cuda_bwd_segments);
  check_status(lrnn_selective_scan_bwd_cuda(&g.params, current_cuda_stream(u, "selective_scan_backward")),
               "selective_scan_backward");
  return {g.du, g.ddelta, g.dA, g.dB, g.dC, g.dD, g.dz, g.ddelta_bias, g.dh0, g.ddt_A};
}

}  // namespace
}  // namespace lrnn

STABLE_TORCH_LIBRARY_IMPL(lrnn, CUDA, m) {
  m.impl("selective_scan", TORCH_BOX(&lrnn::selective_scan_cuda));
  m.impl("selective_scan_backward", TORCH_BOX(&lrnn::selective_scan_backward_cuda));
}
