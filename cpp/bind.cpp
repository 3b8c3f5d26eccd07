// pyconvnet._core: the op table. Each entry checks its arguments (dtype, contiguity, shapes and
// geometry, all derived from the arrays themselves) and then calls the kernel without the GIL.
// Anything a Python caller passes is checked here, so no input can crash the process.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>
#include "check.h"
#include "ops.h"

namespace py = pybind11;
using namespace pcn;
using namespace pcn_check;

PYBIND11_MODULE(_core, m) {
  m.doc() = "pyconvnet CPU kernels (see cpp/ops.h for shapes and the gradient rule)";
  m.def("set_num_threads", &set_num_threads);
  m.def("get_num_threads", &get_num_threads);

  m.def("conv2d_slot_floats", [](const py::array& x, const py::array& w, Pair s, Pair p, int groups) {
    Geom g = conv_geom("conv2d", x, w, s, p, groups);
    return conv2d_slot_floats(g, (int)w.shape(0));
  });
  m.def("conv2d_forward", [](const py::array& y, const py::array& x, const py::array& w, const Opt& b, Pair s, Pair p, int groups, const py::array& ws) {
    const char* op = "conv2d_forward";
    Geom g = conv_geom(op, x, w, s, p, groups);
    int OC = (int)w.shape(0), N = (int)x.shape(0);
    float* yp = out<float>(y, op, "y", out_shape(x, OC, g));
    const float *xp = ptr<float>(x, op, "x"), *wp = ptr<float>(w, op, "weight"), *bp = opt<float>(b, op, "bias", {OC}, false);
    float* wsp = workspace(ws, conv2d_slot_floats(g, OC), op);
    py::gil_scoped_release nogil;
    conv2d_forward(yp, xp, wp, bp, N, g, OC, groups, wsp, ws.size());
  });
  m.def("conv2d_backward", [](const Opt& dx, const Opt& dw, const Opt& db, const py::array& dy, const py::array& x, const py::array& w, Pair s, Pair p, int groups, const py::array& ws) {
    const char* op = "conv2d_backward";
    Geom g = conv_geom(op, x, w, s, p, groups);
    int OC = (int)w.shape(0), N = (int)x.shape(0);
    const float *dyp = ptr<float>(dy, op, "dy", out_shape(x, OC, g)), *xp = ptr<float>(x, op, "x"), *wp = ptr<float>(w, op, "weight");
    float *dxp = opt<float>(dx, op, "dx", shape(x), true), *dwp = opt<float>(dw, op, "dw", shape(w), true), *dbp = opt<float>(db, op, "db", {OC}, true);
    float* wsp = workspace(ws, conv2d_slot_floats(g, OC), op);
    py::gil_scoped_release nogil;
    conv2d_backward(dxp, dwp, dbp, dyp, xp, wp, N, g, OC, groups, wsp, ws.size());
  });

  m.def("local2d_slot_floats", [](const py::array& x, const py::array& w, Pair s, Pair p) {
    Geom g = local_geom("local2d", x, w, s, p);
    return local2d_slot_floats(g, (int)w.shape(2));
  });
  m.def("local2d_forward", [](const py::array& y, const py::array& x, const py::array& w, const Opt& b, Pair s, Pair p, const py::array& ws) {
    const char* op = "local2d_forward";
    Geom g = local_geom(op, x, w, s, p);
    int OC = (int)w.shape(2), N = (int)x.shape(0);
    float* yp = out<float>(y, op, "y", out_shape(x, OC, g));
    const float *xp = ptr<float>(x, op, "x"), *wp = ptr<float>(w, op, "weight"), *bp = opt<float>(b, op, "bias", {OC, g.OH, g.OW}, false);
    float* wsp = workspace(ws, local2d_slot_floats(g, OC), op);
    py::gil_scoped_release nogil;
    local2d_forward(yp, xp, wp, bp, N, g, OC, wsp, ws.size());
  });
  m.def("local2d_backward", [](const Opt& dx, const Opt& dw, const Opt& db, const py::array& dy, const py::array& x, const py::array& w, Pair s, Pair p, const py::array& ws) {
    const char* op = "local2d_backward";
    Geom g = local_geom(op, x, w, s, p);
    int OC = (int)w.shape(2), N = (int)x.shape(0);
    const float *dyp = ptr<float>(dy, op, "dy", out_shape(x, OC, g)), *xp = ptr<float>(x, op, "x"), *wp = ptr<float>(w, op, "weight");
    float *dxp = opt<float>(dx, op, "dx", shape(x), true), *dwp = opt<float>(dw, op, "dw", shape(w), true), *dbp = opt<float>(db, op, "db", {OC, g.OH, g.OW}, true);
    float* wsp = workspace(ws, local2d_slot_floats(g, OC), op);
    py::gil_scoped_release nogil;
    local2d_backward(dxp, dwp, dbp, dyp, xp, wp, N, g, OC, wsp, ws.size());
  });

  m.def("linear_forward", [](const py::array& y, const py::array& x, const py::array& w, const Opt& b) {
    const char* op = "linear_forward";
    ndim(x, 2, op, "x"); ndim(w, 2, op, "weight");
    int N = (int)x.shape(0), IN = (int)x.shape(1), OUT = (int)w.shape(0);
    const float *xp = ptr<float>(x, op, "x"), *wp = ptr<float>(w, op, "weight", {OUT, IN}), *bp = opt<float>(b, op, "bias", {OUT}, false);
    float* yp = out<float>(y, op, "y", {N, OUT});
    py::gil_scoped_release nogil;
    linear_forward(yp, xp, wp, bp, N, IN, OUT);
  });
  m.def("linear_backward", [](const Opt& dx, const Opt& dw, const Opt& db, const py::array& dy, const py::array& x, const py::array& w) {
    const char* op = "linear_backward";
    ndim(x, 2, op, "x"); ndim(w, 2, op, "weight");
    int N = (int)x.shape(0), IN = (int)x.shape(1), OUT = (int)w.shape(0);
    const float *xp = ptr<float>(x, op, "x"), *wp = ptr<float>(w, op, "weight", {OUT, IN}), *dyp = ptr<float>(dy, op, "dy", {N, OUT});
    float *dxp = opt<float>(dx, op, "dx", {N, IN}, true), *dwp = opt<float>(dw, op, "dw", {OUT, IN}, true), *dbp = opt<float>(db, op, "db", {OUT}, true);
    py::gil_scoped_release nogil;
    linear_backward(dxp, dwp, dbp, dyp, xp, wp, N, IN, OUT);
  });

  // Pooling: x (N, C, H, W) -> y (N, C, OH, OW); pool_geom allows padding up to half the window.
  m.def("maxpool2d_forward", [](const py::array& y, const py::array& argmax, const py::array& x, Pair k, Pair s, Pair p) {
    const char* op = "maxpool2d_forward";
    Geom g = pool_geom(op, x, k, s, p);
    Shape ys = out_shape(x, g.C, g);
    float* yp = out<float>(y, op, "y", ys); int32_t* ap = out<int32_t>(argmax, op, "argmax", ys);
    const float* xp = ptr<float>(x, op, "x");
    py::gil_scoped_release nogil;
    maxpool2d_forward(yp, ap, xp, (int)x.shape(0), g);
  });
  m.def("maxpool2d_backward", [](const py::array& dx, const py::array& dy, const py::array& argmax, Pair k, Pair s, Pair p) {
    const char* op = "maxpool2d_backward";
    Geom g = pool_geom(op, dx, k, s, p);
    Shape ys = out_shape(dx, g.C, g);
    float* dxp = out<float>(dx, op, "dx", shape(dx));
    const float* dyp = ptr<float>(dy, op, "dy", ys); const int32_t* ap = ptr<int32_t>(argmax, op, "argmax", ys);
    for (int64_t i = 0, n = size(ys), hw = (int64_t)g.H * g.W; i < n; ++i)
      if (ap[i] < 0 || ap[i] >= hw) fail(op, "argmax holds an index outside the input plane");
    py::gil_scoped_release nogil;
    maxpool2d_backward(dxp, dyp, ap, (int)dx.shape(0), g);
  });
  m.def("avgpool2d_forward", [](const py::array& y, const py::array& x, Pair k, Pair s, Pair p) {
    const char* op = "avgpool2d_forward";
    Geom g = pool_geom(op, x, k, s, p);
    float* yp = out<float>(y, op, "y", out_shape(x, g.C, g)); const float* xp = ptr<float>(x, op, "x");
    py::gil_scoped_release nogil;
    avgpool2d_forward(yp, xp, (int)x.shape(0), g);
  });
  m.def("avgpool2d_backward", [](const py::array& dx, const py::array& dy, Pair k, Pair s, Pair p) {
    const char* op = "avgpool2d_backward";
    Geom g = pool_geom(op, dx, k, s, p);
    float* dxp = out<float>(dx, op, "dx", shape(dx)); const float* dyp = ptr<float>(dy, op, "dy", out_shape(dx, g.C, g));
    py::gil_scoped_release nogil;
    avgpool2d_backward(dxp, dyp, (int)dx.shape(0), g);
  });

  m.def("lrn_forward", [](const py::array& y, const py::array& scale, const py::array& x, int size, float alpha, float beta, float k) {
    const char* op = "lrn_forward";
    ndim(x, 4, op, "x");
    if (size < 1) fail(op, "size must be >= 1, got " + std::to_string(size));
    if (!(k > 0.f) || !(alpha >= 0.f)) fail(op, "needs k > 0 and alpha >= 0");
    float *yp = out<float>(y, op, "y", shape(x)), *sp = out<float>(scale, op, "scale", shape(x));
    const float* xp = ptr<float>(x, op, "x");
    int N = (int)x.shape(0), C = (int)x.shape(1), HW = (int)(x.shape(2) * x.shape(3));
    py::gil_scoped_release nogil;
    lrn_forward(yp, sp, xp, N, C, HW, size, alpha, beta, k);
  });
  m.def("lrn_backward", [](const py::array& dx, const py::array& dy, const py::array& x, const py::array& y, const py::array& scale, int size, float alpha, float beta) {
    const char* op = "lrn_backward";
    ndim(x, 4, op, "x");
    if (size < 1) fail(op, "size must be >= 1, got " + std::to_string(size));
    Shape s = shape(x);
    float* dxp = out<float>(dx, op, "dx", s);
    const float *dyp = ptr<float>(dy, op, "dy", s), *xp = ptr<float>(x, op, "x"), *yp = ptr<float>(y, op, "y", s), *sp = ptr<float>(scale, op, "scale", s);
    int N = (int)s[0], C = (int)s[1], HW = (int)(s[2] * s[3]);
    py::gil_scoped_release nogil;
    lrn_backward(dxp, dyp, xp, yp, sp, N, C, HW, size, alpha, beta);
  });

  // Pointwise ops: out and in of one shape (any ndim).
  auto pointwise = [&m](const char* name, void (*f)(float*, const float*, int64_t)) {
    m.def(name, [name, f](const py::array& y, const py::array& x) {
      const float* xp = ptr<float>(x, name, "x");
      float* yp = out<float>(y, name, "y", shape(x));
      py::gil_scoped_release nogil;
      f(yp, xp, x.size());
    });
  };
  auto pointwise_bw = [&m](const char* name, void (*f)(float*, const float*, const float*, int64_t)) {
    m.def(name, [name, f](const py::array& dx, const py::array& dy, const py::array& y) {
      const float* yp = ptr<float>(y, name, "y");
      const float* dyp = ptr<float>(dy, name, "dy", shape(y));
      float* dxp = out<float>(dx, name, "dx", shape(y));
      py::gil_scoped_release nogil;
      f(dxp, dyp, yp, y.size());
    });
  };
  pointwise("relu_forward", relu_forward);       pointwise_bw("relu_backward", relu_backward);
  pointwise("sigmoid_forward", sigmoid_forward); pointwise_bw("sigmoid_backward", sigmoid_backward);
  pointwise("tanh_forward", tanh_forward);       pointwise_bw("tanh_backward", tanh_backward);

  m.def("dropout_forward", [](const py::array& y, const py::array& mask, const py::array& x, float p, uint64_t seed) {
    const char* op = "dropout_forward";
    if (!(p >= 0.f && p < 1.f)) fail(op, "p must be in [0, 1), got " + std::to_string(p));
    const float* xp = ptr<float>(x, op, "x");
    float* yp = out<float>(y, op, "y", shape(x)); uint8_t* mp = out<uint8_t>(mask, op, "mask", shape(x));
    py::gil_scoped_release nogil;
    dropout_forward(yp, mp, xp, x.size(), p, seed);
  });
  m.def("dropout_backward", [](const py::array& dx, const py::array& dy, const py::array& mask, float p) {
    const char* op = "dropout_backward";
    if (!(p >= 0.f && p < 1.f)) fail(op, "p must be in [0, 1), got " + std::to_string(p));
    const uint8_t* mp = ptr<uint8_t>(mask, op, "mask");
    const float* dyp = ptr<float>(dy, op, "dy", shape(mask)); float* dxp = out<float>(dx, op, "dx", shape(mask));
    py::gil_scoped_release nogil;
    dropout_backward(dxp, dyp, mp, mask.size(), p);
  });

  m.def("softmax_forward", [](const py::array& y, const py::array& x) {
    const char* op = "softmax_forward";
    ndim(x, 2, op, "x");
    if (x.shape(1) < 1) fail(op, "x must have at least one column, got shape " + str(shape(x)));
    const float* xp = ptr<float>(x, op, "x"); float* yp = out<float>(y, op, "y", shape(x));
    py::gil_scoped_release nogil;
    softmax_forward(yp, xp, (int)x.shape(0), (int)x.shape(1));
  });
  m.def("softmax_backward", [](const py::array& dx, const py::array& dy, const py::array& y) {
    const char* op = "softmax_backward";
    ndim(y, 2, op, "y");
    if (y.shape(1) < 1) fail(op, "y must have at least one column, got shape " + str(shape(y)));
    const float *yp = ptr<float>(y, op, "y"), *dyp = ptr<float>(dy, op, "dy", shape(y)); float* dxp = out<float>(dx, op, "dx", shape(y));
    py::gil_scoped_release nogil;
    softmax_backward(dxp, dyp, yp, (int)y.shape(0), (int)y.shape(1));
  });
  // labels: int64 (N,), each in [0, K).
  auto labels_ptr = [](const char* op, const py::array& labels, py::ssize_t N, py::ssize_t K) {
    const int64_t* lp = ptr<int64_t>(labels, op, "labels", {N});
    for (py::ssize_t i = 0; i < N; ++i)
      if (lp[i] < 0 || lp[i] >= K)
        fail(op, "label " + std::to_string(lp[i]) + " at index " + std::to_string(i) + " is outside [0, " + std::to_string(K) + ")");
    return lp;
  };
  m.def("softmax_xent_forward", [labels_ptr](const py::array& prob, const py::array& x, const py::array& labels) {
    const char* op = "softmax_xent_forward";
    ndim(x, 2, op, "logits");
    if (x.shape(0) < 1 || x.shape(1) < 1) fail(op, "logits must be non-empty, got shape " + str(shape(x)));
    if (labels.ndim() != 1 || labels.shape(0) != x.shape(0))
      fail(op, "labels of shape " + str(shape(labels)) + " do not match logits " + str(shape(x)) + ": expected (" + std::to_string(x.shape(0)) + ",)");
    const float* xp = ptr<float>(x, op, "logits"); float* pp = out<float>(prob, op, "prob", shape(x));
    const int64_t* lp = labels_ptr(op, labels, x.shape(0), x.shape(1));
    py::gil_scoped_release nogil;
    return softmax_xent_forward(pp, xp, lp, (int)x.shape(0), (int)x.shape(1));
  });
  m.def("softmax_xent_backward", [labels_ptr](const py::array& dx, const py::array& prob, const py::array& labels) {
    const char* op = "softmax_xent_backward";
    ndim(prob, 2, op, "prob");
    const float* pp = ptr<float>(prob, op, "prob"); float* dxp = out<float>(dx, op, "dx", shape(prob));
    const int64_t* lp = labels_ptr(op, labels, prob.shape(0), prob.shape(1));
    py::gil_scoped_release nogil;
    softmax_xent_backward(dxp, pp, lp, (int)prob.shape(0), (int)prob.shape(1));
  });

  m.def("sgd_step", [](const py::array& w, const py::array& v, const py::array& g, const py::array& off, const py::array& lr_mult, const py::array& wd_mult, float lr, float momentum, float wd, bool nesterov, int rule) {
    const char* op = "sgd_step";
    ndim(w, 1, op, "w");
    Shape s = shape(w);
    float *wp = out<float>(w, op, "w", s), *vp = out<float>(v, op, "velocity", s);
    const float* gp = ptr<float>(g, op, "grad", s);
    ndim(off, 1, op, "offsets");
    int nseg = (int)off.shape(0) - 1;
    if (nseg < 0) fail(op, "offsets must hold at least one entry");
    const int64_t* op_ = ptr<int64_t>(off, op, "offsets");
    for (int i = 0; i <= nseg; ++i)
      if (op_[i] < (i ? op_[i - 1] : 0) || op_[i] > s[0]) fail(op, "offsets must be non-decreasing within [0, " + std::to_string(s[0]) + "]");
    const float *lm = ptr<float>(lr_mult, op, "lr_mult", {nseg}), *wm = ptr<float>(wd_mult, op, "wd_mult", {nseg});
    if (rule != 0 && rule != 1) fail(op, "rule must be 0 (torch) or 1 (paper)");
    py::gil_scoped_release nogil;
    sgd_step(wp, vp, gp, op_, lm, wm, nseg, lr, momentum, wd, nesterov, rule);
  });
}
