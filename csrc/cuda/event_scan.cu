/* event_scan.cu: the CUDA launchers of the event scan (lrnn/event_scan.h). The kernels and
 * their design are in event_scan_kernels.cuh. Two scans:
 *   - the forward's one-pass scan (a delta shared over time, at least 16 chains; fwd_impl): a
 *     memset of its look-back words, then one kernel;
 *   - the three-pass scan otherwise and for every backward: per direction three launches
 *     (reduce, carry, apply), and for the backward a fourth that sums the per-tile gradient
 *     partials in a fixed order.
 * Launches after the first are programmatic dependents (PDL: their blocks may be scheduled
 * while the previous grid drains and wait for it in the kernel); on the H200 this measured the
 * same as plain launches for the three-pass scan (0.436 / 0.685 ms against 0.433 / 0.683). */
#include <cuda_runtime.h>
#include <stdint.h>
#include <mutex>
#include <stdlib.h>
#include <string.h>
#include <type_traits>

#include "event_scan_kernels.cuh"
#include "lrnn/event_scan.h"

namespace {

using lrnn_event_cuda::RsLayout;
using lrnn_event_cuda::rs_layout;

bool valid_disc(int disc) { return disc == LRNN_DISC_ZOH || disc == LRNN_DISC_DIRAC || disc == LRNN_DISC_ASYNC; }

/* Tiles per resident warp of the apply kernel (H200, (8, 65536, 128), async, device time per
 * call): forward 0.431 ms with two against 0.436 / 0.436 with one / four (0.440 / 0.442 / 0.452
 * with one / two / four in an earlier run); backward 0.679-0.685 ms with four against 0.705 with
 * two (0.700 / 0.720 / 0.700 with one / two / eight earlier). */
int64_t rs_waves(bool bwd) { return bwd ? 4 : 2; }

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

/* Steps per tile: about rs_waves tiles per warp that the apply kernel keeps resident (three
 * blocks of eight warps per SM forward, two backward), so the tiles run in nearly full waves;
 * at least 64 steps (the carry pass walks ntt tiles per chain), a multiple of the load groups
 * (8 and 4 steps). */
int64_t rs_steps(int64_t B, int64_t L, int64_t P, bool bwd) {
  const int64_t chains = B * ((P + lrnn_event_cuda::CW - 1) / lrnn_event_cuda::CW);
  const int64_t want = rs_waves(bwd) * device_sms() * (bwd ? 2 : 3) * lrnn_event_cuda::RW;
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

/* A launch on `s`; `dependent`: as a programmatic dependent of the previous launch (the kernel
 * waits for it with griddepcontrol.wait before touching memory). */
template <typename... KArgs, typename... Args>
bool launch_smem(bool dependent, void (*kernel)(KArgs...), unsigned grid, unsigned block, size_t smem, cudaStream_t s,
                 Args... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(block);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = dependent ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...) == cudaSuccess;
}
template <typename... KArgs, typename... Args>
bool launch(bool dependent, void (*kernel)(KArgs...), unsigned grid, unsigned block, cudaStream_t s, Args... args) {
  return launch_smem(dependent, kernel, grid, block, 0, s, args...);
}

/* The forward's kernels: the one-pass scan (OP) or the three-pass scan (RS); the backward
 * always runs the three-pass scan. The one-pass scan needs a delta shared over time (a
 * per-event delta would be one more staged array) and at least one step. Its chain advances
 * about 1024 steps per L2 round trip (the checkpoint hop), so with few chains (B * ceil(P/32))
 * the three-pass scan, which splits time over all SMs without waiting, is kept: at ~1 us per
 * round trip 16 chains of 32 channels carry 16 * 32 * 1024 steps * 8 B per us = 4.2 TB/s, the
 * H200's bandwidth. On the H200 at (8, 65536, 128), async, the forward took 0.336 / 0.325 ms
 * one-pass against 0.440 three-pass. A one-pass backward (grad_h and v staged, h read once per
 * warp and h[t-1] recomputed; look-back as in the forward) measured 0.754 ms against 0.680 for
 * the three-pass backward and was removed (commit 1802e55 has it).
 * LRNN_EVENT_SCAN_IMPL=3pass|1pass forces the forward's scan (for measuring them; 1pass falls
 * back to the three-pass scan where the one-pass cannot run). */
enum class Impl { RS, OP };

Impl fwd_impl(const lrnn_event_scan_params* p) {
  const char* e = getenv("LRNN_EVENT_SCAN_IMPL");
  if (e && strcmp(e, "3pass") == 0) return Impl::RS;
  if (p->delta_stride[1] != 0 || p->length <= 0) return Impl::RS;
  if (e && strcmp(e, "1pass") == 0) return Impl::OP;
  const int64_t chains = p->batch * ((p->dim + lrnn_event_cuda::CW - 1) / lrnn_event_cuda::CW);
  return chains >= 16 ? Impl::OP : Impl::RS;
}

/* More than 48 KB of dynamic shared memory for `kernel`, and the carveout that fits the blocks
 * per SM it is built for; done[dev] records the devices done (per kernel: the caller's own). */
template <typename... KArgs>
bool big_smem(void (*kernel)(KArgs...), int64_t smem, std::mutex& m, bool (&done)[64]) {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return false;
  std::lock_guard<std::mutex> lock(m);
  if (!done[dev])
    done[dev] =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)) ==
            cudaSuccess &&
        cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared) ==
            cudaSuccess;
  return done[dev];
}

/* The one-pass forward: the look-back words filled with ones, then the kernel. */
template <typename R, typename TR, bool GC>
lrnn_status op_fwd(const lrnn_event_scan_params& p, void* ws, cudaStream_t s) {
  using namespace lrnn_event_cuda;
  const int64_t T = OW * op_steps<R>(), smem = op_smem_bytes<R>();
  const RsLayout o = rs_layout<R>(p.batch, p.length, p.dim, T, false);
  if (o.tiles >= 2147483647LL) return LRNN_ERR_SHAPE;
  auto kernel = event_op_fwd<R, TR, GC>;
  static std::mutex m;
  static bool done[64] = {false};
  if (!big_smem(kernel, smem, m, done)) return LRNN_ERR_CUDA;
  if (cudaMemsetAsync(static_cast<unsigned char*>(ws) + o.agg_off, 0xFF, static_cast<size_t>(o.car_off - o.agg_off),
                      s) != cudaSuccess)
    return LRNN_ERR_CUDA;
  return launch_smem(false, kernel, static_cast<unsigned>(o.tiles), OW * CW, static_cast<size_t>(smem), s, p, ws)
             ? LRNN_OK
             : LRNN_ERR_CUDA;
}

template <typename R, typename TR, bool PE, bool GC>
lrnn_status rs_fwd(const lrnn_event_scan_params& p, void* ws, cudaStream_t s) {
  using namespace lrnn_event_cuda;
  const RsLayout o = rs_layout_of(&p, false);
  const unsigned blocks = static_cast<unsigned>((o.tiles + RW - 1) / RW), chains = static_cast<unsigned>(o.chains);
  const bool ok = launch(false, event_rs_fwd_reduce<R, TR, PE, GC>, blocks, RNT, s, p, o.T, ws) &&
                  launch(true, event_rs_carry<R>, chains, CSW * CW, s, p.batch, p.length, p.dim, o.T, false, p.h0,
                         p.h0_stride[0], p.h0_stride[1], ws) &&
                  launch(true, event_rs_fwd_apply<R, TR, PE, GC>, blocks, RNT, s, p, o.T, ws);
  return ok ? LRNN_OK : LRNN_ERR_CUDA;
}

template <typename R, typename TR, bool PE, bool GC>
lrnn_status rs_bwd(const lrnn_event_scan_bwd_params& p, void* ws, cudaStream_t s) {
  using namespace lrnn_event_cuda;
  const RsLayout o = rs_layout_of(&p, true);
  const unsigned blocks = static_cast<unsigned>((o.tiles + RW - 1) / RW), chains = static_cast<unsigned>(o.chains);
  const bool ok = launch(false, event_rs_bwd_reduce<R, TR, PE>, blocks, RNT, s, p, o.T, ws) &&
                  launch(true, event_rs_carry<R>, chains, CSW * CW, s, p.batch, p.length, p.dim, o.T, true,
                         p.grad_h_last, p.grad_h_last_stride[0], p.grad_h_last_stride[1], ws) &&
                  launch(true, event_rs_bwd_apply<R, TR, PE, GC>, blocks, RNT, s, p, o.T, ws) &&
                  launch(true, event_rs_bwd_sum<R>, chains, CW * RL, s, p, o.T, ws);
  return ok ? LRNN_OK : LRNN_ERR_CUDA;
}

template <typename R, typename TR, bool PE, bool GC>
lrnn_status rs_run(const lrnn_event_scan_params& p, void* ws, cudaStream_t s) { return rs_fwd<R, TR, PE, GC>(p, ws, s); }
template <typename R, typename TR, bool PE, bool GC>
lrnn_status rs_run(const lrnn_event_scan_bwd_params& p, void* ws, cudaStream_t s) {
  return rs_bwd<R, TR, PE, GC>(p, ws, s);
}

/* One direction with the state type R and the real type TR: the chosen scan, instantiated for
 * the delta mode (a per-event delta; a shared delta with a constant input scale, i.e. not ZOH;
 * a shared delta with ZOH). */
template <typename R, typename TR, typename Params>
lrnn_status run_scan(const Params& p, void* ws, cudaStream_t s) {
  const bool per_event = p.delta_stride[1] != 0, constant_scale = p.disc != LRNN_DISC_ZOH;
  if constexpr (std::is_same<Params, lrnn_event_scan_params>::value) {
    if (fwd_impl(&p) == Impl::OP)   // a shared delta
      return constant_scale ? op_fwd<R, TR, true>(p, ws, s) : op_fwd<R, TR, false>(p, ws, s);
  }
  return per_event        ? rs_run<R, TR, true, false>(p, ws, s)
         : constant_scale ? rs_run<R, TR, false, true>(p, ws, s)
                          : rs_run<R, TR, false, false>(p, ws, s);
}

template <typename Params>
lrnn_status run_any(const Params& p, void* ws, cudaStream_t s) {
  if (p.dtype == LRNN_C64 && p.real_dtype == LRNN_F32) return run_scan<float, float>(p, ws, s);
  if (p.dtype == LRNN_C64 && p.real_dtype == LRNN_BF16) return run_scan<float, uint16_t>(p, ws, s);
  if (p.dtype == LRNN_C128 && p.real_dtype == LRNN_F64) return run_scan<double, double>(p, ws, s);
  return LRNN_ERR_DTYPE;
}

}  // namespace

extern "C" int64_t lrnn_event_scan_fwd_workspace_bytes(const lrnn_event_scan_params* p) {
  if (!p || p->batch <= 0 || p->dim <= 0 || p->length < 0) return 0;
  if (fwd_impl(p) == Impl::RS) return rs_layout_of(p, false).bytes;
  using namespace lrnn_event_cuda;
  return p->dtype == LRNN_C128 ? rs_layout<double>(p->batch, p->length, p->dim, OW * op_steps<double>(), false).bytes
                               : rs_layout<float>(p->batch, p->length, p->dim, OW * op_steps<float>(), false).bytes;
}

extern "C" int64_t lrnn_event_scan_bwd_workspace_bytes(const lrnn_event_scan_bwd_params* p) {
  if (!p || p->batch <= 0 || p->dim <= 0 || p->length < 0) return 0;
  return rs_layout_of(p, true).bytes;
}
extern "C" lrnn_status lrnn_event_scan_fwd_cuda(const lrnn_event_scan_params* p, void* workspace, void* stream) {
  if (!p || p->batch < 0 || p->length < 0 || p->dim < 0 || !valid_disc(p->disc)) return LRNN_ERR_ARGUMENT;
  if (p->batch == 0 || p->dim == 0) return LRNN_OK;
  if (!workspace || !p->h_last || !p->lambda || !p->delta || (p->length > 0 && (!p->dt || !p->v || !p->h)))
    return LRNN_ERR_ARGUMENT;
  if (rs_layout_of(p, false).tiles >= 2147483647LL) return LRNN_ERR_SHAPE;   // 32-bit grids
  return run_any(*p, workspace, static_cast<cudaStream_t>(stream));
}

extern "C" lrnn_status lrnn_event_scan_bwd_cuda(const lrnn_event_scan_bwd_params* p, void* workspace, void* stream) {
  if (!p || p->batch < 0 || p->length < 0 || p->dim < 0 || !valid_disc(p->disc)) return LRNN_ERR_ARGUMENT;
  if (p->batch == 0 || p->dim == 0) return LRNN_OK;
  if (!workspace || !p->dlambda || !p->ddelta || !p->dh0 || !p->lambda || !p->delta) return LRNN_ERR_ARGUMENT;
  if (p->length > 0 && (!p->dt || !p->v || !p->h || !p->grad_h || !p->dv)) return LRNN_ERR_ARGUMENT;
  if (rs_layout_of(p, true).tiles >= 2147483647LL) return LRNN_ERR_SHAPE;
  return run_any(*p, workspace, static_cast<cudaStream_t>(stream));
}
