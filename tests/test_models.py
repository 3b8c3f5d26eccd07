"""Sequential (flat buffers, state dicts, summary), the model builders, and a whole-model
gradient check."""
import numpy as np
import pytest

from pyconvnet import models, nn


def tiny_net():
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2),
        nn.LocalResponseNorm(3, alpha=0.1, beta=0.75, k=1.0),
        nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.Sigmoid(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(4 * 2 * 2, 5), nn.Tanh(), nn.Linear(5, 3))


def loss_and_grads(model, x, y):
    crit = nn.SoftmaxCrossEntropy()
    loss = crit(model(x), y)
    model.zero_grad()
    dx = model.backward(crit.backward())
    return loss, dx, model.flat_grads.copy()


def test_whole_model_gradient_matches_finite_differences(rng):
    model = tiny_net()
    x = rng.standard_normal((3, 2, 8, 8)).astype(np.float32)
    y = np.array([0, 2, 1])
    _, dx, g = loss_and_grads(model, x, y)
    w0 = model.flat_params.copy()
    crit = nn.SoftmaxCrossEntropy()
    for _ in range(4):  # directional derivatives along random directions of all parameters
        d = rng.standard_normal(w0.size).astype(np.float32)
        d /= np.linalg.norm(d)
        eps = 1e-2
        model.flat_params[:] = w0 + eps * d
        lp = crit(model(x), y)
        model.flat_params[:] = w0 - eps * d
        lm = crit(model(x), y)
        model.flat_params[:] = w0
        fd, an = (lp - lm) / (2 * eps), float(g @ d)
        assert abs(fd - an) <= 2e-3 + 2e-2 * abs(an), (fd, an)
    dxd = rng.standard_normal(x.shape).astype(np.float32)
    dxd /= np.linalg.norm(dxd)
    fd = (crit(model(x + 1e-2 * dxd), y) - crit(model(x - 1e-2 * dxd), y)) / 2e-2
    an = float((dx * dxd).sum())
    assert abs(fd - an) <= 2e-3 + 2e-2 * abs(an), (fd, an)


def test_flat_buffers_are_shared_with_layers():
    model = tiny_net()
    conv = model[0]
    assert np.shares_memory(conv.weight, model.flat_params)
    assert np.shares_memory(conv.weight_grad, model.flat_grads)
    model.flat_grads[:] = 3.0
    model.zero_grad()
    assert not model.flat_grads.any() and not conv.weight_grad.any()
    conv.weight = np.full(conv.weight.shape, 0.5)  # assignment copies into the flat buffer
    s, e = model.offsets["0.weight"]
    assert np.all(model.flat_params[s:e] == 0.5)
    with pytest.raises(ValueError, match=r"weight must have shape \(4, 2, 3, 3\)"):
        conv.weight = np.zeros((2, 2))


def test_state_dict_round_trip_and_errors():
    a, b = tiny_net(), tiny_net()
    a.flat_params[:] = np.arange(a.flat_params.size, dtype=np.float32) / 1000
    b.load_state_dict(a.state_dict())
    assert np.array_equal(a.flat_params, b.flat_params)
    sd = a.state_dict()
    sd["0.weight"] = sd["0.weight"][:1]
    with pytest.raises(ValueError, match="0.weight has shape"):
        b.load_state_dict(sd)
    del sd["0.weight"]
    with pytest.raises(ValueError, match="missing keys"):
        b.load_state_dict(sd)


def test_state_dict_loads_into_torch_and_back(rng):
    torch = pytest.importorskip("torch")
    ours = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, groups=2), nn.ReLU(),
                         nn.LocalResponseNorm(3, alpha=0.2, beta=0.75, k=2.0), nn.MaxPool2d(3, 2),
                         nn.Flatten(), nn.Linear(6 * 3 * 3, 5))
    theirs = torch.nn.Sequential(torch.nn.Conv2d(4, 6, 3, padding=1, groups=2), torch.nn.ReLU(),
                                 torch.nn.LocalResponseNorm(3, alpha=0.2, beta=0.75, k=2.0),
                                 torch.nn.MaxPool2d(3, 2), torch.nn.Flatten(), torch.nn.Linear(54, 5))
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((2, 4, 7, 7)).astype(np.float32)
    np.testing.assert_allclose(ours(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        for p in theirs.parameters():
            p.normal_()
    ours.load_state_dict(theirs.state_dict())  # torch tensors load directly
    np.testing.assert_allclose(ours(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def alexnet():
    return models.alexnet()  # 61M parameters: build once for the tests below


def test_alexnet_parameter_and_neuron_counts(alexnet):
    s = alexnet.summary((3, 227, 227))
    assert s.params == 60_965_224
    assert 640_000 < s.neurons < 670_000  # "650,000 neurons"
    assert [r[1] for r in s if "Conv2d" in r[0]] == [(96, 55, 55), (256, 27, 27), (384, 13, 13),
                                                     (384, 13, 13), (256, 13, 13)]
    assert "60,965,224" in str(s)


def test_alexnet_paper_initialisation(alexnet):
    bias_one = {4, 10, 12, 16, 19}
    for i, layer in enumerate(alexnet.layers):
        if "weight" in layer._params:
            assert abs(float(layer.weight.std()) - 0.01) < 0.002
            assert np.all(layer.bias == (1.0 if i in bias_one else 0.0))


@pytest.mark.parametrize("size", [32, 64, 96])
def test_alexnet_small_shapes(rng, size):
    model = models.alexnet_small(num_classes=7, input_size=size)
    y = model(rng.standard_normal((2, 3, size, size)).astype(np.float32))
    assert y.shape == (2, 7)


def test_lenet5_shapes(rng):
    for classic in (False, True):
        y = models.lenet5(classic=classic)(rng.standard_normal((3, 1, 28, 28)).astype(np.float32))
        assert y.shape == (3, 10)


def test_features_chops_the_net(rng):
    model = models.lenet5()
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    assert model.features(x, upto=2).shape == (2, 6, 14, 14)
    assert np.array_equal(model.features(x, upto=-1), model(x))
    with pytest.raises(ValueError, match="does not exist"):
        model.features(x, upto=40)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model"):
        models.build("vgg", 10)
