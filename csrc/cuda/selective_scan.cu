// selective_scan.cu: CUDA forward and backward of the selective scan (lrnn/selective_scan.h).
//
// Forward design. mamba_ssm's kernel gives each (b, d) row a thread block and runs, for every state n
// and 2048-step chunk, a block-wide cub::BlockScan (N scans with several __syncthreads each per chunk).
// Here time is walked sequentially in registers: a row (channel) is owned by LPC lanes of one
// warp, lane l holding the NS states n = l + k*LPC, and h = exp2(dtA * A*log2e) * h + dt*u*B is one
// MUFU ex2 and ~4 FP32 ops per (t, n) with no synchronization inside a time tile.
//  * A block owns RPB = threads / LPC channels of one (batch, B/C group) and walks time in tiles of
//    V steps. Per tile, its threads load the group's B and C tile (N x V values; each thread E
//    consecutive steps of one state row as one vector) once into shared memory as fp32, shared
//    by all RPB channels, and each lane loads its
//    own M = V / LPC consecutive steps of u, delta (dt_A, z) as one vector; dt = softplus(delta +
//    bias) and dt*u are computed once per (row, step) and broadcast to the row's lanes through a
//    per-row shared slot. All of it is staged in registers one tile ahead (raw bf16/f16 bits, so
//    no conversion waits on a load), so the loads of tile i+1 fly during the compute of tile i.
//  * Per 4 steps a lane reads (dtA, dt*u) of 4 steps (2 x 16 B broadcast) and, per state, 4 steps of
//    B and of C (2 x 16 B, lanes hit distinct banks); it writes its 4 per-step partial sums of
//    C*h to its own scratch row; after the tile (one __syncwarp) lane l adds the LPC partials of
//    its M steps in lane order (deterministic), applies D*u and the gate and stores y as a vector.
//  * Configurations (NS, LPC, V, threads) by N: (2,4,32,128) N<=8; (4,4,32,128) N<=16 with
//    B*D >= 8448, else (2,8,32,128); (4,8,32,128) N<=32; (8,8,16,128) N<=64; (8,16,16,256) N<=128;
//    (16,16,16,256) N<=256. Time-invariant B or C are per-lane registers (a select per use).
// Cost model, (8, 1536, 2048, 16) f32, config (4,4,32,128), per (b,d,t,n) element: 1 MUFU ex2,
// 4 FP32 (dtA*A2, dtu*B, h FMA, y FMA), 0.5 LDS.128 (B, C), 0.125 LDS (step slot), 1/16 STS +
// 1/16 LDS (partials); per (b,d,t) and lane: softplus (2 MUFU: 2/16 per element, as mamba) and the
// loads. MUFU: 402M ex2 / 4.18e12/s = 0.096 ms (+12% softplus) -> ~0.11 ms; FP32/issue: ~5.5
// instructions per element / 3.35e13 lanes/s = 0.066 ms; DRAM: u, delta, y = 302 MB / 4.24 TB/s
// = 0.071 ms, B/C from L2 (2 MB, re-read by 48 blocks per (b, g)). So the forward is MUFU-bound
// at ~0.11 ms (the floor) if latency is hidden: 12288 rows x 4 lanes = 1536 warps = 384 blocks of
// 4 warps, <= 168 registers (launch bounds 3 blocks/SM) -> one wave of <= 3 blocks (12 warps) per
// SM; in flight per SM one staged tile: 96 rows x 32 steps x 8 B = 24 KB (f32), 12 KB (bf16),
// against ~0.6 us of latency the tile's compute (96 x 32 x 16 / 16 MUFU/clk = 3072 clk = 1.5 us)
// hides. Two __syncthreads per tile (per 32 steps x 4 states x 4 lanes of work per thread).
// The previous design (16 lanes x 1 state, per-lane global B/C reads consumed right after issue,
// a shuffle transpose-reduce per step) measured 1.32 ms here: ~13 instructions per element plus
// two exposed global latencies per 16 steps, with no prefetch.
//
// Backward, N <= 64 (selective_scan_bwd_tile_kernel). A block owns RPB = threads / LPC channels
// of one (batch, segment, part) work item of the C API; a channel is owned by LPC lanes of one
// warp, lane l holding the NS states n = l + k*LPC in registers, as in the forward. Per chunk of
// LRNN_SELECTIVE_SCAN_CHUNK = 64 steps, last chunk first:
//  * staging: each lane loads its 64/LPC consecutive steps of u, delta (dt_A, z) and grad_y as
//    vectors and writes one float4 slot per (channel, step): (dtA, dt*u, gyo = gy*silu(z), -);
//    softplus and the gate are evaluated once per (channel, step). The group's B and C rows of the
//    chunk (N x 64) go to shared memory as fp32 once, shared by the block's channels.
//  * pass 1 walks the chunk forward from the saved chunk state and keeps only the state at each
//    V = 8-step tile start (shared memory, NS floats per lane per tile); with z it also forms y
//    (the per-lane partials of C*h added in lane order), which dz needs.
//  * then, tile by tile backwards, pass 2 recomputes the tile's V x NS states and decay factors
//    a = exp2(dtA * A*log2e) into registers (2 MUFU per (b,d,t,n) in all, as mamba), and the
//    adjoint lam = gyo*C + a[t+1]*lam[t+1] walks them back: dA += lam*a*h[t-1]*dtA in registers;
//    the per-step sums over a channel's states (sum lam*B for du/ddelta, sum lam*a*h*A for the dtA
//    gradient) go through per-lane partial rows, added by the channel's lanes in runs of 4 rows
//    (LDS.128) and a butterfly over the runs; dB = lam*dt*u and dC = gyo*h of the tile go to a
//    padded per-channel scratch (float4 per 4 steps; channel rows 4 floats apart so the two
//    channels of a quarter warp hit other banks) and are summed over the block's channels: one
//    item (array, state, 4-step run) per thread pair at N = 16, each thread adding 8 channels with
//    LDS.128 and a shuffle adding the two halves, one float4 store per item (both sums in a fixed
//    order: deterministic).
//    At N <= 32 (8 lanes per channel, V = 8; session 5) both reductions start in registers: the
//    per-step state sums of 4 steps (2 sums x 4 steps = 8 values) are reduce-scattered over the
//    channel's 8 lanes by shuffles (3 stages, 7 SHFL; lane l ends with sum l >> 2 of step l & 3 and
//    writes it into the step slot), and dB/dC of 4 steps (8 values) over the warp's 4 channels (2
//    stages, 6 SHFL) before one STS.64 per lane into a per-warp scratch, summed over the block's 4
//    warps by (array, state, step pair) items: 4x fewer scratch stores and loads (fixed orders:
//    still deterministic). H200, bare backward op, (8, 1536, 2048, 16), tile kernel device time
//    f32 / bf16: 1.106 / 1.057 ms before, 1.094 / 1.040 ms with both (1.074-1.075 / 1.046 with one
//    of them: within ~2%, the kernel is not bound by shared-memory traffic alone).
//  * after the chunk's tiles, each lane turns its 64/LPC steps' sums into du, ddelta (dz, ddt_A)
//    and stores them as vectors (inputs re-read from L1/L2).
// Configurations (NS, LPC, V, threads, blocks/SM) by N: (2,4,8,128,2) N<=8, (2,8,8,128,3) N<=16,
// (4,8,8,128,2) N<=32, (4,16,8,256,1) N<=64; shared memory (variable B/C) 68.8 / 55.8 / 87.3 /
// 158.3 KiB per block (unpadded, XOR-swizzled scratch: see BwdCfg); registers from nvcc -Xptxas -v
// (f32; general / B and C both variable, session 4): 251 / 229, 168 (48 B spill stores) / 168
// (20 B, outside the tile loops), 255 (40 B) / 255, 255 (44 B) / 253.
// Cost model, (8, 1536, 2048, 16) f32, config (2,8,8,128,3), per (b,d,t,n) element (402.7M):
// issue slots ~27: pass 1 ~4.75 (FMUL, MUFU ex2, FMUL, FFMA, 1/2 LDS.128 slot, 1/4 LDS.128 B),
// pass 2 ~4.75, adjoint ~10 (9 FP32 + B/C LDS.128 1/2 + dB/dC STS.128 1/2), channel sums of dB/dC
// 2.5 (LDS.128 1/4 + FADD 1, twice), state sums ~2, staging and output ~2.5 per element
// (per (b,d,t) work / N) -> 402.7M x 27 / 3.35e13 = 0.33 ms. MUFU: 2 ex2 per element plus softplus
// and sigmoids per (b,d,t) ~ 2.3 -> 0.22 ms. Shared-memory wavefronts per 128 elements (one warp
// instruction on 4 steps): dB/dC scratch 8 written + 8 read, B/C rows 4, step slots 4, partial
// rows ~6 -> ~30 -> 402.7M / 128 x 30 / 132 SMs = 715K clk = 0.36 ms: issue and shared memory
// co-limit at ~0.35 ms, estimated 0.45-0.6 ms with imperfect overlap (target <= 1.02 ms f32,
// 0.87 ms bf16). Measured (ncu, 7b80a38): 1.72 ms, 55 issued instructions per element, L1 /
// shared-memory pipe 89% busy: the per-step partial rows were read with 4-way bank conflicts
// (LPC * pv = 0 mod 32; padded since), softplus cost ~40 instructions per (row, step) twice.
// DRAM (f32): u, delta, grad_y 302 MB, du, ddelta 201 MB, chunk states 26 MB, dB/dC
// partials 96 parts x 2 MB x 2 = 201 MB written here and read by the reduce kernel (+0.05 ms, a
// second pass) -> 0.22 ms, under the compute. Occupancy: 768 blocks of 4 warps, 3 per SM -> 1.94
// waves of 12 warps/SM. In flight per SM while a chunk is staged: 3 blocks x 16 channels x 64
// steps x 3 arrays x 4 B = 37 KB (f32), and other blocks' compute covers the exposed latency:
// a block's chunk is 16 x 16 x 64 elements x 27 / 32 lanes = 13.8K warp instructions, >= 3.5K
// cycles at 4 issues per cycle, against ~1.2K cycles of DRAM latency. (2, 1536, 16384, 16): 192 blocks for 132 SMs (<= 2 per SM): twice the elements and
// half the SMs' warp slots idle -> estimated 1.0-1.4 ms (target <= 2.1 ms).
// Old costs removed: per-lane global B/C loads consumed at once, every state stored into shared
// memory during the recompute and two loaded per step in the adjoint, a shuffle transpose-reduce
// per step, the dB/dC channel sum as 2 scalar LDS per element.
// Determinism: dA/dD/d(delta_bias) and time-invariant dB/dC are written per row, variable dB/dC
// per block into its own workspace slice; the reduce kernel adds the partials in a fixed order
// (the C API's two-phase contract). The price: parts x B x G x N x L floats per gradient (parts =
// ceil((D/G) / channels per block): 96 at D = 1536, N = 16). Above N = 32 these partials would
// be 96+ slices of a (B, G, N, L) tensor (gigabytes); there the block's channel sums of variable
// dB/dC are added with float atomics into dB/dC (one atomic per (b, g, n, t) per block, 16
// channels per block: D/16 per element, mamba: D), and only those two gradients are not bitwise
// reproducible (lrnn_selective_scan_cuda_atomic_bc).
// Backward, N > 64 (selective_scan_bwd_kernel): per channel, the chunk's states are recomputed
// into shared memory (64 x N floats) and the adjoint reads them back; one channel per block,
// atomics for variable dB/dC. The tiled kernel's B/C chunk rows and tile-start states do not fit
// at N = 128-256 with enough channels per block to amortize them.
// Time split (long sequences with few rows, e.g. (2, 1536, 16384, 16): 3072 rows give 192 blocks
// of the layouts above, 9% occupancy). When B*D * 2 <= kSplitRows (12288) and chunk_states exists,
// time is cut into segments of seg_len steps (a multiple of 128, >= 512, ~12288 / (B*D) of them in
// the backward, ~24576 / (B*D) in the forward: measured fastest of 6144 / 12288 / 24576 each);
// the transition of a segment is diagonal, exp(A_n * sum of its dtA), so:
//  * forward: (1) segments 0..S-2 run from a zero state without C / y (kLocal: ~5 instructions and
//    one MUFU per element) and leave their end state and decay in chunk_states slots end/64 and
//    end/64 - 1; (2) a combine kernel, per (b, d, n) in segment order, turns them into the exact
//    state entering each segment (slot start/64); (3) the exact pass runs every segment from it,
//    rewriting all slots. Extra cost: (S-1)/S of the elements at ~1/2 of the per-element work.
//  * backward: (1) segments 1..S-1 run the adjoint alone (lam = a * (lam + gyo * C)) from zero at
//    their end back to their start, with their decay, into seg_state; (2) a combine kernel from the
//    last segment back gives the adjoint entering each segment at its end (grad_h_last for the
//    last); (3) the tile kernel runs every (segment, work item) from it. The per-row partials (dA,
//    dD, d(delta_bias), time-invariant dB / dC) get one copy per segment, summed segment-major by
//    the reduce kernel: still a fixed order. Variable dB / dC slices are disjoint in time.
// Measured on the H200 (bench_selective_scan.py: variable B/C, softplus, bias, D, no z; ms f32 / bf16),
// before -> with the split, the bank-conflict-free partial rows and the short softplus (bcab6a6):
//   (8, 1536, 2048, 16)   fwd 0.314 / 0.313 -> 0.326 / 0.298   bwd 2.03 / 1.83 -> 1.85 / 1.69
//   (2, 1536, 16384, 16)  fwd 1.083 / 1.145 -> 0.953 / 0.919   bwd 5.71 / 4.95 -> 3.59 / 3.72
//   (8, 1536, 2048, 64)   fwd 1.18 / 1.24 -> 1.07 / 1.10       bwd 5.47 / 5.59 -> 5.45 / 5.33
//   (2, 1536, 16384, 64)  fwd 3.92 / 4.46 -> 3.10 / 3.45       bwd 14.3 / 14.0 -> 11.7 / 11.9
// Measured and dropped: the N <= 16 backward with 4 lanes x 4 states and 4-step tiles (2.34 / 2.47
// and 4.68 / 4.97 ms bwd: 2 blocks per SM at 238 registers and twice the barriers per step).
// Then (a471742, measured at the end of session 3): the backward tile kernel specialized for B and C
// both variable, dB/dC channel sums in items of 2 steps: fwd 0.286 / 0.264, bwd 1.545 / 1.652
// (short N = 16); fwd 0.885 / 0.843, bwd 3.31 / 3.29 (long N = 16); N = 64 short fwd 1.059 / 1.157,
// bwd 5.08 / 5.05; long fwd 2.99 / 3.34, bwd 11.27 / 11.43.
// Session 4 (this code; H200 rounds of 07:57 and 08:44 UTC, same benchmark):
//  * forward: B/C tile staged as one run per thread (vector load, STS.128) instead of element-wise;
//    time split at 24576 rows x segments: short N = 16 0.279 / 0.288, long N = 16 0.798 / 0.825,
//    N = 64 short 0.836 / 0.847, long 2.51 / 2.75. Same-run A/B at N = 16 (round 2): element-wise
//    staging 0.306 / 0.322 vs runs 0.294 / 0.293. 4 blocks per SM (<= 128 registers) measured slower:
//    0.325 / 0.339.
//  * backward: the channel sums of dB/dC one item (state, 4-step run) per thread pair with LDS.128
//    and a shuffle, the per-step state sums in 4-row LDS.128 runs (round 1: 459M instead of ~700M
//    issued instructions, but shared-memory bound: ncu L1 91%, short_scoreboard 3.6 cycles per
//    issue, 4.4 load / 6.3 store wavefronts per shared instruction: 1.33 ms kernel); then the bank
//    conflicts removed (XOR swizzles of the dB/dC scratch, step slots and partial rows: load
//    wavefronts 158M -> 111M, store 97M -> 50M; kernel 1.33 -> 1.11 ms, short_scoreboard 1.4).
//    Bench (round 2): short 1.59 (1.37 in a second run of the same code) / 1.43 (1.38); long 3.13 /
//    2.98; N = 64 short 4.60 / 4.72, long 10.3 / 10.4. 4 blocks per SM (56 KiB of shared memory
//    each fit; 128 registers spill 150-390 bytes) measured slower: short 1.90 / 1.65, long 3.79.
//  * the benchmark's run-to-run spread on the backward is ~15% (1.59 vs 1.37 ms, identical code):
//    compare kernel durations (ncu) where it matters.
// Session 5 (H200 round 2, torch.profiler device times, same build): the backward's time outside the
// tile kernel at (8, 1536, 2048, 16) is the reduce kernel (0.058 ms, float4 partial sums now) and
// host time: the bare backward op costs 0.13-0.14 ms of host time (wall 1.20-1.26 ms = device 1.10-
// 1.15 + 0.10 idle), the autograd backward 0.44-0.49 ms (wall 1.36-1.42, 0.26 ms of it with the GPU
// idle): the same op called from autograd's CUDA worker thread shows 0.65 ms of self host time and
// 73 us per cudaLaunchKernel (torch.profiler), i.e. a slow (cold) engine thread, which mamba_ssm's
// autograd.Function pays as well. Forward kernel 0.224 / 0.228 ms (f32 / bf16; 8 lanes x 2 states:
// 0.272 / 0.260, slower). (2, 1536, 16384, 16) f32: backward tile 2.184 + local 0.397 + reduce 0.108
// + combine 0.004 ms; forward 0.752 + combine 0.005 ms.
#include <cuda_runtime.h>
#include <stdint.h>

#include "lrnn/selective_scan.h"
#include "selective_scan_launch.h"

namespace {

// Backward, phase 2: out[i] = sum_k part[k][i], k ascending (as lrnn_selective_scan_reduce_cpu).
// The per-row partials hold one copy per time segment: batch * segments of them. The variable
// dB / dC sections (parts x B x G x N x L: 201 MB read at (8, 1536, 2048, 16)) go 4 outputs per
// thread as float4 when aligned (vec4 bit 0: B, bit 1: C): 4x the bytes per load in flight.
__global__ void selective_scan_reduce_kernel(const lrnn_selective_scan_bwd_params q, int64_t nA, int64_t nD,
                                             int64_t nB, int64_t nC, int64_t nseg, int vec4) {
  const lrnn_selective_scan_params& p = q.fwd;
  const int64_t wB = (vec4 & 1) ? nB / 4 : nB, wC = (vec4 & 2) ? nC / 4 : nC;
  const int64_t total = nA + 2 * nD + wB + wC;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t j = i, count, stride;
    const float* src;
    float* dst;
    bool v4 = false;
    const int64_t rows = p.batch * nseg;
    if (j < nA) { src = (const float*)q.dA_part; dst = (float*)q.dA; count = rows; stride = nA; }
    else if ((j -= nA) < nD) { src = (const float*)q.dD_part; dst = (float*)q.dD; count = rows; stride = nD; }
    else if ((j -= nD) < nD) { src = (const float*)q.ddelta_bias_part; dst = (float*)q.ddelta_bias; count = rows; stride = nD; }
    else if ((j -= nD) < wB) { src = (const float*)q.dB_part; dst = (float*)q.dB; count = p.B_variable ? q.parts : rows; stride = nB; v4 = vec4 & 1; }
    else { j -= wB; src = (const float*)q.dC_part; dst = (float*)q.dC; count = p.C_variable ? q.parts : rows; stride = nC; v4 = vec4 & 2; }
    if (v4) {
      const float4* s4 = reinterpret_cast<const float4*>(src) + j;
      float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 4
      for (int64_t k = 0; k < count; ++k) {
        const float4 v = s4[k * (stride / 4)];
        acc.x += v.x; acc.y += v.y; acc.z += v.z; acc.w += v.w;
      }
      reinterpret_cast<float4*>(dst)[j] = acc;
      continue;
    }
    float acc = 0.f;
#pragma unroll 4
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

extern "C" int64_t lrnn_selective_scan_cuda_bwd_segments(const lrnn_selective_scan_params* p) {
  return p ? lrnn_ss::bwd_segments(p) : 1;
}

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
  const int64_t nseg = lrnn_ss::bwd_segments(p);
  if ((q->segments > 1 ? q->segments : 1) != nseg || (nseg > 1 && !q->seg_state)) return LRNN_ERR_ARGUMENT;
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
  auto a16 = [](const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; };
  const int vec4 = (p->B_variable && !atomic && nB % 4 == 0 && a16(q->dB_part) && a16(q->dB) ? 1 : 0) |
                   (p->C_variable && !atomic && nC % 4 == 0 && a16(q->dC_part) && a16(q->dC) ? 2 : 0);
  const int64_t total = nA + 2 * nD + ((vec4 & 1) ? nB / 4 : nB) + ((vec4 & 2) ? nC / 4 : nC);
  const int64_t blocks = (total + 255) / 256 < 4096 ? (total + 255) / 256 : 4096;
  selective_scan_reduce_kernel<<<static_cast<unsigned>(blocks), 256, 0, s>>>(*q, nA, nD, nB, nC, nseg, vec4);
  return last_error();
}
