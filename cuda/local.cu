// Locally connected 2d (unshared weights), the layout of cpp/local.cpp: a chunk of nb images is
// gathered location-major, cols (P, nb, K), K = C*KH*KW, and all P per-location GEMMs run as one
// batched GEMM:
//   forward   Y[l] (nb, OC) = cols[l] @ w[l]^T            (then y (N, OC, P) = Y + b)
//   backward  dw[l] += dY[l]^T @ cols[l];  cols[l] = dY[l] @ w[l];  dx = gather(cols)
#include "common.cuh"
#include "ops.cuh"
#include "patches.cuh"

namespace pcn {
namespace cuda {
namespace {

// y[n0 + i][oc][l] = Y[l][i][oc] + b[oc][l]
__global__ void scatter_outputs(float* y, const float* Y, const float* b, int n0, int nb, int OC, int P) {
  const int64_t total = (int64_t)nb * OC * P;
  PCN_GRID_LOOP(i, total) {
    const int l = (int)(i % P);
    const int64_t t = i / P;
    const int oc = (int)(t % OC), img = (int)(t / OC);
    y[(int64_t)n0 * OC * P + i] = Y[((int64_t)l * nb + img) * OC + oc] + (b ? b[(int64_t)oc * P + l] : 0.f);
  }
}

// dY[l][i][oc] = dy[n0 + i][oc][l]
__global__ void gather_outputs(float* dY, const float* dy, int n0, int nb, int OC, int P) {
  const int64_t total = (int64_t)nb * OC * P;
  PCN_GRID_LOOP(i, total) {
    const int l = (int)(i % P);
    const int64_t t = i / P;
    const int oc = (int)(t % OC), img = (int)(t / OC);
    dY[((int64_t)l * nb + img) * OC + oc] = dy[(int64_t)n0 * OC * P + i];
  }
}

// db (OC, P) += sum over n of dy[n]; images added in order onto db, as on the CPU.
__global__ void bias_grad_local(float* db, const float* dy, int N, int64_t OCP) {
  PCN_GRID_LOOP(j, OCP) {
    float s = 0.f;
    for (int n = 0; n < N; ++n) s += dy[(int64_t)n * OCP + j];
    db[j] += s;
  }
}

int chunk(int N, const Geom& g, int OC, int64_t ws_floats) {
  const int64_t fit = std::min<int64_t>(ws_floats / local2d_slot_floats(g, OC),
                                        INT32_MAX / std::max(g.C * g.KH * g.KW + OC, 1));
  return (int)std::max<int64_t>(1, std::min<int64_t>(N, fit));
}

}  // namespace

int64_t local2d_slot_floats(const Geom& g, int OC) {
  return std::max<int64_t>(1, (int64_t)g.OH * g.OW * ((int64_t)g.C * g.KH * g.KW + OC));
}

void local2d_forward(float* y, const float* x, const float* w, const float* b, int N,
                     const Geom& g, int OC, float* ws, int64_t ws_floats) {
  const int P = g.OH * g.OW, K = g.C * g.KH * g.KW, NB = chunk(N, g, OC, ws_floats);
  for (int n0 = 0; n0 < N; n0 += NB) {
    const int nb = std::min(NB, N - n0);
    float* cols = ws;                         // (P, nb, K)
    float* Y = ws + (int64_t)P * nb * K;      // (P, nb, OC)
    const int64_t ncol = (int64_t)P * nb * K, ny = (int64_t)nb * OC * P;
    gather_patches<false><<<blocks_for(ncol), kThreads>>>(cols, x, n0, nb, g);
    CUDA_LAUNCH_CHECK("gather_patches");
    sgemm_batched(false, true, nb, OC, K, 1.f, cols, K, (int64_t)nb * K, w, K, (int64_t)OC * K,
                  0.f, Y, OC, (int64_t)nb * OC, P);
    scatter_outputs<<<blocks_for(ny), kThreads>>>(y, Y, b, n0, nb, OC, P);
    CUDA_LAUNCH_CHECK("scatter_outputs");
  }
}

void local2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                      const float* w, int N, const Geom& g, int OC, float* ws, int64_t ws_floats) {
  const int P = g.OH * g.OW, K = g.C * g.KH * g.KW, NB = chunk(N, g, OC, ws_floats);
  const int64_t OCP = (int64_t)OC * P;
  if (db && OCP > 0) {
    bias_grad_local<<<blocks_for(OCP), kThreads>>>(db, dy, N, OCP);
    CUDA_LAUNCH_CHECK("bias_grad_local");
  }
  if (!dx && !dw) return;
  for (int n0 = 0; n0 < N; n0 += NB) {
    const int nb = std::min(NB, N - n0);
    float* cols = ws;                         // (P, nb, K): patches, then their gradients
    float* dY = ws + (int64_t)P * nb * K;     // (P, nb, OC)
    const int64_t ncol = (int64_t)P * nb * K, ny = (int64_t)nb * OC * P;
    gather_outputs<<<blocks_for(ny), kThreads>>>(dY, dy, n0, nb, OC, P);
    CUDA_LAUNCH_CHECK("gather_outputs");
    if (dw) {
      gather_patches<false><<<blocks_for(ncol), kThreads>>>(cols, x, n0, nb, g);
      CUDA_LAUNCH_CHECK("gather_patches");
      sgemm_batched(true, false, OC, K, nb, 1.f, dY, OC, (int64_t)nb * OC, cols, K, (int64_t)nb * K,
                    1.f, dw, K, (int64_t)OC * K, P);
    }
    if (dx) {
      sgemm_batched(false, false, nb, K, OC, 1.f, dY, OC, (int64_t)nb * OC, w, K, (int64_t)OC * K,
                    0.f, cols, K, (int64_t)nb * K, P);
      const int64_t nx = (int64_t)nb * g.C * g.H * g.W;
      scatter_patches<false><<<blocks_for(nx), kThreads>>>(dx, cols, n0, nb, g);
      CUDA_LAUNCH_CHECK("scatter_patches");
    }
  }
}

}  // namespace cuda
}  // namespace pcn
