// event_scan_cpu.cpp: the CPU implementations of lrnn::event_scan and its backward — run the C
// kernels over the B*P independent rows in parallel, then reduce the gradient partials.
#include <algorithm>
#include <atomic>

#include "event_scan.h"

namespace lrnn {
namespace {

// Rows per task: ~64K (event, channel) pairs per task to amortize scheduling, in whole
// 64-channel blocks so tasks do not split the kernels' blocks.
int64_t row_grain(int64_t length) { return std::max<int64_t>(64, (65536 / std::max<int64_t>(length, 1)) / 64 * 64); }

template <typename Params, typename Kernel>
void run_rows(const Params& p, Kernel kernel, const char* op) {
  std::atomic<int> status{LRNN_OK};
  torch::stable::parallel_for(0, p.batch * p.dim, row_grain(p.length), [&](int64_t begin, int64_t end) {
    const lrnn_status s = kernel(&p, begin, end);
    if (s != LRNN_OK) status = s;
  });
  check_status(static_cast<lrnn_status>(status.load()), op);
}

std::tuple<Tensor, Tensor> event_scan_cpu(Tensor Lambda, Tensor delta, Tensor dt, Tensor v, std::optional<Tensor> h0,
                                          int64_t discretization, bool reverse) {
  EventScanForward f = event_scan_prepare(Lambda, delta, dt, v, h0, discretization, reverse);
  run_rows(f.params, lrnn_event_scan_fwd_cpu, "event_scan");
  return {f.h, f.h_last};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> event_scan_backward_cpu(Tensor grad_h, std::optional<Tensor> grad_h_last,
                                                                   Tensor Lambda, Tensor delta, Tensor dt, Tensor v,
                                                                   Tensor h, std::optional<Tensor> h0,
                                                                   int64_t discretization, bool reverse) {
  EventScanBackward g =
      event_scan_backward_prepare(grad_h, grad_h_last, Lambda, delta, dt, v, h, h0, discretization, reverse);
  run_rows(g.params, lrnn_event_scan_bwd_cpu, "event_scan_backward");
  return event_scan_backward_finish(g);
}

}  // namespace
}  // namespace lrnn

STABLE_TORCH_LIBRARY_IMPL(lrnn, CPU, m) {
  m.impl("event_scan", TORCH_BOX(&lrnn::event_scan_cpu));
  m.impl("event_scan_backward", TORCH_BOX(&lrnn::event_scan_backward_cpu));
}
