// Index helpers shared by the CPU and CUDA kernels (PCN_HD marks them callable from both).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define PCN_HD __host__ __device__ __forceinline__
#else
#define PCN_HD inline
#endif

namespace pcn {

// Output extent of a sliding window: floor((in + 2*pad - k) / stride) + 1. Callers check k <= in + 2*pad.
PCN_HD int conv_out_size(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

// Geometry of a 2-d sliding-window op (conv, locally connected, pool) on one image.
struct Geom {
  int C, H, W;      // input channels and extent
  int KH, KW;       // window
  int SH, SW;       // stride
  int PH, PW;       // zero padding
  int OH, OW;       // output extent (from conv_out_size)
};

// Tap k = (c, kh, kw) of output position (oh, ow) reads this pixel of one image xn (C, H, W);
// 0 in the zero padding. (The GPU's im2col and locally connected gather, one element a thread.)
PCN_HD float patch_pixel(const float* xn, int k, int oh, int ow, const Geom& g) {
  const int kw = k % g.KW, kh = k / g.KW % g.KH, c = k / (g.KW * g.KH);
  const int ih = oh * g.SH - g.PH + kh, iw = ow * g.SW - g.PW + kw;
  return ih >= 0 && ih < g.H && iw >= 0 && iw < g.W ? xn[((int64_t)c * g.H + ih) * g.W + iw] : 0.f;
}

// The outputs [o0, o1) along one axis whose windows (size K, stride S) cover padded input index
// ip = i + pad: the adjoint of patch_pixel, for gathers that sum gradients without atomics.
PCN_HD void covering_outputs(int ip, int K, int S, int O, int& o0, int& o1) {
  o0 = ip < K ? 0 : (ip - K) / S + 1;
  o1 = ip / S + 1 < O ? ip / S + 1 : O;
}

// Counter-based random numbers: the value at (seed, i) does not depend on the thread or device
// that computes it, so dropout masks are the same on every backend. 32-bit murmur3 finalizers
// (not a 64-bit mix) so that the CPU loop vectorizes with AVX2.
PCN_HD uint32_t fmix32(uint32_t h) {
  h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13; h *= 0xc2b2ae35u; h ^= h >> 16;
  return h;
}
PCN_HD float uniform01(uint64_t seed, uint64_t i) {  // in [0, 1), 24 random bits
  uint32_t h = fmix32((uint32_t)i * 0x9e3779b1u + (uint32_t)seed);
  h = fmix32(h ^ (uint32_t)(seed >> 32) ^ ((uint32_t)(i >> 32) * 0x27d4eb2fu));
  return (float)(h >> 8) * (1.0f / 16777216.0f);
}

}  // namespace pcn
