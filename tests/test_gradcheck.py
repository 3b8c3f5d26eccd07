"""Finite-difference gradient checks of every layer, for the input and for each parameter.

The layer runs in float32; the loss L = sum(y * R) (R a fixed random projection) is summed in
float64. For a direction u we evaluate L at the float32 points x+ = fl(x + eps u), x- = fl(x - eps u)
and compare L(x+) - L(x-) with <grad, x+ - x-> computed from the same rounded points, so input
rounding does not count; what remains is O(eps^2) truncation and float32 output rounding. Inputs
are kept away from kinks (ReLU: |x| >= 0.1; max pool: distinct values far apart) so that the
perturbation (|eps u| < 0.05) never crosses one."""
import numpy as np
import pytest

from pyconvnet.nn import (AvgPool2d, Conv2d, Dropout, Flatten, Linear, LocallyConnected2d,
                          LocalResponseNorm, MaxPool2d, ReLU, Sigmoid, Softmax,
                          SoftmaxCrossEntropy, Tanh)

from reference import randn

F32, F64 = np.float32, np.float64
EPS, RTOL = 1e-2, 2e-2


def check_directions(f, x0, grad, rng, what, n_random=3, n_coords=3):
    """f: float32 array -> float64 scalar; grad: analytic dL/dx at x0 (same shape)."""
    x0 = x0.astype(F64)
    grad = np.asarray(grad, F64)
    dirs = [np.clip(rng.standard_normal(x0.shape), -4, 4) for _ in range(n_random)]
    for i in rng.choice(x0.size, size=min(n_coords, x0.size), replace=False):
        e = np.zeros(x0.size)
        e[i] = 1.0
        dirs.append(e.reshape(x0.shape))
    for k, u in enumerate(dirs):
        xp, xm = (x0 + EPS * u).astype(F32), (x0 - EPS * u).astype(F32)
        fd = f(xp) - f(xm)
        step = xp.astype(F64) - xm.astype(F64)
        an = float(np.sum(grad * step))
        typical = np.abs(grad).mean() * np.abs(step).sum() if k >= n_random else \
            np.linalg.norm(grad) * np.linalg.norm(step) / np.sqrt(grad.size)
        assert abs(fd - an) <= RTOL * max(abs(an), typical) + 1e-9, \
            f"{what} direction {k}: finite difference {fd:.6g} vs analytic {an:.6g}"


def gradcheck_layer(layer, x, rng, before_forward=lambda layer: None):
    before_forward(layer)
    y = layer(x)
    R = rng.standard_normal(y.shape)

    def loss(xx):
        before_forward(layer)
        return float(np.sum(layer(xx).astype(F64) * R))

    layer.zero_grad()
    before_forward(layer)
    layer(x)
    dx = layer.backward(R.astype(F32))
    grads = {name: g.copy() for name, _, g in layer.named_parameters()}
    check_directions(loss, x, dx, rng, f"{layer!r} input")
    for name, p, _ in layer.named_parameters():
        p0 = p.copy()

        def loss_p(pp, name=name):
            setattr(layer, name, pp)
            return loss(x)
        check_directions(loss_p, p0, grads[name], rng, f"{layer!r} {name}")
        setattr(layer, name, p0)
    return dx


def spaced(rng, *shape):
    """Distinct values 0.2 apart (a shuffled ramp), centred on 0: max pool has no near-ties."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n / 2) * 0.2 / max(1, n / 20)).reshape(shape).astype(F32) * max(1, n / 20)


def with_bias(layer, rng):
    if "bias" in dict((n, p) for n, p, _ in layer.named_parameters()):
        layer.bias = randn(rng, *layer.bias.shape)
    return layer


LAYERS = {
    "conv-s2p1-g2": (lambda: Conv2d(4, 6, (3, 2), stride=2, padding=1, groups=2), (2, 4, 7, 6)),
    "conv-1x1": (lambda: Conv2d(3, 4, 1), (2, 3, 4, 3)),
    "conv-g4-nobias": (lambda: Conv2d(4, 4, 3, padding=1, groups=4, bias=False), (1, 4, 5, 5)),
    "local-s2p1": (lambda: LocallyConnected2d(2, 3, (5, 6), (3, 2), stride=2, padding=1), (2, 2, 5, 6)),
    "local-c1": (lambda: LocallyConnected2d(1, 2, (4, 4), 2), (3, 1, 4, 4)),
    "linear": (lambda: Linear(7, 5), (3, 7)),
    "linear-n1": (lambda: Linear(4, 1), (1, 4)),
    "maxpool-3s2p1": (lambda: MaxPool2d(3, 2, 1), (2, 2, 7, 6)),
    "maxpool-2x3": (lambda: MaxPool2d((2, 3), (1, 2)), (1, 3, 5, 7)),
    "avgpool-3s2p1": (lambda: AvgPool2d(3, 2, 1), (2, 2, 7, 6)),
    "avgpool-2": (lambda: AvgPool2d(2), (1, 1, 4, 6)),
    "lrn-3": (lambda: LocalResponseNorm(3, alpha=0.5, beta=0.75, k=1.0), (2, 5, 3, 2)),
    "lrn-4-generic-beta": (lambda: LocalResponseNorm(4, alpha=0.8, beta=0.6, k=1.5), (1, 6, 2, 3)),
    "lrn-2-beta0.5": (lambda: LocalResponseNorm(2, alpha=0.5, beta=0.5, k=1.0), (1, 3, 2, 2)),
    "relu": (ReLU, (2, 3, 4, 5)),
    "sigmoid": (Sigmoid, (2, 3, 4)),
    "tanh": (Tanh, (3, 7)),
    "softmax": (Softmax, (4, 6)),
    "flatten": (Flatten, (2, 3, 2, 2)),
}


@pytest.mark.parametrize("name", LAYERS)
def test_layer_gradients(rng, name):
    make, shape = LAYERS[name]
    layer = with_bias(make(), rng)
    x = spaced(rng, *shape) if "maxpool" in name else randn(rng, *shape)
    gradcheck_layer(layer, x, rng)


@pytest.mark.parametrize("p", [0.3, 0.5])
def test_dropout_gradients(rng, p):
    """The mask is a function of (seed, calls): rewinding calls holds it fixed for the differences."""
    layer = Dropout(p, seed=4)

    def rewind(layer):
        layer.calls = 0
    dx = gradcheck_layer(layer, randn(rng, 3, 20), rng, before_forward=rewind)
    assert (dx == 0).any() and (dx != 0).any()


def test_softmax_cross_entropy_gradients(rng):
    crit = SoftmaxCrossEntropy()
    x = randn(rng, 5, 4) * 2
    labels = np.array([0, 3, 3, 1, 2])
    r = 1.7
    crit(x, labels)
    dx = crit.backward(r)
    check_directions(lambda xx: r * crit(xx, labels), x, dx, rng, "SoftmaxCrossEntropy")


def test_small_network_end_to_end(rng):
    """Gradients flow through a chain of layers (each backward feeding the previous one). Smooth
    layers only (ReLU and max pool are checked alone above, where the kinks are controlled)."""
    net = [Conv2d(2, 4, 3, padding=1), Sigmoid(), AvgPool2d(3, 2), LocalResponseNorm(3, alpha=0.5),
           LocallyConnected2d(4, 3, (3, 3), 2), Tanh(), Flatten(), Linear(12, 5)]
    for layer in net:
        with_bias(layer, rng)
    crit = SoftmaxCrossEntropy()
    x = randn(rng, 2, 2, 7, 7)
    labels = np.array([1, 4])

    def loss(xx):
        for layer in net:
            xx = layer(xx)
        return crit(xx, labels)

    loss(x)
    g = crit.backward()
    for layer in reversed(net):
        layer.zero_grad()
        g = layer.backward(g)
    conv_wgrad = net[0].weight_grad.copy()
    check_directions(loss, x, g, rng, "network input", n_coords=0)
    w0 = net[0].weight.copy()

    def loss_w(w):
        net[0].weight = w
        return loss(x)
    check_directions(loss_w, w0, conv_wgrad, rng, "network conv weight", n_coords=0)
    net[0].weight = w0
