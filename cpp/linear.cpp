// Fully connected: y (N, OUT) = x (N, IN) @ w^T (IN, OUT) + b. One GEMM per product, split over
// the threads inside sgemm_parallel (a batch of 16 is too few rows to split the batch).
#include "ops.h"

namespace pcn {

void linear_forward(float* y, const float* x, const float* w, const float* b, int N, int IN, int OUT) {
  sgemm_parallel(false, true, N, OUT, IN, 1.f, x, IN, w, IN, 0.f, y, OUT);
  if (b)
    for (int n = 0; n < N; ++n)
      for (int o = 0; o < OUT; ++o) y[(int64_t)n * OUT + o] += b[o];
}

void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, int N, int IN, int OUT) {
  if (dx) sgemm_parallel(false, false, N, IN, OUT, 1.f, dy, OUT, w, IN, 0.f, dx, IN);      // dy @ w
  if (dw) sgemm_parallel(true, false, OUT, IN, N, 1.f, dy, OUT, x, IN, 1.f, dw, IN);       // dy^T @ x
  if (db)
    for (int n = 0; n < N; ++n)
      for (int o = 0; o < OUT; ++o) db[o] += dy[(int64_t)n * OUT + o];
}

}  // namespace pcn
