// Device memory: a caching allocator and the device array that pyconvnet.cuda exposes.
//
// Memory comes from cudaMalloc only when the cache has no free block of the (rounded) size, so a
// training loop whose shapes repeat stops calling cudaMalloc after its first step. A Block goes
// back to the cache when its last owner (an array, a view, a DLPack capsule) lets go; all work is
// on one stream, so a block freed by one op can be handed to the next at once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace pcn {
namespace cuda {

struct Block {
  void* ptr = nullptr;
  size_t bytes = 0;  // the rounded size: the key of the free list it returns to
  ~Block();
};
std::shared_ptr<Block> device_alloc(size_t bytes);  // throws std::runtime_error when out of memory

struct MemoryStats {
  size_t in_use = 0, cached = 0, peak = 0;  // bytes
  int64_t mallocs = 0, frees = 0;           // cudaMalloc / cudaFree calls so far
};
MemoryStats memory_stats();
void empty_cache();  // cudaFree every cached (unused) block

// A usable device: a driver, at least one GPU, compute capability >= 8.0. Checked once; `why`
// gets the reason when not. Never throws, so it is safe on machines without CUDA.
bool device_usable(std::string* why);
void require_device();  // throws std::runtime_error naming the reason

enum class DType : uint8_t { F32, F64, I32, I64, U8 };
size_t itemsize(DType t);
const char* dtype_name(DType t);  // numpy's name: "float32", ...

// A C-contiguous array in a Block, at a byte offset (views share the block).
struct DeviceArray {
  std::shared_ptr<Block> block;
  size_t offset = 0;
  std::vector<int64_t> shape;
  DType dtype = DType::F32;

  int64_t size() const;
  size_t nbytes() const { return (size_t)size() * itemsize(dtype); }
  void* data() const { return static_cast<char*>(block->ptr) + offset; }
};

DeviceArray empty(const std::vector<int64_t>& shape, DType t);
void copy_d2d(const DeviceArray& dst, const DeviceArray& src);  // same nbytes
void copy_h2d(const DeviceArray& dst, const void* src);         // dst.nbytes() bytes
void copy_d2h(void* dst, const DeviceArray& src);
void synchronize();

}  // namespace cuda
}  // namespace pcn
