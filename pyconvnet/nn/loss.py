"""Softmax + cross-entropy, fused for numerical stability."""
import numpy as np

from .. import ops
from .module import Module, as_input


class SoftmaxCrossEntropy(Module):
    """loss = crit(logits (N, K), labels (N,) ints in [0, K)) -> mean loss over the batch (a float;
    on the GPU a 0-d device array, which float() reads). crit.backward() -> dlogits (N, K) =
    (softmax - onehot) / N. crit.prob holds the softmax. Labels live where the logits do (int64
    device arrays on the GPU; a label outside [0, K) there gives a NaN loss, not an error)."""

    def forward(self, logits, labels):
        logits = as_input(logits, repr(self), 2, what="logits")
        on_host = ops.device_of(labels) == "cpu"
        labels = np.asarray(labels) if on_host else labels
        if labels.dtype.kind not in "iu":
            raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
        if labels.shape != (logits.shape[0],):
            raise ValueError(f"labels have shape {labels.shape}, expected ({logits.shape[0]},) "
                             f"to match logits {logits.shape}")
        if not on_host and labels.dtype != np.int64:
            raise TypeError(f"device labels must have dtype int64, got {labels.dtype}")
        self._labels = np.ascontiguousarray(labels, dtype=np.int64) if on_host else labels
        loss, self.prob = ops.softmax_xent_forward(logits, self._labels)
        self._out_shape = logits.shape
        return loss

    def __call__(self, logits, labels):
        try:
            return self.forward(logits, labels)
        except (ValueError, TypeError) as e:
            raise type(e)(f"{self!r}: {e}") from None

    def backward(self, dy=None):
        """dlogits of the mean loss (dy, if given, is the scalar gradient of the loss)."""
        if self._out_shape is None:
            raise ValueError(f"{self!r}: backward called before any forward")
        dx = ops.softmax_xent_backward(self.prob, self._labels)
        if dy is not None:
            dx *= float(dy)
        return dx
