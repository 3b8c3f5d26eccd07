// Local response normalization across channels, formulas and window of cpp/lrn.cpp:
//   scale_c = k + alpha/size * sum_{c' in [c - size/2, c + (size-1)/2]} x_c'^2,  y_c = x_c scale_c^-beta
//   dx_c = dy_c scale_c^-beta - 2 alpha beta/size * x_c * sum_{c' : c in win(c')} dy_c' y_c' / scale_c'
// One thread per element (n, c, pixel); consecutive threads take consecutive pixels, so every
// read of a neighbouring channel is coalesced.
#include "common.cuh"
#include "ops.cuh"

namespace pcn {
namespace cuda {
namespace {

// s^-beta; beta = 0.75 (AlexNet) and 0.5 by square roots, as on the CPU.
__device__ __forceinline__ float neg_pow(float s, float beta) {
  if (beta == 0.75f) { float r = sqrtf(s); return 1.f / (r * sqrtf(r)); }
  if (beta == 0.5f) return 1.f / sqrtf(s);
  return powf(s, -beta);
}

__global__ void lrn_fw(float* y, float* scale, const float* x, int64_t total, int C, int HW,
                       int lo, int hi, float a, float beta, float k) {
  PCN_GRID_LOOP(i, total) {
    const int c = (int)(i / HW % C);
    const int64_t c0 = i - (int64_t)c * HW;  // element (n, 0, pixel)
    float acc = 0.f;
    for (int cc = max(0, c - lo); cc <= min(C - 1, c + hi); ++cc) {
      float v = x[c0 + (int64_t)cc * HW];
      acc += v * v;
    }
    const float s = k + a * acc;
    scale[i] = s;
    y[i] = neg_pow(s, beta) * x[i];
  }
}

__global__ void lrn_bw(float* dx, const float* dy, const float* x, const float* y,
                       const float* scale, int64_t total, int C, int HW, int lo, int hi,
                       float coef, float beta) {
  PCN_GRID_LOOP(i, total) {
    const int c = (int)(i / HW % C);
    const int64_t c0 = i - (int64_t)c * HW;
    float acc = 0.f;
    for (int cc = max(0, c - hi); cc <= min(C - 1, c + lo); ++cc) {
      const int64_t o = c0 + (int64_t)cc * HW;
      acc += dy[o] * y[o] / scale[o];
    }
    dx[i] = dy[i] * neg_pow(scale[i], beta) - coef * x[i] * acc;
  }
}

}  // namespace

void lrn_forward(float* y, float* scale, const float* x, int N, int C, int HW, int size,
                 float alpha, float beta, float k) {
  const int64_t total = (int64_t)N * C * HW;
  if (total <= 0) return;
  lrn_fw<<<blocks_for(total), kThreads>>>(y, scale, x, total, C, HW, size / 2, (size - 1) / 2,
                                          alpha / size, beta, k);
  CUDA_LAUNCH_CHECK("lrn_fw");
}

void lrn_backward(float* dx, const float* dy, const float* x, const float* y, const float* scale,
                  int N, int C, int HW, int size, float alpha, float beta) {
  const int64_t total = (int64_t)N * C * HW;
  if (total <= 0) return;
  lrn_bw<<<blocks_for(total), kThreads>>>(dx, dy, x, y, scale, total, C, HW, size / 2,
                                          (size - 1) / 2, 2.f * alpha * beta / size, beta);
  CUDA_LAUNCH_CHECK("lrn_bw");
}

}  // namespace cuda
}  // namespace pcn
