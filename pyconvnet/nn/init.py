"""Weight initialisation from one seedable generator, so pyconvnet.nn.init.seed(s) before building
a model fixes its initial weights."""
import numpy as np

_rng = [np.random.default_rng(0)]


def seed(s):
    _rng[0] = np.random.default_rng(s)


def generator():
    return _rng[0]


def he_normal(shape, fan_in):
    """He et al. 2015: N(0, 2/fan_in), right for ReLU nets."""
    w = _rng[0].standard_normal(shape, dtype=np.float32)
    w *= np.float32(np.sqrt(2.0 / fan_in))
    return w


def normal(shape, std):
    w = _rng[0].standard_normal(shape, dtype=np.float32)
    w *= np.float32(std)
    return w
