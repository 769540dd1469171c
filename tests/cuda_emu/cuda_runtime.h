/* cuda_runtime.h (emulation): just enough of the CUDA runtime and device intrinsics to run the
 * lrnn CUDA C kernels on the CPU, one std::thread per CUDA thread, for checking their index
 * math, boundaries and synchronization without a GPU (see run.sh). Not a general emulator:
 * blocks run one after another, warps are the 32-thread groups of a block, shuffles and
 * __syncthreads are barriers. Built with AddressSanitizer and UBSan, it also catches
 * out-of-bounds and misaligned (vector) accesses. */
#pragma once

#include <algorithm>
#include <cmath>
#include <array>
#include <atomic>
#include <barrier>
#include <cstdint>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(8) int2 {
  int x, y;
};
struct alignas(16) int4 {
  int x, y, z, w;
};
struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) uint2 {
  unsigned x, y;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
typedef struct CUstream_st *cudaStream_t;
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidConfiguration = 9 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8, cudaFuncAttributePreferredSharedMemoryCarveout = 9 };
enum { cudaSharedmemCarveoutMaxShared = 100 };

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emu {
inline int sms = 132;
inline cudaError_t last_error = cudaSuccess;
inline size_t max_dyn_smem = 48 * 1024;   // raised by cudaFuncSetAttribute, as on the device

struct Block {
  std::unique_ptr<std::barrier<>> all;
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  std::vector<std::array<unsigned char, 16>> slots;
  std::vector<unsigned char> smem;
};
inline Block *block = nullptr;

inline unsigned char *dyn_smem() { return block->smem.data(); }

template <typename T, typename F> T shfl(T v, F src_lane) {
  static_assert(sizeof(T) <= 16, "shuffle of at most 16 bytes");
  const unsigned tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  std::memcpy(block->slots[tid].data(), &v, sizeof(T));
  block->warps[warp]->arrive_and_wait();
  T r;
  std::memcpy(&r, block->slots[warp * 32 + src_lane((int)lane)].data(), sizeof(T));
  block->warps[warp]->arrive_and_wait();
  return r;
}

template <typename K, typename... Args>
void launch(dim3 grid, dim3 threads, size_t smem, cudaStream_t, K kernel, Args... args) {
  if (threads.x == 0 || threads.x > 1024 || smem > max_dyn_smem) {
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  for (unsigned b = 0; b < grid.x; ++b) {
    Block blk;
    blk.all = std::make_unique<std::barrier<>>(threads.x);
    for (unsigned w = 0; w < (threads.x + 31) / 32; ++w)
      blk.warps.push_back(std::make_unique<std::barrier<>>(std::min(32u, threads.x - 32 * w)));
    blk.slots.resize(threads.x);
    blk.smem.assign(smem, 0xff);
    block = &blk;
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads.x; ++t)
      pool.emplace_back([&, t] {
        threadIdx = dim3(t);
        blockIdx = dim3(b);
        blockDim = threads;
        gridDim = grid;
        kernel(args...);
      });
    for (auto &th : pool) th.join();
    block = nullptr;
  }
}
}  // namespace emu

inline void __syncthreads() { emu::block->all->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::block->warps[threadIdx.x / 32]->arrive_and_wait(); }

template <typename T> T __shfl_up_sync(unsigned, T v, int d) {
  return emu::shfl(v, [d](int l) { return l - d >= 0 ? l - d : l; });
}
template <typename T> T __shfl_down_sync(unsigned, T v, int d) {
  return emu::shfl(v, [d](int l) { return l + d < 32 ? l + d : l; });
}
template <typename T> T __shfl_sync(unsigned, T v, int src) {
  return emu::shfl(v, [src](int) { return src & 31; });
}
template <typename T> T __shfl_xor_sync(unsigned, T v, int m, int width = 32) {
  return emu::shfl(v, [m, width](int l) { return ((l ^ m) & (width - 1)) | (l & ~(width - 1)); });
}
/* blocks run one at a time, but the threads of a block concurrently */
inline float atomicAdd(float *p, float v) {
  return std::atomic_ref<float>(*p).fetch_add(v, std::memory_order_relaxed);
}

inline cudaError_t cudaGetDevice(int *d) {
  *d = 0;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr, int) {
  *v = emu::sms;
  return cudaSuccess;
}
/* every block fits while the SM's 2048 threads do (registers are not modelled) */
template <typename K> cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *n, K, int threads, size_t) {
  *n = std::max(1, std::min(32, 2048 / threads));
  return cudaSuccess;
}
/* the H200's opt-in limit of 227 KiB per block (a shared-memory carveout, a percentage, is
 * accepted and has no effect here) */
template <typename K> cudaError_t cudaFuncSetAttribute(K, cudaFuncAttribute attr, int bytes) {
  if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return bytes >= 0 && bytes <= 100 ? cudaSuccess : cudaErrorInvalidConfiguration;
  if (bytes < 0 || bytes > 227 * 1024) return cudaErrorInvalidConfiguration;
  emu::max_dyn_smem = std::max(emu::max_dyn_smem, (size_t)bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) {
  std::memset(p, v, n);
  return cudaSuccess;
}
inline cudaError_t cudaGetLastError() {
  const cudaError_t e = emu::last_error;
  emu::last_error = cudaSuccess;
  return e;
}
