/* event_scan.cu: the CUDA launchers of the event scan (lrnn/event_scan.h). The kernels and
 * their design are in event_scan_kernels.cuh. */
#include <cuda_runtime.h>
#include <stdint.h>

#include "event_scan_kernels.cuh"
#include "lrnn/event_scan.h"

namespace {

using lrnn_event_cuda::CB;
using lrnn_event_cuda::K;
using lrnn_event_cuda::event_bwd_kernel;
using lrnn_event_cuda::event_fwd_kernel;

bool valid_disc(int disc) { return disc == LRNN_DISC_ZOH || disc == LRNN_DISC_DIRAC || disc == LRNN_DISC_ASYNC; }

template <typename Params>
bool grid_for(const Params* p, dim3* grid) {
  const int64_t tiles = (p->dim + CB - 1) / CB;
  if (p->batch > 2147483647LL || tiles > 65535) return false;
  *grid = dim3(static_cast<unsigned>(p->batch), static_cast<unsigned>(tiles));
  return true;
}

}  // namespace

extern "C" lrnn_status lrnn_event_scan_fwd_cuda(const lrnn_event_scan_params* p, void* stream) {
  if (!p || p->batch < 0 || p->length < 0 || p->dim < 0 || !valid_disc(p->disc)) return LRNN_ERR_ARGUMENT;
  if (p->batch == 0 || p->dim == 0) return LRNN_OK;
  if (!p->h_last || !p->lambda || !p->delta || (p->length > 0 && (!p->dt || !p->v || !p->h))) return LRNN_ERR_ARGUMENT;
  dim3 grid;
  if (!grid_for(p, &grid)) return LRNN_ERR_SHAPE;
  const dim3 block(CB, K);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (p->dtype == LRNN_C64 && p->real_dtype == LRNN_F32) event_fwd_kernel<float, float><<<grid, block, 0, s>>>(*p);
  else if (p->dtype == LRNN_C64 && p->real_dtype == LRNN_BF16) event_fwd_kernel<float, uint16_t><<<grid, block, 0, s>>>(*p);
  else if (p->dtype == LRNN_C128 && p->real_dtype == LRNN_F64) event_fwd_kernel<double, double><<<grid, block, 0, s>>>(*p);
  else return LRNN_ERR_DTYPE;
  return cudaGetLastError() == cudaSuccess ? LRNN_OK : LRNN_ERR_CUDA;
}

extern "C" lrnn_status lrnn_event_scan_bwd_cuda(const lrnn_event_scan_bwd_params* p, void* stream) {
  if (!p || p->batch < 0 || p->length < 0 || p->dim < 0 || !valid_disc(p->disc)) return LRNN_ERR_ARGUMENT;
  if (p->batch == 0 || p->dim == 0) return LRNN_OK;
  if (!p->dlambda || !p->ddelta || !p->dh0 || !p->lambda || !p->delta) return LRNN_ERR_ARGUMENT;
  if (p->length > 0 && (!p->dt || !p->v || !p->h || !p->grad_h || !p->dv)) return LRNN_ERR_ARGUMENT;
  dim3 grid;
  if (!grid_for(p, &grid)) return LRNN_ERR_SHAPE;
  const dim3 block(CB, K);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (p->dtype == LRNN_C64 && p->real_dtype == LRNN_F32) event_bwd_kernel<float, float><<<grid, block, 0, s>>>(*p);
  else if (p->dtype == LRNN_C64 && p->real_dtype == LRNN_BF16) event_bwd_kernel<float, uint16_t><<<grid, block, 0, s>>>(*p);
  else if (p->dtype == LRNN_C128 && p->real_dtype == LRNN_F64) event_bwd_kernel<double, double><<<grid, block, 0, s>>>(*p);
  else return LRNN_ERR_DTYPE;
  return cudaGetLastError() == cudaSuccess ? LRNN_OK : LRNN_ERR_CUDA;
}
