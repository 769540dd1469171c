// selective_scan_f16.cu: the __half instantiation of the CUDA selective-scan kernels.
#include "selective_scan_kernels.cuh"

namespace lrnn_ss {
lrnn_status fwd_f16(const lrnn_selective_scan_params* p, cudaStream_t s) { return fwd_launch<__half>(p, s); }
lrnn_status bwd_f16(const lrnn_selective_scan_bwd_params* q, int64_t items, cudaStream_t s) {
  return bwd_launch<__half>(q, items, s);
}}  // namespace lrnn_ss
