// The one place that calls BLAS (OpenBLAS from the scipy-openblas32 wheel, prefixed names).
// OpenBLAS runs single-threaded: we parallelize over images with OpenMP, and a threaded BLAS
// nested inside that measured 20-30% slower here. Big lone products use sgemm_parallel.
#include <omp.h>
#include <algorithm>
#include <cstring>
#include <vector>
#include <cblas.h>
#include "ops.h"

namespace pcn {

// Thin products: C (M, N) = alpha op(A) B + beta C with B (K, N) row-major, few rows (M <= 16),
// a short K (<= 256) and many columns, as a small convolution's forward (6 x 25 times 25 x 50,000
// for LeNet's conv1). OpenBLAS packs B whole first, which costs more than the arithmetic there.
// This kernel streams B in 16-column strips (a strip, K x 16 floats, stays in L1 while each 6-row
// block of C takes it) and keeps a 6 x 16 tile of C in registers. (Reading B in 256-column chunks
// instead measured no faster on LeNet's conv2.)
constexpr int kTileM = 6, kTileN = 16;

// 8 floats in a vector register (AVX with -march=x86-64-v3; GCC/Clang vector extensions, so other
// targets get their own registers). Unaligned loads and stores go through memcpy.
typedef float v8f __attribute__((vector_size(32)));
static inline v8f load8(const float* p) { v8f v; std::memcpy(&v, p, sizeof v); return v; }

template <bool TA, int MB>  // rows [0, MB) and columns [0, 16) of C
static void thin_tile(int K, float alpha, const float* A, int lda, const float* B, int ldb,
                      float beta, float* C, int ldc) {
  v8f lo[MB], hi[MB];
  for (int i = 0; i < MB; ++i) lo[i] = hi[i] = v8f{};
  for (int k = 0; k < K; ++k) {
    const v8f b0 = load8(B + (int64_t)k * ldb), b1 = load8(B + (int64_t)k * ldb + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MB; ++i) {
      const float a = TA ? A[(int64_t)k * lda + i] : A[(int64_t)i * lda + k];
      lo[i] += a * b0;
      hi[i] += a * b1;
    }
  }
  for (int i = 0; i < MB; ++i) {
    float* c = C + (int64_t)i * ldc;
    v8f c0 = alpha * lo[i], c1 = alpha * hi[i];
    if (beta != 0.f) {  // beta 0: C is not read
      c0 += beta * load8(c);
      c1 += beta * load8(c + 8);
    }
    std::memcpy(c, &c0, sizeof c0);
    std::memcpy(c + 8, &c1, sizeof c1);
  }
}

template <bool TA>
static void thin_gemm(int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                      int ldb, float beta, float* C, int ldc) {
  using Tile = void (*)(int, float, const float*, int, const float*, int, float, float*, int);
  static constexpr Tile tiles[kTileM + 1] = {nullptr, thin_tile<TA, 1>, thin_tile<TA, 2>,
                                             thin_tile<TA, 3>, thin_tile<TA, 4>, thin_tile<TA, 5>,
                                             thin_tile<TA, 6>};
  const int nfull = N / kTileN * kTileN;
  for (int j0 = 0; j0 < nfull; j0 += kTileN)
    for (int i0 = 0; i0 < M; i0 += kTileM) {
      const float* Ai = TA ? A + i0 : A + (int64_t)i0 * lda;
      tiles[std::min(kTileM, M - i0)](K, alpha, Ai, lda, B + j0, ldb, beta, C + (int64_t)i0 * ldc + j0, ldc);
    }
  for (int i = 0; i < M; ++i)  // the last N % 16 columns
    for (int j = nfull; j < N; ++j) {
      float s = 0.f;
      for (int k = 0; k < K; ++k)
        s += (TA ? A[(int64_t)k * lda + i] : A[(int64_t)i * lda + k]) * B[(int64_t)k * ldb + j];
      float& c = C[(int64_t)i * ldc + j];
      c = beta == 0.f ? alpha * s : alpha * s + beta * c;
    }
}

void sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // BLAS leaves C untouched for K = 0 only when beta = 1; make beta = 0 mean zero.
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) C[(int64_t)i * ldc + j] = beta == 0.f ? 0.f : beta * C[(int64_t)i * ldc + j];
    return;
  }
  if (!tb && M <= 16 && K <= 256 && N >= 256) {  // K <= 256: a strip of B fits in L1
    if (ta) thin_gemm<true>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else thin_gemm<false>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Products with a small C and a K long beside it (a small convolution's weight gradient: 6 x 25
// or 16 x 150 outputs, each a sum over 6,400 to 50,000 columns) split K rather than C. K is cut
// into pieces whose number does not depend on the thread count (so neither does the result); the
// threads take the pieces, and the partial products are added in piece order. The partials live
// in a grow-only per-thread buffer (at most kMaxPieces * kMaxSmallC floats).
constexpr int kPieceK = 1024, kMaxPieces = 64, kMaxSmallC = 16384;

// C (M, N) = A B^T for row-major A (M, K) and B (N, K): dot products of rows, two rows of A by
// four of B at a time (eight vector accumulators). OpenBLAS packs both operands whole first, which
// costs more than the arithmetic when C is this small (measured 3x slower on LeNet's conv1 dW).
static void dot_rows(int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                     float* C, int ldc) {
  int i = 0;
  for (; i + 2 <= M; i += 2) {
    const float *a0 = A + (int64_t)i * lda, *a1 = a0 + lda;
    int j = 0;
    for (; j + 4 <= N; j += 4) {
      const float *b0 = B + (int64_t)j * ldb, *b1 = b0 + ldb, *b2 = b1 + ldb, *b3 = b2 + ldb;
      float s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
#pragma omp simd reduction(+ : s00, s01, s02, s03, s10, s11, s12, s13)
      for (int q = 0; q < K; ++q) {
        const float x0 = a0[q], x1 = a1[q];
        s00 += x0 * b0[q]; s01 += x0 * b1[q]; s02 += x0 * b2[q]; s03 += x0 * b3[q];
        s10 += x1 * b0[q]; s11 += x1 * b1[q]; s12 += x1 * b2[q]; s13 += x1 * b3[q];
      }
      float* c0 = C + (int64_t)i * ldc + j;
      float* c1 = c0 + ldc;
      c0[0] = s00; c0[1] = s01; c0[2] = s02; c0[3] = s03;
      c1[0] = s10; c1[1] = s11; c1[2] = s12; c1[3] = s13;
    }
    for (; j < N; ++j) {
      const float* b0 = B + (int64_t)j * ldb;
      float s0 = 0, s1 = 0;
#pragma omp simd reduction(+ : s0, s1)
      for (int q = 0; q < K; ++q) { s0 += a0[q] * b0[q]; s1 += a1[q] * b0[q]; }
      C[(int64_t)i * ldc + j] = s0;
      C[(int64_t)(i + 1) * ldc + j] = s1;
    }
  }
  for (; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      const float *a0 = A + (int64_t)i * lda, *b0 = B + (int64_t)j * ldb;
      float s0 = 0;
#pragma omp simd reduction(+ : s0)
      for (int q = 0; q < K; ++q) s0 += a0[q] * b0[q];
      C[(int64_t)i * ldc + j] = s0;
    }
}

static void sgemm_split_k(bool ta, bool tb, int M, int N, int K, float alpha, const float* A,
                          int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  const int piece = std::max(kPieceK, (K + kMaxPieces - 1) / kMaxPieces);
  const int pieces = (K + piece - 1) / piece;
  const int64_t MN = (int64_t)M * N;
  static thread_local std::vector<float> part;
  if ((int64_t)part.size() < pieces * MN) part.resize(pieces * MN);
  float* P = part.data();
#pragma omp parallel for schedule(static)
  for (int q = 0; q < pieces; ++q) {
    const int k0 = q * piece, k = std::min(K, k0 + piece) - k0;
    const float* Aq = ta ? A + (int64_t)k0 * lda : A + k0;   // columns [k0, k0+k) of op(A)
    const float* Bq = tb ? B + k0 : B + (int64_t)k0 * ldb;   // rows [k0, k0+k) of op(B)
    if (!ta && tb) dot_rows(M, N, k, Aq, lda, Bq, ldb, P + q * MN, N);
    else sgemm(ta, tb, M, N, k, 1.f, Aq, lda, Bq, ldb, 0.f, P + q * MN, N);
  }
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float s = 0.f;
      for (int q = 0; q < pieces; ++q) s += P[q * MN + (int64_t)i * N + j];
      float& c = C[(int64_t)i * ldc + j];
      c = beta == 0.f ? alpha * s : alpha * s + beta * c;
    }
}

// Splits C into column blocks (or row blocks when M is the larger side), one per thread.
// Block edges are multiples of 16 so each thread's sgemm keeps full vector tiles.
void sgemm_parallel(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc) {
  int T = std::max(1, std::min(omp_get_max_threads(), std::max(M, N) / 64));
  if (M > 0 && N > 0 && (int64_t)M * N <= kMaxSmallC && K >= 2 * kPieceK && K >= 16 * std::max(M, N))
    return sgemm_split_k(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  if (T == 1) return sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  bool split_n = N >= M;
  int len = split_n ? N : M;
  int blk = ((len + T - 1) / T + 15) / 16 * 16;
#pragma omp parallel for num_threads(T) schedule(static)
  for (int t = 0; t < T; ++t) {
    int s = t * blk, e = std::min(len, s + blk);
    if (s >= e) continue;
    if (split_n) {  // columns [s, e) of op(B) and C
      const float* Bs = tb ? B + (int64_t)s * ldb : B + s;
      sgemm(ta, tb, M, e - s, K, alpha, A, lda, Bs, ldb, beta, C + s, ldc);
    } else {        // rows [s, e) of op(A) and C
      const float* As = ta ? A + s : A + (int64_t)s * lda;
      sgemm(ta, tb, e - s, N, K, alpha, As, lda, B, ldb, beta, C + (int64_t)s * ldc, ldc);
    }
  }
}

void set_num_threads(int n) {
  omp_set_num_threads(std::max(1, n));
  scipy_openblas_set_num_threads(1);
}

int get_num_threads() { return omp_get_max_threads(); }

}  // namespace pcn
