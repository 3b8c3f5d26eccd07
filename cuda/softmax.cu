// Softmax over rows of x (N, K): one warp per row (max, then sum of exp in double, as the CPU
// does), so any K works and the launch needs no shared memory. The fused cross-entropy keeps
// each row's loss in a workspace and sums those in a fixed order into a device scalar:
// deterministic, and nothing comes back to the host.
#include <cmath>
#include "common.cuh"
#include "ops.cuh"

namespace pcn {
namespace cuda {
namespace {

constexpr int kWarpsPerBlock = kThreads / 32;

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// p = softmax(x row); returns log(sum exp(x - max)) + max to every lane.
__device__ double softmax_row(float* p, const float* x, int K, int lane) {
  float m = -INFINITY;
  for (int j = lane; j < K; j += 32) m = fmaxf(m, x[j]);
  m = warp_max(m);
  double s = 0;
  for (int j = lane; j < K; j += 32) {
    float e = expf(x[j] - m);
    p[j] = e;
    s += e;
  }
  s = warp_sum(s);
  const float inv = (float)(1.0 / s);
  for (int j = lane; j < K; j += 32) p[j] *= inv;
  return log(s) + m;
}

__global__ void softmax_fw(float* y, const float* x, int N, int K) {
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;  // the whole warp leaves together
  softmax_row(y + (int64_t)row * K, x + (int64_t)row * K, K, lane);
}

__global__ void softmax_bw(float* dx, const float* dy, const float* y, int N, int K) {
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const float *yr = y + (int64_t)row * K, *dr = dy + (int64_t)row * K;
  double dot = 0;
  for (int j = lane; j < K; j += 32) dot += (double)dr[j] * yr[j];
  const float d = (float)warp_sum(dot);
  for (int j = lane; j < K; j += 32) dx[(int64_t)row * K + j] = yr[j] * (dr[j] - d);
}

__global__ void xent_rows(double* rows, float* prob, const float* x, const int64_t* labels, int N, int K) {
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const float* xr = x + (int64_t)row * K;
  const double logz = softmax_row(prob + (int64_t)row * K, xr, K, lane);
  if (lane == 0) {
    const int64_t t = labels[row];
    rows[row] = t >= 0 && t < K ? logz - xr[t] : (double)NAN;
  }
}

// One block: thread t sums rows t, t + 256, ...; then a tree in shared memory. Fixed order.
__global__ void xent_mean(float* loss, const double* rows, int N) {
  __shared__ double part[kThreads];
  double s = 0;
  for (int i = threadIdx.x; i < N; i += kThreads) s += rows[i];
  part[threadIdx.x] = s;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w >>= 1) {
    if ((int)threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) *loss = (float)(part[0] / N);
}

__global__ void xent_bw(float* dx, const float* prob, const int64_t* labels, int N, int K, float inv) {
  PCN_GRID_LOOP(i, (int64_t)N * K) {
    const int64_t n = i / K, j = i % K;
    float v = prob[i] * inv;
    if (labels[n] == j) v -= inv;  // a label outside [0, K) never matches
    dx[i] = v;
  }
}

// Row argmax (the first maximum, as numpy's argmax: a NaN counts as the maximum) compared with
// the label. arg == K marks a lane that saw no element.
__global__ void top1(unsigned long long* count, const float* x, const int64_t* labels, int N, int K) {
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const float* xr = x + (int64_t)row * K;
  float best = -INFINITY;
  int arg = K;
  for (int j = lane; j < K; j += 32) {
    const float v = xr[j];
    if (arg == K || (v != v ? best == best : v > best)) { best = v; arg = j; }
  }
  for (int o = 16; o > 0; o >>= 1) {
    float b = __shfl_xor_sync(0xffffffffu, best, o);
    int a = __shfl_xor_sync(0xffffffffu, arg, o);
    const bool bn = b != b, mn = best != best;
    if (a < K && (arg == K || (bn ? !mn || a < arg : !mn && (b > best || (b == best && a < arg))))) {
      best = b;
      arg = a;
    }
  }
  if (lane == 0 && arg == labels[row]) atomicAdd(count, 1ull);
}

unsigned row_blocks(int N) { return (unsigned)((N + kWarpsPerBlock - 1) / kWarpsPerBlock); }

}  // namespace

void softmax_forward(float* y, const float* x, int N, int K) {
  if (N <= 0 || K <= 0) return;
  softmax_fw<<<row_blocks(N), kThreads>>>(y, x, N, K);
  CUDA_LAUNCH_CHECK("softmax_fw");
}

void softmax_backward(float* dx, const float* dy, const float* y, int N, int K) {
  if (N <= 0 || K <= 0) return;
  softmax_bw<<<row_blocks(N), kThreads>>>(dx, dy, y, N, K);
  CUDA_LAUNCH_CHECK("softmax_bw");
}

void softmax_xent_forward(float* loss, float* prob, const float* x, const int64_t* labels, int N,
                          int K, double* rows_ws) {
  if (N <= 0 || K <= 0) return;
  xent_rows<<<row_blocks(N), kThreads>>>(rows_ws, prob, x, labels, N, K);
  CUDA_LAUNCH_CHECK("xent_rows");
  xent_mean<<<1, kThreads>>>(loss, rows_ws, N);
  CUDA_LAUNCH_CHECK("xent_mean");
}

void softmax_xent_backward(float* dx, const float* prob, const int64_t* labels, int N, int K) {
  const int64_t n = (int64_t)N * K;
  if (n <= 0) return;
  xent_bw<<<blocks_for(n), kThreads>>>(dx, prob, labels, N, K, 1.f / N);
  CUDA_LAUNCH_CHECK("xent_bw");
}

void top1_count(int64_t* count, const float* x, const int64_t* labels, int N, int K) {
  CUDA_CHECK(cudaMemsetAsync(count, 0, sizeof(int64_t), 0));
  if (N <= 0 || K <= 0) return;
  top1<<<row_blocks(N), kThreads>>>(reinterpret_cast<unsigned long long*>(count), x, labels, N, K);
  CUDA_LAUNCH_CHECK("top1");
}

}  // namespace cuda
}  // namespace pcn
