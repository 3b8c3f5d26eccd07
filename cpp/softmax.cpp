// Softmax over rows of x (N, K), stabilized by the row max; the fused cross-entropy takes
// log p = (x - max) - log(sum exp(x - max)), so no probability is ever logged after rounding to 0.
#include <cmath>
#include <algorithm>
#include "ops.h"

namespace pcn {

// Writes softmax of row x into p and returns log(sum exp(x - max)) + max (the log-partition).
static double softmax_row(float* p, const float* x, int K) {
  float m = *std::max_element(x, x + K);
  double s = 0;
  for (int j = 0; j < K; ++j) { p[j] = std::exp(x[j] - m); s += p[j]; }
  const float inv = (float)(1.0 / s);
  for (int j = 0; j < K; ++j) p[j] *= inv;
  return std::log(s) + m;
}

void softmax_forward(float* y, const float* x, int N, int K) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) softmax_row(y + (int64_t)n * K, x + (int64_t)n * K, K);
}

void softmax_backward(float* dx, const float* dy, const float* y, int N, int K) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const float *yr = y + (int64_t)n * K, *dr = dy + (int64_t)n * K;
    double dot = 0;
    for (int j = 0; j < K; ++j) dot += (double)dr[j] * yr[j];
    for (int j = 0; j < K; ++j) dx[(int64_t)n * K + j] = yr[j] * (dr[j] - (float)dot);
  }
}

double softmax_xent_forward(float* prob, const float* x, const int64_t* labels, int N, int K) {
  double loss = 0;
#pragma omp parallel for reduction(+ : loss) schedule(static)
  for (int n = 0; n < N; ++n) {
    double logz = softmax_row(prob + (int64_t)n * K, x + (int64_t)n * K, K);
    loss += logz - x[(int64_t)n * K + labels[n]];
  }
  return loss / N;
}

void softmax_xent_backward(float* dx, const float* prob, const int64_t* labels, int N, int K) {
  const float inv = 1.f / N;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    for (int j = 0; j < K; ++j) dx[(int64_t)n * K + j] = prob[(int64_t)n * K + j] * inv;
    dx[(int64_t)n * K + labels[n]] -= inv;
  }
}

}  // namespace pcn
