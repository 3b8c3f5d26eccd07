// Max and average pooling over each (n, c) plane; planes are independent, so threads split them.
#include <cmath>
#include <limits>
#include <algorithm>
#include "ops.h"

namespace pcn {

void maxpool2d_forward(float* y, int32_t* argmax, const float* x, int N, const Geom& g) {
  const int64_t planes = (int64_t)N * g.C, in = (int64_t)g.H * g.W, out = (int64_t)g.OH * g.OW;
#pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* xp = x + pl * in;
    float* yp = y + pl * out;
    int32_t* ap = argmax + pl * out;
    for (int oh = 0; oh < g.OH; ++oh) {
      int h0 = oh * g.SH - g.PH, h1 = std::min(h0 + g.KH, g.H);
      h0 = std::max(h0, 0);
      for (int ow = 0; ow < g.OW; ++ow) {
        int w0 = ow * g.SW - g.PW, w1 = std::min(w0 + g.KW, g.W);
        w0 = std::max(w0, 0);
        float m = -std::numeric_limits<float>::infinity();
        int32_t am = h0 * g.W + w0;
        for (int h = h0; h < h1; ++h)
          for (int w = w0; w < w1; ++w) {
            float v = xp[h * g.W + w];
            if (v > m || std::isnan(v)) { m = v; am = h * g.W + w; }  // NaN wins, as in PyTorch
          }
        yp[oh * g.OW + ow] = m;
        ap[oh * g.OW + ow] = am;
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
