/* cuda_runtime.h (emulation): just enough of the CUDA runtime and device intrinsics to run the
 * lrnn CUDA C kernels on the CPU, one std::thread per CUDA thread, for checking their index
 * math, boundaries and synchronization without a GPU (see run.sh). Not a general emulator:
 * blocks run one after another (the blocks of a thread-block cluster together, see
 * cudaLaunchKernelEx and cooperative_groups.h), warps are the 32-thread groups of a block,
 * shuffles and __syncthreads are barriers. Built with AddressSanitizer and UBSan, it also catches
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
enum cudaSharedCarveout { cudaSharedmemCarveoutMaxShared = 100 };
enum cudaLaunchAttributeID { cudaLaunchAttributeClusterDimension = 4 };
struct cudaLaunchAttribute {
  cudaLaunchAttributeID id;
  struct {
    struct {
      unsigned x, y, z;
    } clusterDim;
  } val;
};
struct cudaLaunchConfig_t {
  dim3 gridDim, blockDim;
  size_t dynamicSmemBytes;
  cudaStream_t stream;
  cudaLaunchAttribute *attrs;
  unsigned numAttrs;
};

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
inline thread_local Block *block = nullptr;

/* the cluster of the calling thread's block: its blocks (by rank) and a barrier of all their threads */
struct Cluster {
  std::vector<Block> *blocks = nullptr;
  std::barrier<> *all = nullptr;
  unsigned rank = 0;
};
inline thread_local Cluster cluster;

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

/* Runs the grid in clusters of `ncl` consecutive blocks, the threads of a cluster's blocks all
 * at once (a plain launch is ncl = 1). */
template <typename K, typename... Args>
void launch_clusters(dim3 grid, dim3 threads, size_t smem, unsigned ncl, K kernel, Args... args) {
  if (threads.x == 0 || threads.x > 1024 || smem > max_dyn_smem || ncl == 0 || grid.x % ncl != 0) {
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  for (unsigned b0 = 0; b0 < grid.x; b0 += ncl) {
    std::vector<Block> blks(ncl);
    for (Block &blk : blks) {
      blk.all = std::make_unique<std::barrier<>>(threads.x);
      for (unsigned w = 0; w < (threads.x + 31) / 32; ++w)
        blk.warps.push_back(std::make_unique<std::barrier<>>(std::min(32u, threads.x - 32 * w)));
      blk.slots.resize(threads.x);
      blk.smem.assign(smem, 0xff);
    }
    std::barrier<> all((std::ptrdiff_t)(ncl * threads.x));
    std::vector<std::thread> pool;
    for (unsigned r = 0; r < ncl; ++r)
      for (unsigned t = 0; t < threads.x; ++t)
        pool.emplace_back([&, r, t] {
          block = &blks[r];
          cluster = Cluster{&blks, &all, r};
          threadIdx = dim3(t);
          blockIdx = dim3(b0 + r);
          blockDim = threads;
          gridDim = grid;
          kernel(args...);
        });
    for (auto &th : pool) th.join();
  }
}

template <typename K, typename... Args>
void launch(dim3 grid, dim3 threads, size_t smem, cudaStream_t, K kernel, Args... args) {
  launch_clusters(grid, threads, smem, 1, kernel, args...);
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
/* the H200's opt-in limit of 227 KiB per block (a shared-memory carveout, a percentage or -1
 * for the default, is accepted and has no effect here) */
template <typename K> cudaError_t cudaFuncSetAttribute(K, cudaFuncAttribute attr, int bytes) {
  if (attr == cudaFuncAttributePreferredSharedMemoryCarveout)
    return bytes >= -1 && bytes <= 100 ? cudaSuccess : cudaErrorInvalidConfiguration;
  if (bytes < 0 || bytes > 227 * 1024) return cudaErrorInvalidConfiguration;
  emu::max_dyn_smem = std::max(emu::max_dyn_smem, (size_t)bytes);
  return cudaSuccess;
}
/* clusters of the config that fit at once: every SM's 2048 threads, as in the occupancy query above */
template <typename K> cudaError_t cudaOccupancyMaxActiveClusters(int *n, K, const cudaLaunchConfig_t *cfg) {
  unsigned ncl = 1;
  for (unsigned i = 0; i < cfg->numAttrs; ++i)
    if (cfg->attrs[i].id == cudaLaunchAttributeClusterDimension) ncl = cfg->attrs[i].val.clusterDim.x;
  *n = (int)(emu::sms * std::max(1u, 2048 / cfg->blockDim.x) / ncl);
  return cudaSuccess;
}
template <typename... Params, typename... Args>
cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t *cfg, void (*kernel)(Params...), Args &&...args) {
  unsigned ncl = 1;
  for (unsigned i = 0; i < cfg->numAttrs; ++i)
    if (cfg->attrs[i].id == cudaLaunchAttributeClusterDimension) ncl = cfg->attrs[i].val.clusterDim.x;
  if (ncl > 8) return cudaErrorInvalidConfiguration;  /* the portable cluster size limit */
  emu::launch_clusters(cfg->gridDim, cfg->blockDim, cfg->dynamicSmemBytes, ncl, kernel, (Params)args...);
  const cudaError_t e = emu::last_error;
  emu::last_error = cudaSuccess;
  return e;
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
