/* event_scan_kernels.cuh: the device code of the CUDA event scan (lrnn/event_scan.h), included
 * by event_scan.cu (which launches it) and by tests/c/test_event_scan_cuda_emulated.cpp (which
 * runs these very kernels on CPU threads, so their logic is tested on machines without a GPU).
 * It uses only CUDA built-ins (threadIdx, blockIdx, __shared__, __syncthreads, math functions)
 * and, on the device, griddepcontrol (inline PTX, a no-op in the emulation).
 *
 * The B*P independent channels are cut into chains of CW = 32 channels of one batch row (a warp
 * reads 32 adjacent complex values per time step: 256 contiguous bytes), and each chain's time
 * axis into tiles of T steps. The scan runs in three launches (reduce, carry, apply; see the
 * section below), so that no tile ever waits for another. On the H200 at (8, 65536, 128), async
 * with a shared delta, this took the forward from 0.656 ms (a one-pass decoupled look-back over
 * tiles, which reads every input once but was bound by its chain of L2 round trips) to 0.431 ms
 * and the backward from 1.10 to 0.68 ms; with a per-event delta and ZOH from 1.11 / 3.50 to
 * 0.90 / 1.21 ms (device time per call). Variants that measured slower and were dropped: groups
 * staged in a shared-memory ring by cp.async (0.85 / 1.06 ms), L2 prefetches two groups ahead
 * (0.50 / 0.69 ms).
 *
 * Transitions exp(Lambda*delta*dt) and input scales are computed in registers, never stored.
 * The backward runs the adjoint c -> conj(a)*(grad_h + c) the same way in reverse step order;
 * per tile it writes dv (and ddelta per event) directly and its dLambda (and shared-delta
 * ddelta) partials to the workspace; a last kernel sums those partials over the tiles of each
 * channel in a fixed order (no atomics: results are bitwise reproducible). */
#pragma once

#include <stdint.h>
#include <string.h>

#include "lrnn/event_scan.h"

namespace lrnn_event_cuda {

// Channels per chain (one warp across channels).
constexpr int CW = 32;

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

// A tile's place: batch row b and channel d of this thread, time tile tt.
struct TilePos {
  int tt, b, d;   // products with the (64-bit) strides are 64-bit
  bool active;
};

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
// Lanes per channel of the partial sums (event_rs_bwd_sum).
constexpr int RL = 16;

// ---------------- the three-pass scan ----------------
// A warp owns one tile of one chain (its 32 lanes are the chain's 32 channels; it walks the
// tile's T steps in order, one step per iteration, so no intra-tile scan exists), and the scan
// runs in three launches:
//   1. reduce: every tile's affine map (A, X) from the zero state (A the transition over the
//      whole tile, X its end state), reading the scan input once;
//   2. carry: one block per chain composes the maps of its tiles in order, from the chain's start
//      state, and stores the state entering every tile (a few KB per chain);
//   3. apply: every tile re-walks its steps from that state and writes the outputs.
// The scan input is read twice (1.5x the forward's bytes, 1.25x the backward's). The apply pass
// takes tiles in the opposite order of the reduce pass, so its first tiles' inputs are the last
// ones read and may still sit in L2. Loads are issued a group of steps ahead into registers
// (two groups rotate), so every warp keeps one group of steps (2 KB per array) in flight while
// it computes. The carry and apply kernels (and the backward's sums) may be launched as
// programmatic dependents (PDL): they wait for the previous grid first thing.

constexpr int RW = 8;          // warps (tiles) per block of the reduce and apply kernels
constexpr int RNT = RW * CW;
constexpr int RG = 8;          // steps per load group: forward, and the backward's reduce
constexpr int RG3 = 4;         // steps per load group of the backward's apply (three arrays)
constexpr int CSW = 32;        // warps of a carry block
constexpr int CSN = 8;         // tiles per warp and round of the carry block (registers)

// Waits until the grid launched before this one on the stream has finished and its writes are
// visible (griddepcontrol.wait; immediate when the launch was not a programmatic dependent).
__device__ __forceinline__ void wait_prior_grid() {
#ifdef __CUDA_ARCH__
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

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

// The exponent of a step is s * z with z per channel (Lambda*delta with a shared delta, s = dt;
// Lambda with a delta per event, s = delta*dt), its real part kept in log2 units for exp2 in
// float (one multiply less per step).
template <typename R>
struct Zc {
  R re2, im;
};
__device__ __forceinline__ Zc<float> zc_of(cx<float> z) { return Zc<float>{z.re * 1.4426950408889634f, z.im}; }
__device__ __forceinline__ Zc<double> zc_of(cx<double> z) { return Zc<double>{z.re, z.im}; }
__device__ __forceinline__ cx<float> cexp_s(float s, Zc<float> z) {
  float sn, c;
  sincos_reduced(s * z.im, &sn, &c);
  const float e = exp2f(s * z.re2);
  return mk(e * c, e * sn);
}
__device__ __forceinline__ cx<double> cexp_s(double s, Zc<double> z) {
  double sn, c;
  sincos(s * z.im, &sn, &c);
  const double e = exp(s * z.re2);
  return mk(e * c, e * sn);
}
template <typename R, bool PE>
__device__ __forceinline__ Zc<R> zc_chan(const Chan<R>& ch) {
  return zc_of(PE ? ch.lam : scale(ch.delc, ch.lam));
}

// One group of G steps: up to NV complex arrays, dt and (PE) delta; steps past the tile's end
// (or of an inactive channel) hold dt = 0 and zeros: identity steps.
template <typename R, bool PE, int G, int NV>
struct RsGrp {
  cx<R> x[NV][G];
  R tau[G], del[PE ? G : 1];
};

// Pointers at the tile's next step to load and per-step strides (signed: the scan may walk
// time down).
template <typename R, typename TR, int NV>
struct RsSrc {
  const TR* dt;
  const TR* del;
  const cx<R>* x[NV];
  int64_t ddt, ddel, dx[NV];
};

// Steps j0 .. j0+G-1 of n, the last array only below nlast (the backward's h[t-1] does not
// exist at the scan's first step). Groups are loaded in order: the pointers advance one step
// at a time (a 64-bit add, where offsets j*stride would each hold a register pair). FULL: the
// whole group exists (no predicates).
template <bool FULL, typename R, typename TR, bool PE, int G, int NV>
__device__ __forceinline__ void rs_load(RsGrp<R, PE, G, NV>& g, RsSrc<R, TR, NV>& s, int j0, int n, int nlast,
                                        bool active) {
#pragma unroll
  for (int j = 0; j < G; ++j) {
    const bool on = FULL || (active && j0 + j < n);
    g.tau[j] = on ? load_real<R>(s.dt, 0) : R(0);
    s.dt += s.ddt;
    if (PE) {
      g.del[PE ? j : 0] = on ? load_real<R>(s.del, 0) : R(0);
      s.del += s.ddel;
    }
#pragma unroll
    for (int i = 0; i < NV; ++i) {
      const bool oni = FULL || (i == NV - 1 ? active && j0 + j < nlast : on);
      g.x[i][j] = oni ? *s.x[i] : mk(R(0), R(0));
      s.x[i] += s.dx[i];
    }
  }
}

// Walks a tile's n steps in groups of G: the next group's loads are issued before the current
// group's math (two register buffers, named statically: an indexed pair would live in local
// memory). body(group, j0) consumes a group.
template <typename R, typename TR, bool PE, int G, int NV, typename Body>
__device__ __forceinline__ void rs_walk(int n, int nlast, bool active, RsSrc<R, TR, NV>& src, Body body) {
  using Grp = RsGrp<R, PE, G, NV>;
  auto load = [&](Grp& gr, int j0) {
    if (active && j0 + G <= nlast) rs_load<true>(gr, src, j0, n, nlast, active);
    else rs_load<false>(gr, src, j0, n, nlast, active);
  };
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

// Array i of src: x at (batch row, time t0, channel) of this thread, strides st (elements),
// walked in direction dir.
template <typename R, typename TR, int NV>
__device__ __forceinline__ void rs_src_x(RsSrc<R, TR, NV>& src, int i, const void* x, const int64_t* st,
                                         const TilePos& t, int64_t t0, int dir) {
  src.x[i] = static_cast<const cx<R>*>(x) + t.b * st[0] + t0 * st[1] + t.d * st[2];
  src.dx[i] = dir * st[1];
}

// What every three-pass tile kernel starts from: the layout, this warp's tile k (counting down
// with `down`), its position, channel constants (with the input scale's derivatives: grad), the
// exponent, the time walk (the backward's against the forward's) and the sources of dt / delta.
// false past the grid's tiles.
template <typename R, typename TR, int NV>
struct RsTile {
  RsLayout o;
  int64_t k;
  RsPos s;
  Chan<R> ch;
  Zc<R> z;
  RsTime tm;
  RsSrc<R, TR, NV> src;
};
template <typename R, typename TR, bool PE, int NV, typename Prm>
__device__ __forceinline__ bool rs_begin(RsTile<R, TR, NV>& tl, const Prm& p, int64_t T, bool bwd, bool down,
                                         bool grad) {
  tl.o = rs_layout<R>(p.batch, p.length, p.dim, T, bwd);
  tl.k = rs_tile(tl.o, down);
  if (tl.k < 0) return false;
  tl.s = rs_pos(tl.o, tl.k, p.dim, p.length);
  tl.ch = chan<R, TR, PE>(p, tl.s.t, grad);
  tl.z = zc_chan<R, PE>(tl.ch);
  tl.tm = rs_time(tl.s.r0, p.length, bwd ? p.reverse == 0 : p.reverse != 0);
  tl.src = rs_src<R, TR, NV>(p, tl.s, tl.tm);
  return true;
}

// ---- forward ----

// Pass 1 of either direction: every tile's map from the zero state over its scan input x (v
// forward, grad_h backward; dt and a per-event delta besides). Forward steps x -> a*x + g*v,
// the adjoint's c -> conj(a) * (c + grad_h). A is the transition over the whole tile,
// exp(z * (sum of the steps' s)), conjugated for the adjoint: one exponential per tile instead
// of a product per step. GC: the input scale is the same for every step (shared delta, not
// ZOH) and multiplies the forward's end state once.
template <typename R, typename TR, bool PE, bool GC, bool ADJ, typename Prm>
__device__ __forceinline__ void rs_reduce(const Prm& p, int64_t T, void* wsv, const void* x, const int64_t* xs) {
  static_assert(!(PE && GC), "a per-event delta has no constant input scale");
  RsTile<R, TR, 1> tl;
  if (!rs_begin<R, TR, PE>(tl, p, T, ADJ, false, false)) return;
  const RsPos& s = tl.s;
  rs_src_x(tl.src, 0, x, xs, s.t, tl.tm.t0, tl.tm.dir);
  cx<R> X = mk(R(0), R(0));
  R S = 0;
  using Grp = RsGrp<R, PE, RG, 1>;
  rs_walk<R, TR, PE, RG, 1>(s.n, s.n, s.t.active, tl.src, [&](const Grp& gr, int j0) {
#pragma unroll
    for (int j = 0; j < RG; ++j) {
      const R del = PE ? gr.del[PE ? j : 0] : tl.ch.delc, sj = PE ? del * gr.tau[j] : gr.tau[j];
      const cx<R> a = cexp_s(sj, tl.z);
      if (ADJ) {
        X = mulc(a, add(X, gr.x[0][j]));
      } else {
        cx<R> gv = gr.x[0][j];
        if (!GC) {
          cx<R> gs;
          input_scale<R>(p.disc, tl.ch.lam, del, gr.tau[j], a, false, &gs, nullptr, nullptr);
          gv = mul(gs, gv);
        }
        X = add(mul(a, X), gv);
      }
      S += sj;
    }
  });
  if (!ADJ && GC) X = mul(tl.ch.gc, X);
  const cx<R> A = cexp_s(S, tl.z);
  cx<R>* agg =
      reinterpret_cast<cx<R>*>(static_cast<unsigned char*>(wsv) + tl.o.agg_off) + 2 * (tl.k * CW + threadIdx.x % CW);
  agg[0] = mk(A.re, ADJ ? -A.im : A.im);
  agg[1] = X;
}

template <typename R, typename TR, bool PE, bool GC>
__global__ void __launch_bounds__(RNT, 3) event_rs_fwd_reduce(lrnn_event_scan_params p, int64_t T, void* wsv) {
  wait_prior_grid();
  rs_reduce<R, TR, PE, GC, false>(p, T, wsv, p.v, p.v_stride);
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
  wait_prior_grid();
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
template <typename R, typename TR, bool PE, bool GC>
__global__ void __launch_bounds__(RNT, 3) event_rs_fwd_apply(lrnn_event_scan_params p, int64_t T, const void* wsv) {
  static_assert(!(PE && GC), "a per-event delta has no constant input scale");
  wait_prior_grid();
  RsTile<R, TR, 1> tl;
  if (!rs_begin<R, TR, PE>(tl, p, T, false, true, false)) return;
  const RsPos& s = tl.s;
  rs_src_x(tl.src, 0, p.v, p.v_stride, s.t, tl.tm.t0, tl.tm.dir);
  const unsigned char* ws = static_cast<const unsigned char*>(wsv);
  cx<R> x = reinterpret_cast<const cx<R>*>(ws + tl.o.car_off)[tl.k * CW + threadIdx.x % CW];
  cx<R>* h = static_cast<cx<R>*>(p.h) + s.t.b * p.h_stride[0] + tl.tm.t0 * p.h_stride[1] + s.t.d * p.h_stride[2];
  const int64_t dh = tl.tm.dir * p.h_stride[1];
  using Grp = RsGrp<R, PE, RG, 1>;
  rs_walk<R, TR, PE, RG, 1>(s.n, s.n, s.t.active, tl.src, [&](const Grp& gr, int j0) {
#pragma unroll
    for (int j = 0; j < RG; ++j) {
      const R del = PE ? gr.del[PE ? j : 0] : tl.ch.delc;
      const cx<R> a = cexp_s(PE ? del * gr.tau[j] : gr.tau[j], tl.z);
      cx<R> gs = tl.ch.gc;
      if (!GC) input_scale<R>(p.disc, tl.ch.lam, del, gr.tau[j], a, false, &gs, nullptr, nullptr);
      x = add(mul(a, x), mul(gs, gr.x[0][j]));
      if (s.t.active && j0 + j < s.n) *h = x;
      h += dh;
    }
  });
  if (s.t.active && s.t.tt == tl.o.ntt - 1)
    static_cast<cx<R>*>(p.h_last)[s.t.b * p.h_last_stride[0] + s.t.d * p.h_last_stride[1]] = x;
}

// ---- backward ----
// The adjoint c -> conj(a) * (grad_h + c) in reverse step order, tiles as in the forward.

// One step of the backward's apply: with lt = grad_h + carry the adjoint
// at this step, returns the step's ddelta term and sets *dvv (dv's value), adds the step's
// dLambda term to dl (conj(v)*lt to gsum instead of the input-scale terms when the scale is
// constant, GC) and moves carry to the next step: conj(a) * lt. del: delta at this step.
template <typename R, bool GC>
__device__ __forceinline__ R bwd_step(const Chan<R>& ch, int disc, R del, R tau, cx<R> a, cx<R> gh, cx<R> v,
                                      cx<R> hprev, cx<R>& carry, cx<R>& dl, cx<R>& gsum, cx<R>* dvv) {
  const cx<R> lt = add(gh, carry);
  const cx<R> ga = mulc(hprev, lt), gv = mulc(v, lt);
  dl = add(dl, scale(del * tau, mulc(a, ga)));
  R dd = tau * dotr(mul(ch.lam, a), ga);
  cx<R> gs = ch.gc;
  if (GC) {
    gsum = add(gsum, gv);
  } else {
    cx<R> dgl, dgd;
    input_scale<R>(disc, ch.lam, del, tau, a, true, &gs, &dgl, &dgd);
    dl = add(dl, mulc(dgl, gv));
    dd += dotr(dgd, gv);
  }
  *dvv = mulc(gs, lt);
  carry = mulc(a, lt);
  return dd;
}

// Pass 1 of the backward (reads grad_h and dt only).
template <typename R, typename TR, bool PE>
__global__ void __launch_bounds__(RNT, 3) event_rs_bwd_reduce(lrnn_event_scan_bwd_params p, int64_t T, void* wsv) {
  wait_prior_grid();
  rs_reduce<R, TR, PE, false, true>(p, T, wsv, p.grad_h, p.grad_h_stride);
}

// Pass 3: every tile from its entering adjoint state: dv (and ddelta per event) per step, the
// tile's dLambda (and shared-delta ddelta) partials to the workspace, dh0 from the chain's last
// tile. Arrays per step: grad_h, v, and h at the time before the step in scan order (h0 at the
// scan's first step).
template <typename R, typename TR, bool PE, bool GC>
__global__ void __launch_bounds__(RNT, 2) event_rs_bwd_apply(lrnn_event_scan_bwd_params p, int64_t T, void* wsv) {
  static_assert(!(PE && GC), "a per-event delta has no constant input scale");
  wait_prior_grid();
  RsTile<R, TR, 3> tl;
  if (!rs_begin<R, TR, PE>(tl, p, T, true, true, true)) return;
  const int64_t L = p.length;
  const RsPos& s = tl.s;
  const cx<R> zero = mk(R(0), R(0));
  rs_src_x(tl.src, 0, p.grad_h, p.grad_h_stride, s.t, tl.tm.t0, tl.tm.dir);
  rs_src_x(tl.src, 1, p.v, p.v_stride, s.t, tl.tm.t0, tl.tm.dir);
  // h one time index against the scan direction; the scan's first step (r = L-1) is not loaded
  // from h but takes h0: the tile that holds it walks one step less of h.
  rs_src_x(tl.src, 2, p.h, p.h_stride, s.t, tl.tm.t0 + tl.tm.dir, tl.tm.dir);
  const int nh = s.r0 + s.n >= L ? s.n - 1 : s.n;   // steps whose h[t-1] is in h
  const cx<R> h0 = s.t.active && p.h0 ? static_cast<const cx<R>*>(p.h0)[s.t.b * p.h0_stride[0] + s.t.d * p.h0_stride[1]] : zero;
  unsigned char* ws = static_cast<unsigned char*>(wsv);
  cx<R> carry = reinterpret_cast<const cx<R>*>(ws + tl.o.car_off)[tl.k * CW + threadIdx.x % CW];
  cx<R>* dv = static_cast<cx<R>*>(p.dv) + s.t.b * p.dv_stride[0] + tl.tm.t0 * p.dv_stride[1] + s.t.d * p.dv_stride[2];
  const int64_t dd_t = PE ? p.ddelta_stride[1] : 0, ddv = tl.tm.dir * p.dv_stride[1], ddd = tl.tm.dir * dd_t;
  R* ddelta = static_cast<R*>(p.ddelta) + s.t.b * p.ddelta_stride[0] + tl.tm.t0 * dd_t + s.t.d * p.ddelta_stride[2];
  cx<R> dl = zero, gsum = zero;
  R dd_sum = 0;
  using Grp = RsGrp<R, PE, RG3, 3>;
  rs_walk<R, TR, PE, RG3, 3>(s.n, nh, s.t.active, tl.src, [&](const Grp& gr, int j0) {
#pragma unroll
    for (int j = 0; j < RG3; ++j) {
      const int jj = j0 + j;
      const R del = PE ? gr.del[PE ? j : 0] : tl.ch.delc, tau = gr.tau[j];
      const cx<R> a = cexp_s(PE ? del * tau : tau, tl.z);
      // the scan's first step takes h0 (the loader left it zero)
      const cx<R> hj = jj < nh ? gr.x[2][j] : (s.t.active && jj < s.n ? h0 : zero);
      cx<R> dvv;
      const R dd = bwd_step<R, GC>(tl.ch, p.disc, del, tau, a, gr.x[0][j], gr.x[1][j], hj, carry, dl, gsum, &dvv);
      if (s.t.active && jj < s.n) {
        *dv = dvv;
        if (PE) *ddelta = dd;
      }
      dv += ddv;
      ddelta += ddd;
      dd_sum += dd;
    }
  });
  if (GC) {
    dl = add(dl, mulc(tl.ch.dglc, gsum));
    dd_sum += dotr(tl.ch.dgdc, gsum);
  }
  const int c = static_cast<int>(threadIdx.x) % CW;
  reinterpret_cast<cx<R>*>(ws + tl.o.pl_off)[tl.k * CW + c] = dl;
  reinterpret_cast<R*>(ws + tl.o.pd_off)[tl.k * CW + c] = dd_sum;
  if (s.t.active && s.t.tt == tl.o.ntt - 1)
    static_cast<cx<R>*>(p.dh0)[s.t.b * p.dh0_stride[0] + s.t.d * p.dh0_stride[1]] = carry;
}

// dLambda (B, P) and, with a shared delta, ddelta (B, P) from the apply pass's tile partials:
// one block per chain, RL lanes per channel; lane q sums the channel's tile partials q, q+RL,
// q+2*RL, ... in order and lane 0 adds the RL sums in order (a fixed order: reproducible).
template <typename R>
__global__ void __launch_bounds__(CW * RL) event_rs_bwd_sum(lrnn_event_scan_bwd_params p, int64_t T, const void* wsv) {
  __shared__ cx<R> sl[RL][CW];
  __shared__ R sd[RL][CW];
  wait_prior_grid();
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

// ---------------- the one-pass scan (forward, shared delta) ----------------
// Reads v once. A block of OW warps owns one chunk of OW*S steps of one chain; warp w owns the
// chunk's steps w*S .. w*S+S-1 (its 32 lanes the chain's 32 channels, as in the three-pass
// kernels). The block
//   1. copies its v into shared memory (cp.async: the bytes are in flight while nothing waits;
//      64 KB per block, three blocks per SM, so up to ~190 KB per SM of the scan input is held
//      on chip between its arrival and its use) and dt (one step per lane);
//   2. composes each warp's steps into a map (A, X) from the zero state, then warp 0 composes
//      the OW maps into the chunk's map;
//   3. warp 0 finds the state entering the chunk by a deterministic look-back: chunk i of a
//      chain starts from the end state of the chain's last checkpoint chunk c < i (chunks
//      M-1, 2M-1, ...; h0 before the first) followed by the maps of chunks c+1 .. i-1, always
//      composed in that order, so results do not depend on timing (bitwise reproducible).
//      Chunks that are not checkpoints publish their map as soon as they have it; a checkpoint
//      publishes its end state once it has its entering state. The chain's serial dependency
//      is one L2 round trip per M chunks (M*OW*S steps: 1024 at the defaults), against the
//      ~260 steps per microsecond each of the 32 chains of (8, 65536, 128) must advance to
//      keep HBM busy;
//   4. every warp composes the maps of the warps before it onto that state and re-walks its
//      steps from shared memory, writing h.
// Publication: the workspace (rs_layout's for tiles of one chunk) holds (A, X) per chunk and
// channel in its agg region, filled with all-ones words (the launcher's memset) that no
// arithmetic result has (to_word maps a NaN input's payload off it); readers poll the words themselves with relaxed GPU-scope loads, so no flag and no
// fence is needed. Blocks are numbered chunk-major (block = i * chains + chain): a chunk only
// waits for chunks with smaller block numbers, which the hardware dispatches first (the
// forward-progress assumption of decoupled look-back scans).

// Warps per block and steps per warp of a chunk: 32 complex64 / 16 complex128 (8 KB of v per
// warp). A chunk is OW warps' steps, its workspace rs_layout's for tiles of one chunk (the
// look-back words in the agg region). On the H200 at (8, 65536, 128) this took 0.336 ms
// against 0.335 ms with four warps of 32 steps (six blocks per SM).
constexpr int OW = 8;
template <typename R>
__host__ __device__ constexpr int op_steps() { return sizeof(R) == 4 ? 32 : 16; }
// Dynamic shared memory of a block: v [OW][S][CW] and dt [OW][S].
template <typename R>
__host__ __device__ constexpr int64_t op_smem_bytes() {
  return static_cast<int64_t>(OW) * op_steps<R>() *
         (CW * static_cast<int64_t>(sizeof(cx<R>)) + static_cast<int64_t>(sizeof(R)));
}
// Blocks per SM the kernel is built for (registers; its shared memory allows the same).
constexpr int OP_BLOCKS = 3;

// Publication words: the all-ones pattern means "not yet written".
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
// Relaxed GPU-scope store / load of one complex value as two words (the emulation: volatile).
__device__ __forceinline__ void st_words(unsigned* p, unsigned a, unsigned b) {
#ifdef __CUDA_ARCH__
  asm volatile("st.relaxed.gpu.global.v2.u32 [%0], {%1, %2};" ::"l"(p), "r"(a), "r"(b) : "memory");
#else
  volatile unsigned* q = p;
  q[0] = a;
  q[1] = b;
#endif
}
__device__ __forceinline__ void st_words(unsigned long long* p, unsigned long long a, unsigned long long b) {
#ifdef __CUDA_ARCH__
  asm volatile("st.relaxed.gpu.global.v2.u64 [%0], {%1, %2};" ::"l"(p), "l"(a), "l"(b) : "memory");
#else
  volatile unsigned long long* q = p;
  q[0] = a;
  q[1] = b;
#endif
}
__device__ __forceinline__ void ld_words(const unsigned* p, unsigned* a, unsigned* b) {
#ifdef __CUDA_ARCH__
  asm volatile("ld.relaxed.gpu.global.v2.u32 {%0, %1}, [%2];" : "=r"(*a), "=r"(*b) : "l"(p) : "memory");
#else
  const volatile unsigned* q = p;
  *a = q[0];
  *b = q[1];
#endif
}
__device__ __forceinline__ void ld_words(const unsigned long long* p, unsigned long long* a, unsigned long long* b) {
#ifdef __CUDA_ARCH__
  asm volatile("ld.relaxed.gpu.global.v2.u64 {%0, %1}, [%2];" : "=l"(*a), "=l"(*b) : "l"(p) : "memory");
#else
  const volatile unsigned long long* q = p;
  *a = q[0];
  *b = q[1];
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

// Asynchronous copy of one complex value into shared memory, zeros when !on; the wait for
// this thread's copies (the emulation copies at once).
// src must be a valid address even when !on (nothing is read from it then).
template <typename R>
__device__ __forceinline__ void copy_async(cx<R>* dst, const cx<R>* src, bool on) {
#ifdef __CUDA_ARCH__
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  const unsigned n = on ? static_cast<unsigned>(sizeof(cx<R>)) : 0u;   // 0: zero-fill
  if (sizeof(cx<R>) == 8)
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;" ::"r"(d), "l"(src), "r"(n) : "memory");
  else
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(n) : "memory");
#else
  *dst = on ? *src : mk(R(0), R(0));
#endif
}
__device__ __forceinline__ void copy_async_wait() {
#ifdef __CUDA_ARCH__
  asm volatile("cp.async.wait_all;" ::: "memory");
#endif
}

// Stages steps j = 0 .. S-1 of one channel (lane) into dst[j*CW]: src + j*step, zeros from
// step `upto` on (and everywhere when !active). src is not dereferenced past upto.
template <int S, typename R>
__device__ __forceinline__ void op_stage(cx<R>* dst, const cx<R>* base, const cx<R>* src, int64_t step, int upto,
                                         bool active) {
#pragma unroll 8
  for (int j = 0; j < S; ++j) {
    const bool on = active && j < upto;
    copy_async(dst + j * CW, on ? src + j * step : base, on);
  }
}

// Checkpoint period (chunks) of a chunk of T steps: about 1024 steps per checkpoint hop.
__host__ __device__ constexpr int op_period(int T) { return T >= 1024 ? 1 : 1024 / T; }

#ifndef LRNN_EVENT_DYN_SMEM
extern __shared__ uint4 lrnn_event_dyn_smem[];
#define LRNN_EVENT_DYN_SMEM lrnn_event_dyn_smem
#endif
// The emulation runs blocks in order, so every look-back item is there at the first look.
#ifndef LRNN_EVENT_LOOKBACK_MISSED
#define LRNN_EVENT_LOOKBACK_MISSED() ((void)0)
#endif

// Warp 0, lane c: the state entering chunk i (of nch) of `chain` (maps (Ac, Xc) of this chunk),
// with the publications of step 3 above; start: h0 (or grad_h_last) of this channel.
template <typename R, int M>
__device__ __forceinline__ cx<R> op_lookback(cx<R>* pub, int64_t nch, int64_t chain, int64_t i, int c, cx<R> Ac,
                                             cx<R> Xc, cx<R> start) {
  cx<R>* mine = pub + ((chain * nch + i) * CW + c) * 2;
  const bool last = i == nch - 1, checkpoint = (i + 1) % M == 0;
  if (!last && !checkpoint) {
    publish(mine, Ac);
    publish(mine + 1, Xc);
  }
  const int64_t cp = (i / M) * M - 1;      // last checkpoint before i (-1: none, start from h0)
  const int na = static_cast<int>(i - cp - 1);   // maps of chunks cp+1 .. i-1
  cx<R> IA[M], IX[M];
  bool got[M];
#pragma unroll
  for (int m = 0; m < M; ++m) {
    got[m] = m == 0 ? cp < 0 : m > na;
    IA[m] = mk(R(1), R(0));
    IX[m] = m == 0 ? start : mk(R(0), R(0));
  }
  for (;;) {
    bool all = true;
#pragma unroll
    for (int m = 0; m < M; ++m) {
      if (got[m]) continue;
      const cx<R>* q = pub + ((chain * nch + cp + m) * CW + c) * 2;
      bool ok = observe(q + 1, &IX[m]);
      if (m > 0) ok = observe(q, &IA[m]) && ok;
      got[m] = ok;
      all = all && ok;
    }
    if (all) break;
    LRNN_EVENT_LOOKBACK_MISSED();
  }
  cx<R> E = IX[0];
#pragma unroll
  for (int m = 1; m < M; ++m)
    if (m <= na) E = add(mul(IA[m], E), IX[m]);
  if (checkpoint && !last) publish(mine + 1, add(mul(Ac, E), Xc));
  return E;
}

// This thread's place in a one-pass grid (block = chunk i * chains + chain, chunk-major): lane
// c, warp w, whose steps are scan steps s.r0 .. s.r0+s.n-1 (n < S past the end), walked in
// time from tm.t0 in direction tm.dir (flip: against the time axis).
struct OpPos {
  RsPos s;
  RsTime tm;
  int64_t i;
  int c, w;
};
template <int S>
__device__ __forceinline__ OpPos op_pos(const RsLayout& o, int64_t P, int64_t L, bool flip) {
  OpPos q;
  q.c = static_cast<int>(threadIdx.x) % CW;
  q.w = static_cast<int>(threadIdx.x) / CW;
  const int64_t chain = static_cast<int64_t>(blockIdx.x) % o.chains;
  q.i = static_cast<int64_t>(blockIdx.x) / o.chains;
  q.s = rs_pos(o, chain * o.ntt + q.i, P, L);
  q.s.r0 += static_cast<int64_t>(q.w) * S;
  const int64_t left = L - q.s.r0;
  q.s.n = static_cast<int>(left < S ? (left > 0 ? left : 0) : S);
  q.tm = rs_time(q.s.r0, L, flip);
  return q;
}

// dt of the warp's steps into mdt[0 .. S-1] (one step per lane, zeros past the end), then the
// wait for this thread's staged copies and for the warp's dt.
template <typename R, typename TR, int S, typename Prm>
__device__ __forceinline__ void op_stage_dt_and_wait(R* mdt, const Prm& p, const OpPos& q) {
  if (q.c < S)
    mdt[q.c] = q.c < q.s.n ? load_real<R>(static_cast<const TR*>(p.dt), q.s.t.b * p.dt_stride[0] +
                                                                           (q.tm.t0 + q.tm.dir * q.c) * p.dt_stride[1])
                           : R(0);
  copy_async_wait();
  __syncwarp();
}

// Steps 2-3 of a block after each warp has its map (Aw, Xw; Ssum its summed exponent steps):
// the maps to shared memory, warp 0 composes them in order into the chunk's map (its
// transition from the summed steps) and looks back for the chunk's
// entering state (the chain's start: `start`), and every warp returns its own entering state:
// the chunk's through the maps of the warps before it.
template <typename R, int M>
__device__ __forceinline__ cx<R> op_enter(cx<R> (*sA)[CW], cx<R> (*sX)[CW], R* sS, cx<R>* sE, const OpPos& q,
                                          cx<R> Aw, cx<R> Xw, R Ssum, Zc<R> z, cx<R>* pub, int64_t nch,
                                          cx<R> start) {
  const int c = q.c, w = q.w;
  sA[w][c] = Aw;
  sX[w][c] = Xw;
  if (c == 0) sS[w] = Ssum;
  __syncthreads();
  if (w == 0) {
    cx<R> X = mk(R(0), R(0));
    R St = 0;
    for (int l = 0; l < OW; ++l) {
      X = add(mul(sA[l][c], X), sX[l][c]);
      St += sS[l];
    }
    const cx<R> A = cexp_s(St, z);
    sE[c] = op_lookback<R, M>(pub, nch, q.s.chain, q.i, c, A, X, start);
  }
  __syncthreads();
  cx<R> x = sE[c];
  for (int l = 0; l < w; ++l) x = add(mul(sA[l][c], x), sX[l][c]);
  return x;
}

template <typename R, typename TR, bool GC>
__global__ void __launch_bounds__(OW * CW, OP_BLOCKS) event_op_fwd(lrnn_event_scan_params p, void* wsv) {
  constexpr int S = op_steps<R>(), M = op_period(OW * S);
  __shared__ cx<R> sA[OW][CW], sX[OW][CW], sE[CW];
  __shared__ R sS[OW];
  const RsLayout o = rs_layout<R>(p.batch, p.length, p.dim, OW * S, false);
  const OpPos q = op_pos<S>(o, p.dim, p.length, p.reverse != 0);
  const TilePos& t = q.s.t;
  const int c = q.c, w = q.w, n = q.s.n;
  cx<R>* mv = reinterpret_cast<cx<R>*>(LRNN_EVENT_DYN_SMEM) + w * S * CW + c;   // v [OW][S][CW]
  R* mdt = reinterpret_cast<R*>(reinterpret_cast<cx<R>*>(LRNN_EVENT_DYN_SMEM) + OW * S * CW) + w * S;
  // 1. stage v and dt
  const cx<R>* v0 = static_cast<const cx<R>*>(p.v);
  op_stage<S>(mv, v0, v0 + t.b * p.v_stride[0] + q.tm.t0 * p.v_stride[1] + t.d * p.v_stride[2],
              q.tm.dir * p.v_stride[1], n, t.active);
  const Chan<R> ch = chan<R, TR, false>(p, t, false);
  const Zc<R> z = zc_chan<R, false>(ch);
  op_stage_dt_and_wait<R, TR, S>(mdt, p, q);
  // 2. this warp's map from the zero state; steps past the end hold dt = 0, v = 0 (identity)
  cx<R> x;
  {
    cx<R> X = mk(R(0), R(0));
    R Ssum = 0;
#pragma unroll 8
    for (int j = 0; j < S; ++j) {
      const R tau = mdt[j];
      const cx<R> a = cexp_s(tau, z);
      cx<R> u = mv[j * CW];
      if (!GC) {
        cx<R> gs;
        input_scale<R>(p.disc, ch.lam, ch.delc, tau, a, false, &gs, nullptr, nullptr);
        u = mul(gs, u);
      }
      X = add(mul(a, X), u);
      Ssum += tau;
    }
    if (GC) X = mul(ch.gc, X);
    const cx<R> start = t.active && p.h0 ? static_cast<const cx<R>*>(p.h0)[t.b * p.h0_stride[0] + t.d * p.h0_stride[1]]
                                         : mk(R(0), R(0));
    // 3. the state entering this warp's steps
    x = op_enter<R, M>(sA, sX, sS, sE, q, cexp_s(Ssum, z), X, Ssum, z,
                       reinterpret_cast<cx<R>*>(static_cast<unsigned char*>(wsv) + o.agg_off), o.ntt, start);
  }
  // 4. this warp's steps from there
  cx<R>* h = static_cast<cx<R>*>(p.h) + t.b * p.h_stride[0] + t.d * p.h_stride[2];
#pragma unroll 8
  for (int j = 0; j < S; ++j) {
    const R tau = mdt[j];
    const cx<R> a = cexp_s(tau, z);
    cx<R> gs = ch.gc;
    if (!GC) input_scale<R>(p.disc, ch.lam, ch.delc, tau, a, false, &gs, nullptr, nullptr);
    x = add(mul(a, x), mul(gs, mv[j * CW]));
    if (t.active && j < n) h[(q.tm.t0 + q.tm.dir * j) * p.h_stride[1]] = x;
  }
  if (t.active && n > 0 && q.s.r0 + n == p.length)
    static_cast<cx<R>*>(p.h_last)[t.b * p.h_last_stride[0] + t.d * p.h_last_stride[1]] = x;
}

}  // namespace lrnn_event_cuda
