// Inverted dropout: kept units are scaled by 1/(1-p) at training time, so eval is the identity.
#include "ops.h"

namespace pcn {

void dropout_forward(float* y, uint8_t* mask, const float* x, int64_t n, float p, uint64_t seed) {
  const float s = p < 1.f ? 1.f / (1.f - p) : 0.f;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    uint8_t keep = uniform01(seed, (uint64_t)i) >= p;
    mask[i] = keep;
    y[i] = keep ? x[i] * s : 0.f;
  }
}

void dropout_backward(float* dx, const float* dy, const uint8_t* mask, int64_t n, float p) {
  const float s = p < 1.f ? 1.f / (1.f - p) : 0.f;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) dx[i] = mask[i] ? dy[i] * s : 0.f;
}

}  // namespace pcn
