// conv2d by im2col + GEMM over a CHUNK of nb images at once (a bounded workspace holds the chunk):
//   col (C*KH*KW, nb*P) holds the chunk's patches, image after image along the columns;
//   forward   yT[g] (OCg, nb*P) = w[g] (OCg, Kg) @ col[g] (Kg, nb*P), then yT -> y (nb, OC, P) + b
//   backward  dyT = dy -> (OC, nb*P);  dw[g] += dyT[g] @ col[g]^T;  col[g] = w[g]^T @ dyT[g];
//             dx = col2im(col)
// Group g owns rows [g*Kg, (g+1)*Kg) of col (its input channels are contiguous), so the groups
// are one batched GEMM. P = OH*OW, Kg = C/groups*KH*KW, OCg = OC/groups.
#include "common.cuh"
#include "ops.cuh"
#include "patches.cuh"  // gather_patches<true> is im2col, scatter_patches<true> col2im

namespace pcn {
namespace cuda {
namespace {

// y[n0 + i] (OC, P) = yT[:, i*P : (i+1)*P] + b
__global__ void untranspose_bias(float* y, const float* yT, const float* b, int n0, int nb, int OC, int P) {
  const int64_t total = (int64_t)nb * OC * P;
  PCN_GRID_LOOP(i, total) {
    const int p = (int)(i % P);
    const int64_t t = i / P;
    const int oc = (int)(t % OC), img = (int)(t / OC);
    y[(int64_t)n0 * OC * P + i] = yT[((int64_t)oc * nb + img) * P + p] + (b ? b[oc] : 0.f);
  }
}

// dyT (OC, nb*P) = dy[n0 : n0 + nb] rearranged
__global__ void transpose_chunk(float* dyT, const float* dy, int n0, int nb, int OC, int P) {
  const int64_t total = (int64_t)nb * OC * P;
  PCN_GRID_LOOP(i, total) {
    const int p = (int)(i % P);
    const int64_t t = i / P;
    const int oc = (int)(t % OC), img = (int)(t / OC);
    dyT[((int64_t)oc * nb + img) * P + p] = dy[(int64_t)n0 * OC * P + i];
  }
}

// Bias gradient in two fixed-order passes (deterministic, double sums):
// part[oc*S + s] = the sum of dy[n, oc, :] over block s's share of the images, then
// db[oc] += sum_s part[oc*S + s]. Splitting the images over S blocks per channel fills the GPU
// when OC is small (conv1: 96 channels of 128 * 3025 values each).
__global__ void bias_grad_part(double* part, const float* dy, int N, int OC, int P, int S) {
  __shared__ double red[kThreads];
  const int oc = blockIdx.x, s = blockIdx.y;
  const int n0 = (int)((int64_t)N * s / S), n1 = (int)((int64_t)N * (s + 1) / S);
  double acc = 0;
  for (int n = n0; n < n1; ++n) {
    const float* row = dy + ((int64_t)n * OC + oc) * P;
    for (int p = threadIdx.x; p < P; p += kThreads) acc += row[p];
  }
  red[threadIdx.x] = acc;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w >>= 1) {
    if ((int)threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) part[(int64_t)oc * S + s] = red[0];
}

__global__ void bias_grad_sum(float* db, const double* part, int OC, int S) {
  PCN_GRID_LOOP(oc, OC) {
    double t = 0;
    for (int s = 0; s < S; ++s) t += part[oc * S + s];
    db[oc] += (float)t;
  }
}

int chunk_images(int N, const Geom& g, int OC, int64_t ws_floats) {
  const int64_t slot = conv2d_slot_floats(g, OC);
  const int64_t fit = std::max<int64_t>(1, std::min<int64_t>(ws_floats / slot, INT32_MAX / std::max(g.OH * g.OW, 1)));
  if (fit >= N) return std::max(N, 1);  // nb*P is a GEMM extent (int)
  // Equal chunks (no thin last GEMM), a multiple of 4 images where that fits, so that nb*P, the
  // leading dimension of col and yT, keeps their rows 16-byte aligned (cuBLAS's and our float4 paths).
  const int64_t chunks = (N + fit - 1) / fit;
  const int64_t nb = (N + chunks - 1) / chunks, nb4 = (nb + 3) / 4 * 4;
  return (int)(nb4 <= fit ? nb4 : nb);
}

}  // namespace

// Backward reuses col for dcol and yT for dyT; the bias gradient's partial sums (at least OC
// doubles) use the same room before them.
int64_t conv2d_slot_floats(const Geom& g, int OC) {
  const int64_t P = (int64_t)g.OH * g.OW;
  return std::max<int64_t>({1, 2 * (int64_t)OC, ((int64_t)g.C * g.KH * g.KW + OC) * P});
}

void conv2d_forward(float* y, const float* x, const float* w, const float* b, int N, const Geom& g,
                    int OC, int groups, float* ws, int64_t ws_floats) {
  const int P = g.OH * g.OW, OCg = OC / groups, Kg = g.C / groups * g.KH * g.KW;
  const int NB = chunk_images(N, g, OC, ws_floats);
  for (int n0 = 0; n0 < N; n0 += NB) {
    const int nb = std::min(NB, N - n0), nbP = nb * P;
    float* col = ws;                                   // (C*KH*KW, nb*P)
    float* yT = ws + (int64_t)g.C * g.KH * g.KW * nbP; // (OC, nb*P)
    const int64_t ncol = (int64_t)g.C * g.KH * g.KW * nbP, ny = (int64_t)nb * OC * P;
    gather_patches<true><<<blocks_for(ncol), kThreads>>>(col, x, n0, nb, g);
    CUDA_LAUNCH_CHECK("gather_patches");
    sgemm_batched(false, false, OCg, nbP, Kg, 1.f, w, Kg, (int64_t)OCg * Kg, col, nbP,
                  (int64_t)Kg * nbP, 0.f, yT, nbP, (int64_t)OCg * nbP, groups);
    untranspose_bias<<<blocks_for(ny), kThreads>>>(y, yT, b, n0, nb, OC, P);
    CUDA_LAUNCH_CHECK("untranspose_bias");
  }
}

void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, int N, const Geom& g, int OC, int groups, float* ws,
                     int64_t ws_floats) {
  const int P = g.OH * g.OW, OCg = OC / groups, Kg = g.C / groups * g.KH * g.KW;
  if (db && OC > 0) {  // the partial sums borrow the workspace (16-byte aligned, >= 2*OC floats)
    double* part = reinterpret_cast<double*>(ws);
    const int S = (int)std::max<int64_t>(1, std::min<int64_t>({(4 * sm_count() + OC - 1) / OC,
                                                                std::max(N, 1), ws_floats / (2 * OC)}));
    bias_grad_part<<<dim3(OC, S), kThreads>>>(part, dy, N, OC, P, S);
    CUDA_LAUNCH_CHECK("bias_grad_part");
    bias_grad_sum<<<blocks_for(OC), kThreads>>>(db, part, OC, S);
    CUDA_LAUNCH_CHECK("bias_grad_sum");
  }
  if (!dx && !dw) return;
  const int NB = chunk_images(N, g, OC, ws_floats);
  for (int n0 = 0; n0 < N; n0 += NB) {
    const int nb = std::min(NB, N - n0), nbP = nb * P;
    float* col = ws;
    float* dyT = ws + (int64_t)g.C * g.KH * g.KW * nbP;
    const int64_t ncol = (int64_t)g.C * g.KH * g.KW * nbP, ny = (int64_t)nb * OC * P;
    transpose_chunk<<<blocks_for(ny), kThreads>>>(dyT, dy, n0, nb, OC, P);
    CUDA_LAUNCH_CHECK("transpose_chunk");
    if (dw) {
      gather_patches<true><<<blocks_for(ncol), kThreads>>>(col, x, n0, nb, g);
      CUDA_LAUNCH_CHECK("gather_patches");
      sgemm_batched(false, true, OCg, Kg, nbP, 1.f, dyT, nbP, (int64_t)OCg * nbP, col, nbP,
                    (int64_t)Kg * nbP, 1.f, dw, Kg, (int64_t)OCg * Kg, groups);
    }
    if (dx) {
      sgemm_batched(true, false, Kg, nbP, OCg, 1.f, w, Kg, (int64_t)OCg * Kg, dyT, nbP,
                    (int64_t)OCg * nbP, 0.f, col, nbP, (int64_t)Kg * nbP, groups);
      const int64_t nx = (int64_t)nb * g.C * g.H * g.W;
      scatter_patches<true><<<blocks_for(nx), kThreads>>>(dx, col, n0, nb, g);
      CUDA_LAUNCH_CHECK("scatter_patches");
    }
  }
}

}  // namespace cuda
}  // namespace pcn
