// The patches of a chunk of nb images and their adjoint, for conv.cu and local.cu, which lay the
// same elements out differently. Element (tap k, image i, location l), K = C*KH*KW, P = OH*OW:
//   TAP_MAJOR (conv, col (K, nb*P)):        k * nb*P + i * P + l
//   location-major (local, cols (P, nb, K)): (l * nb + i) * K + k
// Threads walk the buffer in memory order, so reads of x and writes of the patches coalesce.
#pragma once
#include "common.cuh"
#include "common.h"

namespace pcn {
namespace cuda {

template <bool TAP_MAJOR>
__device__ __forceinline__ int64_t patch_index(int k, int img, int l, int nb, int K, int P) {
  return TAP_MAJOR ? ((int64_t)k * nb + img) * P + l : ((int64_t)l * nb + img) * K + k;
}

// patches[(k, i, l)] = x[n0 + i] at the input pixel of tap k of location l (0 in the padding).
template <bool TAP_MAJOR>
__global__ void gather_patches(float* patches, const float* x, int n0, int nb, Geom g) {
  const int P = g.OH * g.OW, K = g.C * g.KH * g.KW;
  PCN_GRID_LOOP(i, (int64_t)K * nb * P) {
    const int inner = TAP_MAJOR ? P : K;  // the fastest-moving index: l, or k
    const int r = (int)(i % inner);
    const int64_t t = i / inner;
    const int img = (int)(t % nb), outer = (int)(t / nb);
    const int k = TAP_MAJOR ? outer : r, l = TAP_MAJOR ? r : outer;
    patches[i] = patch_pixel(x + (int64_t)(n0 + img) * g.C * g.H * g.W, k, l / g.OW, l % g.OW, g);
  }
}

// The adjoint: dx[n0 + i] (C, H, W) = the sum of the patch entries taken from each pixel. One
// thread per pixel gathers over the locations covering it (ascending), so nothing races.
template <bool TAP_MAJOR>
__global__ void scatter_patches(float* dx, const float* patches, int n0, int nb, Geom g) {
  const int P = g.OH * g.OW, K = g.C * g.KH * g.KW;
  PCN_GRID_LOOP(i, (int64_t)nb * g.C * g.H * g.W) {
    const int w = (int)(i % g.W), h = (int)(i / g.W % g.H);
    const int64_t t = i / ((int64_t)g.H * g.W);
    const int c = (int)(t % g.C), img = (int)(t / g.C);
    const int hp = h + g.PH, wp = w + g.PW;
    int oh0, oh1, ow0, ow1;
    covering_outputs(hp, g.KH, g.SH, g.OH, oh0, oh1);
    covering_outputs(wp, g.KW, g.SW, g.OW, ow0, ow1);
    float s = 0.f;
    for (int oh = oh0; oh < oh1; ++oh)
      for (int ow = ow0; ow < ow1; ++ow) {
        const int k = (c * g.KH + hp - oh * g.SH) * g.KW + wp - ow * g.SW;
        s += patches[patch_index<TAP_MAJOR>(k, img, oh * g.OW + ow, nb, K, P)];
      }
    dx[(int64_t)n0 * g.C * g.H * g.W + i] = s;
  }
}

}  // namespace cuda
}  // namespace pcn
