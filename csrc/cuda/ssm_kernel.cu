/* ssm_kernel.cu: CUDA forward and backward of the Vandermonde SSM kernel (lrnn/ssm_kernel.h).
 *
 * Both directions are small complex matrix products, evaluated with register-tiled FMAs. A block
 * owns one head and a tile of kTile = 64 x 64 steps, l = l_blk + 64 t + j (t: row, j: column):
 *   K[l] = Re sum_n A[t, n] B[n, j],     A[t, n] = s w_n z_n^(l_blk + 64 t),   B[n, j] = z_n^j
 * so the real product costs 2 FMAs per (n, l) - the whole work - while the powers cost only
 * (64 + 64) complex values per state and tile. They are generated in shared memory per chunk of
 * kStates states by runs of kRun multiplications from an anchor exp(z x) evaluated directly
 * (phase in double), so each factor is within kRun steps of an accurate value and the product
 * within LRNN_SSM_KERNEL_BLOCK. In double, thread (ty, tx) of 64 accumulates 8 rows x 8 columns
 * (4 16-byte shared loads per 64 FMAs); backward: of 128, 8 rows x 4 columns. In float, both
 * directions run the same products on the tensor cores in 3xTF32 (three TF32 products per
 * product, float accuracy; sk_fwd_tc_kernel, sk_bwd_tc_kernel), with the powers built the same
 * way (each factor within 10 multiplications of an exp).
 * Backward (one block per head, tile and chunk of states): with g = dK on the tile, M[t, n] = sum_j g[t, j] z^j and M1[t, n] = sum_j g[t, j] j z^j
 * are one real product of g (64 x 64) with [Re z^j, Im z^j, j Re z^j, j Im z^j] (4 FMAs per
 * (n, l)); then per state S0 = sum_t z^(l_t) M and S1 = sum_t z^(l_t) (l_t M + M1), l_t = l_blk + 64 t,
 * are the tile's partial sums of sum_l dK E and sum_l l dK E (E = exp(z l)), reduced over tiles in
 * a fixed order (lti_common.cuh) and turned into grad_w, grad_z. */
#include "lrnn/ssm_kernel.h"
#include "lti_common.cuh"

using lrnn_cuda::Cplx;
using lrnn_cuda::cmul;

namespace {

constexpr int kThreads = 128;           // backward
constexpr int kFwdThreads = 64;          // forward
constexpr int kRows = 64;                // t
constexpr int kCols = 64;                // j
constexpr int kTile = kRows * kCols;     // steps per block
constexpr int kStates = 16;              // states per chunk
constexpr int kRun = 16;                 // multiplications between anchors
constexpr int kLd = kCols + 4;           // padded shared row: 16-byte aligned, spreads banks
constexpr int kLdG = kCols + 8;          // the backward's dK tile: conflict-free transposing stores
static_assert(kRows == 4 * kRun && kCols == 4 * kRun, "4 runs cover a row or a column of powers");
static_assert(kThreads == 2 * 4 * kStates && kFwdThreads == 4 * kStates, "runs per chunk: 128");
static_assert(2 * kRun <= LRNN_SSM_KERNEL_BLOCK, "anchor distance of the header");
static_assert(kThreads == (kRows / 8) * (kCols / 4) && kFwdThreads == (kRows / 8) * (kCols / 8), "thread tiles");
static_assert(kThreads == 128 && kRows == 64 && kCols == 64, "index maps of the backward's dK staging");

/* Shared-memory vector of 16 bytes: 4 floats or 2 doubles in one load. */
template <typename T>
struct alignas(16) Vec16 {
  T v[16 / sizeof(T)];
};

template <typename T, int M>
__device__ __forceinline__ void load_frag(const T* src, T (&dst)[M]) {
  constexpr int per = 16 / sizeof(T);
#pragma unroll
  for (int i = 0; i < M / per; ++i) {
    const Vec16<T> v = reinterpret_cast<const Vec16<T>*>(src)[i];
#pragma unroll
    for (int e = 0; e < per; ++e) dst[i * per + e] = v.v[e];
  }
}

/* acc[i][c] += sum_k a[k][8 ty + i] * b[k][NC tx + c]  (a: K rows of lda, b: K rows of kLd). */
template <typename T, int K, int lda, int NC>
__device__ __forceinline__ void tile_fma(const T* a, const T* b, int ty, int tx, T (&acc)[8][NC]) {
#pragma unroll 2
  for (int k = 0; k < K; ++k) {
    T av[8], bv[NC];
    load_frag(a + k * lda + 8 * ty, av);
    load_frag(b + k * kLd + NC * tx, bv);
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
      for (int c = 0; c < NC; ++c) acc[i][c] += av[i] * bv[c];
  }
}

/* kRun powers v, v r, v r^2, ... as (re, im) into two rows (16-byte aligned), stored 16
 * bytes at a time: lanes write rows n = lane % 16 at 68-float pitch, so each quarter warp's
 * 16-byte stores fall in distinct bank groups (scalar stores would conflict 4 ways). */
template <typename T>
__device__ __forceinline__ void fill_run(T* re, T* im, Cplx<T> v, Cplx<T> r) {
  constexpr int per = 16 / sizeof(T);
#pragma unroll
  for (int i = 0; i < kRun; i += per) {
    Vec16<T> vr, vi;
#pragma unroll
    for (int e = 0; e < per; ++e) {
      vr.v[e] = v.re;
      vi.v[e] = v.im;
      v = cmul(v, r);
    }
    reinterpret_cast<Vec16<T>*>(re + i)[0] = vr;
    reinterpret_cast<Vec16<T>*>(im + i)[0] = vi;
  }
}

/* Chunk tables: z (0 past the last state), the steps exp(z kCols) and exp(z), and (forward) the
 * scaled weight (0 past the last state, so padded states add nothing). */
template <typename T>
__device__ __forceinline__ void load_chunk(const Cplx<T>* z, int64_t z_stride, int64_t n0, int64_t state, Cplx<T>* s_z,
                                           Cplx<T>* s_r) {
  const int tid = threadIdx.x;
  if (tid < 2 * kStates) {
    const int n = tid % kStates;
    const Cplx<T> zn = n0 + n < state ? z[(n0 + n) * z_stride] : Cplx<T>{T(0), T(0)};
    if (tid < kStates) {
      s_z[n] = zn;
      s_r[n] = lrnn_cuda::exp_scaled<T>(zn.re, zn.im, (double)kCols);
    } else {
      s_r[kStates + n] = lrnn_cuda::exp_scaled<T>(zn.re, zn.im, 1.0);
    }
  }
}

/* The double forward (float runs on the tensor cores, sk_fwd_tc_kernel below). */
template <typename T>
__global__ void __launch_bounds__(kFwdThreads) sk_fwd_kernel(lrnn_ssm_kernel_params p,
                                                                                      int64_t n_tiles) {
  const int64_t h = blockIdx.x / n_tiles, tile = blockIdx.x % n_tiles;
  const int64_t l_blk = tile * kTile;
  const int tid = threadIdx.x, ty = tid / 8, tx = tid % 8;
  const bool complex_w = p.basis == LRNN_BASIS_COMPLEX;
  const T scale = complex_w ? T(2) : T(1);
  /* rows 0..kStates-1: Re; rows kStates..: Im of conj(A) = -Im A (Im of B), so that
   * Re(A B) = Re A Re B - Im A Im B is one sum over the 2 kStates rows */
  __shared__ __align__(16) T s_a[2 * kStates * kLd], s_b[2 * kStates * kLd];
  __shared__ Cplx<T> s_z[kStates], s_w[kStates], s_r[2 * kStates];
  T acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int c = 0; c < 8; ++c) acc[i][c] = T(0);
  const Cplx<T>* z = reinterpret_cast<const Cplx<T>*>(p.z) + h * p.z_stride[0];
  for (int64_t n0 = 0; n0 < p.state; n0 += kStates) {
    __syncthreads();   // the previous chunk's products are done with the tables
    load_chunk(z, p.z_stride[1], n0, p.state, s_z, s_r);
    if (tid < kStates) {
      const Cplx<T> w = n0 + tid < p.state
                            ? lrnn_cuda::load_w<T>(p.w, h * p.w_stride[0] + (n0 + tid) * p.w_stride[1], complex_w)
                            : Cplx<T>{T(0), T(0)};
      s_w[tid] = Cplx<T>{scale * w.re, scale * w.im};
    }
    __syncthreads();
    {   /* thread (n, seg): the run of conj(A) on rows t = kRun seg .. (step conj(z^kCols)) and the
         * run of B on columns j = kRun seg .. (step z) */
      const int n = tid % kStates, seg = tid / kStates;
      const Cplx<T> zn = s_z[n];
      const double x0 = (double)(l_blk + (int64_t)kCols * kRun * seg);
      const Cplx<T> a0 = cmul(s_w[n], lrnn_cuda::exp_scaled<T>(zn.re, zn.im, x0)), r = s_r[n];
      fill_run(s_a + n * kLd + kRun * seg, s_a + (kStates + n) * kLd + kRun * seg, Cplx<T>{a0.re, -a0.im},
               Cplx<T>{r.re, -r.im});
      fill_run(s_b + n * kLd + kRun * seg, s_b + (kStates + n) * kLd + kRun * seg,
               lrnn_cuda::exp_scaled<T>(zn.re, zn.im, (double)(kRun * seg)), s_r[kStates + n]);
    }
    __syncthreads();
    tile_fma<T, 2 * kStates, kLd, 8>(s_a, s_b, ty, tx, acc);
  }
  T* k = reinterpret_cast<T*>(p.k) + h * p.k_stride[0];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int c = 0; c < 8; ++c) {
      const int64_t l = l_blk + (int64_t)(8 * ty + i) * kCols + 8 * tx + c;
      if (l < p.length) k[l * p.k_stride[1]] = acc[i][c];
    }
}

/* Float forward on the tensor cores (3xTF32, lti_common.cuh). A block (2 warps) owns one head and
 * kTile steps, l = l_blk + 64 c + j; warp w the rows c = 32 w + 4 g + i (lane g, i < 4) of 64
 * columns j. The product's k index runs over (state, Re/Im) in steps of 4 states: lane (g, t)
 * holds state n0 + t, so it builds its own A and B operands in registers from a few powers:
 *   A rows: U_i = s w z^(l_blk + 256 (8 w + g)) r64^i    (r64 = z^64)
 *   B cols: P_nt = z^(g) r8^nt  for column j = 8 nt + g   (r8 = z^8)
 * Per 4 states a warp issues 2 x 8 x 3 mma (1024 FMAs each) against ~130 other instructions
 * (powers, TF32 splits, loads). The per-state powers (anchors every 4 rows and every 8 columns,
 * the steps) are a shared table built once per chunk of kTcChunk states by one thread per state:
 * 9 exps (phase in double), the rest by at most 3 + 3 multiplications, so with the 3 + 7 steps in
 * the product loop each factor stays within 16 multiplications of an accurate exp. */
constexpr int kTcWarps = 2;
constexpr int kTcChunk = 64;                  // states per table
constexpr int kTcLd = kTcChunk + 4;           // [anchor][state] pitch: lanes (g, t) hit distinct banks
static_assert(kTcWarps * 32 == kTcChunk && kTcWarps * 32 * kCols == kTile, "thread per state, 32 rows per warp");

/* The chunk's table, thread tid for state n0 + tid: s_a the 16 A anchors, s_b the B anchors z^g,
 * and the steps r8, r64. */
__device__ __forceinline__ void fwd_tc_table(const lrnn_ssm_kernel_params& p, int64_t h, const Cplx<float>* z, int64_t n0,
                                             int64_t l_blk, Cplx<float>* s_a, Cplx<float>* s_b, Cplx<float>* s_r8,
                                             Cplx<float>* s_r64) {
  using C = Cplx<float>;
  const int tid = threadIdx.x;
  const bool complex_w = p.basis == LRNN_BASIS_COMPLEX;
  const float scale = complex_w ? 2.f : 1.f;
  const int64_t n = n0 + tid;
  const bool live = n < p.state;
  const C zn = live ? z[n * p.z_stride[1]] : C{0.f, 0.f};
  C w = live ? lrnn_cuda::load_w<float>(p.w, h * p.w_stride[0] + n * p.w_stride[1], complex_w) : C{0.f, 0.f};
  w = C{scale * w.re, scale * w.im};
  const C r1 = lrnn_cuda::exp_scaled<float>(zn.re, zn.im, 1.0), r256 = lrnn_cuda::exp_scaled<float>(zn.re, zn.im, 256.0);
  s_r8[tid] = lrnn_cuda::exp_scaled<float>(zn.re, zn.im, 8.0);
  s_r64[tid] = lrnn_cuda::exp_scaled<float>(zn.re, zn.im, 64.0);
#pragma unroll
  for (int q = 0; q < 2; ++q) {   // z^(4 q + i): exact at 4 q = 0, 4
    C v = q == 0 ? C{1.f, 0.f} : lrnn_cuda::exp_scaled<float>(zn.re, zn.im, 4.0);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      s_b[(4 * q + i) * kTcLd + tid] = v;
      v = cmul(v, r1);
    }
  }
#pragma unroll
  for (int q = 0; q < 4; ++q) {   // s w z^(l_blk + 256 a): exact at a = 0, 4, 8, 12
    C v = cmul(w, lrnn_cuda::exp_scaled<float>(zn.re, zn.im, (double)(l_blk + 1024 * q)));
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      s_a[(4 * q + i) * kTcLd + tid] = v;
      v = cmul(v, r256);
    }
  }
}

__global__ void __launch_bounds__(kTcWarps * 32, 8) sk_fwd_tc_kernel(lrnn_ssm_kernel_params p, int64_t n_tiles) {
  using C = Cplx<float>;
  const int64_t h = blockIdx.x / (uint32_t)n_tiles, tile = blockIdx.x % (uint32_t)n_tiles;   // < 2^31 blocks
  const int64_t l_blk = tile * kTile;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  __shared__ C s_a[16 * kTcLd], s_b[8 * kTcLd], s_r8[kTcChunk], s_r64[kTcChunk];
  float acc[2][8][4];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][nt][e] = 0.f;
  const C* z = reinterpret_cast<const C*>(p.z) + h * p.z_stride[0];
  for (int64_t n0 = 0; n0 < p.state; n0 += kTcChunk) {
    __syncthreads();   // the previous chunk's products are done with the table
    fwd_tc_table(p, h, z, n0, l_blk, s_a, s_b, s_r8, s_r64);
    __syncthreads();
    const int n_steps = (int)((p.state - n0 < kTcChunk ? p.state - n0 : kTcChunk) + 3) / 4;
    for (int ks = 0; ks < n_steps; ++ks) {
      const int n = 4 * ks + t;
      const C r64 = s_r64[n], r8 = s_r8[n];
      lrnn_cuda::Tf32 ar[2][2], ai[2][2];   // [m-tile][row half]: Re U and -Im U
      C u = s_a[(8 * warp + g) * kTcLd + n];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        ar[i / 2][i % 2] = lrnn_cuda::split_tf32(u.re);
        ai[i / 2][i % 2] = lrnn_cuda::split_tf32(-u.im);
        if (i < 3) u = cmul(u, r64);
      }
      uint32_t a_hi[2][4], a_lo[2][4];
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
        a_hi[mi][0] = ar[mi][0].hi, a_hi[mi][1] = ar[mi][1].hi, a_hi[mi][2] = ai[mi][0].hi, a_hi[mi][3] = ai[mi][1].hi;
        a_lo[mi][0] = ar[mi][0].lo, a_lo[mi][1] = ar[mi][1].lo, a_lo[mi][2] = ai[mi][0].lo, a_lo[mi][3] = ai[mi][1].lo;
      }
      /* two halves of 4 column tiles; within a half the 3 products of an accumulator are 8 mma
       * apart, so the tensor pipe never waits on one accumulator's previous product */
      C v = s_b[g * kTcLd + n];
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        lrnn_cuda::Tf32 br[4], bi[4];
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          br[q] = lrnn_cuda::split_tf32(v.re);
          bi[q] = lrnn_cuda::split_tf32(v.im);
          if (4 * half + q < 7) v = cmul(v, r8);
        }
#pragma unroll
        for (int q = 0; q < 4; ++q)
#pragma unroll
          for (int mi = 0; mi < 2; ++mi) lrnn_cuda::mma_tf32(acc[mi][4 * half + q], a_lo[mi], br[q].hi, bi[q].hi);
#pragma unroll
        for (int q = 0; q < 4; ++q)
#pragma unroll
          for (int mi = 0; mi < 2; ++mi) lrnn_cuda::mma_tf32(acc[mi][4 * half + q], a_hi[mi], br[q].lo, bi[q].lo);
#pragma unroll
        for (int q = 0; q < 4; ++q)
#pragma unroll
          for (int mi = 0; mi < 2; ++mi) lrnn_cuda::mma_tf32(acc[mi][4 * half + q], a_hi[mi], br[q].hi, bi[q].hi);
      }
    }
  }
  /* lane's outputs: rows c = 32 w + 4 g + 2 mi + (0, 1), columns j = 8 nt + 2 t + (0, 1); a pair
   * of a row is 8 bytes, and a warp's store covers whole 32-byte sectors of 8 rows */
  float* k = reinterpret_cast<float*>(p.k) + h * p.k_stride[0];
  const bool pairs = p.k_stride[1] == 1 && (reinterpret_cast<uintptr_t>(k) & 7) == 0;
  if (pairs && l_blk + kTile <= p.length) {
    /* a whole tile of a contiguous row: pair stores at constant offsets from one address */
    float* base = k + l_blk + (int64_t)kCols * (32 * warp + 4 * g) + 2 * t;
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int hf = 0; hf < 2; ++hf)
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
          *reinterpret_cast<float2*>(base + kCols * (2 * mi + hf) + 8 * nt) =
              make_float2(acc[mi][nt][2 * hf], acc[mi][nt][2 * hf + 1]);
    return;
  }
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      const int64_t row = l_blk + (int64_t)kCols * (32 * warp + 4 * g + 2 * mi + hf);
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        const int64_t l = row + 8 * nt + 2 * t;
        const float x0 = acc[mi][nt][2 * hf], x1 = acc[mi][nt][2 * hf + 1];
        if (pairs && l + 1 < p.length) {
          *reinterpret_cast<float2*>(k + l) = make_float2(x0, x1);
        } else {
          if (l < p.length) k[l * p.k_stride[1]] = x0;
          if (l + 1 < p.length) k[(l + 1) * p.k_stride[1]] = x1;
        }
      }
    }
}

/* Dynamic shared memory of the backward, in elements of T then of Cplx<T>. */
template <typename T>
constexpr size_t bwd_smem_bytes() {
  return sizeof(T) * (kCols * (kLdG + kLd) + 4 * kStates * 4) + sizeof(Cplx<T>) * (kRows * kStates + 3 * kStates);
}

/* Per-tile sums S0 = sum dK E and S1 = sum l dK E (E = exp(z l)) into the workspace, in double
 * (float: sk_bwd_tc_kernel). A block
 * takes one chunk of kStates states of one (head, tile): restaging the tile of dK per chunk (from
 * L2) is cheap, and the extra blocks balance the waves (44 KiB of shared memory allow 5 blocks
 * per SM: (1024, 64, 4096) gives 4096 blocks instead of 1024). */
template <typename T>
__global__ void __launch_bounds__(kThreads) sk_bwd_partial_kernel(lrnn_ssm_kernel_bwd_params p, int64_t n_tiles,
                                                                  int64_t n_chunks, double* ws) {
  const int64_t chunk = blockIdx.x % n_chunks, ht = blockIdx.x / n_chunks;
  const int64_t h = ht / n_tiles, tile = ht % n_tiles;
  const int64_t l_blk = tile * kTile, n0 = chunk * kStates;
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16, lane = tid % 32, warp = tid / 32;
  extern __shared__ __align__(16) unsigned char smem[];
  T* s_g = reinterpret_cast<T*>(smem);           // [j][t]: dK[l_blk + kCols t + j]
  T* s_q = s_g + kCols * kLdG;                   // [j][4 n + (Re z^j, Im z^j, j Re z^j, j Im z^j)]
  T* s_red = s_q + kCols * kLd;                  // [warp][n][4]
  Cplx<T>* s_e = reinterpret_cast<Cplx<T>*>(s_red + 4 * kStates * 4);   // [t][n]: z^(l_t)
  Cplx<T>* s_z = s_e + kRows * kStates;
  Cplx<T>* s_r = s_z + kStates;
  const T* g = reinterpret_cast<const T*>(p.grad_k) + h * p.grad_k_stride[0];
  /* a warp stores 8 consecutive t of 4 consecutive j: banks 8 j + t, all distinct at pitch 72 */
  for (int r = 0; r < kTile / kThreads; ++r) {
    const int t = tid % 8 + 8 * (r % 8), j = tid / 8 + 16 * (r / 8);
    const int64_t l = l_blk + (int64_t)kCols * t + j;
    s_g[j * kLdG + t] = l < p.length ? g[l * p.grad_k_stride[1]] : T(0);
  }
  const Cplx<T>* z = reinterpret_cast<const Cplx<T>*>(p.z) + h * p.z_stride[0];
  load_chunk(z, p.z_stride[1], n0, p.state, s_z, s_r);
  __syncthreads();
  {
    const int n = tid % kStates, seg = (tid / kStates) % 4;
    const Cplx<T> zn = s_z[n];
    if (tid < 4 * kStates) {   // z^(l_t) for t = kRun seg ..
      Cplx<T> v = lrnn_cuda::exp_scaled<T>(zn.re, zn.im, (double)(l_blk + (int64_t)kCols * kRun * seg));
      const Cplx<T> r = s_r[n];
#pragma unroll
      for (int i = 0; i < kRun; ++i) {
        s_e[(kRun * seg + i) * kStates + n] = v;
        v = cmul(v, r);
      }
    } else {                   // z^j and j z^j for j = kRun seg ..
      Cplx<T> v = lrnn_cuda::exp_scaled<T>(zn.re, zn.im, (double)(kRun * seg));
      const Cplx<T> r = s_r[kStates + n];
#pragma unroll
      for (int i = 0; i < kRun; ++i) {
        const int j = kRun * seg + i;
        T* q = s_q + j * kLd + 4 * n;
        q[0] = v.re;
        q[1] = v.im;
        q[2] = T(j) * v.re;
        q[3] = T(j) * v.im;
        v = cmul(v, r);
      }
    }
  }
  __syncthreads();
  T acc[8][4];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int c = 0; c < 4; ++c) acc[i][c] = T(0);
  tile_fma<T, kCols, kLdG, 4>(s_g, s_q, ty, tx, acc);
  /* thread (ty, tx): M, M1 of state tx on rows 8 ty .. 8 ty + 7 */
  T s[4] = {T(0), T(0), T(0), T(0)};
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int t = 8 * ty + i;
    const Cplx<T> e = s_e[t * kStates + tx];
    const T lt = (T)(l_blk + (int64_t)kCols * t);
    const Cplx<T> m{acc[i][0], acc[i][1]}, m1{lt * acc[i][0] + acc[i][2], lt * acc[i][1] + acc[i][3]};
    const Cplx<T> a = cmul(e, m), b = cmul(e, m1);
    s[0] += a.re;
    s[1] += a.im;
    s[2] += b.re;
    s[3] += b.im;
  }
  /* rows of a warp's two ty halves, then of the 4 warps */
#pragma unroll
  for (int q = 0; q < 4; ++q) s[q] += __shfl_xor_sync(0xffffffffu, s[q], 16);
  if (lane < 16)
#pragma unroll
    for (int q = 0; q < 4; ++q) s_red[(warp * kStates + tx) * 4 + q] = s[q];
  __syncthreads();
  if (tid < 4 * kStates) {
    const int n = tid / 4, q = tid % 4;
    if (n0 + n < p.state) {
      const T v = s_red[(0 * kStates + n) * 4 + q] + s_red[(1 * kStates + n) * 4 + q] +
                  s_red[(2 * kStates + n) * 4 + q] + s_red[(3 * kStates + n) * 4 + q];
      lrnn_cuda::partial_slot(ws, tile, p.heads, p.state, h, n0 + n)[q] = v;
    }
  }
}

/* grad_w = s conj(S0) (real part for a real w), grad_z = s conj(w S1) from the sums S0, S1 over l. */
template <typename T>
__device__ __forceinline__ void store_grads(const lrnn_ssm_kernel_bwd_params& p, int64_t h, int64_t n, const double s[4]) {
  const bool complex_w = p.basis == LRNN_BASIS_COMPLEX;
  const double scale = complex_w ? 2.0 : 1.0;
  const Cplx<T> w = lrnn_cuda::load_w<T>(p.w, h * p.w_stride[0] + n * p.w_stride[1], complex_w);
  if (complex_w) {
    Cplx<T>* gw = reinterpret_cast<Cplx<T>*>(p.grad_w) + h * p.grad_w_stride[0] + n * p.grad_w_stride[1];
    *gw = Cplx<T>{(T)(scale * s[0]), (T)(-scale * s[1])};
  } else {
    reinterpret_cast<T*>(p.grad_w)[h * p.grad_w_stride[0] + n * p.grad_w_stride[1]] = (T)(scale * s[0]);
  }
  const double wr = w.re, wi = w.im;
  Cplx<T>* gz = reinterpret_cast<Cplx<T>*>(p.grad_z) + h * p.grad_z_stride[0] + n * p.grad_z_stride[1];
  *gz = Cplx<T>{(T)(scale * (wr * s[2] - wi * s[3])), (T)(-scale * (wr * s[3] + wi * s[2]))};
}

/* Float backward partials on the tensor cores (3xTF32). A block (8 warps) owns one head and tile
 * and stages its dK once, as (g, j g) pre-split into TF32 hi/lo (j: the column, 0..63) and laid
 * out in mma fragment order, so that one 16-byte load gives a lane its A operand; warp w
 * takes states n0 + 8 w .. + 7 per chunk of kTcChunk states. With rows (c, g or j g) and columns
 * (state, Re or Im of z^j) the product over j gives M = sum_j g z^j and M1 = sum_j j g z^j per
 * (c, n): 8 m-tiles x 2 n-tiles x 8 k-steps x 3 mma per warp. Lane (g, t) generates the B operand
 * z^(8 ks + t), z^(8 ks + t + 4) of state 8 w + g by a run of 7 multiplications by z^8 from exps.
 * Then, as in the double kernel, S0 = sum_c E_c M and S1 = sum_c E_c ((l_blk + 64 c) M + M1) with
 * E_c = z^(l_blk + 64 c), summed over the 8 row lanes by shuffles in a fixed order. */
constexpr int kTcBwdWarps = 8;
static_assert(kTcBwdWarps * 8 == kTcChunk, "8 states per warp");

/* Fragment planes of the staged tile: [c block mb][k-step ks][g hi, g lo, j g hi, j g lo][lane]. */
__device__ __forceinline__ int frag_plane(int mb, int ks, int q) { return (mb * (kCols / 8) + ks) * 4 + q; }

__global__ void __launch_bounds__(kTcBwdWarps * 32, 2) sk_bwd_tc_kernel(lrnn_ssm_kernel_bwd_params p,
                                                                        int64_t n_tiles, double* ws) {
  using C = Cplx<float>;
  const int64_t h = blockIdx.x / (uint32_t)n_tiles, tile = blockIdx.x % (uint32_t)n_tiles;   // < 2^31 blocks
  const int64_t l_blk = tile * kTile;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  extern __shared__ __align__(16) unsigned char smem[];
  uint32_t* s_f = reinterpret_cast<uint32_t*>(smem);   // planes of 32 lanes x 4 fragment registers
  const float* gk = reinterpret_cast<const float*>(p.grad_k) + h * p.grad_k_stride[0];
  /* element (c = 16 mb + r, j = 8 ks + k) goes to lane (r % 8) * 4 + k % 4, register (r >= 8) +
   * 2 (k >= 4); a warp stages k = 0..7 of the rows r0 + {0, 1, 8, 9}: 32 distinct banks */
  constexpr int kPer = kTile / (kTcBwdWarps * 32);
  static_assert(kPer == 16 && kTcBwdWarps * 32 == 256, "staging map: element i of thread tid is idx = tid + 256 i");
  /* idx = tid + 256 i: k = idx % 8, row r from bits 3..6 of idx, ks = (idx / 128) % 8 = kh + 2 (i % 4)
   * (kh = tid / 128, no wrap), mb = idx / 1024 = i / 4; so everything but two constants of i is
   * fixed per thread (the index math is not repeated per element) */
  const int k = tid % 8, rs = (tid / 8) % 4, r = (rs & 1) + 8 * (rs >> 1) + 2 * ((tid / 32) % 4), kh = tid / 128;
  const int slot = ((r % 8) * 4 + k % 4) * 4 + (r >= 8) + 2 * (k >= 4);
  const int64_t l_t = l_blk + (int64_t)kCols * r + 8 * kh + k;   // element i: l_t + 16 (i % 4) + 1024 (i / 4)
  const int64_t s1 = p.grad_k_stride[1], left = p.length - l_t;
  float xs[kPer];   // all loads in flight before the first store (a store could alias them)
  if (s1 == 1 && left >= kTile) {   // a whole contiguous tile: constant offsets from one address
    const float* src = gk + l_t;
#pragma unroll
    for (int i = 0; i < kPer; ++i) xs[i] = src[16 * (i % 4) + 16 * kCols * (i / 4)];
  } else {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int d = 16 * (i % 4) + 16 * kCols * (i / 4);
      xs[i] = d < left ? gk[(l_t + d) * s1] : 0.f;
    }
  }
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int j = 8 * kh + k + 16 * (i % 4);
    const lrnn_cuda::Tf32 a = lrnn_cuda::split_tf32(xs[i]), b = lrnn_cuda::split_tf32((float)j * xs[i]);
    uint32_t* dst = s_f + frag_plane(i / 4, kh + 2 * (i % 4), 0) * 128 + slot;   // the 4 planes are 128 apart
    dst[0] = a.hi;
    dst[128] = a.lo;
    dst[256] = b.hi;
    dst[384] = b.lo;
  }
  __syncthreads();
  const C* z = reinterpret_cast<const C*>(p.z) + h * p.z_stride[0];
  for (int64_t n0 = 8 * warp; n0 < p.state; n0 += kTcChunk) {
    const int64_t n_b = n0 + g;   // the B operand's state
    const C zb = n_b < p.state ? z[n_b * p.z_stride[1]] : C{0.f, 0.f};
    const C r8 = lrnn_cuda::exp_scaled<float>(zb.re, zb.im, 8.0);
    C q0 = lrnn_cuda::exp_scaled<float>(zb.re, zb.im, (double)t), q1 = lrnn_cuda::exp_scaled<float>(zb.re, zb.im, (double)(t + 4));
    float acc[4][2][2][4];   // [c block][g, j g][Re, Im][fragment]
#pragma unroll
    for (int mb = 0; mb < 4; ++mb)
#pragma unroll
      for (int wh = 0; wh < 2; ++wh)
#pragma unroll
        for (int ri = 0; ri < 2; ++ri)
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[mb][wh][ri][e] = 0.f;
#pragma unroll 1
    for (int ks = 0; ks < kCols / 8; ++ks) {
      const lrnn_cuda::Tf32 b0r = lrnn_cuda::split_tf32(q0.re), b1r = lrnn_cuda::split_tf32(q1.re),
                            b0i = lrnn_cuda::split_tf32(q0.im), b1i = lrnn_cuda::split_tf32(q1.im);
      /* c blocks in pairs; within a pair the 3 products of an accumulator are 8 mma apart */
#pragma unroll
      for (int mp = 0; mp < 2; ++mp) {
        uint32_t ah[2][2][4], al[2][2][4];   // [c block of the pair][g, j g]
#pragma unroll
        for (int m = 0; m < 2; ++m)
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            const uint4 v = reinterpret_cast<const uint4*>(s_f)[frag_plane(2 * mp + m, ks, q) * 32 + lane];
            uint32_t(&dst)[4] = q % 2 == 0 ? ah[m][q / 2] : al[m][q / 2];
            dst[0] = v.x, dst[1] = v.y, dst[2] = v.z, dst[3] = v.w;
          }
#pragma unroll
        for (int m = 0; m < 2; ++m)
#pragma unroll
          for (int wh = 0; wh < 2; ++wh) {
            lrnn_cuda::mma_tf32(acc[2 * mp + m][wh][0], al[m][wh], b0r.hi, b1r.hi);
            lrnn_cuda::mma_tf32(acc[2 * mp + m][wh][1], al[m][wh], b0i.hi, b1i.hi);
          }
#pragma unroll
        for (int m = 0; m < 2; ++m)
#pragma unroll
          for (int wh = 0; wh < 2; ++wh) {
            lrnn_cuda::mma_tf32(acc[2 * mp + m][wh][0], ah[m][wh], b0r.lo, b1r.lo);
            lrnn_cuda::mma_tf32(acc[2 * mp + m][wh][1], ah[m][wh], b0i.lo, b1i.lo);
          }
#pragma unroll
        for (int m = 0; m < 2; ++m)
#pragma unroll
          for (int wh = 0; wh < 2; ++wh) {
            lrnn_cuda::mma_tf32(acc[2 * mp + m][wh][0], ah[m][wh], b0r.hi, b1r.hi);
            lrnn_cuda::mma_tf32(acc[2 * mp + m][wh][1], ah[m][wh], b0i.hi, b1i.hi);
          }
      }
      q0 = cmul(q0, r8);
      q1 = cmul(q1, r8);
    }
    /* lane's (c, n): c = 16 mb + g + 8 (e / 2), n = n0 + 2 t + e % 2; E_c by runs of 7 steps of z^512 */
    float s[2][4];
#pragma unroll
    for (int ee = 0; ee < 2; ++ee) {
      const int64_t n = n0 + 2 * t + ee;
      const C zn = n < p.state ? z[n * p.z_stride[1]] : C{0.f, 0.f};
      const C r512 = lrnn_cuda::exp_scaled<float>(zn.re, zn.im, 8.0 * kCols);
      C e_c = lrnn_cuda::exp_scaled<float>(zn.re, zn.im, (double)(l_blk + (int64_t)kCols * g));
      s[ee][0] = s[ee][1] = s[ee][2] = s[ee][3] = 0.f;
#pragma unroll
      for (int q = 0; q < 8; ++q) {   // c = g + 8 q: c block q / 2, fragment half q % 2
        const int mb = q / 2, e = 2 * (q % 2) + ee;
        const float lt = (float)(l_blk + (int64_t)kCols * (g + 8 * q));
        const C m{acc[mb][0][0][e], acc[mb][0][1][e]};
        const C m1{lt * m.re + acc[mb][1][0][e], lt * m.im + acc[mb][1][1][e]};
        const C a = cmul(e_c, m), b = cmul(e_c, m1);
        s[ee][0] += a.re;
        s[ee][1] += a.im;
        s[ee][2] += b.re;
        s[ee][3] += b.im;
        if (q < 7) e_c = cmul(e_c, r512);
      }
    }
#pragma unroll
    for (int ee = 0; ee < 2; ++ee)
#pragma unroll
      for (int qq = 0; qq < 4; ++qq)
#pragma unroll
        for (int off = 4; off < 32; off <<= 1) s[ee][qq] += __shfl_xor_sync(0xffffffffu, s[ee][qq], off);
    if (g == 0)
#pragma unroll
      for (int ee = 0; ee < 2; ++ee) {
        const int64_t n = n0 + 2 * t + ee;
        if (n < p.state) {
          if (n_tiles == 1) {   // the only tile: the gradients directly, no second pass
            const double sd[4] = {s[ee][0], s[ee][1], s[ee][2], s[ee][3]};
            store_grads<float>(p, h, n, sd);
          } else {
            double* o = lrnn_cuda::partial_slot(ws, tile, p.heads, p.state, h, n);
#pragma unroll
            for (int qq = 0; qq < 4; ++qq) o[qq] = s[ee][qq];
          }
        }
      }
  }
}

constexpr size_t kTcBwdSmem = sizeof(uint32_t) * 4 * kTile;

/* The gradients from the sums over all tiles, tiles summed in order. */
template <typename T>
__global__ void sk_bwd_finish_kernel(lrnn_ssm_kernel_bwd_params p, int64_t n_tiles, const double* ws) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= p.heads * p.state) return;
  const int64_t h = idx / p.state, n = idx % p.state;
  double s[4];
  lrnn_cuda::sum_partials(ws, n_tiles, p.heads, p.state, h, n, s);
  store_grads<T>(p, h, n, s);
}

lrnn_status launched() { return cudaGetLastError() == cudaSuccess ? LRNN_OK : LRNN_ERR_CUDA; }



/* The double backward's tables exceed the default 48 KiB of shared memory. */
template <typename T>
lrnn_status launch_bwd(const lrnn_ssm_kernel_bwd_params* p, int64_t n_tiles, double* ws, cudaStream_t s) {
  constexpr size_t smem = bwd_smem_bytes<T>();
  const int64_t n_chunks = lrnn_cuda::ceil_div(p->state, kStates);
  if (n_tiles > 0) {
    if constexpr (smem > 48 * 1024) {
      if (cudaFuncSetAttribute(sk_bwd_partial_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) !=
          cudaSuccess)
        return LRNN_ERR_CUDA;
    }
    sk_bwd_partial_kernel<T><<<(unsigned)(n_tiles * p->heads * n_chunks), kThreads, smem, s>>>(*p, n_tiles, n_chunks,
                                                                                             ws);
  }
  sk_bwd_finish_kernel<T><<<(unsigned)lrnn_cuda::ceil_div(p->heads * p->state, lrnn_cuda::kFinishThreads),
                            lrnn_cuda::kFinishThreads, 0, s>>>(*p, n_tiles, ws);
  return launched();
}

/* Float: the tensor-core partials (64 KiB of shared memory: 2 blocks of 8 warps per SM); a
 * single tile (L <= kTile) stores the gradients itself. */
lrnn_status launch_bwd_tc(const lrnn_ssm_kernel_bwd_params* p, int64_t n_tiles, double* ws, cudaStream_t s) {
  if (n_tiles > 0) {
    auto kernel = sk_bwd_tc_kernel;
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)kTcBwdSmem) != cudaSuccess ||
        cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared) !=
            cudaSuccess)   // 2 blocks: 130 KiB
      return LRNN_ERR_CUDA;
    kernel<<<(unsigned)(n_tiles * p->heads), kTcBwdWarps * 32, kTcBwdSmem, s>>>(*p, n_tiles, ws);
  }
  if (n_tiles != 1)
    sk_bwd_finish_kernel<float><<<(unsigned)lrnn_cuda::ceil_div(p->heads * p->state, lrnn_cuda::kFinishThreads),
                                  lrnn_cuda::kFinishThreads, 0, s>>>(*p, n_tiles, ws);
  return launched();
}

}  // namespace

extern "C" int64_t lrnn_ssm_kernel_bwd_workspace_bytes(const lrnn_ssm_kernel_bwd_params* p) {
  if (!p || p->length <= 0) return 0;
  return lrnn_cuda::partials_bytes(lrnn_cuda::ceil_div(p->length, kTile), p->heads, p->state);
}

extern "C" lrnn_status lrnn_ssm_kernel_fwd_cuda(const lrnn_ssm_kernel_params* p, void* stream) {
  if (!p || p->heads < 0 || p->state < 0 || p->length < 0) return LRNN_ERR_ARGUMENT;
  if (p->basis != LRNN_BASIS_COMPLEX && p->basis != LRNN_BASIS_COSINE) return LRNN_ERR_ARGUMENT;
  if (p->heads == 0 || p->length == 0) return LRNN_OK;
  const int64_t n_tiles = lrnn_cuda::ceil_div(p->length, kTile);
  const int64_t blocks = n_tiles * p->heads;
  if (blocks > INT32_MAX) return LRNN_ERR_SHAPE;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (p->dtype) {
    case LRNN_C64: sk_fwd_tc_kernel<<<(unsigned)blocks, kTcWarps * 32, 0, s>>>(*p, n_tiles); break;
    case LRNN_C128: sk_fwd_kernel<double><<<(unsigned)blocks, kFwdThreads, 0, s>>>(*p, n_tiles); break;
    default: return LRNN_ERR_DTYPE;
  }
  return launched();
}

extern "C" lrnn_status lrnn_ssm_kernel_bwd_cuda(const lrnn_ssm_kernel_bwd_params* p, void* workspace, void* stream) {
  if (!p || p->heads < 0 || p->state < 0 || p->length < 0) return LRNN_ERR_ARGUMENT;
  if (p->basis != LRNN_BASIS_COMPLEX && p->basis != LRNN_BASIS_COSINE) return LRNN_ERR_ARGUMENT;
  if (p->heads == 0 || p->state == 0) return LRNN_OK;
  if (p->length > 0 && !workspace) return LRNN_ERR_ARGUMENT;
  const int64_t n_tiles = lrnn_cuda::ceil_div(p->length, kTile);
  if (n_tiles * p->heads * lrnn_cuda::ceil_div(p->state, kStates) > INT32_MAX) return LRNN_ERR_SHAPE;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  double* ws = static_cast<double*>(workspace);
  switch (p->dtype) {
    case LRNN_C64: return launch_bwd_tc(p, n_tiles, ws, s);
    case LRNN_C128: return launch_bwd<double>(p, n_tiles, ws, s);
    default: return LRNN_ERR_DTYPE;
  }
}
