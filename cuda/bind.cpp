// pyconvnet._cuda: the CUDA op table, one entry per kernel of cuda/ops.cuh with the arguments and
// checks of cpp/bind.cpp (see cuda/check.h), plus the device array (bind_array.cpp) and the GEMM
// backend switch. Importing this module makes no CUDA call; device_usable() says whether a GPU
// can be used, and every array constructor checks it.
//
// Differences from _core: softmax_xent_forward writes the loss into a device scalar (first
// argument) instead of returning it; labels are device int64 arrays and are not range-checked
// on the host (that would need a copy back): a label outside [0, K) makes the loss NaN; an
// argmax entry outside the plane contributes nothing to maxpool2d_backward; sgd_step takes its
// segment table (offsets, multipliers) as host numpy arrays.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>
#include "check.h"
#include "ops.cuh"

namespace py = pybind11;
using namespace pcn;
using namespace pcn::cuda;
using namespace pcn::cuda::check;
using Obj = const py::object&;

void bind_array(py::module_& m);

namespace {

const int64_t* labels_ptr(const char* op, Obj labels, int64_t N) {
  return ptr<int64_t>(labels, op, "labels", {N});
}

void bind_pointwise(py::module_& m) {
  auto fw = [&m](const char* name, void (*f)(float*, const float*, int64_t)) {
    m.def(name, [name, f](Obj y, Obj x) {
      const float* xp = ptr<float>(x, name, "x");
      float* yp = ptr<float>(y, name, "y", shape(x, name, "x"));
      f(yp, xp, arr(x, name, "x").size());
    });
  };
  auto bw = [&m](const char* name, void (*f)(float*, const float*, const float*, int64_t)) {
    m.def(name, [name, f](Obj dx, Obj dy, Obj y) {
      const Shape s = shape(y, name, "y");
      const float *yp = ptr<float>(y, name, "y"), *dyp = ptr<float>(dy, name, "dy", s);
      f(ptr<float>(dx, name, "dx", s), dyp, yp, size(s));
    });
  };
  fw("relu_forward", relu_forward);       bw("relu_backward", relu_backward);
  fw("sigmoid_forward", sigmoid_forward); bw("sigmoid_backward", sigmoid_backward);
  fw("tanh_forward", tanh_forward);       bw("tanh_backward", tanh_backward);
}

void bind_conv(py::module_& m) {
  m.def("conv2d_slot_floats", [](Obj x, Obj w, Pair s, Pair p, int groups) {
    Geom g = conv_geom("conv2d", shape(x, "conv2d", "x"), shape(w, "conv2d", "weight"), s, p, groups);
    return conv2d_slot_floats(g, (int)shape(w, "conv2d", "weight")[0]);
  });
  m.def("conv2d_forward", [](Obj y, Obj x, Obj w, Obj b, Pair s, Pair p, int groups, Obj ws) {
    const char* op = "conv2d_forward";
    const Shape xs = shape(x, op, "x"), wsh = shape(w, op, "weight");
    Geom g = conv_geom(op, xs, wsh, s, p, groups);
    const int OC = (int)wsh[0], N = (int)xs[0];
    float* yp = ptr<float>(y, op, "y", out_shape(xs, OC, g));
    const float *xp = ptr<float>(x, op, "x"), *wp = ptr<float>(w, op, "weight"), *bp = opt<float>(b, op, "bias", {OC});
    float* wsp = workspace(ws, conv2d_slot_floats(g, OC), op);
    conv2d_forward(yp, xp, wp, bp, N, g, OC, groups, wsp, arr(ws, op, "workspace").size());
  });
  m.def("conv2d_backward", [](Obj dx, Obj dw, Obj db, Obj dy, Obj x, Obj w, Pair s, Pair p, int groups, Obj ws) {
    const char* op = "conv2d_backward";
    const Shape xs = shape(x, op, "x"), wsh = shape(w, op, "weight");
    Geom g = conv_geom(op, xs, wsh, s, p, groups);
    const int OC = (int)wsh[0], N = (int)xs[0];
    const float *dyp = ptr<float>(dy, op, "dy", out_shape(xs, OC, g)), *xp = ptr<float>(x, op, "x"), *wp = ptr<float>(w, op, "weight");
    float *dxp = opt<float>(dx, op, "dx", xs), *dwp = opt<float>(dw, op, "dw", wsh), *dbp = opt<float>(db, op, "db", {OC});
    float* wsp = workspace(ws, conv2d_slot_floats(g, OC), op);
    conv2d_backward(dxp, dwp, dbp, dyp, xp, wp, N, g, OC, groups, wsp, arr(ws, op, "workspace").size());
  });

  m.def("local2d_slot_floats", [](Obj x, Obj w, Pair s, Pair p) {
    const Shape wsh = shape(w, "local2d", "weight");
    Geom g = local_geom("local2d", shape(x, "local2d", "x"), wsh, s, p);
    return local2d_slot_floats(g, (int)wsh[2]);
  });
  m.def("local2d_forward", [](Obj y, Obj x, Obj w, Obj b, Pair s, Pair p, Obj ws) {
    const char* op = "local2d_forward";
    const Shape xs = shape(x, op, "x"), wsh = shape(w, op, "weight");
    Geom g = local_geom(op, xs, wsh, s, p);
    const int OC = (int)wsh[2], N = (int)xs[0];
    float* yp = ptr<float>(y, op, "y", out_shape(xs, OC, g));
    const float *xp = ptr<float>(x, op, "x"), *wp = ptr<float>(w, op, "weight"), *bp = opt<float>(b, op, "bias", {OC, g.OH, g.OW});
    float* wsp = workspace(ws, local2d_slot_floats(g, OC), op);
    local2d_forward(yp, xp, wp, bp, N, g, OC, wsp, arr(ws, op, "workspace").size());
  });
  m.def("local2d_backward", [](Obj dx, Obj dw, Obj db, Obj dy, Obj x, Obj w, Pair s, Pair p, Obj ws) {
    const char* op = "local2d_backward";
    const Shape xs = shape(x, op, "x"), wsh = shape(w, op, "weight");
    Geom g = local_geom(op, xs, wsh, s, p);
    const int OC = (int)wsh[2], N = (int)xs[0];
    const float *dyp = ptr<float>(dy, op, "dy", out_shape(xs, OC, g)), *xp = ptr<float>(x, op, "x"), *wp = ptr<float>(w, op, "weight");
    float *dxp = opt<float>(dx, op, "dx", xs), *dwp = opt<float>(dw, op, "dw", wsh), *dbp = opt<float>(db, op, "db", {OC, g.OH, g.OW});
    float* wsp = workspace(ws, local2d_slot_floats(g, OC), op);
    local2d_backward(dxp, dwp, dbp, dyp, xp, wp, N, g, OC, wsp, arr(ws, op, "workspace").size());
  });

  m.def("linear_forward", [](Obj y, Obj x, Obj w, Obj b) {
    const char* op = "linear_forward";
    const Shape xs = shape(x, op, "x"), wsh = shape(w, op, "weight");
    ndim(xs, 2, op, "x"); ndim(wsh, 2, op, "weight");
    const int N = (int)xs[0], IN = (int)xs[1], OUT = (int)wsh[0];
    const float *xp = ptr<float>(x, op, "x"), *wp = ptr<float>(w, op, "weight", {OUT, IN}), *bp = opt<float>(b, op, "bias", {OUT});
    linear_forward(ptr<float>(y, op, "y", {N, OUT}), xp, wp, bp, N, IN, OUT);
  });
  m.def("linear_backward", [](Obj dx, Obj dw, Obj db, Obj dy, Obj x, Obj w) {
    const char* op = "linear_backward";
    const Shape xs = shape(x, op, "x"), wsh = shape(w, op, "weight");
    ndim(xs, 2, op, "x"); ndim(wsh, 2, op, "weight");
    const int N = (int)xs[0], IN = (int)xs[1], OUT = (int)wsh[0];
    const float *xp = ptr<float>(x, op, "x"), *wp = ptr<float>(w, op, "weight", {OUT, IN}), *dyp = ptr<float>(dy, op, "dy", {N, OUT});
    float *dxp = opt<float>(dx, op, "dx", {N, IN}), *dwp = opt<float>(dw, op, "dw", {OUT, IN}), *dbp = opt<float>(db, op, "db", {OUT});
    linear_backward(dxp, dwp, dbp, dyp, xp, wp, N, IN, OUT);
  });
}

void bind_pool_lrn(py::module_& m) {
  m.def("maxpool2d_forward", [](Obj y, Obj argmax, Obj x, Pair k, Pair s, Pair p) {
    const char* op = "maxpool2d_forward";
    const Shape xs = shape(x, op, "x");
    Geom g = pool_geom(op, xs, k, s, p);
    const Shape ys = out_shape(xs, g.C, g);
    float* yp = ptr<float>(y, op, "y", ys);
    int32_t* ap = ptr<int32_t>(argmax, op, "argmax", ys);
    maxpool2d_forward(yp, ap, ptr<float>(x, op, "x"), (int)xs[0], g);
  });
  m.def("maxpool2d_backward", [](Obj dx, Obj dy, Obj argmax, Pair k, Pair s, Pair p) {
    const char* op = "maxpool2d_backward";
    const Shape xs = shape(dx, op, "dx");
    Geom g = pool_geom(op, xs, k, s, p);
    const Shape ys = out_shape(xs, g.C, g);
    float* dxp = ptr<float>(dx, op, "dx");
    const float* dyp = ptr<float>(dy, op, "dy", ys);
    maxpool2d_backward(dxp, dyp, ptr<int32_t>(argmax, op, "argmax", ys), (int)xs[0], g);
  });
  m.def("avgpool2d_forward", [](Obj y, Obj x, Pair k, Pair s, Pair p) {
    const char* op = "avgpool2d_forward";
    const Shape xs = shape(x, op, "x");
    Geom g = pool_geom(op, xs, k, s, p);
    float* yp = ptr<float>(y, op, "y", out_shape(xs, g.C, g));
    avgpool2d_forward(yp, ptr<float>(x, op, "x"), (int)xs[0], g);
  });
  m.def("avgpool2d_backward", [](Obj dx, Obj dy, Pair k, Pair s, Pair p) {
    const char* op = "avgpool2d_backward";
    const Shape xs = shape(dx, op, "dx");
    Geom g = pool_geom(op, xs, k, s, p);
    float* dxp = ptr<float>(dx, op, "dx");
    avgpool2d_backward(dxp, ptr<float>(dy, op, "dy", out_shape(xs, g.C, g)), (int)xs[0], g);
  });

  m.def("lrn_forward", [](Obj y, Obj scale, Obj x, int size, float alpha, float beta, float k) {
    const char* op = "lrn_forward";
    const Shape xs = shape(x, op, "x");
    ndim(xs, 4, op, "x");
    if (size < 1) fail(op, "size must be >= 1, got " + std::to_string(size));
    if (!(k > 0.f) || !(alpha >= 0.f)) fail(op, "needs k > 0 and alpha >= 0");
    float *yp = ptr<float>(y, op, "y", xs), *sp = ptr<float>(scale, op, "scale", xs);
    lrn_forward(yp, sp, ptr<float>(x, op, "x"), (int)xs[0], (int)xs[1], (int)(xs[2] * xs[3]), size, alpha, beta, k);
  });
  m.def("lrn_backward", [](Obj dx, Obj dy, Obj x, Obj y, Obj scale, int size, float alpha, float beta) {
    const char* op = "lrn_backward";
    const Shape xs = shape(x, op, "x");
    ndim(xs, 4, op, "x");
    if (size < 1) fail(op, "size must be >= 1, got " + std::to_string(size));
    float* dxp = ptr<float>(dx, op, "dx", xs);
    const float *dyp = ptr<float>(dy, op, "dy", xs), *xp = ptr<float>(x, op, "x"), *yp = ptr<float>(y, op, "y", xs),
                *sp = ptr<float>(scale, op, "scale", xs);
    lrn_backward(dxp, dyp, xp, yp, sp, (int)xs[0], (int)xs[1], (int)(xs[2] * xs[3]), size, alpha, beta);
  });
}

void bind_softmax_dropout_sgd(py::module_& m) {
  m.def("dropout_forward", [](Obj y, Obj mask, Obj x, float p, uint64_t seed) {
    const char* op = "dropout_forward";
    if (!(p >= 0.f && p < 1.f)) fail(op, "p must be in [0, 1), got " + std::to_string(p));
    const Shape xs = shape(x, op, "x");
    const float* xp = ptr<float>(x, op, "x");
    float* yp = ptr<float>(y, op, "y", xs);
    dropout_forward(yp, ptr<uint8_t>(mask, op, "mask", xs), xp, size(xs), p, seed);
  });
  m.def("dropout_backward", [](Obj dx, Obj dy, Obj mask, float p) {
    const char* op = "dropout_backward";
    if (!(p >= 0.f && p < 1.f)) fail(op, "p must be in [0, 1), got " + std::to_string(p));
    const Shape ms = shape(mask, op, "mask");
    const uint8_t* mp = ptr<uint8_t>(mask, op, "mask");
    const float* dyp = ptr<float>(dy, op, "dy", ms);
    dropout_backward(ptr<float>(dx, op, "dx", ms), dyp, mp, size(ms), p);
  });

  m.def("softmax_forward", [](Obj y, Obj x) {
    const char* op = "softmax_forward";
    const Shape xs = shape(x, op, "x");
    ndim(xs, 2, op, "x");
    if (xs[1] < 1) fail(op, "x must have at least one column, got shape " + str(xs));
    const float* xp = ptr<float>(x, op, "x");
    softmax_forward(ptr<float>(y, op, "y", xs), xp, (int)xs[0], (int)xs[1]);
  });
  m.def("softmax_backward", [](Obj dx, Obj dy, Obj y) {
    const char* op = "softmax_backward";
    const Shape ys = shape(y, op, "y");
    ndim(ys, 2, op, "y");
    if (ys[1] < 1) fail(op, "y must have at least one column, got shape " + str(ys));
    const float *yp = ptr<float>(y, op, "y"), *dyp = ptr<float>(dy, op, "dy", ys);
    softmax_backward(ptr<float>(dx, op, "dx", ys), dyp, yp, (int)ys[0], (int)ys[1]);
  });
  m.def("softmax_xent_forward", [](Obj loss, Obj prob, Obj x, Obj labels) {
    const char* op = "softmax_xent_forward";
    const Shape xs = shape(x, op, "logits");
    ndim(xs, 2, op, "logits");
    if (xs[0] < 1 || xs[1] < 1) fail(op, "logits must be non-empty, got shape " + str(xs));
    const Shape ls = shape(labels, op, "labels");
    if (ls.size() != 1 || ls[0] != xs[0])
      fail(op, "labels of shape " + str(ls) + " do not match logits " + str(xs) + ": expected (" + std::to_string(xs[0]) + ",)");
    const float* xp = ptr<float>(x, op, "logits");
    float* pp = ptr<float>(prob, op, "prob", xs);
    const int64_t* lp = labels_ptr(op, labels, xs[0]);
    float* lossp = ptr<float>(loss, op, "loss");
    if (arr(loss, op, "loss").size() != 1) fail(op, "loss must hold one element, got shape " + str(shape(loss, op, "loss")));
    std::shared_ptr<Block> rows = device_alloc(sizeof(double) * (size_t)xs[0]);  // cached: no cudaMalloc per step
    softmax_xent_forward(lossp, pp, xp, lp, (int)xs[0], (int)xs[1], static_cast<double*>(rows->ptr));
  });
  m.def("softmax_xent_backward", [](Obj dx, Obj prob, Obj labels) {
    const char* op = "softmax_xent_backward";
    const Shape ps = shape(prob, op, "prob");
    ndim(ps, 2, op, "prob");
    const float* pp = ptr<float>(prob, op, "prob");
    float* dxp = ptr<float>(dx, op, "dx", ps);
    softmax_xent_backward(dxp, pp, labels_ptr(op, labels, ps[0]), (int)ps[0], (int)ps[1]);
  });
  m.def("top1_count", [](Obj count, Obj x, Obj labels) {
    const char* op = "top1_count";
    const Shape xs = shape(x, op, "logits");
    ndim(xs, 2, op, "logits");
    int64_t* cp = ptr<int64_t>(count, op, "count");
    if (arr(count, op, "count").size() != 1) fail(op, "count must hold one element");
    top1_count(cp, ptr<float>(x, op, "logits"), labels_ptr(op, labels, xs[0]), (int)xs[0], (int)xs[1]);
  });

  m.def("sgd_step", [](Obj w, Obj v, Obj g, const py::array& off, const py::array& lr_mult, const py::array& wd_mult,
                       float lr, float momentum, float wd, bool nesterov, int rule) {
    const char* op = "sgd_step";
    const Shape s = shape(w, op, "w");
    ndim(s, 1, op, "w");
    float *wp = ptr<float>(w, op, "w", s), *vp = ptr<float>(v, op, "velocity", s);
    const float* gp = ptr<float>(g, op, "grad", s);
    // the segment table lives on the host (it rides in the kernel's arguments)
    auto host = [op](const py::array& a, const char* name, char kind, py::ssize_t n) {
      if (a.ndim() != 1 || a.dtype().kind() != kind || a.itemsize() != (kind == 'i' ? 8 : 4) || !(a.flags() & py::array::c_style))
        throw py::type_error(std::string(op) + ": " + name + " must be a 1-d C-contiguous host numpy array of " +
                             (kind == 'i' ? "int64" : "float32"));
      if (n >= 0 && a.shape(0) != n) fail(op, std::string(name) + " has shape (" + std::to_string(a.shape(0)) + ",), expected (" + std::to_string(n) + ",)");
      return a.data();
    };
    const int64_t* offp = static_cast<const int64_t*>(host(off, "offsets", 'i', -1));
    const int nseg = (int)off.shape(0) - 1;
    if (nseg < 0) fail(op, "offsets must hold at least one entry");
    for (int i = 0; i <= nseg; ++i)
      if (offp[i] < (i ? offp[i - 1] : 0) || offp[i] > s[0]) fail(op, "offsets must be non-decreasing within [0, " + std::to_string(s[0]) + "]");
    const float* lm = static_cast<const float*>(host(lr_mult, "lr_mult", 'f', nseg));
    const float* wm = static_cast<const float*>(host(wd_mult, "wd_mult", 'f', nseg));
    if (rule != 0 && rule != 1) fail(op, "rule must be 0 (torch) or 1 (paper)");
    sgd_step(wp, vp, gp, offp, lm, wm, nseg, lr, momentum, wd, nesterov, rule);
  });
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "pyconvnet CUDA kernels (see cuda/ops.cuh; the contracts of cpp/ops.h)";
  bind_array(m);
  bind_pointwise(m);
  bind_conv(m);
  bind_pool_lrn(m);
  bind_softmax_dropout_sgd(m);

  // c (M, N) = alpha op(a) op(b) + beta c, through the selected GEMM backend (tests, benchmarks)
  m.def("sgemm", [](Obj c, Obj a, Obj b, bool ta, bool tb, float alpha, float beta) {
    const char* op = "sgemm";
    const Shape as = shape(a, op, "a"), bs = shape(b, op, "b"), cs = shape(c, op, "c");
    ndim(as, 2, op, "a"); ndim(bs, 2, op, "b"); ndim(cs, 2, op, "c");
    const int64_t M = ta ? as[1] : as[0], K = ta ? as[0] : as[1], K2 = tb ? bs[1] : bs[0], N = tb ? bs[0] : bs[1];
    if (K != K2) fail(op, "inner sizes differ: op(a) " + str({M, K}) + ", op(b) " + str({K2, N}));
    const float *ap = ptr<float>(a, op, "a"), *bp = ptr<float>(b, op, "b");
    sgemm(ta, tb, (int)M, (int)N, (int)K, alpha, ap, (int)as[1], bp, (int)bs[1], beta, ptr<float>(c, op, "c", {M, N}), (int)N);
  }, py::arg("c"), py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false,
     py::arg("alpha") = 1.f, py::arg("beta") = 0.f);
  m.def("load_cublas", &load_cublas, "Try these library names or paths; '' on success, else the reasons.");
  m.def("gemm_backend", &gemm_backend);
  m.def("set_gemm_backend", &set_gemm_backend);
  m.def("sm_count", &sm_count);
}
