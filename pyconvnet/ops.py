"""Functional forward/backward pairs over the kernels: they allocate outputs, take the shared
workspace and dispatch to the backend. Layers in pyconvnet.nn call only these.

Shapes and the gradient rule are those of cpp/ops.h: dx is returned fresh, dw/db ACCUMULATE into
the arrays passed in (None skips them). Arguments are checked by the kernel table (_core), which
raises ValueError/TypeError naming the op and the shapes seen and expected.
"""
import numpy as np

from . import _core
from ._workspace import workspace


def backend(*arrays):
    """The one dispatch point: the module whose kernels handle these arrays (numpy -> _core)."""
    return _core


def pair(v, name="value"):
    """An int or an (h, w) pair as an (h, w) tuple of ints."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return (int(v), int(v))
    try:
        h, w = v
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int or an (h, w) pair, got {v!r}") from None
    if not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in (h, w)):
        raise TypeError(f"{name} must be an int or an (h, w) pair of ints, got {v!r}")
    return (int(h), int(w))


def out_size(n, k, s, p):
    return (n + 2 * p - k) // s + 1


# ---- convolution: x (N, C, H, W), w (OC, C/groups, KH, KW) -> y (N, OC, OH, OW)
def conv2d_forward(x, w, b=None, stride=1, padding=0, groups=1):
    be, s, p = backend(x, w), pair(stride, "stride"), pair(padding, "padding")
    ws = workspace(be.conv2d_slot_floats(x, w, s, p, groups, False), be.get_num_threads())
    y = np.empty((x.shape[0], w.shape[0], out_size(x.shape[2], w.shape[2], s[0], p[0]),
                  out_size(x.shape[3], w.shape[3], s[1], p[1])), np.float32)
    be.conv2d_forward(y, x, w, b, s, p, groups, ws)
    return y


def conv2d_backward(dy, x, w, dw=None, db=None, stride=1, padding=0, groups=1, need_dx=True):
    be, s, p = backend(dy, x, w), pair(stride, "stride"), pair(padding, "padding")
    ws = workspace(be.conv2d_slot_floats(x, w, s, p, groups, True), be.get_num_threads())
    dx = np.empty_like(x) if need_dx else None
    be.conv2d_backward(dx, dw, db, dy, x, w, s, p, groups, ws)
    return dx


# ---- locally connected: w (OH, OW, OC, C, KH, KW), b (OC, OH, OW)
def local2d_forward(x, w, b=None, stride=1, padding=0):
    be, s, p = backend(x, w), pair(stride, "stride"), pair(padding, "padding")
    ws = workspace(be.local2d_slot_floats(x, w, s, p), x.shape[0])
    y = np.empty((x.shape[0], w.shape[2], w.shape[0], w.shape[1]), np.float32)
    be.local2d_forward(y, x, w, b, s, p, ws)
    return y


def local2d_backward(dy, x, w, dw=None, db=None, stride=1, padding=0, need_dx=True):
    be, s, p = backend(dy, x, w), pair(stride, "stride"), pair(padding, "padding")
    ws = workspace(be.local2d_slot_floats(x, w, s, p), x.shape[0])
    dx = np.empty_like(x) if need_dx else None
    be.local2d_backward(dx, dw, db, dy, x, w, s, p, ws)
    return dx


# ---- fully connected: x (N, IN), w (OUT, IN)
def linear_forward(x, w, b=None):
    y = np.empty((x.shape[0], w.shape[0]), np.float32)
    backend(x, w).linear_forward(y, x, w, b)
    return y


def linear_backward(dy, x, w, dw=None, db=None, need_dx=True):
    dx = np.empty_like(x) if need_dx else None
    backend(dy, x, w).linear_backward(dx, dw, db, dy, x, w)
    return dx


# ---- pooling: x (N, C, H, W) -> y (N, C, OH, OW)
def _pool_out(x, k, s, p):
    if x.ndim != 4:
        raise ValueError(f"pooling expects x of shape (N, C, H, W), got {x.shape}")
    for name, v in (("kernel_size", k), ("stride", s)):  # before the shape divides by the stride
        if min(v) < 1:
            raise ValueError(f"pooling: {name} must be >= 1, got {v}")
    return (x.shape[0], x.shape[1], max(out_size(x.shape[2], k[0], s[0], p[0]), 0),
            max(out_size(x.shape[3], k[1], s[1], p[1]), 0))


def maxpool2d_forward(x, kernel_size, stride, padding=0):
    """Returns y and the argmax (int32 index into each H*W plane) that backward needs."""
    k, s, p = pair(kernel_size, "kernel_size"), pair(stride, "stride"), pair(padding, "padding")
    shape = _pool_out(x, k, s, p)
    y, argmax = np.empty(shape, np.float32), np.empty(shape, np.int32)
    backend(x).maxpool2d_forward(y, argmax, x, k, s, p)
    return y, argmax


def maxpool2d_backward(dy, argmax, x_shape, kernel_size, stride, padding=0):
    dx = np.empty(x_shape, np.float32)
    backend(dy).maxpool2d_backward(dx, dy, argmax, pair(kernel_size), pair(stride), pair(padding))
    return dx


def avgpool2d_forward(x, kernel_size, stride, padding=0):
    k, s, p = pair(kernel_size, "kernel_size"), pair(stride, "stride"), pair(padding, "padding")
    y = np.empty(_pool_out(x, k, s, p), np.float32)
    backend(x).avgpool2d_forward(y, x, k, s, p)
    return y


def avgpool2d_backward(dy, x_shape, kernel_size, stride, padding=0):
    dx = np.empty(x_shape, np.float32)
    backend(dy).avgpool2d_backward(dx, dy, pair(kernel_size), pair(stride), pair(padding))
    return dx


# ---- local response normalization (PyTorch/Caffe convention, see cpp/lrn.cpp)
def lrn_forward(x, size, alpha, beta, k):
    """Returns y and the per-element scale that backward needs."""
    y, scale = np.empty_like(x), np.empty_like(x)
    backend(x).lrn_forward(y, scale, x, size, alpha, beta, k)
    return y, scale


def lrn_backward(dy, x, y, scale, size, alpha, beta):
    dx = np.empty_like(x)
    backend(dy, x).lrn_backward(dx, dy, x, y, scale, size, alpha, beta)
    return dx


# ---- pointwise activations: backward reads the forward output y
def _pointwise(name):
    def forward(x):
        y = np.empty_like(x)
        getattr(backend(x), name + "_forward")(y, x)
        return y

    def backward(dy, y):
        dx = np.empty_like(y)
        getattr(backend(dy, y), name + "_backward")(dx, dy, y)
        return dx
    return forward, backward


relu_forward, relu_backward = _pointwise("relu")
sigmoid_forward, sigmoid_backward = _pointwise("sigmoid")
tanh_forward, tanh_backward = _pointwise("tanh")


# ---- dropout: the mask depends only on (seed, element index)
def dropout_forward(x, p, seed):
    y, mask = np.empty_like(x), np.empty(x.shape, np.uint8)
    backend(x).dropout_forward(y, mask, x, float(p), int(seed) & (2**64 - 1))
    return y, mask


def dropout_backward(dy, mask, p):
    dx = np.empty(mask.shape, np.float32)
    backend(dy).dropout_backward(dx, dy, mask, float(p))
    return dx


# ---- softmax and the fused softmax + cross-entropy (mean over the batch)
def softmax_forward(x):
    y = np.empty_like(x)
    backend(x).softmax_forward(y, x)
    return y


def softmax_backward(dy, y):
    dx = np.empty_like(y)
    backend(dy, y).softmax_backward(dx, dy, y)
    return dx


def softmax_xent_forward(logits, labels):
    """Returns (mean loss as a Python float, probabilities (N, K))."""
    prob = np.empty_like(logits)
    loss = backend(logits).softmax_xent_forward(prob, logits, labels)
    return loss, prob


def softmax_xent_backward(prob, labels):
    dx = np.empty_like(prob)
    backend(prob).softmax_xent_backward(dx, prob, labels)
    return dx
