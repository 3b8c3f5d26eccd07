// The one place that calls BLAS (OpenBLAS from the scipy-openblas32 wheel, prefixed names).
// OpenBLAS runs single-threaded: we parallelize over images with OpenMP, and a threaded BLAS
// nested inside that measured 20-30% slower here. Big lone products use sgemm_parallel.
#include <omp.h>
#include <algorithm>
#include <cblas.h>
#include "ops.h"

namespace pcn {

void sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // BLAS leaves C untouched for K = 0 only when beta = 1; make beta = 0 mean zero.
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) C[(int64_t)i * ldc + j] = beta == 0.f ? 0.f : beta * C[(int64_t)i * ldc + j];
    return;
  }
  scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Splits C into column blocks (or row blocks when M is the larger side), one per thread.
// Block edges are multiples of 16 so each thread's sgemm keeps full vector tiles.
void sgemm_parallel(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc) {
  int T = std::max(1, std::min(omp_get_max_threads(), std::max(M, N) / 64));
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
