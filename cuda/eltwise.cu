// Pointwise activations (backward reads the forward output y), fills and the in-place scale.
// Grid-stride loops: one launch covers any n. Formulas as in cpp/eltwise.cpp.
#include "common.cuh"
#include "ops.cuh"

namespace pcn {
namespace cuda {
namespace {

__global__ void relu_fw(float* y, const float* x, int64_t n) {
  PCN_GRID_LOOP(i, n) { float v = x[i]; y[i] = v > 0.f ? v : 0.f; }
}
__global__ void relu_bw(float* dx, const float* dy, const float* y, int64_t n) {
  PCN_GRID_LOOP(i, n) dx[i] = y[i] > 0.f ? dy[i] : 0.f;
}
__global__ void sigmoid_fw(float* y, const float* x, int64_t n) {
  PCN_GRID_LOOP(i, n) y[i] = 1.f / (1.f + expf(-x[i]));
}
__global__ void sigmoid_bw(float* dx, const float* dy, const float* y, int64_t n) {
  PCN_GRID_LOOP(i, n) { float v = y[i]; dx[i] = dy[i] * v * (1.f - v); }
}
__global__ void tanh_fw(float* y, const float* x, int64_t n) {
  PCN_GRID_LOOP(i, n) y[i] = tanhf(x[i]);
}
__global__ void tanh_bw(float* dx, const float* dy, const float* y, int64_t n) {
  PCN_GRID_LOOP(i, n) { float v = y[i]; dx[i] = dy[i] * (1.f - v * v); }
}
template <class T>
__global__ void fill_kernel(T* p, T v, int64_t n) {
  PCN_GRID_LOOP(i, n) p[i] = v;
}
__global__ void scale_kernel(float* p, float a, int64_t n) {
  PCN_GRID_LOOP(i, n) p[i] *= a;
}

}  // namespace

#define PCN_POINTWISE(name, kernel)                                                 \
  void name(float* y, const float* x, int64_t n) {                                  \
    if (n <= 0) return;                                                             \
    kernel<<<blocks_for(n), kThreads>>>(y, x, n);                                   \
    CUDA_LAUNCH_CHECK(#kernel);                                                     \
  }
#define PCN_POINTWISE_BW(name, kernel)                                              \
  void name(float* dx, const float* dy, const float* y, int64_t n) {                \
    if (n <= 0) return;                                                             \
    kernel<<<blocks_for(n), kThreads>>>(dx, dy, y, n);                              \
    CUDA_LAUNCH_CHECK(#kernel);                                                     \
  }
PCN_POINTWISE(relu_forward, relu_fw)
PCN_POINTWISE_BW(relu_backward, relu_bw)
PCN_POINTWISE(sigmoid_forward, sigmoid_fw)
PCN_POINTWISE_BW(sigmoid_backward, sigmoid_bw)
PCN_POINTWISE(tanh_forward, tanh_fw)
PCN_POINTWISE_BW(tanh_backward, tanh_bw)

template <class T>
static void fill(T* p, T v, int64_t n) {
  if (n <= 0) return;
  fill_kernel<T><<<blocks_for(n), kThreads>>>(p, v, n);
  CUDA_LAUNCH_CHECK("fill_kernel");
}
void fill_f32(float* p, float v, int64_t n) { fill<float>(p, v, n); }
void fill_i32(int32_t* p, int32_t v, int64_t n) { fill<int32_t>(p, v, n); }
void fill_i64(int64_t* p, int64_t v, int64_t n) { fill<int64_t>(p, v, n); }
void fill_u8(uint8_t* p, uint8_t v, int64_t n) { fill<uint8_t>(p, v, n); }

void scale_f32(float* p, float a, int64_t n) {
  if (n <= 0) return;
  scale_kernel<<<blocks_for(n), kThreads>>>(p, a, n);
  CUDA_LAUNCH_CHECK("scale_kernel");
}

}  // namespace cuda
}  // namespace pcn
