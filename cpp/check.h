// Argument checks for the op table (bind.cpp), written once: dtype, contiguity, writability, exact
// shapes, and window geometry derived from the arrays themselves (the rules on shapes are
// check_shapes.h's, shared with cuda/check.h). Each failure raises ValueError
// or TypeError naming the op, the array and the shapes seen and expected.
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <optional>
#include <string>
#include "check_shapes.h"
#include "ops.h"

namespace pcn_check {
namespace py = pybind11;
using namespace pcn::checks;  // Shape, Pair, str, fail, size and the geometry rules on shapes
using pcn::Geom;
using Opt = std::optional<py::array>;

inline Shape shape(const py::array& a) { return Shape(a.shape(), a.shape() + a.ndim()); }

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
inline float* workspace(const py::array& ws, int64_t need, const char* op) {
  float* p = ptr<float>(ws, op, "workspace");
  if (!ws.writeable() || ws.size() < need)
    fail(op, "workspace holds " + std::to_string(ws.size()) + " floats, needs at least " + std::to_string(need));
  return p;
}

// The shared rules (check_shapes.h) on numpy arrays.
inline void ndim(const py::array& a, int n, const char* op, const char* name) { pcn::checks::ndim(shape(a), n, op, name); }
inline Geom geom(const char* op, const py::array& x, Pair k, Pair s, Pair p) { return pcn::checks::geom(op, shape(x), k, s, p); }
inline Geom pool_geom(const char* op, const py::array& x, Pair k, Pair s, Pair p) { return pcn::checks::pool_geom(op, shape(x), k, s, p); }
inline Geom conv_geom(const char* op, const py::array& x, const py::array& w, Pair s, Pair p, int groups) {
  return pcn::checks::conv_geom(op, shape(x), shape(w), s, p, groups);
}
inline Geom local_geom(const char* op, const py::array& x, const py::array& w, Pair s, Pair p) {
  return pcn::checks::local_geom(op, shape(x), shape(w), s, p);
}
inline Shape out_shape(const py::array& x, int64_t OC, const Geom& g) { return pcn::checks::out_shape(shape(x), OC, g); }

}  // namespace pcn_check
