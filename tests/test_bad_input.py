"""Bad input: every case raises ValueError or TypeError with a message that names what is wrong
(the shapes, the dtype, the value), from the layers, from ops and from _core directly; plus a
fuzz of random (mostly invalid) geometries straight into _core that must never crash."""

import numpy as np
import pytest

from pyconvnet import _core, ops
from pyconvnet.nn import (AvgPool2d, Conv2d, Dropout, Flatten, Linear, LocallyConnected2d,
                          LocalResponseNorm, MaxPool2d, ReLU, Sigmoid, Softmax,
                          SoftmaxCrossEntropy, Tanh)

import reference as ref
from conftest import run_python
from reference import assert_close

F32 = np.float32


def f32(*shape):
    return np.random.default_rng(0).standard_normal(shape).astype(F32) + 0.5


def conv_ws(n=10_000):
    return np.zeros(n, F32)


def readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


# ------------------------------------------------------------------ layers under test
def layers_4d():
    """(layer, valid input) pairs covering every layer type."""
    return [
        (Conv2d(3, 4, 3, padding=1), f32(2, 3, 5, 5)),
        (LocallyConnected2d(3, 2, (5, 5), 3), f32(2, 3, 5, 5)),
        (MaxPool2d(3, 2), f32(2, 3, 5, 5)),
        (AvgPool2d(2), f32(2, 3, 5, 5)),
        (LocalResponseNorm(3), f32(2, 3, 5, 5)),
        (ReLU(), f32(2, 3, 5, 5)),
        (Sigmoid(), f32(2, 3, 5, 5)),
        (Tanh(), f32(2, 3, 5, 5)),
        (Dropout(0.5, seed=1), f32(2, 3, 5, 5)),
        (Flatten(), f32(2, 3, 5, 5)),
        (Linear(6, 4), f32(3, 6)),
        (Softmax(), f32(3, 6)),
    ]


LAYER_IDS = [type(l).__name__ for l, _ in layers_4d()]


# ------------------------------------------------------------------ wrong ndim
@pytest.mark.parametrize("layer,shape", [
    (Conv2d(3, 4, 3), (3, 5, 5)), (LocallyConnected2d(3, 2, 5, 3), (2, 3, 5, 5, 1)),
    (MaxPool2d(2), (3, 4, 4)), (AvgPool2d(2), (4, 4)), (LocalResponseNorm(3), (2, 3, 4)),
], ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else str(v))
def test_layer_wrong_ndim(layer, shape):
    shape_re = r"\(" + r", ".join(map(str, shape)) + r"\)"
    with pytest.raises(ValueError, match=r"must be 4-d, got shape " + shape_re):
        layer(f32(*shape))


def test_linear_wrong_ndim():
    with pytest.raises(ValueError, match=r"expected x of shape \(N, 6\), got \(2, 3, 2\).*Flatten"):
        Linear(6, 2)(f32(2, 3, 2))
    with pytest.raises(ValueError, match=r"must be 2-d, got shape \(6,\)"):
        Softmax()(f32(6))
    with pytest.raises(ValueError, match=r"logits must be 2-d, got shape \(2, 3, 1\)"):
        SoftmaxCrossEntropy()(f32(2, 3, 1), [0, 1])


def test_core_wrong_ndim():
    with pytest.raises(ValueError, match=r"x must be 4-d, got shape \(3, 5, 5\)"):
        _core.conv2d_forward(f32(1, 4, 3, 3), f32(3, 5, 5), f32(4, 3, 3, 3), None, (1, 1), (0, 0), 1, conv_ws())
    with pytest.raises(ValueError, match=r"weight must be 4-d, got shape \(4, 27\)"):
        _core.conv2d_forward(f32(1, 4, 3, 3), f32(1, 3, 5, 5), f32(4, 27), None, (1, 1), (0, 0), 1, conv_ws())
    with pytest.raises(ValueError, match=r"weight must be 6-d, got shape \(3, 3, 2\)"):
        _core.local2d_forward(f32(1, 2, 3, 3), f32(1, 3, 5, 5), f32(3, 3, 2), None, (1, 1), (0, 0), conv_ws())
    with pytest.raises(ValueError, match=r"x must be 2-d, got shape \(2, 3, 4\)"):
        _core.linear_forward(f32(2, 5), f32(2, 3, 4), f32(5, 12), None)
    with pytest.raises(ValueError, match=r"x must be 4-d, got shape \(5, 5\)"):
        _core.maxpool2d_forward(f32(2, 2), np.zeros((2, 2), np.int32), f32(5, 5), (2, 2), (2, 2), (0, 0))
    with pytest.raises(ValueError, match=r"x must be 4-d, got shape \(2, 3\)"):
        _core.lrn_forward(f32(2, 3), f32(2, 3), f32(2, 3), 3, 1e-3, 0.75, 1.0)
    with pytest.raises(ValueError, match=r"x must be 2-d, got shape \(2, 3, 1\)"):
        _core.softmax_forward(f32(2, 3, 1), f32(2, 3, 1))
    with pytest.raises(ValueError, match=r"pooling expects x of shape \(N, C, H, W\), got \(5, 5\)"):
        ops.maxpool2d_forward(f32(5, 5), 2, 2)


# ------------------------------------------------------------------ channel mismatch
def test_channel_mismatch():
    with pytest.raises(ValueError, match=r"expected x with 3 channels .*got shape \(2, 4, 5, 5\)"):
        Conv2d(3, 4, 3)(f32(2, 4, 5, 5))
    with pytest.raises(ValueError, match=r"expected x of shape \(N, 3, 5, 5\), got \(2, 2, 5, 5\)"):
        LocallyConnected2d(3, 2, 5, 3)(f32(2, 2, 5, 5))
    with pytest.raises(ValueError, match=r"expected x of shape \(N, 3, 5, 5\), got \(2, 3, 6, 5\)"):
        LocallyConnected2d(3, 2, 5, 3)(f32(2, 3, 6, 5))
    with pytest.raises(ValueError, match=r"expected x of shape \(N, 6\), got \(3, 5\)"):
        Linear(6, 2)(f32(3, 5))
    with pytest.raises(ValueError, match=r"x \(1, 4, 5, 5\) has 4 channels but weight \(2, 3, 3, 3\)"):
        ops.conv2d_forward(f32(1, 4, 5, 5), f32(2, 3, 3, 3))
    with pytest.raises(ValueError, match=r"weight has shape \(3, 3, 2, 4, 3, 3\), expected \(3, 3, 2, 3, 3, 3\)"):
        ops.local2d_forward(f32(1, 3, 5, 5), f32(3, 3, 2, 4, 3, 3))
    with pytest.raises(ValueError, match=r"weight has shape \(2, 5\), expected \(2, 6\)"):
        ops.linear_forward(f32(3, 6), f32(2, 5))
    with pytest.raises(ValueError, match=r"bias has shape \(3,\), expected \(2,\)"):
        ops.conv2d_forward(f32(1, 3, 5, 5), f32(2, 3, 3, 3), f32(3))
    with pytest.raises(ValueError, match=r"bias has shape \(2, 3, 3\), expected \(2, 2, 2\)"):
        ops.local2d_forward(f32(1, 3, 3, 3), f32(2, 2, 2, 3, 2, 2), f32(2, 3, 3))


# ------------------------------------------------------------------ kernel larger than padded input
def test_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"kernel \(5, 5\) is larger than the padded input \(4, 4\) of x \(1, 2, 2, 2\)"):
        Conv2d(2, 1, 5, padding=1)(f32(1, 2, 2, 2))
    with pytest.raises(ValueError, match=r"kernel \(5, 1\) is larger than the padded input \(4, 4\)"):
        LocallyConnected2d(2, 1, (2, 2), (5, 1), padding=1)
    with pytest.raises(ValueError, match=r"kernel \(3, 3\) is larger than the padded input \(2, 2\) of x \(1, 1, 2, 2\)"):
        MaxPool2d(3)(f32(1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"kernel \(1, 4\) is larger than the padded input \(3, 3\) of x \(1, 1, 3, 3\)"):
        ops.avgpool2d_forward(f32(1, 1, 3, 3), (1, 4), 1)
    with pytest.raises(ValueError, match=r"kernel \(4, 4\) is larger than the padded input \(3, 3\)"):
        ops.local2d_forward(f32(1, 1, 3, 3), f32(1, 1, 1, 1, 4, 4))


# ------------------------------------------------------------------ kernel / stride below 1, bad padding
@pytest.mark.parametrize("make,match", [
    (lambda: Conv2d(3, 4, 0), r"kernel_size must be >= 1, got \(0, 0\)"),
    (lambda: Conv2d(3, 4, (3, 0)), r"kernel_size must be >= 1, got \(3, 0\)"),
    (lambda: Conv2d(3, 4, 3, stride=0), r"stride must be >= 1, got \(0, 0\)"),
    (lambda: Conv2d(3, 4, 3, stride=(1, -1)), r"stride must be >= 1, got \(1, -1\)"),
    (lambda: Conv2d(3, 4, 3, padding=-1), r"padding must be >= 0"),
    (lambda: Conv2d(0, 4, 3), r"in_channels must be >= 1, got 0"),
    (lambda: LocallyConnected2d(3, 4, 5, 0), r"kernel_size must be >= 1"),
    (lambda: LocallyConnected2d(3, 4, 5, 3, stride=0), r"stride must be >= 1, got \(0, 0\)"),
    (lambda: MaxPool2d(0), r"kernel_size and stride must be >= 1"),
    (lambda: MaxPool2d(2, stride=0), r"kernel_size and stride must be >= 1"),
    (lambda: AvgPool2d((2, 0)), r"kernel_size and stride must be >= 1"),
    (lambda: AvgPool2d(2, padding=2), r"padding must be at most half the kernel size"),
    (lambda: LocalResponseNorm(0), r"size >= 1"),
    (lambda: Linear(0, 3), r"in_features must be >= 1, got 0"),
    (lambda: Dropout(1.0), r"p must be in \[0, 1\), got 1.0"),
    (lambda: Dropout(-0.1), r"p must be in \[0, 1\)"),
], ids=lambda v: "" if callable(v) else v[:30])
def test_constructor_rejects(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_constructor_rejects_non_int_geometry():
    with pytest.raises(TypeError, match=r"kernel_size must be an int or an \(h, w\) pair"):
        Conv2d(3, 4, 2.5)
    with pytest.raises(TypeError, match=r"stride must be an int or an \(h, w\) pair"):
        MaxPool2d(2, stride=(1, 2, 3))


@pytest.mark.parametrize("call,match", [
    (lambda: ops.conv2d_forward(f32(1, 1, 4, 4), f32(1, 1, 2, 2), None, 0), r"conv2d: stride must be >= 1, got \(0, 0\)"),
    (lambda: ops.conv2d_forward(f32(1, 1, 4, 4), f32(1, 1, 0, 2)), r"kernel_size must be >= 1, got \(0, 2\)"),
    (lambda: ops.conv2d_forward(f32(1, 1, 4, 4), f32(1, 1, 2, 2), None, 1, -1), r"padding must be >= 0, got \(-1, -1\)"),
    (lambda: ops.local2d_forward(f32(1, 1, 4, 4), f32(3, 3, 1, 1, 2, 2), None, (1, 0)), r"stride must be >= 1, got \(1, 0\)"),
    (lambda: _core.conv2d_forward(f32(1, 1, 3, 3), f32(1, 1, 4, 4), f32(1, 1, 2, 2), None, (0, 1), (0, 0), 1, conv_ws()),
     r"stride must be >= 1, got \(0, 1\)"),
    (lambda: _core.maxpool2d_forward(f32(1, 1, 2, 2), np.zeros((1, 1, 2, 2), np.int32), f32(1, 1, 4, 4), (0, 2), (2, 2), (0, 0)),
     r"kernel_size must be >= 1, got \(0, 2\)"),
    (lambda: _core.avgpool2d_forward(f32(1, 1, 2, 2), f32(1, 1, 4, 4), (2, 2), (2, -3), (0, 0)), r"stride must be >= 1, got \(2, -3\)"),
    (lambda: _core.avgpool2d_forward(f32(1, 1, 3, 3), f32(1, 1, 4, 4), (2, 2), (2, 2), (0, 2)), r"padding must be at most half"),
    (lambda: _core.lrn_forward(f32(1, 2, 2, 2), f32(1, 2, 2, 2), f32(1, 2, 2, 2), 0, 1e-3, 0.75, 1.0), r"size must be >= 1, got 0"),
    (lambda: _core.lrn_forward(f32(1, 2, 2, 2), f32(1, 2, 2, 2), f32(1, 2, 2, 2), 3, 1e-3, 0.75, 0.0), r"needs k > 0"),
    (lambda: ops.avgpool2d_forward(f32(1, 1, 4, 4), 0, 1), r"kernel_size must be >= 1"),
    # ops computes the output shape before _core checks: a zero stride must not divide by zero
    (lambda: ops.maxpool2d_forward(f32(1, 1, 4, 4), 2, 0), r"stride must be >= 1"),
    (lambda: ops.avgpool2d_forward(f32(1, 1, 4, 4), 2, (1, 0)), r"stride must be >= 1"),
], ids=lambda v: "" if callable(v) else v[:30])
def test_direct_calls_reject_bad_geometry(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------------------------ groups
def test_groups():
    with pytest.raises(ValueError, match=r"in_channels 3 and out_channels 4 must be divisible by groups=2"):
        Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match=r"in_channels 4 and out_channels 3 must be divisible by groups=2"):
        Conv2d(4, 3, 3, groups=2)
    with pytest.raises(ValueError, match=r"groups must be >= 1"):
        Conv2d(4, 4, 3, groups=0)
    with pytest.raises(ValueError, match=r"channels 3 in and 4 out must be divisible by groups=2"):
        ops.conv2d_forward(f32(1, 3, 4, 4), f32(4, 1, 2, 2), None, 1, 0, 2)
    with pytest.raises(ValueError, match=r"channels 4 in and 3 out must be divisible by groups=2"):
        ops.conv2d_forward(f32(1, 4, 4, 4), f32(3, 2, 2, 2), None, 1, 0, 2)
    with pytest.raises(ValueError, match=r"x \(1, 4, 4, 4\) has 4 channels but weight \(4, 1, 2, 2\) with groups=2 expects 2"):
        ops.conv2d_forward(f32(1, 4, 4, 4), f32(4, 1, 2, 2), None, 1, 0, 2)
    with pytest.raises(ValueError, match=r"groups must be >= 1, got 0"):
        ops.conv2d_forward(f32(1, 4, 4, 4), f32(4, 1, 2, 2), None, 1, 0, 0)


# ------------------------------------------------------------------ labels
def test_labels():
    crit = SoftmaxCrossEntropy()
    x = f32(2, 3)
    with pytest.raises(ValueError, match=r"label 3 at index 1 is outside \[0, 3\)"):
        crit(x, [0, 3])
    with pytest.raises(ValueError, match=r"label -1 at index 0 is outside \[0, 3\)"):
        crit(x, [-1, 0])
    with pytest.raises(ValueError, match=r"labels have shape \(3,\), expected \(2,\) to match logits \(2, 3\)"):
        crit(x, [0, 1, 2])
    with pytest.raises(ValueError, match=r"labels have shape \(2, 1\), expected \(2,\)"):
        crit(x, [[0], [1]])
    with pytest.raises(TypeError, match=r"labels must be integers, got dtype float64"):
        crit(x, np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match=r"labels must be integers, got dtype bool"):
        crit(x, np.array([True, False]))
    # _core / ops: int64 only, shape checked
    with pytest.raises(TypeError, match=r"labels must have dtype int64, got int32"):
        ops.softmax_xent_forward(x, np.array([0, 1], np.int32))
    with pytest.raises(ValueError, match=r"labels of shape \(3,\) do not match logits \(2, 3\)"):
        ops.softmax_xent_forward(x, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"label 7 at index 0 is outside \[0, 3\)"):
        ops.softmax_xent_backward(f32(2, 3), np.array([7, 0]))
    with pytest.raises(ValueError, match=r"labels has shape \(1,\), expected \(2,\)"):
        ops.softmax_xent_backward(f32(2, 3), np.array([1]))
    with pytest.raises(ValueError, match=r"logits must be non-empty, got shape \(2, 0\)"):
        ops.softmax_xent_forward(np.zeros((2, 0), F32), np.array([0, 0]))


# ------------------------------------------------------------------ backward before forward / bad dy
@pytest.mark.parametrize("i", range(len(LAYER_IDS)), ids=LAYER_IDS)
def test_backward_before_forward(i):
    layer, x = layers_4d()[i]
    with pytest.raises(ValueError, match=r"backward called before any forward"):
        layer.backward(x)


def test_loss_backward_before_forward():
    with pytest.raises(ValueError, match=r"SoftmaxCrossEntropy\(\): backward called before any forward"):
        SoftmaxCrossEntropy().backward()


@pytest.mark.parametrize("i", range(len(LAYER_IDS)), ids=LAYER_IDS)
def test_dy_shape_must_match_last_output(i):
    layer, x = layers_4d()[i]
    y = layer(x)
    bad = np.ones((y.shape[0] + 1,) + y.shape[1:], F32)
    shape_re = r"\(" + r", ".join(map(str, bad.shape)) + r"\)"
    want_re = r"\(" + r", ".join(map(str, y.shape)) + r"\)"
    with pytest.raises(ValueError, match=r"dy has shape " + shape_re + r", expected " + want_re):
        layer.backward(bad)
    with pytest.raises(TypeError, match=r"dy must have dtype float32, got float64"):
        layer.backward(np.ones(y.shape))


# ------------------------------------------------------------------ dtypes
@pytest.mark.parametrize("i", range(len(LAYER_IDS)), ids=LAYER_IDS)
def test_float64_input_is_type_error(i):
    layer, x = layers_4d()[i]
    with pytest.raises(TypeError, match=r"x must have dtype float32, got float64"):
        layer(x.astype(np.float64))
    with pytest.raises(TypeError, match=r"x must be a numpy float32 array, got list"):
        layer(x.tolist())


def test_core_dtype_errors():
    with pytest.raises(TypeError, match=r"x must have dtype float32, got float64"):
        _core.conv2d_forward(f32(1, 1, 3, 3), np.ones((1, 1, 4, 4)), f32(1, 1, 2, 2), None, (1, 1), (0, 0), 1, conv_ws())
    with pytest.raises(TypeError, match=r"weight must have dtype float32, got float16"):
        _core.linear_forward(f32(2, 3), f32(2, 4), np.ones((3, 4), np.float16), None)
    with pytest.raises(TypeError, match=r"argmax must have dtype int32, got int64"):
        _core.maxpool2d_forward(f32(1, 1, 2, 2), np.zeros((1, 1, 2, 2), np.int64), f32(1, 1, 4, 4), (2, 2), (2, 2), (0, 0))
    with pytest.raises(TypeError, match=r"mask must have dtype uint8, got bool"):
        _core.dropout_forward(f32(4), np.zeros(4, bool), f32(4), 0.5, 1)
    with pytest.raises(TypeError):
        ops.conv2d_forward(f32(1, 1, 4, 4).astype(np.float64), f32(1, 1, 2, 2))


# ------------------------------------------------------------------ non-contiguous input
@pytest.mark.parametrize("i", range(len(LAYER_IDS)), ids=LAYER_IDS)
def test_non_contiguous_input_is_copied(i):
    layer, x = layers_4d()[i]
    if isinstance(layer, Dropout):
        layer.eval()
    big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), F32)
    big[..., ::2] = x
    strided = big[..., ::2]
    fortran = np.asfortranarray(x)
    assert not strided.flags.c_contiguous and not fortran.flags.c_contiguous
    y = layer(x).copy()
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(F32)
    dx = layer.backward(dy).copy()
    for xx in (strided, fortran):
        np.testing.assert_array_equal(layer(xx), y)
        dyn = np.asfortranarray(dy)
        np.testing.assert_array_equal(layer.backward(dyn), dx)


def test_core_rejects_non_contiguous():
    x = np.zeros((1, 1, 4, 8), F32)[..., ::2]
    with pytest.raises(ValueError, match=r"x must be C-contiguous"):
        _core.conv2d_forward(f32(1, 1, 3, 3), x, f32(1, 1, 2, 2), None, (1, 1), (0, 0), 1, conv_ws())
    with pytest.raises(ValueError, match=r"y must be C-contiguous"):
        _core.relu_forward(np.zeros((4, 8), F32)[:, ::2], f32(4, 4))


# ------------------------------------------------------------------ read-only outputs
RO_CASES = {
    "conv2d_forward y": lambda: _core.conv2d_forward(readonly(f32(1, 1, 3, 3)), f32(1, 1, 4, 4), f32(1, 1, 2, 2), None, (1, 1), (0, 0), 1, conv_ws()),
    "conv2d_backward dw": lambda: _core.conv2d_backward(None, readonly(f32(1, 1, 2, 2)), None, f32(1, 1, 3, 3), f32(1, 1, 4, 4), f32(1, 1, 2, 2), (1, 1), (0, 0), 1, conv_ws()),
    "conv2d_backward dx": lambda: _core.conv2d_backward(readonly(f32(1, 1, 4, 4)), None, None, f32(1, 1, 3, 3), f32(1, 1, 4, 4), f32(1, 1, 2, 2), (1, 1), (0, 0), 1, conv_ws()),
    "conv2d_forward workspace": lambda: _core.conv2d_forward(f32(1, 1, 3, 3), f32(1, 1, 4, 4), f32(1, 1, 2, 2), None, (1, 1), (0, 0), 1, readonly(conv_ws())),
    "local2d_forward y": lambda: _core.local2d_forward(readonly(f32(1, 1, 3, 3)), f32(1, 1, 4, 4), f32(3, 3, 1, 1, 2, 2), None, (1, 1), (0, 0), conv_ws()),
    "local2d_backward db": lambda: _core.local2d_backward(None, None, readonly(f32(1, 3, 3)), f32(1, 1, 3, 3), f32(1, 1, 4, 4), f32(3, 3, 1, 1, 2, 2), (1, 1), (0, 0), conv_ws()),
    "linear_forward y": lambda: _core.linear_forward(readonly(f32(2, 3)), f32(2, 4), f32(3, 4), None),
    "linear_backward db": lambda: _core.linear_backward(None, None, readonly(f32(3)), f32(2, 3), f32(2, 4), f32(3, 4)),
    "maxpool2d_forward argmax": lambda: _core.maxpool2d_forward(f32(1, 1, 2, 2), readonly(np.zeros((1, 1, 2, 2), np.int32)), f32(1, 1, 4, 4), (2, 2), (2, 2), (0, 0)),
    "maxpool2d_backward dx": lambda: _core.maxpool2d_backward(readonly(f32(1, 1, 4, 4)), f32(1, 1, 2, 2), np.zeros((1, 1, 2, 2), np.int32), (2, 2), (2, 2), (0, 0)),
    "avgpool2d_forward y": lambda: _core.avgpool2d_forward(readonly(f32(1, 1, 2, 2)), f32(1, 1, 4, 4), (2, 2), (2, 2), (0, 0)),
    "lrn_forward scale": lambda: _core.lrn_forward(f32(1, 2, 2, 2), readonly(f32(1, 2, 2, 2)), f32(1, 2, 2, 2), 3, 1e-3, 0.75, 1.0),
    "relu_forward y": lambda: _core.relu_forward(readonly(f32(5)), f32(5)),
    "tanh_backward dx": lambda: _core.tanh_backward(readonly(f32(5)), f32(5), f32(5)),
    "dropout_forward mask": lambda: _core.dropout_forward(f32(5), readonly(np.zeros(5, np.uint8)), f32(5), 0.5, 1),
    "softmax_forward y": lambda: _core.softmax_forward(readonly(f32(2, 3)), f32(2, 3)),
    "softmax_xent_forward prob": lambda: _core.softmax_xent_forward(readonly(f32(2, 3)), f32(2, 3), np.array([0, 1])),
    "sgd_step w": lambda: _core.sgd_step(readonly(f32(4)), f32(4), f32(4), np.array([0, 4]), np.ones(1, F32), np.ones(1, F32), 0.1, 0.9, 0.0, False, 0),
    "sgd_step velocity": lambda: _core.sgd_step(f32(4), readonly(f32(4)), f32(4), np.array([0, 4]), np.ones(1, F32), np.ones(1, F32), 0.1, 0.9, 0.0, False, 0),
}


@pytest.mark.parametrize("name", RO_CASES)
def test_read_only_output_raises(name):
    with pytest.raises(ValueError, match=r"(is read-only|workspace holds)"):
        RO_CASES[name]()


# ------------------------------------------------------------------ workspace
def test_workspace_dtype_and_size():
    x, w, y = f32(2, 3, 5, 5), f32(4, 3, 3, 3), f32(2, 4, 3, 3)
    need = _core.conv2d_slot_floats(x, w, (1, 1), (0, 0), 1)
    with pytest.raises(TypeError, match=r"workspace must have dtype float32, got float64"):
        _core.conv2d_forward(y, x, w, None, (1, 1), (0, 0), 1, np.zeros(need))
    with pytest.raises(ValueError, match=rf"workspace holds {need - 1} floats, needs at least {need}"):
        _core.conv2d_forward(y, x, w, None, (1, 1), (0, 0), 1, np.zeros(need - 1, F32))
    with pytest.raises(ValueError, match=rf"needs at least {need}"):  # backward reuses the same room
        _core.conv2d_backward(None, np.zeros_like(w), None, y, x, w, (1, 1), (0, 0), 1, np.zeros(need - 1, F32))
    wl = f32(3, 3, 2, 3, 3, 3)
    needl = _core.local2d_slot_floats(x, wl, (1, 1), (0, 0))
    with pytest.raises(TypeError, match=r"workspace must have dtype float32, got int32"):
        _core.local2d_forward(f32(2, 2, 3, 3), x, wl, None, (1, 1), (0, 0), np.zeros(needl, np.int32))
    with pytest.raises(ValueError, match=rf"workspace holds 1 floats, needs at least {needl}"):
        _core.local2d_backward(f32(*x.shape), None, None, f32(2, 2, 3, 3), x, wl, (1, 1), (0, 0), np.zeros(1, F32))


# ------------------------------------------------------------------ output shapes in _core
def test_core_checks_output_shapes():
    with pytest.raises(ValueError, match=r"y has shape \(2, 4, 4, 3\), expected \(2, 4, 3, 3\)"):
        _core.conv2d_forward(f32(2, 4, 4, 3), f32(2, 3, 5, 5), f32(4, 3, 3, 3), None, (1, 1), (0, 0), 1, conv_ws())
    with pytest.raises(ValueError, match=r"dy has shape \(2, 4, 3, 2\), expected \(2, 4, 3, 3\)"):
        _core.conv2d_backward(None, f32(4, 3, 3, 3), None, f32(2, 4, 3, 2), f32(2, 3, 5, 5), f32(4, 3, 3, 3), (1, 1), (0, 0), 1, conv_ws())
    with pytest.raises(ValueError, match=r"dw has shape \(4, 3, 3, 2\), expected \(4, 3, 3, 3\)"):
        _core.conv2d_backward(None, f32(4, 3, 3, 2), None, f32(2, 4, 3, 3), f32(2, 3, 5, 5), f32(4, 3, 3, 3), (1, 1), (0, 0), 1, conv_ws())
    with pytest.raises(ValueError, match=r"dy has shape \(5,\), expected \(4,\)"):
        _core.relu_backward(f32(4), f32(5), f32(4))
    with pytest.raises(ValueError, match=r"mask has shape \(3,\), expected \(4,\)"):
        _core.dropout_forward(f32(4), np.zeros(3, np.uint8), f32(4), 0.5, 1)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\), got 1.0"):
        _core.dropout_forward(f32(4), np.zeros(4, np.uint8), f32(4), 1.0, 1)
    with pytest.raises(ValueError, match=r"scale has shape \(1, 2, 2, 3\), expected \(1, 2, 2, 2\)"):
        _core.lrn_backward(f32(1, 2, 2, 2), f32(1, 2, 2, 2), f32(1, 2, 2, 2), f32(1, 2, 2, 2), f32(1, 2, 2, 3), 3, 1e-3, 0.75)


# ------------------------------------------------------------------ maxpool argmax
def test_maxpool_backward_argmax_out_of_range():
    dy = f32(1, 1, 2, 2)
    for bad in (16, -1, 2**31 - 1):
        am = np.zeros((1, 1, 2, 2), np.int32)
        am[0, 0, 1, 0] = bad
        with pytest.raises(ValueError, match=r"argmax holds an index outside the input plane"):
            _core.maxpool2d_backward(f32(1, 1, 4, 4), dy, am, (2, 2), (2, 2), (0, 0))
    with pytest.raises(ValueError, match=r"argmax has shape \(1, 1, 2, 3\), expected \(1, 1, 2, 2\)"):
        _core.maxpool2d_backward(f32(1, 1, 4, 4), dy, np.zeros((1, 1, 2, 3), np.int32), (2, 2), (2, 2), (0, 0))
    am = np.full((1, 1, 2, 2), 15, np.int32)      # in range (last element) is accepted
    dx = ops.maxpool2d_backward(dy, am, (1, 1, 4, 4), 2, 2)
    assert dx[0, 0, 3, 3] == pytest.approx(dy.sum()) and dx.sum() == pytest.approx(dy.sum())


# ------------------------------------------------------------------ sgd_step
def _sgd(off=(0, 4), lrm=(1.0,), wdm=(1.0,), n=4, rule=0, w=None):
    w = f32(n) if w is None else w
    _core.sgd_step(w, np.zeros(n, F32), f32(n), np.asarray(off, np.int64), np.asarray(lrm, F32),
                   np.asarray(wdm, F32), 0.1, 0.9, 1e-3, False, rule)


@pytest.mark.parametrize("kw,exc,match", [
    (dict(off=(0, 5)), ValueError, r"offsets must be non-decreasing within \[0, 4\]"),
    (dict(off=(0, 3, 2), lrm=(1, 1), wdm=(1, 1)), ValueError, r"offsets must be non-decreasing"),
    (dict(off=(-1, 4)), ValueError, r"offsets must be non-decreasing within \[0, 4\]"),
    (dict(off=(), lrm=(), wdm=()), ValueError, r"offsets must hold at least one entry"),
    (dict(off=(0, 2, 4)), ValueError, r"lr_mult has shape \(1,\), expected \(2,\)"),
    (dict(off=(0, 4), wdm=(1, 1)), ValueError, r"wd_mult has shape \(2,\), expected \(1,\)"),
    (dict(rule=2), ValueError, r"rule must be 0 \(torch\) or 1 \(paper\)"),
    (dict(w=f32(2, 2)), ValueError, r"w must be 1-d, got shape \(2, 2\)"),
], ids=["past-end", "decreasing", "negative", "empty", "lr_mult-len", "wd_mult-len", "rule", "w-2d"])
def test_sgd_bad_arguments(kw, exc, match):
    with pytest.raises(exc, match=match):
        _sgd(**kw)


def test_sgd_dtype_and_shape_errors():
    with pytest.raises(TypeError, match=r"offsets must have dtype int64, got int32"):
        _core.sgd_step(f32(4), f32(4), f32(4), np.array([0, 4], np.int32), np.ones(1, F32), np.ones(1, F32), 0.1, 0.9, 0.0, False, 0)
    with pytest.raises(ValueError, match=r"grad has shape \(3,\), expected \(4,\)"):
        _core.sgd_step(f32(4), f32(4), f32(3), np.array([0, 4]), np.ones(1, F32), np.ones(1, F32), 0.1, 0.9, 0.0, False, 0)
    with pytest.raises(TypeError, match=r"lr_mult must have dtype float32, got float64"):
        _core.sgd_step(f32(4), f32(4), f32(4), np.array([0, 4]), np.ones(1), np.ones(1, F32), 0.1, 0.9, 0.0, False, 0)


# ------------------------------------------------------------------ fuzz
def _expect_valid(H, W, k, s, p, C=1):
    """The kernels reject empty images (C, H or W of 0) and impossible windows."""
    return min(C, H, W) >= 1 and min(k) >= 1 and min(s) >= 1 and min(p) >= 0 and k[0] <= H + 2 * p[0] and k[1] <= W + 2 * p[1]


def _geometry(r):
    """Mostly plausible geometry; each field is out of range with a small probability."""
    def pick(lo, hi, bad_lo, bad_hi):
        return int(r.integers(bad_lo, bad_hi)) if r.random() < 0.1 else int(r.integers(lo, hi))
    N, C, H, W = pick(1, 3, 0, 1), pick(1, 4, 0, 1), pick(1, 7, 0, 1), pick(1, 7, 0, 1)
    p = (pick(0, 3, -2, 0), pick(0, 3, -2, 0))
    k = (pick(1, max(2, H + 2 * max(p[0], 0) + 1), 0, 9), pick(1, max(2, W + 2 * max(p[1], 0) + 1), 0, 9))
    s = (pick(1, 4, -1, 1), pick(1, 4, -1, 1))
    return N, C, H, W, k, s, p


def test_fuzz_conv2d():
    r = np.random.default_rng(7)
    ok = 0
    for trial in range(300):
        N, C, H, W, k, s, p = _geometry(r)
        groups = int(r.integers(1, 5)) if r.random() < 0.9 else int(r.integers(-1, 1))
        C = C * max(groups, 1) if r.random() < 0.7 else C
        OC = int(r.integers(0, 3)) * max(groups, 1) if r.random() < 0.8 else int(r.integers(0, 5))
        Cw = C // groups if groups > 0 and r.random() < 0.8 else int(r.integers(0, 4))
        x = r.standard_normal((N, C, H, W)).astype(F32)
        w = r.standard_normal((OC, Cw, *k)).astype(F32)
        b = r.standard_normal(OC).astype(F32) if r.random() < 0.5 else None
        valid = (_expect_valid(H, W, k, s, p, C) and groups >= 1 and C % groups == 0 and OC % groups == 0
                 and Cw * groups == C)
        oshape = (N, OC, max(ref.out_size(H, k[0], max(s[0], 1), p[0]), 0), max(ref.out_size(W, k[1], max(s[1], 1), p[1]), 0))
        ws = np.zeros(4096, F32)
        if not valid:
            with pytest.raises((ValueError, TypeError)):
                _core.conv2d_forward(np.zeros(oshape, F32), x, w, b, s, p, groups, ws)
            with pytest.raises((ValueError, TypeError)):
                _core.conv2d_backward(np.zeros_like(x), np.zeros_like(w), None, np.zeros(oshape, F32), x, w, s, p, groups, ws)
            continue
        ok += 1
        ws = np.full(_core.conv2d_slot_floats(x, w, s, p, groups) * 3, np.nan, F32)
        y = np.full(oshape, np.nan, F32)
        _core.conv2d_forward(y, x, w, b, s, p, groups, ws)
        assert_close(y, ref.conv2d_forward(x, w, b, s, p, groups), msg=f"trial {trial}")
        dy = r.standard_normal(oshape).astype(F32)
        dx, dw = np.full(x.shape, np.nan, F32), np.zeros_like(w)
        _core.conv2d_backward(dx, dw, None, dy, x, w, s, p, groups, ws)
        rdx, rdw, _ = ref.conv2d_backward(dy, x, w, s, p, groups)
        assert_close(dx, rdx, msg=f"trial {trial}")
        assert_close(dw, rdw, msg=f"trial {trial}")
        with pytest.raises(ValueError):            # a wrong output shape is always rejected
            _core.conv2d_forward(np.zeros(oshape[:3] + (oshape[3] + 1,), F32), x, w, b, s, p, groups, ws)
    assert ok > 30


def test_fuzz_local2d():
    r = np.random.default_rng(8)
    ok = 0
    for trial in range(300):
        N, C, H, W, k, s, p = _geometry(r)
        OC = int(r.integers(0, 4))
        valid = _expect_valid(H, W, k, s, p, C)
        OH = max(ref.out_size(H, k[0], max(s[0], 1), p[0]), 0)
        OW = max(ref.out_size(W, k[1], max(s[1], 1), p[1]), 0)
        wshape = [OH, OW, OC, C, *k]
        if r.random() < 0.2:                       # a weight of the wrong shape
            j = int(r.integers(0, 4))
            wshape[j] += 1
            valid = False
        x = r.standard_normal((N, C, H, W)).astype(F32)
        w = r.standard_normal(wshape).astype(F32)
        b = r.standard_normal((OC, OH, OW)).astype(F32) if r.random() < 0.5 else None
        if not valid:
            with pytest.raises((ValueError, TypeError)):
                _core.local2d_forward(np.zeros((N, OC, OH, OW), F32), x, w, b, s, p, np.zeros(1 << 14, F32))
            with pytest.raises((ValueError, TypeError)):
                _core.local2d_backward(None, np.zeros_like(w), None, np.zeros((N, OC, OH, OW), F32), x, w, s, p, np.zeros(1 << 14, F32))
            continue
        ok += 1
        ws = np.full(_core.local2d_slot_floats(x, w, s, p) * int(r.integers(1, 3)), np.nan, F32)
        y = np.full((N, OC, OH, OW), np.nan, F32)
        _core.local2d_forward(y, x, w, b, s, p, ws)
        assert_close(y, ref.local2d_forward(x, w, b, s, p), msg=f"trial {trial}")
        dy = r.standard_normal(y.shape).astype(F32)
        dx, dw = np.full(x.shape, np.nan, F32), np.zeros_like(w)
        _core.local2d_backward(dx, dw, None, dy, x, w, s, p, ws)
        rdx, rdw, _ = ref.local2d_backward(dy, x, w, s, p)
        assert_close(dx, rdx, msg=f"trial {trial}")
        assert_close(dw, rdw, msg=f"trial {trial}")
    assert ok > 30


def test_fuzz_pool():
    r = np.random.default_rng(9)
    ok = 0
    for trial in range(400):
        N, C, H, W, k, s, p = _geometry(r)
        valid = _expect_valid(H, W, k, s, p, C) and 2 * p[0] <= k[0] and 2 * p[1] <= k[1]
        oshape = (N, C, max(ref.out_size(H, k[0], max(s[0], 1), p[0]), 0), max(ref.out_size(W, k[1], max(s[1], 1), p[1]), 0))
        x = r.standard_normal((N, C, H, W)).astype(F32)
        y, am = np.full(oshape, np.nan, F32), np.full(oshape, -1, np.int32)
        if not valid:
            with pytest.raises((ValueError, TypeError)):
                _core.maxpool2d_forward(y, am, x, k, s, p)
            with pytest.raises((ValueError, TypeError)):
                _core.avgpool2d_forward(y, x, k, s, p)
            with pytest.raises((ValueError, TypeError)):
                _core.avgpool2d_backward(np.zeros_like(x), np.zeros(oshape, F32), k, s, p)
            with pytest.raises((ValueError, TypeError)):
                _core.maxpool2d_backward(np.zeros_like(x), np.zeros(oshape, F32), np.zeros(oshape, np.int32), k, s, p)
            continue
        ok += 1
        _core.avgpool2d_forward(y, x, k, s, p)
        assert_close(y, ref.avgpool2d_forward(x, k, s, p), msg=f"trial {trial}")
        dy = r.standard_normal(oshape).astype(F32)
        dx = np.full(x.shape, np.nan, F32)
        _core.avgpool2d_backward(dx, dy, k, s, p)
        assert_close(dx, ref.avgpool2d_backward(dy, x.shape, k, s, p), msg=f"trial {trial}")
        _core.maxpool2d_forward(y, am, x, k, s, p)
        if H == 0 or W == 0:
            # every window lies in the padding: -inf out; its argmax is not a valid index, and
            # backward must refuse it rather than write outside dx
            assert np.isneginf(y).all()
            if y.size:
                with pytest.raises(ValueError, match="argmax"):
                    _core.maxpool2d_backward(dx, dy, am, k, s, p)
            continue
        assert_close(y, ref.maxpool2d_forward(x, k, s, p)[0], msg=f"trial {trial}")
        _core.maxpool2d_backward(dx, dy, am, k, s, p)
        assert_close(dx, ref.maxpool2d_backward(dy, x, k, s, p), msg=f"trial {trial}")
    assert ok > 50


def test_huge_geometry_values_are_rejected():
    """Values that do not fit the kernels' int are refused by the binding (TypeError), not wrapped."""
    with pytest.raises((TypeError, ValueError)):
        _core.maxpool2d_forward(f32(1, 1, 2, 2), np.zeros((1, 1, 2, 2), np.int32), f32(1, 1, 4, 4), (2, 2), (2**32 + 2, 2), (0, 0))
    with pytest.raises((TypeError, ValueError)):
        ops.conv2d_forward(f32(1, 1, 4, 4), f32(1, 1, 2, 2), None, 2**40)


def test_local2d_empty_channels_no_crash():
    """C=0 and OC=0 once made local2d_slot_floats 0 and chunk() divide by it (SIGFPE). Run in a
    child process so that a crash is reported as a failure, not a dead test run."""
    code = ("import numpy as np; from pyconvnet import _core\n"
            "x = np.ones((1, 0, 3, 3), np.float32); w = np.ones((1, 1, 0, 0, 3, 3), np.float32)\n"
            "y = np.empty((1, 0, 1, 1), np.float32)\n"
            "try:\n"
            "    _core.local2d_forward(y, x, w, None, (1, 1), (0, 0), np.ones(16, np.float32))\n"
            "    _core.local2d_backward(np.empty_like(x), np.empty_like(w), None, y, x, w, (1, 1), (0, 0), np.ones(16, np.float32))\n"
            "except ValueError:\n"
            "    pass\n")
    res = run_python(code, timeout=60)
    assert res.returncode == 0, f"child died with {res.returncode}: {res.stderr[-500:]}"


def test_softmax_empty_rows():
    """K = 0: the binding refuses rather than read x[0] of an empty row."""
    with pytest.raises(ValueError, match=r"at least one column, got shape \(2, 0\)"):
        _core.softmax_forward(np.empty((2, 0), F32), np.empty((2, 0), F32))
    with pytest.raises(ValueError, match="at least one column"):
        _core.softmax_backward(np.empty((2, 0), F32), np.empty((2, 0), F32), np.empty((2, 0), F32))


def test_unpickled_and_byteswapped_float32():
    """A float32 array that crossed a process boundary (as DataLoader workers send batches) has an
    equal but distinct dtype object: accepted. Big-endian float32 is refused with its dtype named."""
    import pickle
    x = pickle.loads(pickle.dumps(np.linspace(-1, 1, 32, dtype=F32).reshape(2, 1, 4, 4)))
    np.testing.assert_array_equal(ops.relu_forward(x), np.maximum(x, 0))
    with pytest.raises(TypeError, match=">f4"):
        _core.relu_forward(np.empty((2,), F32), np.ones(2, np.dtype(">f4")))
