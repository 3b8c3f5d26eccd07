// The shape and geometry rules of both op tables, written once on plain shapes: cpp/check.h
// applies them to numpy arrays (_core), cuda/check.h to device arrays (_cuda), so the two
// backends accept the same arguments and raise the same ValueError messages.
#pragma once
#include <pybind11/pybind11.h>
#include <cstdint>
#include <sstream>
#include <string>
#include <utility>
#include <vector>
#include "common.h"

namespace pcn {
namespace checks {
namespace py = pybind11;
using Shape = std::vector<int64_t>;
using Pair = std::pair<int, int>;

inline std::string str(const Shape& s) {  // as Python prints a shape tuple
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << (s.size() == 1 ? ",)" : ")");
  return o.str();
}
[[noreturn]] inline void fail(const std::string& op, const std::string& msg) { throw py::value_error(op + ": " + msg); }
inline void ndim(const Shape& s, int n, const char* op, const char* name) {
  if ((int)s.size() != n)
    fail(op, std::string(name) + " must be " + std::to_string(n) + "-d, got shape " + str(s));
}
inline int64_t size(const Shape& s) { int64_t n = 1; for (auto d : s) n *= d; return n; }

// Window geometry on x (N, C, H, W), checked: window >= 1, stride >= 1, 0 <= pad, window fits.
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

// conv2d: x (N, C, H, W), w (OC, C/groups, KH, KW) -> y (N, OC, OH, OW)
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

// Pooling: x (N, C, H, W) -> y (N, C, OH, OW); padding at most half the window (as PyTorch).
inline Geom pool_geom(const char* op, const Shape& x, Pair k, Pair s, Pair p) {
  Geom g = geom(op, x, k, s, p);
  if (2 * g.PH > g.KH || 2 * g.PW > g.KW) fail(op, "padding must be at most half the kernel size");
  return g;
}

}  // namespace checks
}  // namespace pcn
