// Finding and loading cuBLAS at run time, and the choice between it and our SGEMM (gemm.cu).
#include "cublas.h"
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <mutex>
#include <stdexcept>
#include "ops.cuh"

namespace pcn {
namespace cuda {
namespace {

using create_fn = int (*)(void**);
using set_stream_fn = int (*)(void*, cudaStream_t);
using destroy_fn = int (*)(void*);

struct State {
  std::mutex mu;
  bool tried = false, use = false;
  void* lib = nullptr;
  CublasApi api;
  std::string why = "not loaded yet";
};
State& state() {
  static State* s = new State;  // never destroyed: the library stays loaded until exit
  return *s;
}

// "" when `name` loaded and a handle was made, else why not.
std::string try_load(State& s, const std::string& name) {
  void* lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* e = dlerror();
    return name + ": " + (e ? e : "dlopen failed");
  }
  auto create = reinterpret_cast<create_fn>(dlsym(lib, "cublasCreate_v2"));
  auto set_stream = reinterpret_cast<set_stream_fn>(dlsym(lib, "cublasSetStream_v2"));
  auto destroy = reinterpret_cast<destroy_fn>(dlsym(lib, "cublasDestroy_v2"));
  auto gemm = reinterpret_cast<cublas_sgemm_fn>(dlsym(lib, "cublasSgemm_v2"));
  auto batched = reinterpret_cast<cublas_sgemm_batched_fn>(dlsym(lib, "cublasSgemmStridedBatched"));
  if (!create || !set_stream || !destroy || !gemm || !batched) {
    dlclose(lib);
    return name + ": a cuBLAS v2 symbol is missing";
  }
  void* h = nullptr;
  int st = create(&h);
  if (st != 0) {
    dlclose(lib);
    return name + ": cublasCreate_v2 failed with status " + std::to_string(st);
  }
  if ((st = set_stream(h, 0)) != 0) {  // the handle and the library go: the next candidate may work
    destroy(h);
    dlclose(lib);
    return name + ": cublasSetStream_v2 failed with status " + std::to_string(st);
  }
  s.lib = lib;
  s.api = CublasApi{h, gemm, batched};
  s.use = true;  // cuBLAS is the default once it loads
  s.why.clear();
  return "";
}

std::string try_all(State& s, const std::vector<std::string>& names) {
  s.tried = true;
  if (s.lib) return "";
  std::string why;
  for (const auto& name : names) {
    std::string e = try_load(s, name);
    if (e.empty()) return "";
    why += (why.empty() ? "" : "; ") + e;
  }
  s.why = why.empty() ? "no library names given" : why;
  return s.why;
}

void ensure_tried(State& s) {
  if (!s.tried) try_all(s, {"libcublas.so.13", "libcublas.so.12", "libcublas.so"});
}

}  // namespace

const CublasApi* cublas_if_selected() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  ensure_tried(s);
  return s.use ? &s.api : nullptr;
}

std::string load_cublas(const std::vector<std::string>& candidates) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return try_all(s, candidates);
}

std::string gemm_backend() {
  return cublas_if_selected() ? "cublas" : "ours";
}

void set_gemm_backend(const std::string& name) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  ensure_tried(s);
  if (name == "ours") s.use = false;
  else if (name == "cublas" && s.lib) s.use = true;
  else if (name == "cublas") throw std::invalid_argument("set_gemm_backend: cuBLAS is not available: " + s.why);
  else throw std::invalid_argument("set_gemm_backend: name must be 'ours' or 'cublas', got '" + name + "'");
}

}  // namespace cuda
}  // namespace pcn
