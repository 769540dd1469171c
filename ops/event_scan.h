// event_scan.h: argument checks, output allocation and the final reductions for
// lrnn::event_scan and lrnn::event_scan_backward, shared by the CPU and CUDA implementations,
// which differ only in how they run the C kernel on the params built here.
#pragma once

#include <optional>

#include "common.h"
#include "lrnn/event_scan.h"

namespace lrnn {

struct EventScanForward {
  Tensor h, h_last;
  lrnn_event_scan_params params;
};

struct EventScanBackward {
  // Kernel outputs: per-batch-row partials of grad_Lambda (B, P), grad_delta (B, P) partials or
  // (B, L, P) per event, grad_v, grad_h0. event_scan_backward_finish reduces the partials.
  Tensor lambda_partial, delta_grad, grad_v, grad_h0;
  bool delta_per_event = false;
  lrnn_event_scan_bwd_params params;
};

EventScanForward event_scan_prepare(const Tensor& Lambda, const Tensor& delta, const Tensor& dt, const Tensor& v,
                                    const std::optional<Tensor>& h0, int64_t discretization, bool reverse);

EventScanBackward event_scan_backward_prepare(const Tensor& grad_h, const std::optional<Tensor>& grad_h_last,
                                              const Tensor& Lambda, const Tensor& delta, const Tensor& dt,
                                              const Tensor& v, const Tensor& h, const std::optional<Tensor>& h0,
                                              int64_t discretization, bool reverse);

// Sums the per-row partials over the batch (a fixed-order torch reduction: reproducible) and
// returns (grad_Lambda (P,), grad_delta (shape of delta), grad_v, grad_h0).
std::tuple<Tensor, Tensor, Tensor, Tensor> event_scan_backward_finish(EventScanBackward& g);

}  // namespace lrnn
