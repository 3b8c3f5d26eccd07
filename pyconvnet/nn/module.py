"""Module: the base of every layer. forward(x) -> y and backward(dy) -> dx sit side by side;
backward reads only what forward saved.

Inputs are numpy float32 arrays, or float32 device arrays (pyconvnet.cuda) for a model on the
GPU. Another dtype raises TypeError (convert once, outside the training loop, with
x.astype(np.float32)); a non-contiguous float32 numpy array is copied to a contiguous one (one
explicit copy, the same as np.ascontiguousarray); device arrays are always contiguous.
"""
import numpy as np

from .. import ops


def as_input(x, who, ndim=None, what="x"):
    on_device = ops.device_of(x) != "cpu"
    if not isinstance(x, np.ndarray) and not on_device:
        raise TypeError(f"{who}: {what} must be a numpy float32 array, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"{who}: {what} must have dtype float32, got {x.dtype} "
                        f"(convert once with {what}.astype(np.float32))")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{who}: {what} must be {ndim}-d, got shape {x.shape}")
    return x if on_device else np.ascontiguousarray(x)


class Module:
    """Parameters live in self._params (name -> array) with gradients in self._grads; they read
    as attributes (layer.weight, layer.weight_grad). Assigning layer.weight = array copies into
    the existing storage (shape checked), so views into a model's flat buffer stay valid."""

    training = True
    need_input_grad = True  # False on a first layer: backward then skips dx and returns None

    def __init__(self):
        object.__setattr__(self, "_params", {})
        object.__setattr__(self, "_grads", {})
        self._out_shape = None  # shape of the last output; None until the first forward

    # -- parameters
    def _param(self, name, value):
        value = np.ascontiguousarray(value, dtype=np.float32)
        self._params[name] = value
        self._grads[name] = np.zeros_like(value)

    def __getattr__(self, name):
        d = self.__dict__
        if name in d.get("_params", ()):
            return d["_params"][name]
        if name.endswith("_grad") and name[:-5] in d.get("_grads", ()):
            return d["_grads"][name[:-5]]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name, value):
        params = self.__dict__.get("_params", {})
        if name in params or (name.endswith("_grad") and name[:-5] in params):
            store = params[name] if name in params else self._grads[name[:-5]]
            shape = tuple(np.shape(value))
            if shape != store.shape:
                raise ValueError(f"{self!r}: {name} must have shape {store.shape}, got {shape}")
            ops.copyto(store, value)  # into the existing storage, on its device
        else:
            object.__setattr__(self, name, value)

    def named_parameters(self):
        """(name, parameter, gradient) triples, in PyTorch's order and names."""
        return [(n, p, self._grads[n]) for n, p in self._params.items()]

    def _rebind(self, name, param_view, grad_view):
        """Move a parameter into caller-owned storage (a model's flat buffers)."""
        np.copyto(param_view, self._params[name])
        np.copyto(grad_view, self._grads[name])
        self._params[name], self._grads[name] = param_view, grad_view

    def zero_grad(self):
        for g in self._grads.values():
            g.fill(0.0)

    # -- modes
    def train(self, mode=True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    # -- calls
    def __call__(self, x):
        try:
            return self.forward(x)
        except (ValueError, TypeError) as e:
            if str(e).startswith(repr(self)):
                raise
            raise type(e)(f"{self!r}: {e}") from None

    def _saved_output(self, y):
        self._out_shape = y.shape
        return y

    def _check_dy(self, dy):
        """dy as the gradient of the last output; errors if there was no forward or shapes differ."""
        if self._out_shape is None:
            raise ValueError(f"{self!r}: backward called before any forward")
        dy = as_input(dy, repr(self), what="dy")
        if dy.shape != self._out_shape:
            raise ValueError(f"{self!r}: dy has shape {dy.shape}, expected {self._out_shape} "
                             "(the shape of the last output)")
        return dy

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self):
        return ""
