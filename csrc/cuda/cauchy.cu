/* cauchy.cu: CUDA forward and backward of the Cauchy kernel (lrnn/cauchy.h).
 *
 * Forward: one block per (head, tile of 128 * kCyPerThread nodes); thread t owns nodes
 * l0 + t + kCyThreads * j (coalesced), per-state constants staged in shared memory in chunks (one
 * 16-byte broadcast load per state), sums in registers; a conjugate pair costs one reciprocal and
 * 15 FP32 instructions in all (pair_term).
 * Backward: one block per (head, tile of kCyBwdTile nodes). The block first turns the tile's nodes
 * and output gradients into per-node constants in shared memory; each warp then takes
 * BwdCfg<T, K>::kStates whole states at once (poles in registers), each lane a strided subset of the
 * tile's nodes, so one load of a node's constants serves all of the warp's states: 22 FP32
 * instructions per pair (bwd_pair). The lanes' sums are reduced through shared memory in a fixed
 * order into a double workspace per tile, then summed over tiles in order by a second kernel
 * (lti_common.cuh). Reciprocals are one MUFU.RCP in float (lrnn_cuda::fast_rcp). */
#include "lrnn/cauchy.h"
#include "lti_common.cuh"

using lrnn_cuda::Cplx;

namespace {

constexpr int kCyPerThread = 4;
constexpr int kCyChunk = 256;
constexpr int kCyBwdThreads = 256;
constexpr int kCyBwdWarps = kCyBwdThreads / 32;
constexpr int kCyBwdTile = 1024;

/* States per warp pass of the backward: 8 in float (4 x 8 = 32 sums per lane: one per lane to
 * reduce; 4, with 4 blocks per SM instead of 3, measured 1-2 % slower on the H200), 4 in double
 * (registers). Rows of the reduction buffer are padded by 4 elements, so the float lanes' 16-byte
 * row stores and the column reads are free of bank conflicts. kMinBlocks: the blocks per SM the
 * shared memory allows (float ~73 KiB, double ~113 KiB per block). */
template <typename T, int K = (sizeof(T) == 4 ? 8 : 4)>
struct BwdCfg {
  static constexpr int kStates = K;
  static constexpr int kSums = 4 * kStates;
  static constexpr int kRedLd = kSums + 4;
  static constexpr int kMinBlocks = sizeof(T) == 4 ? 3 : 2;
};

template <typename T>
struct alignas(4 * sizeof(T)) Vec4 {
  T x, y, z, w;
};

/* Per-state constants staged in shared memory: (Re lam, Im lam, c0, c1) with (c0, c1) =
 * (2 Re v, -2 Re(v conj(lam))) for the symmetric sum (see pair_term) and (Re v, Im v) otherwise. */
template <typename T>
struct alignas(4 * sizeof(T)) State4 {
  T lr, li, c0, c1;
};

/* v / (o - lam) + conj(v) / (o - conj(lam)) = N / D at a node o: with e = o - Re lam, b = Im lam,
 * D = (o - lam)(o - conj(lam)) = e^2 + b^2 and N = 2 Re v e - 2 Im v b = c0 o + c1 (c0 = 2 Re v,
 * c1 = -2 (Re v Re lam + Im v Im lam), constants of the state). So with R = 1 / D the sum over
 * states is o Y1 + Y2, Y1 = sum c0 R and Y2 = sum c1 R, finished once per node. D is formed as
 * dr^2 - a b + i 2 dr Im o (dr = Re o - Re lam, a, b = Im o -/+ Im lam), accurate to ulps of |D|
 * (no cancellation between large terms). Per pair: D 6, |D|^2 2, the reciprocal, R 2, the four
 * sums 4: 15 FP32 instructions. y = (Re Y1, -Im Y1, Re Y2, -Im Y2). */
template <typename T>
__device__ __forceinline__ void pair_term(T (&y)[4], State4<T> c, T orr, T oi, T oi2) {
  const T dr = orr - c.lr, a = oi - c.li, b = oi + c.li;
  const T Dr = dr * dr - a * b, Di = dr * oi2;
  const T inv = lrnn_cuda::fast_rcp(Dr * Dr + Di * Di);
  const T Rr = Dr * inv, Ri = Di * inv;   // R = Rr - i Ri
  y[0] = fma(c.c0, Rr, y[0]);
  y[1] = fma(c.c0, Ri, y[1]);
  y[2] = fma(c.c1, Rr, y[2]);
  y[3] = fma(c.c1, Ri, y[3]);
}

/* v / (o - lam) added to (y[0], y[1]). */
template <typename T>
__device__ __forceinline__ void single_term(T (&y)[4], State4<T> c, T orr, T oi) {
  const T dr = orr - c.lr, di = oi - c.li;
  const T inv = lrnn_cuda::fast_rcp(dr * dr + di * di);
  y[0] += (c.c0 * dr + c.c1 * di) * inv;
  y[1] += (c.c1 * dr - c.c0 * di) * inv;
}

template <typename T, int kCyThreads>
__global__ void __launch_bounds__(kCyThreads) cy_fwd_kernel(lrnn_cauchy_params p, int64_t n_tiles) {
  constexpr int kCyTile = kCyThreads * kCyPerThread;
  const int64_t h = blockIdx.x / n_tiles, tile = blockIdx.x % n_tiles;
  const int64_t l0 = tile * kCyTile + threadIdx.x;
  __shared__ State4<T> s_c[kCyChunk];
  const Cplx<T>* om = reinterpret_cast<const Cplx<T>*>(p.omega);
  T orr[kCyPerThread], oi[kCyPerThread], oi2[kCyPerThread], y[kCyPerThread][4];
#pragma unroll
  for (int j = 0; j < kCyPerThread; ++j) {
    const int64_t l = l0 + (int64_t)j * kCyThreads;
    const Cplx<T> o = l < p.length ? om[l * p.omega_stride] : Cplx<T>{T(0), T(0)};
    orr[j] = o.re;
    oi[j] = o.im;
    oi2[j] = T(2) * o.im;
    y[j][0] = y[j][1] = y[j][2] = y[j][3] = T(0);
  }
  const Cplx<T>* v = reinterpret_cast<const Cplx<T>*>(p.v) + h * p.v_stride[0];
  const Cplx<T>* lam = reinterpret_cast<const Cplx<T>*>(p.lam) + h * p.lam_stride[0];
  for (int64_t n0 = 0; n0 < p.state; n0 += kCyChunk) {
    const int nc = (int)(p.state - n0 < kCyChunk ? p.state - n0 : kCyChunk);
    __syncthreads();
    for (int j = threadIdx.x; j < nc; j += kCyThreads) {
      const Cplx<T> vn = v[(n0 + j) * p.v_stride[1]], ln = lam[(n0 + j) * p.lam_stride[1]];
      s_c[j] = p.symmetric ? State4<T>{ln.re, ln.im, T(2) * vn.re, T(-2) * (vn.re * ln.re + vn.im * ln.im)}
                           : State4<T>{ln.re, ln.im, vn.re, vn.im};
    }
    __syncthreads();
    if (p.symmetric) {
#pragma unroll 8
      for (int n = 0; n < nc; ++n) {
        const State4<T> c = s_c[n];
#pragma unroll
        for (int j = 0; j < kCyPerThread; ++j) pair_term(y[j], c, orr[j], oi[j], oi2[j]);
      }
    } else {
#pragma unroll 4
      for (int n = 0; n < nc; ++n) {
        const State4<T> c = s_c[n];
#pragma unroll
        for (int j = 0; j < kCyPerThread; ++j) single_term(y[j], c, orr[j], oi[j]);
      }
    }
  }
  Cplx<T>* out = reinterpret_cast<Cplx<T>*>(p.out) + h * p.out_stride[0];
#pragma unroll
  for (int j = 0; j < kCyPerThread; ++j) {
    const int64_t l = l0 + (int64_t)j * kCyThreads;
    if (l >= p.length) continue;
    // symmetric: o Y1 + Y2 with Y1 = y0 - i y1, Y2 = y2 - i y3
    out[l * p.out_stride[1]] = p.symmetric ? Cplx<T>{orr[j] * y[j][0] + oi[j] * y[j][1] + y[j][2],
                                                     oi[j] * y[j][0] - orr[j] * y[j][1] - y[j][3]}
                                           : Cplx<T>{y[j][0], y[j][1]};
  }
}

/* One term of the plain backward sums for r = 1 / d, d = dr + i di: x = r conj(g), A += x,
 * B += r x: 16 FP32 instructions with the reciprocal, B accumulated by FFMAs. */
template <typename T>
__device__ __forceinline__ void bwd_term(T (&acc)[4], T dr, T di, T gr, T gi) {
  const T inv = lrnn_cuda::fast_rcp(dr * dr + di * di);
  const T rr = dr * inv, ri = -di * inv;
  const T xr = rr * gr + ri * gi, xi = ri * gr - rr * gi;   // r conj(g)
  acc[0] += xr;
  acc[1] += xi;
  acc[2] = fma(rr, xr, acc[2]);
  acc[2] = fma(-ri, xi, acc[2]);
  acc[3] = fma(rr, xi, acc[3]);
  acc[3] = fma(ri, xr, acc[3]);
}

/* Both terms of a conjugate pair at once, with one reciprocal. With u = conj(G), e = omega - Re lam,
 * b = Im lam, d1 = e - i b = omega - lam, d1' = e + i b = omega - conj(lam), D = d1 d1' = e^2 + b^2,
 * R = 1 / D:
 *   r1 conj(G) + r2 G     = u/d1 + conj(u/d1')     = Re(2 e p) + i 2 b Re(p),          p = u R
 *   r1^2 conj(G) + r2^2 G = u/d1^2 + conj(u/d1'^2) = Re(2 (e^2 - b^2) W) + i 4 b Re(e W), W = u R^2
 * (d1 + d1' = 2 e, d1' - d1 = 2 i b, d1^2 + d1'^2 = 2 (e^2 - b^2), d1'^2 - d1^2 = 4 i b e), and as
 * W D = p, Re((e^2 - b^2) W) = Re p - 2 b^2 Re W. With U = omega u (a constant of the node),
 * Re(e p) = Re(U R) - Re(lam) Re(u R) and Re(e W) = Re(U R^2) - Re(lam) Re(u R^2), so the sums over
 * the nodes are the four real parts
 *   acc = (sum Re(u R), sum Re(U R), sum Re(u R^2), sum Re(U R^2)),
 * each two FFMAs against node constants, and per state (cy_bwd_finish_kernel, in double)
 *   A = 2 (acc1 - Re lam acc0) + i 2 b acc0,   B = 2 acc0 - 4 b^2 acc2 + i 4 b (acc3 - Re lam acc2).
 * D as in the forward. Per pair: D 6, |D|^2 2, the reciprocal, R 2, R^2 3, the sums 8: 22 FP32
 * instructions (p and W as complex values and Re(e p), Re(e W) from them: 25).
 * Node constants: c0 = (Re o, Im o, 2 Im o, Re u), c1 = (Im u, 2 Im u, Re U, Im U), c2 = 2 Im U. */
template <typename T>
__device__ __forceinline__ void bwd_pair(T (&acc)[4], T lr, T li, Vec4<T> c0, Vec4<T> c1, T c2) {
  const T dr = c0.x - lr, ya = c0.y - li, yb = c0.y + li;
  const T Dr = dr * dr - ya * yb, Di = dr * c0.z;
  const T inv = lrnn_cuda::fast_rcp(Dr * Dr + Di * Di);
  const T Rr = Dr * inv, Ri = Di * inv;   // R = Rr - i Ri
  const T R2r = Rr * Rr - Ri * Ri, Q = Rr * Ri;   // R^2 = R2r - 2 i Q
  acc[0] = fma(c0.w, Rr, acc[0]);
  acc[0] = fma(c1.x, Ri, acc[0]);
  acc[1] = fma(c1.z, Rr, acc[1]);
  acc[1] = fma(c1.w, Ri, acc[1]);
  acc[2] = fma(c0.w, R2r, acc[2]);
  acc[2] = fma(c1.y, Q, acc[2]);
  acc[3] = fma(c1.z, R2r, acc[3]);
  acc[3] = fma(c2, Q, acc[3]);
}

/* Dynamic shared memory of the backward: node constants, then one reduction buffer per warp. */
template <typename T, int K>
constexpr size_t bwd_smem_bytes() {
  return (size_t)kCyBwdTile * (2 * sizeof(Vec4<T>) + sizeof(T)) +
         sizeof(T) * (size_t)kCyBwdWarps * 32 * BwdCfg<T, K>::kRedLd;
}

/* Per-tile sums per state into ws[tile][h][n][4]: symmetric, the four sums of bwd_pair; plain,
 * (Re A, Im A, Re B, Im B) with A = sum r conj(G), B = sum r^2 conj(G). A warp takes kStates
 * states at once (lam in registers), each lane a strided subset of the tile's nodes. */
template <typename T, int K>
__global__ void __launch_bounds__(kCyBwdThreads, BwdCfg<T, K>::kMinBlocks)
    cy_bwd_partial_kernel(lrnn_cauchy_bwd_params p, int64_t n_tiles, double* ws) {
  constexpr int kLd = BwdCfg<T, K>::kRedLd;
  const int64_t h = blockIdx.x / n_tiles, tile = blockIdx.x % n_tiles;
  const int64_t t0 = tile * kCyBwdTile;
  const int nt = (int)(p.length - t0 < kCyBwdTile ? p.length - t0 : kCyBwdTile);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  extern __shared__ __align__(16) unsigned char smem[];
  Vec4<T>* s_c0 = reinterpret_cast<Vec4<T>*>(smem);
  Vec4<T>* s_c1 = s_c0 + kCyBwdTile;
  T* s_c2 = reinterpret_cast<T*>(s_c1 + kCyBwdTile);
  T* s_red = s_c2 + kCyBwdTile + (size_t)warp * 32 * kLd;   // this warp's [lane][sum] rows
  const Cplx<T>* om = reinterpret_cast<const Cplx<T>*>(p.omega);
  const Cplx<T>* g = reinterpret_cast<const Cplx<T>*>(p.grad_out) + h * p.grad_out_stride[0];
  for (int i = threadIdx.x; i < nt; i += kCyBwdThreads) {
    const Cplx<T> o = om[(t0 + i) * p.omega_stride], G = g[(t0 + i) * p.grad_out_stride[1]];
    const T ur = G.re, ui = -G.im;   // u = conj(G), U = o u
    const T Ur = o.re * ur - o.im * ui, Ui = o.re * ui + o.im * ur;
    s_c0[i] = Vec4<T>{o.re, o.im, T(2) * o.im, ur};
    s_c1[i] = Vec4<T>{ui, T(2) * ui, Ur, Ui};
    s_c2[i] = T(2) * Ui;
  }
  __syncthreads();
  const Cplx<T>* lam = reinterpret_cast<const Cplx<T>*>(p.lam) + h * p.lam_stride[0];
  for (int64_t n0 = (int64_t)K * warp; n0 < p.state; n0 += K * kCyBwdWarps) {
    T lr[K], li[K], acc[K][4];
#pragma unroll
    for (int k = 0; k < K; ++k) {   // states past the last repeat it; their sums are dropped
      const int64_t n = n0 + k < p.state ? n0 + k : p.state - 1;
      const Cplx<T> ln = lam[n * p.lam_stride[1]];
      lr[k] = ln.re;
      li[k] = ln.im;
      acc[k][0] = acc[k][1] = acc[k][2] = acc[k][3] = T(0);
    }
    if (p.symmetric) {
#pragma unroll 2
      for (int i = lane; i < nt; i += 32) {
        const Vec4<T> c0 = s_c0[i], c1 = s_c1[i];
        const T c2 = s_c2[i];
#pragma unroll
        for (int k = 0; k < K; ++k) bwd_pair(acc[k], lr[k], li[k], c0, c1, c2);
      }
    } else {
#pragma unroll 2
      for (int i = lane; i < nt; i += 32) {
        const Vec4<T> c0 = s_c0[i];
        const T gr = c0.w, gi = -s_c1[i].x;
#pragma unroll
        for (int k = 0; k < K; ++k) bwd_term(acc[k], c0.x - lr[k], c0.y - li[k], gr, gi);
      }
    }
    /* lane's sums as a row, then lane j < kSums adds column j over the 32 rows in lane order */
#pragma unroll
    for (int k = 0; k < K; ++k)
      reinterpret_cast<Vec4<T>*>(s_red + lane * kLd)[k] = Vec4<T>{acc[k][0], acc[k][1], acc[k][2], acc[k][3]};
    __syncwarp();
    if (lane < BwdCfg<T, K>::kSums) {
      T sum = T(0);
#pragma unroll 8
      for (int r = 0; r < 32; ++r) sum += s_red[r * kLd + lane];
      const int64_t n = n0 + lane / 4;
      if (n < p.state) lrnn_cuda::partial_slot(ws, tile, p.heads, p.state, h, n)[lane % 4] = sum;
    }
    __syncwarp();
  }
}

/* grad_v = conj(A), grad_lam = conj(v B), tiles summed in order; symmetric: A and B from the
 * four sums of bwd_pair. */
template <typename T>
__global__ void cy_bwd_finish_kernel(lrnn_cauchy_bwd_params p, int64_t n_tiles, const double* ws) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= p.heads * p.state) return;
  const int64_t h = idx / p.state, n = idx % p.state;
  double s[4];
  lrnn_cuda::sum_partials(ws, n_tiles, p.heads, p.state, h, n, s);
  const Cplx<T> v = reinterpret_cast<const Cplx<T>*>(p.v)[h * p.v_stride[0] + n * p.v_stride[1]];
  if (p.symmetric) {
    const Cplx<T> ln = reinterpret_cast<const Cplx<T>*>(p.lam)[h * p.lam_stride[0] + n * p.lam_stride[1]];
    const double lr = ln.re, b = ln.im;
    const double a_re = 2 * (s[1] - lr * s[0]), a_im = 2 * b * s[0];
    const double b_re = 2 * s[0] - 4 * b * b * s[2], b_im = 4 * b * (s[3] - lr * s[2]);
    s[0] = a_re, s[1] = a_im, s[2] = b_re, s[3] = b_im;
  }
  Cplx<T>* gv = reinterpret_cast<Cplx<T>*>(p.grad_v) + h * p.grad_v_stride[0] + n * p.grad_v_stride[1];
  Cplx<T>* gl = reinterpret_cast<Cplx<T>*>(p.grad_lam) + h * p.grad_lam_stride[0] + n * p.grad_lam_stride[1];
  *gv = Cplx<T>{(T)s[0], (T)(-s[1])};
  const double vr = v.re, vi = v.im;
  *gl = Cplx<T>{(T)(vr * s[2] - vi * s[3]), (T)(-(vr * s[3] + vi * s[2]))};
}

lrnn_status launched() { return cudaGetLastError() == cudaSuccess ? LRNN_OK : LRNN_ERR_CUDA; }

template <typename T, int K>
lrnn_status launch_bwd(const lrnn_cauchy_bwd_params* p, int64_t n_tiles, double* ws, cudaStream_t s) {
  constexpr size_t smem = bwd_smem_bytes<T, K>();
  const unsigned blocks = (unsigned)(n_tiles * p->heads);
  const unsigned fin_blocks = (unsigned)lrnn_cuda::ceil_div(p->heads * p->state, lrnn_cuda::kFinishThreads);
  if (n_tiles > 0) {
    /* all of the SM's unified memory as shared memory: 3 float blocks need ~219 KiB of it */
    auto partial = cy_bwd_partial_kernel<T, K>;
    if (cudaFuncSetAttribute(partial, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess ||
        cudaFuncSetAttribute(partial, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared) !=
            cudaSuccess)
      return LRNN_ERR_CUDA;
    partial<<<blocks, kCyBwdThreads, smem, s>>>(*p, n_tiles, ws);
  }
  cy_bwd_finish_kernel<T><<<fin_blocks, lrnn_cuda::kFinishThreads, 0, s>>>(*p, n_tiles, ws);
  return launched();
}

/* A forward launch with Threads threads per block (kCyPerThread nodes each): 128; 64 and 256
 * measured 0.5-2 % slower on the H200. */
template <typename T, int Threads>
lrnn_status launch_fwd(const lrnn_cauchy_params* p, cudaStream_t s) {
  const int64_t n_tiles = lrnn_cuda::ceil_div(p->length, Threads * kCyPerThread);
  if (n_tiles * p->heads > INT32_MAX) return LRNN_ERR_SHAPE;
  auto fwd = cy_fwd_kernel<T, Threads>;
  fwd<<<(unsigned)(n_tiles * p->heads), Threads, 0, s>>>(*p, n_tiles);
  return launched();
}

}  // namespace

extern "C" int64_t lrnn_cauchy_bwd_workspace_bytes(const lrnn_cauchy_bwd_params* p) {
  if (!p || p->length <= 0) return 0;
  return lrnn_cuda::partials_bytes(lrnn_cuda::ceil_div(p->length, kCyBwdTile), p->heads, p->state);
}

extern "C" lrnn_status lrnn_cauchy_fwd_cuda(const lrnn_cauchy_params* p, void* stream) {
  if (!p || p->heads < 0 || p->state < 0 || p->length < 0) return LRNN_ERR_ARGUMENT;
  if (p->heads == 0 || p->length == 0) return LRNN_OK;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (p->dtype) {
    case LRNN_C64: return launch_fwd<float, 128>(p, s);
    case LRNN_C128: return launch_fwd<double, 128>(p, s);
    default: return LRNN_ERR_DTYPE;
  }
}

extern "C" lrnn_status lrnn_cauchy_bwd_cuda(const lrnn_cauchy_bwd_params* p, void* workspace, void* stream) {
  if (!p || p->heads < 0 || p->state < 0 || p->length < 0) return LRNN_ERR_ARGUMENT;
  if (p->heads == 0 || p->state == 0) return LRNN_OK;
  if (p->length > 0 && !workspace) return LRNN_ERR_ARGUMENT;
  const int64_t n_tiles = lrnn_cuda::ceil_div(p->length, kCyBwdTile);
  if (n_tiles * p->heads > INT32_MAX) return LRNN_ERR_SHAPE;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  double* ws = static_cast<double*>(workspace);
  switch (p->dtype) {
    case LRNN_C64: return launch_bwd<float, 8>(p, n_tiles, ws, s);
    case LRNN_C128: return launch_bwd<double, 4>(p, n_tiles, ws, s);
    default: return LRNN_ERR_DTYPE;
  }
}
