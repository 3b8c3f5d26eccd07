// Fully connected: y (N, OUT) = x (N, IN) @ w^T + b, one GEMM per product (gemm.cu).
#include "common.cuh"
#include "ops.cuh"

namespace pcn {
namespace cuda {
namespace {

__global__ void add_bias_rows(float* y, const float* b, int64_t total, int OUT) {
  PCN_GRID_LOOP(i, total) y[i] += b[i % OUT];
}

// db[o] += sum_n dy[n, o]; one thread per column, rows added in order onto db (as the CPU does).
__global__ void sum_rows_into(float* db, const float* dy, int N, int OUT) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= OUT) return;
  float acc = db[o];
  for (int n = 0; n < N; ++n) acc += dy[(int64_t)n * OUT + o];
  db[o] = acc;
}

}  // namespace

void linear_forward(float* y, const float* x, const float* w, const float* b, int N, int IN, int OUT) {
  sgemm(false, true, N, OUT, IN, 1.f, x, IN, w, IN, 0.f, y, OUT);
  const int64_t total = (int64_t)N * OUT;
  if (b && total > 0) {
    add_bias_rows<<<blocks_for(total), kThreads>>>(y, b, total, OUT);
    CUDA_LAUNCH_CHECK("add_bias_rows");
  }
}

void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, int N, int IN, int OUT) {
  if (dx) sgemm(false, false, N, IN, OUT, 1.f, dy, OUT, w, IN, 0.f, dx, IN);  // dy @ w
  if (dw) sgemm(true, false, OUT, IN, N, 1.f, dy, OUT, x, IN, 1.f, dw, IN);   // dy^T @ x
  if (db && OUT > 0) {
    sum_rows_into<<<(OUT + kThreads - 1) / kThreads, kThreads>>>(db, dy, N, OUT);
    CUDA_LAUNCH_CHECK("sum_rows_into");
  }
}

}  // namespace cuda
}  // namespace pcn
