// mimo_selective_scan_cpu.cpp: the CPU implementations of lrnn::mimo_selective_scan and its
// backward — the in / out stages in parallel over tokens, the event scan in parallel over its
// B*P rows, and the weight gradients as one partial per token slice, reduced in slice order.
// The number of slices depends only on the sizes (never on the thread count), so the weight
// gradients are the same on every machine.
#include <algorithm>
#include <atomic>

#include "mimo_selective_scan.h"

namespace lrnn {
namespace {

constexpr const char* kFwd = "mimo_selective_scan";
constexpr const char* kBwd = "mimo_selective_scan_backward";

// Tokens per task: ~64K multiply-adds per task (a token of the in stage costs 2 P H^2).
int64_t token_grain(const lrnn_mimo_params& p) {
  const int64_t per_token = std::max<int64_t>(1, 2 * p.state_dim * p.in_dim * std::max(p.in_dim, p.out_dim));
  return std::max<int64_t>(1, 65536 / per_token);
}

// Token slices of the backward: one per 256 tokens, at most 16, and at most 256 MB of
// partials for the larger (in-stage) weight gradient.
int64_t slice_count(const Tensor& u, int64_t P, int64_t O, int64_t H) {
  const int64_t tokens = u.dim() == 3 ? u.size(0) * u.size(1) : 1;
  const int64_t n = std::max(P * H * 2 * H, O * P * 2 * H);
  const int64_t elem = u.scalar_type() == ScalarType::Double ? 8 : 4;
  const int64_t by_memory = std::max<int64_t>(1, (int64_t{256} << 20) / std::max<int64_t>(1, n * elem));
  return std::clamp<int64_t>((tokens + 255) / 256, 1, std::min<int64_t>(16, by_memory));
}

template <typename Fn>
void parallel_status(int64_t n, int64_t grain, const char* op, Fn fn) {
  std::atomic<int> status{LRNN_OK};
  torch::stable::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
    const lrnn_status s = fn(begin, end);
    if (s != LRNN_OK) status = s;
  });
  check_status(static_cast<lrnn_status>(status.load()), op);
}

// Rows of the event scan per task, as in event_scan_cpu.cpp.
int64_t row_grain(int64_t length) { return std::max<int64_t>(64, (65536 / std::max<int64_t>(length, 1)) / 64 * 64); }

// Token range of slice s of S over N tokens.
int64_t slice_begin(int64_t s, int64_t S, int64_t N) { return s * N / S; }

// Runs a backward stage on every slice, each writing its own row of the partials.
template <typename Stage>
void run_slices(const MimoBackward& g, Stage stage) {
  const lrnn_mimo_params* p = &g.params;
  const int64_t N = p->batch * p->length, S = g.slices;
  parallel_status(S, 1, kBwd, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      const lrnn_status st = stage(p, slice_begin(s, S, N), slice_begin(s + 1, S, N), s);
      if (st != LRNN_OK) return st;
    }
    return LRNN_OK;
  });
}

// Sums a (slices, n) partial into a new (n,) tensor, slice 0 first.
Tensor reduce(const Tensor& partial, lrnn_dtype acc) {
  const int64_t S = partial.size(0), n = partial.size(1);
  Tensor out = torch::stable::new_empty(partial, {n});
  const void* src = partial.data_ptr();
  void* dst = out.data_ptr();
  parallel_status(n, 16384, kBwd, [&](int64_t begin, int64_t end) {
    return lrnn_mimo_reduce_cpu(dst, src, S, n, acc, begin, end);
  });
  return out;
}

std::tuple<Tensor, Tensor, Tensor, Tensor> mimo_selective_scan_cpu(Tensor u, Tensor Lambda, Tensor delta, Tensor dt,
                                                                   Tensor wb, std::optional<Tensor> bb, Tensor wc,
                                                                   std::optional<Tensor> bc, std::optional<Tensor> h0,
                                                                   int64_t discretization, bool reverse) {
  MimoForward f = mimo_prepare(u, Lambda, delta, dt, wb, bb, wc, bc, h0, discretization, reverse);
  const lrnn_mimo_params* p = &f.params;
  const int64_t N = p->batch * p->length, grain = token_grain(f.params);
  parallel_status(N, grain, kFwd, [&](int64_t b, int64_t e) { return lrnn_mimo_in_fwd_cpu(p, b, e); });
  const lrnn_event_scan_params* sp = &f.scan.params;
  parallel_status(p->batch * p->state_dim, row_grain(p->length), kFwd,
                  [&](int64_t b, int64_t e) { return lrnn_event_scan_fwd_cpu(sp, b, e); });
  parallel_status(N, grain, kFwd, [&](int64_t b, int64_t e) { return lrnn_mimo_out_fwd_cpu(p, b, e); });
  return {f.y, f.scan.h_last, f.scan.h, f.v};
}

MimoGrads mimo_selective_scan_backward_cpu(Tensor grad_y, std::optional<Tensor> grad_h_last, Tensor u,
                                           Tensor Lambda, Tensor delta, Tensor dt, Tensor wb,
                                           std::optional<Tensor> bb, Tensor wc, std::optional<Tensor> bc,
                                           std::optional<Tensor> h0, Tensor h, Tensor v, int64_t discretization,
                                           bool reverse) {
  // sizes read defensively: the arguments are checked by mimo_backward_prepare
  const int64_t S = slice_count(u, wb.dim() == 4 ? wb.size(0) : 1, wc.dim() == 4 ? wc.size(0) : 1,
                                u.dim() == 3 ? u.size(2) : 1);
  MimoBackward g = mimo_backward_prepare(grad_y, grad_h_last, u, Lambda, delta, dt, wb, bb, wc, bc, h0, h, v,
                                         discretization, reverse, S);
  mimo_select_stage(g, false);
  run_slices(g, lrnn_mimo_out_bwd_cpu);
  const lrnn_event_scan_bwd_params* sp = &g.scan.params;
  parallel_status(g.params.batch * g.params.state_dim, row_grain(g.params.length), kBwd,
                  [&](int64_t b, int64_t e) { return lrnn_event_scan_bwd_cpu(sp, b, e); });
  mimo_select_stage(g, true);
  run_slices(g, lrnn_mimo_in_bwd_cpu);
  const lrnn_dtype acc = g.params.state_dtype == LRNN_C128 ? LRNN_F64 : LRNN_F32;
  return mimo_backward_finish(g, reduce(g.wb_partial, acc), reduce(g.bb_partial, acc), reduce(g.wc_partial, acc),
                              reduce(g.bc_partial, acc));
}

}  // namespace
}  // namespace lrnn

STABLE_TORCH_LIBRARY_IMPL(lrnn, CPU, m) {
  m.impl("mimo_selective_scan", TORCH_BOX(&lrnn::mimo_selective_scan_cpu));
  m.impl("mimo_selective_scan_backward", TORCH_BOX(&lrnn::mimo_selective_scan_backward_cpu));
}
