// Locally connected 2d: conv2d geometry, but every output location l = (oh, ow) has its own
// filter bank w[l] (OC, K), K = C*KH*KW. A chunk of nb images is gathered location-major,
//   cols (P, nb, K): cols[l] = the nb input patches at l,
// so each location is one GEMM over the chunk:
//   forward   Y[l] (nb, OC) = cols[l] @ w[l]^T              (then scattered to y (N, OC, P))
//   backward  dw[l] += dY[l]^T @ cols[l];  dcols[l] = dY[l] @ w[l];  dx = col2im(dcols)
// Locations own disjoint slices of w, so threads split the locations without races.
#include <omp.h>
#include <algorithm>
#include "ops.h"

namespace pcn {

int64_t local2d_slot_floats(const Geom& g, int OC) {
  return std::max<int64_t>(1, (int64_t)g.OH * g.OW * ((int64_t)g.C * g.KH * g.KW + OC));
}

static int chunk(int N, const Geom& g, int OC, int64_t ws_floats) {
  return (int)std::max<int64_t>(1, std::min<int64_t>(N, ws_floats / local2d_slot_floats(g, OC)));
}

// cols[l][i][k] = x[n0 + i] patch at l (zero outside the image); i < nb.
static void gather(float* cols, const float* x, int n0, int nb, const Geom& g) {
  const int P = g.OH * g.OW, K = g.C * g.KH * g.KW;
#pragma omp parallel for collapse(2) schedule(static)
  for (int i = 0; i < nb; ++i)
    for (int l = 0; l < P; ++l) {
      const float* xn = x + (int64_t)(n0 + i) * g.C * g.H * g.W;
      float* dst = cols + ((int64_t)l * nb + i) * K;
      int ih0 = (l / g.OW) * g.SH - g.PH, iw0 = (l % g.OW) * g.SW - g.PW;
      for (int c = 0; c < g.C; ++c)
        for (int kh = 0; kh < g.KH; ++kh) {
          int ih = ih0 + kh;
          bool row_in = ih >= 0 && ih < g.H;
          const float* xr = xn + ((int64_t)c * g.H + ih) * g.W;
          for (int kw = 0; kw < g.KW; ++kw) {
            int iw = iw0 + kw;
            *dst++ = row_in && iw >= 0 && iw < g.W ? xr[iw] : 0.f;
          }
        }
    }
}

// dx[n0 + i] = sum over locations of dcols[l][i] put back at their patches (overwrites dx).
static void scatter_add(float* dx, const float* dcols, int n0, int nb, const Geom& g) {
  const int P = g.OH * g.OW, K = g.C * g.KH * g.KW;
  const int64_t xsize = (int64_t)g.C * g.H * g.W;
#pragma omp parallel for schedule(static)
  for (int i = 0; i < nb; ++i) {  // one image per thread: patches of one image overlap
    float* dxn = dx + (int64_t)(n0 + i) * xsize;
    std::fill(dxn, dxn + xsize, 0.f);
    for (int l = 0; l < P; ++l) {
      const float* src = dcols + ((int64_t)l * nb + i) * K;
      int ih0 = (l / g.OW) * g.SH - g.PH, iw0 = (l % g.OW) * g.SW - g.PW;
      for (int c = 0; c < g.C; ++c)
        for (int kh = 0; kh < g.KH; ++kh) {
          int ih = ih0 + kh;
          bool row_in = ih >= 0 && ih < g.H;
          float* xr = dxn + ((int64_t)c * g.H + ih) * g.W;
          for (int kw = 0; kw < g.KW; ++kw, ++src) {
            int iw = iw0 + kw;
            if (row_in && iw >= 0 && iw < g.W) xr[iw] += *src;
          }
        }
    }
  }
}

void local2d_forward(float* y, const float* x, const float* w, const float* b, int N,
                     const Geom& g, int OC, float* ws, int64_t ws_floats) {
  const int P = g.OH * g.OW, K = g.C * g.KH * g.KW, NB = chunk(N, g, OC, ws_floats);
  for (int n0 = 0; n0 < N; n0 += NB) {
    const int nb = std::min(NB, N - n0);
    float* cols = ws;                           // (P, nb, K)
    float* ybuf = ws + (int64_t)P * nb * K;     // (P, nb, OC)
    gather(cols, x, n0, nb, g);
#pragma omp parallel for schedule(static)
    for (int l = 0; l < P; ++l)
      sgemm(false, true, nb, OC, K, 1.f, cols + (int64_t)l * nb * K, K, w + (int64_t)l * OC * K, K,
            0.f, ybuf + (int64_t)l * nb * OC, OC);
#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < nb; ++i)
      for (int oc = 0; oc < OC; ++oc) {
        float* yr = y + ((int64_t)(n0 + i) * OC + oc) * P;
        const float* br = b ? b + (int64_t)oc * P : nullptr;
        for (int l = 0; l < P; ++l) yr[l] = ybuf[((int64_t)l * nb + i) * OC + oc] + (br ? br[l] : 0.f);
      }
  }
}

void local2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                      const float* w, int N, const Geom& g, int OC, float* ws, int64_t ws_floats) {
  const int P = g.OH * g.OW, K = g.C * g.KH * g.KW, NB = chunk(N, g, OC, ws_floats);
  if (db)  // db (OC, P) += sum over n of dy[n]
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < (int64_t)OC * P; ++j) {
      float s = 0.f;
      for (int n = 0; n < N; ++n) s += dy[(int64_t)n * OC * P + j];
      db[j] += s;
    }
  if (!dx && !dw) return;
  for (int n0 = 0; n0 < N; n0 += NB) {
    const int nb = std::min(NB, N - n0);
    float* cols = ws;                           // (P, nb, K): patches, then their gradients
    float* dyb = ws + (int64_t)P * nb * K;      // (P, nb, OC)
    if (dw) gather(cols, x, n0, nb, g);
#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < nb; ++i)
      for (int oc = 0; oc < OC; ++oc) {
        const float* dr = dy + ((int64_t)(n0 + i) * OC + oc) * P;
        for (int l = 0; l < P; ++l) dyb[((int64_t)l * nb + i) * OC + oc] = dr[l];
      }
#pragma omp parallel for schedule(static)
    for (int l = 0; l < P; ++l) {
      float* cl = cols + (int64_t)l * nb * K;
      const float* dyl = dyb + (int64_t)l * nb * OC;
      if (dw) sgemm(true, false, OC, K, nb, 1.f, dyl, OC, cl, K, 1.f, dw + (int64_t)l * OC * K, K);
      if (dx) sgemm(false, false, nb, K, OC, 1.f, dyl, OC, w + (int64_t)l * OC * K, K, 0.f, cl, K);
    }
    if (dx) scatter_add(dx, cols, n0, nb, g);
  }
}

}  // namespace pcn
