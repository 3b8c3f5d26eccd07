"""The AlexNet 2012 layer shapes at batch 16, shared by bench_ops.py and compare_torch.py.

Each case builds one pyconvnet layer and its inputs (fixed seed) and offers:
  fwd(), fwd_bwd()                the timed pyconvnet calls: y = layer(x), dx = layer.backward(dy)
  setup_torch(torch), torch_fwd(), torch_fwd_bwd()   the same in torch.nn.functional
  work(backward) -> (amount, unit)  FLOPs (2 * MACs; backward = 2x forward) or bytes the kernels
                                    read and write, per call; rate() turns it into GFLOP/s or GB/s
  check(backward, torch=None)       asserts pyconvnet's output (and with backward, its gradients)
                                    against torch when given, else against a numpy reference
  to(device)                        runs the timed calls on "cuda": the layer and the inputs move
                                    there (torch's too, when it has CUDA); the references read the
                                    host arrays self.x, self.dy, which stay
Parameter gradients accumulate across calls on both sides (torch via autograd.grad returns fresh
ones); that does not change the work done.
"""
import sys
from pathlib import Path

import numpy as np

try:
    import pyconvnet
except ImportError:  # run from a source checkout without an install: use the checkout's package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import pyconvnet  # noqa: F401
from pyconvnet import nn, ops

BATCH = 16
F32 = np.float32


def host(t):
    """A torch tensor's values as numpy, wherever it lives."""
    return t.detach().cpu().numpy()


def close(what, got, want, rtol=1e-3):
    """allclose with the absolute tolerance scaled to the reference's magnitude."""
    got, want = np.asarray(ops.to_numpy(got), np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    err = np.abs(got - want).max()
    tol = rtol * (np.abs(want).max() + 1e-30)
    assert np.all(np.abs(got - want) <= tol + rtol * np.abs(want)), (
        f"{what}: max abs error {err:.3g} exceeds {tol:.3g} (rtol {rtol})")


class Case:
    """One benchmarked op: a pyconvnet layer on self.x (gradient self.dy) and, after setup_torch,
    the same op in torch on self.xt (and self.wt, self.bt for a layer with weights)."""
    name = ""
    device = "cpu"

    def to(self, device):
        if device != "cpu":
            self.holder = nn.Sequential(self.layer).to(device)  # moves the layer's parameters
        self.device = device
        self.xd = ops.to_device(self.x, device)
        self.dyd = ops.to_device(self.dy, device) if hasattr(self, "dy") else None
        return self

    def fwd(self):
        return self.layer(getattr(self, "xd", self.x))

    def fwd_bwd(self):
        self.layer(getattr(self, "xd", self.x))
        return self.layer.backward(getattr(self, "dyd", self.dy))

    def torch_tensor(self, a, grad=False):
        """A torch copy of host array a, on the GPU when the case runs there and torch has CUDA."""
        dev = "cuda" if self.device == "cuda" and self.torch.cuda.is_available() else "cpu"
        t = self.torch.from_numpy(np.array(ops.to_numpy(a))).to(dev)
        return t.requires_grad_() if grad else t

    def setup_torch(self, torch):
        self.F, self.torch = torch.nn.functional, torch
        self.xt = self.torch_tensor(self.x, grad=True)
        self.dyt = self.torch_tensor(self.dy)
        self.weights = ()
        if "weight" in getattr(self.layer, "_params", {}):
            self.wt = self.torch_tensor(self.layer.weight, grad=True)
            self.bt = self.torch_tensor(self.layer.bias, grad=True)
            self.weights = (self.wt, self.bt)

    def torch_fwd_bwd(self):
        """dx alone, or (dx, dw, db) for a layer with weights."""
        grads = self.torch.autograd.grad(self.torch_fwd(), (self.xt, *self.weights), self.dyt)
        return grads if self.weights else grads[0]

    # check() for an op with y and dx only: against torch, or else against self.reference()
    rtol_y = rtol_dx = 1e-3

    def check(self, backward, torch=None):
        if torch is not None:
            self.setup_torch(torch)
            y, dx = host(self.torch_fwd()), host(self.torch_fwd_bwd())
        else:
            y, dx = self.reference()
        close(f"{self} y", self.fwd(), y, rtol=self.rtol_y)
        if backward:
            close(f"{self} dx", self.fwd_bwd(), dx, rtol=self.rtol_dx)

    def rate(self, seconds, backward):
        amount, unit = self.work(backward)
        return amount / seconds / 1e9, unit

    def __repr__(self):
        return self.name


# ---- convolution -----------------------------------------------------------------------------
def conv_reference(x, w, b, dy, s, p, groups):
    """numpy y, dx, dw, db of a grouped conv: one (kh, kw) tap at a time, each a tensordot."""
    N, C, H, W = x.shape
    OC, cg, KH, KW = w.shape
    og = OC // groups
    OH, OW = (H + 2 * p - KH) // s + 1, (W + 2 * p - KW) // s + 1
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    y = np.zeros((N, OC, OH, OW), F32)
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for g in range(groups):
        ci, oi = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
        for i in range(KH):
            for j in range(KW):
                rows, cols = slice(i, i + s * OH, s), slice(j, j + s * OW, s)
                xs = xp[:, ci, rows, cols]                                   # (N, cg, OH, OW)
                y[:, oi] += np.tensordot(w[oi, :, i, j], xs, ([1], [1])).transpose(1, 0, 2, 3)
                if dy is not None:
                    dyg = dy[:, oi]
                    dxp[:, ci, rows, cols] += np.tensordot(dyg, w[oi, :, i, j], ([1], [0])).transpose(0, 3, 1, 2)
                    dw[oi, :, i, j] = np.tensordot(dyg, xs, ([0, 2, 3], [0, 2, 3]))
    y += b[None, :, None, None]
    if dy is None:
        return y
    return y, dxp[:, :, p:p + H, p:p + W], dw, dy.sum((0, 2, 3))


class Conv(Case):
    def __init__(self, name, c, hw, oc, k, stride=1, padding=0, groups=1):
        rng = np.random.default_rng(0)
        self.name, self.s, self.p, self.groups = name, stride, padding, groups
        self.layer = nn.Conv2d(c, oc, k, stride, padding, groups)
        self.layer.bias = rng.standard_normal(oc).astype(F32) * 0.1
        self.x = rng.standard_normal((BATCH, c, hw, hw)).astype(F32)
        o = (hw + 2 * padding - k) // stride + 1
        self.dy = rng.standard_normal((BATCH, oc, o, o)).astype(F32)
        self.macs = BATCH * oc * o * o * (c // groups) * k * k

    def work(self, backward):
        return 2 * self.macs * (3 if backward else 1), "GFLOP/s"

    def torch_fwd(self):
        return self.F.conv2d(self.xt, self.wt, self.bt, self.s, self.p, 1, self.groups)

    def _grads(self):
        self.layer.zero_grad()
        dx = self.fwd_bwd()
        return dx, np.array(ops.to_numpy(self.layer.weight_grad)), np.array(ops.to_numpy(self.layer.bias_grad))

    def check(self, backward, torch=None):
        if torch is not None:
            self.setup_torch(torch)
            close(f"{self} y", self.fwd(), host(self.torch_fwd()))
            if backward:
                for what, got, want in zip(("dx", "dw", "db"), self._grads(), self.torch_fwd_bwd()):
                    close(f"{self} {what}", got, host(want))
            return
        w, b = ops.to_numpy(self.layer.weight), ops.to_numpy(self.layer.bias)
        if not backward:
            close(f"{self} y", self.fwd(), conv_reference(self.x, w, b, None, self.s, self.p, self.groups))
            return
        y, *grads = conv_reference(self.x, w, b, self.dy, self.s, self.p, self.groups)
        close(f"{self} y", self.fwd(), y)
        for what, got, want in zip(("dx", "dw", "db"), self._grads(), grads):
            close(f"{self} {what}", got, want)


# ---- max pooling ---------------------------------------------------------------------------
class MaxPool(Case):
    rtol_y, rtol_dx = 0, 1e-6  # a max is exact; dx only routes dy

    def __init__(self, name, c, hw, k, stride):
        rng = np.random.default_rng(1)
        self.name, self.k, self.s = name, k, stride
        self.layer = nn.MaxPool2d(k, stride)
        self.x = rng.standard_normal((BATCH, c, hw, hw)).astype(F32)
        o = (hw - k) // stride + 1
        self.dy = rng.standard_normal((BATCH, c, o, o)).astype(F32)

    def work(self, backward):
        fwd = self.x.nbytes + 2 * self.dy.nbytes            # read x; write y and the int32 argmax
        bwd = 2 * self.dy.nbytes + self.x.nbytes            # read dy and argmax; write dx
        return fwd + (bwd if backward else 0), "GB/s"

    def torch_fwd(self):
        return self.F.max_pool2d(self.xt, self.k, self.s)

    def reference(self):
        """numpy y and dx; each window routes dy to its first maximum (random data: no ties)."""
        o, k, s = self.dy.shape[-1], self.k, self.s
        taps = [(i, j) for i in range(k) for j in range(k)]
        win = lambda a, i, j: a[:, :, i:i + s * o:s, j:j + s * o:s]  # noqa: E731
        y = np.max([win(self.x, i, j) for i, j in taps], axis=0)
        dx, taken = np.zeros_like(self.x), np.zeros(y.shape, bool)
        for i, j in taps:
            hit = (win(self.x, i, j) == y) & ~taken
            win(dx, i, j)[...] += np.where(hit, self.dy, 0)
            taken |= hit
        return y, dx



# ---- local response normalization ----------------------------------------------------------
class LRN(Case):
    def __init__(self, name, c, hw, size, alpha, beta, k):
        rng = np.random.default_rng(2)
        self.name, self.args = name, (size, alpha, beta, k)
        self.layer = nn.LocalResponseNorm(size, alpha, beta, k)
        # post-ReLU conv1 activations are O(10): big enough that the normalization matters
        self.x = (rng.standard_normal((BATCH, c, hw, hw)) * 10).astype(F32)
        self.dy = rng.standard_normal(self.x.shape).astype(F32)

    def work(self, backward):
        return self.x.nbytes * (3 + (5 if backward else 0)), "GB/s"  # fwd x->y,scale; bwd dy,x,y,scale->dx

    def torch_fwd(self):
        size, alpha, beta, k = self.args  # torch also divides alpha by size
        return self.F.local_response_norm(self.xt, size, alpha, beta, k)

    def reference(self):
        """float64 numpy y and dx; channel window [c - size//2, c + (size-1)//2]."""
        size, alpha, beta, k = self.args
        x, dy = self.x.astype(np.float64), self.dy.astype(np.float64)
        C, lo, hi = x.shape[1], size // 2, (size - 1) // 2

        def window_sum(a, lo, hi):  # out_c = sum of a over channels c-lo .. c+hi
            cs = np.cumsum(np.pad(a, ((0, 0), (lo + 1, hi), (0, 0), (0, 0))), axis=1)
            return cs[:, size:size + C] - cs[:, :C]

        scale = k + alpha / size * window_sum(x * x, lo, hi)
        y = x * scale ** -beta
        dx = dy * scale ** -beta - 2 * alpha * beta / size * x * window_sum(dy * y / scale, hi, lo)
        return y, dx



# ---- fully connected -----------------------------------------------------------------------
class Linear(Case):
    def __init__(self, name, n_in, n_out):
        rng = np.random.default_rng(3)
        self.name = name
        self.layer = nn.Linear(n_in, n_out)
        self.layer.bias = rng.standard_normal(n_out).astype(F32) * 0.1
        self.x = rng.standard_normal((BATCH, n_in)).astype(F32)
        self.dy = rng.standard_normal((BATCH, n_out)).astype(F32)
        self.macs = BATCH * n_in * n_out

    def work(self, backward):
        return 2 * self.macs * (3 if backward else 1), "GFLOP/s"

    def torch_fwd(self):
        return self.F.linear(self.xt, self.wt, self.bt)

    def check(self, backward, torch=None):
        if torch is not None:
            self.setup_torch(torch)
            y = host(self.torch_fwd())
            grads = [host(g) for g in self.torch_fwd_bwd()] if backward else None
        else:
            x, w, dy = self.x, ops.to_numpy(self.layer.weight), self.dy   # float32 BLAS: 300 MB less than float64
            y = x @ w.T + ops.to_numpy(self.layer.bias)
            grads = (dy @ w, dy.T @ x, dy.sum(0))
        close(f"{self} y", self.fwd(), y)
        if backward:
            self.layer.zero_grad()
            got = (self.fwd_bwd(), self.layer.weight_grad, self.layer.bias_grad)
            for what, g, want in zip(("dx", "dw", "db"), got, grads):
                close(f"{self} {what}", g, want)


# ---- dropout -------------------------------------------------------------------------------
class Dropout(Case):
    """Masks differ between libraries, so both sides are checked for the same law: kept units are
    scaled by 1/(1-p), the rest are zero, the kept fraction is 1-p within 5 sigma, dx = dy * y/x."""

    def __init__(self, name, shape, p=0.5):
        rng = np.random.default_rng(4)
        self.name, self.p = name, p
        self.layer = nn.Dropout(p, seed=0)
        self.x = rng.standard_normal(shape).astype(F32)   # never exactly 0: y == 0 means dropped
        self.dy = rng.standard_normal(shape).astype(F32)

    def work(self, backward):
        fwd = self.x.size * 9                  # read x; write y (4 B) and the uint8 mask (1 B)
        return fwd * (2 if backward else 1), "GB/s"   # backward: read dy, mask; write dx

    def torch_fwd(self):
        return self.F.dropout(self.xt, self.p, training=True)

    def _check_law(self, who, y, dx=None):
        kept = y != 0
        n, q = y.size, 1 - self.p
        frac = kept.mean()
        assert abs(frac - q) < 5 * np.sqrt(q * (1 - q) / n), f"{who}: kept fraction {frac:.4f}, expected {q}"
        close(f"{who} y", y, np.where(kept, self.x / F32(q), 0), rtol=1e-6)
        if dx is not None:
            close(f"{who} dx", dx, np.where(kept, self.dy / F32(q), 0), rtol=1e-6)

    def check(self, backward, torch=None):
        y = ops.to_numpy(self.fwd())
        dx = ops.to_numpy(self.layer.backward(getattr(self, "dyd", self.dy))) if backward else None
        self._check_law(f"{self}", y, dx)
        if torch is not None:
            self.setup_torch(torch)
            with torch.no_grad():
                self._check_law(f"{self} (torch)", host(self.torch_fwd()))


# ---- softmax + cross-entropy ---------------------------------------------------------------
class SoftmaxXent(Case):
    def __init__(self, name, n, k):
        rng = np.random.default_rng(5)
        self.name = name
        self.layer = nn.SoftmaxCrossEntropy()
        self.x = (rng.standard_normal((n, k)) * 3).astype(F32)
        self.labels = rng.integers(0, k, n).astype(np.int64)

    def work(self, backward):
        fwd = 2 * self.x.nbytes + self.labels.nbytes          # read logits, labels; write prob
        bwd = 2 * self.x.nbytes + self.labels.nbytes          # read prob, labels; write dx
        return fwd + (bwd if backward else 0), "GB/s"

    def to(self, device):
        self.labels_d = ops.to_device(self.labels, device)
        return super().to(device)

    def fwd(self):
        return self.layer(getattr(self, "xd", self.x), getattr(self, "labels_d", self.labels))

    def fwd_bwd(self):
        self.fwd()
        return self.layer.backward()

    def setup_torch(self, torch):
        self.F, self.torch = torch.nn.functional, torch
        self.xt = self.torch_tensor(self.x, grad=True)
        self.lt = self.torch_tensor(self.labels)

    def torch_fwd(self):
        return self.F.cross_entropy(self.xt, self.lt)

    def torch_fwd_bwd(self):
        return self.torch.autograd.grad(self.torch_fwd(), self.xt)[0]

    def check(self, backward, torch=None):
        if torch is not None:
            self.setup_torch(torch)
            loss, dx = self.torch_fwd().item(), host(self.torch_fwd_bwd())
        else:
            x = self.x.astype(np.float64)
            z = x - x.max(1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(1, keepdims=True))
            rows = np.arange(len(x))
            loss = -logp[rows, self.labels].mean()
            dx = np.exp(logp)
            dx[rows, self.labels] -= 1
            dx /= len(x)
        close(f"{self} loss", self.fwd(), loss)
        if backward:
            close(f"{self} dx", self.fwd_bwd(), dx)


CASES = {  # name -> constructor, in AlexNet order
    "conv1": lambda: Conv("conv1", 3, 227, 96, 11, stride=4),
    "conv2": lambda: Conv("conv2", 96, 27, 256, 5, padding=2, groups=2),
    "conv3": lambda: Conv("conv3", 256, 13, 384, 3, padding=1),
    "conv4": lambda: Conv("conv4", 384, 13, 384, 3, padding=1, groups=2),
    "conv5": lambda: Conv("conv5", 384, 13, 256, 3, padding=1, groups=2),
    "maxpool": lambda: MaxPool("maxpool", 96, 55, 3, 2),
    "lrn": lambda: LRN("lrn", 96, 55, 5, 1e-4, 0.75, 2.0),
    "linear": lambda: Linear("linear", 9216, 4096),
    "dropout_fc": lambda: Dropout("dropout_fc", (BATCH, 4096)),
    "dropout_conv": lambda: Dropout("dropout_conv", (BATCH, 96, 55, 55)),
    "softmax_xent": lambda: SoftmaxXent("softmax_xent", 256, 1000),
}
NAMES = list(CASES)
