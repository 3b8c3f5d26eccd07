// Local response normalization across channels (Krizhevsky 2012, sec. 3.3), PyTorch/Caffe form:
//   scale_c = k + alpha/size * sum_{c' in win(c)} x_c'^2,   win(c) = [c - size/2, c + (size-1)/2]
//   y_c = x_c * scale_c^-beta
//   dx_c = dy_c * scale_c^-beta - 2*alpha*beta/size * x_c * sum_{c': c in win(c')} dy_c' y_c' / scale_c'
// Loops run over channels outside and a block of pixels inside, so the inner loops are contiguous
// and vectorize; threads split (image, pixel block) pairs.
#include <cmath>
#include <algorithm>
#include "ops.h"

namespace pcn {

static constexpr int BLK = 512;  // pixels per task: 2 KiB rows that stay in L1 across channels

// s^-beta, with the AlexNet case beta = 0.75 done by square roots (pow does not vectorize).
static inline void neg_pow(float* out, const float* s, int n, float beta) {
  if (beta == 0.75f) {
    for (int i = 0; i < n; ++i) { float r = std::sqrt(s[i]); out[i] = 1.f / (r * std::sqrt(r)); }
  } else if (beta == 0.5f) {
    for (int i = 0; i < n; ++i) out[i] = 1.f / std::sqrt(s[i]);
  } else {
    for (int i = 0; i < n; ++i) out[i] = std::pow(s[i], -beta);
  }
}

void lrn_forward(float* y, float* scale, const float* x, int N, int C, int HW, int size,
                 float alpha, float beta, float k) {
  const int nblk = (HW + BLK - 1) / BLK, lo = size / 2, hi = (size - 1) / 2;
  const float a = alpha / size;
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < N; ++n)
    for (int bi = 0; bi < nblk; ++bi) {
      const int p0 = bi * BLK, len = std::min(BLK, HW - p0);
      const int64_t base = (int64_t)n * C * HW + p0;
      for (int c = 0; c < C; ++c) {
        float* sc = scale + base + (int64_t)c * HW;
        float acc[BLK];
        std::fill(acc, acc + len, 0.f);
        for (int cc = std::max(0, c - lo); cc <= std::min(C - 1, c + hi); ++cc) {
          const float* xc = x + base + (int64_t)cc * HW;
          for (int i = 0; i < len; ++i) acc[i] += xc[i] * xc[i];
        }
        for (int i = 0; i < len; ++i) sc[i] = k + a * acc[i];
        float* yc = y + base + (int64_t)c * HW;
        neg_pow(yc, sc, len, beta);
        const float* xc = x + base + (int64_t)c * HW;
        for (int i = 0; i < len; ++i) yc[i] *= xc[i];
      }
    }
}

void lrn_backward(float* dx, const float* dy, const float* x, const float* y, const float* scale,
                  int N, int C, int HW, int size, float alpha, float beta) {
  const int nblk = (HW + BLK - 1) / BLK, lo = size / 2, hi = (size - 1) / 2;
  const float coef = 2.f * alpha * beta / size;
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < N; ++n)
    for (int bi = 0; bi < nblk; ++bi) {
      const int p0 = bi * BLK, len = std::min(BLK, HW - p0);
      const int64_t base = (int64_t)n * C * HW + p0;
      for (int c = 0; c < C; ++c) {
        float acc[BLK], sp[BLK];
        std::fill(acc, acc + len, 0.f);
        // c lies in win(c') exactly when c' is in [c - hi, c + lo]
        for (int cc = std::max(0, c - hi); cc <= std::min(C - 1, c + lo); ++cc) {
          const int64_t o = base + (int64_t)cc * HW;
          for (int i = 0; i < len; ++i) acc[i] += dy[o + i] * y[o + i] / scale[o + i];
        }
        const int64_t o = base + (int64_t)c * HW;
        neg_pow(sp, scale + o, len, beta);
        for (int i = 0; i < len; ++i) dx[o + i] = dy[o + i] * sp[i] - coef * x[o + i] * acc[i];
      }
    }
}

}  // namespace pcn
