"""Dropout: keep statistics, scaling, eval identity, reproducibility from the seed, backward mask."""
import numpy as np
import pytest

import pyconvnet
from pyconvnet import _core, ops
from pyconvnet.nn import Dropout

import reference as ref
from reference import assert_close, nan_like, randn

N_BIG = 1 << 20


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_keep_fraction_and_scaling(p):
    x = np.full(N_BIG, 1.5, np.float32)
    y, mask = nan_like(N_BIG), np.full(N_BIG, 7, np.uint8)
    _core.dropout_forward(y, mask, x, p, 12345)
    assert set(np.unique(mask)) <= {0, 1}
    kept = mask.astype(bool)
    # Binomial(n, 1-p): the fraction is within 6 standard deviations (false alarm ~ 2e-9).
    sd = np.sqrt(p * (1 - p) / N_BIG)
    assert abs(kept.mean() - (1 - p)) < 6 * sd
    np.testing.assert_allclose(y[kept], np.float32(1.5) / np.float32(1 - p), rtol=1e-6)
    assert (y[~kept] == 0).all()
    # E[y] = x (inverted dropout)
    assert abs(y.mean() - 1.5) < 6 * 1.5 * np.sqrt(p / (1 - p) / N_BIG)


def test_mask_looks_independent():
    """No correlation between neighbouring elements or with the element index."""
    n, p = N_BIG, 0.5
    _, mask = ops.dropout_forward(np.ones(n, np.float32), p, 99)
    m = mask.astype(np.float64) - 0.5
    assert abs((m[1:] * m[:-1]).mean()) < 6 * 0.25 / np.sqrt(n)
    halves = mask.reshape(2, -1).mean(axis=1)          # first vs second half of the indices
    assert abs(halves[0] - halves[1]) < 6 * np.sqrt(0.5 / n)
    for seed_b in (100, 99 + (1 << 32)):                 # different seeds, incl. high 32 bits only
        _, mb = ops.dropout_forward(np.ones(n, np.float32), p, seed_b)
        assert abs((mask == mb).mean() - 0.5) < 6 * np.sqrt(0.25 / n)


def test_p_zero_is_identity_and_backward_uses_mask(rng):
    x = randn(rng, 3, 4, 5)
    y, mask = ops.dropout_forward(x, 0.0, 1)
    np.testing.assert_array_equal(y, x)
    assert mask.all()
    y, mask = ops.dropout_forward(x, 0.4, 1)
    assert_close(y, ref.dropout_forward(x, mask, 0.4), rtol=1e-6)
    dy = randn(rng, 3, 4, 5)
    dx = nan_like(x.shape)
    _core.dropout_backward(dx, dy, mask, 0.4)
    assert_close(dx, ref.dropout_forward(dy, mask, 0.4), rtol=1e-6)


def test_mask_independent_of_thread_count(restore_settings):
    x = np.ones(100_003, np.float32)
    pyconvnet.set_num_threads(1)
    y1, m1 = ops.dropout_forward(x, 0.3, 42)
    pyconvnet.set_num_threads(2)
    y2, m2 = ops.dropout_forward(x, 0.3, 42)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(y1, y2)
    # the mask of element i depends on (seed, i) only: a prefix gives the same mask
    _, m3 = ops.dropout_forward(x[:1000], 0.3, 42)
    np.testing.assert_array_equal(m3, m1[:1000])


def test_layer_train_and_eval(rng):
    layer = Dropout(0.5, seed=3)
    x = randn(rng, 64, 32)
    y = layer(x)
    kept = y != 0
    assert 0.35 < kept.mean() < 0.65
    assert_close(y[kept], 2 * x[kept].astype(np.float64), rtol=1e-6)
    dy = randn(rng, 64, 32)
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dx != 0, kept)            # the forward mask, not a new one
    assert_close(dx, np.where(kept, 2 * dy.astype(np.float64), 0), rtol=1e-6)
    np.testing.assert_array_equal(layer.backward(dy), dx)    # backward twice: same mask
    layer.eval()
    calls = layer.calls
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer.backward(dy), dy)
    assert layer.calls == calls                              # eval draws no mask
    layer.train()
    assert (layer(x) == 0).any()


def test_seed_reproducibility(rng):
    x = randn(rng, 16, 50)
    a, b = Dropout(0.5, seed=11), Dropout(0.5, seed=11)
    ya = [a(x) for _ in range(3)]
    yb = [b(x) for _ in range(3)]
    for u, v in zip(ya, yb):
        np.testing.assert_array_equal(u, v)                   # same seed -> same sequence
    for u, v in zip(ya, ya[1:]):
        assert ((u == 0) != (v == 0)).any()                   # the i-th call differs from the next
    c = Dropout(0.5, seed=12)
    assert ((c(x) == 0) != (ya[0] == 0)).any()                # another seed -> another mask
    # resumable: rewinding `calls` reproduces the mask of that call
    a.calls = 1
    np.testing.assert_array_equal(a(x), ya[1])


def test_default_seed_from_init_generator(rng):
    from pyconvnet.nn import init
    x = randn(rng, 8, 40)
    init.seed(5)
    y1 = Dropout(0.5)(x)
    init.seed(5)
    y2 = Dropout(0.5)(x)
    np.testing.assert_array_equal(y1, y2)
