// libcublas_emu.so: the cuBLAS v2 entry points that cuda/cublas.cpp looks up with dlsym, served by
// the reference "cuBLAS", so that the emulated _cuda module's cuBLAS backend (loading, handle,
// the row-major to column-major mapping) runs in the GPU tests (conftest.py loads it).
#include "reference_cublas.h"

#define EXPORT __attribute__((visibility("default")))  // the build hides everything else

extern "C" {
EXPORT int cublasCreate_v2(void** handle) {
  static int the_handle;
  *handle = &the_handle;
  return 0;
}
EXPORT int cublasDestroy_v2(void*) { return 0; }
EXPORT int cublasSetStream_v2(void*, void*) { return 0; }
EXPORT int cublasSgemm_v2(void* h, int ta, int tb, int m, int n, int k, const float* alpha, const float* A, int lda,
                   const float* B, int ldb, const float* beta, float* C, int ldc) {
  return emu::cm_sgemm_h(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
EXPORT int cublasSgemmStridedBatched(void* h, int ta, int tb, int m, int n, int k, const float* alpha, const float* A,
                              int lda, long long sA, const float* B, int ldb, long long sB, const float* beta,
                              float* C, int ldc, long long sC, int batch) {
  return emu::cm_sgemm_batched(h, ta, tb, m, n, k, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
}
}
