// Max and average pooling. Forward: one thread per output element, the window loop of
// cpp/pool.cpp. Backward GATHERS: one thread per input element sums the outputs whose window
// covers it, in ascending (oh, ow) order (the order the CPU scatter adds them), so there are no
// atomics, the result is deterministic, and an argmax entry is compared, never dereferenced.
#include <cmath>
#include "common.cuh"
#include "ops.cuh"

namespace pcn {
namespace cuda {
namespace {

__global__ void maxpool_fw(float* y, int32_t* argmax, const float* x, int64_t total, Geom g) {
  PCN_GRID_LOOP(i, total) {
    const int ow = (int)(i % g.OW), oh = (int)(i / g.OW % g.OH);
    const float* xp = x + i / ((int64_t)g.OH * g.OW) * g.H * g.W;
    int h0 = oh * g.SH - g.PH, h1 = min(h0 + g.KH, g.H);
    int w0 = ow * g.SW - g.PW, w1 = min(w0 + g.KW, g.W);
    h0 = max(h0, 0);
    w0 = max(w0, 0);
    float m = -INFINITY;
    int32_t am = h0 * g.W + w0;
    for (int h = h0; h < h1; ++h)
      for (int w = w0; w < w1; ++w) {
        float v = xp[h * g.W + w];
        if (v > m || isnan(v)) { m = v; am = h * g.W + w; }  // NaN wins, as on the CPU
      }
    y[i] = m;
    argmax[i] = am;
  }
}

// Thread (blockIdx.x, threadIdx.x) owns pixel p of the plane and does its index arithmetic
// (five divisions) once; blockIdx.y strides over the planes, so that cost is shared by several
// planes and the kernel stays memory-bound (one division-heavy thread per element was not).
__global__ void maxpool_bw(float* dx, const float* dy, const int32_t* argmax, int64_t planes, Geom g) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= g.H * g.W) return;  // no barrier below: a thread may leave early
  const int h = p / g.W, w = p - h * g.W;
  int oh0, oh1, ow0, ow1;
  covering_outputs(h + g.PH, g.KH, g.SH, g.OH, oh0, oh1);
  covering_outputs(w + g.PW, g.KW, g.SW, g.OW, ow0, ow1);
  const int64_t in = (int64_t)g.H * g.W, out = (int64_t)g.OH * g.OW;
  for (int64_t pl = blockIdx.y; pl < planes; pl += gridDim.y) {
    const int32_t* ap = argmax + pl * out;
    const float* dp = dy + pl * out;
    float s = 0.f;
    for (int oh = oh0; oh < oh1; ++oh)
      for (int ow = ow0; ow < ow1; ++ow) {
        const int o = oh * g.OW + ow;
        if (ap[o] == p) s += dp[o];
      }
    dx[pl * in + p] = s;
  }
}

// Average over the whole window, padding included (count_include_pad, as on the CPU).
__global__ void avgpool_fw(float* y, const float* x, int64_t total, Geom g, float inv) {
  PCN_GRID_LOOP(i, total) {
    const int ow = (int)(i % g.OW), oh = (int)(i / g.OW % g.OH);
    const float* xp = x + i / ((int64_t)g.OH * g.OW) * g.H * g.W;
    const int h0 = max(oh * g.SH - g.PH, 0), h1 = min(oh * g.SH - g.PH + g.KH, g.H);
    const int w0 = max(ow * g.SW - g.PW, 0), w1 = min(ow * g.SW - g.PW + g.KW, g.W);
    float s = 0.f;
    for (int h = h0; h < h1; ++h)
      for (int w = w0; w < w1; ++w) s += xp[h * g.W + w];
    y[i] = s * inv;
  }
}

__global__ void avgpool_bw(float* dx, const float* dy, int64_t total, Geom g, float inv) {
  PCN_GRID_LOOP(i, total) {
    const int w = (int)(i % g.W), h = (int)(i / g.W % g.H);
    const int64_t base = i / ((int64_t)g.H * g.W) * g.OH * g.OW;
    int oh0, oh1, ow0, ow1;
    covering_outputs(h + g.PH, g.KH, g.SH, g.OH, oh0, oh1);
    covering_outputs(w + g.PW, g.KW, g.SW, g.OW, ow0, ow1);
    float s = 0.f;
    for (int oh = oh0; oh < oh1; ++oh)
      for (int ow = ow0; ow < ow1; ++ow) s += dy[base + oh * g.OW + ow] * inv;
    dx[i] = s;
  }
}

}  // namespace

void maxpool2d_forward(float* y, int32_t* argmax, const float* x, int N, const Geom& g) {
  const int64_t total = (int64_t)N * g.C * g.OH * g.OW;
  if (total <= 0) return;
  maxpool_fw<<<blocks_for(total), kThreads>>>(y, argmax, x, total, g);
  CUDA_LAUNCH_CHECK("maxpool_fw");
}

void maxpool2d_backward(float* dx, const float* dy, const int32_t* argmax, int N, const Geom& g) {
  const int64_t planes = (int64_t)N * g.C, hw = (int64_t)g.H * g.W;
  if (planes <= 0 || hw <= 0) return;
  // x: the pixels of one plane (a warp multiple, at most kThreads a block); y: about 8 planes a
  // thread, within the grid's y limit (65535).
  const int threads = (int)std::min<int64_t>(kThreads, (hw + 31) / 32 * 32);
  const dim3 grid((unsigned)((hw + threads - 1) / threads),
                  (unsigned)std::min<int64_t>((planes + 7) / 8, 65535));
  maxpool_bw<<<grid, threads>>>(dx, dy, argmax, planes, g);
  CUDA_LAUNCH_CHECK("maxpool_bw");
}

void avgpool2d_forward(float* y, const float* x, int N, const Geom& g) {
  const int64_t total = (int64_t)N * g.C * g.OH * g.OW;
  if (total <= 0) return;
  avgpool_fw<<<blocks_for(total), kThreads>>>(y, x, total, g, 1.f / (g.KH * g.KW));
  CUDA_LAUNCH_CHECK("avgpool_fw");
}

void avgpool2d_backward(float* dx, const float* dy, int N, const Geom& g) {
  const int64_t total = (int64_t)N * g.C * g.H * g.W;
  if (total <= 0) return;
  avgpool_bw<<<blocks_for(total), kThreads>>>(dx, dy, total, g, 1.f / (g.KH * g.KW));
  CUDA_LAUNCH_CHECK("avgpool_bw");
}

}  // namespace cuda
}  // namespace pcn
