"""linear (fully connected) and Flatten: _core, ops and layers against the oracle; gradient rule.
Shapes include ones big enough (>= 128 rows or columns) that sgemm_parallel splits the product,
along columns and along rows."""
import numpy as np
import pytest

import pyconvnet
from pyconvnet import _core, ops
from pyconvnet.nn import Flatten, Linear

import reference as ref
from reference import assert_close, nan_like, randn

# N, IN, OUT
CASES = [(1, 1, 1), (3, 5, 7), (1, 9, 4), (4, 1, 3), (2, 33, 130), (200, 6, 3), (150, 130, 5)]
IDS = ["N{}IN{}OUT{}".format(*c) for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_core(rng, case):
    N, IN, OUT = case
    x, w, b, dy = randn(rng, N, IN), randn(rng, OUT, IN), randn(rng, OUT), randn(rng, N, OUT)
    for bias in (b, None):
        y = nan_like((N, OUT))
        _core.linear_forward(y, x, w, bias)
        assert_close(y, ref.linear_forward(x, w, bias))
    rdx, rdw, rdb = ref.linear_backward(dy, x, w)
    dx, dw0, db0 = nan_like((N, IN)), randn(rng, OUT, IN), randn(rng, OUT)
    dw, db = dw0.copy(), db0.copy()
    for k in (1, 2):
        _core.linear_backward(dx, dw, db, dy, x, w)
        assert_close(dx, rdx, msg="dx")
        assert_close(dw, dw0 + k * rdw, msg="dw")
        assert_close(db, db0 + k * rdb, msg="db")
        dx.fill(5.0)
    dw2 = np.zeros_like(w)
    _core.linear_backward(None, dw2, None, dy, x, w)
    assert_close(dw2, rdw)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_layer(rng, case, threads, restore_settings):
    pyconvnet.set_num_threads(threads)
    N, IN, OUT = case
    layer = Linear(IN, OUT)
    layer.bias = randn(rng, OUT)
    x = randn(rng, N, IN)
    y = layer(x)
    assert_close(y, ref.linear_forward(x, layer.weight, layer.bias))
    dy = randn(rng, N, OUT)
    rdx, rdw, rdb = ref.linear_backward(dy, x, layer.weight)
    for k in (1, 2):
        assert_close(layer.backward(dy), rdx)
        assert_close(layer.weight_grad, k * rdw)
        assert_close(layer.bias_grad, k * rdb)


def test_layer_no_bias_no_input_grad(rng):
    layer = Linear(4, 3, bias=False)
    x = randn(rng, 2, 4)
    assert_close(layer(x), ref.linear_forward(x, layer.weight))
    layer.need_input_grad = False
    dy = randn(rng, 2, 3)
    assert layer.backward(dy) is None
    assert_close(layer.weight_grad, ref.linear_backward(dy, x, layer.weight)[1])


def test_ops(rng):
    x, w, b, dy = randn(rng, 3, 4), randn(rng, 5, 4), randn(rng, 5), randn(rng, 3, 5)
    assert_close(ops.linear_forward(x, w, b), ref.linear_forward(x, w, b))
    dw, db = np.zeros_like(w), np.zeros_like(b)
    dx = ops.linear_backward(dy, x, w, dw, db)
    for got, want in zip((dx, dw, db), ref.linear_backward(dy, x, w)):
        assert_close(got, want)
    assert ops.linear_backward(dy, x, w, need_dx=False) is None


def test_flatten_then_linear(rng):
    x = randn(rng, 2, 3, 4, 5)
    flat, lin = Flatten(), Linear(60, 4)
    h = flat(x)
    assert h.shape == (2, 60)
    np.testing.assert_array_equal(h, x.reshape(2, 60))
    y = lin(h)
    dy = randn(rng, *y.shape)
    dx = flat.backward(lin.backward(dy))
    assert dx.shape == x.shape
    assert_close(dx, ref.linear_backward(dy, x.reshape(2, 60), lin.weight)[0].reshape(x.shape))


@pytest.mark.parametrize("threads", [1, 2])
def test_weight_gradient_over_a_long_batch(rng, threads, restore_settings):
    """A small weight (7 x 5) and a batch of 9,000: sgemm_parallel cuts K (the batch) into fixed
    pieces; the result must match the reference and not depend on the thread count."""
    pyconvnet.set_num_threads(threads)
    x, w, dy = randn(rng, 9000, 5), randn(rng, 7, 5), randn(rng, 9000, 7)
    dw0 = randn(rng, 7, 5)
    dw = dw0.copy()
    ops.linear_backward(dy, x, w, dw, need_dx=False)
    assert_close(dw, dw0 + ref.linear_backward(dy, x, w)[1])
    pyconvnet.set_num_threads(3 - threads)
    dw2 = dw0.copy()
    ops.linear_backward(dy, x, w, dw2, need_dx=False)
    np.testing.assert_array_equal(dw2, dw)


def test_thin_weight_gradient_accumulates(rng):
    """5 outputs of 600 inputs over a batch of 20: dw += dy^T x takes the thin-product kernel with
    beta = 1 (it must add to what dw held)."""
    x, w, dy = randn(rng, 20, 600), randn(rng, 5, 600), randn(rng, 20, 5)
    dw0 = randn(rng, 5, 600)
    dw = dw0.copy()
    ops.linear_backward(dy, x, w, dw, need_dx=False)
    assert_close(dw, dw0 + ref.linear_backward(dy, x, w)[1])
