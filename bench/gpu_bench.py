"""pyconvnet's CUDA backend next to PyTorch + cuDNN on one GPU, in one process.

    python bench/gpu_bench.py [--batch 128] [--repeat 7] [--min-time 0.05] [--ops conv1,lrn1,...]
                              [--json FILE] [--profile FILE] [--skip-step]

Sections: (1) every op at the AlexNet 2012 shapes, forward and forward+backward; (2) the whole
AlexNet training step (forward, loss, backward, SGD with momentum and weight decay) with each
GEMM backend; (3) SGEMM at 4096^3: ours, cuBLAS (through pyconvnet) and torch.mm. A ratio table
with the targets of issue #4 comes last.

Both sides compute in FP32 with TF32 off (torch.backends.cuda.matmul.allow_tf32 = False,
torch.backends.cudnn.allow_tf32 = False); cuDNN picks its fastest algorithms (cudnn.benchmark).
A timing sample runs the op back to back for about --min-time seconds between two CUDA events on
the default stream, where both libraries queue their kernels, and waits for the end event, so
launch overhead counts on both sides; the median of --repeat samples per side is shown, the sides
sampled interleaved. Every op is checked against torch once before it is timed.
ratio = torch ms / pyconvnet ms: above 1, pyconvnet is faster.
"""
import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import numpy as np

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit("gpu_bench.py needs PyTorch with CUDA")
try:
    import pyconvnet
except ImportError:  # a source checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import pyconvnet  # noqa: F401
from pyconvnet import cuda, models, nn, ops, optim

F32 = np.float32
TARGETS = {"conv": 0.5, "maxpool": 1.0, "lrn": 1.0, "softmax_xent": 1.0, "alexnet_step": 0.5,
           "sgemm_4096": 0.7}


# ---------------------------------------------------------------- timing
def sample(fn, inner):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(inner):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / inner


def time_pair(fns, repeat, min_time):
    """Median seconds per call of each function, sampled interleaved A B B A ..."""
    inner = []
    for f in fns:
        f()
        torch.cuda.synchronize()
        inner.append(max(1, math.ceil(min_time / max(sample(f, 1), 1e-6))))
    samples = [[] for _ in fns]
    for r in range(repeat):
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            samples[i].append(sample(fns[i], inner[i]))
    return [statistics.median(s) for s in samples]


def close(what, ours, theirs, rtol=2e-3):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs torch {theirs.shape}"
    scale = max(np.abs(theirs).max(), 1e-30)
    err = np.abs(ours - theirs).max()
    assert err <= rtol * scale, f"{what}: max error {err:.3g} > {rtol} * {scale:.3g}"


def host(t):
    return t.detach().cpu().numpy()


# ---------------------------------------------------------------- one layer at the AlexNet shapes
class LayerCase:
    """A pyconvnet layer on the GPU and the same computation in torch.nn.functional."""

    def __init__(self, name, layer, x_shape, torch_fn, first=False, scale=1.0):
        self.name, self.first = name, first
        rng = np.random.default_rng(0)
        x = (rng.standard_normal(x_shape) * scale).astype(F32)
        self.model = nn.Sequential(layer).to("cuda")
        self.layer = layer
        layer.need_input_grad = not first
        self.x = cuda.asarray(x)
        self.tx = torch.tensor(x, device="cuda", requires_grad=not first)
        self.tp = [torch.tensor(ops.to_numpy(p), device="cuda", requires_grad=True)
                   for _, p, _ in layer.named_parameters()]
        self.torch_fn = torch_fn
        y = self.model(self.x)
        dy = rng.standard_normal(y.shape).astype(F32)
        self.dy, self.tdy = cuda.asarray(dy), torch.tensor(dy, device="cuda")

    def fwd(self):
        return self.model(self.x)

    def fwd_bwd(self):
        self.model(self.x)
        return self.model.backward(self.dy)

    def torch_fwd(self):
        with torch.no_grad():
            return self.torch_fn(self.tx, *self.tp)

    def torch_fwd_bwd(self):
        for t in (self.tx, *self.tp):
            t.grad = None  # fresh gradients: no extra `grad +=` pass that pyconvnet's dx does not pay
        y = self.torch_fn(self.tx, *self.tp)
        torch.autograd.backward(y, self.tdy)

    def check(self):
        close(f"{self.name} forward", ops.to_numpy(self.fwd()), host(self.torch_fwd()))
        self.model.zero_grad()
        for t in [self.tx, *self.tp]:
            t.grad = None
        dx = self.fwd_bwd()
        self.torch_fwd_bwd()
        if not self.first:
            close(f"{self.name} dx", ops.to_numpy(dx), host(self.tx.grad))
        for (n, _, g), t in zip(self.layer.named_parameters(), self.tp):
            close(f"{self.name} d{n}", ops.to_numpy(g), host(t.grad))


class XentCase(LayerCase):
    def __init__(self, batch, classes=1000):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, classes)).astype(F32)
        labels = rng.integers(0, classes, batch).astype(np.int64)
        self.name, self.first = "softmax_xent", False
        self.crit = nn.SoftmaxCrossEntropy()
        self.x, self.labels = cuda.asarray(x), cuda.asarray(labels)
        self.tx = torch.tensor(x, device="cuda", requires_grad=True)
        self.tlabels = torch.tensor(labels, device="cuda")

    def fwd(self):
        return self.crit(self.x, self.labels)

    def fwd_bwd(self):
        self.crit(self.x, self.labels)
        return self.crit.backward()

    def torch_fwd(self):
        with torch.no_grad():
            return F.cross_entropy(self.tx, self.tlabels)

    def torch_fwd_bwd(self):
        self.tx.grad = None
        F.cross_entropy(self.tx, self.tlabels).backward()

    def check(self):
        close("softmax_xent loss", float(self.fwd()), float(self.torch_fwd()))
        self.tx.grad = None
        dx = self.fwd_bwd()
        self.torch_fwd_bwd()
        close("softmax_xent dx", ops.to_numpy(dx), host(self.tx.grad))


class DropoutCase(LayerCase):
    """Masks differ from torch's (another generator): checked by the kept fraction and scale."""

    def check(self):
        y = ops.to_numpy(self.fwd())
        kept = y != 0
        assert abs(kept.mean() - 0.5) < 0.01, f"dropout kept {kept.mean():.3f}"
        close("dropout scale", y[kept], 2 * self.x.numpy()[kept])


def cases(b):
    lrn = lambda: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)  # noqa: E731
    tlrn = lambda x: F.local_response_norm(x, 5, alpha=5e-4, beta=0.75, k=2.0)  # noqa: E731
    conv = lambda s, p, g: (lambda x, w, bias: F.conv2d(x, w, bias, s, p, 1, g))  # noqa: E731
    lin = lambda x, w, bias: F.linear(x, w, bias)  # noqa: E731
    pool = lambda x: F.max_pool2d(x, 3, 2)  # noqa: E731
    return {
        "conv1": lambda: LayerCase("conv1", nn.Conv2d(3, 96, 11, stride=4), (b, 3, 227, 227), conv(4, 0, 1), first=True),
        "relu1": lambda: LayerCase("relu1", nn.ReLU(), (b, 96, 55, 55), F.relu),
        "lrn1": lambda: LayerCase("lrn1", lrn(), (b, 96, 55, 55), tlrn, scale=10),
        "maxpool1": lambda: LayerCase("maxpool1", nn.MaxPool2d(3, 2), (b, 96, 55, 55), pool),
        "conv2": lambda: LayerCase("conv2", nn.Conv2d(96, 256, 5, padding=2, groups=2), (b, 96, 27, 27), conv(1, 2, 2)),
        "lrn2": lambda: LayerCase("lrn2", lrn(), (b, 256, 27, 27), tlrn, scale=10),
        "maxpool2": lambda: LayerCase("maxpool2", nn.MaxPool2d(3, 2), (b, 256, 27, 27), pool),
        "conv3": lambda: LayerCase("conv3", nn.Conv2d(256, 384, 3, padding=1), (b, 256, 13, 13), conv(1, 1, 1)),
        "conv4": lambda: LayerCase("conv4", nn.Conv2d(384, 384, 3, padding=1, groups=2), (b, 384, 13, 13), conv(1, 1, 2)),
        "conv5": lambda: LayerCase("conv5", nn.Conv2d(384, 256, 3, padding=1, groups=2), (b, 384, 13, 13), conv(1, 1, 2)),
        "maxpool5": lambda: LayerCase("maxpool5", nn.MaxPool2d(3, 2), (b, 256, 13, 13), pool),
        "fc6": lambda: LayerCase("fc6", nn.Linear(9216, 4096), (b, 9216), lin),
        "dropout6": lambda: DropoutCase("dropout6", nn.Dropout(0.5, seed=1), (b, 4096), lambda x: F.dropout(x, 0.5)),
        "fc7": lambda: LayerCase("fc7", nn.Linear(4096, 4096), (b, 4096), lin),
        "fc8": lambda: LayerCase("fc8", nn.Linear(4096, 1000), (b, 4096), lin),
        "softmax_xent": lambda: XentCase(b),
    }


def target_of(name):
    for key in ("conv", "maxpool", "lrn", "softmax_xent"):
        if name.startswith(key):
            return key
    return None


# ---------------------------------------------------------------- the AlexNet training step
def torch_alexnet(ours):
    tnn = torch.nn
    lrn = lambda: tnn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)  # noqa: E731
    m = tnn.Sequential(
        tnn.Conv2d(3, 96, 11, stride=4), tnn.ReLU(), lrn(), tnn.MaxPool2d(3, 2),
        tnn.Conv2d(96, 256, 5, padding=2, groups=2), tnn.ReLU(), lrn(), tnn.MaxPool2d(3, 2),
        tnn.Conv2d(256, 384, 3, padding=1), tnn.ReLU(),
        tnn.Conv2d(384, 384, 3, padding=1, groups=2), tnn.ReLU(),
        tnn.Conv2d(384, 256, 3, padding=1, groups=2), tnn.ReLU(), tnn.MaxPool2d(3, 2),
        tnn.Flatten(),
        tnn.Linear(9216, 4096), tnn.ReLU(), tnn.Dropout(0.5),
        tnn.Linear(4096, 4096), tnn.ReLU(), tnn.Dropout(0.5),
        tnn.Linear(4096, 1000)).cuda()
    m.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    return m


def write_profile(path, steps, n=3):
    """A kernel-time table (torch.profiler, which also sees pyconvnet's kernels) of n calls of
    each step function; a profiler failure is reported, never fatal."""
    try:
        from torch.profiler import ProfilerActivity, profile
        out = []
        for name, fn in steps:
            fn()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(n):
                    fn()
                torch.cuda.synchronize()
            try:
                table = prof.key_averages().table(sort_by="device_time_total", row_limit=40)
            except Exception:  # noqa: BLE001  (torch < 2.4 names it cuda_time_total)
                table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=40)
            out.append(f"== {name}: {n} steps\n" + table)
        Path(path).write_text("\n\n".join(out) + "\n")
        print(f"  profile written to {path}")
    except Exception as e:  # noqa: BLE001
        print(f"  profile failed: {type(e).__name__}: {e}")


def alexnet_step(batch, repeat, min_time, profile=None):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, 227, 227)).astype(F32)
    y = rng.integers(0, 1000, batch).astype(np.int64)
    model = models.alexnet(1000).to("cuda")
    model[0].need_input_grad = False
    tm = torch_alexnet(model)
    opt, crit = optim.SGD(model, 0.01, 0.9, 5e-4), nn.SoftmaxCrossEntropy()
    topt = torch.optim.SGD(tm.parameters(), 0.01, momentum=0.9, weight_decay=5e-4)
    dx, dy, tx, ty = cuda.asarray(x), cuda.asarray(y), torch.tensor(x, device="cuda"), torch.tensor(y, device="cuda")

    model.eval()  # the same function once dropout is off
    tm.eval()
    with torch.no_grad():
        close("alexnet logits", ops.to_numpy(model(dx)), host(tm(tx)), rtol=1e-2)
    model.train()
    tm.train()

    def ours():
        loss = crit(model(dx), dy)
        model.zero_grad()
        model.backward(crit.backward())
        opt.step()
        return loss

    def theirs():
        topt.zero_grad(set_to_none=False)
        loss = F.cross_entropy(tm(tx), ty)
        loss.backward()
        topt.step()
        return loss

    rows = []
    backends = ["cublas", "ours"] if cuda.why_no_cublas() is None else ["ours"]
    for be in backends:
        cuda.set_gemm_backend(be)
        t_ours, t_torch = time_pair([ours, theirs], repeat, min_time)
        rows.append((f"alexnet_step[{be}]", "step", t_ours, t_torch))
    cuda.set_gemm_backend(backends[0])
    assert np.isfinite(float(ours())), "pyconvnet AlexNet loss is not finite"
    if profile:
        write_profile(profile, [(f"pyconvnet (GEMM {backends[0]})", ours), ("torch", theirs)])
    return rows


# ---------------------------------------------------------------- SGEMM
def sgemm_rows(n, repeat, min_time):
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(F32) for _ in range(2))
    da, db, dc = cuda.asarray(a), cuda.asarray(b), cuda.empty((n, n))
    ta, tb = torch.tensor(a, device="cuda"), torch.tensor(b, device="cuda")
    tc = torch.empty_like(ta)
    want = host(ta @ tb)
    rows, fns, names = [], [], []
    for be in (["ours", "cublas"] if cuda.why_no_cublas() is None else ["ours"]):
        cuda.set_gemm_backend(be)
        cuda.sgemm(dc, da, db)
        close(f"sgemm {be}", dc.numpy(), want, rtol=1e-4)
        fns.append(lambda be=be: (cuda.set_gemm_backend(be), cuda.sgemm(dc, da, db)))
        names.append(be)
    fns.append(lambda: torch.mm(ta, tb, out=tc))
    names.append("torch.mm")
    times = time_pair(fns, repeat, min_time)
    flops = 2.0 * n ** 3
    for name, t in zip(names, times):
        print(f"  sgemm {n}^3 {name:<9} {t * 1e3:8.3f} ms  {flops / t / 1e12:6.2f} TFLOP/s")
    cuda.set_gemm_backend(names[-2] if len(names) > 2 else "ours")
    if "cublas" in names:
        rows.append((f"sgemm_{n}", "ours vs cublas", times[0], times[1]))
    return rows


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--min-time", type=float, default=0.05)
    ap.add_argument("--ops", default=None, help="comma-separated subset of the op cases")
    ap.add_argument("--skip-step", action="store_true", help="leave out the AlexNet step")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--profile", default=None, help="write a kernel-time profile of the AlexNet step here")
    args = ap.parse_args()
    if not cuda.is_available():
        sys.exit(f"pyconvnet.cuda is not available: {cuda.why_unavailable()}")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    print(f"{torch.cuda.get_device_name()}; torch {torch.__version__} (CUDA {torch.version.cuda}, "
          f"cuDNN {torch.backends.cudnn.version()}); pyconvnet GEMM backend {cuda.gemm_backend()}"
          + (f" (cuBLAS not loaded: {cuda.why_no_cublas()})" if cuda.why_no_cublas() else "")
          + f"; FP32, TF32 off; batch {args.batch}; median of {args.repeat}")

    table = cases(args.batch)
    names = list(table) if args.ops is None else [s.strip() for s in args.ops.split(",") if s.strip()]
    rows, failures = [], []

    def save():
        if args.json:
            Path(args.json).write_text(json.dumps({
                "device": torch.cuda.get_device_name(), "torch": torch.__version__,
                "batch": args.batch, "gemm_backend": cuda.gemm_backend(), "failures": failures,
                "rows": [{"case": n, "pass": p, "pyconvnet_ms": a * 1e3, "torch_ms": b * 1e3,
                          "ratio": b / a} for n, p, a, b in rows]}, indent=1))

    def failed(what, e):  # a failure is reported and the run goes on to the next section
        failures.append(f"{what}: {type(e).__name__}: {e}")
        print(f"FAILED {failures[-1]}")

    print(f"\n{'op':<14} {'pass':<8} {'pyconvnet ms':>12} {'torch ms':>9} {'ratio':>6}")
    for name in names:
        try:
            case = table[name]()
            try:
                case.check()
            except AssertionError as e:  # wrong numbers: say so, still time it
                failed(f"{name} check", e)
            for pass_name, ours, theirs in (("fwd", case.fwd, case.torch_fwd),
                                            ("fwd+bwd", case.fwd_bwd, case.torch_fwd_bwd)):
                t_ours, t_torch = time_pair([ours, theirs], args.repeat, args.min_time)
                rows.append((name, pass_name, t_ours, t_torch))
                print(f"{name:<14} {pass_name:<8} {t_ours * 1e3:12.3f} {t_torch * 1e3:9.3f} {t_torch / t_ours:6.2f}")
            if name.startswith(("conv", "fc")) and cuda.gemm_backend() == "cublas":
                cuda.set_gemm_backend("ours")  # the same layer on our SGEMM, for information
                try:
                    t_ours, t_torch = time_pair([case.fwd_bwd, case.torch_fwd_bwd], args.repeat, args.min_time)
                finally:
                    cuda.set_gemm_backend("cublas")
                rows.append((name, "fwd+bwd[ours]", t_ours, t_torch))
                print(f"{name:<14} {'[ours]':<8} {t_ours * 1e3:12.3f} {t_torch * 1e3:9.3f} {t_torch / t_ours:6.2f}")
        except Exception as e:  # noqa: BLE001
            failed(name, e)
        case = None
        cuda.empty_cache()
        torch.cuda.empty_cache()
    save()

    if not args.skip_step:
        print("\nAlexNet training step (forward, loss, backward, SGD):")
        try:
            for r in alexnet_step(args.batch, args.repeat, args.min_time, args.profile):
                rows.append(r)
                print(f"  {r[0]:<22} {r[2] * 1e3:9.2f} ms  torch {r[3] * 1e3:9.2f} ms  ratio {r[3] / r[2]:.2f}")
        except Exception as e:  # noqa: BLE001
            failed("alexnet_step", e)
        save()
    print("\nSGEMM:")
    try:
        rows += sgemm_rows(4096, args.repeat, args.min_time)
    except Exception as e:  # noqa: BLE001
        failed("sgemm", e)
    save()

    print("\n== ratio table: torch time / pyconvnet time (> 1: pyconvnet faster); "
          "targets from issue #4 ==")
    print(f"{'case':<22} {'pass':<15} {'ratio':>6}  target")
    misses = 0
    for name, pass_name, t_ours, t_ref in rows:
        ratio = t_ref / t_ours
        key = "alexnet_step" if name.startswith("alexnet_step") else (
            name if name.startswith("sgemm") else target_of(name))
        want = TARGETS.get(key) if (pass_name != "fwd" or key is None) else None
        if name == "alexnet_step[ours]" or pass_name.endswith("[ours]"):
            want = None  # reported; the target is for the default (cuBLAS) backend
        verdict = "" if want is None else (f">= {want:.1f} " + ("ok" if ratio >= want else "MISS"))
        misses += verdict.endswith("MISS")
        print(f"{name:<22} {pass_name:<15} {ratio:6.2f}  {verdict}".rstrip())
    print(f"{misses} target(s) missed" if misses else "all targets met")
    if failures:
        print(f"{len(failures)} failure(s):\n  " + "\n  ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
