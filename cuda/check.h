// Argument checks of the _cuda op table: the rules on shapes are cpp/check_shapes.h's (shared with
// _core, so the messages match); this adds what is particular to device arrays. Anything a Python
// caller passes is checked here, so no input reaches a kernel that could read or write out of bounds.
#pragma once
#include <pybind11/pybind11.h>
#include <string>
#include "array.h"
#include "check_shapes.h"

namespace pcn {
namespace cuda {
namespace check {

namespace py = pybind11;
using namespace pcn::checks;  // Shape, Pair, str, fail, ndim, size and the geometry rules on shapes

template <class T> DType dtype_of();
template <> inline DType dtype_of<float>() { return DType::F32; }
template <> inline DType dtype_of<double>() { return DType::F64; }
template <> inline DType dtype_of<int32_t>() { return DType::I32; }
template <> inline DType dtype_of<int64_t>() { return DType::I64; }
template <> inline DType dtype_of<uint8_t>() { return DType::U8; }

// The device array behind a Python argument; a host array here is a caller's mistake.
inline const DeviceArray& arr(py::handle h, const char* op, const char* name) {
  if (!py::isinstance<DeviceArray>(h))
    throw py::type_error(std::string(op) + ": " + name + " must be a pyconvnet.cuda device array, got " +
                         std::string(py::str(py::type::of(h).attr("__name__"))) +
                         " (move it with pyconvnet.cuda.asarray or .to('cuda'))");
  return h.cast<const DeviceArray&>();
}
inline Shape shape(py::handle h, const char* op, const char* name) { return arr(h, op, name).shape; }

// The pointer of a device array of T, optionally of an exact shape.
template <class T>
T* ptr(py::handle h, const char* op, const char* name, const Shape& want = {}) {
  const DeviceArray& a = arr(h, op, name);
  if (a.dtype != dtype_of<T>())
    throw py::type_error(std::string(op) + ": " + name + " must have dtype " + dtype_name(dtype_of<T>()) +
                         ", got " + dtype_name(a.dtype));
  if (!want.empty() && a.shape != want)
    fail(op, std::string(name) + " has shape " + str(a.shape) + ", expected " + str(want));
  return static_cast<T*>(a.data());
}
template <class T>
T* opt(py::handle h, const char* op, const char* name, const Shape& want) {
  return h.is_none() ? nullptr : ptr<T>(h, op, name, want);
}
// Kernels may read the workspace as float4 or double: it must start 16-byte aligned (a fresh
// device array does; a view at an odd offset is refused).
inline float* workspace(py::handle ws, int64_t need, const char* op) {
  float* p = ptr<float>(ws, op, "workspace");
  const int64_t have = arr(ws, op, "workspace").size();
  if (have < need)
    fail(op, "workspace holds " + std::to_string(have) + " floats, needs at least " + std::to_string(need));
  if (reinterpret_cast<uintptr_t>(p) % 16) fail(op, "workspace must start 16-byte aligned");
  return p;
}

}  // namespace check
}  // namespace cuda
}  // namespace pcn
