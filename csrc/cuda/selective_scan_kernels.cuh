// selective_scan_kernels.cuh: the CUDA selective-scan kernels (design notes in selective_scan.cu)
// and their per-dtype launchers, included by one translation unit per dtype
// (selective_scan_{f32,bf16,f16}.cu) so the instantiations compile in parallel.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "lrnn/selective_scan.h"
#include "selective_scan_launch.h"

namespace lrnn_ss {
namespace {  // internal to each dtype translation unit

constexpr int kChunk = LRNN_SELECTIVE_SCAN_CHUNK;
constexpr float kLog2e = 1.4426950408889634f;
constexpr int kFwdThreads = 128;

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
template <typename T>
__device__ __forceinline__ T from_f(float x);
template <>
__device__ __forceinline__ float from_f<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <>
__device__ __forceinline__ __half from_f<__half>(float x) { return __float2half(x); }

__device__ __forceinline__ float softplus(float x) { return x <= 20.f ? log1pf(__expf(x)) : x; }
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
// Forward: one LPC-lane group per (b, d) row.
template <typename T, int LPC, int NS>
__global__ void __launch_bounds__(kFwdThreads) selective_scan_fwd_kernel(const lrnn_selective_scan_params p,
                                                                         bool vecB, bool vecC) {
  constexpr int GPB = kFwdThreads / LPC;
  __shared__ float2 s_step[GPB][LPC];
  const int grp = threadIdx.x / LPC, lane = threadIdx.x % LPC;
  const int64_t rows = p.batch * p.dim, L = p.length;
  int64_t row = static_cast<int64_t>(blockIdx.x) * GPB + grp;
  const bool valid = row < rows;  // idle groups still run the loops: their warp shuffles with us
  if (!valid) row = rows - 1;
  const int64_t b = row / p.dim, d = row % p.dim;
  const int64_t G = (p.B_variable || p.C_variable) ? p.groups : 1;
  const int64_t g = d / (p.dim / G);
  RowConsts<NS, LPC> rc;
  rc.load(p, d, lane);
  BCRows<T, NS, LPC> bc;
  bc.init(p, b, g, lane);
  float h[NS];
#pragma unroll
  for (int k = 0; k < NS; ++k) {
    const int n = lane + k * LPC;
    h[k] = (p.h0 && n < p.dstate) ? static_cast<const float*>(p.h0)[b * p.h0_stride[0] + d * p.h0_stride[1] + n * p.h0_stride[2]] : 0.f;
  }
  auto save_chunk = [&](int64_t t0) {
    if (p.chunk_states && valid && t0 % kChunk == 0) {
#pragma unroll
      for (int k = 0; k < NS; ++k) {
        const int n = lane + k * LPC;
        if (n < p.dstate)
          static_cast<float*>(p.chunk_states)[b * p.chunk_states_stride[0] + d * p.chunk_states_stride[1] +
                                              (t0 / kChunk) * p.chunk_states_stride[2] + n * p.chunk_states_stride[3]] = h[k];
      }
    }
  };
  const Row<T> ur(p.u, p.u_stride, b, d), dr(p.delta, p.delta_stride, b, d), ar(p.dt_A, p.dt_A_stride, b, d),
      zr(p.z, p.z_stride, b, d), yr(p.y, p.y_stride, b, d);
  for (int64_t t0 = 0; t0 < L; t0 += LPC) {
    save_chunk(t0);
    const int64_t t = t0 + lane;
    float u = 0.f, dta = 0.f, dbu = 0.f;
    if (t < L) {
      u = ur.load(t);
      float dt = dr.load(t) + rc.bias;
      if (p.delta_softplus) dt = softplus(dt);
      dta = p.dt_A ? ar.load(t) : dt;
      dbu = dt * u;
    }
    __syncwarp();
    s_step[grp][lane] = make_float2(dta, dbu);  // past L: a = 1, no input: an exact no-op step
    __syncwarp();
    float yacc[LPC];
#pragma unroll
    for (int j0 = 0; j0 < LPC; j0 += 4) {
      float4 Bv[NS], Cv[NS];
#pragma unroll
      for (int k = 0; k < NS; ++k) {
        Bv[k] = p.B_variable ? load4(bc.B[k], p.B_stride[3], t0 + j0, bc.lenB[k], vecB) : make_float4(rc.Bti[k], rc.Bti[k], rc.Bti[k], rc.Bti[k]);
        Cv[k] = p.C_variable ? load4(bc.C[k], p.C_stride[3], t0 + j0, bc.lenC[k], vecC) : make_float4(rc.Cti[k], rc.Cti[k], rc.Cti[k], rc.Cti[k]);
      }
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) {
        const float2 s = s_step[grp][j0 + jj];
        float acc = 0.f;
#pragma unroll
        for (int k = 0; k < NS; ++k) {
          h[k] = fmaf(exp2f(s.x * rc.A2[k]), h[k], s.y * comp(Bv[k], jj));
          acc = fmaf(comp(Cv[k], jj), h[k], acc);
        }
        yacc[j0 + jj] = acc;
      }
    }
    float y = transpose_reduce<LPC>(yacc, lane);
    if (t < L && valid) {
      y = fmaf(rc.Dd, u, y);
      if (p.z) {
        const float z = zr.load(t);
        y *= z * sigmoid(z);
      }
      yr.store(t, y);
    }
  }
  if (L % kChunk == 0) save_chunk(L);  // the state before the (empty) last chunk
  if (valid) {
#pragma unroll
    for (int k = 0; k < NS; ++k) {
      const int n = lane + k * LPC;
      if (n < p.dstate)
        static_cast<float*>(p.h_last)[b * p.h_last_stride[0] + d * p.h_last_stride[1] + n * p.h_last_stride[2]] = h[k];
    }
  }
}

// ------------------------------------------------------------------------------------------
// Backward, phase 1: one block per work item (b, segment, part) of the C API; GPB groups of
// LPC lanes, group i owning channel d_lo + i of the item.
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
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
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
// Host side: configuration by N, and dispatch by dtype.

bool aligned_rows(const void* ptr, const int64_t* st, int variable, size_t elem) {
  if (!variable || st[3] != 1) return false;
  const int64_t q = 4;
  return st[0] % q == 0 && st[1] % q == 0 && st[2] % q == 0 && reinterpret_cast<uintptr_t>(ptr) % (4 * elem) == 0;
}

template <int LPC, int NS>
struct Cfg {
  static constexpr int lpc = LPC, ns = NS;
  // backward channels per block, bounded by shared memory (64 * LPC * NS floats of chunk states
  // per channel, plus the dB/dC reduction buffers): 16 channels (256 threads) at N <= 16 — the
  // same 8 resident warps per SM as two 128-thread blocks at ~240 registers per thread, with
  // half the dB/dC partials.
  static constexpr int gpb = LPC * NS <= 16 ? 16 : LPC * NS <= 32 ? 4 : LPC * NS <= 64 ? 2 : 1;
  // N > 32: blocks hold only 1-2 channels, so deterministic per-block dB/dC partials would take
  // D / 2 .. D slices of (B, G, N, L) floats (gigabytes at D = 1536); add with atomics instead.
  static constexpr bool atomic_bc = NS > 1;
};

template <typename Fn>
lrnn_status with_config(int64_t N, Fn fn) {
  if (N <= 8) return fn(Cfg<8, 1>{});
  if (N <= 16) return fn(Cfg<16, 1>{});
  if (N <= 32) return fn(Cfg<32, 1>{});
  if (N <= 64) return fn(Cfg<32, 2>{});
  if (N <= 128) return fn(Cfg<32, 4>{});
  return fn(Cfg<32, 8>{});
}

lrnn_status last_error() { return cudaGetLastError() == cudaSuccess ? LRNN_OK : LRNN_ERR_CUDA; }

template <typename T>
lrnn_status fwd_launch(const lrnn_selective_scan_params* p, cudaStream_t s) {
  const int64_t rows = p->batch * p->dim;
  const bool vecB = aligned_rows(p->Bm, p->B_stride, p->B_variable, sizeof(T));
  const bool vecC = aligned_rows(p->Cm, p->C_stride, p->C_variable, sizeof(T));
  return with_config(p->dstate, [&](auto cfg) {
    using C = decltype(cfg);
    constexpr int GPB = kFwdThreads / C::lpc;
    const int64_t blocks = (rows + GPB - 1) / GPB;
    selective_scan_fwd_kernel<T, C::lpc, C::ns><<<static_cast<unsigned>(blocks), kFwdThreads, 0, s>>>(*p, vecB, vecC);
    return last_error();
  });
}

template <typename T>
lrnn_status bwd_launch(const lrnn_selective_scan_bwd_params* q, int64_t items, cudaStream_t s) {
  const lrnn_selective_scan_params* p = &q->fwd;
  const bool variable = p->B_variable || p->C_variable;
  const bool vecB = aligned_rows(p->Bm, p->B_stride, p->B_variable, sizeof(T));
  const bool vecC = aligned_rows(p->Cm, p->C_stride, p->C_variable, sizeof(T));
  return with_config(p->dstate, [&](auto cfg) {
    using C = decltype(cfg);
    using SM = BwdSmem<C::lpc, C::ns, C::gpb>;
    auto kernel = selective_scan_bwd_kernel<T, C::lpc, C::ns, C::gpb>;
    const size_t smem = SM::bytes(variable);
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)) != cudaSuccess)
      return LRNN_ERR_CUDA;
    kernel<<<static_cast<unsigned>(items), C::gpb * C::lpc, smem, s>>>(*q, vecB, vecC, C::atomic_bc);
    return last_error();
  });
}

}  // namespace
}  // namespace lrnn_ss
