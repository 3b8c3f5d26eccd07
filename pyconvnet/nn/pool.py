"""MaxPool2d and AvgPool2d (stride defaults to the kernel size; AlexNet overlaps with 3/2)."""
from .. import ops
from ..ops import pair
from .module import Module, as_input


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self.padding = pair(padding, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"{self!r}: kernel_size and stride must be >= 1 and padding >= 0")
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{self!r}: padding must be at most half the kernel size")

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    def forward(self, x):
        x = as_input(x, repr(self), 4)
        self._x_shape = x.shape
        y, self._argmax = ops.maxpool2d_forward(x, self.kernel_size, self.stride, self.padding)
        return self._saved_output(y)

    def backward(self, dy):
        dy = self._check_dy(dy)
        return ops.maxpool2d_backward(dy, self._argmax, self._x_shape, self.kernel_size,
                                      self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """Averages over the whole window, zero padding included (PyTorch's count_include_pad)."""

    def forward(self, x):
        x = as_input(x, repr(self), 4)
        self._x_shape = x.shape
        return self._saved_output(ops.avgpool2d_forward(x, self.kernel_size, self.stride, self.padding))

    def backward(self, dy):
        dy = self._check_dy(dy)
        return ops.avgpool2d_backward(dy, self._x_shape, self.kernel_size, self.stride, self.padding)
