// The one place for matrix products on the GPU. Row-major C = alpha op(A) op(B) + beta C.
//
// Ours (always built): a shared-memory tiled SGEMM. A block of 256 threads computes a BM x BN
// tile of C (128 x 128, or 64 x 64 when the big tiles cannot fill the GPU) stepping through K
// BK = 8 at a time; each thread keeps a (BM/16) x (BN/16) micro-tile in registers (8 x 8 for the
// big tile), fed by float4 reads of op(A) and op(B) slices stored k-major in shared memory. The
// next K step is fetched into registers while the current one is multiplied (two shared buffers,
// one barrier per step). The four transpose combinations are template arguments. A full 128 x 128
// tile with 16-byte aligned operand rows reads global memory as float4 without bounds checks; any
// other tile checks every element, so any M, N, K and leading dimension work. Products with too
// few tiles to fill the GPU split K over extra blocks and add the slices in a fixed order.
//
// cuBLAS (optional, loaded at run time by cublas.cpp) is column-major: a row-major C = op(A) op(B)
// is the column-major C^T = op(B)^T op(A)^T, which is the call below with the operands swapped
// (handled here once).
#include <memory>
#include <mutex>
#include "array.h"
#include "common.cuh"
#include "cublas.h"
#include "ops.cuh"

namespace pcn {
namespace cuda {
namespace {

constexpr int BK = 8;

// The body of one block. FAST: a full BM x BN tile whose K range is a multiple of BK and whose
// operands have 16-byte aligned rows (checked by the caller): one float4 global read of op(A) and
// one of op(B) per thread and step, no bounds checks. Otherwise every element is bounds-checked.
template <int BM, int BN, bool TA, bool TB, bool FAST>
__device__ __forceinline__ void tile_body(int M, int N, int m0, int n0, int kbeg, int kend,
                                          float alpha, const float* __restrict__ A, int lda,
                                          const float* __restrict__ B, int ldb, float beta,
                                          float* __restrict__ C, int ldc,
                                          float (*As)[BK][BM + 4], float (*Bs)[BK][BN + 4]) {
  constexpr int TM = BM / 16, TN = BN / 16, LA = BM * BK / 256, LB = BN * BK / 256;
  static_assert(TM % 4 == 0 && TN % 4 == 0 && LA >= 1 && LB >= 1, "tile shape");
  static_assert(!FAST || (LA == 4 && LB == 4), "the fast path moves one float4 per operand");
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int steps = kend > kbeg ? (kend - kbeg + BK - 1) / BK : 0;

  // Element i of this thread's share of a tile: consecutive threads read consecutive addresses.
  // Fast path: thread tid holds 4 consecutive elements along the operand's contiguous axis:
  //   op(A) not transposed (rows of A): m = tid/2, k = 4*(tid%2) .. +3;  transposed: k = tid/32,
  //   m = 4*(tid%32) .. +3; op(B) likewise with (n, k) swapped.
  float ra[LA], rb[LB];
  auto load = [&](int k0) {
    if constexpr (FAST) {
      const float4 va = TA ? __ldg(reinterpret_cast<const float4*>(A + (int64_t)(k0 + tid / 32) * lda + m0 + 4 * (tid % 32)))
                           : __ldg(reinterpret_cast<const float4*>(A + (int64_t)(m0 + tid / 2) * lda + k0 + 4 * (tid % 2)));
      const float4 vb = TB ? __ldg(reinterpret_cast<const float4*>(B + (int64_t)(n0 + tid / 2) * ldb + k0 + 4 * (tid % 2)))
                           : __ldg(reinterpret_cast<const float4*>(B + (int64_t)(k0 + tid / 32) * ldb + n0 + 4 * (tid % 32)));
      ra[0] = va.x; ra[1] = va.y; ra[2] = va.z; ra[3] = va.w;
      rb[0] = vb.x; rb[1] = vb.y; rb[2] = vb.z; rb[3] = vb.w;
    } else {
#pragma unroll
      for (int i = 0; i < LA; ++i) {
        const int idx = tid + i * 256;
        const int m = TA ? idx % BM : idx / BK, k = TA ? idx / BM : idx % BK;
        const int gm = m0 + m, gk = k0 + k;
        ra[i] = gm < M && gk < kend ? (TA ? A[(int64_t)gk * lda + gm] : A[(int64_t)gm * lda + gk]) : 0.f;
      }
#pragma unroll
      for (int i = 0; i < LB; ++i) {
        const int idx = tid + i * 256;
        const int n = TB ? idx / BK : idx % BN, k = TB ? idx % BK : idx / BN;
        const int gn = n0 + n, gk = k0 + k;
        rb[i] = gn < N && gk < kend ? (TB ? B[(int64_t)gn * ldb + gk] : B[(int64_t)gk * ldb + gn]) : 0.f;
      }
    }
  };
  // Shared tiles are k-major: As[k][m], Bs[k][n]. The transposing stores are conflict-free
  // thanks to the +4 padding (bank = 4k + m mod 32 differs across a warp).
  auto store = [&](int buf) {
    if constexpr (FAST) {
      if (TA) *reinterpret_cast<float4*>(&As[buf][tid / 32][4 * (tid % 32)]) = make_float4(ra[0], ra[1], ra[2], ra[3]);
      else
#pragma unroll
        for (int j = 0; j < 4; ++j) As[buf][4 * (tid % 2) + j][tid / 2] = ra[j];
      if (!TB) *reinterpret_cast<float4*>(&Bs[buf][tid / 32][4 * (tid % 32)]) = make_float4(rb[0], rb[1], rb[2], rb[3]);
      else
#pragma unroll
        for (int j = 0; j < 4; ++j) Bs[buf][4 * (tid % 2) + j][tid / 2] = rb[j];
    } else {
#pragma unroll
      for (int i = 0; i < LA; ++i) {
        const int idx = tid + i * 256;
        As[buf][TA ? idx / BM : idx % BK][TA ? idx % BM : idx / BK] = ra[i];
      }
#pragma unroll
      for (int i = 0; i < LB; ++i) {
        const int idx = tid + i * 256;
        Bs[buf][TB ? idx % BK : idx / BN][TB ? idx / BK : idx % BN] = rb[i];
      }
    }
  };

  // Thread (ty, tx) owns rows (i/4)*64 + ty*4 + i%4 and columns (j/4)*64 + tx*4 + j%4.
  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  if (steps > 0) {
    load(kbeg);
    store(0);
  }
  __syncthreads();
  for (int t = 0; t < steps; ++t) {
    const int cur = t & 1;
    if (t + 1 < steps) load(kbeg + (t + 1) * BK);  // in flight while we multiply
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[TM], b[TN];
#pragma unroll
      for (int q = 0; q < TM / 4; ++q) {
        const float4 v = *reinterpret_cast<const float4*>(&As[cur][kk][q * 64 + ty * 4]);
        a[4 * q] = v.x; a[4 * q + 1] = v.y; a[4 * q + 2] = v.z; a[4 * q + 3] = v.w;
      }
#pragma unroll
      for (int q = 0; q < TN / 4; ++q) {
        const float4 v = *reinterpret_cast<const float4*>(&Bs[cur][kk][q * 64 + tx * 4]);
        b[4 * q] = v.x; b[4 * q + 1] = v.y; b[4 * q + 2] = v.z; b[4 * q + 3] = v.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    // The other buffer was last read in step t-1, before the barrier that ended it.
    if (t + 1 < steps) store(cur ^ 1);
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int r = m0 + (i / 4) * 64 + ty * 4 + i % 4;
    if (!FAST && r >= M) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int c = n0 + (j / 4) * 64 + tx * 4 + j % 4;
      if (!FAST && c >= N) continue;
      float* p = C + (int64_t)r * ldc + c;
      *p = beta == 0.f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *p;  // beta 0: C unread
    }
  }
}

// A block of 256 threads computes one BM x BN tile of C[batch] over the K range of its split.
// vec: A, B, their leading dimensions and batch strides allow 16-byte reads (host-checked).
template <int BM, int BN, bool TA, bool TB>
__global__ void __launch_bounds__(256)
sgemm_tile(int M, int N, int K, int kchunk, int splits, bool vec, float alpha,
           const float* __restrict__ A, int lda, int64_t sA, const float* __restrict__ B, int ldb,
           int64_t sB, float beta, float* __restrict__ C, int ldc, int64_t sC, int64_t sSplit) {
  __shared__ __align__(16) float As[2][BK][BM + 4];  // +4: conflict-free stores, float4 reads
  __shared__ __align__(16) float Bs[2][BK][BN + 4];
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int batch = blockIdx.z / splits, split = blockIdx.z % splits;
  A += batch * sA;
  B += batch * sB;
  C += batch * sC + split * sSplit;
  const int kbeg = split * kchunk, kend = min(K, kbeg + kchunk);
  if constexpr (BM * BK == 1024 && BN * BK == 1024) {
    if (vec && m0 + BM <= M && n0 + BN <= N && kend > kbeg && (kend - kbeg) % BK == 0)
      return tile_body<BM, BN, TA, TB, true>(M, N, m0, n0, kbeg, kend, alpha, A, lda, B, ldb,
                                             beta, C, ldc, As, Bs);
  }
  tile_body<BM, BN, TA, TB, false>(M, N, m0, n0, kbeg, kend, alpha, A, lda, B, ldb, beta, C, ldc,
                                   As, Bs);
}

// C[b] = alpha * sum_s part[b][s] + beta * C[b]; part[b][s] is (M, N) dense. Fixed order.
__global__ void splitk_sum(float* C, int ldc, int64_t sC, const float* part, int M, int N,
                           int splits, int batch, float alpha, float beta) {
  const int64_t MN = (int64_t)M * N;
  PCN_GRID_LOOP(i, MN * batch) {
    const int64_t b = i / MN, e = i % MN;
    const float* p = part + b * splits * MN + e;
    float s = 0.f;
    for (int q = 0; q < splits; ++q) s += p[q * MN];
    float* c = C + b * sC + e / N * ldc + e % N;
    *c = beta == 0.f ? alpha * s : alpha * s + beta * *c;
  }
}

template <int BM, int BN>
void launch_tile(bool ta, bool tb, dim3 grid, int M, int N, int K, int kchunk, int splits,
                 bool vec, float alpha, const float* A, int lda, int64_t sA, const float* B, int ldb,
                 int64_t sB, float beta, float* C, int ldc, int64_t sC, int64_t sSplit) {
#define PCN_TILE(TA, TB)                                                                      \
  sgemm_tile<BM, BN, TA, TB><<<grid, 256>>>(M, N, K, kchunk, splits, vec, alpha, A, lda, sA, B, ldb, \
                                            sB, beta, C, ldc, sC, sSplit)
  if (!ta && !tb) PCN_TILE(false, false);
  else if (!ta && tb) PCN_TILE(false, true);
  else if (ta && !tb) PCN_TILE(true, false);
  else PCN_TILE(true, true);
#undef PCN_TILE
  CUDA_LAUNCH_CHECK("sgemm_tile");
}

// Grow-only scratch for split-K partial products (from the caching allocator: no per-call malloc).
float* splitk_scratch(int64_t floats) {
  static std::shared_ptr<Block> block;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  const size_t bytes = (size_t)floats * sizeof(float);
  if (!block || block->bytes < bytes) {
    block.reset();
    block = device_alloc(bytes);
  }
  return static_cast<float*>(block->ptr);
}

void sgemm_ours(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                int64_t sA, const float* B, int ldb, int64_t sB, float beta, float* C, int ldc,
                int64_t sC, int batch) {
  const int sms = sm_count();
  const int64_t tiles128 = (((int64_t)M + 127) / 128) * (((int64_t)N + 127) / 128);  // no int overflow
  const bool big = tiles128 * batch >= sms;
  const int BMN = big ? 128 : 64;
  const int gy = (int)(((int64_t)M + BMN - 1) / BMN), gx = (int)(((int64_t)N + BMN - 1) / BMN);
  if (gy > 65535) throw std::runtime_error("sgemm: M = " + std::to_string(M) + " is too large");
  const int64_t tiles = (int64_t)gx * gy;
  // Split K when the tiles leave the GPU half idle, keeping at least 256 of K per split.
  int splits = 1;
  if (K >= 512 && tiles * batch < 2 * sms)
    splits = (int)std::min<int64_t>({(2 * sms + tiles * batch - 1) / (tiles * batch), K / 256, 32});
  int kchunk = (K + splits - 1) / splits;
  kchunk = (kchunk + BK - 1) / BK * BK;
  if (kchunk > 0) splits = (K + kchunk - 1) / kchunk;  // no empty split
  const int per_launch = std::max(1, 65535 / splits);  // gridDim.z limit
  // 16-byte reads of A and B are legal when every row (and batch) of them starts 16-byte aligned.
  const auto aligned = [](const float* p, int64_t ld, int64_t s) {
    return reinterpret_cast<uintptr_t>(p) % 16 == 0 && ld % 4 == 0 && s % 4 == 0;
  };
  const bool vec = aligned(A, lda, sA) && aligned(B, ldb, sB);
  for (int b0 = 0; b0 < batch; b0 += per_launch) {
    const int nb = std::min(per_launch, batch - b0);
    const float* Ab = A + b0 * sA;
    const float* Bb = B + b0 * sB;
    float* Cb = C + b0 * sC;
    dim3 grid(gx, gy, nb * splits);
    if (splits == 1) {
      if (big) launch_tile<128, 128>(ta, tb, grid, M, N, K, kchunk, 1, vec, alpha, Ab, lda, sA, Bb, ldb, sB, beta, Cb, ldc, sC, 0);
      else launch_tile<64, 64>(ta, tb, grid, M, N, K, kchunk, 1, vec, alpha, Ab, lda, sA, Bb, ldb, sB, beta, Cb, ldc, sC, 0);
      continue;
    }
    const int64_t MN = (int64_t)M * N;
    float* part = splitk_scratch(MN * splits * nb);  // (nb, splits, M, N)
    if (big) launch_tile<128, 128>(ta, tb, grid, M, N, K, kchunk, splits, vec, 1.f, Ab, lda, sA, Bb, ldb, sB, 0.f, part, N, MN * splits, MN);
    else launch_tile<64, 64>(ta, tb, grid, M, N, K, kchunk, splits, vec, 1.f, Ab, lda, sA, Bb, ldb, sB, 0.f, part, N, MN * splits, MN);
    splitk_sum<<<blocks_for(MN * nb), kThreads>>>(Cb, ldc, sC, part, M, N, splits, nb, alpha, beta);
    CUDA_LAUNCH_CHECK("splitk_sum");
  }
}

void cublas_check(int status, const char* what) {
  if (status != 0)
    throw std::runtime_error(std::string(what) + " failed with cuBLAS status " + std::to_string(status));
}

}  // namespace

int sm_count() {
  static int n = [] {
    int dev = 0, count = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, dev));
    return std::max(count, 1);
  }();
  return n;
}

void sgemm_batched(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                   int64_t sA, const float* B, int ldb, int64_t sB, float beta, float* C, int ldc,
                   int64_t sC, int batch) {
  if (M <= 0 || N <= 0 || batch <= 0) return;
  const CublasApi* cb = cublas_if_selected();
  if (!cb || K <= 0)  // K = 0: ours sets C = beta C (cuBLAS may leave C as it is)
    return sgemm_ours(ta, tb, M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
  // Row-major C (M, N) is column-major C^T (N, M) = op(B)^T op(A)^T: swap the operands.
  const int opA = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opB = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (batch == 1)
    cublas_check(cb->sgemm(cb->handle, opB, opA, N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc),
                 "cublasSgemm_v2");
  else
    cublas_check(cb->sgemm_batched(cb->handle, opB, opA, N, M, K, &alpha, B, ldb, sB, A, lda, sA,
                                   &beta, C, ldc, sC, batch), "cublasSgemmStridedBatched");
}

void sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc) {
  sgemm_batched(ta, tb, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

}  // namespace cuda
}  // namespace pcn
