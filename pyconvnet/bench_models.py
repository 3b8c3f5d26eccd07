"""Training-step benchmark cases: one step (forward, loss, backward, SGD) of a pyconvnet model and
of the identical torch.nn.Sequential + torch.optim.SGD with the same weights, with a correctness
check against float64 PyTorch before anything is timed. Used by `pyconvnet bench models` and
bench/bench_models.py. On device="cuda" the model, the batch and (when torch has CUDA) the PyTorch
twin live on the GPU; calls are asynchronous there (bench_cli's timer synchronizes)."""
import math

import numpy as np

from . import models, nn, ops, optim

MODEL_CLASSES = {"lenet5": 10, "alexnet_small": 100, "alexnet": 1000}


def to_torch(model, torch):
    """The identical torch.nn.Sequential (same layers, groups, LRN), loaded with model's weights."""
    tnn, layers = torch.nn, []
    for l in model.layers:
        t = type(l).__name__
        if t == "Conv2d":
            layers.append(tnn.Conv2d(l.in_channels, l.out_channels, l.kernel_size, l.stride, l.padding,
                                     groups=l.groups, bias="bias" in l._params))
        elif t == "Linear":
            layers.append(tnn.Linear(l.in_features, l.out_features, bias="bias" in l._params))
        elif t in ("MaxPool2d", "AvgPool2d"):
            layers.append(getattr(tnn, t)(l.kernel_size, l.stride, l.padding))
        elif t == "LocalResponseNorm":
            layers.append(tnn.LocalResponseNorm(l.size, l.alpha, l.beta, l.k))
        elif t == "Dropout":
            layers.append(tnn.Dropout(l.p))
        elif t in ("ReLU", "Tanh", "Sigmoid", "Flatten"):
            layers.append(getattr(tnn, t)())
        else:
            raise ValueError(f"to_torch: no PyTorch layer for {l!r}")
    seq = tnn.Sequential(*layers)
    seq.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})  # host copies
    return seq


class TrainStep:
    """One SGD step (momentum 0.9, weight decay 5e-4) of a model on a fixed random batch, and the
    same step of the identical PyTorch model with torch.optim.SGD (setup_torch, torch_step)."""

    def __init__(self, name, batch, seed=0, lr=0.01, device="cpu"):
        nn.init.seed(seed)
        shape, classes = models.input_shape(name), MODEL_CLASSES[name]
        self.name, self.batch, self.device = name, batch, device
        self.model = models.build(name, classes, shape)
        self.model[0].need_input_grad = False
        self.opt = optim.SGD(self.model, lr, momentum=0.9, weight_decay=5e-4)
        self.crit = nn.SoftmaxCrossEntropy()
        rng = np.random.default_rng(seed)
        self.x_host = rng.standard_normal((batch, *shape), dtype=np.float32)
        self.y_host = rng.integers(0, classes, batch)
        self.model.to(device)
        self.x, self.y = ops.to_device(self.x_host, device), ops.to_device(self.y_host, device)
        self.flops = 3 * self.model.summary(shape).flops * batch  # backward ~ 2x forward

    def step(self):
        """One training step; the loss is a float on the CPU, a 0-d device array on CUDA."""
        loss = self.crit(self.model(self.x), self.y)
        self.model.zero_grad()
        self.model.backward(self.crit.backward())
        self.opt.step()
        return loss

    def setup_torch(self, torch):
        """The PyTorch twin, on the GPU when ours is there and torch has CUDA, else on the CPU."""
        tdev = "cuda" if self.device == "cuda" and torch.cuda.is_available() else "cpu"
        self.torch, self.tmodel = torch, to_torch(self.model, torch).to(tdev)
        self.topt = torch.optim.SGD(self.tmodel.parameters(), lr=self.opt.lr, momentum=0.9, weight_decay=5e-4)
        self.xt, self.yt = torch.from_numpy(self.x_host).to(tdev), torch.from_numpy(self.y_host).to(tdev)

    def torch_step(self):
        self.topt.zero_grad()
        loss = self.torch.nn.functional.cross_entropy(self.tmodel(self.xt), self.yt)
        loss.backward()
        self.topt.step()
        return loss.detach()  # float() reads it (on a GPU: waits), as with ours

    def check(self, rtol=1e-3, grad_rtol=1e-2):
        """One step of each library from the same weights without dropout (eval mode): the same
        loss (rtol), gradients no further from a float64 PyTorch run than grad_rtol + 3x float32
        PyTorch's own distance (error norm / norm; float32 alone moves AlexNet's first-layer
        gradients by 2%: max-pool inputs within rounding of each other send a gradient to another
        input), and our first SGD step w - lr * (g + wd * w). Without setup_torch, only that two
        steps on the batch lower a finite loss. Leaves the models in training mode."""
        self.model.eval()
        if not hasattr(self, "tmodel"):
            first = float(self.step())
            assert math.isfinite(first) and float(self.step()) < first, f"{self.name}: a step did not lower the loss"
            return self.model.train()
        import copy
        torch = self.torch
        t64 = copy.deepcopy(self.tmodel).cpu().double().eval()
        torch.nn.functional.cross_entropy(t64(torch.from_numpy(self.x_host).double()),
                                          torch.from_numpy(self.y_host)).backward()
        g64 = {n: p.grad.numpy() for n, p in t64.named_parameters()}
        del t64
        self.tmodel.eval()
        before = np.array(ops.to_numpy(self.model.flat_params))
        ours, theirs = float(self.step()), float(self.torch_step())
        assert abs(ours - theirs) <= rtol * abs(theirs), f"{self.name}: loss {ours} vs torch {theirs}"
        dist = lambda a, ref: np.linalg.norm(a - ref) / (np.linalg.norm(ref) + 1e-30)  # noqa: E731
        tparams = dict(self.tmodel.named_parameters())
        for n, _, g in self.model.named_parameters():
            err, err_torch = dist(ops.to_numpy(g), g64[n]), dist(tparams[n].grad.cpu().numpy(), g64[n])
            assert err <= grad_rtol + 3 * err_torch, (f"{self.name} {n}: gradient {err:.2g} from float64, "
                                                      f"float32 torch's {err_torch:.2g}")
        want = before - np.float32(self.opt.lr) * (ops.to_numpy(self.model.flat_grads) + np.float32(5e-4) * before)
        err = np.abs(ops.to_numpy(self.model.flat_params) - want) - 1e-5 * np.abs(want) - 1e-7 * np.abs(before).max()
        assert err.max() <= 0, f"{self.name}: the first SGD step is off by {err.max():.2g}"
        self.model.train(), self.tmodel.train()
