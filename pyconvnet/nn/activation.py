"""Activations, local response normalization and dropout."""
import numpy as np

from .. import ops
from . import init
from .module import Module, as_input


class _Pointwise(Module):
    _fw = _bw = None

    def forward(self, x):
        x = as_input(x, repr(self))
        self._y = type(self)._fw(x)
        return self._saved_output(self._y)

    def backward(self, dy):
        return type(self)._bw(self._check_dy(dy), self._y)


class ReLU(_Pointwise):
    _fw, _bw = ops.relu_forward, ops.relu_backward


class Sigmoid(_Pointwise):
    _fw, _bw = ops.sigmoid_forward, ops.sigmoid_backward


class Tanh(_Pointwise):
    _fw, _bw = ops.tanh_forward, ops.tanh_backward


class Softmax(_Pointwise):
    """Softmax over the last axis of (N, K) scores (for probabilities; train with SoftmaxCrossEntropy)."""
    _fw, _bw = ops.softmax_forward, ops.softmax_backward


class LocalResponseNorm(Module):
    """Across-channel LRN, in PyTorch's and Caffe's convention:
        y_c = x_c / (k + alpha/size * sum_{c' near c} x_c'^2) ** beta
    alpha is divided by size here. The AlexNet paper (sec. 3.3) writes k + alpha * sum with
    k=2, n=5, alpha=1e-4, beta=0.75: that is LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)."""

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)
        if self.size < 1 or self.alpha < 0 or self.k <= 0:
            raise ValueError(f"{self!r}: needs size >= 1, alpha >= 0 and k > 0")

    def forward(self, x):
        x = as_input(x, repr(self), 4)
        self._x = x
        self._y, self._scale = ops.lrn_forward(x, self.size, self.alpha, self.beta, self.k)
        return self._saved_output(self._y)

    def backward(self, dy):
        dy = self._check_dy(dy)
        return ops.lrn_backward(dy, self._x, self._y, self._scale, self.size, self.alpha, self.beta)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class Dropout(Module):
    """Inverted dropout: in training, zero each unit with probability p and scale the rest by
    1/(1-p); in eval, the identity. The mask of the i-th training call is a function of
    (seed, i) alone, so a run is reproducible from its seed and resumable from `calls`."""

    def __init__(self, p=0.5, seed=None):
        super().__init__()
        self.p = float(p)
        if not 0.0 <= self.p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.seed = int(init.generator().integers(2**63)) if seed is None else int(seed)
        self.calls = 0

    def forward(self, x):
        x = as_input(x, repr(self))
        self._train_mode = self.training and self.p > 0
        if not self._train_mode:
            return self._saved_output(x)
        call_seed = int(np.random.SeedSequence([self.seed, self.calls]).generate_state(1, np.uint64)[0])
        self.calls += 1
        y, self._mask = ops.dropout_forward(x, self.p, call_seed)
        return self._saved_output(y)

    def backward(self, dy):
        dy = self._check_dy(dy)
        return ops.dropout_backward(dy, self._mask, self.p) if self._train_mode else dy

    def extra_repr(self):
        return f"p={self.p}"
