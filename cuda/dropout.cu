// Inverted dropout. The mask bit of element i is pcn::uniform01(seed, i) >= p (cpp/common.h), the
// same function the CPU kernel calls, so both devices draw the same mask for the same seed.
#include "common.cuh"
#include "ops.cuh"

namespace pcn {
namespace cuda {
namespace {

__global__ void dropout_fw(float* y, uint8_t* mask, const float* x, int64_t n, float p, float s,
                           uint64_t seed) {
  PCN_GRID_LOOP(i, n) {
    uint8_t keep = uniform01(seed, (uint64_t)i) >= p;
    mask[i] = keep;
    y[i] = x[i] * ((float)keep * s);  // a product, as on the CPU: NaN/inf stay NaN when dropped
  }
}
__global__ void dropout_bw(float* dx, const float* dy, const uint8_t* mask, int64_t n, float s) {
  PCN_GRID_LOOP(i, n) dx[i] = dy[i] * ((float)mask[i] * s);  // as on the CPU
}

}  // namespace

void dropout_forward(float* y, uint8_t* mask, const float* x, int64_t n, float p, uint64_t seed) {
  if (n <= 0) return;
  const float s = p < 1.f ? 1.f / (1.f - p) : 0.f;
  dropout_fw<<<blocks_for(n), kThreads>>>(y, mask, x, n, p, s, seed);
  CUDA_LAUNCH_CHECK("dropout_fw");
}

void dropout_backward(float* dx, const float* dy, const uint8_t* mask, int64_t n, float p) {
  if (n <= 0) return;
  const float s = p < 1.f ? 1.f / (1.f - p) : 0.f;
  dropout_bw<<<blocks_for(n), kThreads>>>(dx, dy, mask, n, s);
  CUDA_LAUNCH_CHECK("dropout_bw");
}

}  // namespace cuda
}  // namespace pcn
