"""SGD over the flat buffer (rules "torch" and "paper", per-layer multipliers) and schedules."""
import math

import numpy as np
import pytest

from pyconvnet import nn, optim


def net():
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))


def set_grads(model, rng):
    model.flat_grads[:] = rng.standard_normal(model.flat_grads.size).astype(np.float32)


@pytest.mark.parametrize("nesterov", [False, True])
def test_torch_rule_matches_torch_sgd(rng, nesterov):
    torch = pytest.importorskip("torch")
    model = net()
    params = [torch.nn.Parameter(torch.from_numpy(p.copy())) for _, p, _ in model.named_parameters()]
    ref = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=nesterov)
    opt = optim.SGD(model, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=nesterov)
    for _ in range(5):
        set_grads(model, rng)
        for p, (_, _, g) in zip(params, model.named_parameters()):
            p.grad = torch.from_numpy(g.copy())
        ref.step()
        opt.step()
    for p, (_, q, _) in zip(params, model.named_parameters()):
        np.testing.assert_allclose(q, p.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_paper_rule_matches_formula(rng):
    model = net()
    opt = optim.SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4, rule="paper")
    w = model.flat_params.astype(np.float64)
    v = np.zeros_like(w)
    for _ in range(4):
        set_grads(model, rng)
        g = model.flat_grads.astype(np.float64)
        v = 0.9 * v - 0.0005 * 0.01 * w - 0.01 * g
        w = w + v
        opt.step()
    np.testing.assert_allclose(model.flat_params, w, rtol=1e-5, atol=1e-6)


def test_lr_mult_zero_freezes_a_layer(rng):
    model = net()
    model[0].lr_mult = 0.0
    opt = optim.SGD(model, lr=0.1)
    before = model.flat_params.copy()
    set_grads(model, rng)
    opt.step()
    s, e = model.offsets["0.bias"]
    assert np.array_equal(model.flat_params[:e], before[:e])      # layer 0 frozen
    assert not np.array_equal(model.flat_params[e:], before[e:])  # layer 2 moved
    model[0].lr_mult = 1.0
    opt.refresh_multipliers()
    opt.step()
    assert not np.array_equal(model.flat_params[:e], before[:e])


def test_sgd_rejects_bad_settings():
    with pytest.raises(ValueError, match="rule"):
        optim.SGD(net(), 0.1, rule="adam")
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(net(), 0.1, momentum=0.0, nesterov=True)
    with pytest.raises(ValueError, match=">= 0"):
        optim.SGD(net(), -1.0)


def test_schedules():
    opt = optim.SGD(net(), lr=1.0)
    lrs = []
    s = optim.StepLR(opt, step_size=2)
    for _ in range(5):
        s.step()
        lrs.append(opt.lr)
    assert np.allclose(lrs, [1, 0.1, 0.1, 0.01, 0.01])
    opt.lr = 1.0
    s = optim.MultiStepLR(opt, [1, 3])
    lrs = [(s.step(), opt.lr)[1] for _ in range(4)]
    assert np.allclose(lrs, [0.1, 0.1, 0.01, 0.01])
    opt.lr = 1.0
    s = optim.CosineLR(opt, total_epochs=4)
    lrs = [(s.step(), opt.lr)[1] for _ in range(4)]
    assert np.allclose(lrs, [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(1, 5)])


def test_reduce_on_plateau_divides_by_ten_and_round_trips():
    opt = optim.SGD(net(), lr=0.01)
    s = optim.ReduceLROnPlateau(opt, mode="max", patience=1)
    for acc in [0.5, 0.6, 0.6, 0.6]:
        s.step(acc)
    assert opt.lr == pytest.approx(0.001)
    opt2 = optim.SGD(net(), lr=0.5)
    s2 = optim.ReduceLROnPlateau(opt2, mode="max", patience=1)
    s2.load_state_dict(s.state_dict())
    assert opt2.lr == pytest.approx(0.001) and s2.best == 0.6
    with pytest.raises(ValueError, match="metric"):
        s.step()
