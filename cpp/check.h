// Argument checks for the op table (bind.cpp), written once: dtype, contiguity, writability, exact
// shapes, and window geometry derived from the arrays themselves. Each failure raises ValueError
// or TypeError naming the op, the array and the shapes seen and expected.
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <optional>
#include <sstream>
#include <string>
#include <vector>
#include "ops.h"

namespace pcn_check {
namespace py = pybind11;
using pcn::Geom;
using pcn::conv_out_size;
using Shape = std::vector<py::ssize_t>;
using Opt = std::optional<py::array>;
using Pair = std::pair<int, int>;

inline std::string str(const Shape& s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << (s.size() == 1 ? ",)" : ")");
  return o.str();
}
inline Shape shape(const py::array& a) { return Shape(a.shape(), a.shape() + a.ndim()); }
[[noreturn]] inline void fail(const std::string& op, const std::string& msg) { throw py::value_error(op + ": " + msg); }

// The pointer of a C-contiguous array of T, optionally of an exact shape.
template <class T>
T* ptr(const py::array& a, const char* op, const char* name, const Shape& want = {}) {
  // Equivalence, not identity: an unpickled or byte-order-tagged float32 dtype is another object.
  if (!py::isinstance<py::array_t<T>>(a))
    throw py::type_error(std::string(op) + ": " + name + " must have dtype " +
                         std::string(py::str(py::dtype::of<T>())) + ", got " + std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style)) fail(op, std::string(name) + " must be C-contiguous");
  if (!want.empty() && shape(a) != want)
    fail(op, std::string(name) + " has shape " + str(shape(a)) + ", expected " + str(want));
  return static_cast<T*>(const_cast<void*>(a.data()));
}
template <class T>
T* out(const py::array& a, const char* op, const char* name, const Shape& want) {
  if (!a.writeable()) fail(op, std::string(name) + " is read-only");
  return ptr<T>(a, op, name, want);
}
template <class T>
T* opt(const Opt& a, const char* op, const char* name, const Shape& want, bool write) {
  if (!a) return nullptr;
  return write ? out<T>(*a, op, name, want) : ptr<T>(*a, op, name, want);
}
inline void ndim(const py::array& a, int n, const char* op, const char* name) {
  if (a.ndim() != n)
    fail(op, std::string(name) + " must be " + std::to_string(n) + "-d, got shape " + str(shape(a)));
}
inline int64_t size(const Shape& s) { int64_t n = 1; for (auto d : s) n *= d; return n; }

// Window geometry on x (N, C, H, W), checked: window >= 1, stride >= 1, 0 <= pad, window fits.
inline Geom geom(const char* op, const py::array& x, Pair k, Pair s, Pair p) {
  ndim(x, 4, op, "x");
  Geom g{(int)x.shape(1), (int)x.shape(2), (int)x.shape(3), k.first, k.second, s.first, s.second,
         p.first, p.second, 0, 0};
  if (g.C < 1 || g.H < 1 || g.W < 1) fail(op, "x must have at least one channel, row and column, got shape " + str(shape(x)));
  if (g.KH < 1 || g.KW < 1) fail(op, "kernel_size must be >= 1, got (" + std::to_string(g.KH) + ", " + std::to_string(g.KW) + ")");
  if (g.SH < 1 || g.SW < 1) fail(op, "stride must be >= 1, got (" + std::to_string(g.SH) + ", " + std::to_string(g.SW) + ")");
  if (g.PH < 0 || g.PW < 0) fail(op, "padding must be >= 0, got (" + std::to_string(g.PH) + ", " + std::to_string(g.PW) + ")");
  if (g.KH > g.H + 2 * g.PH || g.KW > g.W + 2 * g.PW)
    fail(op, "kernel (" + std::to_string(g.KH) + ", " + std::to_string(g.KW) + ") is larger than the padded input (" +
             std::to_string(g.H + 2 * g.PH) + ", " + std::to_string(g.W + 2 * g.PW) + ") of x " + str(shape(x)));
  g.OH = conv_out_size(g.H, g.KH, g.SH, g.PH);
  g.OW = conv_out_size(g.W, g.KW, g.SW, g.PW);
  return g;
}
inline float* workspace(const py::array& ws, int64_t need, const char* op) {
  float* p = ptr<float>(ws, op, "workspace");
  if (!ws.writeable() || ws.size() < need)
    fail(op, "workspace holds " + std::to_string(ws.size()) + " floats, needs at least " + std::to_string(need));
  return p;
}

// conv2d: x (N, C, H, W), w (OC, C/groups, KH, KW) -> y (N, OC, OH, OW)
inline Geom conv_geom(const char* op, const py::array& x, const py::array& w, Pair s, Pair p, int groups) {
  ndim(w, 4, op, "weight");
  if (groups < 1) fail(op, "groups must be >= 1, got " + std::to_string(groups));
  Geom g = geom(op, x, {(int)w.shape(2), (int)w.shape(3)}, s, p);
  if (g.C % groups || w.shape(0) % groups)
    fail(op, "channels " + std::to_string(g.C) + " in and " + std::to_string(w.shape(0)) + " out must be divisible by groups=" + std::to_string(groups));
  if (w.shape(1) * groups != g.C)
    fail(op, "x " + str(shape(x)) + " has " + std::to_string(g.C) + " channels but weight " + str(shape(w)) +
             " with groups=" + std::to_string(groups) + " expects " + std::to_string(w.shape(1) * groups));
  return g;
}
inline Shape out_shape(const py::array& x, int64_t OC, const Geom& g) { return {x.shape(0), OC, g.OH, g.OW}; }

// local2d: w (OH, OW, OC, C, KH, KW)
inline Geom local_geom(const char* op, const py::array& x, const py::array& w, Pair s, Pair p) {
  ndim(w, 6, op, "weight");
  Geom g = geom(op, x, {(int)w.shape(4), (int)w.shape(5)}, s, p);
  Shape want{g.OH, g.OW, w.shape(2), g.C, g.KH, g.KW};
  if (shape(w) != want) fail(op, "weight has shape " + str(shape(w)) + ", expected " + str(want) + " for x " + str(shape(x)));
  return g;
}

}  // namespace pcn_check
