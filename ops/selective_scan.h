// selective_scan.h: argument checks and output allocation for lrnn::selective_scan and
// lrnn::selective_scan_backward, shared by the CPU and CUDA implementations, which differ only in
// how they run the C kernels on the params built here.
#pragma once

#include <optional>

#include "common.h"
#include "lrnn/selective_scan.h"

namespace lrnn {

struct SelectiveScanForward {
  Tensor y, h_last, chunk_states;   // outputs, allocated
  lrnn_selective_scan_params params;
};

struct SelectiveScanBackward {
  Tensor du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dh0, ddt_A;  // outputs
  Tensor workspace;  // the partials and seg_state of the params, one allocation (host cost per call)
  lrnn_selective_scan_bwd_params params;
};

// Optional inputs of both ops, in schema order after A, B, C.
struct SelectiveScanOptional {
  const std::optional<Tensor>& D;
  const std::optional<Tensor>& z;
  const std::optional<Tensor>& delta_bias;
  bool delta_softplus;
  const std::optional<Tensor>& h0;
  const std::optional<Tensor>& dt_A;
};

SelectiveScanForward selective_scan_prepare(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                                            const Tensor& C, const SelectiveScanOptional& opt);

// `parts(B, segments, channels_per_segment, N)`: how many channel ranges each segment is cut into
// (the device's choice; it sizes the dB/dC workspaces). variable_bc_partials = false: the device
// sums variable dB/dC over channels itself (CUDA atomics at N > 32), one workspace slot is enough.
// `segments(params)`: the device's time segments of the backward (CUDA), sizing the per-row
// partials and seg_state; nullptr: 1 (CPU).
SelectiveScanBackward selective_scan_backward_prepare(const Tensor& grad_y, const std::optional<Tensor>& grad_h_last,
                                                      const Tensor& u, const Tensor& delta, const Tensor& A,
                                                      const Tensor& B, const Tensor& C,
                                                      const SelectiveScanOptional& opt, const Tensor& chunk_states,
                                                      int64_t (*parts)(int64_t, int64_t, int64_t, int64_t),
                                                      bool variable_bc_partials = true,
                                                      int64_t (*segments)(const lrnn_selective_scan_params*) = nullptr);

}  // namespace lrnn
