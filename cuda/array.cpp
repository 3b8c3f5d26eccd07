// The caching allocator, the device check and the copies behind pyconvnet.cuda's arrays.
#include "array.h"
#include <cuda_runtime.h>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include "common.cuh"
#include "ops.cuh"

namespace pcn {
namespace cuda {
namespace {

// Free lists by rounded size: 512-byte steps up to 1 MiB, 2 MiB steps above (at most ~1.5% waste
// on the large activations, and few distinct sizes so that blocks are found again).
size_t round_size(size_t bytes) {
  if (bytes <= (1u << 20)) return std::max<size_t>(512, (bytes + 511) & ~size_t(511));
  const size_t step = size_t(2) << 20;
  return (bytes + step - 1) / step * step;
}

class Cache {
 public:
  void* get(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        stats_.cached -= bytes;
        take(bytes);
        return p;
      }
    }
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {  // give the cached blocks back and try once more
      cudaGetLastError();
      release_all();
      e = cudaMalloc(&p, bytes);
    }
    if (e != cudaSuccess) {
      cudaGetLastError();
      MemoryStats s = stats();
      throw std::runtime_error("pyconvnet.cuda: cannot allocate " + std::to_string(bytes) +
                               " bytes of device memory (" + cudaGetErrorString(e) + "; " +
                               std::to_string(s.in_use) + " bytes in use by arrays)");
    }
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.mallocs;
    take(bytes);
    return p;
  }
  void put(void* p, size_t bytes) {  // no CUDA call: safe during interpreter shutdown
    std::lock_guard<std::mutex> lock(mu_);
    free_[bytes].push_back(p);
    stats_.in_use -= bytes;
    stats_.cached += bytes;
  }
  void release_all() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& kv : free_)
      for (void* p : kv.second) {
        CUDA_CHECK(cudaFree(p));
        ++stats_.frees;
        stats_.cached -= kv.first;
      }
    free_.clear();
  }
  MemoryStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  void take(size_t bytes) {
    stats_.in_use += bytes;
    stats_.peak = std::max(stats_.peak, stats_.in_use);
  }
  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  MemoryStats stats_;
};

Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: blocks may come back during shutdown
  return *c;
}

}  // namespace

Block::~Block() {
  if (ptr) cache().put(ptr, bytes);
}

std::shared_ptr<Block> device_alloc(size_t bytes) {
  require_device();
  auto b = std::make_shared<Block>();
  b->bytes = round_size(bytes);
  b->ptr = cache().get(b->bytes);
  return b;
}

MemoryStats memory_stats() { return cache().stats(); }
void empty_cache() { cache().release_all(); }

bool device_usable(std::string* why) {
  static const std::string reason = [] {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    }
    if (n < 1) return std::string("no CUDA device found");
    cudaDeviceProp p;
    e = cudaGetDeviceProperties(&p, 0);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    }
    if (p.major < 8)
      return "device 0 (" + std::string(p.name) + ") has compute capability " +
             std::to_string(p.major) + "." + std::to_string(p.minor) +
             "; this build targets 8.0 and newer";
    // A working context on device 0, and a kernel of this build that runs there (a build without
    // code for this architecture, a busy exclusive-mode GPU, ... are reported here, not by the
    // first op). Any error is cleared; a sticky one would make every later call fail anyway.
    void* probe = nullptr;
    e = cudaSetDevice(0);
    if (e == cudaSuccess) e = cudaFree(nullptr);  // creates the primary context
    if (e == cudaSuccess) e = cudaMalloc(&probe, 1);
    if (e == cudaSuccess) {
      try {
        fill_u8(static_cast<uint8_t*>(probe), 1, 1);
        e = cudaDeviceSynchronize();
      } catch (const std::exception& ex) {
        cudaFree(probe);
        cudaGetLastError();
        return "device 0 (" + std::string(p.name) + ") cannot run this build's kernels: " + ex.what();
      }
      const cudaError_t f = cudaFree(probe);
      if (e == cudaSuccess) e = f;
    }
    if (e != cudaSuccess) {
      cudaGetLastError();
      return "device 0 (" + std::string(p.name) + ") has no working CUDA context: " +
             cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
    }
    return std::string();
  }();
  if (why) *why = reason;
  return reason.empty();
}

void require_device() {
  std::string why;
  if (!device_usable(&why)) throw std::runtime_error("pyconvnet.cuda: no usable CUDA device: " + why);
}

size_t itemsize(DType t) {
  switch (t) {
    case DType::F32: case DType::I32: return 4;
    case DType::F64: case DType::I64: return 8;
    case DType::U8: return 1;
  }
  return 1;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F64: return "float64";
    case DType::I32: return "int32";
    case DType::I64: return "int64";
    case DType::U8: return "uint8";
  }
  return "?";
}

int64_t DeviceArray::size() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

DeviceArray empty(const std::vector<int64_t>& shape, DType t) {
  DeviceArray a;
  a.shape = shape;
  a.dtype = t;
  for (int64_t d : shape)
    if (d < 0) throw std::invalid_argument("pyconvnet.cuda: negative dimension in shape");
  a.block = device_alloc(std::max<size_t>(a.nbytes(), 1));
  return a;
}

void copy_d2d(const DeviceArray& dst, const DeviceArray& src) {
  if (dst.nbytes() != src.nbytes()) throw std::invalid_argument("copy: sizes differ");
  if (dst.nbytes() && dst.data() != src.data())
    CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), dst.nbytes(), cudaMemcpyDeviceToDevice, 0));
}

// Host to device through pinned staging, so that the host need not wait for the GPU: cudaMemcpy
// from pageable memory first waits for the work queued before it, so a training loop's batch
// upload stalled until the previous step had finished, and the next step's launches could not
// overlap it. The source is copied into one of two pinned buffers and the upload is queued
// asynchronously on the stream (ordered after the work before it, as before); a buffer is reused
// once its previous upload has finished (its event), so two uploads can be in flight. Returns
// once `src` may be reused, as cudaMemcpy does. The buffers grow to the largest staged upload;
// bigger ones (one-off weight uploads: AlexNet's parameters are 244 MB) go through cudaMemcpy,
// so staging holds at most 2 x 128 MiB (AlexNet's batch of 128 is 79 MB).
namespace {
constexpr size_t kMaxStaged = size_t(128) << 20;
struct Staging {
  struct Slot {
    void* host = nullptr;
    size_t bytes = 0;
    cudaEvent_t done = nullptr;  // recorded after the slot's last upload
  };
  std::mutex mu;
  Slot slot[2];
  int next = 0;
};
Staging& staging() {
  static Staging* s = new Staging;  // never destroyed: no CUDA calls during exit
  return *s;
}
}  // namespace

void copy_h2d(const DeviceArray& dst, const void* src) {
  const size_t n = dst.nbytes();
  if (!n) return;
  if (n > kMaxStaged) {
    CUDA_CHECK(cudaMemcpy(dst.data(), src, n, cudaMemcpyHostToDevice));
    return;
  }
  Staging& st = staging();
  std::lock_guard<std::mutex> lock(st.mu);
  Staging::Slot& s = st.slot[st.next];
  st.next ^= 1;
  if (!s.done) CUDA_CHECK(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventSynchronize(s.done));  // the slot's previous upload has finished
  if (s.bytes < n) {
    if (s.host) CUDA_CHECK(cudaFreeHost(s.host));
    s.host = nullptr;
    s.bytes = 0;
    CUDA_CHECK(cudaHostAlloc(&s.host, n, cudaHostAllocDefault));
    s.bytes = n;
  }
  std::memcpy(s.host, src, n);
  CUDA_CHECK(cudaMemcpyAsync(dst.data(), s.host, n, cudaMemcpyHostToDevice, 0));
  CUDA_CHECK(cudaEventRecord(s.done, 0));
}

void copy_d2h(void* dst, const DeviceArray& src) {
  if (src.nbytes()) CUDA_CHECK(cudaMemcpy(dst, src.data(), src.nbytes(), cudaMemcpyDeviceToHost));
}

void synchronize() {
  require_device();
  CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace cuda
}  // namespace pcn
