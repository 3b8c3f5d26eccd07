// The harness's device memory and cuBLAS (tests/cuda_emu/harness.cpp only; the emulated _cuda
// module uses cuda/array.cpp's caching allocator and cuda/cublas.cpp instead). Defines what
// cuda/array.h and cuda/cublas.h declare, for the kernels of cuda/*.cu: exact-size device blocks
// with guard bytes checked after every call, and the reference "cuBLAS" as the cuBLAS backend.
#pragma once
#include <set>
#include "array.h"   // cuda/: Block, device_alloc
#include "cublas.h"  // cuda/: CublasApi, cublas_if_selected
#include "cuda_emu.h"
#include "reference_cublas.h"

namespace emu {

// device_alloc()'s blocks: 256-byte aligned as cudaMalloc's, NaN-poisoned (0xFF bytes), with
// 256 guard bytes on each side that must survive every kernel.
constexpr size_t kGuard = 256;
inline std::mutex blocks_mu;
inline std::set<const pcn::cuda::Block*> live_blocks;
inline bool guards_intact(const pcn::cuda::Block* b) {
  const unsigned char* base = static_cast<const unsigned char*>(b->ptr) - kGuard;
  for (size_t i = 0; i < kGuard; ++i)
    if (base[i] != 0xA5 || base[kGuard + b->bytes + i] != 0xA5) return false;
  return true;
}
// Checks every live block; false if any guard byte changed.
inline bool all_guards_intact() {
  std::lock_guard<std::mutex> lock(blocks_mu);
  for (auto* b : live_blocks)
    if (!guards_intact(b)) return false;
  return true;
}

inline bool use_cublas = false;  // the harness's backend switch
inline pcn::cuda::CublasApi cublas_api{nullptr, cm_sgemm_h, cm_sgemm_batched};

}  // namespace emu

namespace pcn {
namespace cuda {
Block::~Block() {
  {
    std::lock_guard<std::mutex> lock(emu::blocks_mu);
    emu::live_blocks.erase(this);
  }
  {
    std::lock_guard<std::mutex> lock(emu::malloc_mu);  // device memory to cudaMemcpy's checks
    emu::malloc_blocks.erase(reinterpret_cast<uintptr_t>(ptr));
  }
  std::free(static_cast<unsigned char*>(ptr) - emu::kGuard);
}
std::shared_ptr<Block> device_alloc(size_t bytes) {
  const size_t room = (bytes + 255) / 256 * 256;
  auto* base = static_cast<unsigned char*>(std::aligned_alloc(256, room + 2 * emu::kGuard));
  if (!base) throw std::runtime_error("device_alloc: out of memory");
  std::memset(base, 0xA5, emu::kGuard);
  std::memset(base + emu::kGuard, 0xFF, bytes);
  std::memset(base + emu::kGuard + bytes, 0xA5, room - bytes + emu::kGuard);
  auto b = std::make_shared<Block>();
  b->ptr = base + emu::kGuard;
  b->bytes = bytes;  // guards start right after the requested bytes
  {
    std::lock_guard<std::mutex> lock(emu::malloc_mu);
    emu::malloc_blocks[reinterpret_cast<uintptr_t>(b->ptr)] = bytes;
  }
  std::lock_guard<std::mutex> lock(emu::blocks_mu);
  emu::live_blocks.insert(b.get());
  return b;
}
const CublasApi* cublas_if_selected() { return emu::use_cublas ? &emu::cublas_api : nullptr; }
}  // namespace cuda
}  // namespace pcn
