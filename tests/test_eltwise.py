"""ReLU, Sigmoid, Tanh: _core (any ndim, in-place aliasing), ops and layers against the oracle."""
import numpy as np
import pytest

from pyconvnet import _core, ops
from pyconvnet.nn import ReLU, Sigmoid, Tanh

import reference as ref
from reference import assert_close, nan_like, randn

OPS = {"relu": (ReLU, ref.relu_forward, ref.relu_backward),
       "sigmoid": (Sigmoid, ref.sigmoid_forward, ref.sigmoid_backward),
       "tanh": (Tanh, ref.tanh_forward, ref.tanh_backward)}
SHAPES = [(1,), (7,), (3, 5), (2, 3, 4, 5), (1, 1, 1, 1), (1037,)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", OPS)
def test_core(rng, name, shape):
    _, fw, bw = OPS[name]
    x = randn(rng, *shape) * 3
    y = nan_like(shape)
    getattr(_core, name + "_forward")(y, x)
    assert_close(y, fw(x), rtol=1e-5)
    dy = randn(rng, *shape)
    dx = nan_like(shape)
    getattr(_core, name + "_backward")(dx, dy, y)
    assert_close(dx, bw(dy, x), rtol=1e-4)


@pytest.mark.parametrize("name", OPS)
def test_core_in_place(rng, name):
    """y may alias x and dx may alias dy (cpp/ops.h)."""
    _, fw, bw = OPS[name]
    x = randn(rng, 4, 9)
    buf = x.copy()
    getattr(_core, name + "_forward")(buf, buf)
    assert_close(buf, fw(x), rtol=1e-5)
    dy = randn(rng, 4, 9)
    g = dy.copy()
    getattr(_core, name + "_backward")(g, g, buf)
    assert_close(g, bw(dy, x))


@pytest.mark.parametrize("name", OPS)
def test_layer(rng, name):
    cls, fw, bw = OPS[name]
    layer = cls()
    x = randn(rng, 2, 3, 4, 5)
    y = layer(x)
    assert_close(y, fw(x), rtol=1e-5)
    dy = randn(rng, *y.shape)
    assert_close(layer.backward(dy), bw(dy, x))
    assert_close(layer.backward(dy), bw(dy, x))
    assert_close(getattr(ops, name + "_backward")(dy, getattr(ops, name + "_forward")(x)), bw(dy, x))


def test_saturation_is_finite():
    x = np.array([-1e4, -100, -30, 0.5, 30, 100, 1e4], np.float32)
    for name in ("sigmoid", "tanh"):
        y = getattr(ops, name + "_forward")(x)
        assert np.isfinite(y).all(), name
        assert_close(y, getattr(ref, name + "_forward")(x), rtol=1e-5)
        dx = getattr(ops, name + "_backward")(np.ones_like(x), y)
        assert np.isfinite(dx).all() and (dx >= 0).all(), name


def test_relu_zero_and_negative():
    x = np.array([-2.0, -0.0, 0.0, 1e-30, 3.0], np.float32)
    y = ops.relu_forward(x)
    np.testing.assert_array_equal(y, np.array([0, 0, 0, 1e-30, 3], np.float32))
    np.testing.assert_array_equal(ops.relu_backward(np.full(5, 2.0, np.float32), y), [0, 0, 0, 2, 2])
