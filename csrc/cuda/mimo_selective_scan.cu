/* mimo_selective_scan.cu: the CUDA stages "in" and "out" of S7's MIMO selective scan
 * (lrnn/mimo_selective_scan.h); the middle stage is the event scan (event_scan.cu).
 *
 * Every product here is a GEMM over the token axis with a cheap epilogue or a cheap operand:
 *   contract: a token tile times the weight rows of one group g, K = H (the input), i.e. a tile
 *     of the per-token matrix B_t or C_t held in registers and never stored; the epilogue
 *     multiplies each entry by a per-token factor and sums a group's columns:
 *       in_fwd  v[p]    = sum_{j,c} (W u + bb)[p, j, c] u[j]           (group p, by c)
 *       out_fwd y[o]    = sum_{p,c} (W u + bc)[o, p, c] hh[p, c]       hh = (Re h, -Im h)
 *       out_bwd gh[p]   = sum_{o,c} (W u + bc)[o, p, c] dy[o]          (group p, by c; conj)
 *       in_bwd  du1[j]  = sum_{p,c} (W u + bb)[p, j, c] dv[p, c]       (group j)
 *   du: du[i] = sum_r A[r] W[r, i] with A formed while loading: dy[o] hh[p, c] (out) or
 *     dv[p, c] u[j] (in), r the weight row; in_bwd adds du1 and the du out_bwd wrote.
 *   wgrad: dW[r, i] = sum_t A_t[r] u_t[i] and db[r] = sum_t A_t[r], split over S token slices
 *     into a workspace and summed slice by slice in a fixed order (no atomics: reproducible).
 * All tiles are 64 x 64 on 256 threads (16 x 16, each 4 x 4 outputs, rows ty + 16 r and
 * columns tx + 16 s, so a thread's columns share the parity c = tx & 1 of the (re, im) axis),
 * with K staged through shared memory in chunks of 16. Grids are 1-D (group major, token tile
 * minor: consecutive blocks read the same weights from L2). */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "lrnn/mimo_selective_scan.h"

namespace {

constexpr int NT = 256;      // threads per block, a 16 x 16 grid
constexpr int TM = 64;       // tile rows
constexpr int TN = 64;       // tile columns
constexpr int KC = 16;       // reduction chunk staged in shared memory
constexpr int LD = TM + 1;   // padded shared rows: the transposing stores hit distinct banks
static_assert(TM == TN && NT == 16 * 16 && TM == 4 * 16 && NT * 4 == TM * KC, "index maps below");

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

enum Contract { kInFwd, kOutFwd, kOutGh, kInDu1 };

/* The (re, im)-split factor of the conjugated state: Re(C h) = C_re h_re - C_im h_im. */
__device__ __forceinline__ float hh(float2 h, int c) { return c ? -h.y : h.x; }

/* acc[r][s] += sum_k a[k][ty + 16 r] * b[k][tx + 16 s] over one staged chunk. */
__device__ __forceinline__ void mac_chunk(float (&acc)[4][4], const float (*a)[LD], const float (*b)[LD], int ty,
                                          int tx) {
#pragma unroll
  for (int k = 0; k < KC; ++k) {
    float x[4], y[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) x[r] = a[k][ty + 16 * r];
#pragma unroll
    for (int s = 0; s < 4; ++s) y[s] = b[k][tx + 16 * s];
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int s = 0; s < 4; ++s) acc[r][s] = fmaf(x[r], y[s], acc[r][s]);
  }
}

/* One block: token tile `tile` x all Q columns of group g (in chunks of TN). Column q of group g
 * is the weight row (a, b, c) = (g, q >> 1, q & 1) (in_fwd, out_fwd) or (q >> 1, g, q & 1). */
template <typename T, int M>
__global__ void __launch_bounds__(NT) contract_kernel(const lrnn_mimo_params p, float* du1) {
  __shared__ float as[KC][LD], ws[KC][LD];
  __shared__ int64_t tb[TM], tt[TM];
  constexpr bool kIn = M == kInFwd || M == kInDu1, kGroupFirst = M == kInFwd || M == kOutFwd;
  const int64_t H = p.in_dim, P = p.state_dim, O = p.out_dim, N = p.batch * p.length;
  const int64_t tiles = (N + TM - 1) / TM;
  const int64_t Q = M == kInFwd ? 2 * H : M == kOutGh ? 2 * O : 2 * P;
  const int64_t tile = blockIdx.x % tiles, g = blockIdx.x / tiles;
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  if (tid < TM) {
    const int64_t k = tile * TM + tid;
    tb[tid] = k < N ? k / p.length : -1;
    tt[tid] = k < N ? k % p.length : 0;
  }
  const T* u = static_cast<const T*>(p.u);
  const float* w = static_cast<const float*>(kIn ? p.wb : p.wc);
  const float* bias = static_cast<const float*>(kIn ? p.bb : p.bc);
  const int64_t* wst = kIn ? p.wb_stride : p.wc_stride;
  const int64_t* bst = kIn ? p.bb_stride : p.bc_stride;
  const int64_t wg = g * (kGroupFirst ? wst[0] : wst[1]), wq = kGroupFirst ? wst[1] : wst[0];
  const int64_t bg = g * (kGroupFirst ? bst[0] : bst[1]), bq = kGroupFirst ? bst[1] : bst[0];
  __syncthreads();

  float part[4] = {0.f, 0.f, 0.f, 0.f};
  for (int64_t n0 = 0; n0 < Q; n0 += TN) {
    float acc[4][4];
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      const int64_t q = n0 + tx + 16 * s;
      const float b0 = bias && q < Q ? bias[bg + (q >> 1) * bq + (q & 1) * bst[2]] : 0.f;
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[r][s] = b0;
    }
    for (int64_t i0 = 0; i0 < H; i0 += KC) {
#pragma unroll
      for (int l = 0; l < 4; ++l) {
        const int e = tid + NT * l, m = e / KC, kk = e % KC;
        const int64_t i = i0 + kk, q = n0 + m;
        as[kk][m] = tb[m] >= 0 && i < H ? to_f(u[tb[m] * p.u_stride[0] + tt[m] * p.u_stride[1] + i * p.u_stride[2]]) : 0.f;
        ws[kk][m] = q < Q && i < H ? w[wg + (q >> 1) * wq + (q & 1) * wst[2] + i * wst[3]] : 0.f;
      }
      __syncthreads();
      mac_chunk(acc, as, ws, ty, tx);
      __syncthreads();
    }
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int m = ty + 16 * r;
      if (tb[m] < 0) continue;
      const int64_t b = tb[m], t = tt[m];
#pragma unroll
      for (int s = 0; s < 4; ++s) {
        const int64_t q = n0 + tx + 16 * s, idx = q >> 1;
        const int c = static_cast<int>(q & 1);
        if (q >= Q) continue;
        float f;
        if (M == kInFwd) {
          f = to_f(u[b * p.u_stride[0] + t * p.u_stride[1] + idx * p.u_stride[2]]);
        } else if (M == kOutFwd) {
          f = hh(static_cast<const float2*>(p.h)[b * p.h_stride[0] + t * p.h_stride[1] + idx * p.h_stride[2]], c);
        } else if (M == kOutGh) {
          f = to_f(static_cast<const T*>(p.y)[b * p.y_stride[0] + t * p.y_stride[1] + idx * p.y_stride[2]]);
        } else {
          const float2 dv = static_cast<const float2*>(p.v)[b * p.v_stride[0] + t * p.v_stride[1] + idx * p.v_stride[2]];
          f = c ? dv.y : dv.x;
        }
        part[r] = fmaf(acc[r][s], f, part[r]);
      }
    }
  }
  /* sum over the 16 column lanes tx of a half-warp: by parity (re / im apart) or all */
  constexpr bool kByParity = M == kInFwd || M == kOutGh;
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    if (!kByParity) part[r] += __shfl_xor_sync(0xffffffffu, part[r], 1);
    part[r] += __shfl_xor_sync(0xffffffffu, part[r], 2);
    part[r] += __shfl_xor_sync(0xffffffffu, part[r], 4);
    part[r] += __shfl_xor_sync(0xffffffffu, part[r], 8);
    const float odd = __shfl_down_sync(0xffffffffu, part[r], 1);
    const int m = ty + 16 * r;
    if (tx != 0 || tb[m] < 0) continue;
    const int64_t b = tb[m], t = tt[m];
    if (M == kInFwd)
      static_cast<float2*>(p.v)[b * p.v_stride[0] + t * p.v_stride[1] + g * p.v_stride[2]] = make_float2(part[r], odd);
    else if (M == kOutGh)
      static_cast<float2*>(p.h)[b * p.h_stride[0] + t * p.h_stride[1] + g * p.h_stride[2]] = make_float2(part[r], -odd);
    else if (M == kOutFwd)
      static_cast<T*>(p.y)[b * p.y_stride[0] + t * p.y_stride[1] + g * p.y_stride[2]] = from_f<T>(part[r]);
    else
      du1[(tile * TM + m) * H + g] = part[r];
  }
}

/* The operand A[token][r] of the backward products, r = (a, b, c) a weight row:
 * out: dy[a] hh(h[b], c) (= gC); in: dv[a]_c u[b] (= gB). */
template <typename T, bool kIn>
__device__ __forceinline__ float grad_operand(const lrnn_mimo_params& p, int64_t b, int64_t t, int64_t ra, int64_t rb,
                                              int c) {
  if (kIn) {
    const float2 dv = static_cast<const float2*>(p.v)[b * p.v_stride[0] + t * p.v_stride[1] + ra * p.v_stride[2]];
    const T* u = static_cast<const T*>(p.u);
    return (c ? dv.y : dv.x) * to_f(u[b * p.u_stride[0] + t * p.u_stride[1] + rb * p.u_stride[2]]);
  }
  const T* dy = static_cast<const T*>(p.y);
  const float2 h = static_cast<const float2*>(p.hs)[b * p.hs_stride[0] + t * p.hs_stride[1] + rb * p.hs_stride[2]];
  return to_f(dy[b * p.y_stride[0] + t * p.y_stride[1] + ra * p.y_stride[2]]) * hh(h, c);
}

/* du[token][i] = sum_r A[token][r] W[r][i] (+ du1 + the du already there, for in); one block
 * per (token tile, 64 columns of i), K = all R weight rows. */
template <typename T, bool kIn>
__global__ void __launch_bounds__(NT) du_kernel(const lrnn_mimo_params p, const float* du1) {
  __shared__ float as[KC][LD], ws[KC][LD];
  __shared__ int64_t tb[TM], tt[TM];
  const int64_t H = p.in_dim, N = p.batch * p.length;
  const int mid = static_cast<int>(kIn ? H : p.state_dim);   // the extent of b in a row (a, b, c)
  const int R = static_cast<int>((kIn ? p.state_dim : p.out_dim) * mid * 2);
  const int64_t tiles = (N + TM - 1) / TM;
  const int64_t tile = blockIdx.x % tiles, i0 = (blockIdx.x / tiles) * TN;
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  if (tid < TM) {
    const int64_t k = tile * TM + tid;
    tb[tid] = k < N ? k / p.length : -1;
    tt[tid] = k < N ? k % p.length : 0;
  }
  const float* w = static_cast<const float*>(kIn ? p.wb : p.wc);
  const int64_t* wst = kIn ? p.wb_stride : p.wc_stride;
  __syncthreads();
  float acc[4][4] = {};
  for (int r0 = 0; r0 < R; r0 += KC) {
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const int e = tid + NT * l;
      {  // A: (token m, row r0 + kk), consecutive threads along r
        const int m = e / KC, kk = e % KC, r = r0 + kk;
        as[kk][m] = tb[m] >= 0 && r < R ? grad_operand<T, kIn>(p, tb[m], tt[m], r / (2 * mid), (r >> 1) % mid, r & 1) : 0.f;
      }
      {  // W: (row r0 + kk, column i0 + n), consecutive threads along i
        const int kk = e / TN, n = e % TN, r = r0 + kk;
        const int64_t i = i0 + n;
        ws[kk][n] = r < R && i < H ? w[(r / (2 * mid)) * wst[0] + ((r >> 1) % mid) * wst[1] + (r & 1) * wst[2] + i * wst[3]]
                                   : 0.f;
      }
    }
    __syncthreads();
    mac_chunk(acc, as, ws, ty, tx);
    __syncthreads();
  }
  T* du = static_cast<T*>(p.du);
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int m = ty + 16 * r;
    if (tb[m] < 0) continue;
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      const int64_t i = i0 + tx + 16 * s;
      if (i >= H) continue;
      T* d = du + tb[m] * p.du_stride[0] + tt[m] * p.du_stride[1] + i * p.du_stride[2];
      *d = from_f<T>(kIn ? to_f(*d) + du1[(tile * TM + m) * H + i] + acc[r][s] : acc[r][s]);
    }
  }
}

/* How the weight gradient of a stage is split over token slices, and where things lie in the
 * workspace (a function of the sizes only, so the summation order never changes). */
struct Plan {
  int64_t rows, tokens, slices, slice_tokens, tiles;
  int64_t wpart, bpart, du1, bytes;   // byte offsets, total
};

Plan plan_of(const lrnn_mimo_params* p, bool in) {
  Plan o{};
  const int64_t H = p->in_dim;
  o.rows = (in ? p->state_dim * H : p->out_dim * p->state_dim) * 2;
  o.tokens = p->batch * p->length;
  o.tiles = ((o.rows + TM - 1) / TM) * ((H + TN - 1) / TN);
  /* about 8 blocks of 256 threads per SM of a 132-SM device, slices of at least 256 tokens */
  const int64_t want = (1056 + o.tiles - 1) / o.tiles, most = (o.tokens + 255) / 256;
  o.slices = want < most ? want : most;
  if (o.slices < 1) o.slices = 1;
  o.slice_tokens = ((o.tokens + o.slices - 1) / o.slices + KC - 1) / KC * KC;
  if (o.slice_tokens < KC) o.slice_tokens = KC;
  o.slices = (o.tokens + o.slice_tokens - 1) / o.slice_tokens;
  if (o.slices < 1) o.slices = 1;
  auto up = [](int64_t x) { return (x + 255) / 256 * 256; };
  o.wpart = 0;
  o.bpart = up(o.slices * o.rows * H * 4);
  o.du1 = o.bpart + up(o.slices * o.rows * 4);
  o.bytes = o.du1 + (in ? up(o.tokens * H * 4) : 0);
  return o;
}

/* Partial dW / db of slice `slice` over tokens [slice * slice_tokens, +slice_tokens): block =
 * (row tile, column tile of i, slice); thread rows ty + 16 r, columns tx + 16 s. */
template <typename T, bool kIn>
__global__ void __launch_bounds__(NT) wgrad_kernel(const lrnn_mimo_params p, float* wpart, float* bpart,
                                                   int64_t slice_tokens) {
  __shared__ float as[KC][LD], us[KC][LD];
  const int64_t H = p.in_dim, N = p.batch * p.length;
  const int64_t mid = kIn ? H : p.state_dim;
  const int64_t R = (kIn ? p.state_dim : p.out_dim) * mid * 2;
  const int64_t rtiles = (R + TM - 1) / TM, ctiles = (H + TN - 1) / TN;
  const int64_t rt = blockIdx.x % rtiles, ct = (blockIdx.x / rtiles) % ctiles, slice = blockIdx.x / (rtiles * ctiles);
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t k0 = slice * slice_tokens, k1 = k0 + slice_tokens < N ? k0 + slice_tokens : N;
  /* this thread loads row rt*TM + (tid % 64) and column ct*TN + (tid % 64) of tokens
   * k0 + tid / 64 + 4 l, l < 4, stepping by KC per chunk: (b, t) advanced without division */
  const int lm = tid % TM, lk = tid / TM;
  const int64_t r = rt * TM + lm, i = ct * TN + lm;
  const int64_t ra = r / (2 * mid), rb = (r >> 1) % mid;
  const int c = static_cast<int>(r & 1);
  int64_t bb[4], tt[4];
#pragma unroll
  for (int l = 0; l < 4; ++l) {
    const int64_t k = k0 + lk + 4 * l;
    bb[l] = k / (p.length > 0 ? p.length : 1);
    tt[l] = k - bb[l] * p.length;
  }
  const T* u = static_cast<const T*>(p.u);
  const bool bias = bpart != nullptr && ct == 0;
  float acc[4][4] = {}, bsum[4] = {0.f, 0.f, 0.f, 0.f};
  for (int64_t kc = k0; kc < k1; kc += KC) {
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const int kk = lk + 4 * l;
      const bool ok = kc + kk < k1;
      as[kk][lm] = ok && r < R ? grad_operand<T, kIn>(p, bb[l], tt[l], ra, rb, c) : 0.f;
      us[kk][lm] = ok && i < H ? to_f(u[bb[l] * p.u_stride[0] + tt[l] * p.u_stride[1] + i * p.u_stride[2]]) : 0.f;
      tt[l] += KC;
      while (tt[l] >= p.length && p.length > 0) {
        tt[l] -= p.length;
        ++bb[l];
      }
    }
    __syncthreads();
    mac_chunk(acc, as, us, ty, tx);
    if (bias) {
#pragma unroll
      for (int k = 0; k < KC; ++k)
#pragma unroll
        for (int q = 0; q < 4; ++q) bsum[q] += as[k][ty + 16 * q];
    }
    __syncthreads();
  }
  float* wo = wpart + slice * R * H;
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const int64_t row = rt * TM + ty + 16 * q;
    if (row >= R) continue;
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      const int64_t col = ct * TN + tx + 16 * s;
      if (col < H) wo[row * H + col] = acc[q][s];
    }
    if (bias && tx == 0) bpart[slice * R + row] = bsum[q];
  }
}

/* out[x] = sum over slices s = 0, 1, ... of part[s * n + x]. */
__global__ void __launch_bounds__(NT) reduce_kernel(float* out, const float* part, int64_t slices, int64_t n) {
  for (int64_t x = blockIdx.x * static_cast<int64_t>(NT) + threadIdx.x; x < n; x += static_cast<int64_t>(gridDim.x) * NT) {
    float s = 0.f;
    for (int64_t k = 0; k < slices; ++k) s += part[k * n + x];
    out[x] = s;
  }
}

lrnn_status check(const lrnn_mimo_params* p, bool need_out) {
  if (!p) return LRNN_ERR_ARGUMENT;
  if (p->batch < 0 || p->length < 0 || p->in_dim <= 0 || p->state_dim <= 0 || (need_out && p->out_dim <= 0))
    return LRNN_ERR_SHAPE;
  if (p->state_dtype != LRNN_C64 || (p->dtype != LRNN_F32 && p->dtype != LRNN_BF16 && p->dtype != LRNN_F16))
    return LRNN_ERR_DTYPE;
  /* 32-bit row indices in du_kernel; 1-D grids */
  const int64_t R = 2 * p->state_dim * (need_out ? p->out_dim : p->in_dim);
  if (R > (1LL << 30) || 2 * p->state_dim * p->in_dim > (1LL << 30)) return LRNN_ERR_SHAPE;
  return LRNN_OK;
}

bool grid_limit_ok(int64_t blocks) { return blocks > 0 && blocks < 2147483647LL; }

template <typename T, int M>
lrnn_status launch_contract(const lrnn_mimo_params& p, float* du1, cudaStream_t s) {
  const int64_t N = p.batch * p.length, tiles = (N + TM - 1) / TM;
  const int64_t G = M == kInFwd || M == kOutGh ? p.state_dim : M == kOutFwd ? p.out_dim : p.in_dim;
  if (!grid_limit_ok(tiles * G)) return LRNN_ERR_SHAPE;
  auto k = contract_kernel<T, M>;
  k<<<static_cast<unsigned>(tiles * G), NT, 0, s>>>(p, du1);
  return cudaGetLastError() == cudaSuccess ? LRNN_OK : LRNN_ERR_CUDA;
}

template <int M>
lrnn_status contract_any(const lrnn_mimo_params& p, float* du1, cudaStream_t s) {
  switch (p.dtype) {
    case LRNN_F32: return launch_contract<float, M>(p, du1, s);
    case LRNN_BF16: return launch_contract<__nv_bfloat16, M>(p, du1, s);
    case LRNN_F16: return launch_contract<__half, M>(p, du1, s);
    default: return LRNN_ERR_DTYPE;
  }
}

template <typename T, bool kIn>
lrnn_status launch_bwd(const lrnn_mimo_params& p, void* workspace, cudaStream_t s) {
  const Plan o = plan_of(&p, kIn);
  const int64_t H = p.in_dim, N = o.tokens;
  char* ws = static_cast<char*>(workspace);
  float* wpart = reinterpret_cast<float*>(ws + o.wpart);
  float* bpart = p.db ? reinterpret_cast<float*>(ws + o.bpart) : nullptr;
  float* du1 = reinterpret_cast<float*>(ws + o.du1);
  if (N > 0) {
    lrnn_status st = kIn ? launch_contract<T, kInDu1>(p, du1, s) : launch_contract<T, kOutGh>(p, nullptr, s);
    if (st != LRNN_OK) return st;
    const int64_t tiles = (N + TM - 1) / TM, ctiles = (H + TN - 1) / TN;
    if (!grid_limit_ok(tiles * ctiles) || !grid_limit_ok(o.tiles * o.slices)) return LRNN_ERR_SHAPE;
    auto kd = du_kernel<T, kIn>;
    kd<<<static_cast<unsigned>(tiles * ctiles), NT, 0, s>>>(p, du1);
    auto kw = wgrad_kernel<T, kIn>;
    kw<<<static_cast<unsigned>(o.tiles * o.slices), NT, 0, s>>>(p, wpart, bpart, o.slice_tokens);
    const int64_t n = o.rows * H;
    reduce_kernel<<<static_cast<unsigned>((n + NT - 1) / NT < 4096 ? (n + NT - 1) / NT : 4096), NT, 0, s>>>(
        static_cast<float*>(p.dw), wpart, o.slices, n);
    if (bpart)
      reduce_kernel<<<static_cast<unsigned>((o.rows + NT - 1) / NT), NT, 0, s>>>(static_cast<float*>(p.db), bpart,
                                                                                 o.slices, o.rows);
  } else {
    /* no tokens: zero gradients (du, gh have no elements) */
    if (cudaMemsetAsync(p.dw, 0, static_cast<size_t>(o.rows * H) * 4, s) != cudaSuccess) return LRNN_ERR_CUDA;
    if (p.db && cudaMemsetAsync(p.db, 0, static_cast<size_t>(o.rows) * 4, s) != cudaSuccess) return LRNN_ERR_CUDA;
  }
  return cudaGetLastError() == cudaSuccess ? LRNN_OK : LRNN_ERR_CUDA;
}

template <bool kIn>
lrnn_status bwd_any(const lrnn_mimo_params* p, void* workspace, void* stream) {
  const lrnn_status st = check(p, !kIn);
  if (st != LRNN_OK) return st;
  if (!p->dw || !workspace || (p->batch * p->length > 0 && (!p->u || !p->v || !p->du || (kIn ? !p->wb : !p->wc || !p->hs || !p->y || !p->h))))
    return LRNN_ERR_ARGUMENT;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (p->dtype) {
    case LRNN_F32: return launch_bwd<float, kIn>(*p, workspace, s);
    case LRNN_BF16: return launch_bwd<__nv_bfloat16, kIn>(*p, workspace, s);
    case LRNN_F16: return launch_bwd<__half, kIn>(*p, workspace, s);
    default: return LRNN_ERR_DTYPE;
  }
}

}  // namespace

extern "C" int64_t lrnn_mimo_bwd_workspace_bytes_cuda(const lrnn_mimo_params* p, int stage_in) {
  if (!p || check(p, !stage_in) != LRNN_OK) return 0;
  return plan_of(p, stage_in != 0).bytes;
}

extern "C" lrnn_status lrnn_mimo_in_fwd_cuda(const lrnn_mimo_params* p, void* stream) {
  const lrnn_status st = check(p, false);
  if (st != LRNN_OK) return st;
  if (p->batch * p->length == 0) return LRNN_OK;
  if (!p->u || !p->v || !p->wb) return LRNN_ERR_ARGUMENT;
  return contract_any<kInFwd>(*p, nullptr, static_cast<cudaStream_t>(stream));
}

extern "C" lrnn_status lrnn_mimo_out_fwd_cuda(const lrnn_mimo_params* p, void* stream) {
  const lrnn_status st = check(p, true);
  if (st != LRNN_OK) return st;
  if (p->batch * p->length == 0) return LRNN_OK;
  if (!p->u || !p->h || !p->y || !p->wc) return LRNN_ERR_ARGUMENT;
  return contract_any<kOutFwd>(*p, nullptr, static_cast<cudaStream_t>(stream));
}

extern "C" lrnn_status lrnn_mimo_out_bwd_cuda(const lrnn_mimo_params* p, void* workspace, void* stream) {
  return bwd_any<false>(p, workspace, stream);
}

extern "C" lrnn_status lrnn_mimo_in_bwd_cuda(const lrnn_mimo_params* p, void* workspace, void* stream) {
  return bwd_any<true>(p, workspace, stream);
}
