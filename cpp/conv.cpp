// conv2d by im2col + GEMM, one image per thread (OpenMP over the batch, single-threaded BLAS).
// Per image n and group g (K = C/groups*KH*KW, P = OH*OW, OCg = OC/groups):
//   forward   y[n,g] (OCg, P) = w[g] (OCg, K) @ col[g] (K, P) + b
//   backward  dw[g] += dy[n,g] @ col[g]^T;  dcol[g] = w[g]^T @ dy[n,g];  dx[n] = col2im(dcol)
#include <omp.h>
#include <algorithm>
#include <cstring>
#include "ops.h"

namespace pcn {

void im2col(float* col, const float* x, const Geom& g) {
  const int64_t P = (int64_t)g.OH * g.OW;
  for (int c = 0; c < g.C; ++c)
    for (int kh = 0; kh < g.KH; ++kh)
      for (int kw = 0; kw < g.KW; ++kw) {
        float* row = col + ((int64_t)(c * g.KH + kh) * g.KW + kw) * P;
        const float* xc = x + (int64_t)c * g.H * g.W;
        // ow range whose input column iw = ow*SW - PW + kw lies inside [0, W)
        int ow0 = std::max(0, (g.PW - kw + g.SW - 1) / g.SW);
        int ow1 = std::min(g.OW, (g.W + g.PW - kw + g.SW - 1) / g.SW);
        ow1 = std::max(ow0, ow1);
        for (int oh = 0; oh < g.OH; ++oh) {
          float* r = row + (int64_t)oh * g.OW;
          int ih = oh * g.SH - g.PH + kh;
          if (ih < 0 || ih >= g.H) { std::memset(r, 0, sizeof(float) * g.OW); continue; }
          const float* xr = xc + (int64_t)ih * g.W - g.PW + kw;
          for (int ow = 0; ow < ow0; ++ow) r[ow] = 0.f;
          if (g.SW == 1) std::memcpy(r + ow0, xr + ow0, sizeof(float) * (ow1 - ow0));
          else for (int ow = ow0; ow < ow1; ++ow) r[ow] = xr[(int64_t)ow * g.SW];
          for (int ow = ow1; ow < g.OW; ++ow) r[ow] = 0.f;
        }
      }
}

void col2im(float* x, const float* col, const Geom& g) {
  const int64_t P = (int64_t)g.OH * g.OW;
  for (int c = 0; c < g.C; ++c)
    for (int kh = 0; kh < g.KH; ++kh)
      for (int kw = 0; kw < g.KW; ++kw) {
        const float* row = col + ((int64_t)(c * g.KH + kh) * g.KW + kw) * P;
        float* xc = x + (int64_t)c * g.H * g.W;
        int ow0 = std::max(0, (g.PW - kw + g.SW - 1) / g.SW);
        int ow1 = std::max(ow0, std::min(g.OW, (g.W + g.PW - kw + g.SW - 1) / g.SW));
        for (int oh = 0; oh < g.OH; ++oh) {
          int ih = oh * g.SH - g.PH + kh;
          if (ih < 0 || ih >= g.H) continue;
          const float* r = row + (int64_t)oh * g.OW;
          float* xr = xc + (int64_t)ih * g.W - g.PW + kw;
          for (int ow = ow0; ow < ow1; ++ow) xr[(int64_t)ow * g.SW] += r[ow];
        }
      }
}

// A 1x1, stride-1, unpadded conv needs no im2col: the image is its own column matrix.
static bool is_pointwise(const Geom& g) {
  return g.KH == 1 && g.KW == 1 && g.SH == 1 && g.SW == 1 && g.PH == 0 && g.PW == 0;
}

int64_t conv2d_slot_floats(const Geom& g, int OC, int groups, bool backward) {
  int64_t col = is_pointwise(g) ? 0 : (int64_t)g.C * g.KH * g.KW * g.OH * g.OW;
  int64_t dw = backward ? (int64_t)OC * (g.C / groups) * g.KH * g.KW : 0;
  return std::max<int64_t>(1, col + dw);
}

// Images in flight: one per thread, fewer when the workspace cannot hold that many slots.
static int slots(int N, int64_t slot, int64_t ws_floats) {
  return (int)std::max<int64_t>(1, std::min<int64_t>({N, omp_get_max_threads(), ws_floats / slot}));
}

void conv2d_forward(float* y, const float* x, const float* w, const float* b, int N, const Geom& g,
                    int OC, int groups, float* ws, int64_t ws_floats) {
  const int OCg = OC / groups, K = g.C / groups * g.KH * g.KW, P = g.OH * g.OW;
  const int64_t slot = conv2d_slot_floats(g, OC, groups, false);
  const int S = slots(N, slot, ws_floats);
  // With one image in flight (N = 1, or a tight workspace) the threads go into the GEMM instead.
  auto gemm = S > 1 ? sgemm : sgemm_parallel;
#pragma omp parallel num_threads(S)
  {
    float* col = ws + omp_get_thread_num() * slot;
#pragma omp for schedule(static)
    for (int n = 0; n < N; ++n) {
      const float* xn = x + (int64_t)n * g.C * g.H * g.W;
      float* yn = y + (int64_t)n * OC * P;
      const float* cn = xn;
      if (!is_pointwise(g)) { im2col(col, xn, g); cn = col; }
      for (int gi = 0; gi < groups; ++gi)
        gemm(false, false, OCg, P, K, 1.f, w + (int64_t)gi * OCg * K, K, cn + (int64_t)gi * K * P,
             P, 0.f, yn + (int64_t)gi * OCg * P, P);
      if (b)
        for (int oc = 0; oc < OC; ++oc)
          for (int p = 0; p < P; ++p) yn[(int64_t)oc * P + p] += b[oc];
    }
  }
}

void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, int N, const Geom& g, int OC, int groups, float* ws,
                     int64_t ws_floats) {
  const int OCg = OC / groups, K = g.C / groups * g.KH * g.KW, P = g.OH * g.OW;
  const int64_t wsize = (int64_t)OC * K, xsize = (int64_t)g.C * g.H * g.W;
  const int64_t slot = conv2d_slot_floats(g, OC, groups, true);
  const int S = slots(N, slot, ws_floats);
  const bool pw = is_pointwise(g);
  auto gemm = S > 1 ? sgemm : sgemm_parallel;
  if (db)
#pragma omp parallel for schedule(static)
    for (int oc = 0; oc < OC; ++oc) {
      double s = 0;
      for (int n = 0; n < N; ++n)
        for (int p = 0; p < P; ++p) s += dy[((int64_t)n * OC + oc) * P + p];
      db[oc] += (float)s;
    }
  if (!dx && !dw) return;
#pragma omp parallel num_threads(S)
  {
    const int t = omp_get_thread_num();
    float* col = ws + t * slot;
    // Each thread sums its images' weight gradients privately; the sum over threads follows,
    // in thread order, so results are deterministic for a given thread count.
    float* dwt = S > 1 ? col + (pw ? 0 : (int64_t)g.C * g.KH * g.KW * P) : dw;
    if (dw && S > 1) std::fill(dwt, dwt + wsize, 0.f);
#pragma omp for schedule(static)
    for (int n = 0; n < N; ++n) {
      const float* xn = x + n * xsize;
      const float* dyn = dy + (int64_t)n * OC * P;
      if (dw) {
        const float* cn = xn;
        if (!pw) { im2col(col, xn, g); cn = col; }
        for (int gi = 0; gi < groups; ++gi)
          gemm(false, true, OCg, K, P, 1.f, dyn + (int64_t)gi * OCg * P, P,
               cn + (int64_t)gi * K * P, P, 1.f, dwt + (int64_t)gi * OCg * K, K);
      }
      if (dx) {
        float* dxn = dx + n * xsize;
        float* dcol = pw ? dxn : col;
        for (int gi = 0; gi < groups; ++gi)
          gemm(true, false, K, P, OCg, 1.f, w + (int64_t)gi * OCg * K, K,
               dyn + (int64_t)gi * OCg * P, P, 0.f, dcol + (int64_t)gi * K * P, P);
        if (!pw) { std::fill(dxn, dxn + xsize, 0.f); col2im(dxn, col, g); }
      }
    }
    if (dw && S > 1) {
#pragma omp barrier
#pragma omp for schedule(static)
      for (int64_t i = 0; i < wsize; ++i) {
        float s = 0.f;
        for (int u = 0; u < S; ++u) s += ws[u * slot + (pw ? 0 : (int64_t)g.C * g.KH * g.KW * P) + i];
        dw[i] += s;
      }
    }
  }
}

}  // namespace pcn
