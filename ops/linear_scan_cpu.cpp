// linear_scan_cpu.cpp: the CPU implementations of lrnn::linear_scan and its backward — run the
// C kernels over the B*D independent rows in parallel.
#include <algorithm>
#include <atomic>

#include "linear_scan.h"

namespace lrnn {
namespace {

// Rows per task: at least ~64K elements per task to amortize scheduling, in multiples of the
// kernels' 256-channel blocks so that tasks do not cut blocks short.
int64_t row_grain(int64_t length) { return std::max<int64_t>(256, (65536 / std::max<int64_t>(length, 1)) / 256 * 256); }

template <typename Params, typename Kernel>
void run_rows(const Params& p, Kernel kernel, const char* op) {
  std::atomic<int> status{LRNN_OK};
  torch::stable::parallel_for(0, p.batch * p.dim, row_grain(p.length), [&](int64_t begin, int64_t end) {
    const lrnn_status s = kernel(&p, begin, end);
    if (s != LRNN_OK) status = s;
  });
  check_status(static_cast<lrnn_status>(status.load()), op);
}

std::tuple<Tensor, Tensor> linear_scan_cpu(Tensor a, Tensor b, std::optional<Tensor> h0, bool reverse) {
  LinearScanForward f = linear_scan_prepare(a, b, h0, reverse);
  run_rows(f.params, lrnn_linear_scan_fwd_cpu, "linear_scan");
  return {f.h, f.h_last};
}

std::tuple<Tensor, Tensor, Tensor> linear_scan_backward_cpu(Tensor grad_h, std::optional<Tensor> grad_h_last,
                                                            Tensor a, Tensor h, std::optional<Tensor> h0,
                                                            bool reverse) {
  LinearScanBackward g = linear_scan_backward_prepare(grad_h, grad_h_last, a, h, h0, reverse);
  run_rows(g.params, lrnn_linear_scan_bwd_cpu, "linear_scan_backward");
  return {g.grad_a, g.grad_b, g.grad_h0};
}

}  // namespace
}  // namespace lrnn

STABLE_TORCH_LIBRARY_IMPL(lrnn, CPU, m) {
  m.impl("linear_scan", TORCH_BOX(&lrnn::linear_scan_cpu));
  m.impl("linear_scan_backward", TORCH_BOX(&lrnn::linear_scan_backward_cpu));
}
