/* mimo_selective_scan.cu: the CUDA stages "in" and "out" of S7's MIMO selective scan
 * (lrnn/mimo_selective_scan.h); the middle stage is the event scan (event_scan.cu).
 *
 * Every stage is one form of the trilinear sum  sum over (t, a, g, i) of X[t, a] F[t, g] U[t, i] W[a, g, i]
 * with U = (u, 1) (i = H is the bias column):
 *   in:  a = (p, c) (A = 2P), g = j (G = H),      X = v / dv, F = u[j],           W = wb[p, j, c, i], bb at i = H
 *   out: a = o (A = O),       g = (p, c) (G = 2P), X = y / dy, F = (Re h, -Im h), W = wc[o, p, c, i], bc at i = H
 * "in" is a quadratic form in u, so only its symmetric part counts: with W'[g][i] = W[g, i] + W[i, g]
 * (i > g) and W[g, g] on the diagonal, the sums run over the pairs g <= i only, half the products
 * of the forward, of the token-side backward and of the weight gradient.
 * Forward (fwd3_kernel): X[t, a] = sum_g F[t, g] (sum_i U[t, i] W'[g][i][a] + bias), per token tile
 * with the tile's u kept in shared memory and read by the products directly; only the weights
 * stream, from a panel re-laid out per stage (panel_kernel: columns a contiguous, the sign of hh
 * folded in). B_t and C_t are never stored. fwd2_kernel (products formed while staging from
 * global memory) serves inputs too wide for u in shared memory.
 * Backward: the token-side gradients come from Y[t, (g, i)] = sum_a X[t, a] W[a, g, i] (K = A)
 * contracted two ways in the epilogue: dF[t, g] = sum_i Y U (gh, or the du of F = u) and
 * dU[t, i] = sum_g Y F (du) (twoway_kernel, the tile's X in shared memory when it fits); the
 * weight gradient dW[a, g, i] = sum_t X F U is a GEMM over the tokens with the formed operand on
 * the other side, split into token slices whose partials are summed slice by slice in a fixed
 * order (wgrad2_kernel, reduce2_kernel: no atomics, bitwise reproducible).
 * Tiles: 128 x (16 RN) outputs on 256 threads, K through shared memory 16 at a time; RN <= 4 and
 * at most 128 registers, so that two blocks (16 warps) share an SM (the H200 measured these
 * kernels latency-bound at one block per SM). The products: in the forward on SIMT FMAs (Core:
 * each thread 8 x RN outputs, rows ty*4 + {0..3} and 64 + ty*4 + {0..3}, columns
 * tx*RN + {0..RN-1}, read back as float4), in twoway on tensor cores in 3xTF32 (TcCore: m16n8k8
 * fragments per warp strip, float-accurate), in the weight gradient on SIMT FMAs again - per
 * kernel whichever measured faster on the H200 (BwdCore below). */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "dtype_convert.cuh"
#include "lrnn/mimo_selective_scan.h"
#include "lti_common.cuh"

namespace {

constexpr int NT = 256;   // threads per block, a 16 x 16 grid

using lrnn_cuda::from_f;
using lrnn_cuda::to_f;

lrnn_status check(const lrnn_mimo_params* p, bool need_out) {
  if (!p) return LRNN_ERR_ARGUMENT;
  if (p->batch < 0 || p->length < 0 || p->in_dim <= 0 || p->state_dim <= 0 || (need_out && p->out_dim <= 0))
    return LRNN_ERR_SHAPE;
  if (p->state_dtype != LRNN_C64 || (p->dtype != LRNN_F32 && p->dtype != LRNN_BF16 && p->dtype != LRNN_F16))
    return LRNN_ERR_DTYPE;
  return LRNN_OK;
}

bool grid_limit_ok(int64_t blocks) { return blocks > 0 && blocks < 2147483647LL; }

constexpr int BM = 128, BK = 16, LDA = BM + 4;

template <typename T, bool kIn>
struct Form {
  const T* u;
  const float2* hsrc;   // out: the state whose hh is F (h in the forward, hs in the backward)
  const void* x;        // in: v / dv (float2), out: y / dy (T)
  const float* w;
  const float* bias;
  int64_t us[3], hst[3], xs[3], ws[4], bst[3];
  int64_t H, A, G;

  __device__ Form(const lrnn_mimo_params& p, bool bwd) {
    u = static_cast<const T*>(p.u);
    hsrc = static_cast<const float2*>(bwd ? p.hs : p.h);
    x = kIn ? p.v : p.y;
    w = static_cast<const float*>(kIn ? p.wb : p.wc);
    bias = static_cast<const float*>(kIn ? p.bb : p.bc);
    for (int k = 0; k < 3; ++k) {
      us[k] = p.u_stride[k];
      hst[k] = bwd ? p.hs_stride[k] : p.h_stride[k];
      xs[k] = kIn ? p.v_stride[k] : p.y_stride[k];
      bst[k] = kIn ? p.bb_stride[k] : p.bc_stride[k];
    }
    for (int k = 0; k < 4; ++k) ws[k] = kIn ? p.wb_stride[k] : p.wc_stride[k];
    H = p.in_dim;
    A = kIn ? 2 * p.state_dim : p.out_dim;
    G = kIn ? p.in_dim : 2 * p.state_dim;
  }
  /* W[a, g, i]; the bias at i = H (zero without one) */
  __device__ __forceinline__ float W(int64_t a, int64_t g, int64_t i) const {
    const int64_t pa = kIn ? a >> 1 : a, pb = kIn ? g : g >> 1, c = kIn ? a & 1 : g & 1;
    if (i < H) return w[pa * ws[0] + pb * ws[1] + c * ws[2] + i * ws[3]];
    return bias ? bias[pa * bst[0] + pb * bst[1] + c * bst[2]] : 0.f;
  }
  /* Per-token base offsets, so that staging costs one multiply-add per element: ou into u,
   * of into F's source (in: u; out: h as floats), ox into X's source (in: v as floats; out: y). */
  __device__ __forceinline__ int64_t ou(int64_t b, int64_t t) const { return b * us[0] + t * us[1]; }
  __device__ __forceinline__ int64_t of(int64_t b, int64_t t) const {
    return kIn ? ou(b, t) : 2 * (b * hst[0] + t * hst[1]);
  }
  __device__ __forceinline__ int64_t ox(int64_t b, int64_t t) const {
    return kIn ? 2 * (b * xs[0] + t * xs[1]) : b * xs[0] + t * xs[1];
  }
  /* U (i < H), F without its sign (out: hh's is fsign(g)), X from those offsets */
  __device__ __forceinline__ float Uo(int64_t o, int64_t i) const { return to_f(u[o + i * us[2]]); }
  __device__ __forceinline__ float Fo(int64_t o, int64_t g) const {
    if (kIn) return to_f(u[o + g * us[2]]);
    return reinterpret_cast<const float*>(hsrc)[o + 2 * (g >> 1) * hst[2] + (g & 1)];
  }
  __device__ __forceinline__ float fsign(int64_t g) const { return !kIn && (g & 1) ? -1.f : 1.f; }
  __device__ __forceinline__ float Xo(int64_t o, int64_t a) const {
    if (kIn) return static_cast<const float*>(x)[o + 2 * (a >> 1) * xs[2] + (a & 1)];
    return to_f(static_cast<const T*>(x)[o + a * xs[2]]);
  }
  /* W[a, g, i] as (an a part) + (a g, i part), the bias likewise with i = H */
  __device__ __forceinline__ int64_t wa(int64_t a) const { return kIn ? (a >> 1) * ws[0] + (a & 1) * ws[2] : a * ws[0]; }
  __device__ __forceinline__ int64_t wgi(int64_t g, int64_t i) const {
    return (kIn ? g * ws[1] : (g >> 1) * ws[1] + (g & 1) * ws[2]) + i * ws[3];
  }
  __device__ __forceinline__ int64_t ba(int64_t a) const { return kIn ? (a >> 1) * bst[0] + (a & 1) * bst[2] : a * bst[0]; }
  __device__ __forceinline__ int64_t bg(int64_t g) const { return kIn ? g * bst[1] : (g >> 1) * bst[1] + (g & 1) * bst[2]; }
  /* the row of (a, g) in the contiguous weight gradient (P, H, 2, H) / (O, P, 2, H) */
  __host__ __device__ static int64_t row(int64_t a, int64_t g, int64_t H_, int64_t G_) {
    return kIn ? ((a >> 1) * H_ + g) * 2 + (a & 1) : a * G_ + g;
  }
};

__device__ __forceinline__ int row_of(int r, int ty) { return (r >> 2) * 64 + ty * 4 + (r & 3); }

/* The forward's share of a 128 x 16RN tile on SIMT FMAs: Q = 8 RN values acc[q]; thread
 * (ty, tx) = (tid / 16, tid % 16) holds rows row_of(q / RN) and columns tx RN + q % RN: per k, two
 * float4 of a and RN / 4 float4 (or a float2) of b for 8 RN FMAs. */
template <int RN>
struct Core {
  static constexpr int Q = 8 * RN, BN = 16 * RN;
  using BT = float;   /* a staged b value */
  __device__ static int row(int q) { return row_of(q / RN, threadIdx.x / 16); }
  __device__ static int col(int q) { return (threadIdx.x % 16) * RN + q % RN; }
  __device__ static int slot(int q) { return q / RN; }
  __device__ static int slot_row(int sl) { return row_of(sl, threadIdx.x / 16); }
  __device__ static float row_sum(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    x += __shfl_xor_sync(0xffffffffu, x, 2);
    x += __shfl_xor_sync(0xffffffffu, x, 4);
    x += __shfl_xor_sync(0xffffffffu, x, 8);
    return x;
  }
  __device__ static bool row_owner() { return threadIdx.x % 16 == 0; }
  __host__ __device__ static constexpr int slots() { return 8; }
  __device__ static void put_b(float (*b)[BN + 4], int k, int n, float v) { b[k][n] = v; }
  /* acc += a^T b over one staged chunk of BK */
  __device__ static void mac(float (&acc)[Q], const float (*a)[LDA], const float (*b)[BN + 4]) {
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      const float4 x0 = *reinterpret_cast<const float4*>(&a[k][ty * 4]);
      const float4 x1 = *reinterpret_cast<const float4*>(&a[k][64 + ty * 4]);
      const float x[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
      float y[RN];
      if (RN == 2) {
        const float2 v = *reinterpret_cast<const float2*>(&b[k][tx * RN]);
        y[0] = v.x;
        y[RN - 1] = v.y;
      } else {
#pragma unroll
        for (int q = 0; q < RN / 4; ++q) {
          const float4 v = *reinterpret_cast<const float4*>(&b[k][tx * RN + 4 * q]);
          y[4 * q] = v.x;
          y[(4 * q + 1) % RN] = v.y;
          y[(4 * q + 2) % RN] = v.z;
          y[(4 * q + 3) % RN] = v.w;
        }
      }
#pragma unroll
      for (int r = 0; r < 8; ++r)
#pragma unroll
        for (int s = 0; s < RN; ++s) acc[r * RN + s] = fmaf(x[r], y[s], acc[r * RN + s]);
    }
  }
};

/* acc (NI m16n8 fragments of one warp, 4 values each) += A B for a 16 x 8 slice of k in 3xTF32:
 * a_lo b_hi + a_hi b_lo + a_hi b_hi, the A fragment (hi, lo) shared by the NI column tiles whose
 * B fragments are bh / bl (fragment layouts as lrnn_cuda::mma_tf32). The CPU emulation exchanges
 * all fragments of the strip once (two warp barriers instead of two per product) and sums the
 * same TF32 products in double. */
template <int NI>
__device__ __forceinline__ void mma3_strip(float (&acc)[4 * NI], const uint32_t (&ah)[4], const uint32_t (&al)[4],
                                           const uint32_t (&bh)[NI][2], const uint32_t (&bl)[NI][2]) {
#ifdef __CUDA_ARCH__
#pragma unroll
  for (int ni = 0; ni < NI; ++ni) {
    /* a fresh fragment per strip, added in FP32: the tensor cores' own accumulation truncates,
     * which over thousands of steps biases long sums (2e-4 relative measured on the H200) */
    float d[4] = {0.f, 0.f, 0.f, 0.f};
    lrnn_cuda::mma_tf32(d, al, bh[ni][0], bh[ni][1]);
    lrnn_cuda::mma_tf32(d, ah, bl[ni][0], bl[ni][1]);
    lrnn_cuda::mma_tf32(d, ah, bh[ni][0], bh[ni][1]);
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[4 * ni + j] += d[j];
  }
#else
  static uint32_t tab[1024][8 + 4 * NI];
  const int tid = threadIdx.x, base = tid & ~31, lane = tid & 31, g = lane >> 2, t = lane & 3;
  for (int j = 0; j < 4; ++j) {
    tab[tid][j] = ah[j];
    tab[tid][4 + j] = al[j];
  }
  for (int ni = 0; ni < NI; ++ni)
    for (int j = 0; j < 2; ++j) {
      tab[tid][8 + 2 * ni + j] = bh[ni][j];
      tab[tid][8 + 2 * NI + 2 * ni + j] = bl[ni][j];
    }
  __syncwarp();
  auto tf = [](uint32_t x) { return static_cast<double>(lrnn_cuda::u2f(x & 0xffffe000u)); };
  for (int ni = 0; ni < NI; ++ni)
    for (int e = 0; e < 4; ++e) {
      const int row = g + 8 * (e >> 1), col = 2 * t + (e & 1);
      double sum = 0;
      for (int k = 0; k < 8; ++k) {
        const uint32_t* la = tab[base + (row % 8) * 4 + k % 4];
        const uint32_t* lb = tab[base + col * 4 + k % 4];
        const int ai = (row >= 8) + 2 * (k >= 4), bi = k >= 4;
        const double a_hi = tf(la[ai]), a_lo = tf(la[4 + ai]);
        const double b_hi = tf(lb[8 + 2 * ni + bi]), b_lo = tf(lb[8 + 2 * NI + 2 * ni + bi]);
        sum += a_lo * b_hi + a_hi * b_lo + a_hi * b_hi;
      }
      acc[4 * ni + e] += static_cast<float>(sum);
    }
  __syncwarp();
#endif
}

/* The backward kernels' share of a 128 x 16RN tile on tensor cores (Q = 8 RN values acc[q]):
 *   warp w holds rows 16 w .. 16 w + 15 and all columns as 2 RN m16n8
 *   fragments, q = 4 ni + e -> row 16 w + gq + 8 (e >> 1), column 8 ni + 2 tq + (e & 1) (lane =
 *   4 gq + tq); each product in 3xTF32 (a_lo b_hi + a_hi b_lo + a_hi b_hi: float accuracy), b
 *   split into (hi, lo) pairs once when staged, a at use (each a value serves one warp).
 * The fragment loads a[k][m] (k = tq, tq + 4; m = gq, gq + 8) hit 32 distinct banks (row stride
 * 4 mod 32 words), those of the pairs b[k][n] 16 distinct 8-byte bank pairs per half-warp (row
 * stride 4 mod 16 pairs). */
template <int RN>
struct TcCore {
  static constexpr int Q = 8 * RN, BN = 16 * RN;
  using BT = float2;   /* a staged b value: its (hi, lo) TF32 parts */
  __device__ static int row(int q) {
    const int tid = threadIdx.x;
    return 16 * (tid / 32) + (tid % 32) / 4 + 8 * ((q & 3) >> 1);
  }
  __device__ static int col(int q) {
    const int tid = threadIdx.x;
    return 8 * (q >> 2) + 2 * (tid % 4) + (q & 1);
  }
  /* the rows of a thread, numbered 0 .. slots() - 1; the lanes holding a row's other columns */
  __host__ __device__ static constexpr int slots() { return 2; }
  __device__ static int slot(int q) { return (q & 3) >> 1; }
  __device__ static int slot_row(int sl) { return row(2 * sl); }
  __device__ static float row_sum(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    x += __shfl_xor_sync(0xffffffffu, x, 2);
    return x;
  }
  __device__ static bool row_owner() { return threadIdx.x % 4 == 0; }
  /* b[k][n] = (hi, lo) TF32 parts of v at staging: one 8-byte load per fragment entry */
  __device__ static void put_b(float2 (*b)[BN + 4], int k, int n, float v) {
    const lrnn_cuda::Tf32 s = lrnn_cuda::split_tf32(v);
    b[k][n] = make_float2(lrnn_cuda::u2f(s.hi), lrnn_cuda::u2f(s.lo));
  }
  /* acc += a^T b over one staged chunk of BK */
  __device__ static void mac(float (&acc)[Q], const float (*a)[LDA], const float2 (*b)[BN + 4]) {
    const int tid = threadIdx.x, w = tid / 32, gq = (tid % 32) / 4, tq = tid % 4, m0 = 16 * w + gq;
    {
#pragma unroll
      for (int kb = 0; kb < BK; kb += 8) {
        uint32_t ah[4], al[4];
        const float av[4] = {a[kb + tq][m0], a[kb + tq][m0 + 8], a[kb + tq + 4][m0], a[kb + tq + 4][m0 + 8]};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const lrnn_cuda::Tf32 s = lrnn_cuda::split_tf32(av[j]);
          ah[j] = s.hi;
          al[j] = s.lo;
        }
        uint32_t bh[2 * RN][2], blo[2 * RN][2];
#pragma unroll
        for (int ni = 0; ni < 2 * RN; ++ni) {
          const int n = 8 * ni + gq;
          const float2 b0 = b[kb + tq][n], b1 = b[kb + tq + 4][n];
          bh[ni][0] = lrnn_cuda::f2u(b0.x);
          bh[ni][1] = lrnn_cuda::f2u(b1.x);
          blo[ni][0] = lrnn_cuda::f2u(b0.y);
          blo[ni][1] = lrnn_cuda::f2u(b1.y);
        }
        mma3_strip<2 * RN>(acc, ah, al, bh, blo);
      }
    }
  }
};

/* BwdCore, the backward kernels' products: 0 tensor cores in 3xTF32 (TcCore), 1 SIMT FMAs (Core).
 * Measured on the H200 (2026-11-29, f32, stage out_bwd / in_bwd at (8, 16384, 16, 64) and
 * (8, 4096, 64, 128)): twoway on TcCore 3.18 / 2.63 and 9.83 / 5.95 ms against 3.70 / 3.17 and 11.30 / 6.69 on Core;
 * wgrad2 on Core 3.03 / 2.63 and 9.74 / 5.92 ms against TcCore's 3.18 / 2.63 and 9.83 / 5.95 (and
 * 3.12 / 2.63, 9.76 / 5.94 with TcCore's warps as 4 x 2, dropped). The benchmark builds the other
 * choices with -DLRNN_MIMO_TWOWAY_CORE=1 / -DLRNN_MIMO_WGRAD_CORE=0 to compare. */
#ifndef LRNN_MIMO_TWOWAY_CORE
#define LRNN_MIMO_TWOWAY_CORE 0
#endif
#ifndef LRNN_MIMO_WGRAD_CORE
#define LRNN_MIMO_WGRAD_CORE 1
#endif
template <bool kSimt, int RN>
struct PickCore {
  using type = TcCore<RN>;
};
template <int RN>
struct PickCore<true, RN> {
  using type = Core<RN>;
};
template <int RN>
using TwowayCore = typename PickCore<LRNN_MIMO_TWOWAY_CORE == 1, RN>::type;
template <int RN>
using WgradCore = typename PickCore<LRNN_MIMO_WGRAD_CORE == 1, RN>::type;

/* the tokens of tile `tile` (b, t; b = -1 past the end) into shared memory, by threads < BM */
__device__ __forceinline__ void tile_tokens(int64_t* tb, int64_t* tt, int64_t tile, int64_t N, int64_t L) {
  const int tid = threadIdx.x;
  if (tid < BM) {
    const int64_t k = tile * BM + tid;
    tb[tid] = k < N ? k / L : -1;
    tt[tid] = k < N ? k % L : 0;
  }
}

/* the forward's outputs X[t, a] of a token tile and the columns from n0: v (in) or y (out) */
template <typename T, bool kIn, typename C>
__device__ __forceinline__ void store_x(const lrnn_mimo_params& p, const float (&acc)[C::Q], const int64_t* tb,
                                        const int64_t* tt, int64_t n0, int64_t A) {
#pragma unroll
  for (int q = 0; q < C::Q; ++q) {
    const int m = C::row(q);
    const int64_t a = n0 + C::col(q);
    if (tb[m] < 0 || a >= A) continue;
    const int64_t b = tb[m], t = tt[m];
    if (kIn) {
      if (q % 2 == 0)   /* a even: (re, im) of v[p] are this thread's values q, q + 1 */
        static_cast<float2*>(p.v)[b * p.v_stride[0] + t * p.v_stride[1] + (a >> 1) * p.v_stride[2]] =
            make_float2(acc[q], acc[(q + 1) % C::Q]);
    } else {
      static_cast<T*>(p.y)[b * p.y_stride[0] + t * p.y_stride[1] + a * p.y_stride[2]] = from_f<T>(acc[q]);
    }
  }
}

/* The weight panel of a stage (workspace, built by panel_kernel): per group g, rows i < H + BK of
 * Ap columns a, W'[g][i][a], then the bias rows Wb'[g][a]; zero outside the weights. For "in"
 * the symmetric part of the quadratic form: W'[g][i] = wb[., g, ., i] + wb[., i, ., g] for i > g,
 * wb[., g, ., g] on the diagonal, zero below (v = sum over g <= i of W'[g][i] u_g u_i, half the
 * products); for "out" wc with hh's sign of g folded in (F is then h as stored). Columns a are
 * contiguous, so a chunk (g, 16 rows of i) x (BN columns) is 16 coalesced runs. */
__host__ __device__ inline int64_t panel_cols(int64_t A) { return (A + 127) / 128 * 128; }
__host__ __device__ inline int64_t panel_floats(int64_t G, int64_t H, int64_t A) {
  return G * (H + BK + 1) * panel_cols(A);
}

template <bool kIn>
__global__ void __launch_bounds__(NT) panel_kernel(const lrnn_mimo_params p, float* panel) {
  const Form<float, kIn> f(p, false);
  const int64_t H = f.H, G = f.G, A = f.A, HP = H + BK, Ap = panel_cols(A), nw = G * HP * Ap;
  const int64_t n = nw + G * Ap;
  for (int64_t x = blockIdx.x * static_cast<int64_t>(NT) + threadIdx.x; x < n; x += static_cast<int64_t>(gridDim.x) * NT) {
    float v = 0.f;
    const int64_t a = x % Ap;
    if (x < nw) {
      const int64_t r = x / Ap, i = r % HP, g = r / HP;
      if (a < A && i < H) {
        if (!kIn) v = f.fsign(g) * f.W(a, g, i);
        else if (i >= g) v = f.W(a, g, i) + (i > g ? f.W(a, i, g) : 0.f);
      }
    } else if (a < A) {
      const int64_t g = (x - nw) / Ap;
      v = f.fsign(g) * f.W(a, g, H);
    }
    panel[x] = v;
  }
}

/* "in"'s weight-gradient rows: the pairs (g, i), g <= i <= H (i = H: the bias), row g first;
 * pair_row(g) = g H1 - g (g - 1) / 2 is the index of (g, g) */
__host__ __device__ inline int64_t pair_row(int64_t g, int64_t H1) { return g * H1 - g * (g - 1) / 2; }
__host__ __device__ inline int64_t pair_count(int64_t H) { return pair_row(H, H + 1); }
__device__ inline void pair_of(int64_t mm, int64_t H1, int64_t& g, int64_t& i) {
  const double b = 2.0 * static_cast<double>(H1) + 1.0;
  int64_t r = static_cast<int64_t>((b - sqrt(b * b - 8.0 * static_cast<double>(mm))) * 0.5);
  if (r < 0) r = 0;
  while (r > 0 && pair_row(r, H1) > mm) --r;   /* the root in double may be one off */
  while (pair_row(r + 1, H1) <= mm) ++r;
  g = r;
  i = r + mm - pair_row(r, H1);
}

/* forward: X[t, a] = sum_g F[t, g] (sum_i U[t, i] W'[g][i][a] + Wb'[g][a]) for a token tile and
 * the columns [n0, n0 + 16 RN): the tile's u stays in shared memory (us[i][m], read by the
 * products directly), only the weight panel streams (double-buffered, one barrier per chunk of
 * 16 rows i). The inner sum z of a group is scaled by F when the group ends (F = u_g from us for
 * "in", whose rows start at i = g; h for "out", read one group ahead). */
template <typename T, bool kIn, int RN>
__global__ void __launch_bounds__(NT, 2) fwd3_kernel(const lrnn_mimo_params p, const float* panel) {
  using C = Core<RN>;
  constexpr int BN = C::BN;
  extern __shared__ __align__(16) unsigned char fwd3_dyn[];
  float(*us)[LDA] = reinterpret_cast<float(*)[LDA]>(fwd3_dyn);
  __shared__ __align__(16) float bs[2][BK][BN + 4];
  __shared__ int64_t tb[BM], tt[BM], tf[BM];
  const Form<T, kIn> f(p, false);
  const int64_t N = p.batch * p.length, mt = (N + BM - 1) / BM, Ap = panel_cols(f.A);
  const int H = static_cast<int>(f.H), G = static_cast<int>(f.G), HP = H + BK;
  const int64_t tile = blockIdx.x % mt, n0 = (blockIdx.x / mt) * BN;
  const int tid = threadIdx.x;
  tile_tokens(tb, tt, tile, N, p.length);
  __syncthreads();
  if (tid < BM) tf[tid] = tb[tid] >= 0 ? f.of(tb[tid], tt[tid]) : 0;
  for (int e = tid; e < BM * HP; e += NT) {   /* consecutive threads along a token's u */
    const int m = e / HP, i = e % HP;
    us[i][m] = i < H && tb[m] >= 0 ? f.Uo(f.ou(tb[m], tt[m]), i) : 0.f;
  }
  /* this thread stages RN consecutive columns of row tid / 16 of each chunk */
  const float* pw = panel + n0 + (tid % 16) * RN + (tid / 16) * Ap;
  const float* pbias = panel + static_cast<int64_t>(G) * HP * Ap + n0 + (threadIdx.x % 16) * RN;
  float rb[RN];
  auto load = [&](int g, int i0) {
    const float* s = pw + (static_cast<int64_t>(g) * HP + i0) * Ap;
    if (RN == 4) {
      const float4 v = *reinterpret_cast<const float4*>(s);
      rb[0] = v.x;
      rb[1 % RN] = v.y;
      rb[2 % RN] = v.z;
      rb[3 % RN] = v.w;
    } else {
      const float2 v = *reinterpret_cast<const float2*>(s);
      rb[0] = v.x;
      rb[RN - 1] = v.y;
    }
  };
  auto store = [&](int buf) {
    float* d = &bs[buf][tid / 16][(tid % 16) * RN];
    if (RN == 4) *reinterpret_cast<float4*>(d) = make_float4(rb[0], rb[1 % RN], rb[2 % RN], rb[3 % RN]);
    else *reinterpret_cast<float2*>(d) = make_float2(rb[0], rb[RN - 1]);
  };
  /* out: F (h) of the thread's 8 rows and the bias of its RN columns, one group ahead */
  float fv[8], bv[RN];
  auto group_ahead = [&](int g) {
#pragma unroll
    for (int sl = 0; sl < 8; ++sl) {
      const int m = C::slot_row(sl);
      fv[sl] = kIn || tb[m] < 0 ? 0.f : f.Fo(tf[m], g);
    }
#pragma unroll
    for (int s = 0; s < RN; ++s) bv[s] = pbias[static_cast<int64_t>(g) * Ap + s];
  };
  float acc[C::Q] = {}, z[C::Q] = {};
  int g = 0, i0 = 0, buf = 0;
  load(0, 0);
  store(0);
  __syncthreads();   /* us, tf and the first chunk */
  group_ahead(0);
  while (true) {
    int ng = g, ni0 = i0 + BK;
    if (ni0 >= H) {
      ng = g + 1;
      ni0 = kIn ? ng : 0;
    }
    const bool more = ng < G;
    if (more) load(ng, ni0);
    C::mac(z, us + i0, bs[buf]);
    if (ng != g) {   /* group g complete */
#pragma unroll
      for (int q = 0; q < C::Q; ++q) {
        const float fq = kIn ? us[g][C::row(q)] : fv[C::slot(q)];
        acc[q] = fmaf(fq, z[q] + bv[q % RN], acc[q]);
        z[q] = 0.f;
      }
      if (more) group_ahead(ng);
    }
    if (!more) break;
    store(buf ^ 1);
    __syncthreads();
    buf ^= 1;
    g = ng;
    i0 = ni0;
  }
  store_x<T, kIn, C>(p, acc, tb, tt, n0, f.A);
}

/* forward: X[t, a] for a token tile and the columns [n0, n0 + 16 RN) */
template <typename T, bool kIn, int RN>
__global__ void __launch_bounds__(NT, 2) fwd2_kernel(const lrnn_mimo_params p) {
  using C = Core<RN>;
  constexpr int BN = C::BN;
  __shared__ __align__(16) float as[BK][LDA];
  __shared__ __align__(16) float bs[BK][BN + 4];
  __shared__ int64_t tb[BM], tt[BM], tu[BM], tf[BM];
  const Form<T, kIn> f(p, false);
  const int64_t N = p.batch * p.length, mt = (N + BM - 1) / BM, H1 = f.H + 1, K = f.G * H1;
  const int64_t tile = blockIdx.x % mt, n0 = (blockIdx.x / mt) * BN;
  const int tid = threadIdx.x, kk = tid % 16, lr = tid / 16;
  tile_tokens(tb, tt, tile, N, p.length);
  if (tid < BM) {
    tu[tid] = f.ou(tb[tid], tt[tid]);
    tf[tid] = f.of(tb[tid], tt[tid]);
  }
  __syncthreads();
  /* this thread stages column kk of each chunk: k = k0 + kk = (g, i), advanced without division,
   * for the tokens lr + 16 l and the columns a = n0 + lr + 16 l. The next chunk is read into
   * registers while this one is multiplied; values are combined only when stored, so no load is
   * waited for before the products. F of the 8 tokens changes only with g. */
  const int64_t a0 = n0 + lr, astep = kIn ? 8 * f.ws[0] : 16 * f.ws[0], bstep = kIn ? 8 * f.bst[0] : 16 * f.bst[0];
  const int64_t aw0 = f.wa(a0), ab0 = f.bias ? f.ba(a0) : 0;
  int64_t g = kk / H1, i = kk % H1, fg = -1;
  float fv[8], ru[8], rb[RN], sg = 1.f;
  auto load = [&]() {
    const bool kv = g < f.G, iu = i < f.H;
    if (kv && g != fg) {
#pragma unroll
      for (int l = 0; l < 8; ++l) {
        const int m = lr + 16 * l;
        fv[l] = tb[m] >= 0 ? f.Fo(tf[m], g) : 0.f;
      }
      sg = f.fsign(g);
      fg = g;
    }
#pragma unroll
    for (int l = 0; l < 8; ++l) {
      const int m = lr + 16 * l;
      ru[l] = kv && iu && tb[m] >= 0 ? f.Uo(tu[m], i) : kv ? 1.f : 0.f;
    }
    const float* src = iu ? f.w + f.wgi(g, i) : f.bias + (f.bias ? f.bg(g) : 0);
    const int64_t off0 = iu ? aw0 : ab0, step = iu ? astep : bstep;
#pragma unroll
    for (int l = 0; l < RN; ++l) rb[l] = kv && a0 + 16 * l < f.A && (iu || f.bias) ? src[off0 + l * step] : 0.f;
    i += BK;
    while (i >= H1) {
      i -= H1;
      ++g;
    }
  };
  float acc[C::Q] = {};
  load();
  for (int64_t k0 = 0; k0 < K; k0 += BK) {
#pragma unroll
    for (int l = 0; l < 8; ++l) as[kk][lr + 16 * l] = sg * fv[l] * ru[l];
#pragma unroll
    for (int l = 0; l < RN; ++l) bs[kk][lr + 16 * l] = rb[l];
    __syncthreads();
    if (k0 + BK < K) load();
    C::mac(acc, as, bs);
    __syncthreads();
  }
  store_x<T, kIn, C>(p, acc, tb, tt, n0, f.A);
}

/* backward, token side: for one token tile, Y[t, (g, i)] = sum_a X[t, a] W[a, g, i] tile by tile
 * (g, 64 columns of i), contracted into dF[t, g] += sum_i Y U (its owner: a lane of the row after
 * a shuffle sum) and dU[t, i] += sum_g Y F (registers, over the g loop). The bias column i = H
 * only feeds dF, as a first pass over the groups. dF lands in gh (out, conjugated: the
 * imaginary part negated) or in the f32 workspace du1 (in); dU in du (out) or du1 (in), and
 * in finally writes du = du + du1. */
template <typename T, bool kIn, bool kXs, typename C>
__global__ void __launch_bounds__(NT, 2) twoway_kernel(const lrnn_mimo_params p, float* du1, const float* panel) {
  constexpr int RN = C::BN / 16;
  constexpr int BN = C::BN;
  __shared__ __align__(16) float as[kXs ? 1 : BK][LDA];
  /* kXs: the tile's X (A rounded up to BK rows, the rest zero) stays in shared memory, xs[a][m],
   * read by the products directly instead of being staged again for every chunk */
  extern __shared__ __align__(16) unsigned char twoway_dyn[];
  float(*xs)[LDA] = reinterpret_cast<float(*)[LDA]>(twoway_dyn);
  __shared__ __align__(16) typename C::BT bs[BK][BN + 4];
  __shared__ int64_t tb[BM], tt[BM], tu[BM], tf[BM], tx[BM];
  const Form<T, kIn> f(p, true);
  const int64_t N = p.batch * p.length, H = f.H, A = f.A, G = f.G, tile = blockIdx.x;
  const int64_t HP = H + BK, Ap = panel_cols(A);
  const int tid = threadIdx.x, kk = tid % 16, lr = tid / 16;
  tile_tokens(tb, tt, tile, N, p.length);
  if (tid < BM) {
    tu[tid] = f.ou(tb[tid], tt[tid]);
    tf[tid] = f.of(tb[tid], tt[tid]);
    tx[tid] = f.ox(tb[tid], tt[tid]);
  }
  __syncthreads();
  if (kXs) {
    const int Ar = static_cast<int>((A + BK - 1) / BK * BK);
    for (int e = tid; e < BM * Ar; e += NT) {   /* consecutive threads along a token's X */
      const int m = e / Ar, a = e % Ar;
      xs[a][m] = a < A && tb[m] >= 0 ? f.Xo(tx[m], a) : 0.f;
    }
  }
  /* the X rows of chunk a0 for the products */
  auto xa = [&](int64_t a0) -> const float(*)[LDA] { return kXs ? xs + a0 : as; };
  float2* gh = static_cast<float2*>(p.h);
  /* where dF[t_m, g] lands (out: gh conjugated, so the imaginary part takes -val) */
  auto df_ptr = [&](int m, int64_t g) -> float* {
    if (kIn) return du1 + (tile * BM + m) * H + g;
    float2* d = gh + tb[m] * p.h_stride[0] + tt[m] * p.h_stride[1] + (g >> 1) * p.h_stride[2];
    return (g & 1) ? &d->y : &d->x;
  };
  auto df_val = [&](int64_t g, float val) { return !kIn && (g & 1) ? -val : val; };
  /* the X tile of chunk a0: as[k][m] = X[t_m, a0 + k] */
  auto stage_x = [&](int64_t a0) {
    if constexpr (!kXs) {
#pragma unroll
      for (int l = 0; l < 8; ++l) {
        const int m = lr + 16 * l;
        as[kk][m] = a0 + kk < A && tb[m] >= 0 ? f.Xo(tx[m], a0 + kk) : 0.f;
      }
    }
  };
  const bool has_bias = kIn ? p.bb != nullptr : p.bc != nullptr;
  for (int64_t g0 = 0; g0 < G; g0 += BN) {   /* the bias column: dF[t, g] = sum_a X W[a, g, H] */
    float acc[C::Q] = {};
    if (has_bias) {
      for (int64_t a0 = 0; a0 < A; a0 += BK) {
        stage_x(a0);
#pragma unroll
        for (int l = 0; l < RN; ++l) {
          const int n = lr + 16 * l;
          C::put_b(bs, kk, n, a0 + kk < A && g0 + n < G ? f.W(a0 + kk, g0 + n, H) : 0.f);
        }
        __syncthreads();
        C::mac(acc, xa(a0), bs);
        __syncthreads();
      }
    }
#pragma unroll
    for (int q = 0; q < C::Q; ++q) {
      const int m = C::row(q);
      const int64_t g = g0 + C::col(q);
      if (g < G && tb[m] >= 0) *df_ptr(m, g) = df_val(g, acc[q]);
    }
  }
  __syncthreads();
  for (int64_t i0 = 0; i0 < H; i0 += BN) {
    float uv[C::Q], col[C::Q];
#pragma unroll
    for (int q = 0; q < C::Q; ++q) {
      const int m = C::row(q);
      const int64_t i = i0 + C::col(q);
      uv[q] = tb[m] >= 0 && i < H ? f.Uo(tu[m], i) : 0.f;
      col[q] = 0.f;
    }
    /* the chunks (g, a0) in order, the next one read into registers while this one is multiplied.
     * "in" reads the symmetric panel W'[g][i] (zero for i < g), so only the groups g < i0 + BN
     * touch this pass's columns. */
    const int64_t gend = kIn && i0 + BN < G ? i0 + BN : G;
    float rx[8], rw[4];
    auto load = [&](int64_t g, int64_t a0) {
#pragma unroll
      for (int l = 0; l < 8 && !kXs; ++l) {
        const int m = lr + 16 * l;
        rx[l] = a0 + kk < A && tb[m] >= 0 ? f.Xo(tx[m], a0 + kk) : 0.f;
      }
      if (kIn) {   /* the panel: consecutive threads along a, row i0 + tid / 16 + 16 l */
        const float* wr = panel + g * HP * Ap + a0 + kk;
#pragma unroll
        for (int l = 0; l < 4; ++l) {
          const int64_t i = i0 + lr + 16 * l;
          rw[l] = a0 + kk < A && i < H ? wr[i * Ap] : 0.f;
        }
        return;
      }
      /* consecutive threads along i: column n = tid % 64 of rows a0 + tid / 64 + 4 l */
      const int n = tid % BN;
      const bool iv = i0 + n < H;
      const float* wr = f.w + f.wgi(g, iv ? i0 + n : 0);
#pragma unroll
      for (int l = 0; l < 4; ++l) {
        const int64_t a = a0 + tid / BN + 4 * l;
        rw[l] = a < A && iv ? wr[f.wa(a)] : 0.f;
      }
    };
    /* a group's F and its dF so far (row owners), read when the group starts: its last chunk
     * does not wait for them */
    float fpre[C::slots()], dpre[C::slots()];
    auto group_ahead = [&](int64_t g) {
#pragma unroll
      for (int sl = 0; sl < C::slots(); ++sl) {
        const int m = C::slot_row(sl);
        fpre[sl] = tb[m] >= 0 ? f.fsign(g) * f.Fo(tf[m], g) : 0.f;
        dpre[sl] = tb[m] >= 0 && C::row_owner() ? *df_ptr(m, g) : 0.f;
      }
    };
    float acc[C::Q] = {};
    int64_t g = 0, a0 = 0;
    load(0, 0);
    group_ahead(0);
    while (g < gend) {
#pragma unroll
      for (int l = 0; l < 8 && !kXs; ++l) as[kk][lr + 16 * l] = rx[l];
#pragma unroll
      for (int l = 0; l < 4; ++l) {
        const int e = tid + NT * l;
        if (kIn) C::put_b(bs, kk, lr + 16 * l, rw[l]);
        else C::put_b(bs, e / BN, e % BN, rw[l]);
      }
      __syncthreads();
      int64_t ng = g, na0 = a0 + BK;
      if (na0 >= A) {
        na0 = 0;
        ++ng;
      }
      if (ng < gend) load(ng, na0);
      C::mac(acc, xa(a0), bs);
      __syncthreads();
      if (na0 == 0) {   /* group g complete: its two contractions */
        float rows[C::slots()] = {};   /* per row of the thread */
#pragma unroll
        for (int q = 0; q < C::Q; ++q) rows[C::slot(q)] = fmaf(acc[q], uv[q], rows[C::slot(q)]);
#pragma unroll
        for (int sl = 0; sl < C::slots(); ++sl) {
          const int m = C::slot_row(sl);
          const float rv = C::row_sum(rows[sl]);
          if (tb[m] >= 0 && C::row_owner()) *df_ptr(m, g) = dpre[sl] + df_val(g, rv);
        }
#pragma unroll
        for (int q = 0; q < C::Q; ++q) {
          col[q] = fmaf(acc[q], fpre[C::slot(q)], col[q]);
          acc[q] = 0.f;
        }
        if (ng < gend) group_ahead(ng);
      }
      g = ng;
      a0 = na0;
    }
    __syncthreads();   /* this pass's dF updates (du1 for in) before its dU columns */
#pragma unroll
    for (int q = 0; q < C::Q; ++q) {
      const int m = C::row(q);
      const int64_t i = i0 + C::col(q);
      if (tb[m] < 0 || i >= H) continue;
      if (kIn)
        du1[(tile * BM + m) * H + i] += col[q];
      else
        static_cast<T*>(p.du)[tb[m] * p.du_stride[0] + tt[m] * p.du_stride[1] + i * p.du_stride[2]] = from_f<T>(col[q]);
    }
    __syncthreads();
  }
  if (kIn) {
    T* du = static_cast<T*>(p.du);
    for (int64_t e = tid; e < BM * H; e += NT) {
      const int m = static_cast<int>(e / H);
      const int64_t i = e % H;
      if (tb[m] < 0) continue;
      T* d = du + tb[m] * p.du_stride[0] + tt[m] * p.du_stride[1] + i * p.du_stride[2];
      *d = from_f<T>(to_f(*d) + du1[(tile * BM + m) * H + i]);
    }
  }
}

/* backward, weights: partial dW[(g, i), a] = sum over the slice's tokens of (F U)[t, (g, i)] X[t, a]
 * for a tile of 128 rows (g, i) and 16 RN columns a, into part[slice][(g, i)][a]. */
template <typename T, bool kIn, typename C>
__global__ void __launch_bounds__(NT, 2) wgrad2_kernel(const lrnn_mimo_params p, float* part, int64_t slice_tokens) {
  constexpr int RN = C::BN / 16;
  constexpr int BN = C::BN;
  __shared__ __align__(16) float as[BK][LDA];
  __shared__ __align__(16) typename C::BT bs[BK][BN + 4];
  __shared__ int64_t ku[2][BK], kf[2][BK], kx[2][BK], kbt[BK][2];
  const Form<T, kIn> f(p, true);
  const int64_t N = p.batch * p.length, L = p.length, H1 = f.H + 1, M = kIn ? pair_count(f.H) : f.G * H1, A = f.A;
  const int64_t mt = (M + BM - 1) / BM, nt = (A + BN - 1) / BN;
  const int64_t mtile = blockIdx.x % mt, ntile = (blockIdx.x / mt) % nt, slice = blockIdx.x / (mt * nt);
  const int64_t k0 = slice * slice_tokens, k1 = k0 + slice_tokens < N ? k0 + slice_tokens : N;
  const int tid = threadIdx.x;
  /* staging: row lm = tid % 128 of the tile for tokens tid / 128 + 2 l; column n = e % BN.
   * "in": the rows are the pairs g <= i (the symmetric form's products u_g u_i). */
  const int lm = tid % BM, lk = tid / BM;
  const int64_t mm = mtile * BM + lm;
  int64_t g = mm / H1, i = mm % H1;
  if (kIn) {
    if (mm < M) pair_of(mm, H1, g, i);
    else g = i = 0;
  }
  const bool iu = i < f.H;
  const float sg = f.fsign(g);
  /* token offsets of chunks c and c + 1 in k*[c & 1] and [(c + 1) & 1]: during chunk c,
   * threads < 16 write those of chunk c + 2 over chunk c's, read (by the register prefetch of
   * chunk c) before the previous barrier */
  auto offsets = [&](int64_t b, int64_t t, int slot, int j) {
    ku[slot][j] = f.ou(b, t);
    kf[slot][j] = f.of(b, t);
    kx[slot][j] = f.ox(b, t);
  };
  if (tid < 2 * BK) offsets((k0 + tid) / L, (k0 + tid) % L, tid / BK, tid % BK);
  /* thread j < 16 then walks its tokens k0 + 16 + j + 16 c as (b, t) = kbt[j], without a 64-bit
   * division per chunk (which kept one warp busy while the others waited at the barrier) */
  if (tid < BK) {
    kbt[tid][0] = (k0 + BK + tid) / L;
    kbt[tid][1] = (k0 + BK + tid) % L;
  }
  __syncthreads();
  /* raw values, combined when stored (no load waited for before the products) */
  float rf[8], ru[8], rb[RN];
  auto load = [&](int64_t kc, int buf) {
#pragma unroll
    for (int l = 0; l < 8; ++l) {
      const int k = lk + 2 * l;
      const bool ok = kc + k < k1 && mm < M;
      rf[l] = ok ? f.Fo(kf[buf][k], g) : 0.f;
      ru[l] = ok && iu ? f.Uo(ku[buf][k], i) : 1.f;
    }
#pragma unroll
    for (int l = 0; l < RN; ++l) {
      const int e = tid + NT * l, n = e % BN, k = e / BN;
      const int64_t a = ntile * BN + n;
      rb[l] = kc + k < k1 && a < A ? f.Xo(kx[buf][k], a) : 0.f;
    }
  };
  float acc[C::Q] = {};
  load(k0, 0);
  int buf = 0;
  for (int64_t kc = k0; kc < k1; kc += BK, buf ^= 1) {
#pragma unroll
    for (int l = 0; l < 8; ++l) as[lk + 2 * l][lm] = sg * rf[l] * ru[l];
#pragma unroll
    for (int l = 0; l < RN; ++l) {
      const int e = tid + NT * l;
      C::put_b(bs, e / BN, e % BN, rb[l]);
    }
    __syncthreads();
    if (kc + BK < k1) load(kc + BK, buf ^ 1);
    if (tid < BK) {
      int64_t b = kbt[tid][0], t = kbt[tid][1] + BK;
      while (t >= L) {
        t -= L;
        ++b;
      }
      kbt[tid][0] = b;
      kbt[tid][1] = t;
      offsets(b, t, buf, tid);
    }
    C::mac(acc, as, bs);
    __syncthreads();
  }
  float* o = part + slice * M * A;
#pragma unroll
  for (int q = 0; q < C::Q; ++q) {
    const int64_t row = mtile * BM + C::row(q), a = ntile * BN + C::col(q);
    if (row < M && a < A) o[row * A + a] = acc[q];
  }
}

/* dW, db: the slices summed in order; element x = (g, i) * A + a of a slice */
template <bool kIn>
__global__ void __launch_bounds__(NT) reduce2_kernel(float* dw, float* db, const float* part, int64_t slices, int64_t H,
                                                     int64_t G, int64_t A) {
  const int64_t H1 = H + 1, n = (kIn ? pair_count(H) : G * H1) * A;
  for (int64_t x = blockIdx.x * static_cast<int64_t>(NT) + threadIdx.x; x < n; x += static_cast<int64_t>(gridDim.x) * NT) {
    float s = 0.f;
    for (int64_t k = 0; k < slices; ++k) s += part[k * n + x];
    const int64_t a = x % A, gi = x / A;
    int64_t g = gi / H1, i = gi % H1;
    if (kIn) pair_of(gi, H1, g, i);
    const int64_t row = Form<float, kIn>::row(a, g, H, G);
    if (i < H) {
      dw[row * H + i] = s;
      if (kIn && i != g) dw[Form<float, kIn>::row(a, i, H, G) * H + g] = s;   /* W'[g][i] holds both */
    } else if (db) {
      db[row] = s;
    }
  }
}

struct Plan {
  int64_t M, A, G, rn, slices, slice_tokens;
  int64_t part, du1, panel, bytes;   // byte offsets, total
};

int64_t up256(int64_t x) { return (x + 255) / 256 * 256; }

/* 64 columns at most: wider tiles need more than the 128 registers of two blocks per SM */
int rn_for(int64_t cols) { return cols <= 32 ? 2 : 4; }

Plan plan_of(const lrnn_mimo_params* p, bool in) {
  Plan o{};
  const int64_t H = p->in_dim, N = p->batch * p->length;
  o.A = in ? 2 * p->state_dim : p->out_dim;
  o.G = in ? H : 2 * p->state_dim;
  o.M = in ? pair_count(H) : o.G * (H + 1);
  o.rn = rn_for(o.A);
  const int64_t tiles = ((o.M + BM - 1) / BM) * ((o.A + 16 * o.rn - 1) / (16 * o.rn));
  /* about 4 blocks per SM of a 132-SM device, slices of at least 512 tokens */
  const int64_t want = (528 + tiles - 1) / tiles, most = (N + 511) / 512;
  o.slices = want < most ? want : most;
  if (o.slices < 1) o.slices = 1;
  o.slice_tokens = ((N + o.slices - 1) / o.slices + BK - 1) / BK * BK;
  if (o.slice_tokens < BK) o.slice_tokens = BK;
  o.slices = (N + o.slice_tokens - 1) / o.slice_tokens;
  if (o.slices < 1) o.slices = 1;
  o.part = 0;
  o.du1 = up256(o.slices * o.M * o.A * 4);
  o.panel = o.du1 + (in ? up256(((N + BM - 1) / BM) * BM * H * 4) : 0);
  o.bytes = o.panel + (in ? up256(panel_floats(o.G, H, o.A) * 4) : 0);
  return o;
}

/* twoway keeps the tile's X in shared memory for A <= 144 (two blocks per SM); the benchmark
 * builds a variant with -DLRNN_MIMO_TWOWAY_XS_MAX=0 (X staged per chunk) to compare */
#ifndef LRNN_MIMO_TWOWAY_XS_MAX
#define LRNN_MIMO_TWOWAY_XS_MAX (80 * 1024)
#endif
constexpr int64_t kTwowayXsMax = LRNN_MIMO_TWOWAY_XS_MAX;
int64_t twoway_xs_smem(int64_t A) { return (A + BK - 1) / BK * BK * LDA * 4; }

template <bool kIn>
lrnn_status launch_panel(const lrnn_mimo_params& p, float* panel, cudaStream_t s) {
  const int64_t H = p.in_dim, A = kIn ? 2 * p.state_dim : p.out_dim, G = kIn ? H : 2 * p.state_dim;
  const int64_t n = panel_floats(G, H, A), blocks = (n + NT - 1) / NT < 4096 ? (n + NT - 1) / NT : 4096;
  auto k = panel_kernel<kIn>;
  k<<<static_cast<unsigned>(blocks), NT, 0, s>>>(p, panel);
  return cudaGetLastError() == cudaSuccess ? LRNN_OK : LRNN_ERR_CUDA;
}

/* fwd3 keeps the token tile's u in shared memory: up to H = 294 (one block per SM above 197);
 * wider inputs use fwd2, which stages products of global reads and needs no panel */
constexpr int64_t kFwd3SmemMax = 160 * 1024;
int64_t fwd3_smem(int64_t H) { return (H + BK) * LDA * 4; }
bool use_fwd3(const lrnn_mimo_params* p) { return fwd3_smem(p->in_dim) <= kFwd3SmemMax; }
int64_t fwd_ws_bytes(const lrnn_mimo_params* p, bool in) {
  const int64_t H = p->in_dim, A = in ? 2 * p->state_dim : p->out_dim, G = in ? H : 2 * p->state_dim;
  return use_fwd3(p) ? up256(panel_floats(G, H, A) * 4) : 0;
}

template <typename T, bool kIn, int RN>
lrnn_status launch_fwd_rn(const lrnn_mimo_params& p, cudaStream_t s) {
  const int64_t N = p.batch * p.length, A = kIn ? 2 * p.state_dim : p.out_dim;
  const int64_t blocks = ((N + BM - 1) / BM) * ((A + 16 * RN - 1) / (16 * RN));
  if (!grid_limit_ok(blocks)) return LRNN_ERR_SHAPE;
  auto k = fwd2_kernel<T, kIn, RN>;
  k<<<static_cast<unsigned>(blocks), NT, 0, s>>>(p);
  return cudaGetLastError() == cudaSuccess ? LRNN_OK : LRNN_ERR_CUDA;
}

template <typename T, bool kIn, int RN>
lrnn_status launch_fwd3_rn(const lrnn_mimo_params& p, float* panel, cudaStream_t s) {
  const int64_t N = p.batch * p.length, A = kIn ? 2 * p.state_dim : p.out_dim;
  const int64_t blocks = ((N + BM - 1) / BM) * ((A + 16 * RN - 1) / (16 * RN));
  if (!grid_limit_ok(blocks)) return LRNN_ERR_SHAPE;
  const lrnn_status st = launch_panel<kIn>(p, panel, s);
  if (st != LRNN_OK) return st;
  const int smem = static_cast<int>(fwd3_smem(p.in_dim));
  auto k = fwd3_kernel<T, kIn, RN>;
  if (cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) != cudaSuccess) return LRNN_ERR_CUDA;
  k<<<static_cast<unsigned>(blocks), NT, smem, s>>>(p, panel);
  return cudaGetLastError() == cudaSuccess ? LRNN_OK : LRNN_ERR_CUDA;
}

template <typename T, bool kIn>
lrnn_status launch_fwd(const lrnn_mimo_params& p, void* workspace, cudaStream_t s) {
  const int rn = rn_for(kIn ? 2 * p.state_dim : p.out_dim);
  if (use_fwd3(&p)) {
    float* panel = static_cast<float*>(workspace);
    return rn == 2 ? launch_fwd3_rn<T, kIn, 2>(p, panel, s) : launch_fwd3_rn<T, kIn, 4>(p, panel, s);
  }
  return rn == 2 ? launch_fwd_rn<T, kIn, 2>(p, s) : launch_fwd_rn<T, kIn, 4>(p, s);
}

template <typename T, bool kIn, int RN>
void launch_wgrad(const lrnn_mimo_params& p, const Plan& o, float* part, cudaStream_t s) {
  const int64_t blocks = ((o.M + BM - 1) / BM) * ((o.A + 16 * RN - 1) / (16 * RN)) * o.slices;
  auto k = wgrad2_kernel<T, kIn, WgradCore<RN>>;
  k<<<static_cast<unsigned>(blocks), NT, 0, s>>>(p, part, o.slice_tokens);
}

template <typename T, bool kIn>
lrnn_status launch_bwd(const lrnn_mimo_params& p, void* workspace, cudaStream_t s) {
  const Plan o = plan_of(&p, kIn);
  const int64_t N = p.batch * p.length, H = p.in_dim;
  char* ws = static_cast<char*>(workspace);
  float* part = reinterpret_cast<float*>(ws + o.part);
  float* du1 = reinterpret_cast<float*>(ws + o.du1);
  if (N == 0) {   /* no tokens: zero weight gradients (du and gh have no elements) */
    if (cudaMemsetAsync(p.dw, 0, static_cast<size_t>(o.G * H * o.A) * 4, s) != cudaSuccess) return LRNN_ERR_CUDA;
    if (p.db && cudaMemsetAsync(p.db, 0, static_cast<size_t>(o.G * o.A) * 4, s) != cudaSuccess) return LRNN_ERR_CUDA;
    return LRNN_OK;
  }
  const int64_t tiles = (N + BM - 1) / BM;
  const int64_t wblocks = ((o.M + BM - 1) / BM) * ((o.A + 16 * o.rn - 1) / (16 * o.rn)) * o.slices;
  if (!grid_limit_ok(tiles) || !grid_limit_ok(wblocks)) return LRNN_ERR_SHAPE;
  float* panel = reinterpret_cast<float*>(ws + o.panel);
  if (kIn) {
    const lrnn_status st = launch_panel<kIn>(p, panel, s);
    if (st != LRNN_OK) return st;
  }
  const int xsmem = static_cast<int>(twoway_xs_smem(o.A));
  if (xsmem <= kTwowayXsMax) {
    auto kt = twoway_kernel<T, kIn, true, TwowayCore<4>>;
    if (cudaFuncSetAttribute(kt, cudaFuncAttributeMaxDynamicSharedMemorySize, xsmem) != cudaSuccess) return LRNN_ERR_CUDA;
    kt<<<static_cast<unsigned>(tiles), NT, xsmem, s>>>(p, du1, panel);
  } else {
    auto kt = twoway_kernel<T, kIn, false, TwowayCore<4>>;
    kt<<<static_cast<unsigned>(tiles), NT, 0, s>>>(p, du1, panel);
  }
  if (o.rn == 2) launch_wgrad<T, kIn, 2>(p, o, part, s);
  else launch_wgrad<T, kIn, 4>(p, o, part, s);
  const int64_t n = o.M * o.A, rblocks = (n + NT - 1) / NT < 4096 ? (n + NT - 1) / NT : 4096;
  auto kr = reduce2_kernel<kIn>;
  kr<<<static_cast<unsigned>(rblocks), NT, 0, s>>>(static_cast<float*>(p.dw), static_cast<float*>(p.db), part, o.slices, H,
                                                  o.G, o.A);
  return cudaGetLastError() == cudaSuccess ? LRNN_OK : LRNN_ERR_CUDA;
}


template <bool kIn>
lrnn_status fwd_any(const lrnn_mimo_params* p, void* workspace, void* stream) {
  if (!workspace && fwd_ws_bytes(p, kIn) > 0) return LRNN_ERR_ARGUMENT;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (p->dtype) {
    case LRNN_F32: return launch_fwd<float, kIn>(*p, workspace, s);
    case LRNN_BF16: return launch_fwd<__nv_bfloat16, kIn>(*p, workspace, s);
    case LRNN_F16: return launch_fwd<__half, kIn>(*p, workspace, s);
    default: return LRNN_ERR_DTYPE;
  }
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

extern "C" int64_t lrnn_mimo_fwd_workspace_bytes_cuda(const lrnn_mimo_params* p, int stage_in) {
  if (!p || check(p, !stage_in) != LRNN_OK) return 0;
  return fwd_ws_bytes(p, stage_in != 0);
}

extern "C" lrnn_status lrnn_mimo_in_fwd_cuda(const lrnn_mimo_params* p, void* workspace, void* stream) {
  const lrnn_status st = check(p, false);
  if (st != LRNN_OK) return st;
  if (p->batch * p->length == 0) return LRNN_OK;
  if (!p->u || !p->v || !p->wb) return LRNN_ERR_ARGUMENT;
  return fwd_any<true>(p, workspace, stream);
}

extern "C" lrnn_status lrnn_mimo_out_fwd_cuda(const lrnn_mimo_params* p, void* workspace, void* stream) {
  const lrnn_status st = check(p, true);
  if (st != LRNN_OK) return st;
  if (p->batch * p->length == 0) return LRNN_OK;
  if (!p->u || !p->h || !p->y || !p->wc) return LRNN_ERR_ARGUMENT;
  return fwd_any<false>(p, workspace, stream);
}

extern "C" lrnn_status lrnn_mimo_out_bwd_cuda(const lrnn_mimo_params* p, void* workspace, void* stream) {
  return bwd_any<false>(p, workspace, stream);
}

extern "C" lrnn_status lrnn_mimo_in_bwd_cuda(const lrnn_mimo_params* p, void* workspace, void* stream) {
  return bwd_any<true>(p, workspace, stream);
}
