// Inverted dropout: kept units are scaled by 1/(1-p) at training time, so eval is the identity.
// keep_i = uniform01(seed, i) >= p, tested as (24-bit draw) >= ceil(p * 2^24): the same set as the
// float comparison (both sides are exact multiples of 2^-24), but integer-only, so the loop
// (hash, compare, select, byte store) vectorizes.
#include <cmath>
#include "ops.h"

namespace pcn {

static uint32_t keep_threshold(float p) { return (uint32_t)std::ceil((double)p * 16777216.0); }

void dropout_forward(float* y, uint8_t* mask, const float* x, int64_t n, float p, uint64_t seed) {
  const float s = 1.f / (1.f - p);
  const uint32_t thr = keep_threshold(p), s_lo = (uint32_t)seed, s_hi = (uint32_t)(seed >> 32);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    uint32_t h = fmix32((uint32_t)i * 0x9e3779b1u + s_lo);
    h = fmix32(h ^ s_hi ^ ((uint32_t)((uint64_t)i >> 32) * 0x27d4eb2fu));  // = uniform01's bits
    const uint32_t keep = (h >> 8) >= thr;
    mask[i] = (uint8_t)keep;
    y[i] = x[i] * ((float)keep * s);  // a product, not a select: no branch (NaN stays NaN, as in PyTorch)
  }
}

void dropout_backward(float* dx, const float* dy, const uint8_t* mask, int64_t n, float p) {
  const float s = 1.f / (1.f - p);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * ((float)mask[i] * s);
}

}  // namespace pcn
