// The DLPack ABI (v0.8, "legacy" unversioned DLManagedTensor), declared here so that the build
// needs no dlpack package (field order and sizes are those of dlpack/dlpack.h), and the export.
#pragma once
#include <cstdint>

extern "C" {
struct DLDevice {
  int32_t device_type;  // kDLCUDA = 2
  int32_t device_id;
};
struct DLDataType {
  uint8_t code;  // kDLInt = 0, kDLUInt = 1, kDLFloat = 2
  uint8_t bits;
  uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements
  uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};
}

constexpr int32_t kDLCUDA = 2;

#include <pybind11/pybind11.h>
#include "array.h"

namespace pcn {
namespace cuda {
int current_device();
// array.__dlpack__(stream=None, max_version=None, dl_device=None, copy=None) (dlpack.cpp)
pybind11::object to_dlpack(const DeviceArray& a, const pybind11::object& stream,
                           const pybind11::object& max_version, const pybind11::object& dl_device,
                           const pybind11::object& copy);
}  // namespace cuda
}  // namespace pcn
