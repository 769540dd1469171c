// mimo_selective_scan.h: argument checks, output allocation and the gradient bookkeeping for
// lrnn::mimo_selective_scan and lrnn::mimo_selective_scan_backward (S7), shared by the CPU and
// CUDA implementations. The op is three stages: "in" (u -> v), the event scan (v -> h, reusing
// event_scan.h's preparation) and "out" (u, h -> y); the device files only run the stages.
#pragma once

#include <optional>

#include "common.h"
#include "event_scan.h"
#include "lrnn/mimo_selective_scan.h"

namespace lrnn {

struct MimoForward {
  Tensor y, v;                 // y (B, L, O) in u's dtype; v (B, L, P) complex, saved for backward
  EventScanForward scan;       // h, h_last and the middle stage's params (v -> h)
  lrnn_mimo_params params;     // u, v, h, y and the weights filled; dw / db unused
};

struct MimoBackward {
  Tensor grad_h, grad_u;       // gh (B, L, P): out_bwd writes, the scan backward reads; du (B, L, H)
  // Weight-gradient partials, (slices, n): one row per token slice, reduced in slice order.
  Tensor wc_partial, bc_partial, wb_partial, bb_partial;   // bc / bb partials empty without bias
  int64_t slices = 1;
  EventScanBackward scan;      // the middle stage: gh -> dv, dLambda, ddelta, dh0
  lrnn_mimo_params params;     // y = grad_y, hs = forward h, h = gh, v = dv, du; dw / db set per stage
  bool has_bb = false, has_bc = false;
};

MimoForward mimo_prepare(const Tensor& u, const Tensor& Lambda, const Tensor& delta, const Tensor& dt,
                         const Tensor& wb, const std::optional<Tensor>& bb, const Tensor& wc,
                         const std::optional<Tensor>& bc, const std::optional<Tensor>& h0, int64_t discretization,
                         bool reverse);

// `slices`: how many token slices (rows of the partials) the device implementation uses.
MimoBackward mimo_backward_prepare(const Tensor& grad_y, const std::optional<Tensor>& grad_h_last, const Tensor& u,
                                   const Tensor& Lambda, const Tensor& delta, const Tensor& dt, const Tensor& wb,
                                   const std::optional<Tensor>& bb, const Tensor& wc,
                                   const std::optional<Tensor>& bc, const std::optional<Tensor>& h0,
                                   const Tensor& h, const Tensor& v, int64_t discretization, bool reverse,
                                   int64_t slices);

// Points params.dw / db at the out stage's (wc, bc) or the in stage's (wb, bb) partials.
void mimo_select_stage(MimoBackward& g, bool stage_in);

using MimoGrads = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;
// (grad_u, grad_Lambda, grad_delta, grad_wb, grad_bb, grad_wc, grad_bc, grad_h0) from the reduced
// weight gradients (flat, (n,) each; grad_bb / grad_bc empty (0,) without bias).
MimoGrads mimo_backward_finish(MimoBackward& g, const Tensor& dwb, const Tensor& dbb, const Tensor& dwc,
                               const Tensor& dbc);

}  // namespace lrnn
