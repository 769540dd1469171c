/* event_scan_kernels.cuh: the device code of the CUDA event scan (lrnn/event_scan.h), included
 * by event_scan.cu (which launches it) and by tests/c/test_event_scan_cuda_emulated.cpp (which
 * runs these very kernels on CPU threads, so their logic is tested on machines without a GPU).
 * It uses only CUDA built-ins (threadIdx, __shared__, __syncthreads, atomicAdd, math functions)
 * and, on the device, relaxed GPU-scope loads and stores and cp.async (inline PTX, with plain
 * fallbacks that the emulation compiles).
 *
 * Two designs live here. The three-pass scan at the end of the file (reduce, carry, apply; see
 * its section) is what the launcher runs: no tile waits for another, the scan input is read
 * twice. The look-back scan below reads every input once but serializes the tiles of a chain
 * through L2 round trips; LRNN_EVENT_IMPL=lookback selects it for measurement.
 *
 * Look-back scan: one pass over memory. The B*P independent channels are cut into chains of CW = 32 channels of
 * one batch row (a warp reads 32 adjacent complex values per time step: 256 contiguous bytes),
 * and each chain's time axis into tiles of T = NL*S steps. A block of NL*CW threads owns one
 * tile at a time: thread (lane q, channel c) holds S consecutive steps of channel c in
 * registers and composes them into one affine map x -> A*x + X. The state entering a tile comes
 * from the tiles before it in its chain through a deterministic windowed look-back: tile m of a
 * chain starts from the inclusive end state of tile m-W followed by the aggregates (composed
 * maps) of tiles m-W+1 .. m-1, always in that order, so the result never depends on timing
 * (bitwise reproducible) and the inputs are read from HBM exactly once.
 *
 * Latency is what limits this design (the memory traffic is fixed), so a tile's critical path
 * is kept to one L2 round trip: the launcher fills the publication area with an "empty" bit
 * pattern (all ones: a NaN that arithmetic never stores, see to_word), every published word is
 * its own flag (no separate flags, no fences), and the W look-back items (inclusive state of
 * m-W, aggregates of m-W+1 .. m-1) are loaded by all NL lanes of the block at once, two items
 * per lane, then composed in a fixed order by every thread for its own lane. The block only
 * publishes (lane 0: the tile aggregate; lane NL-1: the tile's inclusive state) and, when its
 * predecessors have published, waits for one round trip of those loads. Blocks are persistent and take tile numbers from an atomic
 * counter in increasing order, chain-fastest: a tile only ever waits for tiles numbered before
 * it, which were handed to running blocks earlier, so the waits cannot deadlock whatever the
 * grid size. The counter's answer is kept in a register for one tile before use (its round
 * trip is off the critical path), and both kernels load their next tile's scan input (v, or
 * grad_h) before doing the current tile's math: the forward by cp.async into shared memory
 * (16 KB per block in flight), the backward into registers while v and h[t-1] of the current
 * tile go to shared memory by cp.async.
 *
 * Transitions exp(Lambda*delta*dt) and input scales are computed in registers, never stored.
 * The backward runs the adjoint c -> conj(a)*(grad_h + c) the same way in reverse step order;
 * per tile it writes dv (and ddelta per event) directly and its dLambda (and shared-delta
 * ddelta) partials, summed over the tile's lanes in a fixed order, to the workspace; a second
 * kernel sums those partials over the tiles of each channel in a fixed order (no atomics). */
#pragma once

#include <stdint.h>
#include <string.h>

#include "lrnn/event_scan.h"

// The forward's staging buffers are dynamic shared memory; the emulation defines its own.
#ifndef LRNN_EVENT_DYN_SMEM
extern __shared__ uint4 lrnn_event_dyn_smem[];
#define LRNN_EVENT_DYN_SMEM lrnn_event_dyn_smem
#endif

namespace lrnn_event_cuda {

// Channels per chain (one warp across channels), time lanes per block, look-back window: the
// W = 2*NL items (one inclusive state, W-1 aggregates) are loaded two per lane. The chain
// advances W tiles (1024 steps of complex64) per round trip of its slowest link; each tile
// reads W-1 aggregates (16 bytes per channel each) from L2 for it.
constexpr int CW = 32;
constexpr int NL = 8;
constexpr int NT = CW * NL;
constexpr int W = 2 * NL;
// Steps per thread. Forward: 8 (64 bytes of complex64 v per thread, 16 KB per tile, staged in
// shared memory) with two blocks per SM: 0.656 ms on the H200 at (8, 65536, 128), async, against
// 0.669 ms with 16 steps and 0.726 / 1.087 ms with 8 steps and three / four blocks per SM
// (register spills). Backward (three arrays, more live registers): 8 complex64, 4 complex128.
template <typename R>
__host__ __device__ constexpr int fwd_steps() { return 8; }
template <typename R>
__host__ __device__ constexpr int bwd_steps() { return sizeof(R) == 4 ? 8 : 4; }

template <typename R>
struct alignas(2 * sizeof(R)) cx {
  R re, im;
};
template <typename R>
__device__ __forceinline__ cx<R> mk(R re, R im) { return cx<R>{re, im}; }
template <typename R>
__device__ __forceinline__ cx<R> mul(cx<R> x, cx<R> y) { return mk(x.re * y.re - x.im * y.im, x.re * y.im + x.im * y.re); }
template <typename R>
__device__ __forceinline__ cx<R> add(cx<R> x, cx<R> y) { return mk(x.re + y.re, x.im + y.im); }
template <typename R>
__device__ __forceinline__ cx<R> scale(R s, cx<R> x) { return mk(s * x.re, s * x.im); }
// conj(x) * y
template <typename R>
__device__ __forceinline__ cx<R> mulc(cx<R> x, cx<R> y) { return mk(x.re * y.re + x.im * y.im, x.re * y.im - x.im * y.re); }
template <typename R>
__device__ __forceinline__ R dotr(cx<R> x, cx<R> y) { return x.re * y.re + x.im * y.im; }
template <typename R>
__device__ __forceinline__ cx<R> cdiv(cx<R> x, cx<R> y) {   // Smith's algorithm
  if (fabs(y.re) >= fabs(y.im)) {
    const R r = y.im / y.re, d = y.re + y.im * r;
    return mk((x.re + x.im * r) / d, (x.im - x.re * r) / d);
  }
  const R r = y.re / y.im, d = y.re * r + y.im;
  return mk((x.re * r + x.im) / d, (x.im * r - x.re) / d);
}

// sin and cos with the argument reduced to [-pi, pi] first: the build uses --use_fast_math,
// whose float intrinsics are only accurate near zero, and phases Im(Lambda)*delta*dt are large.
__device__ __forceinline__ void sincos_reduced(float y, float* s, float* c) {
  const float r = y - 6.283185307179586f * rintf(y * 0.15915494309189535f);
  sincosf(r, s, c);
}
__device__ __forceinline__ void sincos_reduced(double y, double* s, double* c) { sincos(y, s, c); }

template <typename R>
__device__ __forceinline__ cx<R> cexp_(cx<R> z) {
  R s, c;
  sincos_reduced(z.im, &s, &c);
  const R e = exp(z.re);
  return mk(e * c, e * s);
}
// exp(z) - 1 without cancellation
template <typename R>
__device__ __forceinline__ cx<R> cexpm1_(cx<R> z) {
  R s, c, sh, ch;
  sincos_reduced(z.im, &s, &c);
  sincos_reduced(z.im * R(0.5), &sh, &ch);
  return mk(expm1(z.re) * c - R(2) * sh * sh, exp(z.re) * s);
}
template <typename R>
__device__ __forceinline__ cx<R> phi(cx<R> z) {
  if (z.re == R(0) && z.im == R(0)) return mk(R(1), R(0));
  return cdiv(cexpm1_(z), z);
}
template <typename R>
__device__ __forceinline__ cx<R> psi(cx<R> z) {   // phi'(z), series below |z| = 1
  if (z.re * z.re + z.im * z.im < R(1)) {
    const double c[18] = {1.0 / 2, 2.0 / 6, 3.0 / 24, 4.0 / 120, 5.0 / 720, 6.0 / 5040, 7.0 / 40320,
                          8.0 / 362880, 9.0 / 3628800, 10.0 / 39916800, 11.0 / 479001600,
                          12.0 / 6227020800.0, 13.0 / 87178291200.0, 14.0 / 1307674368000.0,
                          15.0 / 20922789888000.0, 16.0 / 355687428096000.0, 17.0 / 6402373705728000.0,
                          18.0 / 121645100408832000.0};
    cx<R> acc = mk(R(c[17]), R(0));
#pragma unroll
    for (int k = 16; k >= 0; --k) {
      acc = mul(acc, z);
      acc.re += R(c[k]);
    }
    return acc;
  }
  const cx<R> e = cexp_(z), f = phi(z);
  return cdiv(mk(e.re - f.re, e.im - f.im), z);
}

template <typename R>
__device__ __forceinline__ void input_scale(int disc, cx<R> lam, R delta, R dt, cx<R> a, bool grad, cx<R>* g,
                                            cx<R>* dgl, cx<R>* dgd) {
  if (disc == LRNN_DISC_ZOH) {
    const R s = delta * dt;
    *g = scale(s, phi(scale(s, lam)));
    if (grad) {
      *dgl = scale(s * s, psi(scale(s, lam)));
      *dgd = scale(dt, a);
    }
  } else if (disc == LRNN_DISC_ASYNC) {
    const cx<R> w = scale(delta, lam);
    *g = scale(delta, phi(w));
    if (grad) {
      *dgl = scale(delta * delta, psi(w));
      *dgd = cexp_(w);
    }
  } else {
    *g = mk(R(1), R(0));
    if (grad) {
      *dgl = mk(R(0), R(0));
      *dgd = mk(R(0), R(0));
    }
  }
}

template <typename TR>
__device__ __forceinline__ float load_r(const TR* p, int64_t i);
template <>
__device__ __forceinline__ float load_r<float>(const float* p, int64_t i) { return p[i]; }
template <>
__device__ __forceinline__ float load_r<uint16_t>(const uint16_t* p, int64_t i) {
  return __uint_as_float(static_cast<uint32_t>(p[i]) << 16);   // bfloat16 -> float
}
__device__ __forceinline__ double load_r(const double* p, int64_t i) { return p[i]; }

template <typename R, typename TR>
__device__ __forceinline__ R load_real(const TR* p, int64_t i) { return static_cast<R>(load_r(p, i)); }

// ---------------- workspace ----------------
// [counter: u32][per tile and channel: the aggregate (A, X), the inclusive end state], all
// filled with ones by the launcher before each kernel (the counter thus starts at 2^32-1 and
// next_tile adds one), then (backward) the gradient partials (dLambda complex, ddelta real).
struct Layout {
  int64_t groups, chains, ntt, tiles;
  int64_t fill_bytes, agg_off, inc_off, pl_off, pd_off, bytes;
};
template <typename R>
__host__ __device__ inline Layout layout(int64_t B, int64_t L, int64_t P, bool bwd) {
  Layout o;
  const int64_t T = NL * (bwd ? bwd_steps<R>() : fwd_steps<R>());
  o.groups = (P + CW - 1) / CW;
  o.chains = B * o.groups;
  o.ntt = L > 0 ? (L + T - 1) / T : 1;   // L = 0: one padding tile still writes h_last / dh0
  o.tiles = o.chains * o.ntt;
  const int64_t per = o.tiles * CW * static_cast<int64_t>(sizeof(cx<R>));
  o.agg_off = 256;
  o.inc_off = o.agg_off + 2 * per;
  o.fill_bytes = o.inc_off + per;
  o.pl_off = o.fill_bytes;
  o.pd_off = o.pl_off + (bwd ? per : 0);
  o.bytes = o.pd_off + (bwd ? o.tiles * CW * static_cast<int64_t>(sizeof(R)) : 0);
  return o;
}

__device__ __forceinline__ unsigned next_tile(unsigned char* ws) {
  return atomicAdd(reinterpret_cast<unsigned*>(ws), 1u) + 1u;
}

// ---- publication words: a float (double) is published as one 32-bit (64-bit) word, which
// loads and stores single-copy atomically; the all-ones pattern means "not yet written".
template <typename R>
struct Word;
template <>
struct Word<float> {
  using T = unsigned;
  static constexpr T empty = 0xFFFFFFFFu, nan = 0x7FFFFFFFu;
};
template <>
struct Word<double> {
  using T = unsigned long long;
  static constexpr T empty = 0xFFFFFFFFFFFFFFFFull, nan = 0x7FFFFFFFFFFFFFFFull;
};
// The empty pattern is a NaN; a NaN result is published as another NaN so that it cannot be
// mistaken for it (GPU arithmetic never produces it, but NaN inputs can carry any payload).
template <typename R>
__device__ __forceinline__ typename Word<R>::T to_word(R x) {
  typename Word<R>::T u;
  memcpy(&u, &x, sizeof u);
  return u == Word<R>::empty ? Word<R>::nan : u;
}
template <typename R>
__device__ __forceinline__ R from_word(typename Word<R>::T u) {
  R x;
  memcpy(&x, &u, sizeof x);
  return x;
}
// Relaxed GPU-scope stores and loads of one complex value (two words): the readers poll the
// words themselves, so no fence and no flag is needed.
__device__ __forceinline__ void st_words(unsigned* p, unsigned a, unsigned b) {
#ifdef __CUDA_ARCH__
  asm volatile("st.relaxed.gpu.global.v2.u32 [%0], {%1, %2};" ::"l"(p), "r"(a), "r"(b) : "memory");
#else
  volatile unsigned* w = p;
  w[0] = a;
  w[1] = b;
#endif
}
__device__ __forceinline__ void st_words(unsigned long long* p, unsigned long long a, unsigned long long b) {
#ifdef __CUDA_ARCH__
  asm volatile("st.relaxed.gpu.global.v2.u64 [%0], {%1, %2};" ::"l"(p), "l"(a), "l"(b) : "memory");
#else
  volatile unsigned long long* w = p;
  w[0] = a;
  w[1] = b;
#endif
}
__device__ __forceinline__ void ld_words(const unsigned* p, unsigned* a, unsigned* b) {
#ifdef __CUDA_ARCH__
  asm volatile("ld.relaxed.gpu.global.v2.u32 {%0, %1}, [%2];" : "=r"(*a), "=r"(*b) : "l"(p));
#else
  const volatile unsigned* w = p;
  *a = w[0];
  *b = w[1];
#endif
}
__device__ __forceinline__ void ld_words(const unsigned long long* p, unsigned long long* a, unsigned long long* b) {
#ifdef __CUDA_ARCH__
  asm volatile("ld.relaxed.gpu.global.v2.u64 {%0, %1}, [%2];" : "=l"(*a), "=l"(*b) : "l"(p));
#else
  const volatile unsigned long long* w = p;
  *a = w[0];
  *b = w[1];
#endif
}
template <typename R>
__device__ __forceinline__ void publish(cx<R>* p, cx<R> v) {
  st_words(reinterpret_cast<typename Word<R>::T*>(p), to_word(v.re), to_word(v.im));
}
// false while either word is still empty
template <typename R>
__device__ __forceinline__ bool observe(const cx<R>* p, cx<R>* v) {
  typename Word<R>::T a, b;
  ld_words(reinterpret_cast<const typename Word<R>::T*>(p), &a, &b);
  *v = mk(from_word<R>(a), from_word<R>(b));
  return a != Word<R>::empty && b != Word<R>::empty;
}

// The tile's place: chain (batch row b, channel d of this thread) and time tile tt. Tile
// numbers are below 2^31 (the launcher checks), so 32-bit divisions suffice; it is computed
// once per tile, with the tile's prefetched inputs.
struct TilePos {
  int tt, b, d;   // products with the (64-bit) strides are 64-bit
  bool active;
};
__device__ __forceinline__ TilePos tile_pos(const Layout& o, int64_t k, int64_t P) {
  TilePos t;
  const unsigned kk = static_cast<unsigned>(k), chains = static_cast<unsigned>(o.chains);
  const unsigned chain = kk % chains, groups = static_cast<unsigned>(o.groups);
  t.tt = static_cast<int>(kk / chains);
  t.b = static_cast<int>(chain / groups);
  t.d = static_cast<int>(chain % groups) * CW + static_cast<int>(threadIdx.x) % CW;
  t.active = t.d < P;
  return t;
}

// Look-back item i (0 .. W-1, oldest first) of tile k at chain time tt, as an affine map: the
// inclusive state of tile tt-W (i = 0) as x -> inc, the aggregate of tile tt-W+i (i > 0); the
// chain's start state for the tile before the first (tt-W+i = -1), identity further back.
// Returns false while the item is not yet published.
template <typename R>
__device__ __forceinline__ bool item(const Layout& o, const unsigned char* ws, int64_t k, int64_t tt, int i,
                                     cx<R> start, cx<R>* A, cx<R>* X) {
  const int c = static_cast<int>(threadIdx.x) % CW;
  const int64_t j = tt - W + i;
  if (j < 0) {
    *A = j == -1 ? mk(R(0), R(0)) : mk(R(1), R(0));
    *X = j == -1 ? start : mk(R(0), R(0));
    return true;
  }
  const int64_t kj = (k - static_cast<int64_t>(W - i) * o.chains) * CW + c;
  if (i == 0) {
    *A = mk(R(0), R(0));
    return observe(reinterpret_cast<const cx<R>*>(ws + o.inc_off) + kj, X);
  }
  const cx<R>* agg = reinterpret_cast<const cx<R>*>(ws + o.agg_off) + 2 * kj;
  const bool ra = observe(agg, A), rx = observe(agg + 1, X);   // both loads in flight together
  return ra && rx;
}

// Called by all NT threads once the lane maps of tile k are in sA/sX (after a barrier); has one
// barrier itself. Lane 0 publishes the tile aggregate; every lane loads two look-back items
// (all W loads of the block in flight together, polled until published), composes them and
// leaves the map in gA/gX; then every thread composes the NL maps and the lane maps before its
// own, in one fixed order, into the state entering its lane, which it returns. Lane NL-1 also
// publishes the tile's inclusive state and stores it in *inclusive. sA/sX must stay untouched
// until every thread has returned (callers alternate two buffers or add a barrier); gA/gX are
// free again after the caller's next barrier.
template <typename R>
__device__ __forceinline__ cx<R> chain_block(const Layout& o, unsigned char* ws, int64_t k, int64_t tt, cx<R> start,
                                             const cx<R> (*sA)[CW], const cx<R> (*sX)[CW], cx<R> (*gA)[CW],
                                             cx<R> (*gX)[CW], cx<R>* inclusive) {
  static_assert(W == 2 * NL, "two look-back items per lane");
  const int c = static_cast<int>(threadIdx.x) % CW, q = static_cast<int>(threadIdx.x) / CW;
  if (q == 0) {
    cx<R> A = mk(R(1), R(0)), X = mk(R(0), R(0));
    for (int l = 0; l < NL; ++l) {
      X = add(mul(sA[l][c], X), sX[l][c]);
      A = mul(sA[l][c], A);
    }
    cx<R>* agg = reinterpret_cast<cx<R>*>(ws + o.agg_off) + 2 * (k * CW + c);
    publish(agg, A);
    publish(agg + 1, X);
  }
  cx<R> A0, X0, A1, X1;
  for (;;) {
    const bool r0 = item<R>(o, ws, k, tt, 2 * q, start, &A0, &X0);
    const bool r1 = item<R>(o, ws, k, tt, 2 * q + 1, start, &A1, &X1);
    if (r0 && r1) break;
  }
  gA[q][c] = mul(A1, A0);
  gX[q][c] = add(mul(A1, X0), X1);
  __syncthreads();
  cx<R> x = mk(R(0), R(0));   // the first non-identity item ignores it (A = 0)
#pragma unroll
  for (int l = 0; l < NL; ++l) x = add(mul(gA[l][c], x), gX[l][c]);
  for (int l = 0; l < q; ++l) x = add(mul(sA[l][c], x), sX[l][c]);
  if (q == NL - 1) {
    const cx<R> e = add(mul(sA[q][c], x), sX[q][c]);
    publish(reinterpret_cast<cx<R>*>(ws + o.inc_off) + k * CW + c, e);
    *inclusive = e;
  }
  return x;
}

// Per-channel constants of a tile: Lambda, the shared delta and its input scale (and, for the
// backward, the scale's derivatives).
template <typename R>
struct Chan {
  cx<R> lam, gc, dglc, dgdc;
  R delc;
};
template <typename R, typename TR, bool PE, typename P>
__device__ __forceinline__ Chan<R> chan(const P& p, const TilePos& t, bool grad) {
  Chan<R> ch;
  const cx<R> zero = mk(R(0), R(0));
  ch.lam = zero;
  ch.gc = zero;
  ch.dglc = zero;
  ch.dgdc = zero;
  ch.delc = 0;
  if (t.active) {
    ch.lam = static_cast<const cx<R>*>(p.lambda)[t.d * p.lambda_stride];
    if (!PE) {
      ch.delc = load_real<R>(static_cast<const TR*>(p.delta), t.b * p.delta_stride[0] + t.d * p.delta_stride[2]);
      input_scale<R>(p.disc, ch.lam, ch.delc, R(0), mk(R(1), R(0)), grad, &ch.gc, &ch.dglc, &ch.dgdc);
    }
  }
  return ch;
}

// The inputs of one tile that the aggregate needs, prefetched one tile ahead: the complex input
// in registers (VR) or copied asynchronously to shared memory, dt (and delta) in registers.
// Steps past the end (and channels past P) load dt = 0 and zero inputs: identity steps.
// PE: delta per event.
template <typename R, bool PE, int S, bool VR>
struct StepIn {
  TilePos t;
  cx<R> v[VR ? S : 1];
  R tau[S], del[PE ? S : 1];
};

// Asynchronous copy of one complex value into shared memory, and the waits for a thread's copies
// (the emulation copies at once).
template <typename R>
__device__ __forceinline__ void copy_async(cx<R>* dst, const cx<R>* src) {
#ifdef __CUDA_ARCH__
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  if (sizeof(cx<R>) == 8) asm volatile("cp.async.ca.shared.global [%0], [%1], 8;" ::"r"(d), "l"(src) : "memory");
  else asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(src) : "memory");
#else
  *dst = *src;
#endif
}
__device__ __forceinline__ void copy_async_commit() {
#ifdef __CUDA_ARCH__
  asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}
// all but the most recently committed group are complete
__device__ __forceinline__ void copy_async_wait_prev() {
#ifdef __CUDA_ARCH__
  asm volatile("cp.async.wait_group 1;" ::: "memory");
#endif
}
__device__ __forceinline__ void copy_async_wait() {
#ifdef __CUDA_ARCH__
  asm volatile("cp.async.wait_all;" ::: "memory");
#endif
}

// The steps of thread lane q in tile tt: scan steps r = tt*T + q*S + j, j = 0 .. S-1 (the
// forward scans s = r, the backward s = L-1-r: both walk lanes and steps in increasing r). The
// time index of step j is t0 + j*dir with dir = +-1 (reverse and backward each flip it); step
// j exists while r < L.
struct Steps {
  int64_t r0, t0;
  int dir;
};
__device__ __forceinline__ Steps lane_steps(int64_t tt, int S, int64_t L, bool flip) {
  Steps st;
  st.r0 = tt * NL * S + static_cast<int64_t>(threadIdx.x / CW) * S;
  st.t0 = flip ? L - 1 - st.r0 : st.r0;
  st.dir = flip ? -1 : 1;
  return st;
}

// sv: with !VR, the tile's staging buffer [S][NT] in shared memory (thread-major within a step:
// a warp's row is contiguous).
template <typename R, typename TR, bool PE, int S, bool VR, typename Prm>
__device__ __forceinline__ void load_in(const Prm& p, const Layout& o, int64_t k, StepIn<R, PE, S, VR>& in,
                                        const cx<R>* src, const int64_t* src_stride, bool bwd, cx<R>* sv) {
  if (k >= o.tiles) return;
  in.t = tile_pos(o, k, p.dim);
  const TilePos& t = in.t;
  const int tid = static_cast<int>(threadIdx.x);
  const Steps st = lane_steps(t.tt, S, p.length, bwd != (p.reverse != 0));
  const TR* dt = static_cast<const TR*>(p.dt) + t.b * p.dt_stride[0] + st.t0 * p.dt_stride[1];
  const TR* delta = static_cast<const TR*>(p.delta) + t.b * p.delta_stride[0] + st.t0 * p.delta_stride[1] +
                    t.d * p.delta_stride[2];
  const cx<R>* x = src + t.b * src_stride[0] + st.t0 * src_stride[1] + t.d * src_stride[2];
  const int64_t ddt = st.dir * p.dt_stride[1], ddel = st.dir * p.delta_stride[1], dx = st.dir * src_stride[1];
#pragma unroll
  for (int j = 0; j < S; ++j) {
    const bool on = t.active && st.r0 + j < p.length;
    in.tau[j] = on ? load_real<R>(dt, j * ddt) : R(0);
    if (PE) in.del[j] = on ? load_real<R>(delta, j * ddel) : R(0);
    if (VR) in.v[VR ? j : 0] = on ? x[j * dx] : mk(R(0), R(0));
    else if (on) copy_async(sv + j * NT + tid, x + j * dx);
    else sv[j * NT + tid] = mk(R(0), R(0));
  }
}

// ---------------- forward ----------------

// Shared memory of a forward block: lane maps in two buffers (tile parity), look-back maps; the
// staging buffers of v (two tiles) are dynamic shared memory, fwd_stage_bytes.
template <typename R>
struct FwdShared {
  cx<R> sA[2][NL][CW], sX[2][NL][CW], gA[NL][CW], gX[NL][CW];
  unsigned ids[3];
};
template <typename R>
__host__ __device__ constexpr int fwd_stage_bytes() { return 2 * fwd_steps<R>() * NT * static_cast<int>(sizeof(cx<R>)); }

template <typename R, bool PE>
using FwdIn = StepIn<R, PE, fwd_steps<R>(), false>;

// sv: the tile's staged v, complete for this thread's own slots. GC as in the backward: the
// input scale is the same for every step (shared delta, not ZOH).
template <typename R, typename TR, bool PE, bool GC>
__device__ __forceinline__ void fwd_tile(const lrnn_event_scan_params& p, const Layout& o, unsigned char* ws, int64_t k,
                                         int buf, const FwdIn<R, PE>& in, const cx<R>* sv, FwdShared<R>& sh) {
  constexpr int S = fwd_steps<R>();
  const TilePos& t = in.t;
  const Chan<R> ch = chan<R, TR, PE>(p, t, false);
  const int tid = static_cast<int>(threadIdx.x);
  cx<R> a[S], gv[S];
  cx<R> A = mk(R(1), R(0)), X = mk(R(0), R(0));
#pragma unroll
  for (int j = 0; j < S; ++j) {
    const R del = PE ? in.del[j] : ch.delc;
    a[j] = cexp_(scale(del * in.tau[j], ch.lam));
    cx<R> g = ch.gc;
    if (!GC) input_scale<R>(p.disc, ch.lam, del, in.tau[j], a[j], false, &g, nullptr, nullptr);
    gv[j] = mul(g, sv[j * NT + tid]);
    X = add(mul(a[j], X), gv[j]);
    A = mul(a[j], A);
  }
  const int c = tid % CW, q = tid / CW;
  sh.sA[buf][q][c] = A;
  sh.sX[buf][q][c] = X;
  __syncthreads();
  cx<R> start = mk(R(0), R(0)), last = start;
  if (t.active && p.h0) start = static_cast<const cx<R>*>(p.h0)[t.b * p.h0_stride[0] + t.d * p.h0_stride[1]];
  cx<R> x = chain_block<R>(o, ws, k, t.tt, start, sh.sA[buf], sh.sX[buf], sh.gA, sh.gX, &last);
  if (q == NL - 1 && t.active && t.tt == o.ntt - 1)
    static_cast<cx<R>*>(p.h_last)[t.b * p.h_last_stride[0] + t.d * p.h_last_stride[1]] = last;
  const Steps st = lane_steps(t.tt, S, p.length, p.reverse != 0);
  cx<R>* h = static_cast<cx<R>*>(p.h) + t.b * p.h_stride[0] + st.t0 * p.h_stride[1] + t.d * p.h_stride[2];
  const int64_t dh = st.dir * p.h_stride[1];
#pragma unroll
  for (int j = 0; j < S; ++j) {
    x = add(mul(a[j], x), gv[j]);
    if (t.active && st.r0 + j < p.length) h[j * dh] = x;
  }
}

// Persistent blocks of NT threads with fwd_stage_bytes<R>() of dynamic shared memory; ws is the
// workspace of layout<R>(.., false), its first fill_bytes filled with ones. Each iteration
// prefetches the next tile (dt, delta into registers, v by cp.async into the other staging
// buffer: 16 KB (complex64) per block in flight while the current tile computes and waits on
// its chain).
// Thread 0 takes tile numbers: each answer waits a whole tile in a register, then goes to
// sh.ids (three slots, written before a tile's first barrier and read after its last) two
// tiles before its use. Each thread reads only the staging slots it copied itself, so waiting
// for its own copies suffices (no barrier), and a buffer is refilled only after the thread's
// reads of it were consumed by the previous tile's math. PE: delta per event; GC must be true
// exactly when delta is shared over time and the discretization is not ZOH.
template <typename R, typename TR, bool PE, bool GC>
__global__ void __launch_bounds__(NT, 2) event_fwd_kernel(lrnn_event_scan_params p, void* wsv) {
  static_assert(!(PE && GC), "a per-event delta has no constant input scale");
  __shared__ FwdShared<R> sh;
  cx<R>* stage = reinterpret_cast<cx<R>*>(LRNN_EVENT_DYN_SMEM);
  constexpr int SN = fwd_steps<R>() * NT;
  unsigned char* ws = static_cast<unsigned char*>(wsv);
  const Layout o = layout<R>(p.batch, p.length, p.dim, false);
  const cx<R>* v = static_cast<const cx<R>*>(p.v);
  unsigned pending = 0;
  if (threadIdx.x == 0) {
    sh.ids[0] = next_tile(ws);
    sh.ids[1] = next_tile(ws);
    pending = next_tile(ws);
  }
  __syncthreads();
  int64_t cur = sh.ids[0], nxt = sh.ids[1];
  FwdIn<R, PE> in0, in1;
  load_in<R, TR, PE>(p, o, cur, in0, v, p.v_stride, false, stage);
  copy_async_commit();
  for (int it = 0; cur < o.tiles;) {
    load_in<R, TR, PE>(p, o, nxt, in1, v, p.v_stride, false, stage + SN);
    copy_async_commit();
    if (threadIdx.x == 0) {
      sh.ids[(it + 2) % 3] = pending;
      pending = next_tile(ws);
    }
    copy_async_wait_prev();
    fwd_tile<R, TR, PE, GC>(p, o, ws, cur, it & 1, in0, stage, sh);
    cur = nxt;
    nxt = sh.ids[(it + 2) % 3];
    ++it;
    if (cur >= o.tiles) break;
    load_in<R, TR, PE>(p, o, nxt, in0, v, p.v_stride, false, stage);
    copy_async_commit();
    if (threadIdx.x == 0) {
      sh.ids[(it + 2) % 3] = pending;
      pending = next_tile(ws);
    }
    copy_async_wait_prev();
    fwd_tile<R, TR, PE, GC>(p, o, ws, cur, it & 1, in1, stage + SN, sh);
    cur = nxt;
    nxt = sh.ids[(it + 2) % 3];
    ++it;
  }
  copy_async_wait();   // a prefetch past the last tile issues no copies; nothing may be left in flight
}

// ---------------- backward ----------------
// A tile reads three complex arrays: grad_h (which the adjoint's aggregate needs) is loaded into
// registers one tile ahead, like the forward's v; v and h[t-1] (needed only after the chain
// step) are copied asynchronously into shared memory at the start of the tile (cp.async: in
// flight during the aggregate and the look-back, and no registers held), for complex64. The
// complex128 path (tests, gradcheck) does not fit them in the 48 KB of static shared memory
// and loads them into registers instead.

template <typename R>
__host__ __device__ constexpr bool staged() { return sizeof(R) == 4; }

template <typename R, bool PE>
using BwdIn = StepIn<R, PE, bwd_steps<R>(), true>;

template <typename R>
struct BwdShared {
  cx<R> sA[NL][CW], sX[NL][CW], gA[NL][CW], gX[NL][CW], sL[NL][CW];
  R sD[NL][CW];
  // v and h[t-1] of each thread's steps (thread-major within a step: a warp's row is contiguous)
  cx<R> sv[staged<R>() ? bwd_steps<R>() : 1][NT], shp[staged<R>() ? bwd_steps<R>() : 1][NT];
  unsigned ids[3];
};

// GC: the input scale is the same for every step (shared delta, not ZOH): the per-step gradient
// loop then has no input-scale derivatives, and its own instantiation keeps it free of spills.
// `in` holds the tile's grad_h, dt (and delta) loaded a tile ahead.
template <typename R, typename TR, bool PE, bool GC>
__device__ __forceinline__ void bwd_tile(const lrnn_event_scan_bwd_params& p, const Layout& o, unsigned char* ws,
                                         int64_t k, const BwdIn<R, PE>& in, BwdShared<R>& sh) {
  constexpr int S = bwd_steps<R>();
  constexpr bool ST = staged<R>();
  const TilePos& t = in.t;
  const Chan<R> ch = chan<R, TR, PE>(p, t, true);
  const cx<R> zero = mk(R(0), R(0));
  const int64_t L = p.length;
  const int tid = static_cast<int>(threadIdx.x);
  const Steps st = lane_steps(t.tt, S, L, p.reverse == 0);
  cx<R> vv[ST ? 1 : S], hp[ST ? 1 : S];
  {
    const cx<R>* v = static_cast<const cx<R>*>(p.v) + t.b * p.v_stride[0] + st.t0 * p.v_stride[1] + t.d * p.v_stride[2];
    // h at the time before each step in scan order: one time index against the scan direction
    const cx<R>* h = static_cast<const cx<R>*>(p.h) + t.b * p.h_stride[0] + (st.t0 + st.dir) * p.h_stride[1] +
                     t.d * p.h_stride[2];
    const int64_t dvs = st.dir * p.v_stride[1], dhs = st.dir * p.h_stride[1];
    const cx<R> h0 = t.active && p.h0 ? static_cast<const cx<R>*>(p.h0)[t.b * p.h0_stride[0] + t.d * p.h0_stride[1]] : zero;
#pragma unroll
    for (int j = 0; j < S; ++j) {
      const bool on = t.active && st.r0 + j < L, first = st.r0 + j >= L - 1;   // scan step s = L-1-r = 0
      if (ST) {
        if (on) copy_async(&sh.sv[ST ? j : 0][tid], v + j * dvs);
        else sh.sv[ST ? j : 0][tid] = zero;
        if (on && !first) copy_async(&sh.shp[ST ? j : 0][tid], h + j * dhs);
        else sh.shp[ST ? j : 0][tid] = on ? h0 : zero;
      } else {
        vv[ST ? 0 : j] = on ? v[j * dvs] : zero;
        hp[ST ? 0 : j] = on ? (first ? h0 : h[j * dhs]) : zero;
      }
    }
  }
  cx<R> a[S];
  cx<R> A = mk(R(1), R(0)), X = zero;
#pragma unroll
  for (int j = 0; j < S; ++j) {
    a[j] = cexp_(scale((PE ? in.del[j] : ch.delc) * in.tau[j], ch.lam));
    X = mulc(a[j], add(X, in.v[j]));   // c -> conj(a) * (grad_h + c)
    A = mulc(a[j], A);
  }
  const int c = tid % CW, q = tid / CW;
  sh.sA[q][c] = A;
  sh.sX[q][c] = X;
  __syncthreads();
  cx<R> start = zero, last = zero;
  if (t.active && p.grad_h_last)
    start = static_cast<const cx<R>*>(p.grad_h_last)[t.b * p.grad_h_last_stride[0] + t.d * p.grad_h_last_stride[1]];
  cx<R> carry = chain_block<R>(o, ws, k, t.tt, start, sh.sA, sh.sX, sh.gA, sh.gX, &last);
  if (q == NL - 1 && t.active && t.tt == o.ntt - 1)
    static_cast<cx<R>*>(p.dh0)[t.b * p.dh0_stride[0] + t.d * p.dh0_stride[1]] = last;
  cx<R> dl = zero, gsum = zero;
  R dd_sum = 0;
  cx<R>* dv = static_cast<cx<R>*>(p.dv) + t.b * p.dv_stride[0] + st.t0 * p.dv_stride[1] + t.d * p.dv_stride[2];
  // the time stride of ddelta only exists per event
  const int64_t dd_t = PE ? p.ddelta_stride[1] : 0, ddv = st.dir * p.dv_stride[1], ddd = st.dir * dd_t;
  R* ddelta = static_cast<R*>(p.ddelta) + t.b * p.ddelta_stride[0] + st.t0 * dd_t + t.d * p.ddelta_stride[2];
  if (ST) copy_async_wait();   // each thread reads only what it copied itself
#pragma unroll
  for (int j = 0; j < S; ++j) {
    const R del = PE ? in.del[j] : ch.delc, sdt = del * in.tau[j];
    const cx<R> lt = add(in.v[j], carry);
    const cx<R> vj = ST ? sh.sv[ST ? j : 0][tid] : vv[ST ? 0 : j], hj = ST ? sh.shp[ST ? j : 0][tid] : hp[ST ? 0 : j];
    const cx<R> ga = mulc(hj, lt), gv = mulc(vj, lt);
    dl = add(dl, scale(sdt, mulc(a[j], ga)));
    R dd = in.tau[j] * dotr(mul(ch.lam, a[j]), ga);
    cx<R> g = ch.gc;
    if (GC) {
      gsum = add(gsum, gv);
    } else {
      cx<R> dgl, dgd;
      input_scale<R>(p.disc, ch.lam, del, in.tau[j], a[j], true, &g, &dgl, &dgd);
      dl = add(dl, mulc(dgl, gv));
      dd += dotr(dgd, gv);
    }
    if (t.active && st.r0 + j < L) {
      dv[j * ddv] = mulc(g, lt);
      if (PE) ddelta[j * ddd] = dd;
    }
    dd_sum += dd;
    carry = mulc(a[j], lt);
  }
  if (GC) {
    dl = add(dl, mulc(ch.dglc, gsum));
    dd_sum += dotr(ch.dgdc, gsum);
  }
  sh.sL[q][c] = dl;
  sh.sD[q][c] = dd_sum;
  __syncthreads();
  if (q == 0) {   // the tile's partials, lanes summed in order
    cx<R> tl = zero;
    R td = 0;
    for (int l = 0; l < NL; ++l) {
      tl = add(tl, sh.sL[l][c]);
      td += sh.sD[l][c];
    }
    reinterpret_cast<cx<R>*>(ws + o.pl_off)[k * CW + c] = tl;
    reinterpret_cast<R*>(ws + o.pd_off)[k * CW + c] = td;
  }
}

// PE: delta per event; GC must be true exactly when delta is shared over time and the
// discretization is not ZOH. The barrier after the partials (sL, sD) separates one tile's reads
// of sA/sX and of the staged v/h from the next tile's writes, so one buffer suffices here.
// Tile numbers and the grad_h prefetch rotate as in the forward. Two blocks per SM: capping the
// registers for three spilled and measured 2.4x slower on the H200.
template <typename R, typename TR, bool PE, bool GC>
__global__ void __launch_bounds__(NT, 2) event_bwd_kernel(lrnn_event_scan_bwd_params p, void* wsv) {
  static_assert(!(PE && GC), "a per-event delta has no constant input scale");
  __shared__ BwdShared<R> sh;
  unsigned char* ws = static_cast<unsigned char*>(wsv);
  const Layout o = layout<R>(p.batch, p.length, p.dim, true);
  const cx<R>* gh = static_cast<const cx<R>*>(p.grad_h);
  unsigned pending = 0;
  if (threadIdx.x == 0) {
    sh.ids[0] = next_tile(ws);
    sh.ids[1] = next_tile(ws);
    pending = next_tile(ws);
  }
  __syncthreads();
  int64_t cur = sh.ids[0], nxt = sh.ids[1];
  BwdIn<R, PE> in0, in1;
  load_in<R, TR, PE>(p, o, cur, in0, gh, p.grad_h_stride, true, nullptr);
  for (int it = 0; cur < o.tiles;) {
    load_in<R, TR, PE>(p, o, nxt, in1, gh, p.grad_h_stride, true, nullptr);
    if (threadIdx.x == 0) {
      sh.ids[(it + 2) % 3] = pending;
      pending = next_tile(ws);
    }
    bwd_tile<R, TR, PE, GC>(p, o, ws, cur, in0, sh);
    cur = nxt;
    nxt = sh.ids[(it + 2) % 3];
    ++it;
    if (cur >= o.tiles) break;
    load_in<R, TR, PE>(p, o, nxt, in0, gh, p.grad_h_stride, true, nullptr);
    if (threadIdx.x == 0) {
      sh.ids[(it + 2) % 3] = pending;
      pending = next_tile(ws);
    }
    bwd_tile<R, TR, PE, GC>(p, o, ws, cur, in1, sh);
    cur = nxt;
    nxt = sh.ids[(it + 2) % 3];
    ++it;
  }
}

// dLambda (B, P) and, with a shared delta, ddelta (B, P): one block per chain, RL lanes per
// channel; lane q sums the channel's tile partials q, q+RL, q+2*RL, ... in order and lane 0 adds
// the RL sums in order (a fixed order: reproducible). RL lanes keep ~L/(T*RL) dependent-free
// loads per thread, so the reduction (12 bytes per channel and tile) runs at L2 speed.
constexpr int RL = 16;
template <typename R>
__global__ void __launch_bounds__(CW * RL) event_bwd_reduce_kernel(lrnn_event_scan_bwd_params p, const void* wsv) {
  __shared__ cx<R> sl[RL][CW];
  __shared__ R sd[RL][CW];
  const unsigned char* ws = static_cast<const unsigned char*>(wsv);
  const Layout o = layout<R>(p.batch, p.length, p.dim, true);
  const int c = static_cast<int>(threadIdx.x) % CW, q = static_cast<int>(threadIdx.x) / CW;
  const int64_t chain = blockIdx.x, b = chain / o.groups, d = (chain % o.groups) * CW + c;
  const cx<R>* pl = reinterpret_cast<const cx<R>*>(ws + o.pl_off);
  const R* pd = reinterpret_cast<const R*>(ws + o.pd_off);
  cx<R> tl = mk(R(0), R(0));
  R td = 0;
#pragma unroll 4
  for (int64_t tt = q; tt < o.ntt; tt += RL) {
    const int64_t j = (tt * o.chains + chain) * CW + c;
    tl = add(tl, pl[j]);
    td += pd[j];
  }
  sl[q][c] = tl;
  sd[q][c] = td;
  __syncthreads();
  if (q == 0 && d < p.dim) {
    tl = mk(R(0), R(0));
    td = 0;
    for (int l = 0; l < RL; ++l) {
      tl = add(tl, sl[l][c]);
      td += sd[l][c];
    }
    static_cast<cx<R>*>(p.dlambda)[b * p.dlambda_stride[0] + d * p.dlambda_stride[1]] = tl;
    if (p.delta_stride[1] == 0) static_cast<R*>(p.ddelta)[b * p.ddelta_stride[0] + d * p.ddelta_stride[2]] = td;
  }
}

// ---------------- reduce-then-scan kernels ----------------
// No tile ever waits for another. A warp owns one tile of one chain (its 32 lanes are the
// chain's 32 channels; it walks the tile's T steps in order, one step per iteration, so no
// intra-tile scan exists), and the scan runs in three launches:
//   1. reduce: every tile's affine map (A, X) from the zero state (A the product of its
//      transitions, X its end state), reading the scan input once;
//   2. carry: one block per chain composes the maps of its tiles in order, from the chain's start
//      state, and stores the state entering every tile (a few KB per chain);
//   3. apply: every tile re-walks its steps from that state and writes the outputs.
// The scan input is read twice (1.5x the forward's bytes, 1.25x the backward's), against a
// latency chain through every tile of the look-back kernels above. The apply pass takes tiles
// in the opposite order of the reduce pass, so its first tiles' inputs are the last ones read
// and may still sit in L2. Loads are issued a group of steps ahead into registers (two groups
// rotate), so every warp keeps one group of steps (2 KB per array) in flight while it computes.

constexpr int RW = 8;          // warps (tiles) per block of the reduce and apply kernels
constexpr int RNT = RW * CW;
constexpr int RG = 8;          // steps per load group: forward, and the backward's reduce
constexpr int RG3 = 4;         // steps per load group of the backward's apply (three arrays)
constexpr int CSW = 32;        // warps of a carry block
constexpr int CSN = 8;         // tiles per warp and round of the carry block (registers)

// Workspace of the three-pass scan: per tile and channel the map (A, X), the entering state,
// and (backward) the gradient partials; every word is written before it is read (no fill).
struct RsLayout {
  int64_t groups, chains, T, ntt, tiles;
  int64_t agg_off, car_off, pl_off, pd_off, bytes;
};
template <typename R>
__host__ __device__ inline RsLayout rs_layout(int64_t B, int64_t L, int64_t P, int64_t T, bool bwd) {
  RsLayout o;
  o.groups = (P + CW - 1) / CW;
  o.chains = B * o.groups;
  o.T = T;
  o.ntt = L > 0 ? (L + T - 1) / T : 1;   // L = 0: one empty tile still writes h_last / dh0
  o.tiles = o.chains * o.ntt;
  const int64_t per = o.tiles * CW * static_cast<int64_t>(sizeof(cx<R>));
  o.agg_off = 0;
  o.car_off = 2 * per;
  o.pl_off = 3 * per;
  o.pd_off = o.pl_off + (bwd ? per : 0);
  o.bytes = o.pd_off + (bwd ? o.tiles * CW * static_cast<int64_t>(sizeof(R)) : 0);
  return o;
}

// Tile k = chain * ntt + tt of this thread's warp; its n steps are scan steps r0 .. r0+n-1.
struct RsPos {
  TilePos t;
  int64_t chain, r0;
  int n;
};
__device__ __forceinline__ RsPos rs_pos(const RsLayout& o, int64_t k, int64_t P, int64_t L) {
  RsPos s;
  s.chain = k / o.ntt;
  s.t.tt = static_cast<int>(k - s.chain * o.ntt);
  s.t.b = static_cast<int>(s.chain / o.groups);
  s.t.d = static_cast<int>(s.chain % o.groups) * CW + static_cast<int>(threadIdx.x) % CW;
  s.t.active = s.t.d < P;
  s.r0 = static_cast<int64_t>(s.t.tt) * o.T;
  const int64_t left = L - s.r0;
  s.n = static_cast<int>(left < o.T ? (left > 0 ? left : 0) : o.T);
  return s;
}

// The tile of this warp: k counts up with the block (reduce) or down (apply); -1 past the end.
__device__ __forceinline__ int64_t rs_tile(const RsLayout& o, bool down) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * RW + static_cast<int64_t>(threadIdx.x) / CW;
  if (k >= o.tiles) return -1;
  return down ? o.tiles - 1 - k : k;
}

// One group of G steps: up to NV complex arrays, dt and (PE) delta; steps past the tile's end
// (or of an inactive channel) hold dt = 0 and zeros: identity steps.
template <typename R, bool PE, int G, int NV>
struct RsGrp {
  cx<R> x[NV][G];
  R tau[G], del[PE ? G : 1];
};

// Pointers at step 0 of the tile and per-step strides (signed: the scan may walk time down).
template <typename R, typename TR, int NV>
struct RsSrc {
  const TR* dt;
  const TR* del;
  const cx<R>* x[NV];
  int64_t ddt, ddel, dx[NV];
};

// Steps j0 .. j0+G-1 of n, the last array only below nlast (the backward's h[t-1] does not
// exist at the scan's first step). Groups are loaded in order: the pointers advance one step
// at a time (a 64-bit add, where offsets j*stride would each hold a register pair).
template <typename R, typename TR, bool PE, int G, int NV>
__device__ __forceinline__ void rs_load(RsGrp<R, PE, G, NV>& g, RsSrc<R, TR, NV>& s, int j0, int n, int nlast,
                                        bool active) {
#pragma unroll
  for (int j = 0; j < G; ++j) {
    const bool on = active && j0 + j < n;
    g.tau[j] = on ? load_real<R>(s.dt, 0) : R(0);
    s.dt += s.ddt;
    if (PE) {
      g.del[PE ? j : 0] = on ? load_real<R>(s.del, 0) : R(0);
      s.del += s.ddel;
    }
#pragma unroll
    for (int i = 0; i < NV; ++i) {
      const bool oni = i == NV - 1 ? active && j0 + j < nlast : on;
      g.x[i][j] = oni ? *s.x[i] : mk(R(0), R(0));
      s.x[i] += s.dx[i];
    }
  }
}

// Walks a tile's n steps in groups of G: the next group's loads are issued before the current
// group's math (two register buffers, named statically: an indexed pair would live in local
// memory). load(group, j0) fills a group, body(group, j0) consumes it.
template <typename Grp, int G, typename Load, typename Body>
__device__ __forceinline__ void rs_walk(int n, Load load, Body body) {
  Grp g0, g1;
  load(g0, 0);
  for (int j0 = 0; j0 < n; j0 += 2 * G) {
    if (j0 + G < n) load(g1, j0 + G);
    body(g0, j0);
    if (j0 + G >= n) break;
    if (j0 + 2 * G < n) load(g0, j0 + 2 * G);
    body(g1, j0 + G);
  }
}

// The staged variant (ST): groups go to a ring of NS stages per warp in dynamic shared memory by
// cp.async, NS-1 groups ahead (no registers held by loads in flight), each lane copying and
// reading only its own slots (dt too: one copy per lane), so no warp barrier is needed.
template <typename R, bool PE, int G, int NV>
struct RsStage {
  cx<R> x[NV][G][CW];
  R tau[G][CW], del[G][CW];
};
template <typename R, int G, int NV>
struct RsStage<R, false, G, NV> {   // no delta slots: the sizes decide how many blocks fit on an SM
  cx<R> x[NV][G][CW];
  R tau[G][CW];
};
template <typename R>
__device__ __forceinline__ void copy_async_real(R* dst, const R* src) {
#ifdef __CUDA_ARCH__
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  if (sizeof(R) == 4) asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(d), "l"(src) : "memory");
  else asm volatile("cp.async.ca.shared.global [%0], [%1], 8;" ::"r"(d), "l"(src) : "memory");
#else
  *dst = *src;
#endif
}
// all but the N most recently committed groups are complete
template <int N>
__device__ __forceinline__ void copy_async_wait_n() {
#ifdef __CUDA_ARCH__
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
#endif
}
template <typename R, typename TR, bool PE, int G, int NV>
__device__ __forceinline__ void rs_stage_load(RsStage<R, PE, G, NV>& st, RsSrc<R, TR, NV>& s, int j0, int n, int nlast,
                                              bool active) {
  const int c = static_cast<int>(threadIdx.x) % CW;
#pragma unroll
  for (int j = 0; j < G; ++j) {
    const bool on = active && j0 + j < n;
    if (on) copy_async_real<R>(&st.tau[j][c], reinterpret_cast<const R*>(s.dt));
    else st.tau[j][c] = R(0);
    s.dt += s.ddt;
    if constexpr (PE) {
      if (on) copy_async_real<R>(&st.del[j][c], reinterpret_cast<const R*>(s.del));
      else st.del[j][c] = R(0);
      s.del += s.ddel;
    }
#pragma unroll
    for (int i = 0; i < NV; ++i) {
      const bool oni = i == NV - 1 ? active && j0 + j < nlast : on;
      if (oni) copy_async(&st.x[i][j][c], s.x[i]);
      else st.x[i][j][c] = mk(R(0), R(0));
      s.x[i] += s.dx[i];
    }
  }
}
template <typename R, bool PE, int G, int NV>
__host__ __device__ constexpr int rs_stage_bytes(int ns) { return RW * ns * static_cast<int>(sizeof(RsStage<R, PE, G, NV>)); }

// A tile's walk, register (rs_walk) or staged: body(group, j0) sees the group in registers.
template <typename R, typename TR, bool PE, int G, int NV, int NS, bool ST, typename Body>
__device__ __forceinline__ void rs_run(int n, int nlast, bool active, RsSrc<R, TR, NV>& src, Body body) {
  using Grp = RsGrp<R, PE, G, NV>;
  if constexpr (ST) {
    static_assert(sizeof(TR) == sizeof(R), "staged groups: dt and delta of the state's real type");
    using Stage = RsStage<R, PE, G, NV>;
    Stage* ring = reinterpret_cast<Stage*>(LRNN_EVENT_DYN_SMEM) + (threadIdx.x / CW) * NS;
    const int c = static_cast<int>(threadIdx.x) % CW;
#pragma unroll
    for (int q = 0; q < NS - 1; ++q) {
      if (q * G < n) rs_stage_load(ring[q], src, q * G, n, nlast, active);
      copy_async_commit();
    }
    int slot = 0;
    for (int j0 = 0; j0 < n; j0 += G) {
      const int fill = slot == 0 ? NS - 1 : slot - 1;   // the stage the previous group used
      if (j0 + (NS - 1) * G < n) rs_stage_load(ring[fill], src, j0 + (NS - 1) * G, n, nlast, active);
      copy_async_commit();
      copy_async_wait_n<NS - 1>();
      Grp gr;
#pragma unroll
      for (int j = 0; j < G; ++j) {
        gr.tau[j] = ring[slot].tau[j][c];
        if constexpr (PE) gr.del[j] = ring[slot].del[j][c];
#pragma unroll
        for (int i = 0; i < NV; ++i) gr.x[i][j] = ring[slot].x[i][j][c];
      }
      body(gr, j0);
      slot = slot == NS - 1 ? 0 : slot + 1;
    }
    copy_async_wait();
  } else {
    rs_walk<Grp, G>(n, [&](Grp& gr, int j0) { rs_load(gr, src, j0, n, nlast, active); }, body);
  }
}
constexpr int RNS = 3;    // stages of the staged forward and backward reduce (three blocks per SM)
// stages of the staged backward apply: two blocks per SM (112 KB, or 96 KB with delta per event)
__host__ __device__ constexpr int rs_ns3(bool pe) { return pe ? 3 : 4; }

// The time index of the tile's first step and the direction of time along the scan.
struct RsTime {
  int64_t t0;
  int dir;
};
__device__ __forceinline__ RsTime rs_time(int64_t r0, int64_t L, bool flip) {
  RsTime s;
  s.t0 = flip ? L - 1 - r0 : r0;
  s.dir = flip ? -1 : 1;
  return s;
}

template <typename R, typename TR, int NV, typename Prm>
__device__ __forceinline__ RsSrc<R, TR, NV> rs_src(const Prm& p, const RsPos& s, const RsTime& tm) {
  RsSrc<R, TR, NV> src;
  src.dt = static_cast<const TR*>(p.dt) + s.t.b * p.dt_stride[0] + tm.t0 * p.dt_stride[1];
  src.del = static_cast<const TR*>(p.delta) + s.t.b * p.delta_stride[0] + tm.t0 * p.delta_stride[1] +
            s.t.d * p.delta_stride[2];
  src.ddt = tm.dir * p.dt_stride[1];
  src.ddel = tm.dir * p.delta_stride[1];
  return src;
}

// ---- forward ----

// Pass 1: the map of every tile from the zero state. GC: the input scale is the same for
// every step (shared delta, not ZOH) and multiplies the end state once.
template <typename R, typename TR, bool PE, bool GC, bool ST = false>
__global__ void __launch_bounds__(RNT, 3) event_rs_fwd_reduce(lrnn_event_scan_params p, int64_t T, void* wsv) {
  static_assert(!(PE && GC), "a per-event delta has no constant input scale");
  const RsLayout o = rs_layout<R>(p.batch, p.length, p.dim, T, false);
  const int64_t k = rs_tile(o, false);
  if (k < 0) return;
  const RsPos s = rs_pos(o, k, p.dim, p.length);
  const Chan<R> ch = chan<R, TR, PE>(p, s.t, false);
  const RsTime tm = rs_time(s.r0, p.length, p.reverse != 0);
  RsSrc<R, TR, 1> src = rs_src<R, TR, 1>(p, s, tm);
  src.x[0] = static_cast<const cx<R>*>(p.v) + s.t.b * p.v_stride[0] + tm.t0 * p.v_stride[1] + s.t.d * p.v_stride[2];
  src.dx[0] = tm.dir * p.v_stride[1];
  cx<R> A = mk(R(1), R(0)), X = mk(R(0), R(0));
  using Grp = RsGrp<R, PE, RG, 1>;
  rs_run<R, TR, PE, RG, 1, RNS, ST>(s.n, s.n, s.t.active, src, [&](const Grp& gr, int j0) {
#pragma unroll
    for (int j = 0; j < RG; ++j) {
      const R del = PE ? gr.del[PE ? j : 0] : ch.delc;
      const cx<R> a = cexp_(scale(del * gr.tau[j], ch.lam));
      cx<R> gv = gr.x[0][j];
      if (!GC) {
        cx<R> gs;
        input_scale<R>(p.disc, ch.lam, del, gr.tau[j], a, false, &gs, nullptr, nullptr);
        gv = mul(gs, gv);
      }
      X = add(mul(a, X), gv);
      A = mul(a, A);
    }
  });
  if (GC) X = mul(ch.gc, X);
  cx<R>* agg = reinterpret_cast<cx<R>*>(static_cast<unsigned char*>(wsv) + o.agg_off) + 2 * (k * CW + threadIdx.x % CW);
  agg[0] = A;
  agg[1] = X;
}

// Pass 2 (forward and backward): one block of CSW warps per chain; start is the chain's state
// before its first tile (h0 or grad_h_last, NULL for zero). In rounds of CSW*CSN tiles, warp w
// loads the maps of tiles w*CSN .. w*CSN+CSN-1 of the round (all loads in flight together),
// composes them, and after one barrier composes the carry and the maps of the warps before it
// into the state entering its first tile; it stores the state entering each of its tiles.
// Fixed order throughout: reproducible.
template <typename R>
__global__ void __launch_bounds__(CSW * CW) event_rs_carry(int64_t B, int64_t L, int64_t P, int64_t T, bool bwd,
                                                            const void* start, int64_t start_s0, int64_t start_s1,
                                                            void* wsv) {
  __shared__ cx<R> sA[CSW][CW], sX[CSW][CW];
  const RsLayout o = rs_layout<R>(B, L, P, T, bwd);
  const int c = static_cast<int>(threadIdx.x) % CW, w = static_cast<int>(threadIdx.x) / CW;
  const int64_t chain = blockIdx.x, b = chain / o.groups, d = (chain % o.groups) * CW + c;
  unsigned char* ws = static_cast<unsigned char*>(wsv);
  const cx<R>* agg = reinterpret_cast<const cx<R>*>(ws + o.agg_off);
  cx<R>* car = reinterpret_cast<cx<R>*>(ws + o.car_off);
  cx<R> carry = mk(R(0), R(0));
  if (start && d < P) carry = static_cast<const cx<R>*>(start)[b * start_s0 + d * start_s1];
  for (int64_t base = 0; base < o.ntt; base += CSW * CSN) {
    cx<R> A[CSN], X[CSN];
    cx<R> Aw = mk(R(1), R(0)), Xw = mk(R(0), R(0));
#pragma unroll
    for (int i = 0; i < CSN; ++i) {
      const int64_t tt = base + w * CSN + i;
      const bool on = tt < o.ntt;
      const int64_t j = ((chain * o.ntt + (on ? tt : 0)) * CW + c) * 2;
      A[i] = on ? agg[j] : mk(R(1), R(0));
      X[i] = on ? agg[j + 1] : mk(R(0), R(0));
    }
#pragma unroll
    for (int i = 0; i < CSN; ++i) {
      Xw = add(mul(A[i], Xw), X[i]);
      Aw = mul(A[i], Aw);
    }
    sA[w][c] = Aw;
    sX[w][c] = Xw;
    __syncthreads();
    cx<R> x = carry;
    for (int l = 0; l < w; ++l) x = add(mul(sA[l][c], x), sX[l][c]);
#pragma unroll
    for (int i = 0; i < CSN; ++i) {
      const int64_t tt = base + w * CSN + i;
      if (tt < o.ntt) car[(chain * o.ntt + tt) * CW + c] = x;
      x = add(mul(A[i], x), X[i]);
    }
    for (int l = 0; l < CSW; ++l) carry = add(mul(sA[l][c], carry), sX[l][c]);
    __syncthreads();   // sA/sX are rewritten by the next round
  }
}

// Pass 3: every tile from its entering state, writing h (and h_last from the chain's last
// tile: bitwise the last h).
template <typename R, typename TR, bool PE, bool GC, bool ST = false>
__global__ void __launch_bounds__(RNT, 3) event_rs_fwd_apply(lrnn_event_scan_params p, int64_t T, const void* wsv) {
  static_assert(!(PE && GC), "a per-event delta has no constant input scale");
  const RsLayout o = rs_layout<R>(p.batch, p.length, p.dim, T, false);
  const int64_t k = rs_tile(o, true);
  if (k < 0) return;
  const RsPos s = rs_pos(o, k, p.dim, p.length);
  const Chan<R> ch = chan<R, TR, PE>(p, s.t, false);
  const RsTime tm = rs_time(s.r0, p.length, p.reverse != 0);
  RsSrc<R, TR, 1> src = rs_src<R, TR, 1>(p, s, tm);
  src.x[0] = static_cast<const cx<R>*>(p.v) + s.t.b * p.v_stride[0] + tm.t0 * p.v_stride[1] + s.t.d * p.v_stride[2];
  src.dx[0] = tm.dir * p.v_stride[1];
  const unsigned char* ws = static_cast<const unsigned char*>(wsv);
  cx<R> x = reinterpret_cast<const cx<R>*>(ws + o.car_off)[k * CW + threadIdx.x % CW];
  cx<R>* h = static_cast<cx<R>*>(p.h) + s.t.b * p.h_stride[0] + tm.t0 * p.h_stride[1] + s.t.d * p.h_stride[2];
  const int64_t dh = tm.dir * p.h_stride[1];
  using Grp = RsGrp<R, PE, RG, 1>;
  rs_run<R, TR, PE, RG, 1, RNS, ST>(s.n, s.n, s.t.active, src, [&](const Grp& gr, int j0) {
#pragma unroll
    for (int j = 0; j < RG; ++j) {
      const R del = PE ? gr.del[PE ? j : 0] : ch.delc;
      const cx<R> a = cexp_(scale(del * gr.tau[j], ch.lam));
      cx<R> gs = ch.gc;
      if (!GC) input_scale<R>(p.disc, ch.lam, del, gr.tau[j], a, false, &gs, nullptr, nullptr);
      x = add(mul(a, x), mul(gs, gr.x[0][j]));
      if (s.t.active && j0 + j < s.n) *h = x;
      h += dh;
    }
  });
  if (s.t.active && s.t.tt == o.ntt - 1)
    static_cast<cx<R>*>(p.h_last)[s.t.b * p.h_last_stride[0] + s.t.d * p.h_last_stride[1]] = x;
}

// ---- backward ----
// The adjoint c -> conj(a) * (grad_h + c) in reverse step order, tiles as in the forward.

// Pass 1: the adjoint map of every tile from zero (reads grad_h and dt only).
template <typename R, typename TR, bool PE, bool ST = false>
__global__ void __launch_bounds__(RNT, 3) event_rs_bwd_reduce(lrnn_event_scan_bwd_params p, int64_t T, void* wsv) {
  const RsLayout o = rs_layout<R>(p.batch, p.length, p.dim, T, true);
  const int64_t k = rs_tile(o, false);
  if (k < 0) return;
  const RsPos s = rs_pos(o, k, p.dim, p.length);
  const Chan<R> ch = chan<R, TR, PE>(p, s.t, false);
  const RsTime tm = rs_time(s.r0, p.length, p.reverse == 0);
  RsSrc<R, TR, 1> src = rs_src<R, TR, 1>(p, s, tm);
  src.x[0] = static_cast<const cx<R>*>(p.grad_h) + s.t.b * p.grad_h_stride[0] + tm.t0 * p.grad_h_stride[1] +
             s.t.d * p.grad_h_stride[2];
  src.dx[0] = tm.dir * p.grad_h_stride[1];
  cx<R> A = mk(R(1), R(0)), X = mk(R(0), R(0));
  using Grp = RsGrp<R, PE, RG, 1>;
  rs_run<R, TR, PE, RG, 1, RNS, ST>(s.n, s.n, s.t.active, src, [&](const Grp& gr, int j0) {
#pragma unroll
    for (int j = 0; j < RG; ++j) {
      const R del = PE ? gr.del[PE ? j : 0] : ch.delc;
      const cx<R> a = cexp_(scale(del * gr.tau[j], ch.lam));
      X = mulc(a, add(X, gr.x[0][j]));
      A = mulc(a, A);
    }
  });
  cx<R>* agg = reinterpret_cast<cx<R>*>(static_cast<unsigned char*>(wsv) + o.agg_off) + 2 * (k * CW + threadIdx.x % CW);
  agg[0] = A;
  agg[1] = X;
}

// Pass 3: every tile from its entering adjoint state: dv (and ddelta per event) per step, the
// tile's dLambda (and shared-delta ddelta) partials to the workspace, dh0 from the chain's last
// tile. Arrays per step: grad_h, v, and h at the time before the step in scan order (h0 at the
// scan's first step).
template <typename R, typename TR, bool PE, bool GC, bool ST = false>
__global__ void __launch_bounds__(RNT, 2) event_rs_bwd_apply(lrnn_event_scan_bwd_params p, int64_t T, void* wsv) {
  static_assert(!(PE && GC), "a per-event delta has no constant input scale");
  const RsLayout o = rs_layout<R>(p.batch, p.length, p.dim, T, true);
  const int64_t k = rs_tile(o, true);
  if (k < 0) return;
  const int64_t L = p.length;
  const RsPos s = rs_pos(o, k, p.dim, L);
  const Chan<R> ch = chan<R, TR, PE>(p, s.t, true);
  const RsTime tm = rs_time(s.r0, L, p.reverse == 0);
  const cx<R> zero = mk(R(0), R(0));
  RsSrc<R, TR, 3> src = rs_src<R, TR, 3>(p, s, tm);
  src.x[0] = static_cast<const cx<R>*>(p.grad_h) + s.t.b * p.grad_h_stride[0] + tm.t0 * p.grad_h_stride[1] +
             s.t.d * p.grad_h_stride[2];
  src.dx[0] = tm.dir * p.grad_h_stride[1];
  src.x[1] = static_cast<const cx<R>*>(p.v) + s.t.b * p.v_stride[0] + tm.t0 * p.v_stride[1] + s.t.d * p.v_stride[2];
  src.dx[1] = tm.dir * p.v_stride[1];
  // h one time index against the scan direction; the scan's first step (r = L-1) is not loaded
  // from h but takes h0: the tile that holds it walks one step less of h.
  src.x[2] = static_cast<const cx<R>*>(p.h) + s.t.b * p.h_stride[0] + (tm.t0 + tm.dir) * p.h_stride[1] +
             s.t.d * p.h_stride[2];
  src.dx[2] = tm.dir * p.h_stride[1];
  const int nh = s.r0 + s.n >= L ? s.n - 1 : s.n;   // steps whose h[t-1] is in h
  const cx<R> h0 = s.t.active && p.h0 ? static_cast<const cx<R>*>(p.h0)[s.t.b * p.h0_stride[0] + s.t.d * p.h0_stride[1]] : zero;
  unsigned char* ws = static_cast<unsigned char*>(wsv);
  cx<R> carry = reinterpret_cast<const cx<R>*>(ws + o.car_off)[k * CW + threadIdx.x % CW];
  cx<R>* dv = static_cast<cx<R>*>(p.dv) + s.t.b * p.dv_stride[0] + tm.t0 * p.dv_stride[1] + s.t.d * p.dv_stride[2];
  const int64_t dd_t = PE ? p.ddelta_stride[1] : 0, ddv = tm.dir * p.dv_stride[1], ddd = tm.dir * dd_t;
  R* ddelta = static_cast<R*>(p.ddelta) + s.t.b * p.ddelta_stride[0] + tm.t0 * dd_t + s.t.d * p.ddelta_stride[2];
  cx<R> dl = zero, gsum = zero;
  R dd_sum = 0;
  using Grp = RsGrp<R, PE, RG3, 3>;
  rs_run<R, TR, PE, RG3, 3, rs_ns3(PE), ST>(s.n, nh, s.t.active, src, [&](const Grp& gr, int j0) {
#pragma unroll
    for (int j = 0; j < RG3; ++j) {
      const int jj = j0 + j;
      const R del = PE ? gr.del[PE ? j : 0] : ch.delc, tau = gr.tau[j], sdt = del * tau;
      const cx<R> a = cexp_(scale(sdt, ch.lam));
      const cx<R> lt = add(gr.x[0][j], carry);
      // the scan's first step takes h0 (the loader left it zero)
      const cx<R> hj = jj < nh ? gr.x[2][j] : (s.t.active && jj < s.n ? h0 : zero);
      const cx<R> ga = mulc(hj, lt), gv = mulc(gr.x[1][j], lt);
      dl = add(dl, scale(sdt, mulc(a, ga)));
      R dd = tau * dotr(mul(ch.lam, a), ga);
      cx<R> gs = ch.gc;
      if (GC) {
        gsum = add(gsum, gv);
      } else {
        cx<R> dgl, dgd;
        input_scale<R>(p.disc, ch.lam, del, tau, a, true, &gs, &dgl, &dgd);
        dl = add(dl, mulc(dgl, gv));
        dd += dotr(dgd, gv);
      }
      if (s.t.active && jj < s.n) {
        *dv = mulc(gs, lt);
        if (PE) *ddelta = dd;
      }
      dv += ddv;
      ddelta += ddd;
      dd_sum += dd;
      carry = mulc(a, lt);
    }
  });
  if (GC) {
    dl = add(dl, mulc(ch.dglc, gsum));
    dd_sum += dotr(ch.dgdc, gsum);
  }
  const int c = static_cast<int>(threadIdx.x) % CW;
  reinterpret_cast<cx<R>*>(ws + o.pl_off)[k * CW + c] = dl;
  reinterpret_cast<R*>(ws + o.pd_off)[k * CW + c] = dd_sum;
  if (s.t.active && s.t.tt == o.ntt - 1)
    static_cast<cx<R>*>(p.dh0)[s.t.b * p.dh0_stride[0] + s.t.d * p.dh0_stride[1]] = carry;
}

// dLambda (B, P) and, with a shared delta, ddelta (B, P) from the apply pass's tile partials:
// as event_bwd_reduce_kernel, over the tiles of the three-pass layout.
template <typename R>
__global__ void __launch_bounds__(CW * RL) event_rs_bwd_sum(lrnn_event_scan_bwd_params p, int64_t T, const void* wsv) {
  __shared__ cx<R> sl[RL][CW];
  __shared__ R sd[RL][CW];
  const unsigned char* ws = static_cast<const unsigned char*>(wsv);
  const RsLayout o = rs_layout<R>(p.batch, p.length, p.dim, T, true);
  const int c = static_cast<int>(threadIdx.x) % CW, q = static_cast<int>(threadIdx.x) / CW;
  const int64_t chain = blockIdx.x, b = chain / o.groups, d = (chain % o.groups) * CW + c;
  const cx<R>* pl = reinterpret_cast<const cx<R>*>(ws + o.pl_off);
  const R* pd = reinterpret_cast<const R*>(ws + o.pd_off);
  cx<R> tl = mk(R(0), R(0));
  R td = 0;
#pragma unroll 4
  for (int64_t tt = q; tt < o.ntt; tt += RL) {
    const int64_t j = (chain * o.ntt + tt) * CW + c;
    tl = add(tl, pl[j]);
    td += pd[j];
  }
  sl[q][c] = tl;
  sd[q][c] = td;
  __syncthreads();
  if (q == 0 && d < p.dim) {
    tl = mk(R(0), R(0));
    td = 0;
    for (int l = 0; l < RL; ++l) {
      tl = add(tl, sl[l][c]);
      td += sd[l][c];
    }
    static_cast<cx<R>*>(p.dlambda)[b * p.dlambda_stride[0] + d * p.dlambda_stride[1]] = tl;
    if (p.delta_stride[1] == 0) static_cast<R*>(p.ddelta)[b * p.ddelta_stride[0] + d * p.ddelta_stride[2]] = td;
  }
}

}  // namespace lrnn_event_cuda
