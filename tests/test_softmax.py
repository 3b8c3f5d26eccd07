"""Softmax and the fused softmax + cross-entropy (mean over the batch) against the oracle and torch."""
import numpy as np
import pytest

from pyconvnet import _core, ops
from pyconvnet.nn import Softmax, SoftmaxCrossEntropy

import reference as ref
from reference import assert_close, nan_like, randn

SHAPES = [(1, 1), (1, 5), (4, 3), (7, 10), (3, 1000)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_softmax_core(rng, shape):
    x = randn(rng, *shape) * 3
    y = nan_like(shape)
    _core.softmax_forward(y, x)
    assert_close(y, ref.softmax_forward(x))
    np.testing.assert_allclose(y.sum(axis=1), 1, rtol=1e-5)
    dy = randn(rng, *shape)
    dx = nan_like(shape)
    _core.softmax_backward(dx, dy, y)
    assert_close(dx, ref.softmax_backward(dy, x), atol=1e-4)


def test_softmax_layer_and_stability(rng):
    layer = Softmax()
    x = np.array([[1000.0, 999.0, -1000.0], [-1e4, -1e4, -1e4]], np.float32)
    y = layer(x)
    assert np.isfinite(y).all()
    assert_close(y, ref.softmax_forward(x))
    dy = randn(rng, 2, 3)
    assert_close(layer.backward(dy), ref.softmax_backward(dy, x), atol=1e-4)
    x = randn(rng, 5, 6)
    assert_close(layer(x), ref.softmax_forward(x))
    dy = randn(rng, 5, 6)
    assert_close(layer.backward(dy), ref.softmax_backward(dy, x), atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_xent_core(rng, shape):
    N, K = shape
    x = randn(rng, N, K) * 3
    labels = rng.integers(0, K, N).astype(np.int64)
    prob = nan_like(shape)
    loss = _core.softmax_xent_forward(prob, x, labels)
    rloss, rprob = ref.softmax_xent_forward(x, labels)
    assert isinstance(loss, float)
    assert abs(loss - rloss) <= 1e-5 * max(1.0, abs(rloss))
    assert_close(prob, rprob)
    dx = nan_like(shape)
    _core.softmax_xent_backward(dx, prob, labels)
    assert_close(dx, ref.softmax_xent_backward(x, labels), atol=1e-5)


def test_xent_extreme_logits():
    """log p comes from the logits, not from a rounded probability: a label with p ~ e^-2000
    gives a finite loss of ~2000, not inf."""
    x = np.array([[1000.0, -1000.0], [0.0, 0.0]], np.float32)
    labels = np.array([1, 0])
    loss, prob = ops.softmax_xent_forward(x, labels)
    assert np.isfinite(loss)
    assert abs(loss - ref.softmax_xent_forward(x, labels)[0]) < 1e-3
    assert np.isfinite(ops.softmax_xent_backward(prob, labels)).all()


@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.uint8])
def test_xent_layer(rng, label_dtype):
    crit = SoftmaxCrossEntropy()
    x = randn(rng, 6, 4)
    labels = np.array([0, 3, 1, 1, 2, 3], label_dtype)
    loss = crit(x, labels)
    rloss, rprob = ref.softmax_xent_forward(x, labels.astype(np.int64))
    assert abs(loss - rloss) < 1e-5
    assert_close(crit.prob, rprob)
    rdx = ref.softmax_xent_backward(x, labels.astype(np.int64))
    assert_close(crit.backward(), rdx, atol=1e-5)
    assert_close(crit.backward(2.5), 2.5 * rdx, atol=1e-5)       # scalar upstream gradient
    assert_close(crit.backward(), rdx, atol=1e-5)                # no state accumulates
    assert abs(crit(x, [int(t) for t in labels]) - rloss) < 1e-5                 # list labels


@pytest.mark.parametrize("shape", [(1, 1), (4, 3), (9, 17)], ids=str)
def test_against_torch(rng, shape):
    torch = pytest.importorskip("torch")
    N, K = shape
    x = randn(rng, N, K) * 2
    labels = rng.integers(0, K, N).astype(np.int64)
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tx, torch.tensor(labels))
    tl.backward()
    loss, prob = ops.softmax_xent_forward(x, labels)
    assert abs(loss - tl.item()) < 1e-5 * max(1, abs(tl.item()))
    assert_close(ops.softmax_xent_backward(prob, labels), tx.grad.numpy(), atol=1e-5)
    ts = torch.softmax(torch.tensor(x, dtype=torch.float64), dim=1)
    assert_close(ops.softmax_forward(x), ts.numpy())
