// cuBLAS, loaded at run time with dlopen() and never linked, so that pyconvnet._cuda loads on
// machines without it. We declare the few v2-API prototypes we call (cublas_api.h).
#pragma once

namespace pcn {
namespace cuda {

using cublas_sgemm_fn = int (*)(void* handle, int transa, int transb, int m, int n, int k,
                                const float* alpha, const float* A, int lda, const float* B,
                                int ldb, const float* beta, float* C, int ldc);
using cublas_sgemm_batched_fn = int (*)(void* handle, int transa, int transb, int m, int n, int k,
                                        const float* alpha, const float* A, int lda, long long sA,
                                        const float* B, int ldb, long long sB, const float* beta,
                                        float* C, int ldc, long long sC, int batch);
constexpr int CUBLAS_OP_N = 0, CUBLAS_OP_T = 1;

struct CublasApi {
  void* handle = nullptr;  // cublasHandle_t, bound to the legacy default stream
  cublas_sgemm_fn sgemm = nullptr;
  cublas_sgemm_batched_fn sgemm_batched = nullptr;
};

// The loaded cuBLAS when it is the selected backend, else nullptr. The first call tries the
// default library names unless load_cublas() (ops.cuh) ran before.
const CublasApi* cublas_if_selected();

}  // namespace cuda
}  // namespace pcn
