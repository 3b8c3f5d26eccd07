// pyconvnet._cuda.DeviceArray: shape, dtype, views (reshape, leading-axis and flat slices),
// explicit host copies (numpy(), to("cpu")), fill, copy_from, and zero-copy export through
// __cuda_array_interface__ (v3) and DLPack. Arrays are always C-contiguous.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>
#include <cuda_runtime.h>
#include "array.h"
#include "check_shapes.h"
#include "common.cuh"
#include "dlpack.h"
#include "ops.cuh"

namespace py = pybind11;
using namespace pcn::cuda;
using Shape = std::vector<int64_t>;
using pcn::checks::str;  // a shape as Python prints it

namespace {

DType to_dtype(const py::object& obj) {
  py::dtype dt = py::dtype::from_args(obj);
  const char k = dt.kind();
  const py::ssize_t n = dt.itemsize();
  const bool native = dt.byteorder() != '>';
  if (native && k == 'f' && n == 4) return DType::F32;
  if (native && k == 'f' && n == 8) return DType::F64;
  if (native && k == 'i' && n == 4) return DType::I32;
  if (native && k == 'i' && n == 8) return DType::I64;
  if (k == 'u' && n == 1) return DType::U8;
  throw py::type_error("pyconvnet.cuda: unsupported dtype " + std::string(py::str(dt)) +
                       " (float32, float64, int32, int64 and uint8 are)");
}
py::dtype np_dtype(DType t) { return py::dtype(dtype_name(t)); }

py::tuple shape_tuple(const Shape& s) {
  py::tuple t(s.size());
  for (size_t i = 0; i < s.size(); ++i) t[i] = py::int_(s[i]);
  return t;
}
Shape to_shape(const py::handle& h) {
  if (py::isinstance<py::int_>(h)) return {h.cast<int64_t>()};
  return h.cast<Shape>();
}

// The shape asked for, with one -1 inferred, holding exactly `size` elements.
Shape resolve(Shape s, int64_t size, const Shape& from) {
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1 && infer < 0) infer = (int)i;
    else if (s[i] < 0) throw py::value_error("reshape: bad dimension in " + str(s));
    else known *= s[i];
  }
  if (infer >= 0 && known > 0 && size % known == 0) s[infer] = size / known;
  else if (infer >= 0 && known == 0 && size == 0) s[infer] = 0;
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  if (n != size || (infer >= 0 && s[infer] < 0))
    throw py::value_error("cannot reshape array of shape " + str(from) + " into shape " + str(s));
  return s;
}

DeviceArray reshape(const DeviceArray& a, const py::args& args) {
  Shape s = args.size() == 1 && !py::isinstance<py::int_>(args[0]) ? to_shape(args[0]) : args.cast<Shape>();
  DeviceArray v = a;
  v.shape = resolve(s, a.size(), a.shape);
  return v;
}

// a[i] or a[start:stop] along the leading axis: a view.
DeviceArray get_item(const DeviceArray& a, const py::object& key) {
  if (a.shape.empty()) throw py::index_error("a 0-d array cannot be indexed");
  const int64_t n = a.shape[0];
  const size_t row = a.nbytes() / std::max<int64_t>(n, 1);
  DeviceArray v = a;
  if (py::isinstance<py::int_>(key)) {
    int64_t i = key.cast<int64_t>();
    if (i < 0) i += n;
    if (i < 0 || i >= n) throw py::index_error("index " + std::to_string(key.cast<int64_t>()) + " is out of bounds for axis 0 with size " + std::to_string(n));
    v.offset += (size_t)i * row;
    v.shape.erase(v.shape.begin());
    return v;
  }
  if (py::isinstance<py::slice>(key)) {
    py::ssize_t start, stop, step, len;
    if (!key.cast<py::slice>().compute(n, &start, &stop, &step, &len)) throw py::error_already_set();
    if (step != 1) throw py::value_error("pyconvnet.cuda arrays take slices with step 1 only (views stay contiguous)");
    v.offset += (size_t)(len > 0 ? start : 0) * row;
    v.shape[0] = len;
    return v;
  }
  throw py::type_error("pyconvnet.cuda arrays take an int or a slice of the leading axis, got " +
                       std::string(py::str(py::type::of(key).attr("__name__"))));
}

py::array to_numpy(const DeviceArray& a) {
  py::array out(np_dtype(a.dtype), std::vector<py::ssize_t>(a.shape.begin(), a.shape.end()));
  void* dst = out.mutable_data();
  py::gil_scoped_release nogil;
  copy_d2h(dst, a);
  return out;
}

void fill(const DeviceArray& a, const py::object& value) {
  const int64_t n = a.size();
  if (n == 0) return;
  if (value.cast<double>() == 0.0) {
    CUDA_CHECK(cudaMemsetAsync(a.data(), 0, a.nbytes(), 0));
    return;
  }
  switch (a.dtype) {
    case DType::F32: fill_f32(static_cast<float*>(a.data()), value.cast<float>(), n); break;
    case DType::I32: fill_i32(static_cast<int32_t*>(a.data()), value.cast<int32_t>(), n); break;
    case DType::I64: fill_i64(static_cast<int64_t*>(a.data()), value.cast<int64_t>(), n); break;
    case DType::U8: fill_u8(static_cast<uint8_t*>(a.data()), value.cast<uint8_t>(), n); break;
    default: throw py::type_error("fill: a float64 device array can only be filled with 0");
  }
}

// A C-contiguous host array of obj (0-d stays 0-d), of dtype unless that is None.
py::array host_array(const py::object& obj, const py::object& dtype) {
  return py::module_::import("numpy").attr("asarray")(obj, dtype, py::arg("order") = "C");
}

// From another device array (same shape and dtype) or anything numpy turns into this shape.
void copy_from(const DeviceArray& a, const py::object& src) {
  if (py::isinstance<DeviceArray>(src)) {
    const DeviceArray& s = src.cast<const DeviceArray&>();
    if (s.shape != a.shape) throw py::value_error("copy_from: source has shape " + str(s.shape) + ", expected " + str(a.shape));
    if (s.dtype != a.dtype) throw py::type_error(std::string("copy_from: source has dtype ") + dtype_name(s.dtype) + ", expected " + dtype_name(a.dtype));
    copy_d2d(a, s);
    return;
  }
  // np.asarray(order="C"), not np.ascontiguousarray: that one turns 0-d input into shape (1,)
  py::array h = host_array(src, np_dtype(a.dtype));
  Shape hs(h.shape(), h.shape() + h.ndim());
  if (hs != a.shape) throw py::value_error("copy_from: source has shape " + str(hs) + ", expected " + str(a.shape));
  const void* p = h.data();
  py::gil_scoped_release nogil;
  copy_h2d(a, p);
}

DeviceArray from_host(const py::object& obj, const py::object& dtype) {
  py::array h = host_array(obj, dtype);
  DeviceArray a = empty(Shape(h.shape(), h.shape() + h.ndim()), to_dtype(h.dtype()));
  const void* p = h.data();
  py::gil_scoped_release nogil;
  copy_h2d(a, p);
  return a;
}

// ---- zero-copy export
const char* typestr(DType t) {
  switch (t) {
    case DType::F32: return "<f4";
    case DType::F64: return "<f8";
    case DType::I32: return "<i4";
    case DType::I64: return "<i8";
    case DType::U8: return "|u1";
  }
  return "";
}

py::dict cuda_array_interface(const DeviceArray& a) {
  py::dict d;
  d["shape"] = shape_tuple(a.shape);
  d["typestr"] = typestr(a.dtype);
  d["data"] = py::make_tuple(py::int_(a.size() ? (uintptr_t)a.data() : 0), false);  // 0 when empty (v3)
  d["version"] = 3;
  d["strides"] = py::none();  // C-contiguous
  d["stream"] = 1;            // the legacy default stream: where all our work is queued
  return d;
}

const DeviceArray& scalar(const DeviceArray& a, const char* what) {
  if (a.size() != 1)
    throw py::type_error(std::string("only a device array of one element converts to ") + what + ", got shape " + str(a.shape));
  return a;
}

}  // namespace

void bind_array(py::module_& m) {
  py::class_<DeviceArray>(m, "DeviceArray", "A C-contiguous array in GPU memory (see pyconvnet.cuda).")
      .def_property_readonly("shape", [](const DeviceArray& a) { return shape_tuple(a.shape); })
      .def_property_readonly("dtype", [](const DeviceArray& a) { return np_dtype(a.dtype); })
      .def_property_readonly("ndim", [](const DeviceArray& a) { return a.shape.size(); })
      .def_property_readonly("size", &DeviceArray::size)
      .def_property_readonly("nbytes", &DeviceArray::nbytes)
      .def_property_readonly("itemsize", [](const DeviceArray& a) { return itemsize(a.dtype); })
      .def_property_readonly("device", [](const DeviceArray&) { return "cuda"; })
      .def_property_readonly("ptr", [](const DeviceArray& a) { return (uintptr_t)a.data(); })
      .def("__len__", [](const DeviceArray& a) {
        if (a.shape.empty()) throw py::type_error("len() of a 0-d array");
        return a.shape[0];
      })
      .def("reshape", &reshape, "A view of another shape (one dimension may be -1).")
      .def("__getitem__", &get_item)
      .def("__setitem__", [](const DeviceArray& a, const py::object& key, const py::object& value) {
        DeviceArray v = get_item(a, key);
        const bool scalar_value = !py::isinstance<DeviceArray>(value) &&
                                  py::module_::import("numpy").attr("ndim")(value).cast<int>() == 0;
        if (scalar_value) fill(v, value);
        else copy_from(v, value);
      })
      .def("numpy", &to_numpy, "A host copy as a numpy array (waits for the queued work).")
      .def("to", [](const DeviceArray& a, const std::string& device) -> py::object {
        if (device == "cpu") return to_numpy(a);
        if (device == "cuda" || device == "cuda:0") return py::cast(a);
        throw py::value_error("to: device must be 'cpu' or 'cuda', got '" + device + "'");
      })
      .def("copy", [](const DeviceArray& a) {
        DeviceArray c = empty(a.shape, a.dtype);
        copy_d2d(c, a);
        return c;
      })
      .def("fill", &fill)
      .def("copy_from", &copy_from, "Copy another device array, or host data, into this array.")
      .def("item", [](const DeviceArray& a) { return to_numpy(scalar(a, "a Python scalar")).attr("item")(); })
      .def("__float__", [](const DeviceArray& a) { return to_numpy(scalar(a, "float")).attr("item")().cast<double>(); })
      .def("__int__", [](const DeviceArray& a) { return py::int_(to_numpy(scalar(a, "int")).attr("item")()); })
      .def("__imul__", [](DeviceArray& a, float s) -> DeviceArray& {
        if (a.dtype != DType::F32) throw py::type_error("*=: only float32 device arrays scale in place");
        scale_f32(static_cast<float*>(a.data()), s, a.size());
        return a;
      }, py::return_value_policy::reference_internal)
      .def("__array__", [](const DeviceArray&, py::args, py::kwargs) -> py::object {
        throw py::type_error("pyconvnet.cuda arrays do not convert to numpy implicitly; call .numpy() "
                             "(an explicit device-to-host copy)");
      })
      .def_property_readonly("__cuda_array_interface__", &cuda_array_interface)
      .def("__dlpack__", &to_dlpack, py::kw_only(), py::arg("stream") = py::none(),
           py::arg("max_version") = py::none(), py::arg("dl_device") = py::none(), py::arg("copy") = py::none())
      .def("__dlpack_device__", [](const DeviceArray&) { return py::make_tuple(kDLCUDA, current_device()); })
      .def("__repr__", [](const DeviceArray& a) {
        return "DeviceArray(shape=" + str(a.shape) + ", dtype=" + dtype_name(a.dtype) + ", device='cuda')";
      });

  m.def("empty", [](const py::handle& shape, const py::object& dtype) { return empty(to_shape(shape), to_dtype(dtype)); },
        py::arg("shape"), py::arg("dtype") = py::dtype("float32"));
  m.def("asarray", &from_host, py::arg("a"), py::arg("dtype") = py::none(), "A device copy of host data.");
  m.def("device_usable", [] {
    std::string why;
    bool ok = device_usable(&why);
    return py::make_tuple(ok, why);
  }, "(True, '') or (False, the reason); never raises.");
  m.def("device_count", [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      n = 0;
    }
    return n;
  }, "Visible CUDA devices; 0 without a driver (never raises).");
  m.def("synchronize", [] {
    py::gil_scoped_release nogil;
    synchronize();
  });
  m.def("memory_stats", [] {
    MemoryStats s = memory_stats();
    py::dict d;
    d["in_use"] = s.in_use; d["cached"] = s.cached; d["peak"] = s.peak;
    d["mallocs"] = s.mallocs; d["frees"] = s.frees;
    return d;
  });
  m.def("empty_cache", [] { empty_cache(); });
}
