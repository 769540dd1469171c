// test_event_scan_cuda_emulated.cpp: runs the CUDA event-scan kernels (csrc/cuda/
// event_scan_kernels.cuh, the exact device code event_scan.cu launches) on CPU threads and
// compares every output with the CPU kernels (themselves checked against naive loops in
// test_event_scan.cpp). Blocks run one at a time so that function-static arrays behave as
// __shared__ memory; kernels with barriers (carry, partial sums) run one std::thread per CUDA
// thread with a real barrier for __syncthreads, the reduce and apply kernels (no barriers, no
// thread reads another's writes) run their threads one after the other. Launches run in stream
// order, so griddepcontrol.wait has nothing to wait for. This tests the tiling (several tile
// lengths: tiles of one step group up to several rounds of the carry block), the carry
// composition, the backward's h[t-1] at the scan's first step and the partial sums on machines
// without a GPU; GPU-only effects (fast-math intrinsics, concurrency, the launch itself) are
// covered by the CUDA pytest on the GPU machine.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <condition_variable>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <type_traits>
#include <vector>

#include "lrnn/event_scan.h"
#include "../../csrc/cpu/scalar.h"

// ---- the CUDA built-ins the kernels use, emulated ----
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
namespace emu {
thread_local dim3 thread_idx, block_idx;
struct Barrier {
  std::mutex m;
  std::condition_variable cv;
  int n, count = 0;
  long gen = 0;
  explicit Barrier(int threads) : n(threads) {}
  void wait() {
    std::unique_lock<std::mutex> lock(m);
    const long g = gen;
    if (++count == n) {
      count = 0;
      ++gen;
      cv.notify_all();
    } else {
      cv.wait(lock, [&] { return gen != g; });
    }
  }
};
Barrier* barrier = nullptr;
// the one-pass kernels' dynamic shared memory (one block runs at a time)
alignas(16) unsigned char dyn_smem[80 * 1024];
// blocks run in order, so a look-back that finds an item missing is a bug
bool lookback_missed = false;
}  // namespace emu
#define threadIdx emu::thread_idx
#define blockIdx emu::block_idx
#define __syncthreads() emu::barrier->wait()
#define __syncwarp() emu::barrier->wait()   // used only where every thread of the block calls it
#define LRNN_EVENT_DYN_SMEM emu::dyn_smem
#define LRNN_EVENT_LOOKBACK_MISSED() \
  do {                               \
    emu::lookback_missed = true;     \
    return mk(R(0), R(0));           \
  } while (0)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
inline float __uint_as_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
using std::exp;
using std::expm1;
using std::fabs;
using std::min;

#include "../../csrc/cuda/event_scan_kernels.cuh"

namespace {

using cd = std::complex<double>;

// Runs kernel() as a grid of `blocks` blocks of NT threads, one block at a time.
template <typename F>
void launch(unsigned blocks, F kernel, int NT) {
  for (unsigned bx = 0; bx < blocks; ++bx) {
    emu::Barrier bar(NT);
    emu::barrier = &bar;
    std::vector<std::thread> threads;
    for (unsigned tx = 0; tx < static_cast<unsigned>(NT); ++tx)
      threads.emplace_back([=] {
        emu::thread_idx = dim3(tx);
        emu::block_idx = dim3(bx);
        kernel();
      });
    for (auto& t : threads) t.join();
  }
}

// The same for kernels without barriers (the three-pass reduce and apply kernels: a warp never
// reads what another thread wrote): the threads of a block run one after the other on this
// thread, which makes large grids cheap to emulate.
template <typename F>
void launch_seq(unsigned blocks, F kernel, int NT) {
  for (unsigned bx = 0; bx < blocks; ++bx)
    for (unsigned tx = 0; tx < static_cast<unsigned>(NT); ++tx) {
      emu::thread_idx = dim3(tx);
      emu::block_idx = dim3(bx);
      kernel();
    }
}

struct Case {
  int64_t B, L, P;
  lrnn_dtype dtype, real_dtype;
  int disc;
  bool per_event, reverse;
};

size_t csize(lrnn_dtype t) { return t == LRNN_C64 ? 8 : 16; }
size_t rsize(lrnn_dtype t) { return t == LRNN_F64 ? 8 : t == LRNN_F32 ? 4 : 2; }

struct Bytes {
  std::vector<uint8_t> b;
  void* data() { return b.data(); }
};

void fill_c(Bytes& buf, lrnn_dtype t, size_t n, std::mt19937& rng, double re_lo, double re_hi, double im) {
  std::uniform_real_distribution<double> re(re_lo, re_hi), ui(-im, im);
  buf.b.resize(n * csize(t));
  for (size_t i = 0; i < n; ++i) {
    const double a = re(rng), c = ui(rng);
    if (t == LRNN_C64) { float f[2] = {(float)a, (float)c}; memcpy(&buf.b[i * 8], f, 8); }
    else { double f[2] = {a, c}; memcpy(&buf.b[i * 16], f, 16); }
  }
}
void fill_r(Bytes& buf, lrnn_dtype t, size_t n, std::mt19937& rng, double lo, double hi, bool zeros) {
  std::uniform_real_distribution<double> u(lo, hi);
  buf.b.resize(n * rsize(t));
  for (size_t i = 0; i < n; ++i) {
    const double x = (zeros && i % 4 == 1) ? 0.0 : u(rng);
    if (t == LRNN_F64) memcpy(&buf.b[i * 8], &x, 8);
    else if (t == LRNN_F32) { float f = (float)x; memcpy(&buf.b[i * 4], &f, 4); }
    else { uint16_t f = lrnn_f32_to_bf16((float)x); memcpy(&buf.b[i * 2], &f, 2); }
  }
}
cd get_c(const Bytes& buf, bool c64, size_t i) {
  if (c64) { float f[2]; memcpy(f, &buf.b[i * 8], 8); return cd(f[0], f[1]); }
  double f[2]; memcpy(f, &buf.b[i * 16], 16); return cd(f[0], f[1]);
}
double get_r(const Bytes& buf, bool f32, size_t i) {
  if (f32) { float f; memcpy(&f, &buf.b[i * 4], 4); return f; }
  double f; memcpy(&f, &buf.b[i * 8], 8); return f;
}

double max_rel(const Bytes& a, const Bytes& b, size_t n, bool cplx, bool single) {
  double err = 0, scale = 1;
  for (size_t i = 0; i < n; ++i) {
    const cd x = cplx ? get_c(a, single, i) : cd(get_r(a, single, i));
    const cd y = cplx ? get_c(b, single, i) : cd(get_r(b, single, i));
    scale = std::max(scale, std::abs(y));
    const double e = std::abs(x - y);
    err = std::isnan(e) ? INFINITY : std::max(err, e);
  }
  return err / scale;
}

// The three-pass forward (reduce, carry, apply) and backward (+ the partial sums) as the
// launcher runs them: RW tiles per block, one carry block per chain.
// The forward (reduce, carry, apply) and backward (+ the partial sums) as the launcher runs
// them: RW tiles per block, one carry block per chain.
template <typename R, typename TR>
void rs_forward(const Case& c, const lrnn_event_scan_params& p, int64_t T, const lrnn_event_cuda::RsLayout& o,
                void* ws) {
  using namespace lrnn_event_cuda;
  const unsigned blocks = static_cast<unsigned>((o.tiles + RW - 1) / RW);
  if (c.per_event) launch_seq(blocks, [&] { event_rs_fwd_reduce<R, TR, true, false>(p, T, ws); }, RNT);
  else if (c.disc != LRNN_DISC_ZOH) launch_seq(blocks, [&] { event_rs_fwd_reduce<R, TR, false, true>(p, T, ws); }, RNT);
  else launch_seq(blocks, [&] { event_rs_fwd_reduce<R, TR, false, false>(p, T, ws); }, RNT);
  launch(static_cast<unsigned>(o.chains), [&] {
    event_rs_carry<R>(p.batch, p.length, p.dim, T, false, p.h0, p.h0_stride[0], p.h0_stride[1], ws);
  }, CSW * CW);
  if (c.per_event) launch_seq(blocks, [&] { event_rs_fwd_apply<R, TR, true, false>(p, T, ws); }, RNT);
  else if (c.disc != LRNN_DISC_ZOH) launch_seq(blocks, [&] { event_rs_fwd_apply<R, TR, false, true>(p, T, ws); }, RNT);
  else launch_seq(blocks, [&] { event_rs_fwd_apply<R, TR, false, false>(p, T, ws); }, RNT);
}

template <typename R, typename TR>
void rs_backward(const Case& c, const lrnn_event_scan_bwd_params& p, int64_t T, const lrnn_event_cuda::RsLayout& o,
                 void* ws) {
  using namespace lrnn_event_cuda;
  const unsigned blocks = static_cast<unsigned>((o.tiles + RW - 1) / RW);
  if (c.per_event) launch_seq(blocks, [&] { event_rs_bwd_reduce<R, TR, true>(p, T, ws); }, RNT);
  else launch_seq(blocks, [&] { event_rs_bwd_reduce<R, TR, false>(p, T, ws); }, RNT);
  launch(static_cast<unsigned>(o.chains), [&] {
    event_rs_carry<R>(p.batch, p.length, p.dim, T, true, p.grad_h_last, p.grad_h_last_stride[0],
                      p.grad_h_last_stride[1], ws);
  }, CSW * CW);
  if (c.per_event) launch_seq(blocks, [&] { event_rs_bwd_apply<R, TR, true, false>(p, T, ws); }, RNT);
  else if (c.disc != LRNN_DISC_ZOH) launch_seq(blocks, [&] { event_rs_bwd_apply<R, TR, false, true>(p, T, ws); }, RNT);
  else launch_seq(blocks, [&] { event_rs_bwd_apply<R, TR, false, false>(p, T, ws); }, RNT);
  launch(static_cast<unsigned>(o.chains), [&] { event_rs_bwd_sum<R>(p, T, ws); }, CW * RL);
}

// The one-pass forward as the launcher runs it: the look-back words filled with ones (the rest
// of the workspace with a pattern the kernel must overwrite before reading), one block per chunk
// and chain, chunk-major.
template <typename R, typename TR>
void op_forward(const Case& c, const lrnn_event_scan_params& p) {
  using namespace lrnn_event_cuda;
  const RsLayout o = rs_layout<R>(c.B, c.L, c.P, OW * op_steps<R>(), false);
  ASSERT_LE(op_smem_bytes<R>(), static_cast<int64_t>(sizeof emu::dyn_smem));
  std::vector<uint64_t> ws(static_cast<size_t>((o.bytes + 7) / 8), 0xA5A5A5A5A5A5A5A5ull);
  memset(reinterpret_cast<unsigned char*>(ws.data()) + o.agg_off, 0xFF, static_cast<size_t>(o.car_off - o.agg_off));
  emu::lookback_missed = false;
  auto kernel = c.disc != LRNN_DISC_ZOH ? event_op_fwd<R, TR, true> : event_op_fwd<R, TR, false>;
  launch(static_cast<unsigned>(o.tiles), [&] { kernel(p, ws.data()); }, OW * CW);
  EXPECT_FALSE(emu::lookback_missed);
}

template <typename R, typename TR>
void run_case(const Case& c) {
  std::mt19937 rng(11);
  const size_t BLP = c.B * c.L * c.P, BP = c.B * c.P;
  Bytes lambda, delta, dt, v, h0, gh, ghl;
  fill_c(lambda, c.dtype, c.P, rng, -1.0, -0.05, 4.0);
  fill_r(delta, c.real_dtype, c.per_event ? BLP : c.P, rng, 0.02, 1.0, false);
  fill_r(dt, c.real_dtype, c.B * c.L, rng, 0.0, 2.0, true);
  fill_c(v, c.dtype, BLP, rng, -1, 1, 1);
  fill_c(h0, c.dtype, BP, rng, -1, 1, 1);
  fill_c(gh, c.dtype, BLP, rng, -1, 1, 1);
  fill_c(ghl, c.dtype, BP, rng, -1, 1, 1);

  lrnn_event_scan_params p{};
  p.lambda = lambda.data(); p.delta = delta.data(); p.dt = dt.data(); p.v = v.data(); p.h0 = h0.data();
  p.batch = c.B; p.length = c.L; p.dim = c.P; p.lambda_stride = 1;
  if (c.per_event) { p.delta_stride[0] = c.L * c.P; p.delta_stride[1] = c.P; p.delta_stride[2] = 1; }
  else { p.delta_stride[2] = 1; }
  for (int64_t* s : {p.v_stride, p.h_stride}) { s[0] = c.L * c.P; s[1] = c.P; s[2] = 1; }
  p.dt_stride[0] = c.L; p.dt_stride[1] = 1;
  p.h0_stride[0] = c.P; p.h0_stride[1] = 1;
  p.h_last_stride[0] = c.P; p.h_last_stride[1] = 1;
  p.dtype = c.dtype; p.real_dtype = c.real_dtype; p.disc = c.disc; p.reverse = c.reverse;

  Bytes h_cpu, last_cpu, h_gpu, last_gpu;
  for (Bytes* b : {&h_cpu, &h_gpu}) b->b.assign(BLP * csize(c.dtype), 0xA5);
  for (Bytes* b : {&last_cpu, &last_gpu}) b->b.assign(BP * csize(c.dtype), 0xA5);
  lrnn_event_scan_params pc = p, pg = p;
  pc.h = h_cpu.data(); pc.h_last = last_cpu.data();
  pg.h = h_gpu.data(); pg.h_last = last_gpu.data();
  ASSERT_EQ(lrnn_event_scan_fwd_cpu(&pc, 0, c.B * c.P), LRNN_OK);
  const bool single = c.dtype == LRNN_C64;
  const double tol = single ? 2e-5 : 1e-12;
  // tiles of T steps (the carry pass runs more than one round of CSW*CSN tiles when L > 2048 at
  // T = 8)
  for (int64_t T : {int64_t(8), int64_t(24), int64_t(64)}) {
    SCOPED_TRACE(testing::Message() << "T " << T);
    for (Bytes* b : {&h_gpu, &last_gpu}) std::fill(b->b.begin(), b->b.end(), 0xA5);
    const lrnn_event_cuda::RsLayout o = lrnn_event_cuda::rs_layout<R>(c.B, c.L, c.P, T, false);
    std::vector<uint64_t> ws(static_cast<size_t>((o.bytes + 7) / 8), 0xA5A5A5A5A5A5A5A5ull);
    rs_forward<R, TR>(c, pg, T, o, ws.data());
    EXPECT_LE(max_rel(h_gpu, h_cpu, BLP, true, single), tol) << "h";
    EXPECT_LE(max_rel(last_gpu, last_cpu, BP, true, single), tol) << "h_last";
    if (c.L > 0) EXPECT_EQ(0, memcmp(&h_gpu.b[(c.reverse ? 0 : (c.L - 1) * c.P) * csize(c.dtype)], last_gpu.data(),
                                     c.P * csize(c.dtype))) << "h_last is the last h (batch row 0)";
  }

  // the one-pass forward (shared delta only)
  if (!c.per_event && c.L > 0) {
    SCOPED_TRACE("one-pass");
    for (Bytes* b : {&h_gpu, &last_gpu}) std::fill(b->b.begin(), b->b.end(), 0xA5);
    op_forward<R, TR>(c, pg);
    EXPECT_LE(max_rel(h_gpu, h_cpu, BLP, true, single), tol) << "h";
    EXPECT_LE(max_rel(last_gpu, last_cpu, BP, true, single), tol) << "h_last";
    EXPECT_EQ(0, memcmp(&h_gpu.b[(c.reverse ? 0 : (c.L - 1) * c.P) * csize(c.dtype)], last_gpu.data(),
                        c.P * csize(c.dtype))) << "h_last is the last h (batch row 0)";
  }

  lrnn_event_scan_bwd_params g{};
  g.grad_h = gh.data(); g.grad_h_last = ghl.data();
  g.lambda = p.lambda; g.delta = p.delta; g.dt = p.dt; g.v = p.v; g.h = h_cpu.data(); g.h0 = p.h0;
  g.batch = c.B; g.length = c.L; g.dim = c.P; g.lambda_stride = 1;
  memcpy(g.delta_stride, p.delta_stride, sizeof g.delta_stride);
  for (int64_t* s : {g.v_stride, g.h_stride, g.grad_h_stride, g.dv_stride}) { s[0] = c.L * c.P; s[1] = c.P; s[2] = 1; }
  if (c.per_event) { g.ddelta_stride[0] = c.L * c.P; g.ddelta_stride[1] = c.P; g.ddelta_stride[2] = 1; }
  else { g.ddelta_stride[0] = c.P; g.ddelta_stride[2] = 1; }
  g.dt_stride[0] = c.L; g.dt_stride[1] = 1;
  for (int64_t* s : {g.grad_h_last_stride, g.h0_stride, g.dh0_stride, g.dlambda_stride}) { s[0] = c.P; s[1] = 1; }
  g.dtype = c.dtype; g.real_dtype = c.real_dtype; g.disc = c.disc; g.reverse = c.reverse;
  const size_t nd = c.per_event ? BLP : BP;
  Bytes dl[2], dd[2], dv[2], dh[2];
  for (int i = 0; i < 2; ++i) {
    dl[i].b.assign(BP * csize(c.dtype), 0xA5);
    dd[i].b.assign(nd * (single ? 4 : 8), 0xA5);
    dv[i].b.assign(BLP * csize(c.dtype), 0xA5);
    dh[i].b.assign(BP * csize(c.dtype), 0xA5);
  }
  lrnn_event_scan_bwd_params gc = g, gg = g;
  gc.dlambda = dl[0].data(); gc.ddelta = dd[0].data(); gc.dv = dv[0].data(); gc.dh0 = dh[0].data();
  gg.dlambda = dl[1].data(); gg.ddelta = dd[1].data(); gg.dv = dv[1].data(); gg.dh0 = dh[1].data();
  ASSERT_EQ(lrnn_event_scan_bwd_cpu(&gc, 0, c.B * c.P), LRNN_OK);
  const double btol = single ? 1e-4 : 1e-11;   // sums in another order
  for (int64_t T : {int64_t(8), int64_t(24), int64_t(64)}) {
    SCOPED_TRACE(testing::Message() << "T " << T);
    for (Bytes* b : {&dl[1], &dd[1], &dv[1], &dh[1]}) std::fill(b->b.begin(), b->b.end(), 0xA5);
    const lrnn_event_cuda::RsLayout o = lrnn_event_cuda::rs_layout<R>(c.B, c.L, c.P, T, true);
    std::vector<uint64_t> ws(static_cast<size_t>((o.bytes + 7) / 8), 0xA5A5A5A5A5A5A5A5ull);
    rs_backward<R, TR>(c, gg, T, o, ws.data());
    EXPECT_LE(max_rel(dl[1], dl[0], BP, true, single), btol) << "dLambda";
    EXPECT_LE(max_rel(dd[1], dd[0], nd, false, single), btol) << "ddelta";
    EXPECT_LE(max_rel(dv[1], dv[0], BLP, true, single), btol) << "dv";
    EXPECT_LE(max_rel(dh[1], dh[0], BP, true, single), btol) << "dh0";
  }
}

}  // namespace

TEST(EventScanCudaEmulated, MatchesCpuKernels) {
  for (int disc : {LRNN_DISC_ZOH, LRNN_DISC_DIRAC, LRNN_DISC_ASYNC})
    for (int64_t L : {1, 5, 1100})   // 1100: 138 / 46 / 18 tiles of 8 / 24 / 64 steps
      for (bool per_event : {false, true})
        for (bool rev : {false, true}) {
          SCOPED_TRACE(testing::Message() << "disc " << disc << " L " << L << " per_event " << per_event
                                          << " rev " << rev);
          run_case<double, double>({1, L, 6, LRNN_C128, LRNN_F64, disc, per_event, rev});
          run_case<float, float>({1, L, 6, LRNN_C64, LRNN_F32, disc, per_event, rev});
        }
  run_case<double, double>({3, 1100, 6, LRNN_C128, LRNN_F64, LRNN_DISC_ASYNC, true, true});
  run_case<float, uint16_t>({2, 70, 9, LRNN_C64, LRNN_BF16, LRNN_DISC_ZOH, true, false});
  run_case<float, uint16_t>({1, 33, 5, LRNN_C64, LRNN_BF16, LRNN_DISC_ASYNC, false, true});
  // several chains (2 batch rows x 2 channel groups, the second partial), 375 tiles of 8 steps
  // per chain (two rounds of the carry block); and L = 0 (one empty tile writes h_last, dh0)
  run_case<float, float>({2, 3000, 40, LRNN_C64, LRNN_F32, LRNN_DISC_ZOH, false, false});
  run_case<float, float>({1, 2500, 6, LRNN_C64, LRNN_F32, LRNN_DISC_ASYNC, false, true});
  run_case<double, double>({2, 300, 33, LRNN_C128, LRNN_F64, LRNN_DISC_ASYNC, true, true});
  run_case<double, double>({2, 0, 7, LRNN_C128, LRNN_F64, LRNN_DISC_ZOH, false, false});
}
