// linear_scan.h: argument checks and output allocation for lrnn::linear_scan and
// lrnn::linear_scan_backward, shared by the CPU and CUDA implementations, which differ only in
// how they run the C kernel on the params built here.
#pragma once

#include <optional>

#include "common.h"
#include "lrnn/linear_scan.h"

namespace lrnn {

struct LinearScanForward {
  Tensor h, h_last;                 // outputs, allocated
  lrnn_linear_scan_params params;   // points into the inputs and the outputs above
};

struct LinearScanBackward {
  Tensor grad_a, grad_b, grad_h0;
  lrnn_linear_scan_bwd_params params;
};

LinearScanForward linear_scan_prepare(const Tensor& a, const Tensor& b, const std::optional<Tensor>& h0,
                                      bool reverse);

LinearScanBackward linear_scan_backward_prepare(const Tensor& grad_h,
                                                const std::optional<Tensor>& grad_h_last,
                                                const Tensor& a, const Tensor& h,
                                                const std::optional<Tensor>& h0, bool reverse);

}  // namespace lrnn
