// selective_scan_cpu.cpp: the CPU implementations of lrnn::selective_scan and its backward —
// run the C kernels over rows (forward) or disjoint work items (backward) in parallel, then the
// fixed-order reduction of the backward's partials.
#include <algorithm>
#include <atomic>

#include "selective_scan.h"

namespace lrnn {
namespace {

template <typename Fn>
void run_parallel(int64_t n, int64_t grain, Fn fn, const char* op) {
  std::atomic<int> status{LRNN_OK};
  torch::stable::parallel_for(0, n, std::max<int64_t>(grain, 1), [&](int64_t begin, int64_t end) {
    const lrnn_status s = fn(begin, end);
    if (s != LRNN_OK) status = s;
  });
  check_status(static_cast<lrnn_status>(status.load()), op);
}

// Channel ranges per segment: enough items (~32 in all) to feed the threads of a large machine,
// at most 16 so the dB/dC workspace stays a small multiple of B and C. A function of the shape
// only, never of the thread count, so results are reproducible everywhere.
int64_t cpu_parts(int64_t batch, int64_t segments, int64_t channels, int64_t /*dstate*/) {
  const int64_t want = (32 + batch * segments - 1) / std::max<int64_t>(batch * segments, 1);
  return std::max<int64_t>(1, std::min<int64_t>({want, 16, channels}));
}

using Opt = std::optional<Tensor>;

std::tuple<Tensor, Tensor, Tensor> selective_scan_cpu(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Opt D,
                                                      Opt z, Opt delta_bias, bool delta_softplus, Opt h0, Opt dt_A) {
  SelectiveScanForward f = selective_scan_prepare(u, delta, A, B, C, {D, z, delta_bias, delta_softplus, h0, dt_A});
  const lrnn_selective_scan_params* p = &f.params;
  // ~32K (t, n) updates per task, in whole 8-row blocks.
  const int64_t grain = std::max<int64_t>(8, (32768 / std::max<int64_t>(p->length * p->dstate, 1)) / 8 * 8);
  run_parallel(p->batch * p->dim, grain, [p](int64_t b, int64_t e) { return lrnn_selective_scan_fwd_cpu(p, b, e); },
               "selective_scan");
  return {f.y, f.h_last, f.chunk_states};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> selective_scan_backward_cpu(
    Tensor grad_y, Opt grad_h_last, Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Opt D, Opt z,
    Opt delta_bias, bool delta_softplus, Opt h0, Opt dt_A, Tensor chunk_states) {
  SelectiveScanBackward g = selective_scan_backward_prepare(grad_y, grad_h_last, u, delta, A, B, C,
                                                            {D, z, delta_bias, delta_softplus, h0, dt_A},
                                                            chunk_states, cpu_parts);
  const lrnn_selective_scan_bwd_params* q = &g.params;
  run_parallel(lrnn_selective_scan_bwd_items(q), 1,
               [q](int64_t b, int64_t e) { return lrnn_selective_scan_bwd_cpu(q, b, e); }, "selective_scan_backward");
  run_parallel(lrnn_selective_scan_reduce_size(q), 16384,
               [q](int64_t b, int64_t e) { return lrnn_selective_scan_reduce_cpu(q, b, e); },
               "selective_scan_backward");
  return {g.du, g.ddelta, g.dA, g.dB, g.dC, g.dD, g.dz, g.ddelta_bias, g.dh0, g.ddt_A};
}

}  // namespace
}  // namespace lrnn

STABLE_TORCH_LIBRARY_IMPL(lrnn, CPU, m) {
  m.impl("selective_scan", TORCH_BOX(&lrnn::selective_scan_cpu));
  m.impl("selective_scan_backward", TORCH_BOX(&lrnn::selective_scan_backward_cpu));
}
