/* event_scan_kernels.cuh: the device code of the CUDA event scan (lrnn/event_scan.h), included
 * by event_scan.cu (which launches it) and by tests/c/test_event_scan_cuda_emulated.cpp (which
 * runs these very kernels on CPU threads, so their logic is tested on machines without a GPU).
 * It uses only CUDA built-ins (threadIdx, __shared__, __syncthreads, __syncwarp, __threadfence,
 * atomicAdd, __ldcg, math functions).
 *
 * One pass over memory. The B*P independent channels are cut into chains of CW = 32 channels of
 * one batch row (a warp reads 32 adjacent complex values per time step: 256 contiguous bytes),
 * and each chain's time axis into tiles of T = NL*S steps. A block of NL*CW threads owns one
 * tile at a time: thread (lane q, channel c) holds S consecutive steps of channel c in
 * registers, composes them into one affine map x -> A*x + X, and warp 0 composes the NL lane
 * maps in order into the tile's aggregate. The state entering a tile comes from the tiles
 * before it in its chain through a deterministic windowed look-back: every tile publishes its
 * aggregate as soon as its inputs are loaded (flag 1) and its inclusive end state once known
 * (flag 2), and tile number m of a chain starts from the inclusive state of tile m-W followed by
 * the aggregates of tiles m-W+1 .. m-1, always in that order. So the dependency chain is L/(T*W)
 * hops long, the result never depends on timing (bitwise reproducible), and the inputs are read
 * from HBM exactly once. Blocks are persistent and take tile numbers from an atomic counter in
 * increasing order, chain-fastest: a tile only ever waits for tiles numbered before it, which
 * were handed to running blocks earlier, so the waits cannot deadlock whatever the grid size.
 * In the forward each block loads its next tile's inputs before doing the current tile's math
 * and waits (the backward, with three input arrays, relies on two resident blocks instead).
 *
 * Transitions exp(Lambda*delta*dt) and input scales are computed in registers, never stored.
 * The backward runs the adjoint c -> conj(a)*(grad_h + c) the same way in reverse step order;
 * per tile it writes dv (and ddelta per event) directly and its dLambda (and shared-delta
 * ddelta) partials, summed over the tile's lanes in a fixed order, to the workspace; a second
 * kernel sums those partials over the tiles of each channel in a fixed order (no atomics). */
#pragma once

#include <stdint.h>

#include "lrnn/event_scan.h"

namespace lrnn_event_cuda {

// Channels per chain (one warp across channels), time lanes per block, look-back window. W sets
// the chain's speed: W tiles advance per hop (~1-2 us: poll, L2 load, publish), so with T = 64
// and 32 chains W = 16 moves ~5 TB/s worth of v, above HBM speed; each tile reads W-1 aggregates
// (16 bytes per channel each) from L2 for it.
constexpr int CW = 32;
constexpr int NL = 8;
constexpr int NT = CW * NL;
constexpr int W = 16;
// Steps per thread: 8 complex64 (64 bytes of v in flight per thread, 16 KB per tile), 4 for
// complex128 so that the double path (gradcheck, tests) keeps the same register budget.
template <typename R>
__host__ __device__ constexpr int steps() { return sizeof(R) == 4 ? 8 : 4; }

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

__device__ __forceinline__ int64_t step_time(int64_t s, int64_t L, int reverse) { return reverse ? L - 1 - s : s; }

// ---------------- workspace ----------------
// [counter: u32][flags: u32 per tile] (zeroed by the launcher before each kernel), then per tile
// and channel: the aggregate (A, X), the inclusive end state, and (backward) the gradient
// partials (dLambda complex, ddelta real).
struct Layout {
  int64_t groups, chains, ntt, tiles;
  int64_t zero_bytes, agg_off, inc_off, pl_off, pd_off, bytes;
};
template <typename R>
__host__ __device__ inline Layout layout(int64_t B, int64_t L, int64_t P, bool bwd) {
  Layout o;
  const int64_t T = NL * steps<R>();
  o.groups = (P + CW - 1) / CW;
  o.chains = B * o.groups;
  o.ntt = L > 0 ? (L + T - 1) / T : 1;   // L = 0: one padding tile still writes h_last / dh0
  o.tiles = o.chains * o.ntt;
  o.zero_bytes = 4 * (1 + o.tiles);
  const int64_t per = o.tiles * CW * static_cast<int64_t>(sizeof(cx<R>));
  o.agg_off = (o.zero_bytes + 255) / 256 * 256;
  o.inc_off = o.agg_off + 2 * per;
  o.pl_off = o.inc_off + per;
  o.pd_off = o.pl_off + (bwd ? per : 0);
  o.bytes = o.pd_off + (bwd ? o.tiles * CW * static_cast<int64_t>(sizeof(R)) : 0);
  return o;
}

template <typename R>
__device__ __forceinline__ cx<R> ld_cg(const cx<R>* p) { return mk(__ldcg(&p->re), __ldcg(&p->im)); }

// The tile's place: chain (batch row b, channel d of this thread) and time tile tt.
struct TilePos {
  int64_t tt, b, d;
  bool active;
};
__device__ __forceinline__ TilePos tile_pos(const Layout& o, int64_t k, int64_t P) {
  TilePos t;
  const int64_t chain = k % o.chains;
  t.tt = k / o.chains;
  t.b = chain / o.groups;
  t.d = (chain % o.groups) * CW + static_cast<int>(threadIdx.x) % CW;
  t.active = t.d < P;
  return t;
}

// Warp 0, after the lane maps of tile k are in sA/sX: composes them into the tile aggregate and
// publishes it; composes the aggregates of the W-1 tiles before it (lane c polls predecessor
// c+1, so all polls and loads are in flight together) while tile k-W may still be running;
// then applies that map to the inclusive state of tile k-W (start: x0 of the chain), writes
// every lane's entering state to sE, publishes the tile's inclusive state and returns it. Only
// the last step waits on the chain, so a hop of it costs one flag poll, one load and the
// publication: about L/(T*W) hops per chain.
template <typename R>
__device__ __forceinline__ cx<R> chain_tile(const Layout& o, unsigned char* ws, int64_t k, int64_t tt,
                                            cx<R> start, cx<R> (*sA)[CW], cx<R> (*sX)[CW], cx<R> (*sE)[CW]) {
  static_assert(W >= 2 && W <= CW + 1, "one polling lane per aggregate of the window");
  const int c = static_cast<int>(threadIdx.x);
  unsigned* flags = reinterpret_cast<unsigned*>(ws) + 1;
  cx<R>* agg = reinterpret_cast<cx<R>*>(ws + o.agg_off);
  cx<R>* inc = reinterpret_cast<cx<R>*>(ws + o.inc_off);
  cx<R> A = mk(R(1), R(0)), X = mk(R(0), R(0));
  for (int l = 0; l < NL; ++l) {
    X = add(mul(sA[l][c], X), sX[l][c]);
    A = mul(sA[l][c], A);
  }
  // Publication as in cooperative groups' grid barrier: the warp's stores, a warp barrier, then
  // one lane's fence (cumulative over the stores it synchronized with) and the flag.
  agg[(k * CW + c) * 2] = A;
  agg[(k * CW + c) * 2 + 1] = X;
  __syncwarp();
  if (c == 0) {
    __threadfence();
    *reinterpret_cast<volatile unsigned*>(flags + k) = 1u;
  }
  // the map of tiles k-nagg .. k-1, applied in that order
  const int nagg = static_cast<int>(tt < W ? tt : W - 1);
  if (c < nagg) {   // the observing lane fences, then the warp barrier passes it on
    const volatile unsigned* f = flags + (k - (c + 1) * o.chains);
    while (*f < 1u) {
    }
    __threadfence();
  }
  __syncwarp();
  cx<R> GA = mk(R(1), R(0)), GX = mk(R(0), R(0));
  for (int m = nagg; m >= 1; --m) {
    const int64_t j = (k - m * o.chains) * CW + c;
    const cx<R> a = ld_cg(agg + 2 * j);
    GX = add(mul(a, GX), ld_cg(agg + 2 * j + 1));
    GA = mul(a, GA);
  }
  cx<R> x = start;
  if (tt >= W) {
    if (c == 0) {
      const volatile unsigned* f = flags + (k - W * o.chains);
      while (*f < 2u) {
      }
      __threadfence();
    }
    __syncwarp();
    x = ld_cg(inc + (k - W * o.chains) * CW + c);
  }
  x = add(mul(GA, x), GX);
  for (int l = 0; l < NL; ++l) {
    sE[l][c] = x;
    x = add(mul(sA[l][c], x), sX[l][c]);
  }
  inc[k * CW + c] = x;
  __syncwarp();
  if (c == 0) {
    __threadfence();
    *reinterpret_cast<volatile unsigned*>(flags + k) = 2u;
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
template <typename R, typename TR, typename P>
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
    if (p.delta_stride[1] == 0) {
      ch.delc = load_real<R>(static_cast<const TR*>(p.delta), t.b * p.delta_stride[0] + t.d * p.delta_stride[2]);
      input_scale<R>(p.disc, ch.lam, ch.delc, R(0), mk(R(1), R(0)), grad, &ch.gc, &ch.dglc, &ch.dgdc);
    }
  }
  return ch;
}

// The inputs of one tile that the aggregate needs, prefetched one tile ahead. Steps past the end
// (and channels past P) load dt = 0 and zero inputs: identity steps.
template <typename R>
struct StepIn {
  cx<R> v[steps<R>()];
  R tau[steps<R>()], del[steps<R>()];
};

// Scan step s of thread lane q in tile tt; forward steps run s ascending, backward steps
// descending (r = L-1-s ascending), so both kernels walk lanes and steps in increasing order.
__device__ __forceinline__ int64_t tile_step(int64_t tt, int j, int S, int64_t L, bool bwd) {
  const int64_t r = tt * NL * S + static_cast<int64_t>(threadIdx.x / CW) * S + j;
  return bwd ? L - 1 - r : r;
}

template <typename R, typename TR, typename P>
__device__ __forceinline__ void load_in(const P& p, const Layout& o, int64_t k, StepIn<R>& in, const cx<R>* src,
                                        const int64_t* src_stride, bool bwd) {
  constexpr int S = steps<R>();
  if (k >= o.tiles) return;
  const TilePos t = tile_pos(o, k, p.dim);
  const TR* dt = static_cast<const TR*>(p.dt) + t.b * p.dt_stride[0];
  const TR* delta = static_cast<const TR*>(p.delta);
  const bool per_event = p.delta_stride[1] != 0;
#pragma unroll
  for (int j = 0; j < S; ++j) {
    const int64_t s = tile_step(t.tt, j, S, p.length, bwd);
    in.v[j] = mk(R(0), R(0));
    in.tau[j] = 0;
    in.del[j] = 0;
    if (t.active && s >= 0 && s < p.length) {
      const int64_t tm = step_time(s, p.length, p.reverse);
      in.tau[j] = load_real<R>(dt, tm * p.dt_stride[1]);
      if (per_event) in.del[j] = load_real<R>(delta, t.b * p.delta_stride[0] + tm * p.delta_stride[1] + t.d * p.delta_stride[2]);
      in.v[j] = src[t.b * src_stride[0] + tm * src_stride[1] + t.d * src_stride[2]];
    }
  }
}

// ---------------- forward ----------------

template <typename R, typename TR>
__device__ __forceinline__ void fwd_tile(const lrnn_event_scan_params& p, const Layout& o, unsigned char* ws, int64_t k,
                                         StepIn<R>& in, cx<R> (*sA)[CW], cx<R> (*sX)[CW], cx<R> (*sE)[CW]) {
  constexpr int S = steps<R>();
  const TilePos t = tile_pos(o, k, p.dim);
  const Chan<R> ch = chan<R, TR>(p, t, false);
  const bool per_event = p.delta_stride[1] != 0, g_const = !per_event && p.disc != LRNN_DISC_ZOH;
  cx<R> a[S];
  cx<R> A = mk(R(1), R(0)), X = mk(R(0), R(0));
#pragma unroll
  for (int j = 0; j < S; ++j) {
    const R del = per_event ? in.del[j] : ch.delc;
    a[j] = cexp_(scale(del * in.tau[j], ch.lam));
    cx<R> g = ch.gc;
    if (!g_const) input_scale<R>(p.disc, ch.lam, del, in.tau[j], a[j], false, &g, nullptr, nullptr);
    in.v[j] = mul(g, in.v[j]);   // from here on v holds g*v
    X = add(mul(a[j], X), in.v[j]);
    A = mul(a[j], A);
  }
  const int c = static_cast<int>(threadIdx.x) % CW, q = static_cast<int>(threadIdx.x) / CW;
  sA[q][c] = A;
  sX[q][c] = X;
  __syncthreads();
  if (q == 0) {
    cx<R> start = mk(R(0), R(0));
    if (t.active && p.h0) start = static_cast<const cx<R>*>(p.h0)[t.b * p.h0_stride[0] + t.d * p.h0_stride[1]];
    const cx<R> last = chain_tile<R>(o, ws, k, t.tt, start, sA, sX, sE);
    if (t.active && t.tt == o.ntt - 1)
      static_cast<cx<R>*>(p.h_last)[t.b * p.h_last_stride[0] + t.d * p.h_last_stride[1]] = last;
  }
  __syncthreads();
  cx<R> x = sE[q][c];
  cx<R>* h = static_cast<cx<R>*>(p.h) + t.b * p.h_stride[0] + t.d * p.h_stride[2];
#pragma unroll
  for (int j = 0; j < S; ++j) {
    x = add(mul(a[j], x), in.v[j]);
    const int64_t s = tile_step(t.tt, j, S, p.length, false);
    if (t.active && s < p.length) h[step_time(s, p.length, p.reverse) * p.h_stride[1]] = x;
  }
}

// Persistent blocks of NT threads; ws is the workspace of layout<R>(.., false) with its counter
// and flags zeroed. Tile numbers come three ahead in s_ids (written by thread 0 before a
// barrier of the current tile, read after it).
template <typename R, typename TR>
__global__ void __launch_bounds__(NT, 2) event_fwd_kernel(lrnn_event_scan_params p, void* wsv) {
  __shared__ cx<R> sA[NL][CW], sX[NL][CW], sE[NL][CW];
  __shared__ unsigned s_ids[3];
  unsigned char* ws = static_cast<unsigned char*>(wsv);
  unsigned* counter = reinterpret_cast<unsigned*>(ws);
  const Layout o = layout<R>(p.batch, p.length, p.dim, false);
  const cx<R>* v = static_cast<const cx<R>*>(p.v);
  if (threadIdx.x == 0) {
    s_ids[0] = atomicAdd(counter, 1u);
    s_ids[1] = atomicAdd(counter, 1u);
  }
  __syncthreads();
  int64_t cur = s_ids[0], nxt = s_ids[1];
  StepIn<R> in0, in1;
  load_in<R, TR>(p, o, cur, in0, v, p.v_stride, false);
  for (int it = 0; cur < o.tiles;) {
    load_in<R, TR>(p, o, nxt, in1, v, p.v_stride, false);
    if (threadIdx.x == 0) s_ids[(it + 2) % 3] = atomicAdd(counter, 1u);
    fwd_tile<R, TR>(p, o, ws, cur, in0, sA, sX, sE);
    cur = nxt;
    nxt = s_ids[(it + 2) % 3];
    ++it;
    if (cur >= o.tiles) break;
    load_in<R, TR>(p, o, nxt, in0, v, p.v_stride, false);
    if (threadIdx.x == 0) s_ids[(it + 2) % 3] = atomicAdd(counter, 1u);
    fwd_tile<R, TR>(p, o, ws, cur, in1, sA, sX, sE);
    cur = nxt;
    nxt = s_ids[(it + 2) % 3];
    ++it;
  }
}

// ---------------- backward ----------------
// A tile reads three complex arrays (grad_h, v, h[t-1]): all of them are loaded at the start of
// the tile (48 KB per block in flight), and there is no prefetch of the next tile, which would
// not fit in the register budget of two resident blocks per SM; the other resident block
// streams while one waits.

// GC: the input scale is the same for every step (shared delta, not ZOH): the per-step gradient
// loop then has no input-scale derivatives, and its own instantiation keeps it free of spills.
template <typename R, typename TR, bool GC>
__device__ __forceinline__ void bwd_tile(const lrnn_event_scan_bwd_params& p, const Layout& o, unsigned char* ws,
                                         int64_t k, cx<R> (*sA)[CW], cx<R> (*sX)[CW],
                                         cx<R> (*sE)[CW], cx<R> (*sL)[CW], R (*sD)[CW]) {
  constexpr int S = steps<R>();
  const TilePos t = tile_pos(o, k, p.dim);
  const Chan<R> ch = chan<R, TR>(p, t, true);
  const bool per_event = p.delta_stride[1] != 0;
  const cx<R> zero = mk(R(0), R(0));
  const int64_t L = p.length;
  StepIn<R> in;   // in.v holds grad_h: what the adjoint's aggregate needs
  load_in<R, TR>(p, o, k, in, static_cast<const cx<R>*>(p.grad_h), p.grad_h_stride, true);
  cx<R> vv[S], hp[S];
  const cx<R>* v = static_cast<const cx<R>*>(p.v) + t.b * p.v_stride[0] + t.d * p.v_stride[2];
  const cx<R>* h = static_cast<const cx<R>*>(p.h) + t.b * p.h_stride[0] + t.d * p.h_stride[2];
  const cx<R> h0 = t.active && p.h0 ? static_cast<const cx<R>*>(p.h0)[t.b * p.h0_stride[0] + t.d * p.h0_stride[1]] : zero;
#pragma unroll
  for (int j = 0; j < S; ++j) {
    const int64_t s = tile_step(t.tt, j, S, L, true);
    vv[j] = zero;
    hp[j] = zero;
    if (t.active && s >= 0) {
      vv[j] = v[step_time(s, L, p.reverse) * p.v_stride[1]];
      hp[j] = s > 0 ? h[step_time(s - 1, L, p.reverse) * p.h_stride[1]] : h0;   // the state before step s
    }
  }
  cx<R> a[S];
  cx<R> A = mk(R(1), R(0)), X = zero;
#pragma unroll
  for (int j = 0; j < S; ++j) {
    a[j] = cexp_(scale((per_event ? in.del[j] : ch.delc) * in.tau[j], ch.lam));
    X = mulc(a[j], add(X, in.v[j]));   // c -> conj(a) * (grad_h + c)
    A = mulc(a[j], A);
  }
  const int c = static_cast<int>(threadIdx.x) % CW, q = static_cast<int>(threadIdx.x) / CW;
  sA[q][c] = A;
  sX[q][c] = X;
  __syncthreads();
  if (q == 0) {
    cx<R> start = zero;
    if (t.active && p.grad_h_last)
      start = static_cast<const cx<R>*>(p.grad_h_last)[t.b * p.grad_h_last_stride[0] + t.d * p.grad_h_last_stride[1]];
    const cx<R> last = chain_tile<R>(o, ws, k, t.tt, start, sA, sX, sE);
    if (t.active && t.tt == o.ntt - 1)
      static_cast<cx<R>*>(p.dh0)[t.b * p.dh0_stride[0] + t.d * p.dh0_stride[1]] = last;
  }
  __syncthreads();
  cx<R> carry = sE[q][c], dl = zero, gsum = zero;
  R dd_sum = 0;
  cx<R>* dv = static_cast<cx<R>*>(p.dv) + t.b * p.dv_stride[0] + t.d * p.dv_stride[2];
  R* ddelta = static_cast<R*>(p.ddelta) + t.b * p.ddelta_stride[0] + t.d * p.ddelta_stride[2];
#pragma unroll
  for (int j = 0; j < S; ++j) {
    const int64_t s = tile_step(t.tt, j, S, L, true);
    const R del = per_event ? in.del[j] : ch.delc, sdt = del * in.tau[j];
    const cx<R> lt = add(in.v[j], carry);
    const cx<R> ga = mulc(hp[j], lt), gv = mulc(vv[j], lt);
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
    if (t.active && s >= 0) {
      const int64_t tm = step_time(s, L, p.reverse);
      dv[tm * p.dv_stride[1]] = mulc(g, lt);
      if (per_event) ddelta[tm * p.ddelta_stride[1]] = dd;
    }
    dd_sum += dd;
    carry = mulc(a[j], lt);
  }
  if (GC) {
    dl = add(dl, mulc(ch.dglc, gsum));
    dd_sum += dotr(ch.dgdc, gsum);
  }
  sL[q][c] = dl;
  sD[q][c] = dd_sum;
  __syncthreads();
  if (q == 0) {   // the tile's partials, lanes summed in order
    cx<R> tl = zero;
    R td = 0;
    for (int l = 0; l < NL; ++l) {
      tl = add(tl, sL[l][c]);
      td += sD[l][c];
    }
    reinterpret_cast<cx<R>*>(ws + o.pl_off)[k * CW + c] = tl;
    reinterpret_cast<R*>(ws + o.pd_off)[k * CW + c] = td;
  }
}

// GC must be true exactly when delta is shared over time and the discretization is not ZOH.
template <typename R, typename TR, bool GC>
__global__ void __launch_bounds__(NT, 2) event_bwd_kernel(lrnn_event_scan_bwd_params p, void* wsv) {
  __shared__ cx<R> sA[NL][CW], sX[NL][CW], sE[NL][CW], sL[NL][CW];
  __shared__ R sD[NL][CW];
  __shared__ unsigned s_ids[2];
  unsigned char* ws = static_cast<unsigned char*>(wsv);
  unsigned* counter = reinterpret_cast<unsigned*>(ws);
  const Layout o = layout<R>(p.batch, p.length, p.dim, true);
  if (threadIdx.x == 0) s_ids[0] = atomicAdd(counter, 1u);
  __syncthreads();
  // the next tile number is taken during the current tile (before its first barrier)
  for (int64_t cur = s_ids[0], it = 0; cur < o.tiles; ++it) {
    if (threadIdx.x == 0) s_ids[(it + 1) & 1] = atomicAdd(counter, 1u);
    bwd_tile<R, TR, GC>(p, o, ws, cur, sA, sX, sE, sL, sD);
    cur = s_ids[(it + 1) & 1];
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

}  // namespace lrnn_event_cuda
