"""Functional forward/backward pairs over the kernels: they allocate outputs, take the shared
workspace and dispatch to the backend. Layers in pyconvnet.nn call only these.

Shapes and the gradient rule are those of cpp/ops.h: dx is returned fresh, dw/db ACCUMULATE into
the arrays passed in (None skips them). Arguments are checked by the kernel table (_core, or
_cuda for device arrays), which raises ValueError/TypeError naming the op and the shapes seen and
expected. Outputs are allocated by the backend, on the device of the inputs.
"""
import sys

import numpy as np

from . import _core, cuda
from ._workspace import workspace


class _Cpu:
    """The ops table for numpy arrays: the _core kernels, allocation by numpy."""

    name = "cpu"
    empty, zeros = staticmethod(np.empty), staticmethod(np.zeros)
    empty_like, zeros_like = staticmethod(np.empty_like), staticmethod(np.zeros_like)

    def __getattr__(self, name):
        return getattr(_core, name)

    @staticmethod
    def top1_count(logits, labels):
        return int((np.argmax(logits, axis=1) == labels).sum())


CPU = _Cpu()


def device_of(a):
    """'cuda' for a pyconvnet.cuda device array, else 'cpu'."""
    return "cuda" if cuda.is_device_array(a) else "cpu"


def backend(*arrays):
    """The one dispatch point: the ops table (kernels and allocation) for the arrays' device;
    None entries are skipped. Arrays on two devices raise ValueError naming both."""
    dev = None
    for a in arrays:
        if a is None:
            continue
        d = device_of(a)
        if dev is None:
            dev = d
        elif d != dev:
            op = sys._getframe(1).f_code.co_name
            raise ValueError(f"{op}: arrays on two devices, {dev} and {d}; move them to one "
                             "device first (pyconvnet.cuda.asarray, .to('cuda') or .to('cpu'))")
    return cuda.backend() if dev == "cuda" else CPU


def to_device(a, device):
    """a on `device` ('cpu' or 'cuda'): a itself when it is there already, else a copy."""
    if device == "cpu":
        # np.asarray(order="C"), not np.ascontiguousarray, which turns a 0-d array into shape (1,)
        return a.numpy() if cuda.is_device_array(a) else np.asarray(a, order="C")
    if device == "cuda":
        return cuda.asarray(a)
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


def to_numpy(a):
    return to_device(a, "cpu")


def copyto(dst, src):
    """Copy src (host or device data of dst's shape) into the existing array dst."""
    if cuda.is_device_array(dst):
        dst.copy_from(src)
    else:
        np.copyto(dst, to_numpy(src), casting="same_kind")


def top1_count(logits, labels):
    """Rows of logits (N, K) whose first maximum is at the label: an int on the CPU, a 0-d
    device array on CUDA (int() reads it), so a loop can read it back when it reads the loss."""
    return backend(logits, labels).top1_count(logits, labels)


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
    be, s, p = backend(x, w, b), pair(stride, "stride"), pair(padding, "padding")
    ws = workspace(be.conv2d_slot_floats(x, w, s, p, groups), x.shape[0], be)
    y = be.empty((x.shape[0], w.shape[0], out_size(x.shape[2], w.shape[2], s[0], p[0]),
                  out_size(x.shape[3], w.shape[3], s[1], p[1])), np.float32)
    be.conv2d_forward(y, x, w, b, s, p, groups, ws)
    return y


def conv2d_backward(dy, x, w, dw=None, db=None, stride=1, padding=0, groups=1, need_dx=True):
    be, s, p = backend(dy, x, w, dw, db), pair(stride, "stride"), pair(padding, "padding")
    ws = workspace(be.conv2d_slot_floats(x, w, s, p, groups), x.shape[0], be)
    dx = be.empty_like(x) if need_dx else None
    be.conv2d_backward(dx, dw, db, dy, x, w, s, p, groups, ws)
    return dx


# ---- locally connected: w (OH, OW, OC, C, KH, KW), b (OC, OH, OW)
def local2d_forward(x, w, b=None, stride=1, padding=0):
    be, s, p = backend(x, w, b), pair(stride, "stride"), pair(padding, "padding")
    ws = workspace(be.local2d_slot_floats(x, w, s, p), x.shape[0], be)
    y = be.empty((x.shape[0], w.shape[2], w.shape[0], w.shape[1]), np.float32)
    be.local2d_forward(y, x, w, b, s, p, ws)
    return y


def local2d_backward(dy, x, w, dw=None, db=None, stride=1, padding=0, need_dx=True):
    be, s, p = backend(dy, x, w, dw, db), pair(stride, "stride"), pair(padding, "padding")
    ws = workspace(be.local2d_slot_floats(x, w, s, p), x.shape[0], be)
    dx = be.empty_like(x) if need_dx else None
    be.local2d_backward(dx, dw, db, dy, x, w, s, p, ws)
    return dx


# ---- fully connected: x (N, IN), w (OUT, IN)
def linear_forward(x, w, b=None):
    be = backend(x, w, b)
    y = be.empty((x.shape[0], w.shape[0]), np.float32)
    be.linear_forward(y, x, w, b)
    return y


def linear_backward(dy, x, w, dw=None, db=None, need_dx=True):
    be = backend(dy, x, w, dw, db)
    dx = be.empty_like(x) if need_dx else None
    be.linear_backward(dx, dw, db, dy, x, w)
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
    be = backend(x)
    y, argmax = be.empty(shape, np.float32), be.empty(shape, np.int32)
    be.maxpool2d_forward(y, argmax, x, k, s, p)
    return y, argmax


def maxpool2d_backward(dy, argmax, x_shape, kernel_size, stride, padding=0):
    be = backend(dy, argmax)
    dx = be.empty(x_shape, np.float32)
    be.maxpool2d_backward(dx, dy, argmax, pair(kernel_size), pair(stride), pair(padding))
    return dx


def avgpool2d_forward(x, kernel_size, stride, padding=0):
    k, s, p = pair(kernel_size, "kernel_size"), pair(stride, "stride"), pair(padding, "padding")
    be = backend(x)
    y = be.empty(_pool_out(x, k, s, p), np.float32)
    be.avgpool2d_forward(y, x, k, s, p)
    return y


def avgpool2d_backward(dy, x_shape, kernel_size, stride, padding=0):
    be = backend(dy)
    dx = be.empty(x_shape, np.float32)
    be.avgpool2d_backward(dx, dy, pair(kernel_size), pair(stride), pair(padding))
    return dx


# ---- local response normalization (PyTorch/Caffe convention, see cpp/lrn.cpp)
def lrn_forward(x, size, alpha, beta, k):
    """Returns y and the per-element scale that backward needs."""
    be = backend(x)
    y, scale = be.empty_like(x), be.empty_like(x)
    be.lrn_forward(y, scale, x, size, alpha, beta, k)
    return y, scale


def lrn_backward(dy, x, y, scale, size, alpha, beta):
    be = backend(dy, x, y, scale)
    dx = be.empty_like(x)
    be.lrn_backward(dx, dy, x, y, scale, size, alpha, beta)
    return dx


# ---- pointwise activations: backward reads the forward output y
def _pointwise(name):
    def forward(x):
        be = backend(x)
        y = be.empty_like(x)
        getattr(be, name + "_forward")(y, x)
        return y

    def backward(dy, y):
        be = backend(dy, y)
        dx = be.empty_like(y)
        getattr(be, name + "_backward")(dx, dy, y)
        return dx
    return forward, backward


relu_forward, relu_backward = _pointwise("relu")
sigmoid_forward, sigmoid_backward = _pointwise("sigmoid")
tanh_forward, tanh_backward = _pointwise("tanh")


# ---- dropout: the mask depends only on (seed, element index)
def dropout_forward(x, p, seed):
    be = backend(x)
    y, mask = be.empty_like(x), be.empty(x.shape, np.uint8)
    be.dropout_forward(y, mask, x, float(p), int(seed) & (2**64 - 1))
    return y, mask


def dropout_backward(dy, mask, p):
    be = backend(dy, mask)
    dx = be.empty(mask.shape, np.float32)
    be.dropout_backward(dx, dy, mask, float(p))
    return dx


# ---- softmax and the fused softmax + cross-entropy (mean over the batch)
def softmax_forward(x):
    be = backend(x)
    y = be.empty_like(x)
    be.softmax_forward(y, x)
    return y


def softmax_backward(dy, y):
    be = backend(dy, y)
    dx = be.empty_like(y)
    be.softmax_backward(dx, dy, y)
    return dx


def softmax_xent_forward(logits, labels):
    """Returns (mean loss, probabilities (N, K)). The loss is a Python float on the CPU and a
    0-d device array on CUDA (float(loss) copies it back: read it only every few steps)."""
    be = backend(logits, labels)
    prob = be.empty_like(logits)
    loss = be.softmax_xent_forward(prob, logits, labels)
    return loss, prob


def softmax_xent_backward(prob, labels):
    be = backend(prob, labels)
    dx = be.empty_like(prob)
    be.softmax_xent_backward(dx, prob, labels)
    return dx
