/* event_scan.cu: the CUDA launchers of the event scan (lrnn/event_scan.h). The kernels and
 * their design are in event_scan_kernels.cuh. Each launch fills the workspace's tile counter
 * and publication area with ones (cudaMemsetAsync on the same stream: "not yet published"), runs a persistent grid of at most as many
 * blocks as fit on the device at once (more would only queue), and for the backward a small
 * kernel that sums the per-tile gradient partials in a fixed order. */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event_scan_kernels.cuh"
#include "lrnn/event_scan.h"

namespace {

using lrnn_event_cuda::Layout;
using lrnn_event_cuda::NT;
using lrnn_event_cuda::layout;

bool valid_disc(int disc) { return disc == LRNN_DISC_ZOH || disc == LRNN_DISC_DIRAC || disc == LRNN_DISC_ASYNC; }

/* The backward's layout; the forward's workspace is sized for its smallest tiles (S = 8), which
 * covers every forward variant. */
template <typename Params>
Layout layout_of(const Params* p, bool bwd) {
  using lrnn_event_cuda::bwd_steps;
  return p->dtype == LRNN_C128 ? layout<double>(p->batch, p->length, p->dim, bwd, bwd ? bwd_steps<double>() : 8)
                               : layout<float>(p->batch, p->length, p->dim, bwd, bwd ? bwd_steps<float>() : 8);
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

/* Forward variants of complex64 with float dt/delta: steps per thread x minimum blocks per SM.
 * LRNN_EVENT_FWD = "16x2" (default), "8x4", "8x3" or "8x2" picks one (for measuring them on the GPU). */
template <typename R, typename TR, bool PE, bool GC, int S, int MINB>
lrnn_status fwd_variant(const lrnn_event_scan_params& p, void* ws, cudaStream_t s) {
  return launch(lrnn_event_cuda::event_fwd_kernel<R, TR, PE, GC, S, MINB>, p,
                layout<R>(p.batch, p.length, p.dim, false, S), ws, s, lrnn_event_cuda::fwd_stage_bytes<R, S>());
}
template <bool PE, bool GC>
lrnn_status fwd_f32(const lrnn_event_scan_params& p, void* ws, cudaStream_t s) {
  const char* v = getenv("LRNN_EVENT_FWD");
  if (v && !strcmp(v, "8x4")) return fwd_variant<float, float, PE, GC, 8, 4>(p, ws, s);
  if (v && !strcmp(v, "8x3")) return fwd_variant<float, float, PE, GC, 8, 3>(p, ws, s);
  if (v && !strcmp(v, "8x2")) return fwd_variant<float, float, PE, GC, 8, 2>(p, ws, s);
  return fwd_variant<float, float, PE, GC, 16, 2>(p, ws, s);
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
  if (layout_of(p, false).tiles >= 2147483647LL) return LRNN_ERR_SHAPE;   // tile numbers are 32-bit counters
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  // delta per event; or shared with a constant input scale (not ZOH); or shared with ZOH
  const int mode = p->delta_stride[1] != 0 ? 0 : p->disc != LRNN_DISC_ZOH ? 1 : 2;
  if (p->dtype == LRNN_C64 && p->real_dtype == LRNN_F32)
    return mode == 0 ? fwd_f32<true, false>(*p, workspace, s)
           : mode == 1 ? fwd_f32<false, true>(*p, workspace, s)
                       : fwd_f32<false, false>(*p, workspace, s);
  if (p->dtype == LRNN_C64 && p->real_dtype == LRNN_BF16)
    return mode == 0   ? fwd_variant<float, uint16_t, true, false, 16, 2>(*p, workspace, s)
           : mode == 1 ? fwd_variant<float, uint16_t, false, true, 16, 2>(*p, workspace, s)
                       : fwd_variant<float, uint16_t, false, false, 16, 2>(*p, workspace, s);
  if (p->dtype == LRNN_C128 && p->real_dtype == LRNN_F64)
    return mode == 0   ? fwd_variant<double, double, true, false, 8, 2>(*p, workspace, s)
           : mode == 1 ? fwd_variant<double, double, false, true, 8, 2>(*p, workspace, s)
                       : fwd_variant<double, double, false, false, 8, 2>(*p, workspace, s);
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
  // delta per event; or shared with a constant input scale (not ZOH); or shared with ZOH
  const int mode = p->delta_stride[1] != 0 ? 0 : p->disc != LRNN_DISC_ZOH ? 1 : 2;
  // LRNN_EVENT_BWD = "3": at least three blocks per SM (complex64, float dt/delta), else two
  const char* bv = getenv("LRNN_EVENT_BWD");
  const bool three = bv && !strcmp(bv, "3");
  lrnn_status st;
  if (p->dtype == LRNN_C64 && p->real_dtype == LRNN_F32 && three) {
    st = mode == 0   ? launch(event_bwd_kernel<float, float, true, false, 3>, *p, o, workspace, s)
         : mode == 1 ? launch(event_bwd_kernel<float, float, false, true, 3>, *p, o, workspace, s)
                     : launch(event_bwd_kernel<float, float, false, false, 3>, *p, o, workspace, s);
  } else if (p->dtype == LRNN_C64 && p->real_dtype == LRNN_F32) {
    st = mode == 0   ? launch(event_bwd_kernel<float, float, true, false, 2>, *p, o, workspace, s)
         : mode == 1 ? launch(event_bwd_kernel<float, float, false, true, 2>, *p, o, workspace, s)
                     : launch(event_bwd_kernel<float, float, false, false, 2>, *p, o, workspace, s);
  } else if (p->dtype == LRNN_C64 && p->real_dtype == LRNN_BF16) {
    st = mode == 0   ? launch(event_bwd_kernel<float, uint16_t, true, false, 2>, *p, o, workspace, s)
         : mode == 1 ? launch(event_bwd_kernel<float, uint16_t, false, true, 2>, *p, o, workspace, s)
                     : launch(event_bwd_kernel<float, uint16_t, false, false, 2>, *p, o, workspace, s);
  } else if (p->dtype == LRNN_C128 && p->real_dtype == LRNN_F64) {
    st = mode == 0   ? launch(event_bwd_kernel<double, double, true, false, 2>, *p, o, workspace, s)
         : mode == 1 ? launch(event_bwd_kernel<double, double, false, true, 2>, *p, o, workspace, s)
                     : launch(event_bwd_kernel<double, double, false, false, 2>, *p, o, workspace, s);
  } else {
    return LRNN_ERR_DTYPE;
  }
  if (st != LRNN_OK) return st;
  const int rthreads = lrnn_event_cuda::CW * lrnn_event_cuda::RL;
  if (p->dtype == LRNN_C128) event_bwd_reduce_kernel<double><<<rblocks, rthreads, 0, s>>>(*p, workspace);
  else event_bwd_reduce_kernel<float><<<rblocks, rthreads, 0, s>>>(*p, workspace);
  return cudaGetLastError() == cudaSuccess ? LRNN_OK : LRNN_ERR_CUDA;
}
