// Host emulation of the CUDA subset that cuda/*.cu use, so that their kernels run unmodified on the
// CPU (tests/test_cuda_emu.py; no GPU needed). test_cuda_emu.py copies cuda/common.cuh and
// cuda/*.cu into a temporary directory, puts `#include "cuda_emu.h"` first, and rewrites each
// `kernel<<<grid, block>>>(args)` into `emu::launch(grid, block, "kernel", kernel, args)`.
//
// Execution model: the blocks of a grid run one after another on the launching thread, and the
// threads of a block are fibers there (see run_grid): __syncthreads and a warp shuffle's exchange
// switch to the scheduler until every thread of the block (warp) that has not returned arrives.
// Kernel arguments are converted to the kernel's parameter types once, at the launch, and every
// thread gets its own copy (kernels may modify their parameters). Launches from several host
// threads take turns.
//
// Checked here (a violation prints "EMU ..." and aborts, or fails the call as CUDA would):
// launch limits (grid, block, 4 KiB of arguments), 16-byte alignment of float4 __ldg, full-warp
// shuffles with no exited lane, writes past the ends of device memory (guard bytes), and copies
// whose host or device side is not what their kind says.
// The runtime API that cuda/*.cpp use is here too (device memory is host memory, every call is
// synchronous), so the whole _cuda module builds against it (test_cuda_emu.py's module test).
// Not emulated: the memory model (blocks never run concurrently, so inter-block races are
// invisible), warp scheduling and divergence, shared-memory limits, fast-math intrinsics, speed.
#pragma once
#include <math.h>
#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <vector>
#include <ucontext.h>

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
inline dim3 threadIdx, blockIdx;  // of the running fiber
inline dim3 blockDim, gridDim;
constexpr int warpSize = 32;

struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

using std::max;
using std::min;

namespace emu {

inline std::mutex io_mu;
inline unsigned tid;                   // linear thread index in the block (of the running fiber)
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

// The threads of a block are fibers (ucontext) on the launching thread: each runs until it waits
// at a barrier or returns, then the next one runs. A barrier opens when every thread of the block
// (warp, for shuffles) that has not returned waits at it: an exited thread leaves barriers, as on
// a GPU. Runnable threads are resumed in increasing order in even blocks and decreasing order in
// odd ones, so a missing __syncthreads makes a thread read shared memory before (or after) the
// write it needed in one order or the other, and the results differ from the CPU's.
// A fiber's saved context. On x86-64, a switch saves the callee-saved registers on the old stack
// and swaps stack pointers (emu_switch below: ~2 ns); elsewhere ucontext, whose switches make a
// signal-mask system call each (10x slower over the whole GPU test suite).
#if defined(__x86_64__)
extern "C" void emu_switch(void** save_sp, void* new_sp);
asm(R"(
  .text
  .weak emu_switch
  .type emu_switch, @function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_switch, .-emu_switch
)");
struct Context { void* sp = nullptr; };
// A context that starts entry() on stack [lo, lo + size): emu_switch pops six registers, then
// returns into entry with rsp = 8 (mod 16), as after a call.
inline void context_init(Context& c, char* lo, size_t size, void (*entry)()) {
  auto* top = reinterpret_cast<void**>((reinterpret_cast<uintptr_t>(lo) + size) & ~uintptr_t(15));
  top[-1] = nullptr;                           // entry's return address: it never returns
  top[-2] = reinterpret_cast<void*>(entry);
  for (int r = 3; r <= 8; ++r) top[-r] = nullptr;  // r15 .. rbp
  c.sp = top - 8;
}
inline void context_switch(Context& from, Context& to) { emu_switch(&from.sp, to.sp); }
#else
struct Context { ucontext_t uc; };
inline void context_init(Context& c, char* lo, size_t size, void (*entry)()) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = lo;
  c.uc.uc_stack.ss_size = size;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, entry, 0);
}
inline void context_switch(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

enum class Wait : uint8_t { none, block, warp };
struct Fiber {
  Context ctx;
  std::unique_ptr<char[]> stack;
  Wait wait = Wait::none;
  bool done = false;
};
constexpr size_t kFiberStack = 64 << 10;  // kernels keep a few hundred bytes of locals
inline std::vector<Fiber> fibers;          // one per thread of the block, reused across launches
inline Context scheduler;
inline std::array<uint64_t, 1024> slot;    // shuffle exchange: one value per thread of the block
inline const std::function<void()>* body = nullptr;

inline void yield(Wait w) {
  fibers[tid].wait = w;
  context_switch(fibers[tid].ctx, scheduler);
}

inline void fiber_main() {  // runs thread `tid` of the block; switched away from for good at the end
  (*body)();
  fibers[tid].done = true;
  context_switch(fibers[tid].ctx, scheduler);
}

// Lane `src` of this warp's value v (all 32 lanes must take part; mask must be full).
template <class T>
T exchange(unsigned mask, T v, unsigned src, int width) {
  static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
  if (mask != 0xffffffffu || width != 32) fatal("shuffle with a partial mask or width (not emulated)");
  const unsigned w = tid / 32;
  if (blockDim.x * blockDim.y * blockDim.z < 32 * (w + 1))
    fatal("full-mask shuffle in a partial warp");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  slot[tid] = bits;
  yield(Wait::warp);
  const uint64_t got = slot[32 * w + src % 32];
  yield(Wait::warp);  // nobody overwrites a slot before every lane has read
  T r;
  std::memcpy(&r, &got, sizeof(T));
  return r;
}

// Runs body() as every thread of every block of the grid.
inline void run_grid(dim3 grid, dim3 block, const std::function<void()>& fn) {
  const unsigned T = block.x * block.y * block.z, warps = (T + 31) / 32;
  const uint64_t nblocks = (uint64_t)grid.x * grid.y * grid.z;
  if (fibers.size() < T) fibers.resize(T);
  body = &fn;
  for (uint64_t b = 0; b < nblocks; ++b) {
    blockIdx = dim3((unsigned)(b % grid.x), (unsigned)(b / grid.x % grid.y), (unsigned)(b / ((uint64_t)grid.x * grid.y)));
    for (unsigned t = 0; t < T; ++t) {
      Fiber& f = fibers[t];
      if (!f.stack) f.stack.reset(new char[kFiberStack]);
      context_init(f.ctx, f.stack.get(), kFiberStack, fiber_main);
      f.wait = Wait::none;
      f.done = false;
    }
    for (unsigned live = T; live > 0;) {
      for (unsigned i = 0; i < T; ++i) {  // run every runnable thread until it waits or returns
        const unsigned t = b % 2 ? T - 1 - i : i;
        if (fibers[t].done || fibers[t].wait != Wait::none) continue;
        tid = t;
        threadIdx = dim3(t % block.x, t / block.x % block.y, t / (block.x * block.y));
        context_switch(scheduler, fibers[t].ctx);
        if (fibers[t].done) --live;
      }
      bool opened = false;
      for (unsigned w = 0; w < warps; ++w) {  // a warp whose live lanes all wait at a shuffle
        unsigned waiting = 0, exited = 0, lanes = std::min(32u, T - 32 * w);
        for (unsigned t = 32 * w; t < 32 * w + lanes; ++t) {
          waiting += fibers[t].wait == Wait::warp;
          exited += fibers[t].done;
        }
        if (waiting == 0 || waiting + exited < lanes) continue;
        if (exited) { tid = 32 * w; fatal("full-mask shuffle after lanes of the warp returned"); }
        for (unsigned t = 32 * w; t < 32 * w + lanes; ++t) fibers[t].wait = Wait::none;
        opened = true;
      }
      unsigned at_block = 0;
      for (unsigned t = 0; t < T; ++t) at_block += fibers[t].wait == Wait::block;
      if (at_block && at_block == live) {
        for (unsigned t = 0; t < T; ++t) fibers[t].wait = Wait::none;
        opened = true;
      }
      if (live && !opened) {
        bool runnable = false;
        for (unsigned t = 0; t < T; ++t) runnable |= !fibers[t].done && fibers[t].wait == Wait::none;
        if (!runnable) { tid = 0; fatal("deadlock: threads wait at different barriers (__syncthreads in divergent code?)"); }
      }
    }
  }
  body = nullptr;
}

}  // namespace emu

// ---- runtime API ----
// Everything is synchronous (streams and events are orderings that hold already). Device memory
// from cudaMalloc is host memory, NaN-poisoned (0xFF bytes) with guard bytes on each side that
// cudaFree checks; cudaMemcpy checks that each side is (or is not) inside a cudaMalloc block, as
// its kind says, so a host pointer passed as a device one fails here as it would on a GPU.
enum cudaError_t {
  cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2, cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101
};
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
using cudaStream_t = void*;
struct CUevent_emu { bool recorded = false; };
using cudaEvent_t = CUevent_emu*;
#define cudaStreamPerThread ((cudaStream_t)0x2)
#define cudaEventDisableTiming 0x02
#define cudaHostAllocDefault 0x00
struct cudaDeviceProp {
  char name[256];
  int major, minor, multiProcessorCount;
};
namespace emu { inline cudaError_t last_error = cudaSuccess; }

inline cudaError_t cudaGetLastError() { cudaError_t e = emu::last_error; emu::last_error = cudaSuccess; return e; }
inline cudaError_t cudaPeekAtLastError() { return emu::last_error; }
inline const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
  }
  return "cudaErrorUnknown";
}
inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
  }
  return "unknown error";
}
namespace emu {
inline cudaError_t fail(cudaError_t e) { return last_error = e; }
}
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : emu::fail(cudaErrorInvalidDevice); }
inline cudaError_t cudaGetDeviceCount(int* n) { *n = 1; return cudaSuccess; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (d != 0) return emu::fail(cudaErrorInvalidDevice);
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "emulated on the host");
  p->major = 9;
  p->multiProcessorCount = emu::sm_count;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  if (a != cudaDevAttrMultiProcessorCount) return emu::fail(cudaErrorInvalidValue);
  *v = emu::sm_count;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }

namespace emu {
constexpr size_t kMallocGuard = 256;
inline std::mutex malloc_mu;
inline std::map<uintptr_t, size_t> malloc_blocks;  // start -> bytes
// Whether [p, p + n) lies inside one cudaMalloc block.
inline bool on_device(const void* p, size_t n) {
  std::lock_guard<std::mutex> lock(malloc_mu);
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = malloc_blocks.upper_bound(a);
  if (it == malloc_blocks.begin()) return false;
  --it;
  return a + n <= it->first + it->second;
}
}  // namespace emu
inline cudaError_t cudaMalloc(void** p, size_t bytes) {
  auto* base = static_cast<unsigned char*>(std::aligned_alloc(256, (bytes + 255) / 256 * 256 + 2 * emu::kMallocGuard));
  if (!base) return emu::fail(cudaErrorMemoryAllocation);
  std::memset(base, 0xA5, emu::kMallocGuard);
  std::memset(base + emu::kMallocGuard, 0xFF, bytes);
  std::memset(base + emu::kMallocGuard + bytes, 0xA5, emu::kMallocGuard);
  *p = base + emu::kMallocGuard;
  std::lock_guard<std::mutex> lock(emu::malloc_mu);
  emu::malloc_blocks[reinterpret_cast<uintptr_t>(*p)] = bytes;
  return cudaSuccess;
}
inline cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  size_t bytes;
  {
    std::lock_guard<std::mutex> lock(emu::malloc_mu);
    auto it = emu::malloc_blocks.find(reinterpret_cast<uintptr_t>(p));
    if (it == emu::malloc_blocks.end()) return emu::fail(cudaErrorInvalidValue);
    bytes = it->second;
    emu::malloc_blocks.erase(it);
  }
  auto* base = static_cast<unsigned char*>(p) - emu::kMallocGuard;
  for (size_t i = 0; i < emu::kMallocGuard; ++i)
    if (base[i] != 0xA5 || base[emu::kMallocGuard + bytes + i] != 0xA5)
      emu::fatal("cudaFree: a kernel or copy wrote outside this " + std::to_string(bytes) + "-byte block");
  std::free(base);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  if (!n) return cudaSuccess;
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (emu::on_device(dst, n) != dst_dev || emu::on_device(src, n) != src_dev) {
    std::printf("EMU cudaMemcpy of %zu bytes, kind %d: a side is not the memory its kind says\n", n, (int)kind);
    return emu::fail(cudaErrorInvalidValue);
  }
  std::memmove(dst, src, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t = nullptr) {
  return cudaMemcpy(dst, src, n, kind);
}
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t = nullptr) {
  if (n && !emu::on_device(p, n)) return emu::fail(cudaErrorInvalidValue);
  std::memset(p, v, n);
  return cudaSuccess;
}
inline cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned) {
  return (*p = std::malloc(bytes ? bytes : 1)) ? cudaSuccess : emu::fail(cudaErrorMemoryAllocation);
}
inline cudaError_t cudaFreeHost(void* p) { std::free(p); return cudaSuccess; }
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { *e = new CUevent_emu; return cudaSuccess; }
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t = nullptr) { e->recorded = true; return cudaSuccess; }
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventDestroy(cudaEvent_t e) { delete e; return cudaSuccess; }
inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t e, unsigned) {
  return e->recorded ? cudaSuccess : emu::fail(cudaErrorInvalidValue);
}

// ---- device functions ----
inline void __syncthreads() { emu::yield(emu::Wait::block); }
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
inline std::mutex launch_mu;
template <class... P, class... A>
void launch(dim3 grid, dim3 block, const char* name, void (*kernel)(P...), A&&... a) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
  constexpr size_t arg_bytes = (sizeof(P) + ... + 0);
  // 4 KiB: the limit before CUDA 12.1 (and what sgd.cu's segment table is sized for).
  static_assert(arg_bytes <= 4096, "kernel arguments exceed 4 KiB");
  const uint64_t threads = (uint64_t)block.x * block.y * block.z;
  if (grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535 ||
      threads < 1 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64) {
    std::printf("EMU bad launch of %s: grid (%u, %u, %u) block (%u, %u, %u)\n", name, grid.x, grid.y,
                grid.z, block.x, block.y, block.z);
    ++bad_launches;
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  std::lock_guard<std::mutex> lock(launch_mu);  // host threads may launch at once; one grid runs
  ++launches;
  std::tuple<P...> args(std::forward<A>(a)...);
  kernel_name = name;
  gridDim = grid;
  blockDim = block;
  run_grid(grid, block, [&] { std::apply(kernel, args); });  // by value: a copy per thread
  kernel_name = "";
}

}  // namespace emu
