// selective_scan_launch.h: the per-dtype CUDA launchers of the selective scan, defined in
// selective_scan_{f32,bf16,f16}.cu and dispatched by selective_scan.cu (internal to csrc/cuda).
#pragma once

#include <cuda_runtime.h>

#include "lrnn/selective_scan.h"

namespace lrnn_ss {
lrnn_status fwd_f32(const lrnn_selective_scan_params* p, cudaStream_t s);
lrnn_status fwd_bf16(const lrnn_selective_scan_params* p, cudaStream_t s);
lrnn_status fwd_f16(const lrnn_selective_scan_params* p, cudaStream_t s);
lrnn_status bwd_f32(const lrnn_selective_scan_bwd_params* q, int64_t items, cudaStream_t s);
lrnn_status bwd_bf16(const lrnn_selective_scan_bwd_params* q, int64_t items, cudaStream_t s);
lrnn_status bwd_f16(const lrnn_selective_scan_bwd_params* q, int64_t items, cudaStream_t s);
int64_t bwd_channels_per_block(int64_t dstate);
bool bwd_atomic_bc(int64_t dstate);
int64_t bwd_segments(const lrnn_selective_scan_params* p);
}  // namespace lrnn_ss
