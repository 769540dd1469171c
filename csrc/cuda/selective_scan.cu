// selective_scan.cu: CUDA forward and backward of the selective scan (lrnn/selective_scan.h).
//
// Design. mamba_ssm's kernel gives each (b, d) row a thread block and runs, for every state n
// and every 2048-step chunk, a block-wide cub::BlockScan: N block scans (each with several
// __syncthreads) per chunk make it barrier/latency-bound at ~23% of the compute floor. Here a
// row is owned by a *group of LPC lanes inside one warp*, each lane owning NS of the row's N
// states (n = lane + k * LPC), and time is walked sequentially in registers: the recurrence
// h = exp2(dtA * A * log2e) * h + dt * u * B is one MUFU ex2 and two FMAs per (t, n) with no
// synchronization at all. What needs cooperation is cheap and warp-local:
//  * per-step scalars (dtA, dt*u, ...) are loaded coalesced, one step per lane, for a tile of
//    LPC steps and broadcast through a tiny per-group shared-memory slot (one 8/16-byte
//    broadcast read per step);
//  * y[t] = sum_n C[t,n] h[t,n] needs a sum over the group's lanes per step: each lane keeps
//    its partial sums for the LPC steps of the tile and a butterfly "transpose-reduce"
//    (LPC - 1 shuffles per LPC steps, i.e. < 1 shuffle per step) leaves lane i with y of
//    step i of the tile, which it gates and stores coalesced.
// Parallelism comes from B*D*LPC lanes (196K lanes for (8, 1536, *, 16)), so no split of the
// time axis is needed at the shapes of interest. Variable B/C rows are read per lane as
// contiguous runs over time (vectorized 4 steps at a time when aligned) and are shared by all
// channels of a group through L1/L2.
//
// Backward. Per row, chunks of LRNN_SELECTIVE_SCAN_CHUNK = 64 steps in reverse. A chunk's states
// are recomputed from the forward's saved chunk state into shared memory (64 x N floats per
// row), then the adjoint lam[t] = gyo[t] C[t] + exp(dtA[t+1] A) lam[t+1] runs backwards in
// registers. Sums over states (d delta, the dtA gradient) use the same transpose-reduce.
// Sums over channels are deterministic: dA/dD/d(delta_bias) and time-invariant dB/dC are
// written per row, variable dB/dC are summed over the block's channels in a fixed order in
// shared memory and written once per block into its own workspace slice; a second kernel adds
// the per-row / per-block partials in a fixed order (the C API's two-phase contract). No atomics.
// The price of determinism: the variable dB/dC partials are parts * B * G * N * L floats each
// (parts = ceil((D / G) / channels per block), e.g. 192 for D = 1536, N = 16), written once by
// the backward and read once by the reduction — at N = 16 about as many bytes as the backward's
// other sequence traffic in float32 (more, relative, in bf16). mamba_ssm instead adds into one
// fp32 buffer with atomics (non-deterministic). Above N = 32 a block holds only 1-2 channels
// (the chunk's states take 64 x N floats of shared memory per channel), so the partials would
// be D / 2 .. D slices; there the variable dB/dC are added with float atomics into one buffer
// instead, and only they are not bitwise reproducible (lrnn_selective_scan_cuda_atomic_bc).
#include <cuda_runtime.h>
#include <stdint.h>

#include "lrnn/selective_scan.h"
#include "selective_scan_launch.h"

namespace {

// Backward, phase 2: out[i] = sum_k part[k][i], k ascending (as lrnn_selective_scan_reduce_cpu).
__global__ void selective_scan_reduce_kernel(const lrnn_selective_scan_bwd_params q, int64_t nA, int64_t nD,
                                             int64_t nB, int64_t nC) {
  const lrnn_selective_scan_params& p = q.fwd;
  const int64_t total = nA + 2 * nD + nB + nC;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t j = i, count, stride;
    const float* src;
    float* dst;
    if (j < nA) { src = (const float*)q.dA_part; dst = (float*)q.dA; count = p.batch; stride = nA; }
    else if ((j -= nA) < nD) { src = (const float*)q.dD_part; dst = (float*)q.dD; count = p.batch; stride = nD; }
    else if ((j -= nD) < nD) { src = (const float*)q.ddelta_bias_part; dst = (float*)q.ddelta_bias; count = p.batch; stride = nD; }
    else if ((j -= nD) < nB) { src = (const float*)q.dB_part; dst = (float*)q.dB; count = p.B_variable ? q.parts : p.batch; stride = nB; }
    else { j -= nB; src = (const float*)q.dC_part; dst = (float*)q.dC; count = p.C_variable ? q.parts : p.batch; stride = nC; }
    float acc = 0.f;
    for (int64_t k = 0; k < count; ++k) acc += src[k * stride + j];
    dst[j] = acc;
  }
}

lrnn_status check(const lrnn_selective_scan_params* p) {
  if (!p || p->batch < 0 || p->dim < 0 || p->length < 0 || p->dstate < 1 || p->dstate > LRNN_SELECTIVE_SCAN_MAX_STATE)
    return LRNN_ERR_SHAPE;
  if ((p->B_variable || p->C_variable) && (p->groups < 1 || p->dim % p->groups != 0)) return LRNN_ERR_SHAPE;
  if (p->wdtype != LRNN_F32) return LRNN_ERR_DTYPE;
  if (!p->A || (p->length > 0 && (!p->u || !p->delta || !p->Bm || !p->Cm))) return LRNN_ERR_ARGUMENT;
  return LRNN_OK;
}

lrnn_status last_error() { return cudaGetLastError() == cudaSuccess ? LRNN_OK : LRNN_ERR_CUDA; }

}  // namespace

extern "C" int64_t lrnn_selective_scan_cuda_channels_per_block(int64_t dstate) {
  return lrnn_ss::bwd_channels_per_block(dstate);
}

extern "C" int lrnn_selective_scan_cuda_atomic_bc(int64_t dstate) { return lrnn_ss::bwd_atomic_bc(dstate) ? 1 : 0; }

extern "C" lrnn_status lrnn_selective_scan_fwd_cuda(const lrnn_selective_scan_params* p, void* stream) {
  const lrnn_status st = check(p);
  if (st != LRNN_OK) return st;
  if (!p->h_last || (p->length > 0 && !p->y)) return LRNN_ERR_ARGUMENT;
  if (p->batch * p->dim == 0) return LRNN_OK;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (p->dtype) {
    case LRNN_F32: return lrnn_ss::fwd_f32(p, s);
    case LRNN_BF16: return lrnn_ss::fwd_bf16(p, s);
    case LRNN_F16: return lrnn_ss::fwd_f16(p, s);
    default: return LRNN_ERR_DTYPE;
  }
}

extern "C" lrnn_status lrnn_selective_scan_bwd_cuda(const lrnn_selective_scan_bwd_params* q, void* stream) {
  if (!q) return LRNN_ERR_ARGUMENT;
  const lrnn_selective_scan_params* p = &q->fwd;
  const lrnn_status st = check(p);
  if (st != LRNN_OK) return st;
  const bool variable = p->B_variable || p->C_variable;
  const int64_t S = variable ? p->groups : 1;
  if (p->dim == 0 || p->batch == 0) return LRNN_OK;
  const int64_t gpb = lrnn_selective_scan_cuda_channels_per_block(p->dstate);
  if (q->parts < 1 || q->parts > p->dim / S || (p->dim / S + q->parts - 1) / q->parts > gpb) return LRNN_ERR_ARGUMENT;
  if (!q->dh0 || !q->dA_part || !q->dD_part || !q->ddelta_bias_part || !q->dB_part || !q->dC_part || !q->dA ||
      !q->dD || !q->ddelta_bias || !q->dB || !q->dC)
    return LRNN_ERR_ARGUMENT;
  const bool atomic = lrnn_ss::bwd_atomic_bc(p->dstate);
  if (p->length > 0 && (!p->chunk_states || !q->grad_y || !q->du || !q->ddelta || (p->z && !q->dz) || (p->dt_A && !q->ddt_A)))
    return LRNN_ERR_ARGUMENT;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int64_t items = p->batch * S * q->parts;
  const int64_t var = p->batch * p->groups * p->dstate * p->length, ti = p->dim * p->dstate;
  if (atomic) {  // the kernel adds into dB / dC directly
    if (p->B_variable && cudaMemsetAsync(q->dB, 0, sizeof(float) * var, s) != cudaSuccess) return LRNN_ERR_CUDA;
    if (p->C_variable && cudaMemsetAsync(q->dC, 0, sizeof(float) * var, s) != cudaSuccess) return LRNN_ERR_CUDA;
  }
  lrnn_status rs;
  switch (p->dtype) {
    case LRNN_F32: rs = lrnn_ss::bwd_f32(q, items, s); break;
    case LRNN_BF16: rs = lrnn_ss::bwd_bf16(q, items, s); break;
    case LRNN_F16: rs = lrnn_ss::bwd_f16(q, items, s); break;
    default: return LRNN_ERR_DTYPE;
  }
  if (rs != LRNN_OK) return rs;
  // with atomics the variable dB / dC are complete: the reduction covers the rest only
  const int64_t nA = p->dim * p->dstate, nD = p->dim;
  const int64_t nB = p->B_variable ? (atomic ? 0 : var) : ti, nC = p->C_variable ? (atomic ? 0 : var) : ti;
  const int64_t total = nA + 2 * nD + nB + nC;
  const int64_t blocks = (total + 255) / 256 < 4096 ? (total + 255) / 256 : 4096;
  selective_scan_reduce_kernel<<<static_cast<unsigned>(blocks), 256, 0, s>>>(*q, nA, nD, nB, nC);
  return last_error();
}
