/* event_scan.cu: the CUDA launchers of the event scan (lrnn/event_scan.h). The kernels and
 * their design are in event_scan_kernels.cuh. The scan runs as three launches per direction
 * (reduce, carry, apply: no tile waits for another), and the backward adds a small kernel that
 * sums the per-tile gradient partials in a fixed order. LRNN_EVENT_IMPL=lookback selects the
 * one-pass look-back kernels instead (kept for measuring both on the GPU): each of their
 * launches first fills the workspace's tile counter and publication area with ones
 * (cudaMemsetAsync on the same stream: "not yet published") and runs a persistent grid. */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mutex>

#include "event_scan_kernels.cuh"
#include "lrnn/event_scan.h"

namespace {

using lrnn_event_cuda::Layout;
using lrnn_event_cuda::NT;
using lrnn_event_cuda::RsLayout;
using lrnn_event_cuda::layout;
using lrnn_event_cuda::rs_layout;

/* Measurement switches, read at every call (a process can time several variants):
 * LRNN_EVENT_IMPL=lookback, LRNN_EVENT_RS=staged, LRNN_EVENT_RS_WAVES=<tiles per resident warp>. */
bool env_is(const char* name, const char* value) {
  const char* e = getenv(name);
  return e && strcmp(e, value) == 0;
}
bool use_lookback() { return env_is("LRNN_EVENT_IMPL", "lookback"); }
int64_t rs_waves() {
  const char* e = getenv("LRNN_EVENT_RS_WAVES");
  const long w = e ? strtol(e, nullptr, 10) : 0;
  return w >= 1 && w <= 64 ? w : 4;
}

/* Streaming multiprocessors of the current device, cached per device (a driver query). */
int64_t device_sms() {
  static std::mutex m;
  static int cached[64] = {0};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return 132;
  std::lock_guard<std::mutex> lock(m);
  if (cached[dev] == 0) {
    int sms = 0;
    cached[dev] = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess && sms > 0 ? sms : 132;
  }
  return cached[dev];
}

/* Steps per tile of the three-pass scan: about four tiles per warp that the apply kernel keeps
 * resident (three blocks of eight warps per SM forward, two backward), so that the tiles run
 * in four nearly full waves; at least 64 steps (the carry pass walks ntt tiles per chain), a
 * multiple of the load groups (8 and 4 steps). */
int64_t rs_steps(int64_t B, int64_t L, int64_t P, bool bwd) {
  const int64_t chains = B * ((P + lrnn_event_cuda::CW - 1) / lrnn_event_cuda::CW);
  const int64_t want = rs_waves() * device_sms() * (bwd ? 2 : 3) * lrnn_event_cuda::RW;
  int64_t T = (chains * (L > 0 ? L : 1) + want - 1) / want;
  if (T < 64) T = 64;
  return (T + 7) / 8 * 8;
}

template <typename Params>
RsLayout rs_layout_of(const Params* p, bool bwd) {
  const int64_t T = rs_steps(p->batch, p->length, p->dim, bwd);
  return p->dtype == LRNN_C128 ? rs_layout<double>(p->batch, p->length, p->dim, T, bwd)
                               : rs_layout<float>(p->batch, p->length, p->dim, T, bwd);
}

/* LRNN_EVENT_RS=staged: the staged (cp.async ring) variant of the three-pass kernels where it
 * exists (complex64 with float dt and delta), for measuring it against the register variant. */
bool use_staged() { return env_is("LRNN_EVENT_RS", "staged"); }

/* Sets a kernel's dynamic shared memory limit once (per process: the attribute is per function). */
template <typename Kernel>
bool allow_smem(Kernel kernel, int bytes) {
  return bytes == 0 || cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) == cudaSuccess;
}

template <typename R, typename TR, bool PE, bool GC, bool ST = false>
lrnn_status rs_fwd(const lrnn_event_scan_params& p, void* ws, cudaStream_t s) {
  using namespace lrnn_event_cuda;
  const RsLayout o = rs_layout_of(&p, false);
  const unsigned blocks = static_cast<unsigned>((o.tiles + RW - 1) / RW);
  const int smem = ST ? rs_stage_bytes<R, PE, RG, 1>(RNS) : 0;
  static const bool ok = allow_smem(event_rs_fwd_reduce<R, TR, PE, GC, ST>, smem) &&
                         allow_smem(event_rs_fwd_apply<R, TR, PE, GC, ST>, smem);
  if (!ok) return LRNN_ERR_CUDA;
  event_rs_fwd_reduce<R, TR, PE, GC, ST><<<blocks, RNT, smem, s>>>(p, o.T, ws);
  event_rs_carry<R><<<static_cast<unsigned>(o.chains), CSW * CW, 0, s>>>(p.batch, p.length, p.dim, o.T, false, p.h0,
                                                                          p.h0_stride[0], p.h0_stride[1], ws);
  event_rs_fwd_apply<R, TR, PE, GC, ST><<<blocks, RNT, smem, s>>>(p, o.T, ws);
  return cudaGetLastError() == cudaSuccess ? LRNN_OK : LRNN_ERR_CUDA;
}

template <typename R, typename TR, bool PE, bool GC, bool ST = false>
lrnn_status rs_bwd(const lrnn_event_scan_bwd_params& p, void* ws, cudaStream_t s) {
  using namespace lrnn_event_cuda;
  const RsLayout o = rs_layout_of(&p, true);
  const unsigned blocks = static_cast<unsigned>((o.tiles + RW - 1) / RW);
  const int smem1 = ST ? rs_stage_bytes<R, PE, RG, 1>(RNS) : 0, smem3 = ST ? rs_stage_bytes<R, PE, RG3, 3>(rs_ns3(PE)) : 0;
  static const bool ok = allow_smem(event_rs_bwd_reduce<R, TR, PE, ST>, smem1) &&
                         allow_smem(event_rs_bwd_apply<R, TR, PE, GC, ST>, smem3);
  if (!ok) return LRNN_ERR_CUDA;
  event_rs_bwd_reduce<R, TR, PE, ST><<<blocks, RNT, smem1, s>>>(p, o.T, ws);
  event_rs_carry<R><<<static_cast<unsigned>(o.chains), CSW * CW, 0, s>>>(
      p.batch, p.length, p.dim, o.T, true, p.grad_h_last, p.grad_h_last_stride[0], p.grad_h_last_stride[1], ws);
  event_rs_bwd_apply<R, TR, PE, GC, ST><<<blocks, RNT, smem3, s>>>(p, o.T, ws);
  event_rs_bwd_sum<R><<<static_cast<unsigned>(o.chains), CW * RL, 0, s>>>(p, o.T, ws);
  return cudaGetLastError() == cudaSuccess ? LRNN_OK : LRNN_ERR_CUDA;
}

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
  return use_lookback() ? layout_of(p, false).bytes : rs_layout_of(p, false).bytes;
}

extern "C" int64_t lrnn_event_scan_bwd_workspace_bytes(const lrnn_event_scan_bwd_params* p) {
  if (!p || p->batch <= 0 || p->dim <= 0 || p->length < 0) return 0;
  return use_lookback() ? layout_of(p, true).bytes : rs_layout_of(p, true).bytes;
}

extern "C" lrnn_status lrnn_event_scan_fwd_cuda(const lrnn_event_scan_params* p, void* workspace, void* stream) {
  if (!p || p->batch < 0 || p->length < 0 || p->dim < 0 || !valid_disc(p->disc)) return LRNN_ERR_ARGUMENT;
  if (p->batch == 0 || p->dim == 0) return LRNN_OK;
  if (!workspace || !p->h_last || !p->lambda || !p->delta || (p->length > 0 && (!p->dt || !p->v || !p->h)))
    return LRNN_ERR_ARGUMENT;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (!use_lookback()) {
    if (rs_layout_of(p, false).tiles >= 2147483647LL) return LRNN_ERR_SHAPE;   // 32-bit grids
    const int mode = delta_mode(p);
    if (p->dtype == LRNN_C64 && p->real_dtype == LRNN_F32)
      return mode == 0   ? (use_staged() ? rs_fwd<float, float, true, false, true>(*p, workspace, s)
                                         : rs_fwd<float, float, true, false>(*p, workspace, s))
             : mode == 1 ? (use_staged() ? rs_fwd<float, float, false, true, true>(*p, workspace, s)
                                         : rs_fwd<float, float, false, true>(*p, workspace, s))
                         : (use_staged() ? rs_fwd<float, float, false, false, true>(*p, workspace, s)
                                         : rs_fwd<float, float, false, false>(*p, workspace, s));
    if (p->dtype == LRNN_C64 && p->real_dtype == LRNN_BF16)
      return mode == 0   ? rs_fwd<float, uint16_t, true, false>(*p, workspace, s)
             : mode == 1 ? rs_fwd<float, uint16_t, false, true>(*p, workspace, s)
                         : rs_fwd<float, uint16_t, false, false>(*p, workspace, s);
    if (p->dtype == LRNN_C128 && p->real_dtype == LRNN_F64)
      return mode == 0   ? rs_fwd<double, double, true, false>(*p, workspace, s)
             : mode == 1 ? rs_fwd<double, double, false, true>(*p, workspace, s)
                         : rs_fwd<double, double, false, false>(*p, workspace, s);
    return LRNN_ERR_DTYPE;
  }
  const Layout o = layout_of(p, false);
  if (o.tiles >= 2147483647LL) return LRNN_ERR_SHAPE;   // tile numbers are 32-bit counters
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
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (!use_lookback()) {
    if (rs_layout_of(p, true).tiles >= 2147483647LL) return LRNN_ERR_SHAPE;
    const int mode = delta_mode(p);
    if (p->dtype == LRNN_C64 && p->real_dtype == LRNN_F32)
      return mode == 0   ? (use_staged() ? rs_bwd<float, float, true, false, true>(*p, workspace, s)
                                         : rs_bwd<float, float, true, false>(*p, workspace, s))
             : mode == 1 ? (use_staged() ? rs_bwd<float, float, false, true, true>(*p, workspace, s)
                                         : rs_bwd<float, float, false, true>(*p, workspace, s))
                         : (use_staged() ? rs_bwd<float, float, false, false, true>(*p, workspace, s)
                                         : rs_bwd<float, float, false, false>(*p, workspace, s));
    if (p->dtype == LRNN_C64 && p->real_dtype == LRNN_BF16)
      return mode == 0   ? rs_bwd<float, uint16_t, true, false>(*p, workspace, s)
             : mode == 1 ? rs_bwd<float, uint16_t, false, true>(*p, workspace, s)
                         : rs_bwd<float, uint16_t, false, false>(*p, workspace, s);
    if (p->dtype == LRNN_C128 && p->real_dtype == LRNN_F64)
      return mode == 0   ? rs_bwd<double, double, true, false>(*p, workspace, s)
             : mode == 1 ? rs_bwd<double, double, false, true>(*p, workspace, s)
                         : rs_bwd<double, double, false, false>(*p, workspace, s);
    return LRNN_ERR_DTYPE;
  }
  const Layout o = layout_of(p, true);
  if (o.tiles >= 2147483647LL) return LRNN_ERR_SHAPE;
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
