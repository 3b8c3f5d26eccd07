"""Local response normalization (PyTorch's convention) against the float64 oracle and torch.
Covers odd and even sizes (asymmetric window), size > C, C=1, beta = 0.75 / 0.5 / other (three
code paths in cpp/lrn.cpp) and H*W > 512 (several pixel blocks)."""
import numpy as np
import pytest

from pyconvnet import _core, ops
from pyconvnet.nn import LocalResponseNorm

import reference as ref
from reference import assert_close, nan_like, randn

# shape, size, alpha, beta, k
CASES = [
    ((2, 7, 3, 4), 5, 1e-2, 0.75, 2.0),        # AlexNet-like
    ((1, 6, 5, 3), 4, 0.3, 0.75, 1.0),         # even size: window [c-2, c+1]
    ((2, 3, 2, 5), 2, 0.5, 0.5, 1.0),          # beta 0.5 path, even size
    ((2, 4, 3, 3), 3, 0.7, 0.6, 0.5),          # generic pow path
    ((1, 1, 4, 4), 5, 0.4, 0.75, 1.0),         # C=1
    ((2, 3, 3, 3), 9, 0.9, 1.3, 1.5),          # size > C
    ((1, 5, 1, 1), 1, 0.2, 0.75, 1.0),         # size 1: self-normalization only
    ((1, 3, 23, 25), 3, 0.5, 0.75, 1.0),       # 575 pixels: two blocks of 512
]
IDS = [f"{'x'.join(map(str, c[0]))}-n{c[1]}-b{c[3]}" for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_core(rng, case):
    shape, size, alpha, beta, k = case
    x = randn(rng, *shape) * 1.5
    y, scale = nan_like(shape), nan_like(shape)
    _core.lrn_forward(y, scale, x, size, alpha, beta, k)
    ry, rs = ref.lrn_forward(x, size, alpha, beta, k)
    assert_close(y, ry, msg="y")
    assert_close(scale, rs, msg="scale")
    dy = randn(rng, *shape)
    dx = nan_like(shape)
    _core.lrn_backward(dx, dy, x, y, scale, size, alpha, beta)
    assert_close(dx, ref.lrn_backward(dy, x, size, alpha, beta, k), msg="dx")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_layer(rng, case):
    shape, size, alpha, beta, k = case
    layer = LocalResponseNorm(size, alpha, beta, k)
    x = randn(rng, *shape) * 1.5
    assert_close(layer(x), ref.lrn_forward(x, size, alpha, beta, k)[0])
    dy = randn(rng, *shape)
    rdx = ref.lrn_backward(dy, x, size, alpha, beta, k)
    assert_close(layer.backward(dy), rdx)
    assert_close(layer.backward(dy), rdx)


def test_reference_backward_matches_finite_differences(rng):
    """The oracle's exact backward is itself checked in float64 by central differences."""
    x, dy = rng.standard_normal((1, 5, 2, 2)), rng.standard_normal((1, 5, 2, 2))
    args = (4, 0.8, 0.6, 1.0)
    dx = ref.lrn_backward(dy, x, *args)
    eps = 1e-6
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = eps
        fd = ((ref.lrn_forward(x + e, *args)[0] - ref.lrn_forward(x - e, *args)[0]) * dy).sum() / (2 * eps)
        assert abs(fd - dx[idx]) < 1e-6


def test_alexnet_paper_convention(rng):
    """Paper (k=2, n=5, alpha=1e-4, beta=0.75; alpha not divided by n) == LocalResponseNorm(5, 5e-4, 0.75, 2)."""
    x = randn(rng, 1, 8, 2, 2) * 10
    y = LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)(x)
    xd = x.astype(np.float64)
    paper = np.empty_like(xd)
    for c in range(8):
        lo, hi = max(0, c - 2), min(7, c + 2)
        paper[:, c] = xd[:, c] / (2 + 1e-4 * (xd[:, lo:hi + 1] ** 2).sum(axis=1)) ** 0.75
    assert_close(y, paper)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_against_torch(rng, case):
    torch = pytest.importorskip("torch")
    shape, size, alpha, beta, k = case
    x = randn(rng, *shape) * 1.5
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty = torch.nn.functional.local_response_norm(tx, size, alpha, beta, k)
    y, scale = ops.lrn_forward(x, size, alpha, beta, k)
    assert_close(y, ty.detach().numpy())
    dy = randn(rng, *shape)
    ty.backward(torch.tensor(dy, dtype=torch.float64))
    assert_close(ops.lrn_backward(dy, x, y, scale, size, alpha, beta), tx.grad.numpy())
