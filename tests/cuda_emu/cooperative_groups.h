/* cooperative_groups.h (emulation): the thread-block-cluster part of CUDA's cooperative groups
 * that the lrnn kernels use, for the emulation in cuda_runtime.h (the blocks of a cluster run
 * together there). */
#pragma once

#include "cuda_runtime.h"

namespace cooperative_groups {
struct cluster_group {
  /* every thread of every block of the cluster */
  static void sync() { emu::cluster.all->arrive_and_wait(); }
  static unsigned block_rank() { return emu::cluster.rank; }
  static unsigned num_blocks() { return (unsigned)emu::cluster.blocks->size(); }
  /* the same shared-memory location in block `rank` of the cluster (dynamic shared memory only:
   * static __shared__ variables are not per block here) */
  template <typename T> static T *map_shared_rank(T *addr, int rank) {
    unsigned char *own = emu::block->smem.data(), *p = reinterpret_cast<unsigned char *>(addr);
    const size_t off = (size_t)(p - own);
    return reinterpret_cast<T *>((*emu::cluster.blocks)[(size_t)rank].smem.data() + off);
  }
};
inline cluster_group this_cluster() { return {}; }
}  // namespace cooperative_groups
