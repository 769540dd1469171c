/* linear_scan.cu: CUDA forward and backward of the diagonal linear scan (lrnn/linear_scan.h).
 *
 * Every step is the affine map x -> a*x + b, and maps compose associatively, so a block can scan
 * many steps in parallel and carry one state between tiles. The kernel shapes below are picked
 * by the launchers from the strides and sizes (see "launch shapes" and tm_route):
 *
 *  - channel-major ("cm"; time is the contiguous dimension, e.g. a (B, D, L) tensor viewed as
 *    (B, L, D)): one block per row (b, d) walks the sequence in tiles. Each warp owns a contiguous
 *    part of the tile as segments of 32 runs of V steps (one 16-byte vector per lane, so every
 *    warp instruction reads or writes 512 contiguous bytes); a thread composes its runs in
 *    registers, each segment is scanned across the warp with shuffles, the warps combine through
 *    shared memory, the state entering the tile comes from the previous tile, and each thread
 *    re-runs its steps from its exact entering state to write h. A time-invariant a gets a
 *    variant that holds it in a register and carries twice the steps.
 *  - time-major, warp-sequential ("tw"; channels contiguous, rows aligned to 16 bytes, D >= 32,
 *    states of at most 8 bytes): a one-warp block owns 32 adjacent channels (a lane per channel)
 *    and runs the recurrence step after step through the whole sequence; cp.async copies the
 *    next stages into shared memory meanwhile. No block barrier, no combine step.
 *  - time-major, pipelined ("tp"; the same inputs): a block of 8 warps owns 32 adjacent channels
 *    and walks the sequence in rounds, the warps splitting a round's steps and combining their
 *    maps through shared memory; optionally a cluster of 2-8 blocks splits the rounds of a row
 *    group, the state entering each round passed from block to block around a ring in
 *    distributed shared memory ("tpcl"; see tp_ring_carry).
 *  - time-major, generic ("tm"; any strides, and the narrow or c128 problems): a block owns
 *    QW*V channels and the time lanes of its threads. Each thread loads S steps of V adjacent
 *    channels (a 16-byte vector when aligned), the time lanes of a channel combine by shuffles
 *    inside a warp and through shared memory across warps, and the state is carried from round
 *    to round. The channel group narrows to one 32-byte sector per row when B*D alone would leave
 *    the GPU idle.
 *
 * All make one pass over memory: the forward reads a and b once and writes h once; the backward
 * reads grad_h, a and h once (tw and tp re-read one row of h per stage or round) and
 * writes da and db once. The backward is the same machinery run in
 * the opposite direction on the adjoint map c -> conj(a)*(g + c) (see lrnn/linear_scan.h), where
 * c is the carried conj(a[next])*lam[next].
 *
 * Deterministic: every combination, including the time-invariant da reduction, happens in an
 * order fixed by the launch shape; no atomics. Not here: allocation, argument checks beyond the
 * ones the launchers need to stay in bounds (the ops layer checks shapes and dtypes). */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "lrnn/linear_scan.h"

namespace {

/* ---------------- element types and their arithmetic ---------------- */

struct __align__(8) cfloat { float re, im; };     /* complex64, interleaved like torch */
struct __align__(16) cdouble { double re, im; };  /* complex128 */

/* Two adjacent channels of a 2-byte type as one 4-byte element, and their f32 states: the
 * time-major kernels of 2-byte types can own 64 channels per row group this way (128-byte rows,
 * a lane's two recurrences side by side; see pair_params). Arithmetic is per channel. */
template <typename E> struct __align__(4) pair2 { E lo, hi; };
struct __align__(8) fpair { float lo, hi; };

/* Arithmetic type of a storage type: f16/bf16 compute in f32. */
template <typename T> struct acc_of { using type = T; };
template <> struct acc_of<__half> { using type = float; };
template <> struct acc_of<__nv_bfloat16> { using type = float; };
template <typename E> struct acc_of<pair2<E>> { using type = fpair; };
template <typename T> using acc_t = typename acc_of<T>::type;

__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ cfloat to_acc(cfloat x) { return x; }
__device__ __forceinline__ cdouble to_acc(cdouble x) { return x; }
template <typename E> __device__ __forceinline__ fpair to_acc(pair2<E> x) { return {to_acc(x.lo), to_acc(x.hi)}; }

template <typename T> __device__ __forceinline__ T from_acc(acc_t<T> v) { return v; }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <> __device__ __forceinline__ pair2<__half> from_acc<pair2<__half>>(fpair v) {
  return {__float2half_rn(v.lo), __float2half_rn(v.hi)};
}
template <> __device__ __forceinline__ pair2<__nv_bfloat16> from_acc<pair2<__nv_bfloat16>>(fpair v) {
  return {__float2bfloat16_rn(v.lo), __float2bfloat16_rn(v.hi)};
}

template <typename T> struct num;
template <> struct num<float> {
  static __device__ __forceinline__ float zero() { return 0.0f; }
  static __device__ __forceinline__ float one() { return 1.0f; }
};
template <> struct num<double> {
  static __device__ __forceinline__ double zero() { return 0.0; }
  static __device__ __forceinline__ double one() { return 1.0; }
};
template <> struct num<cfloat> {
  static __device__ __forceinline__ cfloat zero() { return {0.0f, 0.0f}; }
  static __device__ __forceinline__ cfloat one() { return {1.0f, 0.0f}; }
};
template <> struct num<cdouble> {
  static __device__ __forceinline__ cdouble zero() { return {0.0, 0.0}; }
  static __device__ __forceinline__ cdouble one() { return {1.0, 0.0}; }
};
template <> struct num<fpair> {
  static __device__ __forceinline__ fpair zero() { return {0.0f, 0.0f}; }
  static __device__ __forceinline__ fpair one() { return {1.0f, 1.0f}; }
};

__device__ __forceinline__ float mul(float a, float x) { return a * x; }
__device__ __forceinline__ double mul(double a, double x) { return a * x; }
__device__ __forceinline__ cfloat mul(float a, cfloat x) { return {a * x.re, a * x.im}; }
__device__ __forceinline__ cdouble mul(double a, cdouble x) { return {a * x.re, a * x.im}; }
__device__ __forceinline__ cfloat mul(cfloat a, cfloat x) {
  return {a.re * x.re - a.im * x.im, a.re * x.im + a.im * x.re};
}
__device__ __forceinline__ cdouble mul(cdouble a, cdouble x) {
  return {a.re * x.re - a.im * x.im, a.re * x.im + a.im * x.re};
}
__device__ __forceinline__ float add(float x, float y) { return x + y; }
__device__ __forceinline__ double add(double x, double y) { return x + y; }
__device__ __forceinline__ cfloat add(cfloat x, cfloat y) { return {x.re + y.re, x.im + y.im}; }
__device__ __forceinline__ cdouble add(cdouble x, cdouble y) { return {x.re + y.re, x.im + y.im}; }
__device__ __forceinline__ fpair mul(fpair a, fpair x) { return {a.lo * x.lo, a.hi * x.hi}; }
__device__ __forceinline__ fpair add(fpair x, fpair y) { return {x.lo + y.lo, x.hi + y.hi}; }
__device__ __forceinline__ fpair conj_(fpair x) { return x; }
__device__ __forceinline__ float conj_(float x) { return x; }
__device__ __forceinline__ double conj_(double x) { return x; }
__device__ __forceinline__ cfloat conj_(cfloat x) { return {x.re, -x.im}; }
__device__ __forceinline__ cdouble conj_(cdouble x) { return {x.re, -x.im}; }

/* da[t] = lam[t] * conj(h[t-1]); its real part when a is real and the state complex. */
template <typename A, typename X> __device__ __forceinline__ A da_term(X lam, X h) {
  if constexpr (std::is_same<A, X>::value) {
    return mul(lam, conj_(h));
  } else {
    return lam.re * h.re + lam.im * h.im;
  }
}

/* Shuffles that move a value `d` lanes along the scan direction: from lower lanes for a
 * forward scan, from higher lanes for a reverse one. */
template <bool REV> __device__ __forceinline__ float shfl_along(float v, int d) {
  return REV ? __shfl_down_sync(0xffffffffu, v, d) : __shfl_up_sync(0xffffffffu, v, d);
}
template <bool REV> __device__ __forceinline__ double shfl_along(double v, int d) {
  return REV ? __shfl_down_sync(0xffffffffu, v, d) : __shfl_up_sync(0xffffffffu, v, d);
}
template <bool REV> __device__ __forceinline__ cfloat shfl_along(cfloat v, int d) {
  return {shfl_along<REV>(v.re, d), shfl_along<REV>(v.im, d)};
}
template <bool REV> __device__ __forceinline__ cdouble shfl_along(cdouble v, int d) {
  return {shfl_along<REV>(v.re, d), shfl_along<REV>(v.im, d)};
}
__device__ __forceinline__ float shfl_xor(float v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
__device__ __forceinline__ double shfl_xor(double v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
__device__ __forceinline__ cfloat shfl_xor(cfloat v, int m) { return {shfl_xor(v.re, m), shfl_xor(v.im, m)}; }
__device__ __forceinline__ cdouble shfl_xor(cdouble v, int m) { return {shfl_xor(v.re, m), shfl_xor(v.im, m)}; }

__device__ __forceinline__ float shfl_idx(float v, int l) { return __shfl_sync(0xffffffffu, v, l); }
__device__ __forceinline__ double shfl_idx(double v, int l) { return __shfl_sync(0xffffffffu, v, l); }
__device__ __forceinline__ cfloat shfl_idx(cfloat v, int l) { return {shfl_idx(v.re, l), shfl_idx(v.im, l)}; }
__device__ __forceinline__ cdouble shfl_idx(cdouble v, int l) { return {shfl_idx(v.re, l), shfl_idx(v.im, l)}; }

/* ---------------- the scan element: x -> a*x + b ---------------- */

template <typename A, typename X> struct Affine {
  A a;
  X b;
};

template <typename A, typename X> __device__ __forceinline__ Affine<A, X> identity() {
  return {num<A>::one(), num<X>::zero()};
}

/* `first` then `then`: x -> then.a*(first.a*x + first.b) + then.b */
template <typename A, typename X>
__device__ __forceinline__ Affine<A, X> compose(Affine<A, X> first, Affine<A, X> then) {
  return {mul(then.a, first.a), add(mul(then.a, first.b), then.b)};
}

template <typename A, typename X> __device__ __forceinline__ X apply(Affine<A, X> f, X x) {
  return add(mul(f.a, x), f.b);
}

template <bool REV, typename A, typename X>
__device__ __forceinline__ Affine<A, X> shfl_along(Affine<A, X> v, int d) {
  return {shfl_along<REV>(v.a, d), shfl_along<REV>(v.b, d)};
}

template <typename A, typename X> __device__ __forceinline__ Affine<A, X> shfl_idx(Affine<A, X> v, int l) {
  return {shfl_idx(v.a, l), shfl_idx(v.b, l)};
}

/* Inclusive scan across the warp in scan order (lane 0 first, or lane 31 first when REV). */
template <bool REV, typename A, typename X>
__device__ __forceinline__ Affine<A, X> warp_scan(Affine<A, X> v, int lane) {
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const Affine<A, X> o = shfl_along<REV>(v, d);
    if (REV ? lane + d < 32 : lane >= d) v = compose(o, v);
  }
  return v;
}

template <typename T> __device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v = add(v, shfl_xor(v, m));
  return v;
}

/* Position of the s-th element in scan order among n (reverse scans walk backwards). */
template <bool REV> __device__ __forceinline__ int ord(int s, int n) { return REV ? n - 1 - s : s; }

/* ---------------- runs of V consecutive elements ---------------- */

/* Elements per 16-byte vector of the state type: the unit a thread loads (c128: one element). */
template <typename TX> __host__ __device__ constexpr int vec_width() { return sizeof(TX) >= 16 ? 1 : 16 / (int)sizeof(TX); }

/* Valid elements of the run of V starting at t0 in a sequence of len. */
template <int V> __device__ __forceinline__ int run_len(int64_t t0, int64_t len) {
  return t0 >= len ? 0 : (len - t0 >= V ? V : (int)(len - t0));
}

/* r[j] = x[j * s] for j < n, else pad. With vec (s == 1 and x aligned to the run's byte size), a
 * whole run is read with 16- or 8-byte transactions. */
template <int V, typename T>
__device__ __forceinline__ void load_run(T (&r)[V], const T *x, int64_t s, int n, bool vec, T pad) {
  constexpr int bytes = V * (int)sizeof(T);
  if constexpr (bytes % 16 == 0 || bytes == 8) {
    if (vec && n == V) {
      if constexpr (bytes % 16 == 0) {
#pragma unroll
        for (int i = 0; i < bytes / 16; ++i) {
          const int4 v = reinterpret_cast<const int4 *>(x)[i];
          memcpy(reinterpret_cast<char *>(r) + 16 * i, &v, 16);
        }
      } else {
        const int2 v = *reinterpret_cast<const int2 *>(x);
        memcpy(r, &v, 8);
      }
      return;
    }
  }
#pragma unroll
  for (int j = 0; j < V; ++j) r[j] = j < n ? x[j * s] : pad;
}

template <int V, typename T> __device__ __forceinline__ void store_run(const T (&r)[V], T *x, int64_t s, int n, bool vec) {
  constexpr int bytes = V * (int)sizeof(T);
  if constexpr (bytes % 16 == 0 || bytes == 8) {
    if (vec && n == V) {
      if constexpr (bytes % 16 == 0) {
#pragma unroll
        for (int i = 0; i < bytes / 16; ++i) {
          int4 v;
          memcpy(&v, reinterpret_cast<const char *>(r) + 16 * i, 16);
          reinterpret_cast<int4 *>(x)[i] = v;
        }
      } else {
        int2 v;
        memcpy(&v, r, 8);
        *reinterpret_cast<int2 *>(x) = v;
      }
      return;
    }
  }
#pragma unroll
  for (int j = 0; j < V; ++j)
    if (j < n) x[j * s] = r[j];
}


/* ---------------- channel-major kernels ----------------
 * A tile of the row is blockDim * NV * V steps. Warp w owns the contiguous steps
 * [w * 32 * NV * V, (w + 1) * 32 * NV * V) of the tile as NV segments of 32 * V steps; in segment v
 * lane l holds the run of V steps at (v * 32 + l) * V, so each load and store instruction of a
 * warp covers 32 * 16 contiguous bytes (full 128-byte lines; a thread-contiguous layout made
 * the L2 serve every line several times). Each segment is scanned across the warp with
 * shuffles, the warp's segments are chained in registers, and the warps of the block through
 * shared memory. */

/* 16-byte vectors per thread and tile: 64 bytes per array and thread; 32 in the backward and the
 * time-invariant variant of 2-byte types, whose conversions to f32 would spill (measured bf16
 * forward at (8, 4096, 1536): 82% of the copy bandwidth with 2 vectors, 91% with 4; the same
 * change cost the backward 30 points). */
template <typename TX, bool INV, bool BWD> __host__ __device__ constexpr int cm_vectors() {
  return sizeof(TX) == 2 && (INV || BWD) ? 2 : 4;
}
/* The 2-byte time-invariant variant (67-74% of the floor on the H200 at 2 vectors) also exists
 * with 4 vectors per thread (NVX = 4), picked with LRNN_LINEAR_SCAN_CM=wide for a comparison. */
bool cm_wide() {
  const char *e = getenv("LRNN_LINEAR_SCAN_CM");
  return e && !strcmp(e, "wide");
}

/* Channel-major blocks: at most 256 threads, with registers capped so that this many blocks fit
 * on an SM and keep enough loads in flight while others scan. Measured on the H200 at
 * (8, 4096, 1536), forward: f32 88% of the copy bandwidth with 2 blocks, 98% with 3; bf16 58% /
 * 73% / 82% with 2 / 3 / 4 at two vectors per thread, 91% with 3 at four; a time-invariant f32
 * a (twice the steps per thread) 88% with 2, 68% with 3 (the tighter cap spills). The backward
 * holds three arrays: two blocks (three for 2-byte types) keep it from spilling; it measured 97%
 * (f32) and 96% (c64) of the bandwidth so. */
constexpr int kCmThreads = 256;
template <typename TX, bool INV, bool BWD> __host__ __device__ constexpr int cm_min_blocks() {
  return BWD || INV ? (sizeof(TX) == 2 ? 3 : 2) : 3;
}

/* a at step j of run v: loaded, or with INV (a constant in time, the kernels' second loads-free
 * variant) the row's value, and the identity past the sequence end. */
template <bool INV, int R, int V, typename TA, typename A = acc_t<TA>>
__device__ __forceinline__ A a_at(const TA (&ra)[R][V], A a_inv, int v, int j, bool in_range) {
  if constexpr (INV) {
    return in_range ? a_inv : num<A>::one();
  } else {
    return to_acc(ra[v][j]);
  }
}

/* The run of `a` at t0: a time-invariant a (time stride 0) is one value per row, held in a register. */
template <int V, typename T>
__device__ __forceinline__ void load_a_run(T (&r)[V], const T *a, int64_t ts, int64_t t0, int n, bool vec, T pad, T row) {
  if (ts == 0) {
#pragma unroll
    for (int j = 0; j < V; ++j) r[j] = j < n ? row : pad;
  } else {
    load_run<V>(r, a + (n > 0 ? t0 * ts : 0), ts, n, vec, pad);
  }
}

/* Scans each thread's segment totals across the warp: excl[v] is the composition of the runs
 * before this lane's in segment v, tot[v] the whole segment's. */
template <bool REV, int NV, typename A, typename X>
__device__ __forceinline__ void warp_segments(const Affine<A, X> (&f)[NV], Affine<A, X> (&excl)[NV],
                                              Affine<A, X> (&tot)[NV], int lane) {
#pragma unroll
  for (int v = 0; v < NV; ++v) {
    const Affine<A, X> incl = warp_scan<REV>(f[v], lane);
    excl[v] = shfl_along<REV>(incl, 1);
    if (lane == (REV ? 31 : 0)) excl[v] = identity<A, X>();
    tot[v] = shfl_idx(incl, REV ? 0 : 31);
  }
}

/* The state entering this warp's part of the tile, from the carry entering the tile; advances
 * carry past the whole tile. `wt` are the warps' totals, written before the barrier. */
template <bool REV, typename A, typename X>
__device__ __forceinline__ X enter_warp(const Affine<A, X> *wt, X &carry, int warp, int nw) {
  X state = carry, entering = carry;
  for (int s = 0; s < nw; ++s) {
    const int w = REV ? nw - 1 - s : s;
    if (w == warp) entering = state;
    state = apply(wt[w], state);
  }
  carry = state;
  return entering;
}

template <typename TX, typename TA, bool VEC, bool REV, bool INV, int NVX = 0>
__global__ void __launch_bounds__(kCmThreads, (cm_min_blocks<TX, INV, false>())) scan_fwd_cm(const lrnn_linear_scan_params p) {
  using X = acc_t<TX>;
  using A = acc_t<TA>;
  using Op = Affine<A, X>;
  constexpr int V = vec_width<TX>(), NV = (NVX ? NVX : cm_vectors<TX, INV, false>()) * (INV ? 2 : 1);
  __shared__ Op warp_total[2][32];

  const int64_t row = blockIdx.x, bi = row / p.dim, d = row % p.dim, L = p.length;
  const TA *a = (const TA *)p.a + bi * p.a_stride[0] + d * p.a_stride[2];
  const TX *x = (const TX *)p.b + bi * p.b_stride[0] + d * p.b_stride[2];
  TX *h = (TX *)p.h + bi * p.h_stride[0] + d * p.h_stride[2];
  const int64_t as = p.a_stride[1], bs = p.b_stride[1], hs = p.h_stride[1];
  const TA a_pad = from_acc<TA>(num<A>::one()), a_row = as == 0 && L > 0 ? a[0] : a_pad;
  const A a_inv = to_acc(a_row);
  const TX x_pad = from_acc<TX>(num<X>::zero());
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const int64_t tile = (int64_t)blockDim.x * V * NV, ntiles = (L + tile - 1) / tile;

  X carry = p.h0 ? to_acc(((const TX *)p.h0)[bi * p.h0_stride[0] + d * p.h0_stride[1]]) : num<X>::zero();
  for (int64_t k = 0; k < ntiles; ++k) {
    const int64_t wbase = (REV ? ntiles - 1 - k : k) * tile + (int64_t)warp * (32 * NV * V);
    /* offsets inside the tile are 32-bit: fewer registers than 64-bit positions */
    const int rem = (int)(L - wbase < 32 * NV * V ? L - wbase : 32 * NV * V);  /* steps of this warp */
    const TA *aw = as == 0 ? a : a + wbase * as;
    const TX *xw = x + wbase * bs;
    TX *hw = h + wbase * hs;
    TA ra[INV ? 1 : NV][V];
    TX rx[NV][V];
    Op f[NV];
#pragma unroll
    for (int v = 0; v < NV; ++v) {
      const int t0 = (v * 32 + lane) * V, n = run_len<V>(t0, rem);
      if constexpr (!INV) load_a_run<V>(ra[v], aw, as, t0, n, VEC, a_pad, a_row);
      load_run<V>(rx[v], xw + (n > 0 ? t0 * bs : 0), bs, n, VEC, x_pad);
    }
#pragma unroll
    for (int v = 0; v < NV; ++v) {  /* this thread's runs composed (padding steps are the identity) */
      f[v] = identity<A, X>();
#pragma unroll
      for (int s = 0; s < V; ++s) {
        const int j = ord<REV>(s, V);
        f[v] = compose(f[v], Op{a_at<INV>(ra, a_inv, v, j, (v * 32 + lane) * V + j < rem), to_acc(rx[v][j])});
      }
    }
    Op excl[NV], tot[NV];
    warp_segments<REV>(f, excl, tot, lane);
    if (lane == 0) {
      Op wt = identity<A, X>();
#pragma unroll
      for (int s = 0; s < NV; ++s) wt = compose(wt, tot[ord<REV>(s, NV)]);
      warp_total[k & 1][warp] = wt;
    }
    /* double-buffered by tile parity: one barrier per tile suffices */
    __syncthreads();
    X state = enter_warp<REV>(warp_total[k & 1], carry, warp, nw);
#pragma unroll
    for (int s = 0; s < NV; ++s) {
      const int v = ord<REV>(s, NV);
      const int t0 = (v * 32 + lane) * V;
      X y = apply(excl[v], state);
#pragma unroll
      for (int sj = 0; sj < V; ++sj) {
        const int j = ord<REV>(sj, V);
        y = add(mul(a_at<INV>(ra, a_inv, v, j, t0 + j < rem), y), to_acc(rx[v][j]));  /* h[t] = a[t]*h[t-1] + b[t] */
        rx[v][j] = from_acc<TX>(y);
      }
      state = apply(tot[v], state);
      const int n = run_len<V>(t0, rem);
      if (n > 0) store_run<V>(rx[v], hw + t0 * hs, hs, n, VEC);
    }
  }
  if (threadIdx.x == 0) ((TX *)p.h_last)[bi * p.h_last_stride[0] + d * p.h_last_stride[1]] = from_acc<TX>(carry);
}

/* ---------------- backward ----------------
 * REV is the direction of the forward scan; the backward walks the other way (BREV). With c the
 * adjoint carried from the later steps (grad_h_last before the first backward step):
 *     lam[t] = g[t] + c,  db[t] = lam[t],  da[t] = lam[t] * conj(h_prev(t)),  c <- conj(a[t]) * lam[t]
 * i.e. the affine step c -> conj(a)*c + conj(a)*g, whose final c is dh0. h_prev(t) is the state
 * before the forward step at t: h[t-1] (h[t+1] when REV), or h0 before the first step. */

/* da (B, D) summed over time: the block's per-thread partial sums added in a fixed order. */
template <typename A>
__device__ __forceinline__ A block_sum(A v, A *scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  A total = num<A>::zero();
  for (int w = 0; w < nw; ++w) total = add(total, scratch[w]);
  return total;
}

template <typename TX, typename TA, bool VEC, bool REV, bool INV, int NVX = 0>
__global__ void __launch_bounds__(kCmThreads, (cm_min_blocks<TX, INV, true>())) scan_bwd_cm(const lrnn_linear_scan_bwd_params p) {
  using X = acc_t<TX>;
  using A = acc_t<TA>;
  using Op = Affine<A, X>;
  constexpr bool BREV = !REV;
  constexpr int V = vec_width<TX>(), NV = (NVX ? NVX : cm_vectors<TX, INV, true>()) * (INV ? 2 : 1);
  __shared__ Op warp_total[2][32];
  __shared__ A partial[32];

  const int64_t row = blockIdx.x, bi = row / p.dim, d = row % p.dim, L = p.length;
  const TA *a = (const TA *)p.a + bi * p.a_stride[0] + d * p.a_stride[2];
  const TX *g = (const TX *)p.grad_h + bi * p.grad_h_stride[0] + d * p.grad_h_stride[2];
  const TX *h = (const TX *)p.h + bi * p.h_stride[0] + d * p.h_stride[2];
  TX *db = (TX *)p.db + bi * p.db_stride[0] + d * p.db_stride[2];
  TA *da = p.da_sum_time ? nullptr : (TA *)p.da + bi * p.da_stride[0] + d * p.da_stride[2];
  const int64_t as = p.a_stride[1], gs = p.grad_h_stride[1], hs = p.h_stride[1], dbs = p.db_stride[1],
                das = p.da_stride[1];
  const TA a_pad = from_acc<TA>(num<A>::one()), a_row = as == 0 && L > 0 ? a[0] : a_pad;
  const A a_inv = to_acc(a_row);
  const TX x_pad = from_acc<TX>(num<X>::zero());
  const X h0 = p.h0 ? to_acc(((const TX *)p.h0)[bi * p.h0_stride[0] + d * p.h0_stride[1]]) : num<X>::zero();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const int64_t tile = (int64_t)blockDim.x * V * NV, ntiles = (L + tile - 1) / tile;

  X carry = p.grad_h_last
                ? to_acc(((const TX *)p.grad_h_last)[bi * p.grad_h_last_stride[0] + d * p.grad_h_last_stride[1]])
                : num<X>::zero();
  A da_sum = num<A>::zero();
  for (int64_t k = 0; k < ntiles; ++k) {
    const int64_t wbase = (BREV ? ntiles - 1 - k : k) * tile + (int64_t)warp * (32 * NV * V);
    const int rem = (int)(L - wbase < 32 * NV * V ? L - wbase : 32 * NV * V);  /* steps of this warp */
    const TA *aw = as == 0 ? a : a + wbase * as;
    const TX *gw = g + wbase * gs, *hw = h + wbase * hs;
    TX *dbw = db + wbase * dbs;
    TA *daw = p.da_sum_time ? nullptr : da + wbase * das;
    TA ra[INV ? 1 : NV][V];
    TX rg[NV][V], rh[NV][V];
    Op f[NV];
#pragma unroll
    for (int v = 0; v < NV; ++v) {
      const int t0 = (v * 32 + lane) * V, n = run_len<V>(t0, rem);
      if constexpr (!INV) load_a_run<V>(ra[v], aw, as, t0, n, VEC, a_pad, a_row);
      load_run<V>(rg[v], gw + (n > 0 ? t0 * gs : 0), gs, n, VEC, x_pad);
      load_run<V>(rh[v], hw + (n > 0 ? t0 * hs : 0), hs, n, VEC, x_pad);
    }
#pragma unroll
    for (int v = 0; v < NV; ++v) {
      f[v] = identity<A, X>();
#pragma unroll
      for (int s = 0; s < V; ++s) {
        const int j = ord<BREV>(s, V);
        const A ca = conj_(a_at<INV>(ra, a_inv, v, j, (v * 32 + lane) * V + j < rem));
        f[v] = compose(f[v], Op{ca, mul(ca, to_acc(rg[v][j]))});
      }
    }
    Op excl[NV], tot[NV];
    warp_segments<BREV>(f, excl, tot, lane);
    if (lane == 0) {
      Op wt = identity<A, X>();
#pragma unroll
      for (int s = 0; s < NV; ++s) wt = compose(wt, tot[ord<BREV>(s, NV)]);
      warp_total[k & 1][warp] = wt;
    }
    /* The state before each run's first forward step lives in the neighbouring lane (or the
     * neighbouring segment's edge lane); only the warp's own edge is read from memory. */
    X edge[NV];
#pragma unroll
    for (int v = 0; v < NV; ++v) {
      const int64_t t0 = wbase + (v * 32 + lane) * V;
      if (REV) {
        X nb = shfl_along<true>(to_acc(rh[v][0]), 1);
        const X next_seg = shfl_idx(to_acc(rh[v + 1 < NV ? v + 1 : v][0]), 0);
        if (lane == 31) nb = v + 1 < NV ? next_seg : (t0 + V < L ? to_acc(h[(t0 + V) * hs]) : h0);
        edge[v] = nb;
      } else {
        X nb = shfl_along<false>(to_acc(rh[v][V - 1]), 1);
        const X prev_seg = shfl_idx(to_acc(rh[v > 0 ? v - 1 : v][V - 1]), 31);
        if (lane == 0) nb = v > 0 ? prev_seg : (t0 >= 1 && t0 - 1 < L ? to_acc(h[(t0 - 1) * hs]) : h0);
        edge[v] = nb;
      }
    }
    __syncthreads();
    X state = enter_warp<BREV>(warp_total[k & 1], carry, warp, nw);
#pragma unroll
    for (int s = 0; s < NV; ++s) {
      const int v = ord<BREV>(s, NV);
      const int t0 = (v * 32 + lane) * V;
      X c = apply(excl[v], state);
      TA rda[V];
#pragma unroll
      for (int sj = 0; sj < V; ++sj) {
        const int j = ord<BREV>(sj, V);
        X hp = REV ? (j + 1 < V ? to_acc(rh[v][j + 1]) : edge[v]) : (j > 0 ? to_acc(rh[v][j - 1]) : edge[v]);
        if (REV && wbase + t0 + j + 1 >= L) hp = h0;
        const X lam = add(to_acc(rg[v][j]), c);
        const A dat = da_term<A>(lam, hp);
        c = mul(conj_(a_at<INV>(ra, a_inv, v, j, t0 + j < rem)), lam);
        rg[v][j] = from_acc<TX>(lam);
        if (p.da_sum_time) {
          if (t0 + j < rem) da_sum = add(da_sum, dat);
        } else {
          rda[j] = from_acc<TA>(dat);
        }
      }
      state = apply(tot[v], state);
      const int n = run_len<V>(t0, rem);
      if (n > 0) {
        store_run<V>(rg[v], dbw + t0 * dbs, dbs, n, VEC);
        if (!p.da_sum_time) store_run<V>(rda, daw + t0 * das, das, n, VEC);
      }
    }
  }
  if (threadIdx.x == 0) ((TX *)p.dh0)[bi * p.dh0_stride[0] + d * p.dh0_stride[1]] = from_acc<TX>(carry);
  if (p.da_sum_time) {
    const A total = block_sum(da_sum, partial);
    if (threadIdx.x == 0) ((A *)p.da)[bi * p.da_stride[0] + d * p.da_stride[2]] = total;
  }
}

/* ---------------- time-major (and generic-stride) kernels ----------------
 * A block owns QW * V adjacent channels of one batch element: thread (c, q) = (threadIdx % QW,
 * threadIdx / QW) holds channels c*V .. c*V+V-1 (one 16-byte vector when the channel stride is
 * 1) for S consecutive steps of time lane q, so a warp reads 32/QW rows of QW*16 contiguous
 * bytes per instruction. The time lanes of a channel are combined by shuffles inside a warp
 * and through shared memory across warps; the state is carried from round to round (a round is
 * all lanes' S steps). QW shrinks (down to one 32-byte sector per row) when B*D alone would not
 * give every SM blocks. */

/* Steps per thread and round: four 16-byte vectors per array (two in the backward of 2-byte
 * types, which widens three arrays to f32). */
/* Channels per thread: one 16-byte vector, at most 4 (more would hold too many states). */
template <typename TX> __host__ __device__ constexpr int tm_width() { return vec_width<TX>() < 4 ? vec_width<TX>() : 4; }

template <typename TX, bool BWD> __host__ __device__ constexpr int tm_steps() {
  return BWD && sizeof(TX) == 2 ? 2 : 4;
}

/* Time-major blocks: at most 256 threads, registers for three of them per SM in the forward
 * (measured f32 at (8, 4096, 1536): 70% of the copy bandwidth with 2, 85% with 3, 72% with 4),
 * two in the backward, whose three arrays would spill under the tighter cap. */
constexpr int kTmThreads = 256, kTmMinBlocksFwd = 3, kTmMinBlocksBwd = 2;

/* Load flags of the time-major kernels: which arrays are read as whole vectors. */
enum { kVecA = 1, kVecX = 2, kVecH = 4, kVecG = 8, kVecDa = 16 };

/* Scans the time lanes of each channel inside the warp (lanes c, c+QW, c+2QW, ...). */
template <bool REV, int V, typename A, typename X>
__device__ __forceinline__ void lane_scan(Affine<A, X> (&f)[V], Affine<A, X> (&excl)[V], int lane, int qw) {
#pragma unroll
  for (int i = 0; i < V; ++i) {
    for (int dist = qw; dist < 32; dist <<= 1) {
      const Affine<A, X> o = shfl_along<REV>(f[i], dist);
      if (REV ? lane + dist < 32 : lane >= dist) f[i] = compose(o, f[i]);
    }
    excl[i] = shfl_along<REV>(f[i], qw);
    if (REV ? lane + qw >= 32 : lane < qw) excl[i] = identity<A, X>();
  }
}

/* The states entering this thread's lane, from carry; advances carry past the round. tot holds
 * [warp][channel] warp totals. */
template <bool REV, int V, typename A, typename X>
__device__ __forceinline__ void enter_lane(const Affine<A, X> *tot, X (&carry)[V], X (&entering)[V], int warp, int nw,
                                           int cv) {
#pragma unroll
  for (int i = 0; i < V; ++i) {
    X state = carry[i];
    entering[i] = state;
    for (int s = 0; s < nw; ++s) {
      const int w = REV ? nw - 1 - s : s;
      if (w == warp) entering[i] = state;
      state = apply(tot[w * cv + i], state);
    }
    carry[i] = state;
  }
}

struct TmIndex {
  int c, q, lane, warp, nw, nd;  /* channel vector, time lane, ..., channels owned (0..V) */
  int64_t bi, d0;
};

template <int V> __device__ __forceinline__ TmIndex tm_index(int64_t D, int qw) {
  TmIndex ix;
  ix.c = threadIdx.x % qw;
  ix.q = threadIdx.x / qw;
  ix.lane = threadIdx.x & 31;
  ix.warp = threadIdx.x >> 5;
  ix.nw = blockDim.x >> 5;
  const int64_t gw = (int64_t)qw * V, groups = (D + gw - 1) / gw;
  ix.bi = blockIdx.x / groups;
  ix.d0 = (blockIdx.x % groups) * gw + (int64_t)ix.c * V;
  ix.nd = ix.d0 >= D ? 0 : (D - ix.d0 >= V ? V : (int)(D - ix.d0));
  if (ix.nd == 0) ix.d0 = 0;
  return ix;
}

template <typename TX, typename TA, bool REV>
__global__ void __launch_bounds__(kTmThreads, kTmMinBlocksFwd) scan_fwd_tm(const lrnn_linear_scan_params p, int qw, int vec) {
  using X = acc_t<TX>;
  using A = acc_t<TA>;
  using Op = Affine<A, X>;
  constexpr int V = tm_width<TX>(), S = tm_steps<TX, false>();
  extern __shared__ __align__(16) unsigned char smem[];
  const TmIndex ix = tm_index<V>(p.dim, qw);
  const int cv = qw * V;
  Op *tot = reinterpret_cast<Op *>(smem); /* [2][nw][qw * V] */

  const int64_t L = p.length, len = ix.nd > 0 ? L : 0;
  const TA *a = (const TA *)p.a + ix.bi * p.a_stride[0] + ix.d0 * p.a_stride[2];
  const TX *x = (const TX *)p.b + ix.bi * p.b_stride[0] + ix.d0 * p.b_stride[2];
  TX *h = (TX *)p.h + ix.bi * p.h_stride[0] + ix.d0 * p.h_stride[2];
  const int64_t as = p.a_stride[1], bs = p.b_stride[1], hs = p.h_stride[1];
  const int64_t acs = p.a_stride[2], bcs = p.b_stride[2], hcs = p.h_stride[2];
  const TA a_pad = from_acc<TA>(num<A>::one());
  const TX x_pad = from_acc<TX>(num<X>::zero());
  TA a_row[V]; /* a time-invariant a: read once */
  load_run<V>(a_row, a, acs, as == 0 && len > 0 ? ix.nd : 0, vec & kVecA, a_pad);

  X carry[V];
#pragma unroll
  for (int i = 0; i < V; ++i)
    carry[i] = p.h0 && i < ix.nd ? to_acc(((const TX *)p.h0)[ix.bi * p.h0_stride[0] + (ix.d0 + i) * p.h0_stride[1]])
                                 : num<X>::zero();
  const int64_t round = (int64_t)(blockDim.x / qw) * S, nrounds = (L + round - 1) / round;
  for (int64_t k = 0; k < nrounds; ++k) {
    const int64_t t0 = (REV ? nrounds - 1 - k : k) * round + (int64_t)ix.q * S;
    TA ra[S][V];
    TX rx[S][V];
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int n = t0 + s < len ? ix.nd : 0;
      if (as == 0) {
#pragma unroll
        for (int i = 0; i < V; ++i) ra[s][i] = i < n ? a_row[i] : a_pad;
      } else {
        load_run<V>(ra[s], a + (n > 0 ? (t0 + s) * as : 0), acs, n, vec & kVecA, a_pad);
      }
      load_run<V>(rx[s], x + (n > 0 ? (t0 + s) * bs : 0), bcs, n, vec & kVecX, x_pad);
    }
    Op f[V], excl[V];
#pragma unroll
    for (int i = 0; i < V; ++i) {
      f[i] = identity<A, X>();
#pragma unroll
      for (int s = 0; s < S; ++s) {
        const int j = ord<REV>(s, S);
        f[i] = compose(f[i], Op{to_acc(ra[j][i]), to_acc(rx[j][i])});
      }
    }
    lane_scan<REV>(f, excl, ix.lane, qw);
    Op *t = tot + (k & 1) * ix.nw * cv;
    if (REV ? ix.lane < qw : ix.lane >= 32 - qw) {
#pragma unroll
      for (int i = 0; i < V; ++i) t[ix.warp * cv + ix.c * V + i] = f[i];
    }
    __syncthreads();
    X entering[V];
    enter_lane<REV>(t + ix.c * V, carry, entering, ix.warp, ix.nw, cv);
#pragma unroll
    for (int i = 0; i < V; ++i) {
      X y = apply(excl[i], entering[i]);
#pragma unroll
      for (int s = 0; s < S; ++s) {
        const int j = ord<REV>(s, S);
        y = add(mul(to_acc(ra[j][i]), y), to_acc(rx[j][i]));
        rx[j][i] = from_acc<TX>(y);
      }
    }
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int n = t0 + s < len ? ix.nd : 0;
      if (n > 0) store_run<V>(rx[s], h + (t0 + s) * hs, hcs, n, vec & kVecH);
    }
  }
  if (ix.q == 0) {
#pragma unroll
    for (int i = 0; i < V; ++i)
      if (i < ix.nd) ((TX *)p.h_last)[ix.bi * p.h_last_stride[0] + (ix.d0 + i) * p.h_last_stride[1]] = from_acc<TX>(carry[i]);
  }
}

template <typename TX, typename TA, bool REV>
__global__ void __launch_bounds__(kTmThreads, kTmMinBlocksBwd) scan_bwd_tm(const lrnn_linear_scan_bwd_params p, int qw, int vec) {
  using X = acc_t<TX>;
  using A = acc_t<TA>;
  using Op = Affine<A, X>;
  constexpr bool BREV = !REV;
  constexpr int V = tm_width<TX>(), S = tm_steps<TX, true>();
  extern __shared__ __align__(16) unsigned char smem[];
  const TmIndex ix = tm_index<V>(p.dim, qw);
  const int cv = qw * V;
  Op *tot = reinterpret_cast<Op *>(smem); /* [2][nw][qw * V] */

  const int64_t L = p.length, len = ix.nd > 0 ? L : 0;
  const TA *a = (const TA *)p.a + ix.bi * p.a_stride[0] + ix.d0 * p.a_stride[2];
  const TX *g = (const TX *)p.grad_h + ix.bi * p.grad_h_stride[0] + ix.d0 * p.grad_h_stride[2];
  const TX *h = (const TX *)p.h + ix.bi * p.h_stride[0] + ix.d0 * p.h_stride[2];
  TX *db = (TX *)p.db + ix.bi * p.db_stride[0] + ix.d0 * p.db_stride[2];
  TA *da = p.da_sum_time ? nullptr : (TA *)p.da + ix.bi * p.da_stride[0] + ix.d0 * p.da_stride[2];
  const int64_t as = p.a_stride[1], gs = p.grad_h_stride[1], hs = p.h_stride[1], dbs = p.db_stride[1],
                das = p.da_stride[1];
  const int64_t acs = p.a_stride[2], gcs = p.grad_h_stride[2], hcs = p.h_stride[2], dbcs = p.db_stride[2],
                dacs = p.da_stride[2];
  const TA a_pad = from_acc<TA>(num<A>::one());
  const TX x_pad = from_acc<TX>(num<X>::zero());
  TA a_row[V];
  load_run<V>(a_row, a, acs, as == 0 && len > 0 ? ix.nd : 0, vec & kVecA, a_pad);

  X carry[V], h0[V];
  A da_sum[V];
#pragma unroll
  for (int i = 0; i < V; ++i) {
    const bool ok = i < ix.nd;
    h0[i] = ok && p.h0 ? to_acc(((const TX *)p.h0)[ix.bi * p.h0_stride[0] + (ix.d0 + i) * p.h0_stride[1]]) : num<X>::zero();
    carry[i] = ok && p.grad_h_last ? to_acc(((const TX *)p.grad_h_last)[ix.bi * p.grad_h_last_stride[0] +
                                                                      (ix.d0 + i) * p.grad_h_last_stride[1]])
                                   : num<X>::zero();
    da_sum[i] = num<A>::zero();
  }
  const int64_t round = (int64_t)(blockDim.x / qw) * S, nrounds = (L + round - 1) / round;
  for (int64_t k = 0; k < nrounds; ++k) {
    const int64_t t0 = (BREV ? nrounds - 1 - k : k) * round + (int64_t)ix.q * S;
    TA ra[S][V];
    TX rg[S][V], rh[S][V];
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int n = t0 + s < len ? ix.nd : 0;
      if (as == 0) {
#pragma unroll
        for (int i = 0; i < V; ++i) ra[s][i] = i < n ? a_row[i] : a_pad;
      } else {
        load_run<V>(ra[s], a + (n > 0 ? (t0 + s) * as : 0), acs, n, vec & kVecA, a_pad);
      }
      load_run<V>(rg[s], g + (n > 0 ? (t0 + s) * gs : 0), gcs, n, vec & kVecG, x_pad);
      load_run<V>(rh[s], h + (n > 0 ? (t0 + s) * hs : 0), hcs, n, vec & kVecH, x_pad);
    }
    Op f[V], excl[V];
#pragma unroll
    for (int i = 0; i < V; ++i) {
      f[i] = identity<A, X>();
#pragma unroll
      for (int s = 0; s < S; ++s) {
        const int j = ord<BREV>(s, S);
        const A ca = conj_(to_acc(ra[j][i]));
        f[i] = compose(f[i], Op{ca, mul(ca, to_acc(rg[j][i]))});
      }
    }
    lane_scan<BREV>(f, excl, ix.lane, qw);
    Op *t = tot + (k & 1) * ix.nw * cv;
    if (BREV ? ix.lane < qw : ix.lane >= 32 - qw) {
#pragma unroll
      for (int i = 0; i < V; ++i) t[ix.warp * cv + ix.c * V + i] = f[i];
    }
    /* the state before this lane's first forward step: the neighbouring lane's edge step, read
     * from memory only at the warp's edge */
    X edge[V];
    {
      const bool warp_edge = REV ? ix.lane + qw >= 32 : ix.lane < qw;
      const int64_t te = REV ? t0 + S : t0 - 1;
      TX ring[V];
      const int n = warp_edge && te >= 0 && te < len ? ix.nd : 0;
      load_run<V>(ring, h + (n > 0 ? te * hs : 0), hcs, n, vec & kVecH, x_pad);
#pragma unroll
      for (int i = 0; i < V; ++i) {
        const X nb = shfl_along<REV>(to_acc(rh[REV ? 0 : S - 1][i]), qw);
        edge[i] = warp_edge ? (te >= 0 && te < len ? to_acc(ring[i]) : h0[i]) : nb;
      }
    }
    __syncthreads();
    X entering[V];
    enter_lane<BREV>(t + ix.c * V, carry, entering, ix.warp, ix.nw, cv);
    TA rda[S][V];
#pragma unroll
    for (int i = 0; i < V; ++i) {
      X c = apply(excl[i], entering[i]);
#pragma unroll
      for (int s = 0; s < S; ++s) {
        const int j = ord<BREV>(s, S);
        X hp = REV ? (j + 1 < S ? to_acc(rh[j + 1][i]) : edge[i]) : (j > 0 ? to_acc(rh[j - 1][i]) : edge[i]);
        if (REV && t0 + j + 1 >= L) hp = h0[i];
        const X lam = add(to_acc(rg[j][i]), c);
        const A dat = da_term<A>(lam, hp);
        c = mul(conj_(to_acc(ra[j][i])), lam);
        rg[j][i] = from_acc<TX>(lam);
        if (p.da_sum_time) {
          if (t0 + j < len) da_sum[i] = add(da_sum[i], dat);
        } else {
          rda[j][i] = from_acc<TA>(dat);
        }
      }
    }
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int n = t0 + s < len ? ix.nd : 0;
      if (n > 0) {
        store_run<V>(rg[s], db + (t0 + s) * dbs, dbcs, n, vec & kVecX);
        if (!p.da_sum_time) store_run<V>(rda[s], da + (t0 + s) * das, dacs, n, vec & kVecDa);
      }
    }
  }
  if (ix.q == 0) {
#pragma unroll
    for (int i = 0; i < V; ++i)
      if (i < ix.nd) ((TX *)p.dh0)[ix.bi * p.dh0_stride[0] + (ix.d0 + i) * p.dh0_stride[1]] = from_acc<TX>(carry[i]);
  }
  if (p.da_sum_time) {
    /* the time lanes of a channel add their partial sums: in the warp by shuffles, then the
     * warps in order; a fixed order either way */
    __syncthreads();  /* every thread is done reading tot */
    A *part = reinterpret_cast<A *>(smem); /* [nw][qw * V] */
#pragma unroll
    for (int i = 0; i < V; ++i) {
      A v = da_sum[i];
      for (int m = qw; m < 32; m <<= 1) v = add(v, shfl_xor(v, m));
      if (ix.lane < qw) part[ix.warp * cv + ix.c * V + i] = v;
    }
    __syncthreads();
    if (ix.q == 0) {
#pragma unroll
      for (int i = 0; i < V; ++i) {
        A total = num<A>::zero();
        for (int w = 0; w < ix.nw; ++w) total = add(total, part[w * cv + ix.c * V + i]);
        if (i < ix.nd) ((A *)p.da)[ix.bi * p.da_stride[0] + (ix.d0 + i) * p.da_stride[2]] = total;
      }
    }
  }
}

/* ---------------- time-major, pipelined (aligned, channels contiguous) ----------------
 * A block owns one row group of 32 adjacent channels of one batch element (lane l holds channel
 * d0 + l, one element: 64 to 256 contiguous bytes per row) and walks the whole sequence in rounds
 * of 8*S steps; warp w owns the S consecutive steps w*S.. of a round (S = tp_steps). The
 * inputs of a round are copied to shared memory with cp.async, nstage rounds deep, by all threads
 * in 16-byte pieces, so the copies of the next rounds are in flight while this one is scanned:
 * that is what keeps enough bytes in flight when only B*D/32 blocks exist (a (2, 65536, 1536)
 * problem has 96). A lane composes its steps sequentially (no shuffles), the warps' maps meet in
 * shared memory, every lane applies them in scan order to the carried state, then re-runs its
 * steps from its exact entering state and stores the outputs straight from registers (a warp
 * writes whole rows). */

/* build-time knobs of the pipelines (steps per warp and round; in-flight target, see tp_stages) */
#ifndef LRNN_TP_STEPS
#define LRNN_TP_STEPS 8
#endif
#ifndef LRNN_TP_INFLIGHT_KB
#define LRNN_TP_INFLIGHT_KB 64
#endif
constexpr int kTpWarps = 8, kTpThreads = 32 * kTpWarps;

/* Steps per warp and round: 8 (a round of 64 steps); 4 for 8-byte states, whose twice wider
 * registers would otherwise cap the residency below the three blocks per SM that a
 * (8, 4096, 1536) problem needs to run in one wave; M times that (M = 1 or 2, see TmChoice). */
template <typename TX, int M> __host__ __device__ constexpr int tp_steps() {
  return M * (sizeof(TX) >= 8 ? LRNN_TP_STEPS / 2 : LRNN_TP_STEPS);
}
template <typename TX, int M> __host__ __device__ constexpr int tp_round() { return kTpWarps * tp_steps<TX, M>(); }

/* 16-byte asynchronous global -> shared copies (the CPU emulation copies at once). */
__device__ __forceinline__ void cp_async16(void *dst, const void *src) {
#ifdef __CUDACC__
  const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(src) : "memory");
#else
  memcpy(dst, src, 16);
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#ifdef __CUDACC__
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
template <int N> __device__ __forceinline__ void cp_async_wait_n() {
#ifdef __CUDACC__
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}
/* Waits until at most n of this thread's copy groups are pending (n is the runtime pipeline
 * depth; the instruction takes an immediate). */
__device__ __forceinline__ void cp_async_wait(int n) {
  switch (n) {
    case 0: cp_async_wait_n<0>(); break;
    case 1: cp_async_wait_n<1>(); break;
    case 2: cp_async_wait_n<2>(); break;
    case 3: cp_async_wait_n<3>(); break;
    case 4: cp_async_wait_n<4>(); break;
    case 5: cp_async_wait_n<5>(); break;
    case 6: cp_async_wait_n<6>(); break;
    case 7: cp_async_wait_n<7>(); break;
    case 8: cp_async_wait_n<8>(); break;
    case 9: cp_async_wait_n<9>(); break;
    case 10: cp_async_wait_n<10>(); break;
    case 11: cp_async_wait_n<11>(); break;
    case 12: cp_async_wait_n<12>(); break;
    case 13: cp_async_wait_n<13>(); break;
    case 14: cp_async_wait_n<14>(); break;
    case 15: cp_async_wait_n<15>(); break;
    case 16: cp_async_wait_n<16>(); break;
    case 17: cp_async_wait_n<17>(); break;
    case 18: cp_async_wait_n<18>(); break;
    case 19: cp_async_wait_n<19>(); break;
    case 20: cp_async_wait_n<20>(); break;
    case 21: cp_async_wait_n<21>(); break;
    case 22: cp_async_wait_n<22>(); break;
    case 23: cp_async_wait_n<23>(); break;
    case 24: cp_async_wait_n<24>(); break;
    case 25: cp_async_wait_n<25>(); break;
    case 26: cp_async_wait_n<26>(); break;
    case 27: cp_async_wait_n<27>(); break;
    case 28: cp_async_wait_n<28>(); break;
    case 29: cp_async_wait_n<29>(); break;
    default: cp_async_wait_n<30>(); break;
  }
}

/* Copies ROWS rows of one row group (ROW_BYTES per row in shared memory, the first `valid` of
 * them inside the tensor) starting at time t0, with the NT threads whose index is `tid` (rows
 * outside [0, L) are skipped: the scans treat them as padding). The trip count is a constant, so
 * the loop unrolls into straight-line copies. */
template <int ROW_BYTES, int ROWS, int NT>
__device__ __forceinline__ void tile_copy(unsigned char *dst, const unsigned char *src, int64_t tstride_bytes, int64_t t0,
                                          int64_t L, int valid, int tid) {
  constexpr int per_row = ROW_BYTES / 16, pieces = ROWS * per_row;
  const unsigned char *s0 = src + t0 * tstride_bytes;
#pragma unroll
  for (int c0 = 0; c0 < pieces; c0 += NT) {
    const int c = c0 + tid, r = c / per_row, off = (c % per_row) * 16;
    const int64_t t = t0 + r;
    if ((pieces % NT == 0 || c < pieces) && t >= 0 && t < L && off < valid)
      cp_async16(dst + r * ROW_BYTES + off, s0 + r * tstride_bytes + off);
  }
}

/* The next slot of a ring of n pipeline stages (no division in the loop). */
__device__ __forceinline__ int next_slot(int s, int n) { return s + 1 == n ? 0 : s + 1; }

/* Shared memory of the pipelined kernels: the warps' maps (and partial sums), then the stages. */
template <typename Op> __host__ __device__ constexpr size_t tp_head_bytes() {
  return (((kTpWarps + 2) * 32 * sizeof(Op) + 15) / 16) * 16;
}

/* The carry ring of a cluster (tpcl). Round k of a row group (in scan order) is round
 * j = k / ncl of block rank k % ncl; the block of round k sends the state entering round k + 1
 * (its entering state through the round's map) lane by lane into the mailbox of the next block
 * as soon as it has it, before writing its outputs, so a row group's only serial part is one
 * message per round while ncl blocks load, compose and write rounds side by side. A message is
 * the state's 32-bit words, each stored with its tag (j + 1 for the receiver's round j) as one
 * 64-bit word: a single store per word, no fence, and the receiver polls until every tag matches.
 * A mailbox is [2][32][words] in the block's shared memory, slot j & 1: the other slot may still
 * be read while the next message arrives, and a message two rounds later needs this block's own
 * send in between, which follows every read of the slot. */
__device__ __forceinline__ unsigned long long box_load(const unsigned long long *p) {
#ifdef __CUDACC__
  unsigned long long v;
  asm volatile("ld.relaxed.cluster.u64 %0, [%1];\n" : "=l"(v) : "l"(p) : "memory");
  return v;
#else
  std::this_thread::yield();  /* the emulation's threads share few cores */
  return std::atomic_ref<unsigned long long>(*const_cast<unsigned long long *>(p)).load(std::memory_order_acquire);
#endif
}
__device__ __forceinline__ void box_store(unsigned long long *p, unsigned long long v) {
#ifdef __CUDACC__
  asm volatile("st.relaxed.cluster.u64 [%0], %1;\n" ::"l"(p), "l"(v) : "memory");
#else
  std::atomic_ref<unsigned long long>(*p).store(v, std::memory_order_release);
#endif
}

/* This block's mailbox, after the warps' maps; cleared, and every block of the cluster past that
 * point before any message is sent. */
template <typename Op, typename X> __device__ __forceinline__ unsigned long long *tp_ring(unsigned char *head, int ncl) {
  constexpr int W = (int)(sizeof(X) / 4);
  static_assert(2 * 32 * W * 8 <= 2 * 32 * sizeof(Op), "the mailbox fits the head");
  unsigned long long *box = reinterpret_cast<unsigned long long *>(head + kTpWarps * 32 * sizeof(Op));
  if (ncl > 1) {
    for (int i = threadIdx.x; i < 2 * 32 * W; i += blockDim.x) box[i] = 0;
    cooperative_groups::this_cluster().sync();
  }
  return box;
}

/* The state entering this block's round j (round k = j * ncl + rank of the row group): `carry`
 * for round 0, else the message of the previous round's block. Warp 0 then sends the state
 * entering round k + 1, through `round` (the round's map), to the next block. */
template <typename A, typename X>
__device__ __forceinline__ X tp_ring_carry(unsigned long long *box, const Affine<A, X> &round, int64_t j, int64_t nsuper,
                                           int rank, int ncl, X carry) {
  constexpr int W = (int)(sizeof(X) / 4);
  const int lane = threadIdx.x & 31;
  X in = carry;
  if (j > 0 || rank > 0) {
    const unsigned long long *at = box + ((j & 1) * 32 + lane) * W;
    unsigned words[W];
#pragma unroll
    for (int i = 0; i < W; ++i) {
      unsigned long long v;
      do {
        v = box_load(at + i);
      } while ((unsigned)(v >> 32) != (unsigned)(j + 1));
      words[i] = (unsigned)v;
    }
    memcpy(&in, words, sizeof(X));
  }
  const int to = rank + 1 == ncl ? 0 : rank + 1;
  const int64_t jt = rank + 1 == ncl ? j + 1 : j;
  if (threadIdx.x < 32 && jt < nsuper) {
    const X out = apply(round, in);
    unsigned words[W];
    memcpy(words, &out, sizeof(X));
    unsigned long long *dst = cooperative_groups::this_cluster().map_shared_rank(box, to) + ((jt & 1) * 32 + lane) * W;
#pragma unroll
    for (int i = 0; i < W; ++i) box_store(dst + i, (unsigned long long)(unsigned)(jt + 1) << 32 | words[i]);
  }
  return in;
}

/* ---------------- row groups of the pipelined and warp-sequential kernels ----------------
 * tp and tw own row groups of 32 adjacent channels d0.. of one batch element (lane l: channel
 * d0 + l) and stage ROWS time steps of their inputs at a time in shared memory, rows of 32
 * elements: the forward b, then a; the backward grad_h, then h with one row more (h[t0 - 1 + r],
 * or h[t0 + r] for a reverse forward: row i, or i + 1, is the state before the forward step at
 * t0 + i), then a. A time-invariant a is one register instead. */
template <typename TX, typename TA, bool INV, bool BWD, int ROWS> __host__ __device__ constexpr size_t stage_bytes() {
  return (BWD ? 2 * ROWS + 1 : ROWS) * 32 * sizeof(TX) + (INV ? 0 : ROWS * 32 * sizeof(TA));
}

/* A row group: where its arrays start, the copies of a stage and the reads of its rows. REV is the
 * direction of the forward scan. */
template <typename TX, typename TA, bool REV, bool INV, bool BWD> struct Group {
  using X = acc_t<TX>;
  using A = acc_t<TA>;
  static constexpr int RBX = 32 * (int)sizeof(TX), RBA = 32 * (int)sizeof(TA);
  int lane, xvalid, avalid;
  bool live;
  int64_t bi, d, L;
  const unsigned char *gx, *gh, *ga; /* the staged arrays at the first channel: b or grad_h, h, a */
  int64_t xsb, hsb, asb;             /* their time strides in bytes */
  TX *out;                           /* h (forward) or db (backward) at this lane's channel */
  TA *da;                            /* da (backward, unless summed over time) */
  int64_t os, das;
  A a_inv;
  X init, h0; /* the carry entering the scan (h0, or grad_h_last in the backward); h0 */

  template <typename Params> __device__ __forceinline__ Group(const Params &p, int64_t unit) {
    const int64_t groups = (p.dim + 31) / 32, d0 = (unit % groups) * 32;
    lane = threadIdx.x & 31;
    bi = unit / groups;
    d = d0 + lane;
    live = d < p.dim;
    L = p.length;
    xvalid = (int)((p.dim - d0) * (int64_t)sizeof(TX) < RBX ? (p.dim - d0) * (int64_t)sizeof(TX) : RBX);
    avalid = (int)((p.dim - d0) * (int64_t)sizeof(TA) < RBA ? (p.dim - d0) * (int64_t)sizeof(TA) : RBA);
    ga = reinterpret_cast<const unsigned char *>((const TA *)p.a + bi * p.a_stride[0] + d0);
    asb = p.a_stride[1] * (int64_t)sizeof(TA);
    a_inv = INV && live && L > 0 ? to_acc(((const TA *)p.a)[bi * p.a_stride[0] + d * p.a_stride[2]]) : num<A>::one();
    h0 = p.h0 && live ? to_acc(((const TX *)p.h0)[bi * p.h0_stride[0] + d * p.h0_stride[1]]) : num<X>::zero();
    const int64_t dl = live ? d : 0;
    if constexpr (BWD) {
      gx = reinterpret_cast<const unsigned char *>((const TX *)p.grad_h + bi * p.grad_h_stride[0] + d0);
      gh = reinterpret_cast<const unsigned char *>((const TX *)p.h + bi * p.h_stride[0] + d0);
      xsb = p.grad_h_stride[1] * (int64_t)sizeof(TX);
      hsb = p.h_stride[1] * (int64_t)sizeof(TX);
      out = (TX *)p.db + bi * p.db_stride[0] + dl * p.db_stride[2];
      os = p.db_stride[1];
      da = p.da_sum_time ? nullptr : (TA *)p.da + bi * p.da_stride[0] + dl * p.da_stride[2];
      das = p.da_stride[1];
      init = p.grad_h_last && live
                 ? to_acc(((const TX *)p.grad_h_last)[bi * p.grad_h_last_stride[0] + d * p.grad_h_last_stride[1]])
                 : num<X>::zero();
    } else {
      gx = reinterpret_cast<const unsigned char *>((const TX *)p.b + bi * p.b_stride[0] + d0);
      gh = nullptr;
      xsb = p.b_stride[1] * (int64_t)sizeof(TX);
      hsb = 0;
      out = (TX *)p.h + bi * p.h_stride[0] + dl * p.h_stride[2];
      os = p.h_stride[1];
      da = nullptr;
      das = 0;
      init = h0;
    }
  }

  /* Copies the stage of ROWS steps from time t0, by the NT threads numbered tid (rows outside the
   * sequence are skipped: the scans treat them as padding). */
  template <int ROWS, int NT> __device__ __forceinline__ void stage(unsigned char *st, int64_t t0, int tid) const {
    tile_copy<RBX, ROWS, NT>(st, gx, xsb, t0, L, xvalid, tid);
    if constexpr (BWD) tile_copy<RBX, ROWS + 1, NT>(st + ROWS * RBX, gh, hsb, t0 + (REV ? 0 : -1), L, xvalid, tid);
    if constexpr (!INV) tile_copy<RBA, ROWS, NT>(st + (BWD ? 2 * ROWS + 1 : ROWS) * RBX, ga, asb, t0, L, avalid, tid);
  }
  /* Row i of a stage: b or grad_h; the state before the forward step (backward); a. */
  __device__ __forceinline__ X x_at(const unsigned char *st, int i) const {
    return to_acc(reinterpret_cast<const TX *>(st + i * RBX)[lane]);
  }
  template <int ROWS> __device__ __forceinline__ X hprev_at(const unsigned char *st, int i) const {
    return to_acc(reinterpret_cast<const TX *>(st + (ROWS + i + (REV ? 1 : 0)) * RBX)[lane]);
  }
  template <int ROWS> __device__ __forceinline__ A a_at(const unsigned char *st, int i) const {
    if constexpr (INV) {
      return a_inv;
    } else {
      return to_acc(reinterpret_cast<const TA *>(st + (BWD ? 2 * ROWS + 1 : ROWS) * RBX + i * RBA)[lane]);
    }
  }
  /* The backward's outputs at step t: db, and da (or its sum over time). */
  __device__ __forceinline__ void put_grad(int64_t t, X lam, A dat, bool sum, A &da_sum) const {
    out[t * os] = from_acc<TX>(lam);
    if (sum) {
      da_sum = add(da_sum, dat);
    } else {
      da[t * das] = from_acc<TA>(dat);
    }
  }
};

/* The stage ring of tp and tw: nstage stages of `bytes`, the copies of stage j + nstage - 1 in
 * flight (issue(j, stage)) while stage j is used (body(j, stage)); one commit per stage, empty
 * past the end, so that the group count stays uniform. BLOCK: the stages are shared by the whole
 * block, else by one warp. */
template <bool BLOCK, typename Issue, typename Body>
__device__ __forceinline__ void staged(unsigned char *stages, size_t bytes, int nstage, int64_t count, Issue issue,
                                       Body body) {
  for (int s = 0; s + 1 < nstage; ++s) {
    issue((int64_t)s, stages + (size_t)s * bytes);
    cp_async_commit();
  }
  int use = 0, put = nstage - 1; /* the slots of stages j and j + nstage - 1 */
  for (int64_t j = 0; j < count; ++j) {
    cp_async_wait(nstage - 2);
    /* stage j is visible to all, and every thread is done with stage j - 1 */
    if (BLOCK) {
      __syncthreads();
    } else {
      __syncwarp();
    }
    issue(j + nstage - 1, stages + (size_t)put * bytes);
    cp_async_commit();
    put = next_slot(put, nstage);
    const unsigned char *st = stages + (size_t)use * bytes;
    use = next_slot(use, nstage);
    body(j, st);
  }
  cp_async_wait_n<0>();
}

/* Registers for three blocks per SM, the residency the launcher plans for at (8, 4096, 1536). */
constexpr int kTpMinBlocks = 3;

template <typename TX, typename TA, bool REV, bool INV, int M>
__global__ void __launch_bounds__(kTpThreads, kTpMinBlocks) scan_fwd_tp(const lrnn_linear_scan_params p, int nstage, int ncl) {
  using X = acc_t<TX>;
  using A = acc_t<TA>;
  using Op = Affine<A, X>;
  constexpr int S = tp_steps<TX, M>(), R = tp_round<TX, M>();
  extern __shared__ __align__(16) unsigned char smem[];
  Op *tot = reinterpret_cast<Op *>(smem); /* [warp][lane], then the mailbox (tp_ring) */

  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, rank = (int)(blockIdx.x % ncl);
  const Group<TX, TA, REV, INV, false> g(p, blockIdx.x / ncl);
  const int64_t L = p.length, nrounds = (L + R - 1) / R, nsuper = (nrounds + ncl - 1) / ncl;
  const A one = num<A>::one();
  X carry = g.init;
  unsigned long long *ring = tp_ring<Op, X>(smem, ncl);

  /* This block's j-th round is round j*ncl + rank of the row group in scan order, at time tp_time. */
  auto tp_time = [&](int64_t k) { return (REV ? nrounds - 1 - k : k) * R; };
  auto issue = [&](int64_t j, unsigned char *st) {
    const int64_t k = j * ncl + rank;
    if (k < nrounds) g.template stage<R, kTpThreads>(st, tp_time(k), threadIdx.x);
  };
  staged<true>(smem + tp_head_bytes<Op>(), stage_bytes<TX, TA, INV, false, R>(), nstage, nsuper, issue,
               [&](int64_t j, const unsigned char *st) {
    const int64_t k = j * ncl + rank, t0 = tp_time(k) + w * S;
    X xb[S];
    A xa[S];
#pragma unroll
    for (int i = 0; i < S; ++i) {
      const bool in = k < nrounds && t0 + i < L;
      xb[i] = in ? g.x_at(st, w * S + i) : num<X>::zero();
      xa[i] = in ? g.template a_at<R>(st, w * S + i) : one;
    }
    Op f = identity<A, X>();
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int i = ord<REV>(s, S);
      f = compose(f, Op{xa[i], xb[i]});
    }
    tot[w * 32 + lane] = f;
    __syncthreads();
    X round_in = carry;
    if (ncl > 1) {  /* the round's map (warp 0 sends through it), then the state from the ring */
      Op gr = identity<A, X>();
      if (w == 0) {
#pragma unroll
        for (int s = 0; s < kTpWarps; ++s) gr = compose(gr, tot[ord<REV>(s, kTpWarps) * 32 + lane]);
      }
      round_in = tp_ring_carry(ring, gr, j, nsuper, rank, ncl, carry);
    }
    X state = round_in, y = round_in;
#pragma unroll
    for (int s = 0; s < kTpWarps; ++s) {
      const int ww = ord<REV>(s, kTpWarps);
      if (ww == w) y = state;
      state = apply(tot[ww * 32 + lane], state);
    }
    carry = state;
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int i = ord<REV>(s, S);
      y = add(mul(xa[i], y), xb[i]);  /* h[t] = a[t]*h[t-1] + b[t] */
      if (g.live && k < nrounds && t0 + i < L) g.out[(t0 + i) * g.os] = from_acc<TX>(y);
    }
  });
  /* the block of the last round holds the final state (every message to a block is read by it) */
  if (rank == ncl - 1 && w == 0 && g.live)
    ((TX *)p.h_last)[g.bi * p.h_last_stride[0] + g.d * p.h_last_stride[1]] = from_acc<TX>(carry);
}

/* Backward: the adjoint scan (see "backward" above) in the opposite direction, staging grad_h, h
 * and a. */
template <typename TX, typename TA, bool REV, bool INV, int M>
__global__ void __launch_bounds__(kTpThreads, kTpMinBlocks) scan_bwd_tp(const lrnn_linear_scan_bwd_params p, int nstage, int ncl) {
  using X = acc_t<TX>;
  using A = acc_t<TA>;
  using Op = Affine<A, X>;
  constexpr bool BREV = !REV;
  constexpr int S = tp_steps<TX, M>(), R = tp_round<TX, M>();
  extern __shared__ __align__(16) unsigned char smem[];
  Op *tot = reinterpret_cast<Op *>(smem); /* [warp][lane], the mailbox (tp_ring); at the end the partial sums of da */

  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, rank = (int)(blockIdx.x % ncl);
  const Group<TX, TA, REV, INV, true> g(p, blockIdx.x / ncl);
  const int64_t L = p.length, nrounds = (L + R - 1) / R, nsuper = (nrounds + ncl - 1) / ncl;
  const A one = num<A>::one();
  X carry = g.init;
  A da_sum = num<A>::zero();
  unsigned long long *ring = tp_ring<Op, X>(smem, ncl);

  auto tp_time = [&](int64_t k) { return (BREV ? nrounds - 1 - k : k) * R; };
  auto issue = [&](int64_t j, unsigned char *st) {
    const int64_t k = j * ncl + rank;
    if (k < nrounds) g.template stage<R, kTpThreads>(st, tp_time(k), threadIdx.x);
  };
  staged<true>(smem + tp_head_bytes<Op>(), stage_bytes<TX, TA, INV, true, R>(), nstage, nsuper, issue,
               [&](int64_t j, const unsigned char *st) {
    const int64_t k = j * ncl + rank, t0 = tp_time(k) + w * S;
    X xg[S], xh[S];
    A xa[S];
#pragma unroll
    for (int i = 0; i < S; ++i) {
      const bool in = k < nrounds && t0 + i < L;
      const int64_t tp = t0 + i + (REV ? 1 : -1); /* the step before, in forward order */
      xg[i] = in ? g.x_at(st, w * S + i) : num<X>::zero();
      xh[i] = in && tp >= 0 && tp < L ? g.template hprev_at<R>(st, w * S + i) : g.h0;
      xa[i] = in ? g.template a_at<R>(st, w * S + i) : one;
    }
    Op f = identity<A, X>();
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int i = ord<BREV>(s, S);
      const A ca = conj_(xa[i]);
      f = compose(f, Op{ca, mul(ca, xg[i])});
    }
    tot[w * 32 + lane] = f;
    __syncthreads();
    X round_in = carry;
    if (ncl > 1) {
      Op gr = identity<A, X>();
      if (w == 0) {
#pragma unroll
        for (int s = 0; s < kTpWarps; ++s) gr = compose(gr, tot[ord<BREV>(s, kTpWarps) * 32 + lane]);
      }
      round_in = tp_ring_carry(ring, gr, j, nsuper, rank, ncl, carry);
    }
    X state = round_in, c = round_in;
#pragma unroll
    for (int s = 0; s < kTpWarps; ++s) {
      const int ww = ord<BREV>(s, kTpWarps);
      if (ww == w) c = state;
      state = apply(tot[ww * 32 + lane], state);
    }
    carry = state;
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int i = ord<BREV>(s, S);
      const X lam = add(xg[i], c);
      const A dat = da_term<A>(lam, xh[i]);
      c = mul(conj_(xa[i]), lam);
      if (g.live && k < nrounds && t0 + i < L) g.put_grad(t0 + i, lam, dat, p.da_sum_time, da_sum);
    }
  });
  /* the block of the last round holds dh0 */
  if (rank == ncl - 1 && w == 0 && g.live)
    ((TX *)p.dh0)[g.bi * p.dh0_stride[0] + g.d * p.dh0_stride[1]] = from_acc<TX>(carry);
  if (p.da_sum_time) {
    /* the partial sums of a channel: the warps' in warp order, then the cluster's blocks' in rank
     * order (rank 0 adds them up) */
    A *part = reinterpret_cast<A *>(smem);
    __syncthreads(); /* every thread is done reading tot */
    part[w * 32 + lane] = da_sum;
    __syncthreads();
    if (w == 0) {
      A total = num<A>::zero();
      for (int ww = 0; ww < kTpWarps; ++ww) total = add(total, part[ww * 32 + lane]);
      part[kTpWarps * 32 + lane] = total;
    }
    if (ncl > 1) cooperative_groups::this_cluster().sync();
    if (rank == 0 && w == 0 && g.live) {
      A total = num<A>::zero();
      for (int r = 0; r < ncl; ++r)
        total = add(total, cooperative_groups::this_cluster().map_shared_rank(part, r)[kTpWarps * 32 + lane]);
      ((A *)p.da)[g.bi * p.da_stride[0] + g.d * p.da_stride[2]] = total;
    }
    if (ncl > 1) cooperative_groups::this_cluster().sync();
  }
}

/* ---------------- time-major, one warp per row group, sequential in time ----------------
 * A warp owns one row group of 32 adjacent channels of one batch element (lane l holds channel
 * d0 + l) and walks the whole sequence by itself: no other warp takes part, so there is no
 * combine step and no block barrier, only warp-level ones. Its inputs are copied to its own part
 * of shared memory with cp.async in stages of kTwSteps rows, nstage stages deep, so that the
 * copies of the next stages are in flight while a lane runs the recurrence through the current
 * one, one step after the other (a chain of one fused multiply-add per step in f32). The outputs
 * are stored straight from registers (a warp writes whole rows). Blocks are one warp, so that
 * the warps spread over all SMs. */
constexpr int kTwSteps = 32;

template <typename TX, typename TA, bool REV, bool INV>
__global__ void __launch_bounds__(32) scan_fwd_tw(const lrnn_linear_scan_params p, int nstage) {
  using X = acc_t<TX>;
  using A = acc_t<TA>;
  constexpr int T = kTwSteps;
  extern __shared__ __align__(16) unsigned char smem[];

  const Group<TX, TA, REV, INV, false> g(p, blockIdx.x);
  const int64_t L = p.length, nst = (L + T - 1) / T;
  X y = g.init;

  /* stage k (in scan order) holds the rows from time tw_time(k) */
  auto tw_time = [&](int64_t k) { return (REV ? nst - 1 - k : k) * T; };
  auto issue = [&](int64_t k, unsigned char *st) {
    if (k < nst) g.template stage<T, 32>(st, tw_time(k), g.lane);
  };
  staged<false>(smem, stage_bytes<TX, TA, INV, false, T>(), nstage, nst, issue, [&](int64_t k, const unsigned char *st) {
    const int64_t t0 = tw_time(k);
    TX *ht = g.out + t0 * g.os;
    auto step = [&](int i) {
      y = add(mul(g.template a_at<T>(st, i), y), g.x_at(st, i)); /* h[t] = a[t]*h[t-1] + b[t] */
      if (g.live) ht[i * g.os] = from_acc<TX>(y);
    };
    if (L - t0 >= T) { /* a full stage: no bounds in the unrolled steps */
#pragma unroll
      for (int s = 0; s < T; ++s) step(ord<REV>(s, T));
    } else {
      const int n = (int)(L - t0);
#pragma unroll
      for (int s = 0; s < T; ++s)
        if (ord<REV>(s, T) < n) step(ord<REV>(s, T));
    }
  });
  if (g.live) ((TX *)p.h_last)[g.bi * p.h_last_stride[0] + g.d * p.h_last_stride[1]] = from_acc<TX>(y);
}

/* Backward: the adjoint recurrence in the opposite direction (as scan_bwd_tp), staging grad_h, h
 * and a. */
template <typename TX, typename TA, bool REV, bool INV>
__global__ void __launch_bounds__(32) scan_bwd_tw(const lrnn_linear_scan_bwd_params p, int nstage) {
  using X = acc_t<TX>;
  using A = acc_t<TA>;
  constexpr bool BREV = !REV;
  constexpr int T = kTwSteps;
  extern __shared__ __align__(16) unsigned char smem[];

  const Group<TX, TA, REV, INV, true> g(p, blockIdx.x);
  const int64_t L = p.length, nst = (L + T - 1) / T;
  X c = g.init;
  A da_sum = num<A>::zero();

  auto tw_time = [&](int64_t k) { return (BREV ? nst - 1 - k : k) * T; };
  auto issue = [&](int64_t k, unsigned char *st) {
    if (k < nst) g.template stage<T, 32>(st, tw_time(k), g.lane);
  };
  staged<false>(smem, stage_bytes<TX, TA, INV, true, T>(), nstage, nst, issue, [&](int64_t k, const unsigned char *st) {
    const int64_t t0 = tw_time(k);
    /* the stage's first row of h in forward order is h0 when the stage starts the sequence */
    const bool edge = REV ? t0 + T >= L : t0 == 0;
    auto step = [&](int i, bool first) {
      const X lam = add(g.x_at(st, i), c);
      const A dat = da_term<A>(lam, first ? g.h0 : g.template hprev_at<T>(st, i));
      c = mul(conj_(g.template a_at<T>(st, i)), lam);
      if (g.live) g.put_grad(t0 + i, lam, dat, p.da_sum_time, da_sum);
    };
    if (L - t0 >= T && !edge) { /* a full stage inside the sequence: no bounds in the unrolled steps */
#pragma unroll
      for (int s = 0; s < T; ++s) step(ord<BREV>(s, T), false);
    } else {
      const int n = L - t0 < T ? (int)(L - t0) : T;
#pragma unroll
      for (int s = 0; s < T; ++s) {
        const int i = ord<BREV>(s, T);
        const int64_t tp = t0 + i + (REV ? 1 : -1); /* the step before, in forward order */
        if (i < n) step(i, tp < 0 || tp >= L);
      }
    }
  });
  if (g.live) {
    ((TX *)p.dh0)[g.bi * p.dh0_stride[0] + g.d * p.dh0_stride[1]] = from_acc<TX>(c);
    if (p.da_sum_time) ((A *)p.da)[g.bi * p.da_stride[0] + g.d * p.da_stride[2]] = da_sum;
  }
}

/* ---------------- launch shapes ---------------- */

int sm_count() {
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
    return 132;
  return sms > 0 ? sms : 132;
}

/* Blocks of `kernel` that fit on one SM at `threads` threads and `smem` bytes of dynamic shared
 * memory (registers included), at least 1. */
template <typename Kernel> int resident_blocks(Kernel kernel, int threads, size_t smem) {
  int n = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, smem) != cudaSuccess || n < 1) n = 1;
  return n;
}

/* Channel-major: the smallest block (from one warp, up to 256 threads) whose tile covers the row,
 * so short rows take one pass; bigger blocks (more steps in flight per row) while all rows still
 * fit on the GPU at once, i.e. while it would otherwise idle with fewer rows than resident blocks. */
template <typename Kernel> int cm_threads(Kernel kernel, int64_t rows, int64_t L, int steps, int sms) {
  int nt = 32;
  while (nt < kCmThreads && (int64_t)nt * steps < L) nt *= 2;
  while (nt * 2 <= kCmThreads && L >= (int64_t)nt * 2 * steps &&
         rows <= (int64_t)sms * resident_blocks(kernel, nt * 2, 0))
    nt *= 2;
  return nt;
}

struct TmShape {
  int qw, threads;
  int64_t blocks;
  size_t smem;
};

/* Time-major: QW threads of V channels per row (a 128-byte line; down to a 32-byte sector while
 * B*D would not give every SM two blocks; fewer only when D itself is smaller) and as many
 * time lanes as keep every block resident in one wave (each block walks the whole sequence, so a
 * second wave would double the time). Shared memory holds two rounds of warp totals. */
template <typename Kernel>
TmShape tm_shape(Kernel kernel, int64_t B, int64_t L, int64_t D, int V, int S, size_t elem, size_t op_bytes, int sms) {
  const int line = (int)(128 / (V * elem)), sector = (int)(32 / (V * elem));
  int qw = line > 1 ? line : 1;
  while (qw > 1 && (int64_t)(qw / 2) * V >= D) qw /= 2;
  auto blocks_of = [&](int w) { return B * ((D + (int64_t)w * V - 1) / ((int64_t)w * V)); };
  while (qw > sector && qw > 1 && blocks_of(qw) < 2 * (int64_t)sms) qw /= 2;
  const int64_t blocks = blocks_of(qw);
  auto smem_of = [&](int threads) { return (size_t)2 * (threads / 32) * qw * V * op_bytes; };
  int threads = 32;
  while (threads * 2 <= kTmThreads && (int64_t)(threads * 2 / qw) * S <= L &&
         blocks <= (int64_t)sms * resident_blocks(kernel, threads * 2, smem_of(threads * 2)))
    threads *= 2;
  return TmShape{qw, threads, blocks, smem_of(threads)};
}

bool aligned(const void *ptr, size_t bytes) { return ((uintptr_t)ptr % bytes) == 0; }

/* Channel-major vector loads: time steps contiguous and every row's start aligned to 16 bytes
 * (the stride of a size-1 dimension never moves the row). */
bool vec_ok(const void *ptr, const int64_t *stride, size_t elem, int64_t B, int64_t D) {
  const int64_t v = 16 / (int64_t)elem;
  return aligned(ptr, 16) && stride[1] == 1 && (B == 1 || stride[0] % v == 0) && (D == 1 || stride[2] % v == 0);
}

/* `a` in a vectorized channel-major kernel: constant in time, or a vectorizable sequence. */
bool a_vec_ok(const void *ptr, const int64_t *stride, size_t elem, int64_t B, int64_t D) {
  return stride[1] == 0 || vec_ok(ptr, stride, elem, B, D);
}

/* Time-major vector loads of V channels: channels contiguous and every run of V channels, at
 * every (batch, time), aligned to its byte size. */
bool tm_vec_ok(const void *ptr, const int64_t *stride, size_t elem, int V, int64_t B, int64_t L) {
  const size_t bytes = elem * V;
  if (V == 1 || (bytes != 8 && bytes % 16 != 0)) return false;
  return aligned(ptr, bytes > 16 ? 16 : bytes) && stride[2] == 1 && (B == 1 || stride[0] % V == 0) &&
         (L == 1 || stride[1] % V == 0);
}

lrnn_status launched() { return cudaGetLastError() == cudaSuccess ? LRNN_OK : LRNN_ERR_CUDA; }

/* The pipelined time-major kernels read an array in 16-byte pieces of whole row groups: channels
 * contiguous, and every row (batch, time) starting on 16 bytes and holding whole pieces. */
bool tp_ok(const void *ptr, const int64_t *stride, size_t elem, int64_t B, int64_t L, int64_t D) {
  return aligned(ptr, 16) && stride[2] == 1 && (B == 1 || (stride[0] * (int64_t)elem) % 16 == 0) &&
         (L == 1 || (stride[1] * (int64_t)elem) % 16 == 0) && (D * (int64_t)elem) % 16 == 0;
}

/* Pipeline depth: enough stages that the blocks of one SM keep about kTpInflight bytes of loads
 * in flight (the DRAM latency times an SM's share of the bandwidth, with margin), no more than the
 * rounds need, and within the SM's shared memory at the residency the grid asks for. */
constexpr int64_t kTpInflight = LRNN_TP_INFLIGHT_KB * 1024, kTpSmemPerSm = 220 * 1024;
int tp_stages(int64_t blocks, int64_t nrounds, size_t head, size_t stage, int sms) {
  const int64_t per_sm = (blocks + sms - 1) / sms;
  /* LRNN_LINEAR_SCAN_INFLIGHT_KB overrides the target, for a comparison on the H200 */
  const char *e = getenv("LRNN_LINEAR_SCAN_INFLIGHT_KB");
  const int64_t inflight = e && atoi(e) > 0 ? (int64_t)atoi(e) * 1024 : kTpInflight;
  int64_t n = 1 + (inflight / per_sm + (int64_t)stage - 1) / (int64_t)stage;
  if (n > 32) n = 32;
  if (n > nrounds + 1) n = nrounds + 1;
  if (n < 2) n = 2;
  while (n > 2 && per_sm * (int64_t)(head + n * stage + 1024) > kTpSmemPerSm) --n;
  return (int)n;
}

/* Blocks per row group (tpcl): a cluster of 2 to 8 splits the rounds of a row group when the row
 * groups alone would give fewer than kTpFill blocks per SM (a (2, 65536, 1536) problem has 96
 * row groups for 132 SMs); its blocks pass the carried state around a ring (tp_ring_carry). A
 * cluster walks its whole row group, so the grid should run in one wave: a cluster size whose
 * clusters would not all be resident at once is halved. */
#ifndef LRNN_TP_MAXCL
#define LRNN_TP_MAXCL 8
#endif
constexpr double kTpFill = 2.5;

template <typename Kernel, typename Params>
lrnn_status tp_launch(Kernel kernel, const Params &p, int round, size_t head, size_t stage, int sms, bool clusters,
                      cudaStream_t st) {
  const int64_t units = p.batch * ((p.dim + 31) / 32), nrounds = (p.length + round - 1) / round;
  int ncl = 1;
  while (clusters && ncl < LRNN_TP_MAXCL && (double)(units * ncl) < kTpFill * sms) ncl *= 2;
  /* LRNN_LINEAR_SCAN_CLUSTER=2|4|8 forces the cluster size, in one wave or not, for a comparison */
  const char *e = clusters ? getenv("LRNN_LINEAR_SCAN_CLUSTER") : nullptr;
  const int forced = e ? atoi(e) : 0;
  if (forced == 2 || forced == 4 || forced == 8) ncl = forced;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.blockDim = dim3(kTpThreads);
  cfg.stream = st;
  cfg.attrs = attr;
  for (;; ncl /= 2) {
    const int nstage = tp_stages(units * ncl, (nrounds + ncl - 1) / ncl, head, stage, sms);
    const size_t smem = head + (size_t)nstage * stage;
    if (smem > 48 * 1024 &&
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess)
      return LRNN_ERR_CUDA;
    cfg.gridDim = dim3((unsigned)(units * ncl));
    cfg.dynamicSmemBytes = smem;
    attr[0].val.clusterDim.x = (unsigned)ncl;
    cfg.numAttrs = ncl > 1 ? 1 : 0;
    int resident = 0;
    if (ncl > 1 && ncl != forced &&
        (cudaOccupancyMaxActiveClusters(&resident, kernel, &cfg) != cudaSuccess || resident < units)) {
      (void)cudaGetLastError();  /* a failed query only means: try smaller clusters */
      continue;
    }
    if (cudaLaunchKernelEx(&cfg, kernel, p, nstage, ncl) != cudaSuccess) return LRNN_ERR_CUDA;
    return launched();
  }
}

/* The kernel of an aligned time-major problem (channels contiguous, D >= 32, states of at most 8
 * bytes): the warp-sequential one (tw), the pipelined one without (tp) or with clusters (tpcl), or
 * the generic one (tm); for tp and tpcl the steps per warp (M times tp_steps), and for 2-byte types
 * whether a lane owns two channels (pairs: 64 channels per row group, see pair_params). The
 * environment variable LRNN_LINEAR_SCAN_TM=tw|tp|tpcl|tm overrides the kernel (tw2|tp2|tpcl2: with
 * pairs), so that a benchmark compares them in one build (read at every launch: the tests switch
 * it between cases); a forced tp takes M = 1, a forced tpcl M = 2, unless
 * LRNN_LINEAR_SCAN_TP_STEPS=8|16 (steps per warp for 4-byte states) says otherwise.
 *
 * The choice is what measured fastest on the H200 (2026-11-29, session 5 rounds 1 and 2; % of the
 * memory floor fwd / bwd, benchmarks/cuda/linear_scan_c.cu, tests/gpu/tm5.sh), by the row groups
 * of 32 channels ("units"):
 *  - units >= SMs ((8, 4096, 1536): 384 units): the forward takes tw (f32 91%, bf16 74%, c64 96%,
 *    time-invariant f32/bf16/c64 84/71/92%); the backward tp (f32 89%, bf16 69%, time-invariant
 *    f32 79%; bf16 time-invariant with M = 2, 44% against 40%), tw for c64 (94% with either a).
 *  - 2/3 SMs <= units < SMs ((2, 65536, 1536): 96 units): tpcl, the rounds of a row group spread
 *    over a cluster, except where tp measured as fast: forward f32 / bf16 84/45% (M = 1), c64 97%
 *    (tp, M = 2), time-invariant f32/bf16/c64 60/35/73% (M = 2); backward f32 78% and c64 89%
 *    (tp, M = 1), bf16 49% (M = 1), time-invariant f32/bf16/c64 53/30/63% (M = 1/2/2).
 *  - fewer units with long sequences ((8, 65536, 128): 32 units): tpcl (forward M = 2: f32 44%,
 *    bf16 28%, c64 81%, time-invariant 40/20/61% against main's tm 37/13/62/18/9/38%; backward M = 2
 *    but c64 with a full a M = 1 (65% against tm's 46%) and f32 with a full a on tm (47%)).
 *  - 2-byte types (measured bf16, round 2): tpcl on channel pairs with M = 1 everywhere but the
 *    time-invariant forward of many units (tw, 70%): (8, 4096, 1536) fwd / bwd 78/71% against
 *    72/66%, time-invariant bwd 55% against 43%; (2, 65536, 1536) 66/57% against 44/49%,
 *    time-invariant 46/41% against 35/30%; (8, 65536, 128) 32/32% against 27/24%, time-invariant
 *    21/21% against 20/20%. Where the arrays do not allow pairs, the choice above (alt). f16 takes
 *    the same path (same sizes, other conversions; not timed).
 *  - shorter sequences of few units and f64 states keep the routing of the previous version (tp
 *    for the backward of f32 with a full a; tm otherwise). */
enum class TmRoute { kTw, kTp, kTpCl, kGeneric };
enum class TmKind { kF32, kHalf, kC64, kOther };
template <typename TX> constexpr TmKind tm_kind() {
  return std::is_same<TX, float>::value ? TmKind::kF32
         : sizeof(TX) == 2             ? TmKind::kHalf
         : std::is_same<TX, cfloat>::value ? TmKind::kC64
                                           : TmKind::kOther;
}
struct TmChoice {
  TmRoute route;
  int mult;   /* M: steps per warp of tp and tpcl, in units of tp_steps */
  bool pairs; /* 2-byte types: two channels per lane */
  TmRoute alt; /* route and M where the arrays do not allow pairs */
  int alt_mult;
};
TmChoice tm_route(bool bwd, bool a_inv, TmKind kind, int64_t units, int64_t L, int sms) {
  auto choice = [&]() -> TmChoice {
    if (const char *e = getenv("LRNN_LINEAR_SCAN_TM")) {
      const bool pairs = *e && e[strlen(e) - 1] == '2';
      const size_t n = strlen(e) - (pairs ? 1 : 0);
      if (n == 2 && !strncmp(e, "tw", 2)) return {TmRoute::kTw, 1, pairs, TmRoute::kTw, 1};
      if (n == 2 && !strncmp(e, "tp", 2)) return {TmRoute::kTp, 1, pairs, TmRoute::kTp, 1};
      if (n == 4 && !strncmp(e, "tpcl", 4)) return {TmRoute::kTpCl, 2, pairs, TmRoute::kTpCl, 2};
      if (n == 2 && !strncmp(e, "tm", 2)) return {TmRoute::kGeneric, 1, false, TmRoute::kGeneric, 1};
    }
    const TmChoice tw{TmRoute::kTw, 1, false, TmRoute::kTw, 1}, tp1{TmRoute::kTp, 1, false, TmRoute::kTp, 1},
        tp2{TmRoute::kTp, 2, false, TmRoute::kTp, 2}, cl1{TmRoute::kTpCl, 1, false, TmRoute::kTpCl, 1},
        cl2{TmRoute::kTpCl, 2, false, TmRoute::kTpCl, 2}, tm{TmRoute::kGeneric, 1, false, TmRoute::kGeneric, 1};
    const bool f32 = kind == TmKind::kF32, half = kind == TmKind::kHalf, c64 = kind == TmKind::kC64;
    if (kind == TmKind::kOther) return tm;
    /* 2-byte types: tpcl on channel pairs (M = 1) wherever it measured faster than the rest (all
     * but the time-invariant forward of many units); alt: the choice without pairs */
    const bool long_ = 3 * units >= 2 * (int64_t)sms || L >= 16384;
    if (half && (units < sms ? long_ : bwd || !a_inv)) {
      const bool few = 3 * units < 2 * (int64_t)sms;
      const TmChoice alt = units >= sms ? (!bwd ? tw : a_inv ? tp2 : tp1) : few || a_inv ? cl2 : cl1;
      return {TmRoute::kTpCl, 1, true, alt.route, alt.mult};
    }
    if (units >= sms) {
      if (!bwd || c64) return tw;
      return half && a_inv ? tp2 : tp1;
    }
    if (3 * units >= 2 * (int64_t)sms) {
      if (a_inv) return !bwd || !f32 ? cl2 : cl1;
      if (!bwd) return c64 ? tp2 : cl1;
      return half ? cl1 : tp1;
    }
    if (L >= 16384) {
      if (!bwd || a_inv || half) return cl2;
      return c64 ? cl1 : tm;
    }
    return bwd && f32 && !a_inv ? tp1 : tm;
  };
  TmChoice c = choice();
  if (const char *e = getenv("LRNN_LINEAR_SCAN_TP_STEPS")) {
    if (!strcmp(e, "8")) c.mult = c.alt_mult = 1;
    if (!strcmp(e, "16")) c.mult = c.alt_mult = 2;
  }
  return c;
}

/* The warp-sequential kernels: a block (one warp) per row group, its pipeline as deep as
 * tp_stages makes it for that many blocks. */
template <typename Kernel, typename Params>
lrnn_status tw_launch(Kernel kernel, const Params &p, size_t stage, int sms, cudaStream_t st) {
  const int64_t units = p.batch * ((p.dim + 31) / 32), nst = (p.length + kTwSteps - 1) / kTwSteps;
  const int nstage = tp_stages(units, nst, 0, stage, sms);
  const size_t smem = (size_t)nstage * stage;
  if (smem > 48 * 1024 && cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess)
    return LRNN_ERR_CUDA;
  kernel<<<dim3((unsigned)units), 32, smem, st>>>(p, nstage);
  return launched();
}

/* Calls fn with the (reverse, time-invariant a) flags as compile-time constants. */
template <typename Fn> lrnn_status with_flags(bool rev, bool inv, Fn fn) {
  using T = std::true_type;
  using F = std::false_type;
  return rev ? (inv ? fn(T{}, T{}) : fn(T{}, F{})) : (inv ? fn(F{}, T{}) : fn(F{}, F{}));
}

/* An aligned time-major problem on the warp-sequential (tw) or a pipelined kernel (tp, tpcl),
 * forward or backward (BWD). */
template <bool BWD, typename TX, typename TA, typename Params>
lrnn_status tm_aligned_launch(const Params &p, TmChoice c, bool a_inv, int sms, cudaStream_t st) {
  using Op = Affine<acc_t<TA>, acc_t<TX>>;
  return with_flags(p.reverse, a_inv, [&](auto rev, auto inv) {
    constexpr bool REV = decltype(rev)::value, INV = decltype(inv)::value;
    if (c.route == TmRoute::kTw) {
      void (*kernel)(const Params, int) = nullptr;
      if constexpr (BWD) {
        kernel = scan_bwd_tw<TX, TA, REV, INV>;
      } else {
        kernel = scan_fwd_tw<TX, TA, REV, INV>;
      }
      return tw_launch(kernel, p, stage_bytes<TX, TA, INV, BWD, kTwSteps>(), sms, st);
    }
    auto tp = [&](auto mult) {
      constexpr int M = decltype(mult)::value;
      void (*kernel)(const Params, int, int) = nullptr;
      if constexpr (BWD) {
        kernel = scan_bwd_tp<TX, TA, REV, INV, M>;
      } else {
        kernel = scan_fwd_tp<TX, TA, REV, INV, M>;
      }
      return tp_launch(kernel, p, tp_round<TX, M>(), tp_head_bytes<Op>(), stage_bytes<TX, TA, INV, BWD, tp_round<TX, M>()>(), sms,
                       c.route == TmRoute::kTpCl, st);
    };
    return c.mult == 2 ? tp(std::integral_constant<int, 2>{}) : tp(std::integral_constant<int, 1>{});
  });
}

/* Pairs: the parameters of a 2-byte problem seen as (B, L, D/2) elements of two channels, when
 * every array allows it (D even; channels contiguous; batch and time strides even; 4-byte aligned;
 * a time-invariant da, f32 (B, D), 8-byte aligned). */
bool pair_seq(const void *ptr, int64_t *s, size_t align) {
  if (!aligned(ptr, align) || s[2] != 1 || s[0] % 2 || s[1] % 2) return false;
  s[0] /= 2, s[1] /= 2;
  return true;
}
bool pair_row(const void *ptr, int64_t *s) {
  if (!ptr) return true;
  if (!aligned(ptr, 4) || s[1] != 1 || s[0] % 2) return false;
  s[0] /= 2;
  return true;
}
bool pair_params(lrnn_linear_scan_params &q) {
  if (q.dim % 2 || !pair_seq(q.a, q.a_stride, 4) || !pair_seq(q.b, q.b_stride, 4) || !pair_seq(q.h, q.h_stride, 4) ||
      !pair_row(q.h0, q.h0_stride) || !pair_row(q.h_last, q.h_last_stride))
    return false;
  q.dim /= 2;
  return true;
}
bool pair_params(lrnn_linear_scan_bwd_params &q) {
  if (q.dim % 2 || !pair_seq(q.a, q.a_stride, 4) || !pair_seq(q.grad_h, q.grad_h_stride, 4) ||
      !pair_seq(q.h, q.h_stride, 4) || !pair_seq(q.db, q.db_stride, 4) || !pair_row(q.h0, q.h0_stride) ||
      !pair_row(q.grad_h_last, q.grad_h_last_stride) || !pair_row(q.dh0, q.dh0_stride))
    return false;
  if (q.da_sum_time) { /* (B, D) f32, read as [0] and [2] */
    if (!aligned(q.da, 8) || q.da_stride[2] != 1 || q.da_stride[0] % 2) return false;
    q.da_stride[0] /= 2;
  } else if (!pair_seq(q.da, q.da_stride, 4)) {
    return false;
  }
  q.dim /= 2;
  return true;
}

/* An aligned time-major problem: on pairs when chosen and possible, else as it is. */
template <bool BWD, typename TX, typename TA, typename Params>
lrnn_status tm_fast_launch(const Params &p, TmChoice c, bool a_inv, int sms, cudaStream_t st) {
  if constexpr (sizeof(TX) == 2 && sizeof(TA) == 2) {
    Params q = p;
    if (c.pairs && pair_params(q)) return tm_aligned_launch<BWD, pair2<TX>, pair2<TA>>(q, c, a_inv, sms, st);
  }
  c.route = c.alt, c.mult = c.alt_mult;
  return tm_aligned_launch<BWD, TX, TA>(p, c, a_inv, sms, st);
}

template <typename TX, typename TA>
lrnn_status launch_fwd(const lrnn_linear_scan_params &p, cudaStream_t st) {
  using Op = Affine<acc_t<TA>, acc_t<TX>>;
  const int sms = sm_count();
  const int64_t rows = p.batch * p.dim;
  /* channel-major when time is contiguous in b and h (a is read with its own strides) */
  if (p.length > 1 && p.b_stride[1] == 1 && p.h_stride[1] == 1) {
    const bool vec = vec_ok(p.b, p.b_stride, sizeof(TX), p.batch, p.dim) &&
                     vec_ok(p.h, p.h_stride, sizeof(TX), p.batch, p.dim) &&
                     a_vec_ok(p.a, p.a_stride, sizeof(TA), p.batch, p.dim);
    /* a constant in time gets the variant that holds it in a register and carries twice the steps */
    const bool inv = vec && p.a_stride[1] == 0;
    void (*kernel)(const lrnn_linear_scan_params) =
        inv   ? (p.reverse ? scan_fwd_cm<TX, TA, true, true, true> : scan_fwd_cm<TX, TA, true, false, true>)
        : vec ? (p.reverse ? scan_fwd_cm<TX, TA, true, true, false> : scan_fwd_cm<TX, TA, true, false, false>)
              : (p.reverse ? scan_fwd_cm<TX, TA, false, true, false> : scan_fwd_cm<TX, TA, false, false, false>);
    int steps = vec_width<TX>() * (inv ? 2 * cm_vectors<TX, true, false>() : cm_vectors<TX, false, false>());
    if constexpr (sizeof(TX) == 2) {
      if (inv && cm_wide()) {
        kernel = p.reverse ? scan_fwd_cm<TX, TA, true, true, true, 4> : scan_fwd_cm<TX, TA, true, false, true, 4>;
        steps = vec_width<TX>() * 8;
      }
    }
    const int nt = cm_threads(kernel, rows, p.length, steps, sms);
    kernel<<<dim3((unsigned)rows), nt, 0, st>>>(p);
    return launched();
  }
  /* aligned time-major inputs: see tm_route (c128 states take the generic kernel: a round of them
   * would leave no room for a pipeline) */
  if constexpr (sizeof(TX) <= 8) {
    const bool a_inv = p.a_stride[1] == 0;
    if (p.dim >= 32 && tp_ok(p.b, p.b_stride, sizeof(TX), p.batch, p.length, p.dim) &&
        tp_ok(p.h, p.h_stride, sizeof(TX), p.batch, p.length, p.dim) &&
        (a_inv || tp_ok(p.a, p.a_stride, sizeof(TA), p.batch, p.length, p.dim))) {
      const TmChoice c = tm_route(false, a_inv, tm_kind<TX>(), p.batch * ((p.dim + 31) / 32), p.length, sms);
      if (c.route != TmRoute::kGeneric) return tm_fast_launch<false, TX, TA>(p, c, a_inv, sms, st);
    }
  }
  constexpr int V = tm_width<TX>();
  const int vec = (tm_vec_ok(p.a, p.a_stride, sizeof(TA), V, p.batch, p.length) ? kVecA : 0) |
                  (tm_vec_ok(p.b, p.b_stride, sizeof(TX), V, p.batch, p.length) ? kVecX : 0) |
                  (tm_vec_ok(p.h, p.h_stride, sizeof(TX), V, p.batch, p.length) ? kVecH : 0);
  void (*kernel)(const lrnn_linear_scan_params, int, int) =
      p.reverse ? scan_fwd_tm<TX, TA, true> : scan_fwd_tm<TX, TA, false>;
  const TmShape s = tm_shape(kernel, p.batch, p.length, p.dim, V, tm_steps<TX, false>(), sizeof(TX), sizeof(Op), sms);
  kernel<<<dim3((unsigned)s.blocks), s.threads, s.smem, st>>>(p, s.qw, vec);
  return launched();
}

template <typename TX, typename TA>
lrnn_status launch_bwd(const lrnn_linear_scan_bwd_params &p, cudaStream_t st) {
  using Op = Affine<acc_t<TA>, acc_t<TX>>;
  const int sms = sm_count();
  const int64_t rows = p.batch * p.dim;
  if (p.length > 1 && p.h_stride[1] == 1 && p.db_stride[1] == 1) {
    const bool vec = vec_ok(p.grad_h, p.grad_h_stride, sizeof(TX), p.batch, p.dim) &&
                     vec_ok(p.h, p.h_stride, sizeof(TX), p.batch, p.dim) &&
                     vec_ok(p.db, p.db_stride, sizeof(TX), p.batch, p.dim) &&
                     a_vec_ok(p.a, p.a_stride, sizeof(TA), p.batch, p.dim) &&
                     (p.da_sum_time || vec_ok(p.da, p.da_stride, sizeof(TA), p.batch, p.dim));
    const bool inv = vec && p.a_stride[1] == 0;
    void (*kernel)(const lrnn_linear_scan_bwd_params) =
        inv   ? (p.reverse ? scan_bwd_cm<TX, TA, true, true, true> : scan_bwd_cm<TX, TA, true, false, true>)
        : vec ? (p.reverse ? scan_bwd_cm<TX, TA, true, true, false> : scan_bwd_cm<TX, TA, true, false, false>)
              : (p.reverse ? scan_bwd_cm<TX, TA, false, true, false> : scan_bwd_cm<TX, TA, false, false, false>);
    int steps = vec_width<TX>() * cm_vectors<TX, false, true>() * (inv ? 2 : 1);
    if constexpr (sizeof(TX) == 2) {
      if (inv && cm_wide()) {
        kernel = p.reverse ? scan_bwd_cm<TX, TA, true, true, true, 4> : scan_bwd_cm<TX, TA, true, false, true, 4>;
        steps = vec_width<TX>() * 8;
      }
    }
    const int nt = cm_threads(kernel, rows, p.length, steps, sms);
    kernel<<<dim3((unsigned)rows), nt, 0, st>>>(p);
    return launched();
  }
  if constexpr (sizeof(TX) <= 8) {  /* as in the forward */
    const bool a_inv = p.a_stride[1] == 0;
    if (p.dim >= 32 && tp_ok(p.grad_h, p.grad_h_stride, sizeof(TX), p.batch, p.length, p.dim) &&
        tp_ok(p.h, p.h_stride, sizeof(TX), p.batch, p.length, p.dim) &&
        (a_inv || tp_ok(p.a, p.a_stride, sizeof(TA), p.batch, p.length, p.dim))) {
      const TmChoice c = tm_route(true, a_inv, tm_kind<TX>(), p.batch * ((p.dim + 31) / 32), p.length, sms);
      if (c.route != TmRoute::kGeneric) return tm_fast_launch<true, TX, TA>(p, c, a_inv, sms, st);
    }
  }
  constexpr int V = tm_width<TX>();
  const int vec = (tm_vec_ok(p.a, p.a_stride, sizeof(TA), V, p.batch, p.length) ? kVecA : 0) |
                  (tm_vec_ok(p.db, p.db_stride, sizeof(TX), V, p.batch, p.length) ? kVecX : 0) |
                  (tm_vec_ok(p.h, p.h_stride, sizeof(TX), V, p.batch, p.length) ? kVecH : 0) |
                  (tm_vec_ok(p.grad_h, p.grad_h_stride, sizeof(TX), V, p.batch, p.length) ? kVecG : 0) |
                  (!p.da_sum_time && tm_vec_ok(p.da, p.da_stride, sizeof(TA), V, p.batch, p.length) ? kVecDa : 0);
  void (*kernel)(const lrnn_linear_scan_bwd_params, int, int) =
      p.reverse ? scan_bwd_tm<TX, TA, true> : scan_bwd_tm<TX, TA, false>;
  const TmShape s = tm_shape(kernel, p.batch, p.length, p.dim, V, tm_steps<TX, true>(), sizeof(TX), sizeof(Op), sms);
  kernel<<<dim3((unsigned)s.blocks), s.threads, s.smem, st>>>(p, s.qw, vec);
  return launched();
}

bool sizes_ok(int64_t B, int64_t L, int64_t D) {
  return B >= 0 && L >= 0 && D >= 0 && (D == 0 || B <= INT32_MAX / D);
}

}  // namespace

extern "C" lrnn_status lrnn_linear_scan_fwd_cuda(const lrnn_linear_scan_params *p, void *stream) {
  if (!p) return LRNN_ERR_ARGUMENT;
  if (!sizes_ok(p->batch, p->length, p->dim)) return LRNN_ERR_SHAPE;
  if (p->batch * p->dim == 0) return LRNN_OK;
  if (!p->h_last || (p->length > 0 && (!p->a || !p->b || !p->h))) return LRNN_ERR_ARGUMENT;
  cudaStream_t st = (cudaStream_t)stream;
  switch (p->dtype) {
    case LRNN_F32: return p->a_dtype == LRNN_F32 ? launch_fwd<float, float>(*p, st) : LRNN_ERR_DTYPE;
    case LRNN_F64: return p->a_dtype == LRNN_F64 ? launch_fwd<double, double>(*p, st) : LRNN_ERR_DTYPE;
    case LRNN_BF16:
      return p->a_dtype == LRNN_BF16 ? launch_fwd<__nv_bfloat16, __nv_bfloat16>(*p, st) : LRNN_ERR_DTYPE;
    case LRNN_F16: return p->a_dtype == LRNN_F16 ? launch_fwd<__half, __half>(*p, st) : LRNN_ERR_DTYPE;
    case LRNN_C64:
      if (p->a_dtype == LRNN_C64) return launch_fwd<cfloat, cfloat>(*p, st);
      if (p->a_dtype == LRNN_F32) return launch_fwd<cfloat, float>(*p, st);
      return LRNN_ERR_DTYPE;
    case LRNN_C128:
      if (p->a_dtype == LRNN_C128) return launch_fwd<cdouble, cdouble>(*p, st);
      if (p->a_dtype == LRNN_F64) return launch_fwd<cdouble, double>(*p, st);
      return LRNN_ERR_DTYPE;
  }
  return LRNN_ERR_DTYPE;
}

extern "C" lrnn_status lrnn_linear_scan_bwd_cuda(const lrnn_linear_scan_bwd_params *p, void *stream) {
  if (!p) return LRNN_ERR_ARGUMENT;
  if (!sizes_ok(p->batch, p->length, p->dim)) return LRNN_ERR_SHAPE;
  if (p->batch * p->dim == 0) return LRNN_OK;
  if (!p->dh0 || ((p->length > 0 || p->da_sum_time) && !p->da)) return LRNN_ERR_ARGUMENT;
  if (p->length > 0 && (!p->a || !p->grad_h || !p->h || !p->db)) return LRNN_ERR_ARGUMENT;
  cudaStream_t st = (cudaStream_t)stream;
  switch (p->dtype) {
    case LRNN_F32: return p->a_dtype == LRNN_F32 ? launch_bwd<float, float>(*p, st) : LRNN_ERR_DTYPE;
    case LRNN_F64: return p->a_dtype == LRNN_F64 ? launch_bwd<double, double>(*p, st) : LRNN_ERR_DTYPE;
    case LRNN_BF16:
      return p->a_dtype == LRNN_BF16 ? launch_bwd<__nv_bfloat16, __nv_bfloat16>(*p, st) : LRNN_ERR_DTYPE;
    case LRNN_F16: return p->a_dtype == LRNN_F16 ? launch_bwd<__half, __half>(*p, st) : LRNN_ERR_DTYPE;
    case LRNN_C64:
      if (p->a_dtype == LRNN_C64) return launch_bwd<cfloat, cfloat>(*p, st);
      if (p->a_dtype == LRNN_F32) return launch_bwd<cfloat, float>(*p, st);
      return LRNN_ERR_DTYPE;
    case LRNN_C128:
      if (p->a_dtype == LRNN_C128) return launch_bwd<cdouble, cdouble>(*p, st);
      if (p->a_dtype == LRNN_F64) return launch_bwd<cdouble, double>(*p, st);
      return LRNN_ERR_DTYPE;
  }
  return LRNN_ERR_DTYPE;
}
