// Max and average pooling over each (n, c) plane; planes are independent, so threads split them.
#include <cmath>
#include <limits>
#include <algorithm>
#include "ops.h"

namespace pcn {

// Loops run window tap (kh, kw) outside and output column inside, so the inner loop is a
// branch-free select over a row that vectorizes. Taps are visited in (kh, kw) order and only a
// strictly larger value (or a NaN) replaces the running max: PyTorch's tie-breaking and NaN rule.
void maxpool2d_forward(float* y, int32_t* argmax, const float* x, int N, const Geom& g) {
  const int64_t planes = (int64_t)N * g.C, in = (int64_t)g.H * g.W, out = (int64_t)g.OH * g.OW;
  const float ninf = -std::numeric_limits<float>::infinity();
#pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* xp = x + pl * in;
    for (int oh = 0; oh < g.OH; ++oh) {
      float* yr = y + pl * out + (int64_t)oh * g.OW;
      int32_t* ar = argmax + pl * out + (int64_t)oh * g.OW;
      const int h0 = std::max(oh * g.SH - g.PH, 0), h1 = std::min(oh * g.SH - g.PH + g.KH, g.H);
      for (int ow = 0; ow < g.OW; ++ow) {
        yr[ow] = ninf;
        ar[ow] = h0 * g.W + std::max(ow * g.SW - g.PW, 0);
      }
      for (int ih = h0; ih < h1; ++ih)
        for (int kw = 0; kw < g.KW; ++kw) {
          // output columns whose tap kw lands inside [0, W)
          const int ow0 = std::max(0, (g.PW - kw + g.SW - 1) / g.SW);
          const int ow1 = std::min(g.OW, (g.W + g.PW - kw + g.SW - 1) / g.SW);
          const float* xr = xp + (int64_t)ih * g.W - g.PW + kw;
          const int32_t base = ih * g.W - g.PW + kw, sw = g.SW;
#pragma omp simd
          for (int ow = ow0; ow < ow1; ++ow) {
            const float v = xr[ow * sw], m = yr[ow];
            const bool upd = (v > m) | (v != v);  // bitwise: no branch, so the loop vectorizes
            yr[ow] = upd ? v : m;
            ar[ow] = upd ? base + ow * sw : ar[ow];
          }
        }
    }
  }
}

void maxpool2d_backward(float* dx, const float* dy, const int32_t* argmax, int N, const Geom& g) {
  const int64_t planes = (int64_t)N * g.C, in = (int64_t)g.H * g.W, out = (int64_t)g.OH * g.OW;
#pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < planes; ++pl) {
    float* dxp = dx + pl * in;
    std::fill(dxp, dxp + in, 0.f);
    for (int64_t o = 0; o < out; ++o) dxp[argmax[pl * out + o]] += dy[pl * out + o];
  }
}

// Average pool divides by KH*KW, padding included (PyTorch's count_include_pad=True, Caffe).
void avgpool2d_forward(float* y, const float* x, int N, const Geom& g) {
  const int64_t planes = (int64_t)N * g.C, in = (int64_t)g.H * g.W, out = (int64_t)g.OH * g.OW;
  const float inv = 1.f / (g.KH * g.KW);
#pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* xp = x + pl * in;
    for (int oh = 0; oh < g.OH; ++oh) {
      int h0 = std::max(oh * g.SH - g.PH, 0), h1 = std::min(oh * g.SH - g.PH + g.KH, g.H);
      for (int ow = 0; ow < g.OW; ++ow) {
        int w0 = std::max(ow * g.SW - g.PW, 0), w1 = std::min(ow * g.SW - g.PW + g.KW, g.W);
        float s = 0.f;
        for (int h = h0; h < h1; ++h)
          for (int w = w0; w < w1; ++w) s += xp[h * g.W + w];
        y[pl * out + oh * g.OW + ow] = s * inv;
      }
    }
  }
}

void avgpool2d_backward(float* dx, const float* dy, int N, const Geom& g) {
  const int64_t planes = (int64_t)N * g.C, in = (int64_t)g.H * g.W, out = (int64_t)g.OH * g.OW;
  const float inv = 1.f / (g.KH * g.KW);
#pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < planes; ++pl) {
    float* dxp = dx + pl * in;
    std::fill(dxp, dxp + in, 0.f);
    for (int oh = 0; oh < g.OH; ++oh) {
      int h0 = std::max(oh * g.SH - g.PH, 0), h1 = std::min(oh * g.SH - g.PH + g.KH, g.H);
      for (int ow = 0; ow < g.OW; ++ow) {
        int w0 = std::max(ow * g.SW - g.PW, 0), w1 = std::min(ow * g.SW - g.PW + g.KW, g.W);
        float d = dy[pl * out + oh * g.OW + ow] * inv;
        for (int h = h0; h < h1; ++h)
          for (int w = w0; w < w1; ++w) dxp[h * g.W + w] += d;
      }
    }
  }
}

}  // namespace pcn
