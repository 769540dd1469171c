// selective_scan_f32.cu: the float instantiation of the CUDA selective-scan kernels.
#include "selective_scan_kernels.cuh"

namespace lrnn_ss {
lrnn_status fwd_f32(const lrnn_selective_scan_params* p, cudaStream_t s) { return fwd_launch<float>(p, s); }
lrnn_status bwd_f32(const lrnn_selective_scan_bwd_params* q, int64_t items, cudaStream_t s) {
  return bwd_launch<float>(q, items, s);
}
int64_t bwd_channels_per_block(int64_t dstate) {
  int64_t gpb = 1;
  with_config(dstate, [&](auto cfg) {
    gpb = decltype(cfg)::rpb;
    return LRNN_OK;
  });
  return gpb;
}

bool bwd_atomic_bc(int64_t dstate) {
  bool atomic = false;
  with_config(dstate, [&](auto cfg) {
    atomic = decltype(cfg)::atomic_bc;
    return LRNN_OK;
  });
  return atomic;
}

int64_t bwd_segments(const lrnn_selective_scan_params* p) {
  int64_t nseg = 1;
  with_config(p->dstate, [&](auto cfg) {
    if constexpr (decltype(cfg)::tiled) {
      const int64_t seg_len = fwd_segment(p, p->batch * p->dim, kSplitRows);
      if (seg_len > 0) nseg = (p->length + seg_len - 1) / seg_len;
    }
    return LRNN_OK;
  });
  return nseg;
}
}  // namespace lrnn_ss
