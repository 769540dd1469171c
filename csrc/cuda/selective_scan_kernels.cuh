// selective_scan_kernels.cuh: the CUDA selective-scan kernels (design notes in selective_scan.cu)
// and their per-dtype launchers, included by one translation unit per dtype
// (selective_scan_{f32,bf16,f16}.cu) so the instantiations compile in parallel.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "dtype_convert.cuh"
#include "lrnn/selective_scan.h"
#include "selective_scan_launch.h"

namespace lrnn_ss {
namespace {  // internal to each dtype translation unit

constexpr int kChunk = LRNN_SELECTIVE_SCAN_CHUNK;
constexpr float kLog2e = 1.4426950408889634f;

using lrnn_cuda::from_f;
using lrnn_cuda::to_f;

// softplus(x) = log(1 + e^x), x for x > 20 (as torch and mamba), with 2 MUFU and ~10 other
// instructions instead of log1pf's ~40 (evaluated once per (row, step): 1/N of the per-element
// work, but measurable at N = 16): e = e^x; for e < 1/32 the series e - e^2/2 + e^3/3 - e^4/4
// (relative error < e^4/5 < 2e-7), else lg2(1 + e) * ln 2 (absolute error < 4e-7 on [1, 2],
// relative < 1.3e-5 since the result is >= 0.03 there).
__device__ __forceinline__ float softplus(float x) {
  const float e = __expf(x);
  const float series = e * fmaf(e, fmaf(e, fmaf(e, -0.25f, 1.f / 3.f), -0.5f), 1.f);
  const float lg = __logf(1.f + e);
  return x > 20.f ? x : (e < 0.03125f ? series : lg);
}
__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + __expf(-x)); }

// 4 consecutive time steps t..t+3 of a variable B/C row (stride st); zero past `len` (len = 0
// for padding states n >= N, so they contribute nothing). `vec`: 4*sizeof(T)-aligned, st == 1.
template <typename T>
__device__ __forceinline__ float4 load4(const T* base, int64_t st, int64_t t, int64_t len, bool vec) {
  if (vec && t + 3 < len) {
    if constexpr (sizeof(T) == 4) {
      return *reinterpret_cast<const float4*>(base + t);
    } else {
      const uint2 raw = *reinterpret_cast<const uint2*>(base + t);
      const T* e = reinterpret_cast<const T*>(&raw);
      return make_float4(to_f(e[0]), to_f(e[1]), to_f(e[2]), to_f(e[3]));
    }
  }
  float f[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) f[i] = (t + i < len) ? to_f(base[(t + i) * st]) : 0.f;
  return make_float4(f[0], f[1], f[2], f[3]);
}

__device__ __forceinline__ float comp(const float4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

// v[j] (j < LPC) are this lane's partial sums for step j of a tile; afterwards lane i of the
// LPC-lane group holds the group-wide sum for step i. Butterfly reduce-scatter: at the stage of
// width S a lane keeps the half of its first 2S values selected by its lane bit S and adds the
// partner's copy of that half. Stages are template-recursive so every index is a compile-time
// constant and v stays in registers.
template <int S, int LPC>
struct TransposeReduce {
  static __device__ __forceinline__ void run(float (&v)[LPC], int lane) {
    const bool upper = lane & S;
#pragma unroll
    for (int j = 0; j < S; ++j) {
      const float send = upper ? v[j] : v[j + S];
      const float keep = upper ? v[j + S] : v[j];
      v[j] = keep + __shfl_xor_sync(0xffffffffu, send, S, LPC);
    }
    TransposeReduce<S / 2, LPC>::run(v, lane);
  }
};
template <int LPC>
struct TransposeReduce<0, LPC> {
  static __device__ __forceinline__ void run(float (&)[LPC], int) {}
};

template <int LPC>
__device__ __forceinline__ float transpose_reduce(float (&v)[LPC], int lane) {
  TransposeReduce<LPC / 2, LPC>::run(v, lane);
  return v[0];
}

// Sum over the LPC lanes of a group, in a fixed butterfly order (deterministic).
template <int LPC>
__device__ __forceinline__ float group_sum(float x) {
#pragma unroll
  for (int s = LPC / 2; s >= 1; s >>= 1) x += __shfl_xor_sync(0xffffffffu, x, s, LPC);
  return x;
}

// One (b, d) row of a (batch, channel, time) sequence tensor: base pointer and time stride.
template <typename T>
struct Row {
  T* ptr;
  int64_t st;
  __device__ __forceinline__ Row(const void* base, const int64_t (&s)[3], int64_t b, int64_t d)
      : ptr(const_cast<T*>(static_cast<const T*>(base)) + (base ? b * s[0] + d * s[1] : 0)), st(s[2]) {}
  __device__ __forceinline__ Row(const T* base, int64_t s) : ptr(const_cast<T*>(base)), st(s) {}
  __device__ __forceinline__ float load(int64_t t) const { return to_f(ptr[t * st]); }
  __device__ __forceinline__ void store(int64_t t, float v) const { ptr[t * st] = from_f<T>(v); }
};

// Per-row constants shared by both kernels.
template <int NS, int LPC>
struct RowConsts {
  float A2[NS], Bti[NS], Cti[NS];
  float Dd, bias;
  __device__ void load(const lrnn_selective_scan_params& p, int64_t d, int lane) {
#pragma unroll
    for (int k = 0; k < NS; ++k) {
      const int n = lane + k * LPC;
      const bool nv = n < p.dstate;
      A2[k] = nv ? static_cast<const float*>(p.A)[d * p.A_stride[0] + n * p.A_stride[1]] * kLog2e : 0.f;
      Bti[k] = (nv && !p.B_variable) ? static_cast<const float*>(p.Bm)[d * p.B_stride[0] + n * p.B_stride[1]] : 0.f;
      Cti[k] = (nv && !p.C_variable) ? static_cast<const float*>(p.Cm)[d * p.C_stride[0] + n * p.C_stride[1]] : 0.f;
    }
    Dd = p.D ? static_cast<const float*>(p.D)[d * p.D_stride] : 0.f;
    bias = p.delta_bias ? static_cast<const float*>(p.delta_bias)[d * p.delta_bias_stride] : 0.f;
  }
};

// Pointers to the variable B/C rows of this lane's states, and their valid lengths.
template <typename T, int NS, int LPC>
struct BCRows {
  const T* B[NS];
  const T* C[NS];
  int64_t lenB[NS], lenC[NS];
  __device__ void init(const lrnn_selective_scan_params& p, int64_t b, int64_t g, int lane) {
#pragma unroll
    for (int k = 0; k < NS; ++k) {
      const int n = lane + k * LPC;
      const bool nv = n < p.dstate;
      const int64_t nn = nv ? n : 0;
      B[k] = static_cast<const T*>(p.Bm) + (p.B_variable ? b * p.B_stride[0] + g * p.B_stride[1] + nn * p.B_stride[2] : 0);
      C[k] = static_cast<const T*>(p.Cm) + (p.C_variable ? b * p.C_stride[0] + g * p.C_stride[1] + nn * p.C_stride[2] : 0);
      lenB[k] = (nv && p.B_variable) ? p.length : 0;
      lenC[k] = (nv && p.C_variable) ? p.length : 0;
    }
  }
};

// ------------------------------------------------------------------------------------------
// Forward (design and cost model in selective_scan.cu). A block owns RPB = THREADS / LPC rows
// (channels) of one (batch, B/C group); a row is owned by LPC lanes of one warp, lane `l`
// holding the NS states n = l + k * LPC in registers. Time is walked in tiles of V steps.
template <int NS_, int LPC_, int V_, int THREADS_, int MINB_>
struct FwdCfg {
  static constexpr int ns = NS_, lpc = LPC_, v = V_, threads = THREADS_;
  static constexpr int np = NS_ * LPC_;            // states per row, padded to a power of two
  static constexpr int m = V_ / LPC_;              // steps per lane: loads of u/delta/z and stores of y
  static constexpr int rpb = THREADS_ / LPC_;      // rows per block
  static constexpr int vp = V_ + 4;                // padded B/C tile row: lanes read rows LPC apart
  static constexpr int srow = V_ + 2;              // padded per-row step slot: groups hit other banks
  static constexpr int e = np * V_ / THREADS_;     // B (and C) tile values staged per thread
  // resident blocks per SM asked of ptxas (bounds the registers: 3 x 128 threads -> <= 168)
  static constexpr int min_blocks = MINB_;
  static_assert(V_ % LPC_ == 0 && kChunk % V_ == 0 && (np * V_) % THREADS_ == 0 && V_ % 4 == 0 && V_ % e == 0 &&
                    (2 * rpb * srow) % 4 == 0,
                "tile shape (whole B/C runs per thread; 16-byte aligned B/C tile rows)");
  // Pad after each row's LPC partial rows: at LPC = 4 the y sums read (LDS.128) 2 rows x 4 lanes
  // per quarter warp, which fall on the same banks unless the second row is shifted by 4 mod 8.
  static constexpr int gpad = LPC_ == 4 ? 4 : 0;
  __host__ __device__ static constexpr int prow(int r) { return r * vp + (r / LPC_) * gpad; }  // offset of partial row r
  static size_t smem_bytes() { return sizeof(float) * (2 * size_t(rpb) * srow + 2 * size_t(np) * vp + size_t(prow(THREADS_))); }
};

template <int Bytes> struct VecOf;
template <> struct VecOf<2> { using type = unsigned short; };
template <> struct VecOf<4> { using type = unsigned int; };
template <> struct VecOf<8> { using type = uint2; };
template <> struct VecOf<16> { using type = uint4; };

// M consecutive time steps t..t+M-1 of a row, kept as raw T (a bf16/f16 conversion placed right
// after the load would make the load's latency visible: the values are prefetched a tile ahead).
// `vec`: the row is time-contiguous and M-element runs are aligned, so whole runs load as
// vectors of up to 16 bytes; otherwise (strided layouts, the tail past L) element by element.
template <typename T, int M>
struct Run {
  static constexpr int kBytes = M * int(sizeof(T)) < 16 ? M * int(sizeof(T)) : 16;
  static constexpr int kPer = kBytes / int(sizeof(T));
  using V = typename VecOf<kBytes>::type;
  V raw[M / kPer];
  __device__ __forceinline__ void load(const Row<T>& r, int64_t t, int64_t L, bool vec) {
    if (vec && t + M <= L) {
#pragma unroll
      for (int c = 0; c < M / kPer; ++c) raw[c] = *reinterpret_cast<const V*>(r.ptr + t + c * kPer);
    } else {
      T* e = reinterpret_cast<T*>(raw);
#pragma unroll
      for (int i = 0; i < M; ++i) e[i] = (t + i < L) ? r.ptr[(t + i) * r.st] : from_f<T>(0.f);
    }
  }
  __device__ __forceinline__ float get(int i) const { return to_f(reinterpret_cast<const T*>(raw)[i]); }
};

template <typename T, int M>
__device__ __forceinline__ void store_run(const Row<T>& r, int64_t t, int64_t L, bool vec, const float (&v)[M]) {
  using R = Run<T, M>;
  if (vec && t + M <= L) {
    R out;
    T* e = reinterpret_cast<T*>(out.raw);
#pragma unroll
    for (int i = 0; i < M; ++i) e[i] = from_f<T>(v[i]);
#pragma unroll
    for (int c = 0; c < M / R::kPer; ++c) *reinterpret_cast<typename R::V*>(r.ptr + t + c * R::kPer) = out.raw[c];
  } else {
#pragma unroll
    for (int i = 0; i < M; ++i)
      if (t + i < L) r.store(t + i, v[i]);
  }
}

struct FwdVec {
  bool u, delta, dt_A, z, y, B, C;
};

// E staged values of a run into shared memory as fp32 (dst 16-byte aligned when E % 4 == 0).
template <int E, typename R>
__device__ __forceinline__ void put_run(float* dst, const R& r) {
  if constexpr (E % 4 == 0) {
#pragma unroll
    for (int i = 0; i < E; i += 4)
      *reinterpret_cast<float4*>(dst + i) = make_float4(r.get(i), r.get(i + 1), r.get(i + 2), r.get(i + 3));
  } else {
#pragma unroll
    for (int i = 0; i < E; ++i) dst[i] = r.get(i);
  }
}

// Time split of the forward (see selective_scan.cu): segments of seg_len steps (a multiple of
// 2 * kChunk), nseg of them; nseg = 1 (seg_len >= L) is the unsplit scan.
struct FwdSplit {
  int64_t seg_len;
  int64_t nseg;
};

// kLocal: the first pass of the split, run for segments 0..nseg-2: the segment from a zero state,
// leaving its end state in chunk slot end/kChunk and its decay exp(A * sum dtA) in slot
// end/kChunk - 1 (both rewritten later by the exact pass). Without kLocal: the exact pass of
// segment blockIdx.x / (blocks per segment), from h0 or from the combined state in its first slot.
template <typename T, typename Cfg, bool kVar, bool kLocal>
__global__ void __launch_bounds__(Cfg::threads, Cfg::min_blocks)
    selective_scan_fwd_kernel(const lrnn_selective_scan_params p, FwdVec vec, FwdSplit sp) {
  constexpr int NS = Cfg::ns, LPC = Cfg::lpc, V = Cfg::v, M = Cfg::m, RPB = Cfg::rpb, VP = Cfg::vp, NP = Cfg::np,
                E = Cfg::e, SROW = Cfg::srow;
  extern __shared__ __align__(16) unsigned char smem[];
  float2* s_step = reinterpret_cast<float2*>(smem);                    // [RPB][SROW]: (dtA, dt*u) per step
  float* tB = reinterpret_cast<float*>(smem) + 2 * RPB * SROW;          // [NP][VP]: B tile, fp32
  float* tC = tB + NP * VP;                                             // [NP][VP]
  float* s_part = tC + NP * VP;                                         // [TH][VP] + pads: per-lane partial y
  const int grp = threadIdx.x / LPC, lane = threadIdx.x % LPC;
  const bool varB = kVar || p.B_variable, varC = kVar || p.C_variable;
  const int64_t S = (p.B_variable || p.C_variable) ? p.groups : 1, seg = p.dim / S;
  const int64_t bps = (seg + RPB - 1) / RPB, per_seg = p.batch * S * bps;
  const int64_t sg = blockIdx.x / per_seg, blk = blockIdx.x % per_seg;
  const int64_t b = blk / (S * bps), s = (blk / bps) % S, local = (blk % bps) * RPB + grp;
  const bool valid = local < seg;  // idle rows still take part in the barriers and shuffles
  const int64_t d = s * seg + (valid ? local : 0);
  const int64_t L = p.length, N = p.dstate;
  const int64_t t_begin = sg * sp.seg_len, t_end = L < t_begin + sp.seg_len ? L : t_begin + sp.seg_len;
  RowConsts<NS, LPC> rc;
  rc.load(p, d, lane);
  const T* Bsrc = static_cast<const T*>(p.Bm) + (p.B_variable ? b * p.B_stride[0] + s * p.B_stride[1] : 0);
  const T* Csrc = static_cast<const T*>(p.Cm) + (p.C_variable ? b * p.C_stride[0] + s * p.C_stride[1] : 0);
  float* const cs = static_cast<float*>(p.chunk_states);
  const int64_t cs_row = b * p.chunk_states_stride[0] + d * p.chunk_states_stride[1];
  float h[NS];
#pragma unroll
  for (int k = 0; k < NS; ++k) {
    const int n = lane + k * LPC;
    if (kLocal)
      h[k] = 0.f;
    else if (sg == 0)
      h[k] = (p.h0 && n < N) ? static_cast<const float*>(p.h0)[b * p.h0_stride[0] + d * p.h0_stride[1] + n * p.h0_stride[2]] : 0.f;
    else  // a later segment of the exact pass: the combined entering state
      h[k] = n < N ? cs[cs_row + (t_begin / kChunk) * p.chunk_states_stride[2] + n * p.chunk_states_stride[3]] : 0.f;
  }
  float dsum = 0.f;  // first pass: sum of dtA over the segment (every lane of a row sees every step)
  auto save_state = [&](float* dst, const int64_t (&st)[3], int64_t off) {
    if (!valid) return;
#pragma unroll
    for (int k = 0; k < NS; ++k) {
      const int n = lane + k * LPC;
      if (n < N) dst[b * st[0] + d * st[1] + n * st[2] + off] = h[k];
    }
  };
  const int64_t cs_st[3] = {p.chunk_states_stride[0], p.chunk_states_stride[1], p.chunk_states_stride[3]};
  const Row<T> ur(p.u, p.u_stride, b, d), dr(p.delta, p.delta_stride, b, d), ar(p.dt_A, p.dt_A_stride, b, d),
      zr(p.z, p.z_stride, b, d), yr(p.y, p.y_stride, b, d);

  // registers staged one tile ahead: this lane's M steps of u/delta/dt_A/z, and this thread's
  // share of the block's B/C tile: E consecutive steps bj0.. of state row bn (one vector load when
  // aligned; rows bn >= N read as zeros: length 0)
  Run<T, M> su, sd, sa, sz;
  const int bn = threadIdx.x / (V / E), bj0 = (threadIdx.x % (V / E)) * E;
  const int64_t blen = bn < N ? L : 0;
  const Row<T> brow(Bsrc + (varB && bn < N ? bn * p.B_stride[2] : 0), p.B_stride[3]),
      crow(Csrc + (varC && bn < N ? bn * p.C_stride[2] : 0), p.C_stride[3]);
  Run<T, E> sB, sC;
  auto stage = [&](int64_t t0) {
    const int64_t t = t0 + lane * M;
    su.load(ur, t, L, vec.u);
    sd.load(dr, t, L, vec.delta);
    if (p.dt_A) sa.load(ar, t, L, vec.dt_A);
    if (p.z) sz.load(zr, t, L, vec.z);
    if (varB) sB.load(brow, t0 + bj0, blen, vec.B);
    if (varC && !kLocal) sC.load(crow, t0 + bj0, blen, vec.C);
  };
  if (t_begin < t_end) stage(t_begin);
  for (int64_t t0 = t_begin; t0 < t_end; t0 += V) {
    if (!kLocal && p.chunk_states && t0 % kChunk == 0) save_state(static_cast<float*>(p.chunk_states), cs_st, (t0 / kChunk) * p.chunk_states_stride[2]);
    float u[M], zv[M], dta[M], dtu[M];
#pragma unroll
    for (int i = 0; i < M; ++i) {
      const bool in = t0 + lane * M + i < L;  // past L: exp(0) = 1 and no input, an exact no-op step
      u[i] = su.get(i);
      float dt = sd.get(i) + rc.bias;
      if (p.delta_softplus) dt = softplus(dt);
      dta[i] = in ? (p.dt_A ? sa.get(i) : dt) : 0.f;
      dtu[i] = in ? dt * u[i] : 0.f;
      zv[i] = p.z ? sz.get(i) : 0.f;
    }
    __syncthreads();  // every thread is done reading the previous tile
#pragma unroll
    for (int i = 0; i < M; ++i) s_step[grp * SROW + lane * M + i] = make_float2(dta[i], dtu[i]);
    if (varB) put_run<E>(tB + bn * VP + bj0, sB);
    if (varC && !kLocal) put_run<E>(tC + bn * VP + bj0, sC);
    if (t0 + V < t_end) stage(t0 + V);  // next tile's loads in flight during this tile's compute
    __syncthreads();
    // 4 steps per iteration, not unrolled: unrolled over the tile, ptxas hoists every exp2 and
    // needs ~250 registers; the per-step partial sums over this lane's states go to its own
    // scratch row instead of registers.
    float* my_part = s_part + Cfg::prow(threadIdx.x);
#pragma unroll 1
    for (int j4 = 0; j4 < V; j4 += 4) {
      const float4 s01 = *reinterpret_cast<const float4*>(s_step + grp * SROW + j4);
      const float4 s23 = *reinterpret_cast<const float4*>(s_step + grp * SROW + j4 + 2);
      const float sx[4] = {s01.x, s01.z, s23.x, s23.z}, sy[4] = {s01.y, s01.w, s23.y, s23.w};
      if constexpr (kLocal) {
        dsum += (sx[0] + sx[1]) + (sx[2] + sx[3]);
#pragma unroll
        for (int k = 0; k < NS; ++k) {
          const int n = lane + k * LPC;
          const float4 Bv = varB ? *reinterpret_cast<const float4*>(tB + n * VP + j4) : make_float4(rc.Bti[k], rc.Bti[k], rc.Bti[k], rc.Bti[k]);
#pragma unroll
          for (int jj = 0; jj < 4; ++jj) h[k] = fmaf(exp2f(sx[jj] * rc.A2[k]), h[k], sy[jj] * comp(Bv, jj));
        }
        continue;
      }
      float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int k = 0; k < NS; ++k) {
        const int n = lane + k * LPC;
        const float4 Bv = varB ? *reinterpret_cast<const float4*>(tB + n * VP + j4) : make_float4(rc.Bti[k], rc.Bti[k], rc.Bti[k], rc.Bti[k]);
        const float4 Cv = varC ? *reinterpret_cast<const float4*>(tC + n * VP + j4) : make_float4(rc.Cti[k], rc.Cti[k], rc.Cti[k], rc.Cti[k]);
#pragma unroll
        for (int jj = 0; jj < 4; ++jj) {
          h[k] = fmaf(exp2f(sx[jj] * rc.A2[k]), h[k], sy[jj] * comp(Bv, jj));
          acc[jj] = fmaf(comp(Cv, jj), h[k], acc[jj]);
        }
      }
      *reinterpret_cast<float4*>(my_part + j4) = make_float4(acc[0], acc[1], acc[2], acc[3]);
    }
    if constexpr (kLocal) continue;
    __syncwarp();  // the group's partial sums are in its lanes' scratch rows (same warp)
    if (valid) {
      // y of this lane's M steps: the sum of the group's LPC partials, in lane order (deterministic)
      float y[M];
#pragma unroll
      for (int i = 0; i < M; ++i) y[i] = 0.f;
      const float* grp_part = s_part + Cfg::prow(grp * LPC) + lane * M;
#pragma unroll
      for (int q = 0; q < LPC; ++q) {
#pragma unroll
        for (int i = 0; i < M; ++i) y[i] += grp_part[q * VP + i];
      }
#pragma unroll
      for (int i = 0; i < M; ++i) {
        y[i] = fmaf(rc.Dd, u[i], y[i]);
        if (p.z) y[i] *= zv[i] * sigmoid(zv[i]);
      }
      store_run<T, M>(yr, t0 + lane * M, L, vec.y, y);
    }
  }
  if constexpr (kLocal) {
    if (!valid) return;
    const int64_t slot = cs_row + (t_end / kChunk) * p.chunk_states_stride[2];
#pragma unroll
    for (int k = 0; k < NS; ++k) {
      const int n = lane + k * LPC;
      if (n >= N) continue;
      cs[slot + n * p.chunk_states_stride[3]] = h[k];
      cs[slot - p.chunk_states_stride[2] + n * p.chunk_states_stride[3]] = exp2f(dsum * rc.A2[k]);
    }
    return;
  }
  if (sg != sp.nseg - 1) return;
  if (p.chunk_states && L % kChunk == 0) save_state(cs, cs_st, (L / kChunk) * p.chunk_states_stride[2]);
  save_state(static_cast<float*>(p.h_last), p.h_last_stride, 0);
}

// Forward time split, between the two passes: per (b, d, n), in segment order, the state entering
// segment k is h_loc[k-1] + decay[k-1] * (state entering k-1), written over h_loc in slot
// k * seg_len / kChunk, where the exact pass of segment k starts.
__global__ void selective_scan_fwd_combine_kernel(const lrnn_selective_scan_params p, FwdSplit sp) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, N = p.dstate;
  if (i >= p.batch * p.dim * N) return;
  const int64_t n = i % N, d = (i / N) % p.dim, b = i / (N * p.dim);
  float* cs = static_cast<float*>(p.chunk_states) + b * p.chunk_states_stride[0] + d * p.chunk_states_stride[1] +
              n * p.chunk_states_stride[3];
  float h = p.h0 ? static_cast<const float*>(p.h0)[b * p.h0_stride[0] + d * p.h0_stride[1] + n * p.h0_stride[2]] : 0.f;
  const int64_t per = sp.seg_len / kChunk, st = p.chunk_states_stride[2];
  for (int64_t k = 1; k < sp.nseg; ++k) {
    float* slot = cs + k * per * st;
    h = fmaf(slot[-st], h, slot[0]);
    slot[0] = h;
  }
}

// ------------------------------------------------------------------------------------------
// Backward, phase 1, N > 64 (the tiled kernel below covers N <= 64): one block per work item
// (b, segment, part) of the C API; GPB groups of LPC lanes, group i owning channel d_lo + i of
// the item. The chunk's states are recomputed into shared memory (64 x N floats per channel,
// which is what limits the tiled kernel's B/C chunk and tile-start states at large N).
template <int LPC, int NS, int GPB>
struct BwdSmem {
  static constexpr int NP = LPC * NS;  // states per row, padded
  static constexpr int NP1 = NP + 1;   // padded row of the reduction buffers (no bank conflicts)
  static constexpr size_t hs = size_t(GPB) * kChunk * NP;
  static constexpr size_t step = size_t(GPB) * LPC * 4;
  static constexpr size_t yo = size_t(GPB) * kChunk;
  static constexpr size_t red = size_t(GPB) * LPC * NP1;
  static size_t bytes(bool variable) { return sizeof(float) * (hs + step + yo + (variable ? 2 * red : 0)); }
};

template <typename T, int LPC, int NS, int GPB>
__global__ void __launch_bounds__(GPB * LPC) selective_scan_bwd_kernel(const lrnn_selective_scan_bwd_params q,
                                                                       bool vecB, bool vecC, bool atomic_bc) {
  using SM = BwdSmem<LPC, NS, GPB>;
  constexpr int NP = SM::NP, NP1 = SM::NP1;
  const lrnn_selective_scan_params& p = q.fwd;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* smem = reinterpret_cast<float*>(smem_raw);
  const int grp = threadIdx.x / LPC, lane = threadIdx.x % LPC;
  float* hs = smem + size_t(grp) * kChunk * NP;                               // [K][NP]
  float4* s_step = reinterpret_cast<float4*>(smem + SM::hs) + grp * LPC;      // [LPC]
  float* s_yo = smem + SM::hs + SM::step + size_t(grp) * kChunk;             // [K]
  float* redB = smem + SM::hs + SM::step + SM::yo;                            // [GPB][LPC][NP1]
  float* redC = redB + SM::red;

  const bool variable = p.B_variable || p.C_variable;
  const int64_t S = variable ? p.groups : 1, parts = q.parts, L = p.length, N = p.dstate;
  const int64_t item = blockIdx.x;
  const int64_t b = item / (S * parts), s = (item / parts) % S, part = item % parts;
  const int64_t seg_len = p.dim / S;
  const int64_t d_lo = s * seg_len + part * seg_len / parts, d_hi = s * seg_len + (part + 1) * seg_len / parts;
  int64_t d = d_lo + grp;
  const bool valid = d < d_hi;
  if (!valid) d = d_lo;
  const int64_t g = variable ? s : 0;
  const int64_t row = b * p.dim + d;

  RowConsts<NS, LPC> rc;
  rc.load(p, d, lane);
  BCRows<T, NS, LPC> bc;
  bc.init(p, b, g, lane);
  float lam[NS], dA[NS], dBti[NS], dCti[NS], hst[NS];
#pragma unroll
  for (int k = 0; k < NS; ++k) {
    const int n = lane + k * LPC;
    lam[k] = (valid && n < N && q.grad_h_last)
                 ? static_cast<const float*>(q.grad_h_last)[b * q.grad_h_last_stride[0] + d * q.grad_h_last_stride[1] +
                                                            n * q.grad_h_last_stride[2]]
                 : 0.f;
    dA[k] = dBti[k] = dCti[k] = 0.f;
  }
  float dD_acc = 0.f, ddb_acc = 0.f;
  const Row<T> ur(p.u, p.u_stride, b, d), dr(p.delta, p.delta_stride, b, d), ar(p.dt_A, p.dt_A_stride, b, d),
      zr(p.z, p.z_stride, b, d), gyr(q.grad_y, q.grad_y_stride, b, d), dur(q.du, q.du_stride, b, d),
      ddr(q.ddelta, q.ddelta_stride, b, d), dzr(q.dz, q.dz_stride, b, d), dar(q.ddt_A, q.ddt_A_stride, b, d);
  const int64_t nchunks = L / kChunk + 1;
  for (int64_t c = nchunks - 1; c >= 0; --c) {
    const int64_t tc = c * kChunk;
    const int Tc = static_cast<int>(L - tc < kChunk ? L - tc : kChunk);
    if (Tc <= 0) continue;
    // 1. recompute the chunk's states (and y before the gate, when z needs it) into shared memory
    float h[NS];
#pragma unroll
    for (int k = 0; k < NS; ++k) {
      const int n = lane + k * LPC;
      h[k] = n < N ? static_cast<const float*>(p.chunk_states)[b * p.chunk_states_stride[0] + d * p.chunk_states_stride[1] +
                                                               c * p.chunk_states_stride[2] + n * p.chunk_states_stride[3]]
                   : 0.f;
      hst[k] = h[k];
    }
    for (int t0 = 0; t0 < Tc; t0 += LPC) {
      const int64_t t = tc + t0 + lane;
      float u = 0.f, dta = 0.f, dbu = 0.f;
      if (t < L) {
        u = ur.load(t);
        float dt = dr.load(t) + rc.bias;
        if (p.delta_softplus) dt = softplus(dt);
        dta = p.dt_A ? ar.load(t) : dt;
        dbu = dt * u;
      }
      __syncwarp();
      s_step[lane] = make_float4(dta, dbu, 0.f, 0.f);
      __syncwarp();
      float yacc[LPC];
#pragma unroll
      for (int j0 = 0; j0 < LPC; j0 += 4) {
        float4 Bv[NS], Cv[NS];
#pragma unroll
        for (int k = 0; k < NS; ++k) {
          Bv[k] = p.B_variable ? load4(bc.B[k], p.B_stride[3], tc + t0 + j0, bc.lenB[k], vecB) : make_float4(rc.Bti[k], rc.Bti[k], rc.Bti[k], rc.Bti[k]);
          Cv[k] = p.C_variable ? load4(bc.C[k], p.C_stride[3], tc + t0 + j0, bc.lenC[k], vecC) : make_float4(rc.Cti[k], rc.Cti[k], rc.Cti[k], rc.Cti[k]);
        }
#pragma unroll
        for (int jj = 0; jj < 4; ++jj) {
          const float4 st = s_step[j0 + jj];
          float acc = 0.f;
#pragma unroll
          for (int k = 0; k < NS; ++k) {
            h[k] = fmaf(exp2f(st.x * rc.A2[k]), h[k], st.y * comp(Bv[k], jj));
            hs[(t0 + j0 + jj) * NP + lane + k * LPC] = h[k];
            acc = fmaf(comp(Cv[k], jj), h[k], acc);
          }
          yacc[j0 + jj] = acc;
        }
      }
      if (p.z) {
        const float y = transpose_reduce<LPC>(yacc, lane);
        s_yo[t0 + lane] = fmaf(rc.Dd, u, y);
      }
    }
    __syncwarp();
    // 2. the adjoint, backwards through the chunk's tiles
    const int last_tile = ((Tc - 1) / LPC) * LPC;
    for (int t0 = last_tile; t0 >= 0; t0 -= LPC) {
      const int64_t t = tc + t0 + lane;
      const bool in = t < L && valid;
      float u = 0.f, raw = 0.f, dt = 0.f, dta = 0.f, gyo = 0.f, z = 0.f, sz = 0.f;
      if (t < L) {
        u = ur.load(t);
        raw = dr.load(t) + rc.bias;
        dt = p.delta_softplus ? softplus(raw) : raw;
        dta = p.dt_A ? ar.load(t) : dt;
        if (valid) gyo = gyr.load(t);
        if (p.z) {
          z = zr.load(t);
          sz = sigmoid(z);
          if (in) dzr.store(t, gyo * s_yo[t0 + lane] * sz * (1.f + z * (1.f - sz)));
          gyo *= z * sz;
        }
      }
      const float dbu = dt * u;
      dD_acc = fmaf(gyo, u, dD_acc);
      __syncwarp();
      s_step[lane] = make_float4(dta, dbu, gyo, 0.f);
      __syncwarp();
      float sB[LPC], sA[LPC];
#pragma unroll
      for (int j0 = LPC - 4; j0 >= 0; j0 -= 4) {
        float4 Bv[NS], Cv[NS];
#pragma unroll
        for (int k = 0; k < NS; ++k) {
          Bv[k] = p.B_variable ? load4(bc.B[k], p.B_stride[3], tc + t0 + j0, bc.lenB[k], vecB) : make_float4(rc.Bti[k], rc.Bti[k], rc.Bti[k], rc.Bti[k]);
          Cv[k] = p.C_variable ? load4(bc.C[k], p.C_stride[3], tc + t0 + j0, bc.lenC[k], vecC) : make_float4(rc.Cti[k], rc.Cti[k], rc.Cti[k], rc.Cti[k]);
        }
#pragma unroll
        for (int jj = 3; jj >= 0; --jj) {
          const int j = j0 + jj, tl = t0 + j;  // step within the chunk
          const float4 st = s_step[j];
          float accB = 0.f, accA = 0.f;
#pragma unroll
          for (int k = 0; k < NS; ++k) {
            const int n = lane + k * LPC;
            const float a = exp2f(st.x * rc.A2[k]);
            const float l = fmaf(st.z, comp(Cv[k], jj), lam[k]);
            const float ht = hs[tl * NP + n];
            const float ah = a * (tl == 0 ? hst[k] : hs[(tl - 1) * NP + n]);
            const float dBv = l * st.y, dCv = st.z * ht;
            if (p.B_variable) redB[(size_t(grp) * LPC + j) * NP1 + n] = dBv; else dBti[k] += dBv;
            if (p.C_variable) redC[(size_t(grp) * LPC + j) * NP1 + n] = dCv; else dCti[k] += dCv;
            accB = fmaf(l, comp(Bv[k], jj), accB);
            const float lah = l * ah;
            accA = fmaf(lah, rc.A2[k], accA);  // times ln 2 below: A = A2 / log2(e)
            dA[k] = fmaf(lah, st.x, dA[k]);
            lam[k] = a * l;
          }
          sB[j] = accB;
          sA[j] = accA;
        }
      }
      const float sBr = transpose_reduce<LPC>(sB, lane);
      const float sAr = transpose_reduce<LPC>(sA, lane) * (1.f / kLog2e);
      if (in) {
        dur.store(t, fmaf(gyo, rc.Dd, dt * sBr));
        float ddt = u * sBr;
        if (p.dt_A) dar.store(t, sAr); else ddt += sAr;
        if (p.delta_softplus && raw <= 20.f) ddt *= sigmoid(raw);
        ddr.store(t, ddt);
        ddb_acc += ddt;
      }
      if (variable) {
        // sum the block's channels in a fixed order; this block owns its workspace slice
        __syncthreads();
        // deterministic: this block's own workspace slice; atomic_bc: straight into dB / dC
        const int64_t slice = atomic_bc ? (b * p.groups + g) * N * L : ((part * p.batch + b) * p.groups + g) * N * L;
        float* dB_dst = static_cast<float*>(atomic_bc ? q.dB : q.dB_part) + slice;
        float* dC_dst = static_cast<float*>(atomic_bc ? q.dC : q.dC_part) + slice;
        for (int idx = threadIdx.x; idx < NP * LPC; idx += GPB * LPC) {
          const int n = idx / LPC, j = idx % LPC;
          const int64_t tt = tc + t0 + j;
          if (n >= N || tt >= L) continue;
          if (p.B_variable) {
            float acc = 0.f;
            for (int gg = 0; gg < GPB; ++gg) acc += redB[(size_t(gg) * LPC + j) * NP1 + n];
            if (atomic_bc) atomicAdd(dB_dst + n * L + tt, acc); else dB_dst[n * L + tt] = acc;
          }
          if (p.C_variable) {
            float acc = 0.f;
            for (int gg = 0; gg < GPB; ++gg) acc += redC[(size_t(gg) * LPC + j) * NP1 + n];
            if (atomic_bc) atomicAdd(dC_dst + n * L + tt, acc); else dC_dst[n * L + tt] = acc;
          }
        }
        __syncthreads();
      }
    }
    __syncwarp();
  }
  const float dD_sum = group_sum<LPC>(dD_acc), ddb_sum = group_sum<LPC>(ddb_acc);
  if (!valid) return;
#pragma unroll
  for (int k = 0; k < NS; ++k) {
    const int n = lane + k * LPC;
    if (n >= N) continue;
    static_cast<float*>(q.dh0)[b * q.dh0_stride[0] + d * q.dh0_stride[1] + n * q.dh0_stride[2]] = lam[k];
    static_cast<float*>(q.dA_part)[row * N + n] = dA[k];
    if (!p.B_variable) static_cast<float*>(q.dB_part)[row * N + n] = dBti[k];
    if (!p.C_variable) static_cast<float*>(q.dC_part)[row * N + n] = dCti[k];
  }
  if (lane == 0) {
    static_cast<float*>(q.dD_part)[row] = dD_sum;
    static_cast<float*>(q.ddelta_bias_part)[row] = ddb_sum;
  }
}

// ------------------------------------------------------------------------------------------
// Backward, phase 1, N <= 64 (design and cost model in selective_scan.cu). One block per work
// item (b, segment, part) of the C API: RPB = THREADS / LPC channels, each owned by LPC lanes of
// one warp, lane `l` holding the NS states n = l + k * LPC in registers (as the forward). Per
// 64-step chunk, in reverse: the chunk's per-(channel, step) scalars and its B/C rows are staged
// once in shared memory (fp32); pass 1 walks the chunk forward from the saved chunk state and
// keeps only the state at each V-step tile boundary (and y, when z needs it); then, tile by tile
// backwards, pass 2 recomputes the tile's V states and decay factors into registers and the
// adjoint walks them back. dB/dC of the tile are summed over the block's channels through a
// padded scratch in channel order; sums over a channel's states go through per-lane partial
// rows added in lane order. Everything is deterministic except the N > 32 atomics (see .cu).
template <int NS_, int LPC_, int V_, int THREADS_, int MINB_>
struct BwdCfg {
  static constexpr bool tiled = true;
  static constexpr int ns = NS_, lpc = LPC_, v = V_, threads = THREADS_, min_blocks = MINB_;
  static constexpr int np = NS_ * LPC_;             // states per channel, padded
  static constexpr int rpb = THREADS_ / LPC_;       // channels per block
  static constexpr int mk = kChunk / LPC_;          // steps per lane in the chunk's loads and stores
  static constexpr int tiles = kChunk / V_;
  static constexpr int qv = V_ / 4;                 // 4-step runs per tile
  static constexpr int cpw = LPC_ < 32 ? 32 / LPC_ : 1;  // channels per warp
  // Shared-memory layouts (N = 16: 55.75 KiB per block; 4 blocks would fit in an SM's 228 KiB, but
  // 128 registers spill and measured slower on the H200, so 3 run): paddings where the index varies
  // inside the tile loops (addresses stay base + immediate), XOR swizzles where it is fixed per
  // thread. Bank-conflict-free, these cut the kernel's shared-memory wavefronts by 37% (H200 ncu,
  // (8, 1536, 2048, 16) f32: 1.33 -> 1.11 ms).
  // Step slot j of channel g (float4: dtA, dt*u, gyo, y): rows of kChunk + 1 slots, so that the
  // channels of a warp reading one step hit other banks, and j's low 3 bits XOR bits 3..5: the
  // lanes staging (and finishing) their runs of mk consecutive steps write (read) slots on
  // distinct banks (8 lanes, slots 8 apart: 8-way conflicts without it; measured: ~20% of the
  // kernel's shared-memory wavefronts), while a tile's 8 slots stay a permutation of one group.
  static constexpr int srow = kChunk + 1;
  __host__ __device__ static constexpr int slot(int g, int j) { return g * srow + (j ^ ((j >> 3) & 7)); }
  // The chunk's B/C row n, step j: rows kChunk + 4 floats apart, so that the 8 rows that 8 lanes
  // read at one step fall on distinct banks.
  static constexpr int kp = kChunk + 4;
  __host__ __device__ static constexpr int bcx(int n, int j) { return n * kp + j; }
  // Partial row r of array a (0: y or sum lam*B; 1: sum lam*a*h*A), run j..j+3: the run index XOR
  // bit 2 of the row (8 consecutive rows written at one run: distinct banks), and array 1 keeps
  // row r at r ^ 2 (sum_rows reads both arrays in one instruction: other banks).
  static constexpr int pa = THREADS_ * V_;
  __host__ __device__ static constexpr int pidx(int a, int r, int j) {
    return a * pa + (a ? r ^ 2 : r) * V_ + ((((j >> 2) ^ ((a ? r ^ 2 : r) >> 2)) & (qv - 1)) << 2);
  }
  // dB/dC channel sums: items (array, state, run), bc_split threads per item each adding bc_cps
  // consecutive channels (every thread has an item; N = 16: 64 items x 2 ranges of 8 channels).
  static constexpr int bc_items = 2 * np * qv, bc_split = bc_items >= THREADS_ ? 1 : THREADS_ / bc_items,
                       bc_cps = rpb / bc_split;
  // dB/dC scratch of channel g, state n, run j: the run index XOR bit 2 of n (a channel's 8 lanes
  // write 8 states on distinct banks), the offset XOR a multiple of 32 / bc_split by the channel's
  // range (the ranges of one item are read in parallel: other banks); +4 floats per channel when
  // two channels share a quarter warp (LPC = 4).
  static constexpr int cs = np * V_ + (LPC_ < 8 ? 4 : 0);
  __host__ __device__ static constexpr int ridx(int g, int n, int j) {
    return g * cs + ((n * V_ + ((((j >> 2) ^ (n >> 2)) & (qv - 1)) << 2)) ^ (((g / bc_cps) % bc_split) * (32 / bc_split)));
  }
  // Warp-level dB/dC (LPC = 8, B and C both variable): the 4 channels of a warp are added with a
  // shuffle reduce-scatter before anything reaches shared memory, so the scratch holds one row per
  // warp (array, state, step) instead of one per channel: 4x fewer scratch stores and channel-sum
  // loads. Step j of (array a, state n) sits at (j + 4a) mod V, so a warp's STS.64 of one (k, run)
  // (8 states x 2 arrays x 2 pairs) covers 64 distinct words: 2 wavefronts, the minimum.
  static constexpr bool warp_bc_ok = LPC_ == 8 && V_ == 8;
  static constexpr int warps = THREADS_ / 32;
  static constexpr int wrow = 2 * np * V_;  // one warp's scratch: [2][np][V]
  __host__ __device__ static constexpr int widx(int w, int a, int n, int j) {
    return w * wrow + a * np * V_ + n * V_ + ((j + 4 * a) & (V_ - 1));
  }
  static constexpr int e = np * kChunk / THREADS_;  // B (and C) chunk values staged per thread
  static constexpr bool atomic_bc = np > 32;        // see selective_scan.cu: partials would be D / rpb slices
  static_assert(V_ % 4 == 0 && kChunk % V_ == 0 && (np * kChunk) % THREADS_ == 0 && mk >= 1 && e % 4 == 0 && e <= kChunk &&
                    np * V_ >= 32 && bc_items * bc_split == THREADS_ && rpb % bc_split == 0 && bc_split <= 32 &&
                    (np * qv * bc_split) % 32 == 0 && LPC_ >= 4,
                "tile shape; channel sums: one item per thread, whole warps per array");
  static size_t smem_bytes(bool variable) {
    return sizeof(float) * (4 * size_t(rpb) * srow + 2 * size_t(np) * kp + 2 * size_t(pa) +
                            size_t(tiles - 1) * NS_ * THREADS_ + (variable ? 2 * size_t(rpb) * cs : 0));
  }
};

struct BwdVec {
  bool u, delta, dt_A, z, gy, du, ddelta, dz, ddt_A, B, C;
};

// The per-step sums over a channel's states. Lane l of channel grp's LPC-lane group wrote its
// partial sums of the tile's V steps (tile start jt) to partial row grp * LPC + l of each of NARR
// arrays (Cfg::pidx); the sum of array a at step j goes to component c0 + a of step slot j, times
// `scale` for a = 1. Each lane adds ROWS rows (range, range + R, ...) of one (array, 4-step run)
// with LDS.128, in that order, and a butterfly over the R lanes sharing the run adds the ranges:
// a fixed order (deterministic), ~1.3 instructions per summed value instead of ~3.5 with scalar loads.
template <typename Cfg, int NARR>
__device__ __forceinline__ void sum_rows(const float* part, int grp, int lane, float4* steps, int jt, int c0, float scale) {
  constexpr int LPC = Cfg::lpc, QV = Cfg::qv, COMBOS = NARR * QV, R = LPC / COMBOS, ROWS = LPC / R;
  static_assert(Cfg::v % 4 == 0 && LPC % COMBOS == 0, "sum_rows: a lane per (array, run, row range)");
  const int combo = lane / R, range = lane % R, arr = combo / QV, j0 = (combo % QV) * 4, r0 = grp * LPC + range;
  float4 acc = *reinterpret_cast<const float4*>(part + Cfg::pidx(arr, r0, j0));
#pragma unroll
  for (int i = 1; i < ROWS; ++i) {
    const float4 v = *reinterpret_cast<const float4*>(part + Cfg::pidx(arr, r0 + i * R, j0));
    acc.x += v.x; acc.y += v.y; acc.z += v.z; acc.w += v.w;
  }
#pragma unroll
  for (int m = 1; m < R; m <<= 1) {  // partners differ in the low bits of `range`: same group
    acc.x += __shfl_xor_sync(0xffffffffu, acc.x, m);
    acc.y += __shfl_xor_sync(0xffffffffu, acc.y, m);
    acc.z += __shfl_xor_sync(0xffffffffu, acc.z, m);
    acc.w += __shfl_xor_sync(0xffffffffu, acc.w, m);
  }
  if (range == 0) {
    const float sc = arr ? scale : 1.f;
    reinterpret_cast<float*>(steps + Cfg::slot(grp, jt + j0))[c0 + arr] = acc.x * sc;
    reinterpret_cast<float*>(steps + Cfg::slot(grp, jt + j0 + 1))[c0 + arr] = acc.y * sc;
    reinterpret_cast<float*>(steps + Cfg::slot(grp, jt + j0 + 2))[c0 + arr] = acc.z * sc;
    reinterpret_cast<float*>(steps + Cfg::slot(grp, jt + j0 + 3))[c0 + arr] = acc.w * sc;
  }
}

// kVar: B and C both variable (no per-use selects). In the Cfg::warp_bc_ok configurations (8 lanes
// per channel, 8-step tiles: N <= 32) kWarpBC: warp-level dB/dC (Cfg::widx; B and C both variable)
// and kShflSums: the per-step sums over a channel's states by a shuffle reduce-scatter over its 8
// lanes, written straight into the step slots (no partial rows).
template <typename T, typename Cfg, bool kVar>
__global__ void __launch_bounds__(Cfg::threads, Cfg::min_blocks)
    selective_scan_bwd_tile_kernel(const lrnn_selective_scan_bwd_params q, BwdVec vec, FwdSplit sp) {
  constexpr bool kWarpBC = kVar && Cfg::warp_bc_ok, kShflSums = Cfg::warp_bc_ok;
  constexpr int NS = Cfg::ns, LPC = Cfg::lpc, V = Cfg::v, TH = Cfg::threads, RPB = Cfg::rpb, NP = Cfg::np,
                MK = Cfg::mk, CS = Cfg::cs, E = Cfg::e, K = kChunk;
  const lrnn_selective_scan_params& p = q.fwd;
  extern __shared__ __align__(16) unsigned char smem[];
  float4* s_step = reinterpret_cast<float4*>(smem);        // [RPB][srow] (Cfg::slot): (dtA, dt*u, gyo, y) per step
  float* tB = reinterpret_cast<float*>(s_step + RPB * Cfg::srow);  // [NP][kp] (Cfg::bcx): the chunk's B rows, fp32
  float* tC = tB + NP * Cfg::kp;                            // [NP][kp]
  float* s_part = tC + NP * Cfg::kp;                        // [2][TH][V] (Cfg::pidx): per-lane per-step partial sums
  float* s_bnd = s_part + 2 * Cfg::pa;                      // [tiles - 1][NS][TH]: states at the starts of tiles 1..
  float* redB = s_bnd + (Cfg::tiles - 1) * NS * TH;         // [RPB][CS] (Cfg::ridx): per-channel dB of a tile
  float* redC = redB + RPB * CS;
  float* wred = redB;  // kWarpBC: [warps][2][NP][V] (Cfg::widx) in place of the per-channel scratch
  const int tid = threadIdx.x, grp = tid / LPC, lane = tid % LPC;
  const bool varB = kVar || p.B_variable, varC = kVar || p.C_variable, variable = varB || varC;
  const int64_t S = variable ? p.groups : 1, parts = q.parts, L = p.length, N = p.dstate;
  // time segment sg (a time split, see selective_scan.cu; sg = 0 of 1 without) of work item `item`
  const int64_t items = p.batch * S * parts, sg = blockIdx.x / items, item = blockIdx.x % items;
  const int64_t b = item / (S * parts), s = (item / parts) % S, part = item % parts;
  const int64_t seg = p.dim / S;
  const int64_t d_lo = s * seg + part * seg / parts, d_hi = s * seg + (part + 1) * seg / parts;
  const int nch = static_cast<int>(d_hi - d_lo);
  const bool valid = grp < nch;  // idle channels take part in barriers and shuffles, as no-op rows
  const int64_t d = valid ? d_lo + grp : d_lo, row = b * p.dim + d;
  const int64_t t_begin = sg * sp.seg_len, t_end = L < t_begin + sp.seg_len ? L : t_begin + sp.seg_len;
  const int64_t prow = sg * p.batch * p.dim + row;  // this segment's copy of the per-row partials
  RowConsts<NS, LPC> rc;
  rc.load(p, d, lane);
  float lam[NS], dA[NS], dBti[NS], dCti[NS];
#pragma unroll
  for (int k = 0; k < NS; ++k) {
    const int n = lane + k * LPC;
    if (sg == sp.nseg - 1)
      lam[k] = (valid && n < N && q.grad_h_last)
                   ? static_cast<const float*>(q.grad_h_last)[b * q.grad_h_last_stride[0] + d * q.grad_h_last_stride[1] +
                                                              n * q.grad_h_last_stride[2]]
                   : 0.f;
    else  // the adjoint entering this segment from the later ones (combined, see the first pass)
      lam[k] = (valid && n < N) ? static_cast<const float*>(q.seg_state)[((sg * p.batch * p.dim + row) * 2) * N + n] : 0.f;
    dA[k] = dBti[k] = dCti[k] = 0.f;
  }
  // dB/dC channel sums (variable B/C): thread tid owns item (array, state n, 4-step run j0) of every
  // tile, with BC_SPLIT adjacent threads per item each adding BC_CPS consecutive channels of the
  // per-channel scratch (LDS.128; idle channels hold zeros, so no per-channel test), then a
  // butterfly adding the BC_SPLIT ranges: a fixed order (deterministic). Every thread has an item
  // (N <= 16: 64 items x 2 ranges of 8 channels). bc_dst: this item's row of the block's dB/dC
  // workspace slice (or of dB/dC itself with atomics); null for padding states.
  constexpr int BC_QV = Cfg::qv, BC_HALF = NP * BC_QV, BC_SPLIT = Cfg::bc_split, BC_CPS = Cfg::bc_cps;
  const int bc_item = tid / BC_SPLIT, bc_rg = tid % BC_SPLIT, bc_n = (bc_item % BC_HALF) / BC_QV, bc_j0 = (bc_item % BC_QV) * 4;
  const bool bc_isC = bc_item >= BC_HALF;
  const bool bc_on = bc_isC ? varC : varB;  // warp-uniform: an array's items fill whole warps
  const int bc_off = Cfg::ridx(bc_rg * BC_CPS, bc_n, bc_j0);  // channel bc_rg * BC_CPS + c: + c * CS
  float* bc_dst = nullptr;
  if (bc_on && bc_rg == 0 && bc_n < N) {
    const int64_t slice = Cfg::atomic_bc ? (b * p.groups + s) * N * L : ((part * p.batch + b) * p.groups + s) * N * L;
    bc_dst = static_cast<float*>(Cfg::atomic_bc ? (bc_isC ? q.dC : q.dB) : (bc_isC ? q.dC_part : q.dB_part)) + slice + bc_n * L;
  }
  const bool bc_vec = (reinterpret_cast<uintptr_t>(bc_dst) & 15) == 0 && L % 4 == 0;  // float4 stores at 4-step runs
  // kWarpBC: float2 stores at step pairs (the workspace slices start at multiples of N * L floats)
  const bool wred_vec = (reinterpret_cast<uintptr_t>(q.dB_part) & 7) == 0 && (reinterpret_cast<uintptr_t>(q.dC_part) & 7) == 0 && L % 2 == 0;
  float dD_acc = 0.f, ddb_acc = 0.f;
  // the row pointers are rebuilt where used (chunk loads and stores) instead of being kept live
  // through the tile loops, where registers are scarce
  for (int64_t c = (t_end + K - 1) / K - 1; c >= t_begin / K; --c) {
    const int64_t tc = c * K;
    const int Tc = static_cast<int>(t_end - tc < K ? t_end - tc : K);
    const int ntiles = (Tc + V - 1) / V;
    __syncthreads();  // the previous chunk's slots and B/C rows are no longer read
    {
      // this lane's MK steps: dtA, dt*u and the gated output gradient gyo, once per (row, step);
      // steps past L (and idle channels) become exact no-op steps: exp(0) = 1, no input, gyo = 0
      const int64_t t = tc + lane * MK;
      const Row<T> ur(p.u, p.u_stride, b, d), dr(p.delta, p.delta_stride, b, d), ar(p.dt_A, p.dt_A_stride, b, d),
          zr(p.z, p.z_stride, b, d), gyr(q.grad_y, q.grad_y_stride, b, d);
      const T* Bsrc = static_cast<const T*>(p.Bm) + (varB ? b * p.B_stride[0] + s * p.B_stride[1] : 0);
      const T* Csrc = static_cast<const T*>(p.Cm) + (varC ? b * p.C_stride[0] + s * p.C_stride[1] : 0);
      Run<T, MK> su, sd, sa, sz, sg;
      su.load(ur, t, L, vec.u);
      sd.load(dr, t, L, vec.delta);
      sg.load(gyr, t, L, vec.gy);
      if (p.dt_A) sa.load(ar, t, L, vec.dt_A);
      if (p.z) sz.load(zr, t, L, vec.z);
      // B/C: this thread's E consecutive steps of state row n (one vector load when aligned);
      // rows n >= N read as zeros (length 0)
      const int n = tid / (K / E), j0 = (tid % (K / E)) * E;
      Run<T, E> sb, sc;
      if (varB) sb.load(Row<T>(Bsrc + (n < N ? n : 0) * p.B_stride[2], p.B_stride[3]), tc + j0, n < N ? L : 0, vec.B);
      if (varC) sc.load(Row<T>(Csrc + (n < N ? n : 0) * p.C_stride[2], p.C_stride[3]), tc + j0, n < N ? L : 0, vec.C);
#pragma unroll
      for (int i = 0; i < MK; ++i) {
        const bool in = valid && t + i < L;
        float dt = sd.get(i) + rc.bias;
        if (p.delta_softplus) dt = softplus(dt);
        float gyo = sg.get(i);
        if (p.z) {
          const float zz = sz.get(i);
          gyo *= zz * sigmoid(zz);
        }
        s_step[Cfg::slot(grp, lane * MK + i)] =
            in ? make_float4(p.dt_A ? sa.get(i) : dt, dt * su.get(i), gyo, 0.f) : make_float4(0.f, 0.f, 0.f, 0.f);
      }
#pragma unroll
      for (int i = 0; i < E; i += 4) {
        if (varB) *reinterpret_cast<float4*>(tB + Cfg::bcx(n, j0 + i)) = make_float4(sb.get(i), sb.get(i + 1), sb.get(i + 2), sb.get(i + 3));
        if (varC) *reinterpret_cast<float4*>(tC + Cfg::bcx(n, j0 + i)) = make_float4(sc.get(i), sc.get(i + 1), sc.get(i + 2), sc.get(i + 3));
      }
    }
    __syncthreads();
    // pass 1: forward through the chunk from its saved state; the state at each tile start is kept
    // (tiles 1.. in s_bnd; tile 0's is re-read from chunk_states, an L1/L2 hit, once per chunk)
    const float* cst = static_cast<const float*>(p.chunk_states) + b * p.chunk_states_stride[0] +
                       d * p.chunk_states_stride[1] + c * p.chunk_states_stride[2];
    float h[NS];
#pragma unroll
    for (int k = 0; k < NS; ++k) {
      const int n = lane + k * LPC;
      h[k] = n < N ? cst[n * p.chunk_states_stride[3]] : 0.f;
    }
#pragma unroll 1
    for (int tt = 0; tt < ntiles; ++tt) {
      if (tt > 0) {
#pragma unroll
        for (int k = 0; k < NS; ++k) s_bnd[((tt - 1) * NS + k) * TH + tid] = h[k];
      }
#pragma unroll
      for (int j4 = 0; j4 < V; j4 += 4) {
        const int j0 = tt * V + j4;
        float4 st[4];
#pragma unroll
        for (int jj = 0; jj < 4; ++jj) st[jj] = s_step[Cfg::slot(grp, j0 + jj)];
        float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int k = 0; k < NS; ++k) {
          const int n = lane + k * LPC;
          const float4 Bv = varB ? *reinterpret_cast<const float4*>(tB + Cfg::bcx(n, j0)) : make_float4(rc.Bti[k], rc.Bti[k], rc.Bti[k], rc.Bti[k]);
          if (p.z) {
            const float4 Cv = varC ? *reinterpret_cast<const float4*>(tC + Cfg::bcx(n, j0)) : make_float4(rc.Cti[k], rc.Cti[k], rc.Cti[k], rc.Cti[k]);
#pragma unroll
            for (int jj = 0; jj < 4; ++jj) {
              h[k] = fmaf(exp2f(st[jj].x * rc.A2[k]), h[k], st[jj].y * comp(Bv, jj));
              acc[jj] = fmaf(comp(Cv, jj), h[k], acc[jj]);
            }
          } else {
#pragma unroll
            for (int jj = 0; jj < 4; ++jj) h[k] = fmaf(exp2f(st[jj].x * rc.A2[k]), h[k], st[jj].y * comp(Bv, jj));
          }
        }
        if (p.z) *reinterpret_cast<float4*>(s_part + Cfg::pidx(0, tid, j4)) = make_float4(acc[0], acc[1], acc[2], acc[3]);
      }
      if (p.z) {  // y of the tile's steps (before D*u and the gate): the group's partials in lane order
        __syncwarp();
        sum_rows<Cfg, 1>(s_part, grp, lane, s_step, tt * V, 3, 1.f);
        __syncwarp();
      }
    }
    // the adjoint, tile by tile backwards: lam[t] = gyo[t] C[t] + a[t+1] lam[t+1]
#pragma unroll 1
    for (int tt = ntiles - 1; tt >= 0; --tt) {
      float hb[NS], hv[V][NS], av[V][NS];
      float4 st[V];
#pragma unroll
      for (int j = 0; j < V; ++j) st[j] = s_step[Cfg::slot(grp, tt * V + j)];
#pragma unroll
      for (int k = 0; k < NS; ++k) {
        const int n = lane + k * LPC;
        hb[k] = tt > 0 ? s_bnd[((tt - 1) * NS + k) * TH + tid]
                       : (n < N ? static_cast<const float*>(p.chunk_states)[b * p.chunk_states_stride[0] + d * p.chunk_states_stride[1] +
                                                                            c * p.chunk_states_stride[2] + n * p.chunk_states_stride[3]]
                                : 0.f);
      }
      // pass 2: the tile's states and decay factors, in registers
#pragma unroll
      for (int j4 = 0; j4 < V; j4 += 4) {
#pragma unroll
        for (int k = 0; k < NS; ++k) {
          const int n = lane + k * LPC;
          const float4 Bv = varB ? *reinterpret_cast<const float4*>(tB + Cfg::bcx(n, tt * V + j4)) : make_float4(rc.Bti[k], rc.Bti[k], rc.Bti[k], rc.Bti[k]);
#pragma unroll
          for (int jj = 0; jj < 4; ++jj) {
            const int j = j4 + jj;
            av[j][k] = exp2f(st[j].x * rc.A2[k]);
            hv[j][k] = fmaf(av[j][k], j ? hv[j - 1][k] : hb[k], st[j].y * comp(Bv, jj));
          }
        }
      }
      if constexpr (kShflSums) __syncwarp();  // the group's lanes read this tile's step slots (st) above
#pragma unroll
      for (int j4 = V - 4; j4 >= 0; j4 -= 4) {
        float accB[4] = {0.f, 0.f, 0.f, 0.f}, accA[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int k = 0; k < NS; ++k) {
          const int n = lane + k * LPC;
          const float4 Bv = varB ? *reinterpret_cast<const float4*>(tB + Cfg::bcx(n, tt * V + j4)) : make_float4(rc.Bti[k], rc.Bti[k], rc.Bti[k], rc.Bti[k]);
          const float4 Cv = varC ? *reinterpret_cast<const float4*>(tC + Cfg::bcx(n, tt * V + j4)) : make_float4(rc.Cti[k], rc.Cti[k], rc.Cti[k], rc.Cti[k]);
          float gB[4], gC[4];
#pragma unroll
          for (int jj = 3; jj >= 0; --jj) {
            const int j = j4 + jj;
            const float l = fmaf(st[j].z, comp(Cv, jj), lam[k]);
            const float lah = l * (av[j][k] * (j ? hv[j - 1][k] : hb[k]));
            gB[jj] = l * st[j].y;
            gC[jj] = st[j].z * hv[j][k];
            accB[jj] = fmaf(l, comp(Bv, jj), accB[jj]);
            accA[jj] = fmaf(lah, rc.A2[k], accA[jj]);  // times ln 2 below: A = A2 / log2(e)
            dA[k] = fmaf(lah, st[j].x, dA[k]);
            lam[k] = av[j][k] * l;
          }
          if constexpr (kWarpBC) {
            // reduce-scatter of the 8 values (dB, dC of 4 steps) over the warp's 4 channels (lane
            // bits 4, 3), fixed order: lane (bit 4, bit 3) ends with array bit 4, steps 2 * bit 3 + {0, 1}
            float v[8] = {gB[0], gB[1], gB[2], gB[3], gC[0], gC[1], gC[2], gC[3]};
            const bool u16 = tid & 16, u8 = tid & 8;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              const float send = u16 ? v[i] : v[i + 4], keep = u16 ? v[i + 4] : v[i];
              v[i] = keep + __shfl_xor_sync(0xffffffffu, send, 16);
            }
#pragma unroll
            for (int i = 0; i < 2; ++i) {
              const float send = u8 ? v[i] : v[i + 2], keep = u8 ? v[i + 2] : v[i];
              v[i] = keep + __shfl_xor_sync(0xffffffffu, send, 8);
            }
            *reinterpret_cast<float2*>(wred + Cfg::widx(tid >> 5, u16, n, j4 + (u8 ? 2 : 0))) = make_float2(v[0], v[1]);
          } else {
            if (varB) *reinterpret_cast<float4*>(redB + Cfg::ridx(grp, n, j4)) = make_float4(gB[0], gB[1], gB[2], gB[3]);
            else dBti[k] += (gB[3] + gB[2]) + (gB[1] + gB[0]);
            if (varC) *reinterpret_cast<float4*>(redC + Cfg::ridx(grp, n, j4)) = make_float4(gC[0], gC[1], gC[2], gC[3]);
            else dCti[k] += (gC[3] + gC[2]) + (gC[1] + gC[0]);
          }
        }
        if constexpr (kShflSums) {
          // reduce-scatter of (sum lam*B, sum lam*a*h*A) of 4 steps over the channel's 8 lanes (bits
          // 2, 1, 0), fixed order: lane l ends with array l >> 2, step l & 3, and writes it into the
          // step slot (its (dtA, dt*u) were read at the tile start; no earlier tile reads it)
          float v[8] = {accB[0], accB[1], accB[2], accB[3], accA[0], accA[1], accA[2], accA[3]};
#pragma unroll
          for (int W = 4; W >= 1; W >>= 1) {
            const bool up = lane & W;
#pragma unroll
            for (int i = 0; i < W; ++i) {
              const float send = up ? v[i] : v[i + W], keep = up ? v[i + W] : v[i];
              v[i] = keep + __shfl_xor_sync(0xffffffffu, send, W);
            }
          }
          const int arr = (lane >> 2) & 1;
          reinterpret_cast<float*>(s_step + Cfg::slot(grp, tt * V + j4 + (lane & 3)))[arr] = arr ? v[0] * (1.f / kLog2e) : v[0];
        } else {
          *reinterpret_cast<float4*>(s_part + Cfg::pidx(0, tid, j4)) = make_float4(accB[0], accB[1], accB[2], accB[3]);
          *reinterpret_cast<float4*>(s_part + Cfg::pidx(1, tid, j4)) = make_float4(accA[0], accA[1], accA[2], accA[3]);
        }
      }
      if constexpr (!kShflSums) {
        __syncwarp();
        // per step: the sums over the channel's states; they replace (dtA, dt*u) in the step slot,
        // which no earlier tile reads
        sum_rows<Cfg, 2>(s_part, grp, lane, s_step, tt * V, 0, 1.f / kLog2e);
        __syncwarp();  // partial rows are rewritten by the next tile
      }
      if constexpr (kWarpBC) {
        // dB/dC of the tile: the block's warps added in warp order, (array, state, step pair) items
        __syncthreads();
        constexpr int NW = Cfg::warps, PAIRS = V / 2, ITEMS = 2 * NP * PAIRS;
#pragma unroll
        for (int it = tid; it < ITEMS; it += TH) {
          const int a = it / (NP * PAIRS), n = (it / PAIRS) % NP, j = (it % PAIRS) * 2;
          float2 acc = *reinterpret_cast<const float2*>(wred + Cfg::widx(0, a, n, j));
#pragma unroll
          for (int w = 1; w < NW; ++w) {
            const float2 v = *reinterpret_cast<const float2*>(wred + Cfg::widx(w, a, n, j));
            acc.x += v.x;
            acc.y += v.y;
          }
          const int64_t t = tc + tt * V + j;
          if (n < N && t < L) {
            float* dst = static_cast<float*>(a ? q.dC_part : q.dB_part) + ((part * p.batch + b) * p.groups + s) * N * L + n * L + t;
            if (wred_vec && t + 2 <= L) {
              *reinterpret_cast<float2*>(dst) = acc;
            } else {
              dst[0] = acc.x;
              if (t + 1 < L) dst[1] = acc.y;
            }
          }
        }
        __syncthreads();
      } else if (variable) {
        // dB/dC of the tile: sum over the block's channels (see bc_item above), written once per
        // block into its own workspace slice (N <= 32) or added into dB/dC (N > 32)
        __syncthreads();
        if (bc_on) {
          const float* red = (bc_isC ? redC : redB) + bc_off;
          float4 acc = *reinterpret_cast<const float4*>(red);
#pragma unroll
          for (int c = 1; c < BC_CPS; ++c) {
            const float4 v = *reinterpret_cast<const float4*>(red + c * CS);
            acc.x += v.x; acc.y += v.y; acc.z += v.z; acc.w += v.w;
          }
#pragma unroll
          for (int m = 1; m < BC_SPLIT; m <<= 1) {
            acc.x += __shfl_xor_sync(0xffffffffu, acc.x, m);
            acc.y += __shfl_xor_sync(0xffffffffu, acc.y, m);
            acc.z += __shfl_xor_sync(0xffffffffu, acc.z, m);
            acc.w += __shfl_xor_sync(0xffffffffu, acc.w, m);
          }
          const int64_t t = tc + tt * V + bc_j0;
          if (bc_dst) {
            if (!Cfg::atomic_bc && bc_vec && t + 4 <= L) {
              *reinterpret_cast<float4*>(bc_dst + t) = acc;
            } else {
              const float v[4] = {acc.x, acc.y, acc.z, acc.w};
#pragma unroll
              for (int i = 0; i < 4; ++i) {
                if (t + i >= L) break;
                if (Cfg::atomic_bc) atomicAdd(bc_dst + t + i, v[i]); else bc_dst[t + i] = v[i];
              }
            }
          }
        }
        __syncthreads();
      }
    }
    __syncwarp();  // the group's lanes wrote the step slots read below
    if (valid) {
      // per-step gradients of this lane's MK steps, 4 at a time (inputs re-read: L1/L2 hits; in
      // groups of 4 so that MK arrays of inputs, slots and outputs are not live at once)
      const Row<T> ur(p.u, p.u_stride, b, d), dr(p.delta, p.delta_stride, b, d), zr(p.z, p.z_stride, b, d),
          gyr(q.grad_y, q.grad_y_stride, b, d), dur(q.du, q.du_stride, b, d), ddr(q.ddelta, q.ddelta_stride, b, d),
          dzr(q.dz, q.dz_stride, b, d), dar(q.ddt_A, q.ddt_A_stride, b, d);
      constexpr int G4 = MK < 4 ? MK : 4;
#pragma unroll 1
      for (int i0 = 0; i0 < MK; i0 += G4) {
        const int64_t t = tc + lane * MK + i0;
        Run<T, G4> su, sd, sz, sg;
        su.load(ur, t, L, vec.u);
        sd.load(dr, t, L, vec.delta);
        sg.load(gyr, t, L, vec.gy);
        if (p.z) sz.load(zr, t, L, vec.z);
        float du[G4], dd[G4], dz[G4], dta[G4];
#pragma unroll
        for (int i = 0; i < G4; ++i) {
          const float4 sl = s_step[Cfg::slot(grp, lane * MK + i0 + i)];  // (sum lam*B, dtA gradient, -, y)
          const float u = su.get(i), raw = sd.get(i) + rc.bias, dt = p.delta_softplus ? softplus(raw) : raw;
          const float gy = sg.get(i);
          float gyo = gy;
          dz[i] = 0.f;
          if (p.z) {
            const float zz = sz.get(i), sgz = sigmoid(zz);
            gyo *= zz * sgz;
            dz[i] = gy * fmaf(rc.Dd, u, sl.w) * sgz * (1.f + zz * (1.f - sgz));
          }
          du[i] = fmaf(gyo, rc.Dd, dt * sl.x);
          float ddt = u * sl.x;
          dta[i] = sl.y;
          if (!p.dt_A) ddt += sl.y;
          if (p.delta_softplus && raw <= 20.f) ddt *= sigmoid(raw);
          dd[i] = ddt;
          if (t + i < L) {
            ddb_acc += ddt;
            dD_acc = fmaf(gyo, u, dD_acc);
          }
        }
        store_run<T, G4>(dur, t, L, vec.du, du);
        store_run<T, G4>(ddr, t, L, vec.ddelta, dd);
        if (p.z) store_run<T, G4>(dzr, t, L, vec.dz, dz);
        if (p.dt_A) store_run<T, G4>(dar, t, L, vec.ddt_A, dta);
      }
    }
  }
  const float dD_sum = group_sum<LPC>(dD_acc), ddb_sum = group_sum<LPC>(ddb_acc);
  if (!valid) return;
#pragma unroll
  for (int k = 0; k < NS; ++k) {
    const int n = lane + k * LPC;
    if (n >= N) continue;
    if (sg == 0) static_cast<float*>(q.dh0)[b * q.dh0_stride[0] + d * q.dh0_stride[1] + n * q.dh0_stride[2]] = lam[k];
    static_cast<float*>(q.dA_part)[prow * N + n] = dA[k];
    if (!varB) static_cast<float*>(q.dB_part)[prow * N + n] = dBti[k];
    if (!varC) static_cast<float*>(q.dC_part)[prow * N + n] = dCti[k];
  }
  if (lane == 0) {
    static_cast<float*>(q.dD_part)[prow] = dD_sum;
    static_cast<float*>(q.ddelta_bias_part)[prow] = ddb_sum;
  }
}

// ------------------------------------------------------------------------------------------
// Backward time split, first pass (segments 1..nseg-1; see selective_scan.cu): the adjoint of each
// segment from zero at its end, walked back to its start (lam_loc, the gradient with respect to
// the state before the segment that the segment's own outputs produce), and the segment's decay
// exp(A * sum dtA), into seg_state[sg][b][d][0 / 1][n]. The layout is the forward's (Cfg: a
// FwdCfg): LPC lanes per row, NS states per lane, tiles of V steps walked last to first.
template <typename T, typename Cfg>
__global__ void __launch_bounds__(Cfg::threads) selective_scan_bwd_local_kernel(const lrnn_selective_scan_bwd_params q, FwdSplit sp, BwdVec vec) {
  constexpr int NS = Cfg::ns, LPC = Cfg::lpc, V = Cfg::v, M = Cfg::m, RPB = Cfg::rpb, VP = Cfg::vp,
                E = Cfg::e, TH = Cfg::threads, SROW = Cfg::srow;
  const lrnn_selective_scan_params& p = q.fwd;
  extern __shared__ __align__(16) unsigned char smem[];
  float2* s_step = reinterpret_cast<float2*>(smem);            // [RPB][SROW]: (dtA, gyo) per step
  float* tC = reinterpret_cast<float*>(smem) + 2 * RPB * SROW;  // [NP][VP]: C tile, fp32
  const int grp = threadIdx.x / LPC, lane = threadIdx.x % LPC;
  const bool varC = p.C_variable;
  const int64_t S = (p.B_variable || p.C_variable) ? p.groups : 1, seg = p.dim / S;
  const int64_t bps = (seg + RPB - 1) / RPB, per_seg = p.batch * S * bps;
  const int64_t sg = 1 + blockIdx.x / per_seg, blk = blockIdx.x % per_seg;
  const int64_t b = blk / (S * bps), s = (blk / bps) % S, local = (blk % bps) * RPB + grp;
  const bool valid = local < seg;
  const int64_t d = s * seg + (valid ? local : 0);
  const int64_t L = p.length, N = p.dstate;
  const int64_t t_begin = sg * sp.seg_len, t_end = L < t_begin + sp.seg_len ? L : t_begin + sp.seg_len;
  RowConsts<NS, LPC> rc;
  rc.load(p, d, lane);
  const T* Csrc = static_cast<const T*>(p.Cm) + (varC ? b * p.C_stride[0] + s * p.C_stride[1] : 0);
  const Row<T> dr(p.delta, p.delta_stride, b, d), ar(p.dt_A, p.dt_A_stride, b, d), zr(p.z, p.z_stride, b, d),
      gyr(q.grad_y, q.grad_y_stride, b, d);
  float lam[NS];
#pragma unroll
  for (int k = 0; k < NS; ++k) lam[k] = 0.f;
  float dsum = 0.f;
  const int64_t ntiles = (t_end - t_begin + V - 1) / V;
#pragma unroll 1
  for (int64_t it = ntiles - 1; it >= 0; --it) {
    const int64_t t0 = t_begin + it * V, t = t0 + lane * M;
    Run<T, M> sd, sa, sz, sgy;
    sd.load(dr, t, L, vec.delta);
    sgy.load(gyr, t, L, vec.gy);
    if (p.dt_A) sa.load(ar, t, L, vec.dt_A);
    if (p.z) sz.load(zr, t, L, vec.z);
    T sC[E];
#pragma unroll
    for (int r = 0; r < E; ++r) {
      const int i = threadIdx.x + r * TH, n = i / V;
      const int64_t tt = t0 + i % V;
      sC[r] = (varC && n < N && tt < L) ? Csrc[n * p.C_stride[2] + tt * p.C_stride[3]] : from_f<T>(0.f);
    }
    __syncthreads();  // the previous tile is no longer read
#pragma unroll
    for (int i = 0; i < M; ++i) {
      const bool in = valid && t + i < L;  // past L, idle rows: exact no-op steps
      float dt = sd.get(i) + rc.bias;
      if (p.delta_softplus) dt = softplus(dt);
      float gyo = sgy.get(i);
      if (p.z) {
        const float zz = sz.get(i);
        gyo *= zz * sigmoid(zz);
      }
      s_step[grp * SROW + lane * M + i] = in ? make_float2(p.dt_A ? sa.get(i) : dt, gyo) : make_float2(0.f, 0.f);
    }
#pragma unroll
    for (int r = 0; r < E; ++r) {
      const int i = threadIdx.x + r * TH;
      tC[(i / V) * VP + i % V] = to_f(sC[r]);
    }
    __syncthreads();
#pragma unroll 1
    for (int j4 = V - 4; j4 >= 0; j4 -= 4) {
      const float4 s01 = *reinterpret_cast<const float4*>(s_step + grp * SROW + j4);
      const float4 s23 = *reinterpret_cast<const float4*>(s_step + grp * SROW + j4 + 2);
      const float sx[4] = {s01.x, s01.z, s23.x, s23.z}, sy[4] = {s01.y, s01.w, s23.y, s23.w};
      dsum += (sx[0] + sx[1]) + (sx[2] + sx[3]);
#pragma unroll
      for (int k = 0; k < NS; ++k) {
        const int n = lane + k * LPC;
        const float4 Cv = varC ? *reinterpret_cast<const float4*>(tC + n * VP + j4) : make_float4(rc.Cti[k], rc.Cti[k], rc.Cti[k], rc.Cti[k]);
#pragma unroll
        for (int jj = 3; jj >= 0; --jj) lam[k] = exp2f(sx[jj] * rc.A2[k]) * fmaf(sy[jj], comp(Cv, jj), lam[k]);
      }
    }
  }
  if (!valid) return;
  float* out = static_cast<float*>(q.seg_state) + ((sg * p.batch + b) * p.dim + d) * 2 * N;
#pragma unroll
  for (int k = 0; k < NS; ++k) {
    const int n = lane + k * LPC;
    if (n >= N) continue;
    out[n] = lam[k];
    out[N + n] = exp2f(dsum * rc.A2[k]);
  }
}

// Backward time split, between the passes: per (b, d, n), from the last segment back, the adjoint
// entering segment k - 1 at its end is lam_loc[k] + decay[k] * (the adjoint entering k), with
// grad_h_last entering the last; written over slot [k - 1][0] (lam_loc[k - 1] is read first).
__global__ void selective_scan_bwd_combine_kernel(const lrnn_selective_scan_bwd_params q, FwdSplit sp) {
  const lrnn_selective_scan_params& p = q.fwd;
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, N = p.dstate, rows = p.batch * p.dim;
  if (i >= rows * N) return;
  const int64_t n = i % N, row = i / N, d = row % p.dim, b = row / p.dim;
  float* st = static_cast<float*>(q.seg_state) + row * 2 * N + n;
  const int64_t segst = rows * 2 * N;  // one segment's slice
  float lam = q.grad_h_last ? static_cast<const float*>(q.grad_h_last)[b * q.grad_h_last_stride[0] +
                                                                        d * q.grad_h_last_stride[1] + n * q.grad_h_last_stride[2]]
                            : 0.f;
  float loc = st[(sp.nseg - 1) * segst];
  for (int64_t k = sp.nseg - 1; k >= 1; --k) {
    lam = fmaf(st[k * segst + N], lam, loc);
    if (k >= 2) loc = st[(k - 1) * segst];
    st[(k - 1) * segst] = lam;
  }
}

// ------------------------------------------------------------------------------------------
// Host side: configuration by N, and dispatch by dtype.

bool aligned_rows(const void* ptr, const int64_t* st, int variable, size_t elem) {
  if (!variable || st[3] != 1) return false;
  const int64_t q = 4;
  return st[0] % q == 0 && st[1] % q == 0 && st[2] % q == 0 && reinterpret_cast<uintptr_t>(ptr) % (4 * elem) == 0;
}

// The N > 64 configurations of the old kernel (channels per block bounded by shared memory:
// the chunk's 64 x LPC x NS states per channel). Variable dB/dC are added with atomics there.
template <int LPC, int NS>
struct Cfg {
  static constexpr bool tiled = false;
  static constexpr int lpc = LPC, ns = NS, gpb = 1, rpb = 1;
  static constexpr bool atomic_bc = true;
};

// Backward configuration by N: (states per lane, lanes per channel, tile steps, threads, blocks
// per SM), shared-memory sizes in selective_scan.cu.
template <typename Fn>
lrnn_status with_config(int64_t N, Fn fn) {
  if (N <= 8) return fn(BwdCfg<2, 4, 8, 128, 2>{});
  if (N <= 16) return fn(BwdCfg<2, 8, 8, 128, 3>{});
  if (N <= 32) return fn(BwdCfg<4, 8, 8, 128, 2>{});
  if (N <= 64) return fn(BwdCfg<4, 16, 8, 256, 1>{});
  if (N <= 128) return fn(Cfg<32, 4>{});
  return fn(Cfg<32, 8>{});
}

lrnn_status last_error() { return cudaGetLastError() == cudaSuccess ? LRNN_OK : LRNN_ERR_CUDA; }

// Forward configuration by N: (states per lane, lanes per row, tile steps, threads). N <= 16 takes
// 4 lanes x 4 states when that still gives >= ~8 warps per SM (B*D >= 8448), else 8 lanes x 2
// states (twice the lanes for long sequences with few rows, e.g. (2, 1536, *, 16)).
constexpr int64_t kFwdManyThreads = 132 * 256;

template <typename Fn>
lrnn_status with_fwd_config(int64_t N, int64_t rows, Fn fn) {
  if (N <= 8) return fn(FwdCfg<2, 4, 32, 128, 4>{});
  if (N <= 16) return rows * 4 >= kFwdManyThreads ? fn(FwdCfg<4, 4, 32, 128, 3>{}) : fn(FwdCfg<2, 8, 32, 128, 4>{});
  if (N <= 32) return fn(FwdCfg<4, 8, 32, 128, 3>{});
  if (N <= 64) return fn(FwdCfg<8, 8, 16, 128, 3>{});
  if (N <= 128) return fn(FwdCfg<8, 16, 16, 256, 1>{});
  return fn(FwdCfg<16, 16, 16, 256, 1>{});
}

// A (batch, channel, time) tensor can be read in aligned runs of `per` elements.
bool aligned_runs(const void* ptr, const int64_t (&st)[3], int per, size_t elem) {
  if (!ptr || st[2] != 1) return false;
  return st[0] % per == 0 && st[1] % per == 0 && reinterpret_cast<uintptr_t>(ptr) % (per * elem) == 0;
}

// Time split: segments when the rows alone give too few threads (long sequences, small B*D: at
// most kSplitRows / 2 rows) and chunk_states (the workspace of the split) is written. Automatic:
// about `target` rows x segments, kSplitRows (12288, the parallelism of (8, 1536, *, 16), which
// fills the H200 at N = 16) for the backward and twice that for the forward (H200, (2, 1536,
// 16384, 16): forward 0.822 / 0.839 ms f32 / bf16 with 12288, 0.798 / 0.825 with 24576, 0.926 /
// 0.894 with 6144; backward 3.51 / 3.50 with 12288, 3.59 / 3.55 with 24576, 3.53 / 3.61 with
// 6144); forced by p->time_segment (tests). Returns the segment length, a multiple of 2 * kChunk
// (the first pass keeps the decay in the slot before a segment's end), or 0: no split.
constexpr int64_t kSplitRows = 12288, kSplitRowsFwd = 2 * kSplitRows, kMinSegment = 512;

int64_t fwd_segment(const lrnn_selective_scan_params* p, int64_t rows, int64_t target) {
  const int64_t L = p->length, unit = 2 * kChunk;
  if (!p->chunk_states || L <= unit) return 0;
  int64_t want;
  if (p->time_segment > 0) {
    want = p->time_segment;
  } else {
    if (rows * 2 > kSplitRows) return 0;
    const int64_t nseg = (target + rows - 1) / rows;
    want = (L + nseg - 1) / nseg;
    if (want < kMinSegment) want = kMinSegment;
  }
  const int64_t seg = (want + unit - 1) / unit * unit;
  return seg < L ? seg : 0;
}

// A variable (b, g, n, t) B/C tensor can be read in aligned runs of `per` steps.
bool aligned_bc(const void* ptr, const int64_t* st, int variable, int per, size_t elem) {
  if (!variable || st[3] != 1) return false;
  return st[0] % per == 0 && st[1] % per == 0 && st[2] % per == 0 && reinterpret_cast<uintptr_t>(ptr) % (per * elem) == 0;
}

template <typename T>
lrnn_status fwd_launch(const lrnn_selective_scan_params* p, cudaStream_t s) {
  const int64_t rows = p->batch * p->dim;
  const int64_t seg_len = fwd_segment(p, rows, kSplitRowsFwd);
  const FwdSplit sp{seg_len > 0 ? seg_len : (p->length > 0 ? p->length : 1),
                    seg_len > 0 ? (p->length + seg_len - 1) / seg_len : 1};
  return with_fwd_config(p->dstate, rows * sp.nseg, [&](auto cfg) {
    using C = decltype(cfg);
    constexpr int per = Run<T, C::m>::kPer;
    constexpr int eper = Run<T, C::e>::kPer;
    const FwdVec vec{aligned_runs(p->u, p->u_stride, per, sizeof(T)), aligned_runs(p->delta, p->delta_stride, per, sizeof(T)),
                     aligned_runs(p->dt_A, p->dt_A_stride, per, sizeof(T)), aligned_runs(p->z, p->z_stride, per, sizeof(T)),
                     aligned_runs(p->y, p->y_stride, per, sizeof(T)), aligned_bc(p->Bm, p->B_stride, p->B_variable, eper, sizeof(T)),
                     aligned_bc(p->Cm, p->C_stride, p->C_variable, eper, sizeof(T))};
    const int64_t S = (p->B_variable || p->C_variable) ? p->groups : 1, seg = p->dim / S;
    const int64_t per_seg = p->batch * S * ((seg + C::rpb - 1) / C::rpb);
    const size_t smem = C::smem_bytes();
    const bool both = p->B_variable && p->C_variable;
    auto kernel = both ? selective_scan_fwd_kernel<T, C, true, false> : selective_scan_fwd_kernel<T, C, false, false>;
    if (smem > 48 * 1024 &&
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)) != cudaSuccess)
      return LRNN_ERR_CUDA;
    if (sp.nseg > 1) {
      auto local = both ? selective_scan_fwd_kernel<T, C, true, true> : selective_scan_fwd_kernel<T, C, false, true>;
      if (smem > 48 * 1024 &&
          cudaFuncSetAttribute(local, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)) != cudaSuccess)
        return LRNN_ERR_CUDA;
      local<<<static_cast<unsigned>(per_seg * (sp.nseg - 1)), C::threads, smem, s>>>(*p, vec, sp);
      const int64_t n = p->batch * p->dim * p->dstate;
      selective_scan_fwd_combine_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, s>>>(*p, sp);
    }
    kernel<<<static_cast<unsigned>(per_seg * sp.nseg), C::threads, smem, s>>>(*p, vec, sp);
    return last_error();
  });
}


template <typename T>
lrnn_status bwd_launch(const lrnn_selective_scan_bwd_params* q, int64_t items, cudaStream_t s) {
  const lrnn_selective_scan_params* p = &q->fwd;
  const bool variable = p->B_variable || p->C_variable;
  return with_config(p->dstate, [&](auto cfg) {
    using C = decltype(cfg);
    if constexpr (C::tiled) {
      constexpr int per = Run<T, C::mk>::kPer;
      const size_t e = sizeof(T);
      const BwdVec vec{aligned_runs(p->u, p->u_stride, per, e),      aligned_runs(p->delta, p->delta_stride, per, e),
                       aligned_runs(p->dt_A, p->dt_A_stride, per, e), aligned_runs(p->z, p->z_stride, per, e),
                       aligned_runs(q->grad_y, q->grad_y_stride, per, e), aligned_runs(q->du, q->du_stride, per, e),
                       aligned_runs(q->ddelta, q->ddelta_stride, per, e), aligned_runs(q->dz, q->dz_stride, per, e),
                       aligned_runs(q->ddt_A, q->ddt_A_stride, per, e),
                       aligned_bc(p->Bm, p->B_stride, p->B_variable, Run<T, C::e>::kPer, e),
                       aligned_bc(p->Cm, p->C_stride, p->C_variable, Run<T, C::e>::kPer, e)};
      auto kernel = p->B_variable && p->C_variable ? selective_scan_bwd_tile_kernel<T, C, true>
                                                   : selective_scan_bwd_tile_kernel<T, C, false>;
      const size_t smem = C::smem_bytes(variable);
      if (smem > 48 * 1024 &&
          cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)) != cudaSuccess)
        return LRNN_ERR_CUDA;
      // the largest shared-memory carveout (as measured on the H200; N = 16 runs 3 blocks per SM, limited
      // by registers)
      if (cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared) != cudaSuccess)
        return LRNN_ERR_CUDA;
      const int64_t rows = p->batch * p->dim, seg_len = fwd_segment(p, rows, kSplitRows);
      const FwdSplit sp{seg_len > 0 ? seg_len : (p->length > 0 ? p->length : 1),
                        seg_len > 0 ? (p->length + seg_len - 1) / seg_len : 1};
      if (sp.nseg > 1) {
        // first pass and combine: the adjoint entering each segment (layout of the forward)
        const lrnn_status st = with_fwd_config(p->dstate, rows * sp.nseg, [&](auto fcfg) {
          using F = decltype(fcfg);
          constexpr int fper = Run<T, F::m>::kPer;
          const BwdVec fvec{false, aligned_runs(p->delta, p->delta_stride, fper, e), aligned_runs(p->dt_A, p->dt_A_stride, fper, e),
                            aligned_runs(p->z, p->z_stride, fper, e), aligned_runs(q->grad_y, q->grad_y_stride, fper, e),
                            false, false, false, false, false, false};
          const int64_t S = variable ? p->groups : 1, per_seg = p->batch * S * ((p->dim / S + F::rpb - 1) / F::rpb);
          const size_t lsmem = sizeof(float) * (2 * size_t(F::rpb) * F::srow + size_t(F::np) * F::vp);
          auto local = selective_scan_bwd_local_kernel<T, F>;
          if (lsmem > 48 * 1024 &&
              cudaFuncSetAttribute(local, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(lsmem)) != cudaSuccess)
            return LRNN_ERR_CUDA;
          local<<<static_cast<unsigned>(per_seg * (sp.nseg - 1)), F::threads, lsmem, s>>>(*q, sp, fvec);
          const int64_t n = rows * p->dstate;
          selective_scan_bwd_combine_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, s>>>(*q, sp);
          return LRNN_OK;
        });
        if (st != LRNN_OK) return st;
      }
      kernel<<<static_cast<unsigned>(items * sp.nseg), C::threads, smem, s>>>(*q, vec, sp);
    } else {
      const bool vecB = aligned_rows(p->Bm, p->B_stride, p->B_variable, sizeof(T));
      const bool vecC = aligned_rows(p->Cm, p->C_stride, p->C_variable, sizeof(T));
      using SM = BwdSmem<C::lpc, C::ns, C::gpb>;
      auto kernel = selective_scan_bwd_kernel<T, C::lpc, C::ns, C::gpb>;
      const size_t smem = SM::bytes(variable);
      if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)) != cudaSuccess)
        return LRNN_ERR_CUDA;
      kernel<<<static_cast<unsigned>(items), C::gpb * C::lpc, smem, s>>>(*q, vecB, vecC, C::atomic_bc);
    }
    return last_error();
  });
}

}  // namespace
}  // namespace lrnn_ss
