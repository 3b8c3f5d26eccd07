"""Max and average pooling: _core, ops and layers against the oracle (max pads with -inf and
records argmax; avg counts padding), overlapping windows, and PyTorch."""
import numpy as np
import pytest

from pyconvnet import _core, ops
from pyconvnet.nn import AvgPool2d, MaxPool2d

import reference as ref
from reference import assert_close, nan_like

# N, C, H, W, kernel, stride, padding
CASES = [
    (2, 3, 6, 6, (2, 2), (2, 2), (0, 0)),
    (2, 2, 7, 9, (3, 3), (2, 2), (0, 0)),       # overlapping (AlexNet 3/2), odd sizes
    (1, 1, 7, 7, (3, 3), (2, 2), (1, 1)),       # overlapping + padding, N=1, C=1
    (3, 2, 5, 8, (2, 3), (1, 2), (1, 1)),       # non-square kernel and stride
    (2, 3, 5, 5, (5, 5), (1, 1), (2, 2)),       # full-size window with maximal padding
    (1, 2, 4, 3, (1, 1), (2, 2), (0, 0)),       # 1x1 subsampling
    (2, 1, 1, 1, (3, 3), (1, 1), (1, 1)),       # 1x1 image, padded
]
IDS = ["N{}C{}H{}W{}k{}s{}p{}".format(*c).replace(" ", "") for c in CASES]


def distinct(rng, *shape):
    """Values with no ties (a permutation of spaced numbers): the argmax is unambiguous."""
    n = int(np.prod(shape))
    return (rng.permutation(n).astype(np.float32) * 0.37 - 0.1 * n).reshape(shape)


def outshape(case):
    N, C, H, W, k, s, p = case
    return (N, C, ref.out_size(H, k[0], s[0], p[0]), ref.out_size(W, k[1], s[1], p[1]))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_maxpool_core(rng, case):
    N, C, H, W, k, s, p = case
    x = distinct(rng, N, C, H, W)
    y, am = nan_like(outshape(case)), np.full(outshape(case), -1, np.int32)
    _core.maxpool2d_forward(y, am, x, k, s, p)
    ry, ram = ref.maxpool2d_forward(x, k, s, p)
    assert_close(y, ry)
    np.testing.assert_array_equal(am, ram)
    dy = rng.standard_normal(y.shape).astype(np.float32) + 0.5
    dx = np.full(x.shape, 9.0, np.float32)           # garbage: overwritten, not accumulated
    _core.maxpool2d_backward(dx, dy, am, k, s, p)
    assert_close(dx, ref.maxpool2d_backward(dy, x, k, s, p))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_avgpool_core(rng, case):
    N, C, H, W, k, s, p = case
    x = rng.standard_normal((N, C, H, W)).astype(np.float32) + 0.3
    y = nan_like(outshape(case))
    _core.avgpool2d_forward(y, x, k, s, p)
    assert_close(y, ref.avgpool2d_forward(x, k, s, p))
    dy = rng.standard_normal(y.shape).astype(np.float32) + 0.3
    dx = np.full(x.shape, 9.0, np.float32)
    _core.avgpool2d_backward(dx, dy, k, s, p)
    assert_close(dx, ref.avgpool2d_backward(dy, x.shape, k, s, p))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_layers(rng, case):
    N, C, H, W, k, s, p = case
    x = distinct(rng, N, C, H, W)
    for layer, fw, bw in ((MaxPool2d(k, s, p), ref.maxpool2d_forward, ref.maxpool2d_backward),
                          (AvgPool2d(k, s, p), ref.avgpool2d_forward, ref.avgpool2d_backward)):
        y = layer(x)
        want = fw(x, k, s, p)
        assert_close(y, want[0] if isinstance(want, tuple) else want)
        dy = rng.standard_normal(y.shape).astype(np.float32) + 0.5
        rdx = bw(dy, x if isinstance(layer, MaxPool2d) else x.shape, k, s, p)
        assert_close(layer.backward(dy), rdx)
        assert_close(layer.backward(dy), rdx)   # no state accumulates between backward calls


def test_stride_defaults_to_kernel(rng):
    x = distinct(rng, 1, 2, 6, 6)
    assert MaxPool2d(3).stride == (3, 3)
    assert_close(MaxPool2d(3)(x), ref.maxpool2d_forward(x, 3, 3)[0])
    assert_close(AvgPool2d((2, 3))(x), ref.avgpool2d_forward(x, (2, 3), (2, 3)))


def test_maxpool_all_negative_with_padding():
    """-inf padding: a window of negative numbers that overlaps the padding returns the max of
    the real values (zero padding would wrongly return 0)."""
    x = -np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)
    y, am = ops.maxpool2d_forward(x, 3, 2, 1)
    assert_close(y, ref.maxpool2d_forward(x, 3, 2, 1)[0])
    assert (y < 0).all()


def test_maxpool_nan_propagates():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4) + 1
    x[0, 0, 1, 1] = np.nan
    y, _ = ops.maxpool2d_forward(x, 2, 2)
    assert np.isnan(y[0, 0, 0, 0]) and not np.isnan(y[0, 0, 1, 1])


def test_ops_functional(rng):
    x = distinct(rng, 2, 2, 7, 7)
    y, am = ops.maxpool2d_forward(x, 3, 2, 1)
    assert am.dtype == np.int32
    dy = rng.standard_normal(y.shape).astype(np.float32)
    assert_close(ops.maxpool2d_backward(dy, am, x.shape, 3, 2, 1), ref.maxpool2d_backward(dy, x, 3, 2, 1))
    ya = ops.avgpool2d_forward(x, 3, 2, 1)
    assert_close(ya, ref.avgpool2d_forward(x, 3, 2, 1))
    assert_close(ops.avgpool2d_backward(dy, x.shape, 3, 2, 1), ref.avgpool2d_backward(dy, x.shape, 3, 2, 1))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_against_torch(rng, case):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    N, C, H, W, k, s, p = case
    x = distinct(rng, N, C, H, W)
    dy = rng.standard_normal(outshape(case)).astype(np.float32)
    for name, tf in (("max", lambda t: F.max_pool2d(t, k, s, p)),
                     ("avg", lambda t: F.avg_pool2d(t, k, s, p, count_include_pad=True))):
        tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        ty = tf(tx)
        ty.backward(torch.tensor(dy, dtype=torch.float64))
        if name == "max":
            y, am = ops.maxpool2d_forward(x, k, s, p)
            dx = ops.maxpool2d_backward(dy, am, x.shape, k, s, p)
        else:
            y = ops.avgpool2d_forward(x, k, s, p)
            dx = ops.avgpool2d_backward(dy, x.shape, k, s, p)
        assert_close(y, ty.detach().numpy(), msg=name)
        assert_close(dx, tx.grad.numpy(), msg=name)
