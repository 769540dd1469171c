// test_emu_selective_scan.cpp: runs the CUDA selective-scan launchers (csrc/cuda/selective_scan*.cu,
// on the CPU through the emulation in this folder) against the CPU kernels (csrc/cpu) on random
// inputs: f32 / bf16 / f16, N from 1 to 256, lengths around the tile and chunk boundaries,
// G in {1, 2}, variable and time-invariant B / C, with and without z, D, delta_bias, softplus, h0,
// dt_A, and (B, D, L) / misaligned / batch-first (B, L, D) layouts. Forward: y, h_last and the
// chunk states; backward (from the same chunk states): every gradient, the variable dB / dC with
// the CUDA partition into parts. Outputs are poisoned with NaN first.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "lrnn/selective_scan.h"

extern "C" {
#include "../../csrc/cpu/scalar.h"
}

namespace {

std::mt19937_64 rng(99);
double uni(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }

int esize(lrnn_dtype t) { return t == LRNN_F32 ? 4 : t == LRNN_F64 ? 8 : 2; }
void put(lrnn_dtype t, void *b, int64_t i, double v) {
  switch (t) {
    case LRNN_F32: ((float *)b)[i] = (float)v; break;
    case LRNN_F64: ((double *)b)[i] = v; break;
    case LRNN_BF16: ((uint16_t *)b)[i] = lrnn_f32_to_bf16((float)v); break;
    case LRNN_F16: ((uint16_t *)b)[i] = lrnn_f32_to_f16((float)v); break;
    default: break;
  }
}
double get(lrnn_dtype t, const void *b, int64_t i) {
  switch (t) {
    case LRNN_F32: return ((const float *)b)[i];
    case LRNN_F64: return ((const double *)b)[i];
    case LRNN_BF16: return lrnn_bf16_to_f32(((const uint16_t *)b)[i]);
    case LRNN_F16: return lrnn_f16_to_f32(((const uint16_t *)b)[i]);
    default: return 0;
  }
}

// A buffer of n elements (+ `off` leading ones), poisoned with NaN.
struct Buf {
  lrnn_dtype t;
  int64_t n;
  std::vector<unsigned char> mem;
  void *ptr;
  Buf(lrnn_dtype t_, int64_t n_, int off = 0) : t(t_), n(n_), mem((size_t)(n_ + off + 8) * esize(t_) + 64) {
    uintptr_t a = ((uintptr_t)mem.data() + 63) / 64 * 64;
    ptr = (void *)(a + (size_t)off * esize(t));
    for (int64_t i = 0; i < n; ++i) put(t, ptr, i, NAN);
  }
  void randn(double lo, double hi) {
    for (int64_t i = 0; i < n; ++i) put(t, ptr, i, uni(lo, hi));
  }
};

int failures = 0, checks = 0;

void compare(const std::string &tag, const char *what, const Buf &got, const Buf &want, double tol) {
  double scale = 1e-30, worst = 0;
  int64_t at = -1;
  for (int64_t i = 0; i < want.n; ++i) scale = std::fmax(scale, std::fabs(get(want.t, want.ptr, i)));
  for (int64_t i = 0; i < want.n; ++i) {
    const double e = std::fabs(get(got.t, got.ptr, i) - get(want.t, want.ptr, i));
    if (!(e <= worst)) { worst = std::isnan(e) ? INFINITY : e; at = i; }
  }
  ++checks;
  if (!(worst <= tol * scale)) {
    ++failures;
    if (failures < 30)
      std::printf("FAIL %s %s: max err %.3g at %lld (scale %.3g, tol %.3g)\n", tag.c_str(), what, worst, (long long)at,
                  scale, tol);
  }
}

struct Case {
  lrnn_dtype dt;
  int64_t B, D, L, N, G;
  bool varB, varC, z, Dskip, bias, softplus, h0, dtA, batch_first, misaligned;
  bool backward = true;
  int64_t seg = 0;  // time_segment: > 0 forces the CUDA time split
};

std::string tag_of(const Case &c) {
  char s[256];
  std::snprintf(s, sizeof s, "dt=%d B=%lld D=%lld L=%lld N=%lld G=%lld varB=%d varC=%d z=%d D=%d bias=%d sp=%d h0=%d dtA=%d bf=%d mis=%d seg=%lld",
                (int)c.dt, (long long)c.B, (long long)c.D, (long long)c.L, (long long)c.N, (long long)c.G, c.varB, c.varC,
                c.z, c.Dskip, c.bias, c.softplus, c.h0, c.dtA, c.batch_first, c.misaligned, (long long)c.seg);
  return s;
}

void run_case(const Case &c) {
  const lrnn_dtype T = c.dt, W = LRNN_F32;
  const int64_t B = c.B, D = c.D, L = c.L, N = c.N, G = c.G, nc = lrnn_selective_scan_num_chunks(L);
  const double tol = T == LRNN_F32 ? 2e-4 : T == LRNN_BF16 ? 2e-2 : 4e-3;
  const std::string tag = tag_of(c);
  const int off = c.misaligned ? 1 : 0;
  int64_t seq_st[3];
  if (c.batch_first) { seq_st[0] = L * D; seq_st[1] = 1; seq_st[2] = D; }
  else { seq_st[0] = D * L; seq_st[1] = L; seq_st[2] = 1; }
  const int64_t S = B * D * L;
  Buf u(T, S, off), delta(T, S, off), z(T, S, off), dtA(T, S, off), A(W, D * N), Dv(W, D), bias(W, D), h0(W, B * D * N);
  u.randn(-1, 1);
  delta.randn(c.softplus ? -2.0 : 0.01, c.softplus ? 1.0 : 0.5);
  z.randn(-2, 2);
  dtA.randn(0.01, 0.5);
  A.randn(-1.5, -0.05);
  Dv.randn(-1, 1);
  bias.randn(-0.2, 0.2);
  h0.randn(-1, 1);
  const int64_t nBv = B * G * N * L;
  Buf Bm(c.varB ? T : W, c.varB ? nBv : D * N), Cm(c.varC ? T : W, c.varC ? nBv : D * N);
  Bm.randn(-1, 1);
  Cm.randn(-1, 1);

  lrnn_selective_scan_params p{};
  p.u = u.ptr; p.delta = delta.ptr; p.A = A.ptr; p.Bm = Bm.ptr; p.Cm = Cm.ptr;
  p.D = c.Dskip ? Dv.ptr : nullptr; p.z = c.z ? z.ptr : nullptr; p.delta_bias = c.bias ? bias.ptr : nullptr;
  p.h0 = c.h0 ? h0.ptr : nullptr; p.dt_A = c.dtA ? dtA.ptr : nullptr;
  p.batch = B; p.dim = D; p.length = L; p.dstate = N; p.groups = G;
  p.B_variable = c.varB; p.C_variable = c.varC; p.delta_softplus = c.softplus;
  for (int k = 0; k < 3; ++k) p.u_stride[k] = p.delta_stride[k] = p.z_stride[k] = p.dt_A_stride[k] = p.y_stride[k] = seq_st[k];
  const int64_t vst[4] = {G * N * L, N * L, L, 1}, tst[4] = {N, 1, 0, 0};
  for (int k = 0; k < 4; ++k) { p.B_stride[k] = c.varB ? vst[k] : tst[k]; p.C_stride[k] = c.varC ? vst[k] : tst[k]; }
  p.A_stride[0] = N; p.A_stride[1] = 1; p.D_stride = 1; p.delta_bias_stride = 1;
  p.h0_stride[0] = p.h_last_stride[0] = D * N; p.h0_stride[1] = p.h_last_stride[1] = N; p.h0_stride[2] = p.h_last_stride[2] = 1;
  p.chunk_states_stride[0] = D * nc * N; p.chunk_states_stride[1] = nc * N; p.chunk_states_stride[2] = N; p.chunk_states_stride[3] = 1;
  p.dtype = T; p.wdtype = W;
  p.time_segment = c.seg;

  Buf y_ref(T, S, off), hl_ref(W, B * D * N), cs_ref(W, B * D * nc * N);
  Buf y_gpu(T, S, off), hl_gpu(W, B * D * N), cs_gpu(W, B * D * nc * N);
  lrnn_selective_scan_params pr = p, pg = p;
  pr.y = y_ref.ptr; pr.h_last = hl_ref.ptr; pr.chunk_states = cs_ref.ptr;
  pg.y = y_gpu.ptr; pg.h_last = hl_gpu.ptr; pg.chunk_states = cs_gpu.ptr;
  if (lrnn_selective_scan_fwd_cpu(&pr, 0, B * D) != LRNN_OK) { ++failures; std::printf("FAIL cpu fwd %s\n", tag.c_str()); return; }
  if (lrnn_selective_scan_fwd_cuda(&pg, nullptr) != LRNN_OK) { ++failures; std::printf("FAIL cuda fwd %s\n", tag.c_str()); return; }
  if (L > 0) compare(tag, "y", y_gpu, y_ref, tol);
  compare(tag, "h_last", hl_gpu, hl_ref, 2e-4);
  compare(tag, "chunk_states", cs_gpu, cs_ref, 2e-4);
  if (!c.backward) return;

  // backward from the CPU forward's chunk states, both implementations
  Buf gy(T, S, off), ghl(W, B * D * N);
  gy.randn(-1, 1);
  ghl.randn(-1, 1);
  struct Grads {
    Buf du, dd, dz, dta, dh0, dA, dD, ddb, dB, dC, dA_p, dD_p, ddb_p, dB_p, dC_p, seg_state;
    Grads(lrnn_dtype T, lrnn_dtype W, int64_t S, int off, int64_t B, int64_t D, int64_t N, int64_t nB, int64_t nC,
          int64_t parts, bool varB, bool varC, int64_t nseg)
        : du(T, S, off), dd(T, S, off), dz(T, S, off), dta(T, S, off), dh0(W, B * D * N), dA(W, D * N), dD(W, D),
          ddb(W, D), dB(W, nB), dC(W, nC), dA_p(W, nseg * B * D * N), dD_p(W, nseg * B * D), ddb_p(W, nseg * B * D),
          dB_p(W, varB ? parts * nB : nseg * B * D * N), dC_p(W, varC ? parts * nC : nseg * B * D * N),
          seg_state(W, nseg * B * D * 2 * N) {}
  };
  const int64_t nB = c.varB ? nBv : D * N, nC = c.varC ? nBv : D * N;
  const int64_t seg = (c.varB || c.varC) ? D / G : D;
  const int64_t cpb = lrnn_selective_scan_cuda_channels_per_block(N);
  const int64_t parts_gpu = (seg + cpb - 1) / cpb;  // as ops/selective_scan_cuda.cpp
  lrnn_selective_scan_params pc = p;
  pc.chunk_states = cs_ref.ptr;
  const int64_t nseg = lrnn_selective_scan_cuda_bwd_segments(&pc);
  if (c.seg > 0 && L > 2 * c.seg && nseg < 2 && N <= 64) { ++failures; std::printf("FAIL no backward split %s\n", tag.c_str()); }
  Grads gr(T, W, S, off, B, D, N, nB, nC, 1, c.varB, c.varC, 1),
      gg(T, W, S, off, B, D, N, nB, nC, parts_gpu, c.varB, c.varC, nseg);
  auto setup = [&](Grads &g, int64_t parts, int64_t segments) {
    lrnn_selective_scan_bwd_params q{};
    q.fwd = p;
    q.fwd.chunk_states = cs_ref.ptr;
    q.grad_y = gy.ptr; q.grad_h_last = ghl.ptr;
    for (int k = 0; k < 3; ++k) {
      q.grad_y_stride[k] = q.du_stride[k] = q.ddelta_stride[k] = q.dz_stride[k] = q.ddt_A_stride[k] = seq_st[k];
      q.grad_h_last_stride[k] = q.dh0_stride[k] = p.h0_stride[k];
    }
    q.du = g.du.ptr; q.ddelta = g.dd.ptr; q.dz = c.z ? g.dz.ptr : nullptr; q.ddt_A = c.dtA ? g.dta.ptr : nullptr;
    q.dh0 = g.dh0.ptr; q.dA_part = g.dA_p.ptr; q.dD_part = g.dD_p.ptr; q.ddelta_bias_part = g.ddb_p.ptr;
    q.dB_part = g.dB_p.ptr; q.dC_part = g.dC_p.ptr; q.parts = parts;
    q.segments = segments; q.seg_state = segments > 1 ? g.seg_state.ptr : nullptr;
    q.dA = g.dA.ptr; q.dD = g.dD.ptr; q.ddelta_bias = g.ddb.ptr; q.dB = g.dB.ptr; q.dC = g.dC.ptr;
    return q;
  };
  lrnn_selective_scan_bwd_params qr = setup(gr, 1, 1), qg = setup(gg, parts_gpu, nseg);
  if (lrnn_selective_scan_bwd_cpu(&qr, 0, lrnn_selective_scan_bwd_items(&qr)) != LRNN_OK ||
      lrnn_selective_scan_reduce_cpu(&qr, 0, lrnn_selective_scan_reduce_size(&qr)) != LRNN_OK) {
    ++failures; std::printf("FAIL cpu bwd %s\n", tag.c_str()); return;
  }
  if (lrnn_selective_scan_bwd_cuda(&qg, nullptr) != LRNN_OK) { ++failures; std::printf("FAIL cuda bwd %s\n", tag.c_str()); return; }
  const double gtol = T == LRNN_F32 ? 5e-4 : T == LRNN_BF16 ? 3e-2 : 6e-3;
  if (L > 0) {
    compare(tag, "du", gg.du, gr.du, gtol);
    compare(tag, "ddelta", gg.dd, gr.dd, gtol);
    if (c.z) compare(tag, "dz", gg.dz, gr.dz, gtol);
    if (c.dtA) compare(tag, "ddt_A", gg.dta, gr.dta, gtol);
  }
  compare(tag, "dh0", gg.dh0, gr.dh0, 5e-4);
  compare(tag, "dA", gg.dA, gr.dA, 5e-4);
  compare(tag, "dD", gg.dD, gr.dD, 5e-4);
  compare(tag, "ddelta_bias", gg.ddb, gr.ddb, 5e-4);
  compare(tag, "dB", gg.dB, gr.dB, 5e-4);
  compare(tag, "dC", gg.dC, gr.dC, 5e-4);
}

}  // namespace

int main(int argc, char **argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 60;
  const lrnn_dtype types[] = {LRNN_F32, LRNN_BF16, LRNN_F16};
  const int64_t Ns[] = {1, 5, 8, 16, 17, 32, 33, 64, 100, 128, 256};
  const int64_t Ls[] = {0, 1, 7, 16, 31, 33, 64, 65, 100, 130};
  // fixed cases first: the benchmark configuration at small size, each N once
  std::vector<Case> cases;
  for (int64_t N : Ns)
    cases.push_back({LRNN_F32, 2, 6, 70, N, 1, true, true, false, true, true, true, false, false, false, false});
  for (int i = 0; i < n; ++i) {
    Case c;
    c.dt = types[i % 3];
    c.B = 1 + rng() % 2;
    c.G = 1 + rng() % 2;
    c.D = c.G * (1 + rng() % 5);
    c.L = Ls[rng() % 10];
    c.N = Ns[rng() % 11];
    c.varB = rng() % 4 != 0; c.varC = rng() % 4 != 0;
    c.z = rng() % 2; c.Dskip = rng() % 2; c.bias = rng() % 2; c.softplus = rng() % 2; c.h0 = rng() % 2;
    c.dtA = rng() % 3 == 0; c.batch_first = rng() % 3 == 0; c.misaligned = rng() % 4 == 0;
    cases.push_back(c);
  }
  // rows beyond one block (RPB = 32 at N = 16), many rows (the 4-lane configuration)
  cases.push_back({LRNN_BF16, 2, 40, 100, 16, 2, true, true, true, true, true, true, true, false, false, false});
  cases.push_back({LRNN_F32, 3, 3000, 9, 16, 1, true, true, true, true, true, true, true, true, false, false, false});
  // the time split (forced segments of 128 steps): partial last segment, L a multiple of the
  // chunk, a last segment of one step, every dtype, time-invariant B / C, N padding
  const int64_t splitL[] = {300, 256, 385, 200};
  for (int i = 0; i < 12; ++i) {
    Case c{types[i % 3], 1 + i % 2, 3 + i % 4, splitL[i % 4], Ns[(i * 5) % 11], 1, i % 5 != 1, i % 5 != 2, i % 2 == 0,
           true, i % 3 == 0, i % 2 == 1, i % 4 != 0, i % 6 == 5, i % 5 == 4, false};
    c.seg = i < 10 ? 128 : 256;
    cases.push_back(c);
  }
  for (const Case &c : cases) run_case(c);
  std::printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
