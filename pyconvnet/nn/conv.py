"""Layers with weights: Conv2d (shared filters), LocallyConnected2d (unshared), Linear; and Flatten."""
import numpy as np

from .. import ops
from ..ops import pair
from . import init
from .module import Module, as_input


def _positive(who, **kw):
    for name, v in kw.items():
        vals = v if isinstance(v, tuple) else (v,)
        if any(t < 1 for t in vals):
            raise ValueError(f"{who}: {name} must be >= 1, got {v}")


def _nonneg(who, **kw):
    for name, v in kw.items():
        if min(v) < 0:
            raise ValueError(f"{who}: {name} must be >= 0, got {v}")


class Conv2d(Module):
    """y = conv(x, weight) + bias; weight (OC, C/groups, KH, KW), bias (OC,). He-normal init."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1,
                 bias=True):
        super().__init__()
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size, self.stride = pair(kernel_size, "kernel_size"), pair(stride, "stride")
        self.padding = pair(padding, "padding")
        who = f"Conv2d({in_channels}, {out_channels}, kernel_size={kernel_size})"
        _positive(who, in_channels=self.in_channels, out_channels=self.out_channels,
                  groups=self.groups, kernel_size=self.kernel_size, stride=self.stride)
        _nonneg(who, padding=self.padding)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"{who}: in_channels {in_channels} and out_channels {out_channels} "
                             f"must be divisible by groups={groups}")
        cg = self.in_channels // self.groups
        kh, kw = self.kernel_size
        self._param("weight", init.he_normal((self.out_channels, cg, kh, kw), cg * kh * kw))
        if bias:
            self._param("bias", np.zeros(self.out_channels, np.float32))

    def forward(self, x):
        x = as_input(x, repr(self), 4)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected x with {self.in_channels} channels (N, {self.in_channels}, H, W), "
                             f"got shape {x.shape}")
        self._x = x
        return self._saved_output(ops.conv2d_forward(x, self.weight, self._params.get("bias"),
                                                     self.stride, self.padding, self.groups))

    def backward(self, dy):
        dy = self._check_dy(dy)
        return ops.conv2d_backward(dy, self._x, self.weight, self._grads["weight"],
                                   self._grads.get("bias"), self.stride, self.padding,
                                   self.groups, self.need_input_grad)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        s += f", padding={self.padding}" if self.padding != (0, 0) else ""
        s += f", groups={self.groups}" if self.groups != 1 else ""
        return s + (", bias=False" if "bias" not in self._params else "")


class LocallyConnected2d(Module):
    """Conv2d geometry with a separate filter bank at every output location (no weight sharing):
    weight (OH, OW, OC, C, KH, KW), bias (OC, OH, OW). input_size is the (H, W) it accepts."""

    def __init__(self, in_channels, out_channels, input_size, kernel_size, stride=1, padding=0,
                 bias=True):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.input_size, self.kernel_size = pair(input_size, "input_size"), pair(kernel_size, "kernel_size")
        self.stride, self.padding = pair(stride, "stride"), pair(padding, "padding")
        who = f"LocallyConnected2d({in_channels}, {out_channels}, input_size={input_size})"
        _positive(who, in_channels=self.in_channels, out_channels=self.out_channels,
                  input_size=self.input_size, kernel_size=self.kernel_size, stride=self.stride)
        _nonneg(who, padding=self.padding)
        (h, w), (kh, kw), (sh, sw), (ph, pw) = self.input_size, self.kernel_size, self.stride, self.padding
        if kh > h + 2 * ph or kw > w + 2 * pw:
            raise ValueError(f"{who}: kernel {self.kernel_size} is larger than the padded input "
                             f"({h + 2 * ph}, {w + 2 * pw})")
        self.output_size = (ops.out_size(h, kh, sh, ph), ops.out_size(w, kw, sw, pw))
        oh, ow = self.output_size
        fan_in = self.in_channels * kh * kw
        self._param("weight", init.he_normal((oh, ow, self.out_channels, self.in_channels, kh, kw), fan_in))
        if bias:
            self._param("bias", np.zeros((self.out_channels, oh, ow), np.float32))

    def forward(self, x):
        x = as_input(x, repr(self), 4)
        if x.shape[1:] != (self.in_channels, *self.input_size):
            raise ValueError(f"expected x of shape (N, {self.in_channels}, {self.input_size[0]}, "
                             f"{self.input_size[1]}), got {x.shape}")
        self._x = x
        return self._saved_output(ops.local2d_forward(x, self.weight, self._params.get("bias"),
                                                      self.stride, self.padding))

    def backward(self, dy):
        dy = self._check_dy(dy)
        return ops.local2d_backward(dy, self._x, self.weight, self._grads["weight"],
                                    self._grads.get("bias"), self.stride, self.padding,
                                    self.need_input_grad)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, input_size={self.input_size}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}")


class Linear(Module):
    """y = x weight^T + bias; x (N, in_features), weight (out_features, in_features)."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        _positive(f"Linear({in_features}, {out_features})", in_features=self.in_features,
                  out_features=self.out_features)
        self._param("weight", init.he_normal((self.out_features, self.in_features), self.in_features))
        if bias:
            self._param("bias", np.zeros(self.out_features, np.float32))

    def forward(self, x):
        x = as_input(x, repr(self))
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"expected x of shape (N, {self.in_features}), got {x.shape}"
                             + (" (put a Flatten before Linear)" if x.ndim > 2 else ""))
        self._x = x
        return self._saved_output(ops.linear_forward(x, self.weight, self._params.get("bias")))

    def backward(self, dy):
        dy = self._check_dy(dy)
        return ops.linear_backward(dy, self._x, self.weight, self._grads["weight"],
                                   self._grads.get("bias"), self.need_input_grad)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}" + (
            ", bias=False" if "bias" not in self._params else "")


class Flatten(Module):
    """(N, C, H, W) -> (N, C*H*W), a view."""

    def forward(self, x):
        x = as_input(x, repr(self))
        if x.ndim < 2:
            raise ValueError(f"expected at least 2-d x (N, ...), got shape {x.shape}")
        self._in_shape = x.shape
        return self._saved_output(x.reshape(x.shape[0], -1))

    def backward(self, dy):
        return self._check_dy(dy).reshape(self._in_shape)
