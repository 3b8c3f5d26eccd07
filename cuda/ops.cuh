// Every CUDA kernel of pyconvnet: the names and contracts of cpp/ops.h (shapes, the gradient rule:
// parameter gradients ACCUMULATE, input gradients OVERWRITE, a null pointer skips that gradient),
// with device pointers. Differences from cpp/ops.h are marked "CUDA:".
//
// This header is plain C++ (no CUDA syntax) so that the pybind11 table (bind.cpp, compiled by the
// host compiler) can include it. All work is queued on the legacy default stream; every function
// checks its launches and throws std::runtime_error on a CUDA error.
#pragma once
#include <cstdint>
#include <string>
#include <vector>
#include "common.h"

namespace pcn {
namespace cuda {

// gemm.cu: row-major C = alpha * op(A) * op(B) + beta * C, op(A) (M, K), op(B) (K, N); beta = 0
// never reads C. The batched form repeats it over `batch` matrices at the given element strides.
// Backend: cuBLAS when it was loaded at run time and selected, else our own tiled kernel.
void sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc);
void sgemm_batched(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                   int64_t sA, const float* B, int ldb, int64_t sB, float beta, float* C, int ldc,
                   int64_t sC, int batch);
std::string load_cublas(const std::vector<std::string>& candidates);  // "" or the reason it failed
std::string gemm_backend();                                           // "ours" or "cublas"
void set_gemm_backend(const std::string& name);                       // throws on a bad name

// conv.cu: a chunk of nb images at a time: col (C*KH*KW, nb*OH*OW) and the output transposed
// (OC, nb*OH*OW), so each group is ONE GEMM over the chunk. CUDA: slot = max((C*KH*KW + OC) * OH*OW,
// 2*OC) (the bias gradient's partial sums borrow the workspace, which is 16-byte aligned).
int64_t conv2d_slot_floats(const Geom& g, int OC);
void conv2d_forward(float* y, const float* x, const float* w, const float* b, int N, const Geom& g,
                    int OC, int groups, float* ws, int64_t ws_floats);
void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, int N, const Geom& g, int OC, int groups, float* ws,
                     int64_t ws_floats);

// local.cu: as cpp/local.cpp (cols (P, nb, K)); each location's GEMM is one batched GEMM.
int64_t local2d_slot_floats(const Geom& g, int OC);
void local2d_forward(float* y, const float* x, const float* w, const float* b, int N,
                     const Geom& g, int OC, float* ws, int64_t ws_floats);
void local2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                      const float* w, int N, const Geom& g, int OC, float* ws, int64_t ws_floats);

// linear.cu
void linear_forward(float* y, const float* x, const float* w, const float* b, int N, int IN, int OUT);
void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, int N, int IN, int OUT);

// pool.cu. CUDA: backward gathers (one thread per input element, windows in the CPU's order),
// so an argmax entry outside the plane is never dereferenced: it contributes nothing.
void maxpool2d_forward(float* y, int32_t* argmax, const float* x, int N, const Geom& g);
void maxpool2d_backward(float* dx, const float* dy, const int32_t* argmax, int N, const Geom& g);
void avgpool2d_forward(float* y, const float* x, int N, const Geom& g);
void avgpool2d_backward(float* dx, const float* dy, int N, const Geom& g);

// lrn.cu
void lrn_forward(float* y, float* scale, const float* x, int N, int C, int HW, int size,
                 float alpha, float beta, float k);
void lrn_backward(float* dx, const float* dy, const float* x, const float* y, const float* scale,
                  int N, int C, int HW, int size, float alpha, float beta);

// eltwise.cu (y may alias x, dx may alias dy), plus the fills and the in-place scale that
// device arrays need.
void relu_forward(float* y, const float* x, int64_t n);
void relu_backward(float* dx, const float* dy, const float* y, int64_t n);
void sigmoid_forward(float* y, const float* x, int64_t n);
void sigmoid_backward(float* dx, const float* dy, const float* y, int64_t n);
void tanh_forward(float* y, const float* x, int64_t n);
void tanh_backward(float* dx, const float* dy, const float* y, int64_t n);
void fill_f32(float* p, float v, int64_t n);
void fill_i32(int32_t* p, int32_t v, int64_t n);
void fill_i64(int64_t* p, int64_t v, int64_t n);
void fill_u8(uint8_t* p, uint8_t v, int64_t n);
void scale_f32(float* p, float a, int64_t n);

// dropout.cu: the mask of (seed, i) is pcn::uniform01's, so it equals the CPU mask bit for bit.
void dropout_forward(float* y, uint8_t* mask, const float* x, int64_t n, float p, uint64_t seed);
void dropout_backward(float* dx, const float* dy, const uint8_t* mask, int64_t n, float p);

// softmax.cu. CUDA: the fused loss is written to the device scalar *loss (float32), not returned;
// rows_ws holds N doubles (per-row losses, summed in a fixed order). A label outside [0, K) makes
// the loss NaN and adds no one-hot term in backward (it is never used as an index).
void softmax_forward(float* y, const float* x, int N, int K);
void softmax_backward(float* dx, const float* dy, const float* y, int N, int K);
void softmax_xent_forward(float* loss, float* prob, const float* x, const int64_t* labels, int N,
                          int K, double* rows_ws);
void softmax_xent_backward(float* dx, const float* prob, const int64_t* labels, int N, int K);
// *count (int64, device) = the number of rows whose first maximum is at labels[n].
void top1_count(int64_t* count, const float* x, const int64_t* labels, int N, int K);

// sgd.cu: one kernel over the flat buffers. CUDA: off, lr_mult and wd_mult are HOST arrays (the
// segment table travels in the kernel's arguments).
void sgd_step(float* w, float* v, const float* g, const int64_t* off, const float* lr_mult,
              const float* wd_mult, int nseg, float lr, float momentum, float wd, bool nesterov,
              int rule);

int sm_count();  // multiprocessors of the current device (cached)

}  // namespace cuda
}  // namespace pcn
