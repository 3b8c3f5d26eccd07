"""Sequential: a feed-forward chain of layers. forward walks the layers, backward walks them in
reverse; no autograd tape. All parameters live in one flat float32 buffer and all gradients in
another (layers hold views), so zero_grad is one fill, the SGD step is one kernel call over the
buffer, and a checkpoint or an allreduce is one array. to("cuda") moves both buffers to the GPU
and points the layers' views at the new ones."""
import numpy as np

from .. import ops
from .module import Module


def _flops(layer, x_shape, y_shape):
    """Forward FLOPs for one sample (a multiply-add counts 2)."""
    name, out = type(layer).__name__, int(np.prod(y_shape[1:]))
    if name in ("Conv2d", "LocallyConnected2d"):
        kh, kw = layer.kernel_size
        cin = layer.in_channels // getattr(layer, "groups", 1)
        return 2 * out * cin * kh * kw
    if name == "Linear":
        return 2 * layer.in_features * layer.out_features
    if name in ("MaxPool2d", "AvgPool2d"):
        return out * layer.kernel_size[0] * layer.kernel_size[1]
    if name == "LocalResponseNorm":
        return out * (2 * layer.size + 4)
    if name == "Flatten":
        return 0
    return out


class Sequential(Module):
    def __init__(self, *layers):
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: layer {i} is a {type(layer).__name__}, not a pyconvnet Module")
        self.layers = list(layers)
        named = self.named_parameters()
        total = sum(p.size for _, p, _ in named)
        self.flat_params = np.empty(total, np.float32)
        self.flat_grads = np.zeros(total, np.float32)
        self.offsets = {}  # name -> (start, end) in the flat buffers
        off = 0
        for i, layer in enumerate(self.layers):
            for n, p, _ in layer.named_parameters():
                view = slice(off, off + p.size)
                layer._rebind(n, self.flat_params[view].reshape(p.shape),
                              self.flat_grads[view].reshape(p.shape))
                self.offsets[f"{i}.{n}"] = (off, off + p.size)
                off += p.size

    def __getitem__(self, i):
        return self.layers[i]

    @property
    def device(self):
        """'cpu' or 'cuda': where the parameters (and so the inputs) live."""
        return ops.device_of(self.flat_params)

    def to(self, device):
        """Move the flat parameter and gradient buffers to `device` ('cpu' or 'cuda'; one copy
        each) and re-point every layer's views into them. Returns self. An optimizer's state
        follows the model on its next step."""
        if device not in ("cpu", "cuda"):
            raise ValueError(f"Sequential.to: device must be 'cpu' or 'cuda', got {device!r}")
        if device == self.device:
            return self
        self.flat_params = ops.to_device(self.flat_params, device)
        self.flat_grads = ops.to_device(self.flat_grads, device)
        for i, layer in enumerate(self.layers):
            for n, p, _ in layer.named_parameters():
                start, end = self.offsets[f"{i}.{n}"]
                layer._params[n] = self.flat_params[start:end].reshape(p.shape)
                layer._grads[n] = self.flat_grads[start:end].reshape(p.shape)
        return self

    def __len__(self):
        return len(self.layers)

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, dy):
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
            if dy is None:  # a layer with need_input_grad = False ends the walk
                break
        return dy

    def features(self, x, upto):
        """Activations after layer `upto` (an index, or a layer's position in state-dict names)."""
        upto = int(upto)
        if not -len(self.layers) <= upto < len(self.layers):
            raise ValueError(f"Sequential.features: layer {upto} does not exist; the model has "
                             f"{len(self.layers)} layers")
        for layer in self.layers[: upto % len(self.layers) + 1]:
            x = layer(x)
        return x

    def named_parameters(self):
        return [(f"{i}.{n}", p, g) for i, layer in enumerate(self.layers)
                for n, p, g in layer.named_parameters()]

    def zero_grad(self):
        self.flat_grads.fill(0.0)

    def train(self, mode=True):
        self.training = bool(mode)
        for layer in self.layers:
            layer.train(mode)
        return self

    # -- state: PyTorch's names ("3.weight") and layouts, so torch.nn.Sequential loads both ways
    def state_dict(self):
        """name -> numpy copy of the parameter (host arrays whatever the model's device)."""
        return {n: np.array(ops.to_numpy(p)) for n, p, _ in self.named_parameters()}

    def load_state_dict(self, state):
        params = {n: p for n, p, _ in self.named_parameters()}
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        if missing or unexpected:
            raise ValueError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for n, p in params.items():
            v = state[n]
            if hasattr(v, "detach"):            # a torch tensor
                v = v.detach().cpu().numpy()
            elif not ops.cuda.is_device_array(v):  # device arrays are copied as they are
                v = np.asarray(v)
            if v.shape != p.shape:
                raise ValueError(f"load_state_dict: {n} has shape {v.shape}, expected {p.shape}")
            ops.copyto(p, v)

    def summary(self, input_shape):
        """Rows (name, output shape, parameters, neurons, forward FLOPs) for one sample of
        input_shape (C, H, W) or (features,), plus totals; also returned as a printable string."""
        x = np.random.default_rng(0).standard_normal((1, *input_shape)).astype(np.float32)
        x = ops.to_device(x, self.device)
        was_training = self.training
        self.eval()
        rows = []
        try:
            for i, layer in enumerate(self.layers):
                y = layer(x)
                nparams = sum(p.size for _, p, _ in layer.named_parameters())
                neurons = int(np.prod(y.shape[1:])) if nparams else 0
                rows.append((f"{i}: {layer!r}", tuple(y.shape[1:]), nparams, neurons,
                             _flops(layer, x.shape, y.shape)))
                x = y
        finally:
            self.train(was_training)
        return Summary(rows)

    def __repr__(self):
        inner = "\n".join(f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n)"


class Summary(list):
    @property
    def params(self):
        return sum(r[2] for r in self)

    @property
    def neurons(self):
        return sum(r[3] for r in self)

    @property
    def flops(self):
        return sum(r[4] for r in self)

    def __str__(self):
        w = max(len(r[0]) for r in self) if self else 10
        lines = [f"{'layer':<{w}}  {'output':>16} {'params':>12} {'neurons':>10} {'MFLOPs':>10}"]
        for name, shape, p, n, f in self:
            lines.append(f"{name:<{w}}  {str(shape):>16} {p:>12,} {n:>10,} {f / 1e6:>10.1f}")
        lines.append(f"{'total':<{w}}  {'':>16} {self.params:>12,} {self.neurons:>10,} {self.flops / 1e6:>10.1f}")
        return "\n".join(lines)
