"""_core.sgd_step: the "torch" rule (with and without Nesterov) and the "paper" rule, per-segment
lr/wd multipliers, frozen segments, elements outside every segment, several steps; torch.optim."""
import numpy as np
import pytest

from pyconvnet import _core

import reference as ref
from reference import assert_close, randn

RULES = [("torch", 0, False), ("torch-nesterov", 0, True), ("paper", 1, False)]


def step(w, v, g, off, lrm, wdm, lr, mu, wd, nesterov, rule):
    _core.sgd_step(w, v, g, np.asarray(off, np.int64), np.asarray(lrm, np.float32),
                   np.asarray(wdm, np.float32), lr, mu, wd, nesterov, rule)


@pytest.mark.parametrize("name,rule,nesterov", RULES, ids=[r[0] for r in RULES])
@pytest.mark.parametrize("segments", [
    ([0, 37], [1.0], [1.0]),
    ([0, 10, 10, 25, 37], [1.0, 3.0, 2.0, 0.5], [1.0, 0.0, 0.0, 2.0]),   # empty segment, wd off
    ([3, 20, 30], [1.0, 0.0], [1.0, 1.0]),          # frozen segment; [0,3) and [30,37) outside
], ids=["one", "multi", "frozen+gaps"])
def test_steps_match_reference(rng, name, rule, nesterov, segments):
    off, lrm, wdm = segments
    n = 37
    w, v = randn(rng, n), randn(rng, n) * 0.1
    lr, mu, wd = 0.05, 0.9, 5e-3
    rw, rv = w.astype(np.float64), v.astype(np.float64)
    for _ in range(4):
        g = randn(rng, n)
        w0, v0 = w.copy(), v.copy()
        step(w, v, g, off, lrm, wdm, lr, mu, wd, nesterov, rule)
        rw, rv = ref.sgd_step(rw, rv, g, off, np.float32(lrm), np.float32(wdm), lr, mu, wd, nesterov, rule)
        assert_close(w, rw, rtol=1e-5, atol=1e-6)
        assert_close(v, rv, rtol=1e-5, atol=1e-6)
        outside = np.ones(n, bool)
        for s in range(len(off) - 1):
            if lrm[s] != 0:
                outside[off[s]:off[s + 1]] = False
        np.testing.assert_array_equal(w[outside], w0[outside])   # frozen / outside: untouched
        np.testing.assert_array_equal(v[outside], v0[outside])


def test_rules_by_hand():
    """One hand-computed step of each rule on a single element."""
    def one(rule, nesterov):
        w, v, g = np.array([2.0], np.float32), np.array([0.5], np.float32), np.array([1.0], np.float32)
        step(w, v, g, [0, 1], [1.0], [1.0], 0.1, 0.9, 0.01, nesterov, rule)
        return float(w[0]), float(v[0])
    # torch: d = 1 + 0.02 = 1.02; v = 0.45 + 1.02 = 1.47; w = 2 - 0.1*1.47 = 1.853
    np.testing.assert_allclose(one(0, False), (1.853, 1.47), rtol=1e-6)
    # nesterov: w = 2 - 0.1*(1.02 + 0.9*1.47) = 2 - 0.2343 = 1.7657
    np.testing.assert_allclose(one(0, True), (1.7657, 1.47), rtol=1e-6)
    # paper: v = 0.45 - 0.01*0.1*2 - 0.1*1 = 0.348; w = 2.348
    np.testing.assert_allclose(one(1, False), (2.348, 0.348), rtol=1e-6)


def test_empty_offsets_segments():
    w, v, g = np.ones(4, np.float32), np.zeros(4, np.float32), np.ones(4, np.float32)
    step(w, v, g, [0], np.zeros(0), np.zeros(0), 0.1, 0.9, 0.0, False, 0)    # no segments
    np.testing.assert_array_equal(w, 1)


@pytest.mark.parametrize("nesterov", [False, True])
def test_against_torch_optim(rng, nesterov):
    torch = pytest.importorskip("torch")
    n = 29
    w, v = randn(rng, n), np.zeros(n, np.float32)
    tw = torch.nn.Parameter(torch.tensor(w, dtype=torch.float64))
    opt = torch.optim.SGD([tw], lr=0.03, momentum=0.8, weight_decay=1e-2, nesterov=nesterov)
    for _ in range(5):
        g = randn(rng, n)
        step(w, v, g, [0, n], [1.0], [1.0], 0.03, 0.8, 1e-2, nesterov, 0)
        tw.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        assert_close(w, tw.detach().numpy(), rtol=1e-5, atol=1e-6)
