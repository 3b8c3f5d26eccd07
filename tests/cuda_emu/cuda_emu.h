// Host emulation of the CUDA subset that cuda/*.cu use, so that their kernels run unmodified on the
// CPU (tests/test_cuda_emu.py; no GPU needed). test_cuda_emu.py copies cuda/common.cuh and
// cuda/*.cu into a temporary directory, puts `#include "cuda_emu.h"` first, and rewrites each
// `kernel<<<grid, block>>>(args)` into `emu::launch(grid, block, "kernel", kernel, args)`.
//
// Execution model: the blocks of a grid run one after another; the threads of a block are real
// std::threads (one per CUDA thread, kept across launches), so __syncthreads is a std::barrier and
// a warp shuffle is an exchange through a per-warp barrier. A thread that returns leaves both barriers, as an exited
// CUDA thread does. Kernel arguments are converted to the kernel's parameter types once, at the
// launch, and every thread gets its own copy (kernels may modify their parameters).
//
// Checked here (a violation prints "EMU ..." and aborts, or fails the launch as CUDA would):
// launch limits (grid, block, 4 KiB of arguments), 16-byte alignment of float4 __ldg, full-warp
// shuffles with no exited lane, and writes past the ends of device_alloc() blocks (guard bytes).
// Not emulated: the memory model (blocks never run concurrently, so inter-block races are
// invisible), warp scheduling and divergence, shared-memory limits, fast-math intrinsics, speed.
#pragma once
#include <math.h>
#include <algorithm>
#include <array>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <semaphore>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>
#include "array.h"   // cuda/: Block, device_alloc (defined below)
#include "cublas.h"  // cuda/: CublasApi, cublas_if_selected (defined below: a reference "cuBLAS")

// ---- language ----
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static  // one block at a time: a static local is the block's shared memory
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
constexpr int warpSize = 32;

struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

using std::max;
using std::min;

namespace emu {

inline std::mutex io_mu;
inline thread_local unsigned tid;      // linear thread index in the block
inline const char* kernel_name = "";  // the running kernel, for messages
inline int sm_count = 132;             // what cudaDeviceGetAttribute reports (H100: 132)
inline long launches = 0, bad_launches = 0;

[[noreturn]] inline void fatal(const std::string& what) {
  std::lock_guard<std::mutex> lock(io_mu);
  std::printf("EMU FATAL in kernel %s (block %u,%u,%u thread %u): %s\n", kernel_name, blockIdx.x,
              blockIdx.y, blockIdx.z, tid, what.c_str());
  std::fflush(stdout);
  std::abort();
}

// Per-block synchronization: the block barrier, one barrier and exchange slots per warp, and how
// many lanes of each warp have returned.
struct BlockSync {
  unsigned threads = 0;
  std::unique_ptr<std::barrier<>> block;
  std::vector<std::unique_ptr<std::barrier<>>> warp;
  std::vector<std::array<uint64_t, 32>> slot;
  std::unique_ptr<std::atomic<int>[]> exited;
  void reset() {
    const unsigned warps = (threads + 31) / 32;
    block = std::make_unique<std::barrier<>>(threads);
    warp.resize(warps);
    slot.resize(warps);
    exited.reset(new std::atomic<int>[warps]());
    for (unsigned w = 0; w < warps; ++w) warp[w] = std::make_unique<std::barrier<>>(std::min(32u, threads - 32 * w));
  }
};
inline BlockSync* sync = nullptr;

// Lane `src` of this warp's value v (all 32 lanes must take part; mask must be full).
template <class T>
T exchange(unsigned mask, T v, unsigned src, int width) {
  static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
  if (mask != 0xffffffffu || width != 32) fatal("shuffle with a partial mask or width (not emulated)");
  const unsigned w = tid / 32, lane = tid % 32;
  if (sync->threads < 32 * (w + 1)) fatal("full-mask shuffle in a partial warp");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  sync->slot[w][lane] = bits;
  sync->warp[w]->arrive_and_wait();
  if (sync->exited[w].load()) fatal("full-mask shuffle after lanes of the warp returned");
  const uint64_t got = sync->slot[w][src % 32];
  sync->warp[w]->arrive_and_wait();  // nobody overwrites a slot before every lane has read
  T r;
  std::memcpy(&r, &got, sizeof(T));
  return r;
}

// Worker t plays CUDA thread t of every block. The workers persist across launches (creating
// 256 threads per launch cost more than most kernels).
class Pool {
 public:
  void run(unsigned threads, const std::function<void(unsigned)>& job) {  // job(t) on workers [0, threads)
    while (workers_.size() < threads) add();
    job_ = &job;
    running_ = threads;
    for (unsigned t = 0; t < threads; ++t) workers_[t]->go.release();
    for (unsigned left; (left = running_.load()) != 0;) running_.wait(left);
  }
  ~Pool() {
    quit_ = true;
    for (auto& w : workers_) w->go.release();
    for (auto& w : workers_) w->thread.join();
  }

 private:
  struct Worker {
    std::binary_semaphore go{0};
    std::thread thread;
  };
  std::vector<std::unique_ptr<Worker>> workers_;
  const std::function<void(unsigned)>* job_ = nullptr;
  std::atomic<unsigned> running_{0};
  bool quit_ = false;
  void add() {
    auto w = std::make_unique<Worker>();
    Worker* me = w.get();
    const unsigned t = (unsigned)workers_.size();
    w->thread = std::thread([this, me, t] {
      for (me->go.acquire(); !quit_; me->go.acquire()) {
        (*job_)(t);
        if (running_.fetch_sub(1) == 1) running_.notify_one();
      }
    });
    workers_.push_back(std::move(w));
  }
};
inline Pool pool;

// Runs body() as every thread of every block of the grid.
inline void run_grid(dim3 grid, dim3 block, const std::function<void()>& body) {
  const unsigned T = block.x * block.y * block.z;
  const uint64_t nblocks = (uint64_t)grid.x * grid.y * grid.z;
  BlockSync s;
  s.threads = T;
  s.reset();
  sync = &s;
  auto next_block = [&s]() noexcept { s.reset(); };  // runs once every thread left the block
  std::barrier<decltype(next_block)> between(T, next_block);
  pool.run(T, [&](unsigned t) {
    tid = t;
    threadIdx = dim3(t % block.x, t / block.x % block.y, t / (block.x * block.y));
    for (uint64_t b = 0; b < nblocks; ++b) {
      blockIdx = dim3((unsigned)(b % grid.x), (unsigned)(b / grid.x % grid.y), (unsigned)(b / ((uint64_t)grid.x * grid.y)));
      body();
      s.exited[t / 32]++;
      s.warp[t / 32]->arrive_and_drop();
      s.block->arrive_and_drop();
      between.arrive_and_wait();
    }
  });
  sync = nullptr;
}

}  // namespace emu

// ---- runtime API ----
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorInvalidConfiguration = 9 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
using cudaStream_t = void*;
namespace emu { inline cudaError_t last_error = cudaSuccess; }

inline cudaError_t cudaGetLastError() { cudaError_t e = emu::last_error; emu::last_error = cudaSuccess; return e; }
inline cudaError_t cudaPeekAtLastError() { return emu::last_error; }
inline const char* cudaGetErrorName(cudaError_t e) {
  return e == cudaSuccess ? "cudaSuccess" : e == cudaErrorInvalidValue ? "cudaErrorInvalidValue" : "cudaErrorInvalidConfiguration";
}
inline const char* cudaGetErrorString(cudaError_t e) {
  return e == cudaSuccess ? "no error" : e == cudaErrorInvalidValue ? "invalid argument" : "invalid configuration argument";
}
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  if (a != cudaDevAttrMultiProcessorCount) return cudaErrorInvalidValue;
  *v = emu::sm_count;
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t = nullptr) { std::memset(p, v, n); return cudaSuccess; }

// ---- device functions ----
inline void __syncthreads() { emu::sync->block->arrive_and_wait(); }
template <class T> T __shfl_xor_sync(unsigned mask, T v, int m, int width = 32) { return emu::exchange(mask, v, (emu::tid % 32) ^ m, width); }
template <class T> T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32) {
  const unsigned lane = emu::tid % 32;
  return emu::exchange(mask, v, lane + d < 32 ? lane + d : lane, width);
}
template <class T> T __shfl_sync(unsigned mask, T v, int src, int width = 32) { return emu::exchange(mask, v, (unsigned)src, width); }
template <class T> T __ldg(const T* p) {
  if (reinterpret_cast<uintptr_t>(p) % alignof(T))
    emu::fatal("__ldg of " + std::to_string(sizeof(T)) + " bytes from a misaligned address");
  return *p;
}
inline int atomicAdd(int* p, int v) { return std::atomic_ref<int>(*p).fetch_add(v); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_add(v); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) { return std::atomic_ref<unsigned long long>(*p).fetch_add(v); }
inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }
inline double atomicAdd(double* p, double v) { return std::atomic_ref<double>(*p).fetch_add(v); }

namespace emu {

// kernel<<<grid, block>>>(args...): a bad configuration fails the launch (cudaGetLastError reports
// it, so the code's CUDA_LAUNCH_CHECK throws) and runs nothing.
template <class... P, class... A>
void launch(dim3 grid, dim3 block, const char* name, void (*kernel)(P...), A&&... a) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
  constexpr size_t arg_bytes = (sizeof(P) + ... + 0);
  // 4 KiB: the limit before CUDA 12.1 (and what sgd.cu's segment table is sized for).
  static_assert(arg_bytes <= 4096, "kernel arguments exceed 4 KiB");
  ++launches;
  const uint64_t threads = (uint64_t)block.x * block.y * block.z;
  if (grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535 ||
      threads < 1 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64) {
    std::printf("EMU bad launch of %s: grid (%u, %u, %u) block (%u, %u, %u)\n", name, grid.x, grid.y,
                grid.z, block.x, block.y, block.z);
    ++bad_launches;
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  std::tuple<P...> args(std::forward<A>(a)...);
  kernel_name = name;
  gridDim = grid;
  blockDim = block;
  run_grid(grid, block, [&] { std::apply(kernel, args); });  // by value: a copy per thread
  kernel_name = "";
}

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

// The reference "cuBLAS": column-major, double accumulation, argument checks as cublasSgemm's.
inline bool use_cublas = false;
inline long cublas_calls = 0;
inline int cm_sgemm(int ta, int tb, int m, int n, int k, const float* alpha, const float* A, int lda,
                    const float* B, int ldb, const float* beta, float* C, int ldc) {
  ++cublas_calls;
  if ((ta != 0 && ta != 1) || (tb != 0 && tb != 1) || m < 0 || n < 0 || k < 0 ||
      lda < std::max(1, ta ? k : m) || ldb < std::max(1, tb ? n : k) || ldc < std::max(1, m)) {
    std::printf("EMU cuBLAS: invalid value (op %d %d, m %d n %d k %d, ld %d %d %d)\n", ta, tb, m, n, k, lda, ldb, ldc);
    return 7;  // CUBLAS_STATUS_INVALID_VALUE
  }
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      double s = 0;
      for (int q = 0; q < k; ++q)
        s += (double)(ta ? A[i * (int64_t)lda + q] : A[q * (int64_t)lda + i]) *
             (tb ? B[q * (int64_t)ldb + j] : B[j * (int64_t)ldb + q]);
      float& c = C[j * (int64_t)ldc + i];
      c = *beta == 0.f ? *alpha * (float)s : *alpha * (float)s + *beta * c;  // beta 0: C unread
    }
  return 0;
}
inline int cm_sgemm_h(void*, int ta, int tb, int m, int n, int k, const float* alpha, const float* A,
                      int lda, const float* B, int ldb, const float* beta, float* C, int ldc) {
  return cm_sgemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
inline int cm_sgemm_batched(void*, int ta, int tb, int m, int n, int k, const float* alpha, const float* A,
                            int lda, long long sA, const float* B, int ldb, long long sB, const float* beta,
                            float* C, int ldc, long long sC, int batch) {
  if (batch < 0) return 7;
  for (int b = 0; b < batch; ++b)
    if (int r = cm_sgemm(ta, tb, m, n, k, alpha, A + b * sA, lda, B + b * sB, ldb, beta, C + b * sC, ldc)) return r;
  return 0;
}
inline pcn::cuda::CublasApi cublas_api{nullptr, cm_sgemm_h, cm_sgemm_batched};

}  // namespace emu

namespace pcn {
namespace cuda {
inline Block::~Block() {
  {
    std::lock_guard<std::mutex> lock(emu::blocks_mu);
    emu::live_blocks.erase(this);
  }
  std::free(static_cast<unsigned char*>(ptr) - emu::kGuard);
}
inline std::shared_ptr<Block> device_alloc(size_t bytes) {
  const size_t room = (bytes + 255) / 256 * 256;
  auto* base = static_cast<unsigned char*>(std::aligned_alloc(256, room + 2 * emu::kGuard));
  if (!base) throw std::runtime_error("device_alloc: out of memory");
  std::memset(base, 0xA5, emu::kGuard);
  std::memset(base + emu::kGuard, 0xFF, bytes);
  std::memset(base + emu::kGuard + bytes, 0xA5, room - bytes + emu::kGuard);
  auto b = std::make_shared<Block>();
  b->ptr = base + emu::kGuard;
  b->bytes = bytes;  // guards start right after the requested bytes
  std::lock_guard<std::mutex> lock(emu::blocks_mu);
  emu::live_blocks.insert(b.get());
  return b;
}
inline const CublasApi* cublas_if_selected() { return emu::use_cublas ? &emu::cublas_api : nullptr; }
}  // namespace cuda
}  // namespace pcn
