/* event_scan.cu: the CUDA launchers of the event scan (lrnn/event_scan.h). The kernels and
 * their design are in event_scan_kernels.cuh. Each launch fills the workspace's tile counter
 * and publication area with ones (cudaMemsetAsync on the same stream: "not yet published"),
 * runs a persistent grid of at most as many blocks as fit on the device at once (more would
 * only queue), and for the backward a small kernel that sums the per-tile gradient partials in
 * a fixed order. */
#include <cuda_runtime.h>
#include <stdint.h>

#include "event_scan_kernels.cuh"
#include "lrnn/event_scan.h"

namespace {

using lrnn_event_cuda::Layout;
using lrnn_event_cuda::NT;
using lrnn_event_cuda::layout;

bool valid_disc(int disc) { return disc == LRNN_DISC_ZOH || disc == LRNN_DISC_DIRAC || disc == LRNN_DISC_ASYNC; }

template <typename Params>
Layout layout_of(const Params* p, bool bwd) {
  return p->dtype == LRNN_C128 ? layout<double>(p->batch, p->length, p->dim, bwd)
                               : layout<float>(p->batch, p->length, p->dim, bwd);
}

/* Blocks resident at once over the whole device, for `kernel` with `smem` bytes of dynamic
 * shared memory; at least one. */
template <typename Kernel>
int64_t resident_blocks(Kernel kernel, int smem) {
  int dev = 0, sms = 1, per_sm = 1;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, NT, smem) != cudaSuccess || per_sm < 1)
    per_sm = 1;
  return static_cast<int64_t>(sms) * per_sm;
}

template <typename Kernel, typename Params>
lrnn_status launch(Kernel kernel, const Params& p, const Layout& o, void* ws, cudaStream_t s, int smem = 0) {
  if (smem > 0 && cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) != cudaSuccess)
    return LRNN_ERR_CUDA;
  if (cudaMemsetAsync(ws, 0xFF, static_cast<size_t>(o.fill_bytes), s) != cudaSuccess) return LRNN_ERR_CUDA;
  const int64_t resident = resident_blocks(kernel, smem), blocks = o.tiles < resident ? o.tiles : resident;
  kernel<<<static_cast<unsigned>(blocks), NT, smem, s>>>(p, ws);
  return cudaGetLastError() == cudaSuccess ? LRNN_OK : LRNN_ERR_CUDA;
}

/* 0: delta per event; 1: shared with a constant input scale (not ZOH); 2: shared with ZOH. */
template <typename Params>
int delta_mode(const Params* p) {
  return p->delta_stride[1] != 0 ? 0 : p->disc != LRNN_DISC_ZOH ? 1 : 2;
}

}  // namespace

extern "C" int64_t lrnn_event_scan_fwd_workspace_bytes(const lrnn_event_scan_params* p) {
  if (!p || p->batch <= 0 || p->dim <= 0 || p->length < 0) return 0;
  return layout_of(p, false).bytes;
}

extern "C" int64_t lrnn_event_scan_bwd_workspace_bytes(const lrnn_event_scan_bwd_params* p) {
  if (!p || p->batch <= 0 || p->dim <= 0 || p->length < 0) return 0;
  return layout_of(p, true).bytes;
}

extern "C" lrnn_status lrnn_event_scan_fwd_cuda(const lrnn_event_scan_params* p, void* workspace, void* stream) {
  if (!p || p->batch < 0 || p->length < 0 || p->dim < 0 || !valid_disc(p->disc)) return LRNN_ERR_ARGUMENT;
  if (p->batch == 0 || p->dim == 0) return LRNN_OK;
  if (!workspace || !p->h_last || !p->lambda || !p->delta || (p->length > 0 && (!p->dt || !p->v || !p->h)))
    return LRNN_ERR_ARGUMENT;
  const Layout o = layout_of(p, false);
  if (o.tiles >= 2147483647LL) return LRNN_ERR_SHAPE;   // tile numbers are 32-bit counters
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  using lrnn_event_cuda::event_fwd_kernel;
  using lrnn_event_cuda::fwd_stage_bytes;
  const int mode = delta_mode(p), sf = fwd_stage_bytes<float>(), sd = fwd_stage_bytes<double>();
  if (p->dtype == LRNN_C64 && p->real_dtype == LRNN_F32)
    return mode == 0   ? launch(event_fwd_kernel<float, float, true, false>, *p, o, workspace, s, sf)
           : mode == 1 ? launch(event_fwd_kernel<float, float, false, true>, *p, o, workspace, s, sf)
                       : launch(event_fwd_kernel<float, float, false, false>, *p, o, workspace, s, sf);
  if (p->dtype == LRNN_C64 && p->real_dtype == LRNN_BF16)
    return mode == 0   ? launch(event_fwd_kernel<float, uint16_t, true, false>, *p, o, workspace, s, sf)
           : mode == 1 ? launch(event_fwd_kernel<float, uint16_t, false, true>, *p, o, workspace, s, sf)
                       : launch(event_fwd_kernel<float, uint16_t, false, false>, *p, o, workspace, s, sf);
  if (p->dtype == LRNN_C128 && p->real_dtype == LRNN_F64)
    return mode == 0   ? launch(event_fwd_kernel<double, double, true, false>, *p, o, workspace, s, sd)
           : mode == 1 ? launch(event_fwd_kernel<double, double, false, true>, *p, o, workspace, s, sd)
                       : launch(event_fwd_kernel<double, double, false, false>, *p, o, workspace, s, sd);
  return LRNN_ERR_DTYPE;
}

extern "C" lrnn_status lrnn_event_scan_bwd_cuda(const lrnn_event_scan_bwd_params* p, void* workspace, void* stream) {
  if (!p || p->batch < 0 || p->length < 0 || p->dim < 0 || !valid_disc(p->disc)) return LRNN_ERR_ARGUMENT;
  if (p->batch == 0 || p->dim == 0) return LRNN_OK;
  if (!workspace || !p->dlambda || !p->ddelta || !p->dh0 || !p->lambda || !p->delta) return LRNN_ERR_ARGUMENT;
  if (p->length > 0 && (!p->dt || !p->v || !p->h || !p->grad_h || !p->dv)) return LRNN_ERR_ARGUMENT;
  const Layout o = layout_of(p, true);
  if (o.tiles >= 2147483647LL) return LRNN_ERR_SHAPE;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const unsigned rblocks = static_cast<unsigned>(o.chains);   // chains <= tiles
  using lrnn_event_cuda::event_bwd_kernel;
  using lrnn_event_cuda::event_bwd_reduce_kernel;
  const int mode = delta_mode(p);
  lrnn_status st;
  if (p->dtype == LRNN_C64 && p->real_dtype == LRNN_F32) {
    st = mode == 0   ? launch(event_bwd_kernel<float, float, true, false>, *p, o, workspace, s)
         : mode == 1 ? launch(event_bwd_kernel<float, float, false, true>, *p, o, workspace, s)
                     : launch(event_bwd_kernel<float, float, false, false>, *p, o, workspace, s);
  } else if (p->dtype == LRNN_C64 && p->real_dtype == LRNN_BF16) {
    st = mode == 0   ? launch(event_bwd_kernel<float, uint16_t, true, false>, *p, o, workspace, s)
         : mode == 1 ? launch(event_bwd_kernel<float, uint16_t, false, true>, *p, o, workspace, s)
                     : launch(event_bwd_kernel<float, uint16_t, false, false>, *p, o, workspace, s);
  } else if (p->dtype == LRNN_C128 && p->real_dtype == LRNN_F64) {
    st = mode == 0   ? launch(event_bwd_kernel<double, double, true, false>, *p, o, workspace, s)
         : mode == 1 ? launch(event_bwd_kernel<double, double, false, true>, *p, o, workspace, s)
                     : launch(event_bwd_kernel<double, double, false, false>, *p, o, workspace, s);
  } else {
    return LRNN_ERR_DTYPE;
  }
  if (st != LRNN_OK) return st;
  const int rthreads = lrnn_event_cuda::CW * lrnn_event_cuda::RL;
  if (p->dtype == LRNN_C128) event_bwd_reduce_kernel<double><<<rblocks, rthreads, 0, s>>>(*p, workspace);
  else event_bwd_reduce_kernel<float><<<rblocks, rthreads, 0, s>>>(*p, workspace);
  return cudaGetLastError() == cudaSuccess ? LRNN_OK : LRNN_ERR_CUDA;
}
