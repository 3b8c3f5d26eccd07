// conv2d by im2col + GEMM over a chunk of nb images at once. Per group g (K = C/groups*KH*KW,
// P = OH*OW, L = nb*P, OCg = OC/groups), with the chunk's columns side by side:
//   col (C*KH*KW, L): column n*P + p holds image n's patch at output position p
//   forward   Y[g] (OCg, L) = w[g] (OCg, K) @ col[g] (K, L)            then Y -> y (N, OC, P) + b
//   backward  dw[g] += dY[g] (OCg, L) @ col[g]^T;  dcol[g] = w[g]^T @ dY[g];  dx = col2im(dcol)
// One wide GEMM per group keeps OpenBLAS near peak where per-image products are thin (conv3-5
// have P = 169), and needs no per-thread weight-gradient copies. The threads go into the GEMM
// (split over its columns) and into the per-image im2col/col2im loops.
#include <omp.h>
#include <algorithm>
#include <cstring>
#include "ops.h"

namespace pcn {

// One image x (C, H, W) into col (C*KH*KW, P) whose rows are ld floats apart (ld >= P).
void im2col(float* col, const float* x, const Geom& g, int64_t ld) {
  for (int c = 0; c < g.C; ++c)
    for (int kh = 0; kh < g.KH; ++kh)
      for (int kw = 0; kw < g.KW; ++kw) {
        float* row = col + ((int64_t)(c * g.KH + kh) * g.KW + kw) * ld;
        const float* xc = x + (int64_t)c * g.H * g.W;
        // ow range whose input column iw = ow*SW - PW + kw lies inside [0, W)
        int ow0 = std::max(0, (g.PW - kw + g.SW - 1) / g.SW);
        int ow1 = std::max(ow0, std::min(g.OW, (g.W + g.PW - kw + g.SW - 1) / g.SW));
        for (int oh = 0; oh < g.OH; ++oh) {
          float* r = row + (int64_t)oh * g.OW;
          int ih = oh * g.SH - g.PH + kh;
          if (ih < 0 || ih >= g.H) { std::memset(r, 0, sizeof(float) * g.OW); continue; }
          const float* xr = xc + (int64_t)ih * g.W - g.PW + kw;
          for (int ow = 0; ow < ow0; ++ow) r[ow] = 0.f;
          if (g.SW == 1)  // a loop, not memcpy: rows are short (10-55 floats), the call cost more
#pragma omp simd
            for (int ow = ow0; ow < ow1; ++ow) r[ow] = xr[ow];
          else
            for (int ow = ow0; ow < ow1; ++ow) r[ow] = xr[(int64_t)ow * g.SW];
          for (int ow = ow1; ow < g.OW; ++ow) r[ow] = 0.f;
        }
      }
}

// The adjoint of im2col: adds col's entries back onto x (C, H, W).
void col2im(float* x, const float* col, const Geom& g, int64_t ld) {
  for (int c = 0; c < g.C; ++c)
    for (int kh = 0; kh < g.KH; ++kh)
      for (int kw = 0; kw < g.KW; ++kw) {
        const float* row = col + ((int64_t)(c * g.KH + kh) * g.KW + kw) * ld;
        float* xc = x + (int64_t)c * g.H * g.W;
        int ow0 = std::max(0, (g.PW - kw + g.SW - 1) / g.SW);
        int ow1 = std::max(ow0, std::min(g.OW, (g.W + g.PW - kw + g.SW - 1) / g.SW));
        for (int oh = 0; oh < g.OH; ++oh) {
          int ih = oh * g.SH - g.PH + kh;
          if (ih < 0 || ih >= g.H) continue;
          const float* r = row + (int64_t)oh * g.OW;
          float* xr = xc + (int64_t)ih * g.W - g.PW + kw;
          if (g.SW == 1)  // the common case, vectorized (x and col never overlap)
#pragma omp simd
            for (int ow = ow0; ow < ow1; ++ow) xr[ow] += r[ow];
          else
            for (int ow = ow0; ow < ow1; ++ow) xr[(int64_t)ow * g.SW] += r[ow];
        }
      }
}

// Per image of a chunk: its columns (C*KH*KW x P) and its output/gradient rows (OC x P).
int64_t conv2d_slot_floats(const Geom& g, int OC) {
  return std::max<int64_t>(1, ((int64_t)g.C * g.KH * g.KW + OC) * g.OH * g.OW);
}

// Images per chunk, no more than the workspace holds: GEMMs at least 2048 columns wide (narrower
// ones lose to OpenBLAS's blocking on AlexNet's layers), or about 8 MiB of columns when that is
// more (small images, as LeNet's: else each chunk is microseconds of work between fork/joins).
static int chunk(int N, const Geom& g, int OC, int64_t ws_floats) {
  const int64_t slot = conv2d_slot_floats(g, OC);
  int64_t want = std::max<int64_t>({1, 2048 / ((int64_t)g.OH * g.OW), (8 << 20) / 4 / slot});
  int64_t room = ws_floats / slot;
  return (int)std::max<int64_t>(1, std::min<int64_t>({N, want, room}));
}

// im2col / col2im of a chunk: threads take (image, channel) pairs, which own disjoint rows of col
// and disjoint planes of x, so even a one-image chunk runs in parallel.
static void chunk_im2col(float* col, const float* x, int nb, const Geom& g, int64_t L) {
  Geom g1 = g;
  g1.C = 1;
  const int64_t P = (int64_t)g.OH * g.OW, plane = (int64_t)g.H * g.W, rows = (int64_t)g.KH * g.KW;
#pragma omp parallel for collapse(2) schedule(static)
  for (int i = 0; i < nb; ++i)
    for (int c = 0; c < g.C; ++c)
      im2col(col + c * rows * L + i * P, x + ((int64_t)i * g.C + c) * plane, g1, L);
}

static void chunk_col2im(float* dx, const float* col, int nb, const Geom& g, int64_t L) {
  Geom g1 = g;
  g1.C = 1;
  const int64_t P = (int64_t)g.OH * g.OW, plane = (int64_t)g.H * g.W, rows = (int64_t)g.KH * g.KW;
#pragma omp parallel for collapse(2) schedule(static)
  for (int i = 0; i < nb; ++i)
    for (int c = 0; c < g.C; ++c) {
      float* xp = dx + ((int64_t)i * g.C + c) * plane;
      std::fill(xp, xp + plane, 0.f);
      col2im(xp, col + c * rows * L + i * P, g1, L);
    }
}

void conv2d_forward(float* y, const float* x, const float* w, const float* b, int N, const Geom& g,
                    int OC, int groups, float* ws, int64_t ws_floats) {
  const int OCg = OC / groups, K = g.C / groups * g.KH * g.KW, P = g.OH * g.OW;
  const int64_t xsize = (int64_t)g.C * g.H * g.W;
  const int NB = chunk(N, g, OC, ws_floats);
  for (int n0 = 0; n0 < N; n0 += NB) {
    const int nb = std::min(NB, N - n0);
    const int64_t L = (int64_t)nb * P;
    float* col = ws;                                  // (C*KH*KW, L)
    float* ybuf = ws + (int64_t)g.C * g.KH * g.KW * L;  // (OC, L)
    chunk_im2col(col, x + n0 * xsize, nb, g, L);
    for (int gi = 0; gi < groups; ++gi)
      sgemm_parallel(false, false, OCg, (int)L, K, 1.f, w + (int64_t)gi * OCg * K, K,
                     col + (int64_t)gi * K * L, (int)L, 0.f, ybuf + (int64_t)gi * OCg * L, (int)L);
#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < nb; ++i)
      for (int oc = 0; oc < OC; ++oc) {
        const float* src = ybuf + (int64_t)oc * L + (int64_t)i * P;
        float* dst = y + ((int64_t)(n0 + i) * OC + oc) * P;
        const float bias = b ? b[oc] : 0.f;
        for (int p = 0; p < P; ++p) dst[p] = src[p] + bias;
      }
  }
}

void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, int N, const Geom& g, int OC, int groups, float* ws,
                     int64_t ws_floats) {
  const int OCg = OC / groups, K = g.C / groups * g.KH * g.KW, P = g.OH * g.OW;
  const int64_t xsize = (int64_t)g.C * g.H * g.W;
  const int NB = chunk(N, g, OC, ws_floats);
  if (db)
#pragma omp parallel for schedule(static)
    for (int oc = 0; oc < OC; ++oc) {
      double s = 0;
      for (int n = 0; n < N; ++n)
        for (int p = 0; p < P; ++p) s += dy[((int64_t)n * OC + oc) * P + p];
      db[oc] += (float)s;
    }
  if (!dx && !dw) return;
  for (int n0 = 0; n0 < N; n0 += NB) {
    const int nb = std::min(NB, N - n0);
    const int64_t L = (int64_t)nb * P;
    float* col = ws;                                   // (C*KH*KW, L): patches, then their gradients
    float* dyb = ws + (int64_t)g.C * g.KH * g.KW * L;  // (OC, L)
#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < nb; ++i)
      for (int oc = 0; oc < OC; ++oc)
        std::memcpy(dyb + (int64_t)oc * L + (int64_t)i * P, dy + ((int64_t)(n0 + i) * OC + oc) * P,
                    sizeof(float) * P);
    if (dw) {
      chunk_im2col(col, x + n0 * xsize, nb, g, L);
      for (int gi = 0; gi < groups; ++gi)
        sgemm_parallel(false, true, OCg, K, (int)L, 1.f, dyb + (int64_t)gi * OCg * L, (int)L,
                       col + (int64_t)gi * K * L, (int)L, 1.f, dw + (int64_t)gi * OCg * K, K);
    }
    if (dx) {
      for (int gi = 0; gi < groups; ++gi)
        sgemm_parallel(true, false, K, (int)L, OCg, 1.f, w + (int64_t)gi * OCg * K, K,
                       dyb + (int64_t)gi * OCg * L, (int)L, 0.f, col + (int64_t)gi * K * L, (int)L);
      chunk_col2im(dx + n0 * xsize, col, nb, g, L);
    }
  }
}

}  // namespace pcn
