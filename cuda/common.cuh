// Helpers shared by the CUDA kernels (host side of every .cu file): error checks that turn a
// failed CUDA call or launch into a C++ exception (RuntimeError in Python) naming the call and
// the place, and the launch geometry of elementwise kernels.
//
// Every kernel runs on the legacy default stream (0): work is ordered, the caching allocator can
// hand a freed block to the next op at once, and consumers on the default stream (PyTorch's
// default) need no synchronization.
#pragma once
#include <cuda_runtime.h>
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace pcn {
namespace cuda {

inline void check(cudaError_t e, const char* what, const char* file, int line) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clear a non-sticky error so that the next call does not report it again
  throw std::runtime_error(std::string("CUDA error ") + cudaGetErrorName(e) + " (" +
                           cudaGetErrorString(e) + ") in " + what + " at " + file + ":" +
                           std::to_string(line));
}

#define CUDA_CHECK(expr) ::pcn::cuda::check((expr), #expr, __FILE__, __LINE__)
// After every <<<...>>>: a bad configuration is reported here, a fault inside the kernel by the
// next synchronizing call.
#define CUDA_LAUNCH_CHECK(name) ::pcn::cuda::check(cudaGetLastError(), "launch of " name, __FILE__, __LINE__)

constexpr int kThreads = 256;

// Blocks for n elements in grid-stride loops: enough to fill the GPU, never zero, within limits.
inline unsigned blocks_for(int64_t n, int threads = kThreads) {
  int64_t b = (n + threads - 1) / threads;
  return (unsigned)std::min<int64_t>(std::max<int64_t>(b, 1), 1 << 16);
}

}  // namespace cuda
}  // namespace pcn

// for (int64_t i ...) over [0, n) in a grid-stride loop
#define PCN_GRID_LOOP(i, n)                                                         \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (int64_t)(n); \
       i += (int64_t)gridDim.x * blockDim.x)
