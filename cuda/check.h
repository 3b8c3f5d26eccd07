// Argument checks of the _cuda op table: the same rules and messages as cpp/check.h and
// cpp/bind.cpp, on device arrays. Anything a Python caller passes is checked here, so no input reaches a kernel that
// could read or write out of bounds.
#pragma once
#include <pybind11/pybind11.h>
#include <sstream>
#include <string>
#include <vector>
#include "array.h"
#include "common.h"

namespace pcn {
namespace cuda {
namespace check {

namespace py = pybind11;
using Shape = std::vector<int64_t>;
using Pair = std::pair<int, int>;

inline std::string str(const Shape& s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << (s.size() == 1 ? ",)" : ")");
  return o.str();
}
[[noreturn]] inline void fail(const std::string& op, const std::string& msg) { throw py::value_error(op + ": " + msg); }

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
inline void ndim(const Shape& s, int n, const char* op, const char* name) {
  if ((int)s.size() != n)
    fail(op, std::string(name) + " must be " + std::to_string(n) + "-d, got shape " + str(s));
}
inline int64_t size(const Shape& s) { int64_t n = 1; for (auto d : s) n *= d; return n; }

// Window geometry on x (N, C, H, W), checked as in cpp/bind.cpp.
inline Geom geom(const char* op, const Shape& x, Pair k, Pair s, Pair p) {
  ndim(x, 4, op, "x");
  Geom g{(int)x[1], (int)x[2], (int)x[3], k.first, k.second, s.first, s.second, p.first, p.second, 0, 0};
  if (g.C < 1 || g.H < 1 || g.W < 1) fail(op, "x must have at least one channel, row and column, got shape " + str(x));
  if (g.KH < 1 || g.KW < 1) fail(op, "kernel_size must be >= 1, got (" + std::to_string(g.KH) + ", " + std::to_string(g.KW) + ")");
  if (g.SH < 1 || g.SW < 1) fail(op, "stride must be >= 1, got (" + std::to_string(g.SH) + ", " + std::to_string(g.SW) + ")");
  if (g.PH < 0 || g.PW < 0) fail(op, "padding must be >= 0, got (" + std::to_string(g.PH) + ", " + std::to_string(g.PW) + ")");
  if (g.KH > g.H + 2 * g.PH || g.KW > g.W + 2 * g.PW)
    fail(op, "kernel (" + std::to_string(g.KH) + ", " + std::to_string(g.KW) + ") is larger than the padded input (" +
             std::to_string(g.H + 2 * g.PH) + ", " + std::to_string(g.W + 2 * g.PW) + ") of x " + str(x));
  g.OH = conv_out_size(g.H, g.KH, g.SH, g.PH);
  g.OW = conv_out_size(g.W, g.KW, g.SW, g.PW);
  return g;
}

inline float* workspace(py::handle ws, int64_t need, const char* op) {
  float* p = ptr<float>(ws, op, "workspace");
  const int64_t have = arr(ws, op, "workspace").size();
  if (have < need)
    fail(op, "workspace holds " + std::to_string(have) + " floats, needs at least " + std::to_string(need));
  return p;
}

// conv2d: x (N, C, H, W), w (OC, C/groups, KH, KW)
inline Geom conv_geom(const char* op, const Shape& x, const Shape& w, Pair s, Pair p, int groups) {
  ndim(w, 4, op, "weight");
  if (groups < 1) fail(op, "groups must be >= 1, got " + std::to_string(groups));
  Geom g = geom(op, x, {(int)w[2], (int)w[3]}, s, p);
  if (g.C % groups || w[0] % groups)
    fail(op, "channels " + std::to_string(g.C) + " in and " + std::to_string(w[0]) + " out must be divisible by groups=" + std::to_string(groups));
  if (w[1] * groups != g.C)
    fail(op, "x " + str(x) + " has " + std::to_string(g.C) + " channels but weight " + str(w) +
             " with groups=" + std::to_string(groups) + " expects " + std::to_string(w[1] * groups));
  return g;
}
inline Shape out_shape(const Shape& x, int64_t OC, const Geom& g) { return {x[0], OC, g.OH, g.OW}; }

// local2d: w (OH, OW, OC, C, KH, KW)
inline Geom local_geom(const char* op, const Shape& x, const Shape& w, Pair s, Pair p) {
  ndim(w, 6, op, "weight");
  Geom g = geom(op, x, {(int)w[4], (int)w[5]}, s, p);
  Shape want{g.OH, g.OW, w[2], g.C, g.KH, g.KW};
  if (w != want) fail(op, "weight has shape " + str(w) + ", expected " + str(want) + " for x " + str(x));
  return g;
}

inline Geom pool_geom(const char* op, const Shape& x, Pair k, Pair s, Pair p) {
  Geom g = geom(op, x, k, s, p);
  if (2 * g.PH > g.KH || 2 * g.PW > g.KW) fail(op, "padding must be at most half the kernel size");
  return g;
}

}  // namespace check
}  // namespace cuda
}  // namespace pcn
