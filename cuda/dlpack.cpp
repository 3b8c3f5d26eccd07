// DLPack export of device arrays: a legacy DLManagedTensor in a "dltensor" capsule whose context
// holds a reference to the array's block, so the memory lives until the consumer (PyTorch, CuPy,
// JAX) calls the deleter, whatever happens to the Python array.
#include "dlpack.h"
#include <cuda_runtime.h>
#include "common.cuh"

namespace py = pybind11;
using Shape = std::vector<int64_t>;

namespace pcn {
namespace cuda {
namespace {

struct DLContext {  // keeps the block alive for as long as the consumer holds the tensor
  DeviceArray array;
  Shape shape, strides;
};

void dl_deleter(DLManagedTensor* t) {  // may run without the GIL: touches no Python object
  delete static_cast<DLContext*>(t->manager_ctx);
  delete t;
}

void capsule_destructor(PyObject* cap) {
  if (PyCapsule_IsValid(cap, "dltensor")) {  // never consumed (a consumer renames it)
    auto* t = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
    if (t && t->deleter) t->deleter(t);
  }
}

// The consumer's stream waits for the work queued on ours (None and 1: the legacy default
// stream itself, nothing to do).
void order_for_consumer(const py::object& stream) {
  if (stream.is_none()) return;
  const int64_t s = stream.cast<int64_t>();
  if (s == 1 || s == -1) return;  // -1: the consumer asks for no synchronization
  if (s == 0) throw py::value_error("__dlpack__: stream 0 is ambiguous for CUDA; pass 1 for the legacy default stream");
  cudaStream_t cs = s == 2 ? cudaStreamPerThread : reinterpret_cast<cudaStream_t>((uintptr_t)s);
  cudaEvent_t ev;
  CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventRecord(ev, 0));
  CUDA_CHECK(cudaStreamWaitEvent(cs, ev, 0));
  CUDA_CHECK(cudaEventDestroy(ev));
}

}  // namespace

int current_device() {
  int d = 0;
  CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

// max_version is accepted and answered with the legacy (unversioned) capsule, as the array API
// standard allows for producers that do not implement DLPack 1.0.
py::object to_dlpack(const DeviceArray& a, const py::object& stream, const py::object& max_version,
                     const py::object& dl_device, const py::object& copy) {
  (void)max_version;
  if (!dl_device.is_none()) {
    auto dev = dl_device.cast<std::pair<int, int>>();
    if (dev.first != kDLCUDA || dev.second != current_device())
      throw py::buffer_error("__dlpack__: cannot export to another device; copy with .to() first");
  }
  DeviceArray src = a;
  if (!copy.is_none() && copy.cast<bool>()) {
    src = empty(a.shape, a.dtype);
    copy_d2d(src, a);
  }
  order_for_consumer(stream);
  auto* ctx = new DLContext{src, src.shape, Shape(src.shape.size())};
  int64_t st = 1;
  for (int i = (int)ctx->shape.size() - 1; i >= 0; --i) {
    ctx->strides[i] = st;
    st *= std::max<int64_t>(ctx->shape[i], 1);
  }
  auto* t = new DLManagedTensor{};
  t->dl_tensor.data = src.data();
  t->dl_tensor.device = DLDevice{kDLCUDA, current_device()};
  t->dl_tensor.ndim = (int32_t)ctx->shape.size();
  const uint8_t code = src.dtype == DType::F32 || src.dtype == DType::F64 ? 2 : src.dtype == DType::U8 ? 1 : 0;
  t->dl_tensor.dtype = DLDataType{code, (uint8_t)(8 * itemsize(src.dtype)), 1};
  t->dl_tensor.shape = ctx->shape.data();
  t->dl_tensor.strides = ctx->strides.data();
  t->dl_tensor.byte_offset = 0;
  t->manager_ctx = ctx;
  t->deleter = dl_deleter;
  PyObject* cap = PyCapsule_New(t, "dltensor", capsule_destructor);
  if (!cap) {
    dl_deleter(t);
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::object>(cap);
}

}  // namespace cuda
}  // namespace pcn
