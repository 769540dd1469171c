/* linear_scan.cu: CUDA forward and backward of the diagonal linear scan (lrnn/linear_scan.h).
 *
 * Every step is the affine map x -> a*x + b, and maps compose associatively, so a block can scan
 * many steps in parallel and carry one state between tiles. Two kernel shapes, picked by the
 * launchers from the strides and sizes (see "launch shapes" below):
 *
 *  - channel-major ("cm"; time is the contiguous dimension, e.g. a (B, D, L) tensor viewed as
 *    (B, L, D)): one block per row (b, d) walks the sequence in tiles of blockDim*E steps. Each
 *    thread loads E consecutive steps (16-byte vectors when aligned), composes them in registers,
 *    warps combine their threads with shuffles, the block combines warps through shared memory,
 *    the state entering the tile comes from the previous tile, and each thread re-runs its E
 *    steps from its exact entering state to write h.
 *  - time-major ("tm"; channels contiguous, and the generic path for any strides): a block owns
 *    CW channels and P lanes of time. Each thread loads S steps of one channel (a warp reads 32
 *    adjacent channels per instruction), the P lanes of a channel combine through shared memory,
 *    and the state is carried from round to round. P splits long sequences when B*D alone would
 *    leave the GPU idle.
 *
 * Both make one pass over memory: the forward reads a and b once and writes h once; the backward
 * reads grad_h, a and h once and writes da and db once. The backward is the same machinery run in
 * the opposite direction on the adjoint map c -> conj(a)*(g + c) (see lrnn/linear_scan.h), where
 * c is the carried conj(a[next])*lam[next].
 *
 * Deterministic: every combination, including the time-invariant da reduction, happens in an
 * order fixed by the launch shape; no atomics. Not here: allocation, argument checks beyond the
 * ones the launchers need to stay in bounds (the ops layer checks shapes and dtypes). */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdint.h>
#include <string.h>

#include <type_traits>

#include "lrnn/linear_scan.h"

namespace {

/* ---------------- element types and their arithmetic ---------------- */

struct __align__(8) cfloat { float re, im; };     /* complex64, interleaved like torch */
struct __align__(16) cdouble { double re, im; };  /* complex128 */

/* Arithmetic type of a storage type: f16/bf16 compute in f32. */
template <typename T> struct acc_of { using type = T; };
template <> struct acc_of<__half> { using type = float; };
template <> struct acc_of<__nv_bfloat16> { using type = float; };
template <typename T> using acc_t = typename acc_of<T>::type;

__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ cfloat to_acc(cfloat x) { return x; }
__device__ __forceinline__ cdouble to_acc(cdouble x) { return x; }

template <typename T> __device__ __forceinline__ T from_acc(acc_t<T> v) { return v; }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
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

/* ---------------- loads and stores of E consecutive steps ---------------- */

/* r[j] = x[(t0 + j) * ts] for t0 + j < len, else pad. With VEC, ts == 1 and x + t0 is 16-byte
 * aligned, so whole 16-byte groups are read as one vector. */
template <bool VEC, typename T, int N>
__device__ __forceinline__ void load_steps(T (&r)[N], const T *x, int64_t ts, int64_t t0, int64_t len, T pad) {
  if constexpr (VEC) {
    constexpr int V = 16 / sizeof(T);
    static_assert(N % V == 0, "chunk must be whole vectors");
#pragma unroll
    for (int i = 0; i < N; i += V) {
      if (t0 + i + V <= len) {
        const int4 v = *reinterpret_cast<const int4 *>(x + t0 + i);
        memcpy(&r[i], &v, 16);
      } else {
#pragma unroll
        for (int j = 0; j < V; ++j) r[i + j] = t0 + i + j < len ? x[t0 + i + j] : pad;
      }
    }
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j) r[j] = t0 + j < len ? x[(t0 + j) * ts] : pad;
  }
}

template <bool VEC, typename T, int N>
__device__ __forceinline__ void store_steps(const T (&r)[N], T *x, int64_t ts, int64_t t0, int64_t len) {
  if constexpr (VEC) {
    constexpr int V = 16 / sizeof(T);
#pragma unroll
    for (int i = 0; i < N; i += V) {
      if (t0 + i + V <= len) {
        int4 v;
        memcpy(&v, &r[i], 16);
        *reinterpret_cast<int4 *>(x + t0 + i) = v;
      } else {
#pragma unroll
        for (int j = 0; j < V; ++j)
          if (t0 + i + j < len) x[t0 + i + j] = r[i + j];
      }
    }
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j)
      if (t0 + j < len) x[(t0 + j) * ts] = r[j];
  }
}

/* The steps of `a`: a time-invariant a (time stride 0) is one value per row, held in a register
 * instead of re-read every step. */
template <bool VEC, typename T, int N>
__device__ __forceinline__ void load_a(T (&r)[N], const T *a, int64_t ts, int64_t t0, int64_t len, T pad, T row) {
  if (ts == 0) {
#pragma unroll
    for (int j = 0; j < N; ++j) r[j] = t0 + j < len ? row : pad;
  } else {
    load_steps<VEC>(r, a, ts, t0, len, pad);
  }
}

/* Steps per thread in the channel-major kernels: 16 steps, at most 64 bytes per array (four
 * 16-byte vectors in flight per array; more would spill at 512 threads). */
template <typename TX> __host__ __device__ constexpr int cm_steps() { return sizeof(TX) >= 4 ? 64 / (int)sizeof(TX) : 16; }
/* Block size bound of every kernel: 512 threads leave 128 registers per thread. */
constexpr int kMaxThreads = 512;
/* Steps per thread per round in the time-major kernels. */
constexpr int kTmSteps = 8;

/* ---------------- channel-major forward ---------------- */

template <typename TX, typename TA, bool VEC, bool REV>
__global__ void __launch_bounds__(kMaxThreads) scan_fwd_cm(const lrnn_linear_scan_params p) {
  using X = acc_t<TX>;
  using A = acc_t<TA>;
  using Op = Affine<A, X>;
  constexpr int E = cm_steps<TX>();
  __shared__ Op warp_total[2][32];

  const int64_t row = blockIdx.x, bi = row / p.dim, d = row % p.dim, L = p.length;
  const TA *a = (const TA *)p.a + bi * p.a_stride[0] + d * p.a_stride[2];
  const TX *x = (const TX *)p.b + bi * p.b_stride[0] + d * p.b_stride[2];
  TX *h = (TX *)p.h + bi * p.h_stride[0] + d * p.h_stride[2];
  const int64_t as = p.a_stride[1], bs = p.b_stride[1], hs = p.h_stride[1];
  const TA a_pad = from_acc<TA>(num<A>::one()), a_row = as == 0 && L > 0 ? a[0] : a_pad;
  const TX x_pad = from_acc<TX>(num<X>::zero());
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const int64_t tile = (int64_t)blockDim.x * E, ntiles = (L + tile - 1) / tile;

  X carry = p.h0 ? to_acc(((const TX *)p.h0)[bi * p.h0_stride[0] + d * p.h0_stride[1]]) : num<X>::zero();
  for (int64_t k = 0; k < ntiles; ++k) {
    const int64_t t0 = (REV ? ntiles - 1 - k : k) * tile + (int64_t)threadIdx.x * E;
    TA ra[E];
    TX rx[E];
    load_a<VEC>(ra, a, as, t0, L, a_pad, a_row);
    load_steps<VEC>(rx, x, bs, t0, L, x_pad);

    /* this thread's E steps composed (padding steps are the identity) */
    Op f = identity<A, X>();
#pragma unroll
    for (int s = 0; s < E; ++s) {
      const int j = ord<REV>(s, E);
      f = compose(f, Op{to_acc(ra[j]), to_acc(rx[j])});
    }
    const Op incl = warp_scan<REV>(f, lane);
    Op excl = shfl_along<REV>(incl, 1);
    if (lane == (REV ? 31 : 0)) excl = identity<A, X>();
    if (lane == (REV ? 0 : 31)) warp_total[k & 1][warp] = incl;
    /* double-buffered by tile parity: one barrier per tile suffices */
    __syncthreads();
    X state = carry, entering = carry;
    for (int s = 0; s < nw; ++s) {
      const int w = REV ? nw - 1 - s : s;
      if (w == warp) entering = state;
      state = apply(warp_total[k & 1][w], state);
    }
    carry = state;

    X v = apply(excl, entering);
#pragma unroll
    for (int s = 0; s < E; ++s) {
      const int j = ord<REV>(s, E);
      v = add(mul(to_acc(ra[j]), v), to_acc(rx[j]));  /* h[t] = a[t] * h[t-1] + b[t] */
      rx[j] = from_acc<TX>(v);
    }
    store_steps<VEC>(rx, h, hs, t0, L);
  }
  if (threadIdx.x == 0) ((TX *)p.h_last)[bi * p.h_last_stride[0] + d * p.h_last_stride[1]] = from_acc<TX>(carry);
}

/* ---------------- time-major (and generic-stride) forward ---------------- */

template <typename TX, typename TA, bool REV>
__global__ void __launch_bounds__(kMaxThreads) scan_fwd_tm(const lrnn_linear_scan_params p, int cw) {
  using X = acc_t<TX>;
  using A = acc_t<TA>;
  using Op = Affine<A, X>;
  constexpr int S = kTmSteps;
  extern __shared__ __align__(16) unsigned char smem[];
  Op *lane_total = reinterpret_cast<Op *>(smem); /* [2][blockDim]: (parity, lane, channel) */

  const int nt = blockDim.x, lanes = nt / cw, c = threadIdx.x % cw, q = threadIdx.x / cw;
  const int64_t D = p.dim, L = p.length, groups = (D + cw - 1) / cw;
  const int64_t bi = blockIdx.x / groups, d = (blockIdx.x % groups) * cw + c;
  const bool valid = d < D;
  const int64_t dd = valid ? d : 0;
  const TA *a = (const TA *)p.a + bi * p.a_stride[0] + dd * p.a_stride[2];
  const TX *x = (const TX *)p.b + bi * p.b_stride[0] + dd * p.b_stride[2];
  TX *h = (TX *)p.h + bi * p.h_stride[0] + dd * p.h_stride[2];
  const int64_t as = p.a_stride[1], bs = p.b_stride[1], hs = p.h_stride[1];
  const TA a_pad = from_acc<TA>(num<A>::one()), a_row = as == 0 && valid && L > 0 ? a[0] : a_pad;
  const TX x_pad = from_acc<TX>(num<X>::zero());
  /* a padded row (d >= D) sees only padding: length 0 */
  const int64_t len = valid ? L : 0;
  const int64_t round = (int64_t)lanes * S, nrounds = (L + round - 1) / round;

  X carry = valid && p.h0 ? to_acc(((const TX *)p.h0)[bi * p.h0_stride[0] + d * p.h0_stride[1]]) : num<X>::zero();
  for (int64_t k = 0; k < nrounds; ++k) {
    const int64_t t0 = (REV ? nrounds - 1 - k : k) * round + (int64_t)q * S;
    TA ra[S];
    TX rx[S];
    load_a<false>(ra, a, as, t0, len, a_pad, a_row);
    load_steps<false>(rx, x, bs, t0, len, x_pad);
    Op f = identity<A, X>();
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int j = ord<REV>(s, S);
      f = compose(f, Op{to_acc(ra[j]), to_acc(rx[j])});
    }
    Op *tot = lane_total + (k & 1) * nt;
    tot[threadIdx.x] = f;
    __syncthreads();
    X state = carry, entering = carry;
    for (int s = 0; s < lanes; ++s) {
      const int l = REV ? lanes - 1 - s : s;
      if (l == q) entering = state;
      state = apply(tot[l * cw + c], state);
    }
    carry = state;
    X v = entering;
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int j = ord<REV>(s, S);
      v = add(mul(to_acc(ra[j]), v), to_acc(rx[j]));  /* h[t] = a[t] * h[t-1] + b[t] */
      rx[j] = from_acc<TX>(v);
    }
    store_steps<false>(rx, h, hs, t0, len);
  }
  if (valid && q == 0) ((TX *)p.h_last)[bi * p.h_last_stride[0] + d * p.h_last_stride[1]] = from_acc<TX>(carry);
}

/* ---------------- backward ----------------
 * REV is the direction of the forward scan; the backward walks the other way (BREV). With c the
 * adjoint carried from the later steps (grad_h_last before the first backward step):
 *     lam[t] = g[t] + c,  db[t] = lam[t],  da[t] = lam[t] * conj(h_prev(t)),  c <- conj(a[t]) * lam[t]
 * i.e. the affine step c -> conj(a)*c + conj(a)*g, whose final c is dh0. h_prev(t) is the state
 * before the forward step at t: h[t-1] (h[t+1] when REV), or h0 (zero) before the first step. */

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

template <typename TX, typename TA, bool VEC, bool REV>
__global__ void __launch_bounds__(kMaxThreads) scan_bwd_cm(const lrnn_linear_scan_bwd_params p) {
  using X = acc_t<TX>;
  using A = acc_t<TA>;
  using Op = Affine<A, X>;
  constexpr bool BREV = !REV;
  constexpr int E = cm_steps<TX>();
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
  const TX x_pad = from_acc<TX>(num<X>::zero());
  const X h0 = p.h0 ? to_acc(((const TX *)p.h0)[bi * p.h0_stride[0] + d * p.h0_stride[1]]) : num<X>::zero();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const int64_t tile = (int64_t)blockDim.x * E, ntiles = (L + tile - 1) / tile;

  X carry = p.grad_h_last
                ? to_acc(((const TX *)p.grad_h_last)[bi * p.grad_h_last_stride[0] + d * p.grad_h_last_stride[1]])
                : num<X>::zero();
  A da_sum = num<A>::zero();
  for (int64_t k = 0; k < ntiles; ++k) {
    const int64_t t0 = (BREV ? ntiles - 1 - k : k) * tile + (int64_t)threadIdx.x * E;
    TA ra[E];
    TX rg[E], rh[E];
    load_a<VEC>(ra, a, as, t0, L, a_pad, a_row);
    load_steps<VEC>(rg, g, gs, t0, L, x_pad);
    load_steps<VEC>(rh, h, hs, t0, L, x_pad);
    /* the state before this chunk's first forward step, which the chunk does not hold */
    const int64_t tb = REV ? t0 + E : t0 - 1;
    const X h_edge = tb >= 0 && tb < L ? to_acc(h[tb * hs]) : h0;

    Op f = identity<A, X>();
#pragma unroll
    for (int s = 0; s < E; ++s) {
      const int j = ord<BREV>(s, E);
      const A ca = conj_(to_acc(ra[j]));
      f = compose(f, Op{ca, mul(ca, to_acc(rg[j]))});
    }
    const Op incl = warp_scan<BREV>(f, lane);
    Op excl = shfl_along<BREV>(incl, 1);
    if (lane == (BREV ? 31 : 0)) excl = identity<A, X>();
    if (lane == (BREV ? 0 : 31)) warp_total[k & 1][warp] = incl;
    __syncthreads();
    X state = carry, entering = carry;
    for (int s = 0; s < nw; ++s) {
      const int w = BREV ? nw - 1 - s : s;
      if (w == warp) entering = state;
      state = apply(warp_total[k & 1][w], state);
    }
    carry = state;

    X c = apply(excl, entering);
    TA rda[E];
#pragma unroll
    for (int s = 0; s < E; ++s) {
      const int j = ord<BREV>(s, E);
      /* h_prev: inside the chunk, else the edge value, else h0 past the sequence end */
      X hp;
      if (REV) {
        hp = j + 1 < E ? (t0 + j + 1 < L ? to_acc(rh[j + 1]) : h0) : h_edge;
      } else {
        hp = j > 0 ? to_acc(rh[j - 1]) : h_edge;
      }
      const X lam = add(to_acc(rg[j]), c);
      const A dat = da_term<A>(lam, hp);
      c = mul(conj_(to_acc(ra[j])), lam);
      rg[j] = from_acc<TX>(lam);
      if (p.da_sum_time) {
        if (t0 + j < L) da_sum = add(da_sum, dat);
      } else {
        rda[j] = from_acc<TA>(dat);
      }
    }
    store_steps<VEC>(rg, db, dbs, t0, L);
    if (!p.da_sum_time) store_steps<VEC>(rda, da, das, t0, L);
  }
  if (threadIdx.x == 0) ((TX *)p.dh0)[bi * p.dh0_stride[0] + d * p.dh0_stride[1]] = from_acc<TX>(carry);
  if (p.da_sum_time) {
    const A total = block_sum(da_sum, partial);
    if (threadIdx.x == 0) ((A *)p.da)[bi * p.da_stride[0] + d * p.da_stride[2]] = total;
  }
}

template <typename TX, typename TA, bool REV>
__global__ void __launch_bounds__(kMaxThreads) scan_bwd_tm(const lrnn_linear_scan_bwd_params p, int cw) {
  using X = acc_t<TX>;
  using A = acc_t<TA>;
  using Op = Affine<A, X>;
  constexpr bool BREV = !REV;
  constexpr int S = kTmSteps;
  extern __shared__ __align__(16) unsigned char smem[];
  Op *lane_total = reinterpret_cast<Op *>(smem); /* [2][blockDim] */

  const int nt = blockDim.x, lanes = nt / cw, c = threadIdx.x % cw, q = threadIdx.x / cw;
  const int64_t D = p.dim, L = p.length, groups = (D + cw - 1) / cw;
  const int64_t bi = blockIdx.x / groups, d = (blockIdx.x % groups) * cw + c;
  const bool valid = d < D;
  const int64_t dd = valid ? d : 0;
  const TA *a = (const TA *)p.a + bi * p.a_stride[0] + dd * p.a_stride[2];
  const TX *g = (const TX *)p.grad_h + bi * p.grad_h_stride[0] + dd * p.grad_h_stride[2];
  const TX *h = (const TX *)p.h + bi * p.h_stride[0] + dd * p.h_stride[2];
  TX *db = (TX *)p.db + bi * p.db_stride[0] + dd * p.db_stride[2];
  TA *da = p.da_sum_time ? nullptr : (TA *)p.da + bi * p.da_stride[0] + dd * p.da_stride[2];
  const int64_t as = p.a_stride[1], gs = p.grad_h_stride[1], hs = p.h_stride[1], dbs = p.db_stride[1],
                das = p.da_stride[1];
  const TA a_pad = from_acc<TA>(num<A>::one()), a_row = as == 0 && valid && L > 0 ? a[0] : a_pad;
  const TX x_pad = from_acc<TX>(num<X>::zero());
  const int64_t len = valid ? L : 0;
  const X h0 = valid && p.h0 ? to_acc(((const TX *)p.h0)[bi * p.h0_stride[0] + d * p.h0_stride[1]]) : num<X>::zero();
  const int64_t round = (int64_t)lanes * S, nrounds = (L + round - 1) / round;

  X carry = valid && p.grad_h_last
                ? to_acc(((const TX *)p.grad_h_last)[bi * p.grad_h_last_stride[0] + d * p.grad_h_last_stride[1]])
                : num<X>::zero();
  A da_sum = num<A>::zero();
  for (int64_t k = 0; k < nrounds; ++k) {
    const int64_t t0 = (BREV ? nrounds - 1 - k : k) * round + (int64_t)q * S;
    TA ra[S];
    TX rg[S], rh[S];
    load_a<false>(ra, a, as, t0, len, a_pad, a_row);
    load_steps<false>(rg, g, gs, t0, len, x_pad);
    load_steps<false>(rh, h, hs, t0, len, x_pad);
    const int64_t tb = REV ? t0 + S : t0 - 1;
    const X h_edge = tb >= 0 && tb < len ? to_acc(h[tb * hs]) : h0;

    Op f = identity<A, X>();
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int j = ord<BREV>(s, S);
      const A ca = conj_(to_acc(ra[j]));
      f = compose(f, Op{ca, mul(ca, to_acc(rg[j]))});
    }
    Op *tot = lane_total + (k & 1) * nt;
    tot[threadIdx.x] = f;
    __syncthreads();
    X state = carry, entering = carry;
    for (int s = 0; s < lanes; ++s) {
      const int l = BREV ? lanes - 1 - s : s;
      if (l == q) entering = state;
      state = apply(tot[l * cw + c], state);
    }
    carry = state;

    X cv = entering;
    TA rda[S];
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int j = ord<BREV>(s, S);
      X hp;
      if (REV) {
        hp = j + 1 < S ? (t0 + j + 1 < len ? to_acc(rh[j + 1]) : h0) : h_edge;
      } else {
        hp = j > 0 ? to_acc(rh[j - 1]) : h_edge;
      }
      const X lam = add(to_acc(rg[j]), cv);
      const A dat = da_term<A>(lam, hp);
      cv = mul(conj_(to_acc(ra[j])), lam);
      rg[j] = from_acc<TX>(lam);
      if (p.da_sum_time) {
        if (t0 + j < len) da_sum = add(da_sum, dat);
      } else {
        rda[j] = from_acc<TA>(dat);
      }
    }
    store_steps<false>(rg, db, dbs, t0, len);
    if (!p.da_sum_time) store_steps<false>(rda, da, das, t0, len);
  }
  if (valid && q == 0) ((TX *)p.dh0)[bi * p.dh0_stride[0] + d * p.dh0_stride[1]] = from_acc<TX>(carry);
  if (p.da_sum_time) {
    /* lanes of a channel add their partial sums in lane order */
    __syncthreads();  /* every thread is done reading lane_total */
    A *part = reinterpret_cast<A *>(smem);
    part[threadIdx.x] = da_sum;
    __syncthreads();
    if (valid && q == 0) {
      A total = num<A>::zero();
      for (int l = 0; l < lanes; ++l) total = add(total, part[l * cw + c]);
      ((A *)p.da)[bi * p.da_stride[0] + d * p.da_stride[2]] = total;
    }
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

/* Channel-major: blocks of 32..128 threads for short rows; bigger blocks (more steps in flight
 * per row) while all rows still fit on the GPU at once, i.e. while the GPU would otherwise idle
 * with fewer rows than resident blocks. */
template <typename Kernel> int cm_threads(Kernel kernel, int64_t rows, int64_t L, int steps, int sms) {
  int nt = 32;
  while (nt < 128 && (int64_t)nt * steps < L) nt *= 2;
  while (nt * 2 <= kMaxThreads && L >= (int64_t)nt * 2 * steps &&
         rows <= (int64_t)sms * resident_blocks(kernel, nt * 2, 0))
    nt *= 2;
  return nt;
}

struct TmShape {
  int cw, threads;
  int64_t blocks;
  size_t smem;
};

/* Time-major: CW adjacent channels per block (32 = one 128-byte line of f32 per warp load;
 * down to 8, a 32-byte sector, when B*D is too small to give every SM a block; fewer only when
 * D itself is smaller) and up to 32 lanes of time: as many as keep every block resident in one
 * wave (each block walks the whole sequence, so a second wave would double the time). Shared
 * memory holds two rounds of lane aggregates. */
template <typename Kernel> TmShape tm_shape(Kernel kernel, int64_t B, int64_t L, int64_t D, size_t op_bytes, int sms) {
  int cw = 32;
  while (cw > 1 && (cw / 2 >= D || (cw > 8 && B * ((D + cw - 1) / cw) < sms))) cw /= 2;
  const int64_t blocks = B * ((D + cw - 1) / cw);
  int max_threads = kMaxThreads;
  while ((size_t)max_threads * 2 * op_bytes > 48 * 1024) max_threads /= 2;
  int lanes = 1;
  while (lanes < 32 && cw * lanes * 2 <= max_threads && (int64_t)lanes * 2 * kTmSteps <= L &&
         blocks <= (int64_t)sms * resident_blocks(kernel, cw * lanes * 2, (size_t)cw * lanes * 4 * op_bytes))
    lanes *= 2;
  /* whole warps where the channel count allows, so barriers do not idle partial warps */
  while (cw * lanes < 32 && cw * lanes * 2 <= max_threads && lanes < 32) lanes *= 2;
  TmShape s;
  s.cw = cw;
  s.threads = cw * lanes;
  s.blocks = blocks;
  s.smem = (size_t)s.threads * 2 * op_bytes;  /* also holds the time-invariant da partial sums */
  return s;
}

bool aligned16(const void *ptr) { return ((uintptr_t)ptr & 15u) == 0; }

/* A sequence whose time steps are contiguous and whose rows all start on 16 bytes (the stride
 * of a size-1 dimension never moves the row). */
bool vec_ok(const void *ptr, const int64_t *stride, size_t elem, int64_t B, int64_t D) {
  const int64_t v = 16 / (int64_t)elem;
  return aligned16(ptr) && stride[1] == 1 && (B == 1 || stride[0] % v == 0) && (D == 1 || stride[2] % v == 0);
}

/* `a` in a vectorized channel-major kernel: constant in time, or a vectorizable sequence. */
bool a_vec_ok(const void *ptr, const int64_t *stride, size_t elem, int64_t B, int64_t D) {
  return stride[1] == 0 || vec_ok(ptr, stride, elem, B, D);
}

lrnn_status launched() { return cudaGetLastError() == cudaSuccess ? LRNN_OK : LRNN_ERR_CUDA; }

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
    void (*kernel)(const lrnn_linear_scan_params) =
        vec ? (p.reverse ? scan_fwd_cm<TX, TA, true, true> : scan_fwd_cm<TX, TA, true, false>)
            : (p.reverse ? scan_fwd_cm<TX, TA, false, true> : scan_fwd_cm<TX, TA, false, false>);
    const int nt = cm_threads(kernel, rows, p.length, cm_steps<TX>(), sms);
    kernel<<<dim3((unsigned)rows), nt, 0, st>>>(p);
    return launched();
  }
  void (*kernel)(const lrnn_linear_scan_params, int) =
      p.reverse ? scan_fwd_tm<TX, TA, true> : scan_fwd_tm<TX, TA, false>;
  const TmShape s = tm_shape(kernel, p.batch, p.length, p.dim, sizeof(Op), sms);
  kernel<<<dim3((unsigned)s.blocks), s.threads, s.smem, st>>>(p, s.cw);
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
    void (*kernel)(const lrnn_linear_scan_bwd_params) =
        vec ? (p.reverse ? scan_bwd_cm<TX, TA, true, true> : scan_bwd_cm<TX, TA, true, false>)
            : (p.reverse ? scan_bwd_cm<TX, TA, false, true> : scan_bwd_cm<TX, TA, false, false>);
    const int nt = cm_threads(kernel, rows, p.length, cm_steps<TX>(), sms);
    kernel<<<dim3((unsigned)rows), nt, 0, st>>>(p);
    return launched();
  }
  void (*kernel)(const lrnn_linear_scan_bwd_params, int) =
      p.reverse ? scan_bwd_tm<TX, TA, true> : scan_bwd_tm<TX, TA, false>;
  const TmShape s = tm_shape(kernel, p.batch, p.length, p.dim, sizeof(Op), sms);
  kernel<<<dim3((unsigned)s.blocks), s.threads, s.smem, st>>>(p, s.cw);
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
