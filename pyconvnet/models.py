"""Model builders: LeNet-5 (LeCun et al. 1998), AlexNet (Krizhevsky et al. 2012) and a small AlexNet."""
import numpy as np

from . import nn
from .nn import init

MODELS = ("lenet5", "alexnet_small", "alexnet")


def lenet5(num_classes=10, classic=False, in_channels=1):
    """LeNet-5's layout for 28x28 input: C1 6@5x5 (pad 2, as on the paper's 32x32 frame), S2 2x2,
    C3 16@5x5, S4 2x2, C5 120, F6 84, output. The default uses ReLU and max pooling;
    classic=True uses tanh and average pooling, as in 1998. C3 is fully connected (the paper's
    sparse connection table is not reproduced) and the output is a softmax, not RBF units."""
    act = nn.Tanh if classic else nn.ReLU
    pool = nn.AvgPool2d if classic else nn.MaxPool2d
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2), act(), pool(2),
        nn.Conv2d(6, 16, 5), act(), pool(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), act(),
        nn.Linear(120, 84), act(),
        nn.Linear(84, num_classes),
    )


def _paper_init(model, bias_one):
    """AlexNet's initialisation: weights N(0, 0.01^2); biases 1 in the listed layers, else 0."""
    for i, layer in enumerate(model.layers):
        if "weight" in layer._params:
            layer.weight = init.normal(layer.weight.shape, 0.01)
            layer.bias = np.full(layer.bias.shape, 1.0 if i in bias_one else 0.0, np.float32)


def alexnet(num_classes=1000):
    """The 2012 net for 227x227x3 input: 5 conv layers (conv2, 4, 5 in two groups, as the two GPUs
    of the paper), LRN after conv1 and conv2, overlapping 3x3/2 max pooling, two FC 4096 layers
    with dropout 0.5, and a num_classes-way output. LRN uses the paper's k=2, n=5, alpha=1e-4,
    beta=0.75 (alpha=5e-4 in the divided-by-size convention of LocalResponseNorm)."""
    lrn = lambda: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)  # noqa: E731
    model = nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),              # 0-3
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),  # 4-7
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),                                      # 8-9
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(),                            # 10-11
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2),        # 12-14
        nn.Flatten(),                                                                      # 15
        nn.Linear(256 * 6 * 6, 4096), nn.ReLU(), nn.Dropout(0.5),                          # 16-18
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),                                 # 19-21
        nn.Linear(4096, num_classes),                                                      # 22
    )
    _paper_init(model, bias_one={4, 10, 12, 16, 19})
    return model


def alexnet_small(num_classes=100, input_size=64):
    """AlexNet's structure scaled to small images (e.g. 64x64 ImageNet subsets) so that it trains
    on a CPU: the same layer sequence, groups, LRN and overlapping pooling, with about 1/4 of the
    channels and 1024-unit FC layers. He initialisation (trains reliably without the paper's
    hand-tuned schedule)."""
    s = int(input_size)
    if s < 32:
        raise ValueError(f"alexnet_small: input_size must be >= 32, got {input_size}")
    lrn = lambda: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)  # noqa: E731
    o = (s + 4 - 5) // 2 + 1            # conv1 5x5/2 pad 2
    for _ in range(3):                  # three 3x3/2 max pools
        o = (o - 3) // 2 + 1
    return nn.Sequential(
        nn.Conv2d(3, 64, 5, stride=2, padding=2), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 128, 5, padding=2, groups=2), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(128, 192, 3, padding=1), nn.ReLU(),
        nn.Conv2d(192, 192, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(192, 128, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Flatten(),
        nn.Linear(128 * o * o, 1024), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(1024, 1024), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(1024, num_classes),
    )


def build(name, num_classes, input_shape=None):
    """A model by name; input_shape (C, H, W) adapts alexnet_small's input size."""
    if name == "lenet5":
        return lenet5(num_classes, in_channels=input_shape[0] if input_shape else 1)
    if name == "alexnet":
        return alexnet(num_classes)
    if name == "alexnet_small":
        return alexnet_small(num_classes, input_shape[-1] if input_shape else 64)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")


def input_shape(name):
    """The input (C, H, W) each model is built for."""
    return {"lenet5": (1, 28, 28), "alexnet": (3, 227, 227), "alexnet_small": (3, 64, 64)}[name]
