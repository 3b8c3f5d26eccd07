// A reference "cuBLAS" (column-major, double accumulation, argument checks as cublasSgemm's), for
// the harness (harness_device.h) and as libcublas_emu.so (cublas_emu.cpp) for the emulated module.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdio>

namespace emu {

inline long cublas_calls = 0;
inline int cm_sgemm(int ta, int tb, int m, int n, int k, const float* alpha, const float* A, int lda,
                    const float* B, int ldb, const float* beta, float* C, int ldc) {
  ++cublas_calls;
  if ((ta != 0 && ta != 1) || (tb != 0 && tb != 1) || m < 0 || n < 0 || k < 0 ||
      lda < std::max(1, ta ? k : m) || ldb < std::max(1, tb ? n : k) || ldc < std::max(1, m)) {
    std::printf("EMU cuBLAS: invalid value (op %d %d, m %d n %d k %d, ld %d %d %d)\n", ta, tb, m, n, k, lda, ldb, ldc);
    return 7;  // CUBLAS_STATUS_INVALID_VALUE
  }
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      double s = 0;
      for (int q = 0; q < k; ++q)
        s += (double)(ta ? A[i * (int64_t)lda + q] : A[q * (int64_t)lda + i]) *
             (tb ? B[q * (int64_t)ldb + j] : B[j * (int64_t)ldb + q]);
      float& c = C[j * (int64_t)ldc + i];
      c = *beta == 0.f ? *alpha * (float)s : *alpha * (float)s + *beta * c;  // beta 0: C unread
    }
  return 0;
}
inline int cm_sgemm_h(void*, int ta, int tb, int m, int n, int k, const float* alpha, const float* A,
                      int lda, const float* B, int ldb, const float* beta, float* C, int ldc) {
  return cm_sgemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
inline int cm_sgemm_batched(void*, int ta, int tb, int m, int n, int k, const float* alpha, const float* A,
                            int lda, long long sA, const float* B, int ldb, long long sB, const float* beta,
                            float* C, int ldc, long long sC, int batch) {
  if (batch < 0) return 7;
  for (int b = 0; b < batch; ++b)
    if (int r = cm_sgemm(ta, tb, m, n, k, alpha, A + b * sA, lda, B + b * sB, ldb, beta, C + b * sC, ldc)) return r;
  return 0;
}
}  // namespace emu
