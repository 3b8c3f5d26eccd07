"""Locally connected 2d (unshared weights): _core, ops and LocallyConnected2d against the oracle,
the gradient rule, and workspace chunking / thread counts."""
import numpy as np
import pytest

import pyconvnet
from pyconvnet import _core, ops
from pyconvnet.nn import LocallyConnected2d

import reference as ref
from reference import assert_close, nan_like, randn

# N, C, H, W, OC, kernel, stride, padding
CASES = [
    (2, 3, 5, 6, 4, (3, 3), (1, 1), (0, 0)),
    (3, 2, 7, 6, 3, (3, 2), (2, 2), (1, 1)),      # stride 2, padding, non-square
    (1, 1, 5, 4, 2, (2, 3), (2, 1), (1, 0)),      # N=1, C=1
    (5, 2, 4, 4, 3, (1, 1), (1, 1), (0, 0)),      # 1x1
    (2, 3, 3, 3, 2, (5, 5), (1, 1), (1, 1)),      # kernel == padded input
    (4, 2, 6, 5, 1, (3, 3), (3, 2), (2, 1)),      # OC=1, big stride
]
IDS = ["N{}C{}H{}W{}OC{}k{}s{}p{}".format(*c).replace(" ", "") for c in CASES]


def make(rng, case, bias=True):
    N, C, H, W, OC, k, s, p = case
    OH, OW = ref.out_size(H, k[0], s[0], p[0]), ref.out_size(W, k[1], s[1], p[1])
    x = randn(rng, N, C, H, W)
    w = randn(rng, OH, OW, OC, C, *k)
    b = randn(rng, OC, OH, OW) if bias else None
    return x, w, b, s, p


def ws_for(x, w, s, p, images):
    return nan_like(_core.local2d_slot_floats(x, w, s, p) * images)


@pytest.mark.parametrize("images", [1, 2, 100])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_core_forward(rng, case, images):
    x, w, b, s, p = make(rng, case)
    for bias in (b, None):
        y = nan_like((x.shape[0], w.shape[2], w.shape[0], w.shape[1]))
        _core.local2d_forward(y, x, w, bias, s, p, ws_for(x, w, s, p, images))
        assert_close(y, ref.local2d_forward(x, w, bias, s, p))


@pytest.mark.parametrize("images", [1, 2, 100])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_core_backward_accumulates_params_overwrites_dx(rng, case, images):
    x, w, b, s, p = make(rng, case)
    dy = randn(rng, x.shape[0], w.shape[2], w.shape[0], w.shape[1])
    rdx, rdw, rdb = ref.local2d_backward(dy, x, w, s, p)
    dx, dw0, db0 = nan_like(x.shape), randn(rng, *w.shape), randn(rng, *b.shape)
    dw, db = dw0.copy(), db0.copy()
    for k in (1, 2):
        _core.local2d_backward(dx, dw, db, dy, x, w, s, p, ws_for(x, w, s, p, images))
        assert_close(dx, rdx, msg=f"dx call {k}")
        assert_close(dw, dw0 + k * rdw, msg=f"dw call {k}")
        assert_close(db, db0 + k * rdb, msg=f"db call {k}")
        dx.fill(-7.0)


@pytest.mark.parametrize("which", ["dx", "dw", "db"])
def test_core_backward_subsets(rng, which):
    x, w, b, s, p = make(rng, CASES[1])
    dy = randn(rng, x.shape[0], w.shape[2], w.shape[0], w.shape[1])
    want = dict(zip(("dx", "dw", "db"), ref.local2d_backward(dy, x, w, s, p)))
    got = {"dx": nan_like(x.shape) if which == "dx" else None,
           "dw": np.zeros_like(w) if which == "dw" else None,
           "db": np.zeros_like(b) if which == "db" else None}
    _core.local2d_backward(got["dx"], got["dw"], got["db"], dy, x, w, s, p, ws_for(x, w, s, p, 2))
    assert_close(got[which], want[which])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_layer(rng, case):
    N, C, H, W, OC, k, s, p = case
    layer = LocallyConnected2d(C, OC, (H, W), k, stride=s, padding=p)
    layer.bias = randn(rng, *layer.bias.shape)
    x = randn(rng, N, C, H, W)
    y = layer(x)
    assert y.shape == (N, OC, *layer.output_size)
    assert_close(y, ref.local2d_forward(x, layer.weight, layer.bias, s, p))
    dy = randn(rng, *y.shape)
    rdx, rdw, rdb = ref.local2d_backward(dy, x, layer.weight, s, p)
    for k in (1, 2):
        assert_close(layer.backward(dy), rdx)
        assert_close(layer.weight_grad, k * rdw)
        assert_close(layer.bias_grad, k * rdb)


def test_layer_no_bias(rng):
    layer = LocallyConnected2d(2, 3, (5, 4), 3, stride=1, padding=1, bias=False)
    x = randn(rng, 2, 2, 5, 4)
    assert_close(layer(x), ref.local2d_forward(x, layer.weight, None, 1, 1))
    layer.need_input_grad = False
    assert layer.backward(randn(rng, 2, 3, 5, 4)) is None


def _run_ops(x, w, b, dy, s, p):
    y = ops.local2d_forward(x, w, b, s, p)
    dw, db = np.zeros_like(w), np.zeros_like(b)
    dx = ops.local2d_backward(dy, x, w, dw, db, s, p)
    return y, dx, dw, db


@pytest.mark.parametrize("case", CASES[:3] + CASES[5:], ids=IDS[:3] + IDS[5:])
def test_workspace_limit_and_threads_give_same_results(rng, case, restore_settings):
    x, w, b, s, p = make(rng, case)
    x = np.concatenate([x, randn(rng, 4, *x.shape[1:])])      # 5+ images: several chunks
    dy = randn(rng, x.shape[0], w.shape[2], w.shape[0], w.shape[1])
    pyconvnet.set_num_threads(2)
    base = _run_ops(x, w, b, dy, s, p)
    want = (ref.local2d_forward(x, w, b, s, p), *ref.local2d_backward(dy, x, w, s, p))
    for got, r in zip(base, want):
        assert_close(got, r)
    slot_bytes = 4 * _core.local2d_slot_floats(x, w, s, p)
    for threads, limit in [(2, 4), (2, 3 * slot_bytes), (1, None), (1, 2 * slot_bytes)]:
        pyconvnet.set_num_threads(threads)
        pyconvnet.set_workspace_limit(limit or 256 << 20)
        for name, got, b0 in zip(("y", "dx", "dw", "db"), _run_ops(x, w, b, dy, s, p), base):
            np.testing.assert_allclose(got, b0, rtol=1e-5, atol=1e-5 * np.abs(b0).max(),
                                       err_msg=f"{name} threads={threads} limit={limit}")


def test_matches_conv_when_weights_are_shared(rng):
    """Tiling one conv filter bank over every location must reproduce Conv2d."""
    x = randn(rng, 2, 3, 6, 5)
    wc = randn(rng, 4, 3, 3, 2)
    y_conv = ops.conv2d_forward(x, wc, None, 2, 1)
    OH, OW = y_conv.shape[2:]
    wl = np.ascontiguousarray(np.broadcast_to(wc, (OH, OW) + wc.shape))
    assert_close(ops.local2d_forward(x, wl, None, 2, 1), y_conv.astype(np.float64))
