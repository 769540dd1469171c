// selective_scan_bf16.cu: the __nv_bfloat16 instantiation of the CUDA selective-scan kernels.
#include "selective_scan_kernels.cuh"

namespace lrnn_ss {
lrnn_status fwd_bf16(const lrnn_selective_scan_params* p, cudaStream_t s) { return fwd_launch<__nv_bfloat16>(p, s); }
lrnn_status bwd_bf16(const lrnn_selective_scan_bwd_params* q, int64_t items, cudaStream_t s) {
  return bwd_launch<__nv_bfloat16>(q, items, s);
}}  // namespace lrnn_ss
