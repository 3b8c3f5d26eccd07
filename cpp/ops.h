// Every CPU kernel of pyconvnet. cuda/ implements the same names with the same contracts.
//
// Shapes (row-major, float32, C-contiguous):
//   x (N, C, H, W) input; y (N, OC, OH, OW) output; dy, dx as y, x.
//   conv2d weight (OC, C/groups, KH, KW), bias (OC).
//   local2d weight (OH, OW, OC, C, KH, KW), bias (OC, OH, OW).
//   linear weight (OUT, IN), bias (OUT); x (N, IN).
//
// Gradient rule: parameter gradients ACCUMULATE (dw += ..., db += ...) so that a caller can sum
// over micro-batches; input gradients OVERWRITE (dx = ...). A null dx/dw/db pointer skips that
// gradient (a first layer needs no dx, a layer without bias has no db).
//
// Signature order: outputs, inputs, sizes, workspace. Kernels never allocate and never keep a
// pointer past the call. Threads: OpenMP inside the kernel, single-threaded BLAS under it.
#pragma once
#include <cstdint>
#include "common.h"

namespace pcn {

// gemm.cpp: row-major C = alpha * op(A) * op(B) + beta * C, op(A) (M, K), op(B) (K, N).
void sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc);
// The same product split over the OpenMP threads (along the larger of M and N, or along K in
// fixed pieces when C is small and K long: the result does not depend on the thread count).
void sgemm_parallel(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc);
void set_num_threads(int n);
int get_num_threads();

// conv.cpp: im2col packs one image x (C, H, W) into col (C*KH*KW, OH*OW) with rows ld floats
// apart (ld >= OH*OW, so a chunk of images sits side by side); col2im adds it back onto x.
void im2col(float* col, const float* x, const Geom& g, int64_t ld);
void col2im(float* x, const float* col, const Geom& g, int64_t ld);
// Floats of workspace one image of a chunk needs ("a slot"); the kernels take
// min(N, ws_floats / slot) images at a time, so a bounded workspace processes the batch in chunks.
int64_t conv2d_slot_floats(const Geom& g, int OC);
void conv2d_forward(float* y, const float* x, const float* w, const float* b, int N, const Geom& g,
                    int OC, int groups, float* ws, int64_t ws_floats);
void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, int N, const Geom& g, int OC, int groups, float* ws,
                     int64_t ws_floats);

// local.cpp: locally connected (unshared weights), same geometry as conv2d, groups = 1.
int64_t local2d_slot_floats(const Geom& g, int OC);  // per image in a chunk
void local2d_forward(float* y, const float* x, const float* w, const float* b, int N,
                     const Geom& g, int OC, float* ws, int64_t ws_floats);
void local2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                      const float* w, int N, const Geom& g, int OC, float* ws, int64_t ws_floats);

// linear.cpp: y = x w^T + b.
void linear_forward(float* y, const float* x, const float* w, const float* b, int N, int IN, int OUT);
void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, int N, int IN, int OUT);

// pool.cpp: g.C channels pooled independently; OC == C. Max pool pads with -inf and records the
// argmax (index into the H*W plane) for backward; avg pool counts padding (PyTorch's default).
void maxpool2d_forward(float* y, int32_t* argmax, const float* x, int N, const Geom& g);
void maxpool2d_backward(float* dx, const float* dy, const int32_t* argmax, int N, const Geom& g);
void avgpool2d_forward(float* y, const float* x, int N, const Geom& g);
void avgpool2d_backward(float* dx, const float* dy, int N, const Geom& g);

// lrn.cpp: across channels, PyTorch/Caffe convention:
//   scale_c = k + alpha/size * sum_{c' in [c - size/2, c + (size-1)/2]} x_c'^2,  y_c = x_c scale_c^-beta.
void lrn_forward(float* y, float* scale, const float* x, int N, int C, int HW, int size,
                 float alpha, float beta, float k);
void lrn_backward(float* dx, const float* dy, const float* x, const float* y, const float* scale,
                  int N, int C, int HW, int size, float alpha, float beta);

// eltwise.cpp: n elements; y may alias x and dx may alias dy.
void relu_forward(float* y, const float* x, int64_t n);
void relu_backward(float* dx, const float* dy, const float* y, int64_t n);
void sigmoid_forward(float* y, const float* x, int64_t n);
void sigmoid_backward(float* dx, const float* dy, const float* y, int64_t n);
void tanh_forward(float* y, const float* x, int64_t n);
void tanh_backward(float* dx, const float* dy, const float* y, int64_t n);

// dropout.cpp: inverted dropout. Element i is kept when uniform(seed, i) >= p and then scaled by
// 1/(1-p); mask[i] = kept. The mask depends on (seed, i) only, not on threads or device.
void dropout_forward(float* y, uint8_t* mask, const float* x, int64_t n, float p, uint64_t seed);
void dropout_backward(float* dx, const float* dy, const uint8_t* mask, int64_t n, float p);

// softmax.cpp: rows of x (N, K). The fused loss is the mean over the batch of -log p[label];
// its backward is (p - onehot(label)) / N.
void softmax_forward(float* y, const float* x, int N, int K);
void softmax_backward(float* dx, const float* dy, const float* y, int N, int K);
double softmax_xent_forward(float* prob, const float* x, const int64_t* labels, int N, int K);
void softmax_xent_backward(float* dx, const float* prob, const int64_t* labels, int N, int K);

// sgd.cpp: one step over a flat parameter buffer w, gradient g and velocity v, cut into
// nseg segments [off[s], off[s+1]) with their own lr and weight-decay multipliers.
//   rule 0 ("torch"): d = g + wd*w; v = mu*v + d; w -= lr * (nesterov ? d + mu*v : v)
//   rule 1 ("paper", Krizhevsky 2012): v = mu*v - wd*lr*w - lr*g; w += v
void sgd_step(float* w, float* v, const float* g, const int64_t* off, const float* lr_mult,
              const float* wd_mult, int nseg, float lr, float momentum, float wd, bool nesterov,
              int rule);

}  // namespace pcn
