"""Fully connected vs locally connected vs convolutional layers: the lecture's weight-sharing
argument as arithmetic (worked_example), as measured cost (measure_series) and as accuracy
(compare_accuracy).

For one input x (N, C, S, S) the three layers give the same hidden units, maps x O x O
(O = S + 2*pad - field + 1, pad = (field-1)//2, so O = S for odd fields):
  fc    Linear(C*S*S, maps*O*O) on the flattened image   weights C*S^2 * maps*O^2     ~ S^4
  lc    LocallyConnected2d(C, maps, S, field)             weights maps*O^2 * C*field^2 ~ S^2
  conv  Conv2d(C, maps, field)                            weights maps * C*field^2     constant
lc and conv do the same arithmetic, 2*N*maps*O^2*C*field^2 FLOPs forward; fc does 2*N*C*S^2*maps*O^2.
They are one family: conv is lc with every location's filters equal, and lc is fc with a sparse
(banded) weight matrix; check_family() asserts that on the actual kernels before anything is timed.

Memory is counted before anything is allocated (memory_plan: values + gradients of the parameters,
x, y, dy, dx and the kernel workspace), and a size is measured only when that count fits the budget;
the time of the others is extrapolated by a power law fitted to the measured sizes.
"""
import os
import time

import numpy as np

from . import _core, get_num_threads, nn
from ._workspace import get_workspace_limit

KINDS = ("fc", "lc", "conv")
COLORS = {"fc": "tab:red", "lc": "tab:orange", "conv": "tab:blue"}
SERIES = {"batch": 8, "channels": 1, "maps": 10, "field": 5,
          "sizes": (16, 32, 64, 128, 256, 512, 1024, 2048)}
QUICK_SERIES = {"batch": 2, "channels": 1, "maps": 4, "field": 3, "sizes": (8, 16, 24, 32)}
QUICK_BUDGET = 16 << 20
LC_WIDE = {"batch": 32, "channels": 16, "maps": 32, "field": 3, "sizes": (16, 32)}  # lc vs torch, more channels


def worked_example(side=200, hidden=400_000, field=10, maps=10):
    """The lecture's count for a side x side grey image (Ranzato): weights and biases of a fully
    connected, a locally connected (field x field) and a convolutional (maps filters) layer."""
    fc, lc, conv = side * side * hidden, hidden * field * field, maps * field * field
    out = {"side": side, "hidden": hidden, "field": field, "maps": maps}
    for kind, w, b in (("fc", fc, hidden), ("lc", lc, hidden), ("conv", conv, maps)):
        out[kind] = {"weights": w, "biases": b, "bytes": 4 * (w + b)}
    return out


def format_worked_example(ex):
    s, f = ex["side"], ex["field"]
    return "\n".join([
        f"{s}x{s} image, {ex['hidden']:,} hidden units, {f}x{f} fields, {ex['maps']} conv maps:",
        *(f"  {name:<22} {ex[k]['weights']:>18,.0f} weights {ex[k]['weights']:9.2g}"
          f"  + {ex[k]['biases']:,} biases ({human_bytes(ex[k]['bytes'])} float32)"
          for k, name in (("fc", "fully connected"), ("lc", "locally connected"), ("conv", "convolutional")))])


# ---- geometry and memory, all before allocating -------------------------------------------
def geometry(side, cfg):
    """(padding, output side O, hidden units maps*O*O) of the layers for a side x side input."""
    pad = (cfg["field"] - 1) // 2
    o = side + 2 * pad - cfg["field"] + 1
    return pad, o, cfg["maps"] * o * o


def _shaped(*shape):
    """A float32 array of any shape backed by one element (zero strides): for shape queries only."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape, (0,) * len(shape))


def _workspace_floats(slot, count):
    """What pyconvnet._workspace allocates for count slots of slot floats, at most."""
    return slot * max(1, min(count, get_workspace_limit() // (4 * slot)))


def param_count(kind, side, cfg):
    n_in, (_, o, hidden), k2 = cfg["channels"] * side * side, geometry(side, cfg), cfg["field"] ** 2
    return {"fc": n_in * hidden + hidden, "lc": hidden * cfg["channels"] * k2 + hidden,
            "conv": cfg["maps"] * cfg["channels"] * k2 + cfg["maps"]}[kind]


def memory_plan(kind, side, cfg):
    """Bytes a forward + backward of `kind` at this size holds: parameter values and gradients,
    activations x, y, dy, dx, and (an upper bound of) the kernel workspace. Nothing is allocated.
    For lc, torch_unfold_bytes is what its PyTorch equivalent adds: its own weights, activations
    and gradients, and 4 copies of the columns (N, C*k*k, O*O) (unfold, the location-major copy
    and their gradients)."""
    N, C, M, k = cfg["batch"], cfg["channels"], cfg["maps"], cfg["field"]
    pad, o, hidden = geometry(side, cfg)
    x = _shaped(N, C, side, side)
    ws = 0
    if kind == "lc":  # the kernels ask for one slot per image (lc) or per image or thread (conv)
        ws = _workspace_floats(_core.local2d_slot_floats(x, _shaped(o, o, M, C, k, k), (1, 1), (pad, pad)), N)
    elif kind == "conv":
        ws = _workspace_floats(_core.conv2d_slot_floats(x, _shaped(M, C, k, k), (1, 1), (pad, pad), 1, True),
                               max(N, get_num_threads()))
    params = param_count(kind, side, cfg)
    plan = {"params": params, "param_bytes": 8 * params,
            "activation_bytes": 8 * (N * C * side * side + N * hidden), "workspace_bytes": 4 * ws}
    plan["memory_bytes"] = plan["param_bytes"] + plan["activation_bytes"] + plan["workspace_bytes"]
    if kind == "lc":
        plan["torch_unfold_bytes"] = plan["param_bytes"] + plan["activation_bytes"] + 16 * N * C * k * k * o * o
    return plan


def human_bytes(n):
    for unit, size in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:.0f} B"


def default_budget():
    """Bytes a benchmark may hold: a quarter of the memory free now, at most 2 GiB."""
    try:
        return min(2 << 30, os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4)
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows)
        return 1 << 30


def fit_power_law(sizes, values, last=3):
    """(a, b) with value ~ a * size**b, least squares in log-log over the `last` largest sizes
    (the small ones are dominated by fixed per-call costs). None with fewer than two sizes."""
    pts = sorted((float(s), float(v)) for s, v in zip(sizes, values) if v and v > 0)[-last:]
    if len(pts) < 2:
        return None
    b, log_a = np.polyfit(np.log([p[0] for p in pts]), np.log([p[1] for p in pts]), 1)
    return float(np.exp(log_a)), float(b)


# ---- the three layers at one size ---------------------------------------------------------
class LayerCase:
    """One layer at one size with its input and output gradient. CPU only: a device would add
    its array transfers here (and a synchronisation in fwd and bwd)."""

    def __init__(self, kind, side, cfg, device="cpu", seed=0):
        if device != "cpu":
            raise ValueError(f"connectivity: no {device!r} rows yet; only 'cpu'")
        N, C, M, k = cfg["batch"], cfg["channels"], cfg["maps"], cfg["field"]
        pad, o, hidden = geometry(side, cfg)
        self.kind, self.side, self.cfg = kind, side, cfg
        self.layer = {"fc": lambda: nn.Linear(C * side * side, hidden),
                      "lc": lambda: nn.LocallyConnected2d(C, M, side, k, 1, pad),
                      "conv": lambda: nn.Conv2d(C, M, k, 1, pad)}[kind]()
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((N, C, side, side), dtype=np.float32)
        dy = rng.standard_normal((N, hidden), dtype=np.float32)
        self.x, self.dy = (x.reshape(N, -1), dy) if kind == "fc" else (x, dy.reshape(N, M, o, o))
        self.flops = 2 * N * hidden * (C * side * side if kind == "fc" else C * k * k)

    def fwd(self):
        return self.layer(self.x)

    def bwd(self):
        """Backward alone (reads what the last forward saved): dx and the accumulated dw, db."""
        return self.layer.backward(self.dy)


def check_family(cases, rtol=1e-4):
    """Sets lc's filters at every location to conv's and fc's weights to the banded matrix of
    the same convolution, then asserts that the three give the same y and dx, and that lc's dw
    summed over locations is conv's dw. cases: kind -> LayerCase at one size, conv included."""
    conv = cases["conv"].layer
    conv.bias = np.random.default_rng(1).standard_normal(conv.bias.shape).astype(np.float32)
    side, cfg = cases["conv"].side, cases["conv"].cfg
    pad, o, _ = geometry(side, cfg)
    if "lc" in cases:
        lc = cases["lc"].layer
        lc.weight = np.broadcast_to(conv.weight, lc.weight.shape)
        lc.bias = np.broadcast_to(conv.bias[:, None, None], lc.bias.shape)
    if "fc" in cases:
        fc = cases["fc"].layer
        fc.weight[...] = 0
        M, C, k, _ = conv.weight.shape
        oh, ow = np.divmod(np.arange(o * o), o)
        for c in range(C):
            for i in range(k):
                for j in range(k):
                    ih, iw = oh - pad + i, ow - pad + j
                    ok = (ih >= 0) & (ih < side) & (iw >= 0) & (iw < side)
                    rows = np.arange(M)[:, None] * o * o + (oh * o + ow)[ok]
                    fc.weight[rows, (c * side + ih[ok]) * side + iw[ok]] = conv.weight[:, c, i, j, None]
        fc.bias = np.repeat(conv.bias, o * o)
    ref = cases["conv"]
    y_ref, dx_ref = ref.fwd(), ref.bwd()
    scale = lambda a: rtol * (np.abs(a).max() + 1e-30)  # noqa: E731
    for kind, case in cases.items():
        case.layer.zero_grad()
        y, dx = case.fwd().reshape(y_ref.shape), case.bwd().reshape(dx_ref.shape)
        for what, got, want in (("y", y, y_ref), ("dx", dx, dx_ref)):
            err = np.abs(got - want).max()
            assert err <= scale(want), f"connectivity {kind} at {side}: {what} differs from conv by {err:.3g}"
    if "lc" in cases:
        err = np.abs(cases["lc"].layer.weight_grad.sum(axis=(0, 1)) - conv.weight_grad).max()
        assert err <= 10 * scale(conv.weight_grad), (
            f"connectivity lc at {side}: dw summed over locations differs from conv's by {err:.3g}")


class TorchUnfoldLC:
    """PyTorch's equivalent of a LayerCase("lc"): F.unfold to columns (N, C*k*k, L), a
    location-major contiguous copy (L, N, C*k*k) and one bmm with the weights (L, maps, C*k*k),
    the same data layout as pyconvnet's kernel. Autograd gives the backward."""

    def __init__(self, case, torch):
        lc, self.torch, self.F = case.layer, torch, torch.nn.functional
        o, M = lc.output_size[0], lc.out_channels
        self.shape, self.k, self.pad = (case.x.shape[0], M, o, o), lc.kernel_size, lc.padding
        self.w = torch.from_numpy(lc.weight.reshape(o * o, M, -1).copy()).requires_grad_()
        self.b = torch.from_numpy(lc.bias.reshape(M, o * o).copy()).requires_grad_()
        self.x = torch.from_numpy(case.x.copy()).requires_grad_()
        self.dy = torch.from_numpy(case.dy)

    def fwd(self):
        cols = self.F.unfold(self.x, self.k, padding=self.pad).permute(2, 0, 1).contiguous()
        y = self.torch.bmm(cols, self.w.transpose(1, 2))            # (L, N, maps)
        self._y = (y.permute(1, 2, 0) + self.b).reshape(self.shape)
        return self._y

    def bwd(self):
        return self.torch.autograd.grad(self._y, (self.x, self.w, self.b), self.dy, retain_graph=True)

    def check(self, case, rtol=1e-3):
        y = self.fwd().detach().numpy()
        case.layer.zero_grad()
        want = [y, *(g.numpy() for g in self.bwd())]
        got = [case.fwd(), case.bwd(), case.layer.weight_grad, case.layer.bias_grad]
        for what, g, t in zip(("y", "dx", "dw", "db"), got, want):
            err = np.abs(g.reshape(t.shape) - t).max()
            assert err <= rtol * (np.abs(t).max() + 1e-30), f"lc vs torch unfold: {what} differs by {err:.3g}"


# ---- the size series ------------------------------------------------------------------------
def plan_size(side, cfg, budget, torch_unfold=False):
    """(kinds to measure, whether to run lc's torch equivalent, plans) at this size: conv, then lc,
    then fc, then torch's lc, while their bytes, all alive together, stay within the budget.
    Nothing is measured unless conv fits (check_family's reference)."""
    plans = {k: memory_plan(k, side, cfg) for k in KINDS}
    chosen, total = [], 0
    for kind in ("conv", "lc", "fc"):
        if total + plans[kind]["memory_bytes"] <= budget and (chosen or kind == "conv"):
            chosen.append(kind)
            total += plans[kind]["memory_bytes"]
    with_torch = torch_unfold and "lc" in chosen and total + plans["lc"]["torch_unfold_bytes"] <= budget
    return chosen, with_torch, plans


def measure_series(cfg, budget, repeat=5, min_time=0.05, torch=None, progress=None):
    """Rows (kind, side, params, memory, fwd/bwd seconds, GFLOP/s) for every size in cfg["sizes"].
    Sizes that do not fit `budget` are never allocated: their times come from fit_power_law on the
    measured sizes (estimated=True). Per size, all layers (and lc's torch equivalent when `torch`
    is given) are timed interleaved in one process. progress(n) is called as work completes."""
    from .bench_cli import time_interleaved
    rows, versus = [], []
    for side in cfg["sizes"]:
        chosen, with_torch, plans = plan_size(side, cfg, budget, torch is not None)
        cases = {k: LayerCase(k, side, cfg) for k in chosen}
        if cases:
            check_family(cases)
        tlc = None
        if with_torch:
            tlc = TorchUnfoldLC(cases["lc"], torch)
            tlc.check(cases["lc"])
        fns = [f for c in cases.values() for f in (c.fwd, c.bwd)] + ([tlc.fwd, tlc.bwd] if tlc else [])
        times = time_interleaved(fns, repeat, min_time) if fns else []
        for kind in KINDS:
            row = {"kind": kind, "side": side, "hidden": geometry(side, cfg)[2], **plans[kind],
                   "measured": kind in cases, "estimated": kind not in cases}
            if kind in cases:
                i = 2 * list(cases).index(kind)
                fl = cases[kind].flops
                row.update(fwd_s=times[i], bwd_s=times[i + 1], fwd_gflops=fl / times[i] / 1e9,
                           bwd_gflops=2 * fl / times[i + 1] / 1e9)
            else:
                row["note"] = (f"not allocated: {human_bytes(plans[kind]['memory_bytes'])} "
                               f"over the {human_bytes(budget)} budget")
            rows.append(row)
        if tlc:
            i = 2 * list(cases).index("lc")
            versus.append(_versus(side, cfg, cases["lc"].flops, times[i:i + 2] + times[-2:]))
        del cases, tlc, fns
        if progress:
            progress(1)
    return {"config": dict(cfg, sizes=list(cfg["sizes"])), "budget_bytes": budget, "rows": rows,
            "fits": _extrapolate(rows), "torch_unfold": versus}


def compare_lc_torch(cfg, budget, torch, repeat=5, min_time=0.05):
    """lc against TorchUnfoldLC alone, at the sizes of cfg whose two layers fit the budget."""
    from .bench_cli import time_interleaved
    rows = []
    for side in cfg["sizes"]:
        plan = memory_plan("lc", side, cfg)
        if plan["memory_bytes"] + plan["torch_unfold_bytes"] <= budget:
            ours = LayerCase("lc", side, cfg)
            theirs = TorchUnfoldLC(ours, torch)
            theirs.check(ours)
            times = time_interleaved([ours.fwd, ours.bwd, theirs.fwd, theirs.bwd], repeat, min_time)
            rows.append(_versus(side, cfg, ours.flops, times))
    return rows


def _versus(side, cfg, flops, times):
    """A row of lc (times[:2], fwd and bwd) against torch (times[2:])."""
    ours, theirs = sum(times[:2]), sum(times[2:])
    return {"side": side, "batch": cfg["batch"], "channels": cfg["channels"], "maps": cfg["maps"],
            "field": cfg["field"], "ours_fwd_s": times[0], "ours_bwd_s": times[1], "torch_fwd_s": times[2],
            "torch_bwd_s": times[3], "ratio_fwd_bwd": theirs / ours, "ours_gflops": 3 * flops / ours / 1e9,
            "torch_gflops": 3 * flops / theirs / 1e9}


def _extrapolate(rows):
    """Fill the estimated rows' times (and a fitted memory, to compare with the count) from power
    laws fitted per kind to the measured rows; returns the fits as {kind: {what: (a, b)}}."""
    fits = {}
    for kind in KINDS:
        got = [r for r in rows if r["kind"] == kind and r["measured"]]
        fits[kind] = {w: fit_power_law([r["side"] for r in got], [r[w] for r in got])
                      for w in ("fwd_s", "bwd_s", "memory_bytes")}
        for r in rows:
            if r["kind"] == kind and r["estimated"]:
                for w, f in fits[kind].items():
                    if f:
                        r[w if w != "memory_bytes" else "memory_fit_bytes"] = f[0] * r["side"] ** f[1]
    return fits


# ---- accuracy: the same depth and hidden units, very different parameter counts ----------
def accuracy_net(kind, maps=(8, 16), field=5):
    """Two hidden layers and a 10-way linear output for 28x28 digits: maps[0] x 14 x 14 then
    maps[1] x 7 x 7 hidden units (field x field, stride 2), fully or locally connected or shared."""
    (m1, m2), p = maps, (field - 1) // 2
    if kind == "fc":
        hidden = [nn.Flatten(), nn.Linear(784, m1 * 196), nn.ReLU(), nn.Linear(m1 * 196, m2 * 49), nn.ReLU()]
    elif kind == "lc":
        hidden = [nn.LocallyConnected2d(1, m1, 28, field, 2, p), nn.ReLU(),
                  nn.LocallyConnected2d(m1, m2, 14, field, 2, p), nn.ReLU(), nn.Flatten()]
    else:
        hidden = [nn.Conv2d(1, m1, field, 2, p), nn.ReLU(), nn.Conv2d(m1, m2, field, 2, p), nn.ReLU(), nn.Flatten()]
    model = nn.Sequential(*hidden, nn.Linear(m2 * 49, 10))
    next(l for l in model.layers if l.named_parameters()).need_input_grad = False
    return model


def compare_accuracy(epochs=3, seed=0, batch_size=64, lr=0.02, train_images=None, test_images=None,
                     progress=None):
    """Train accuracy_net fc, lc and conv on MNIST-5k with one budget (epochs, batch size, SGD
    with momentum 0.9 and weight decay 5e-4, the same seed for the weights and the batch order);
    rows of test accuracy and parameter count. progress(n) is called per training step."""
    from . import optim
    from .data import ArrayDataset, DataLoader, load_mnist5k
    from .train import evaluate
    rng = np.random.default_rng(seed)
    (xtr, ytr), (xte, yte) = load_mnist5k("train", seed), load_mnist5k("test", seed)
    pick = lambda n, k: np.sort(rng.permutation(n)[:k])  # noqa: E731  (the splits are sorted by label)
    tr, te = pick(len(ytr), train_images), pick(len(yte), test_images)
    train, test = ArrayDataset(xtr[tr], ytr[tr]), ArrayDataset(xte[te], yte[te])
    crit, rows = nn.SoftmaxCrossEntropy(), []
    for kind in KINDS:
        nn.init.seed(seed)
        model = accuracy_net(kind)
        opt = optim.SGD(model, lr, momentum=0.9, weight_decay=5e-4)
        loader = DataLoader(train, batch_size, shuffle=True, seed=seed, drop_last=True)
        t0 = time.perf_counter()
        for _ in range(epochs):
            for x, y in loader:
                crit(model(x), y)
                model.zero_grad()
                model.backward(crit.backward())
                opt.step()
                if progress:
                    progress(1)
        r = evaluate(model, test)
        rows.append({"kind": kind, "params": int(model.flat_params.size), "test_top1": r["top1"],
                     "test_loss": r["loss"], "train_s": time.perf_counter() - t0, "epochs": epochs,
                     "train_images": len(train), "test_images": len(test),
                     "test_classes": int(np.unique(test.labels).size), "seed": seed})
    return rows


def accuracy_steps(epochs, batch_size=64, train_images=None):
    n = 4000 if train_images is None else min(train_images, 4000)
    return len(KINDS) * epochs * (n // batch_size)


# ---- report -------------------------------------------------------------------------------
def format_report(result):
    """The worked example, the size series (est. = power-law estimate, never allocated), the
    fitted exponents, lc vs PyTorch's unfold + bmm, and accuracy vs parameters."""
    from .bench_cli import fmt, format_table
    c, a = result["config"], result["accuracy"]
    ms = lambda r, *keys: fmt(r.get(keys[0]) and sum(r[k] for k in keys) * 1e3)  # noqa: E731
    series = [(r["side"], r["kind"], f"{r['hidden']:,}", f"{r['params']:.3g}", human_bytes(r["memory_bytes"]),
               ms(r, "fwd_s"), ms(r, "bwd_s"), fmt(r.get("fwd_gflops") and 3 * r["fwd_gflops"] * r["fwd_s"]
                                                  / (r["fwd_s"] + r["bwd_s"]), ".3g"),
               "est." if r["estimated"] and r.get("fwd_s") else r.get("note", "")) for r in result["rows"]]
    fits = [f"{k}: fwd ~ S^{f['fwd_s'][1]:.2f}, bwd ~ S^{f['bwd_s'][1]:.2f}"
            for k, f in result["fits"].items() if f["fwd_s"] and f["bwd_s"]]
    out = [format_worked_example(result["worked_example"]), "",
           f"size series: x ({c['batch']}, {c['channels']}, S, S), {c['maps']} maps of {c['field']}x{c['field']} "
           f"fields; memory = weights + grads + x, y, dy, dx + workspace; budget {human_bytes(result['budget_bytes'])}",
           format_table(("S", "layer", "hidden", "params", "memory", "fwd ms", "bwd ms", "GFLOP/s", "note"), series),
           "power laws fitted to the largest measured sizes: " + "; ".join(fits)]
    if result["torch_unfold"]:
        versus = [(f"({v['batch']}, {v['channels']}, {v['side']}, {v['side']})",
                   f"{v['maps']} x {v['field']}x{v['field']}",
                   ms(v, "ours_fwd_s", "ours_bwd_s"), fmt(v["ours_gflops"], ".3g"), ms(v, "torch_fwd_s", "torch_bwd_s"),
                   fmt(v["torch_gflops"], ".3g"), fmt(v["ratio_fwd_bwd"]),
                   f">={v['target']:.0f} {'ok' if v['met'] else 'MISS'}" if "target" in v else "")
                  for v in result["torch_unfold"]]
        out += ["", "locally connected, pyconvnet vs torch (F.unfold + location-major bmm), fwd+bwd:",
                format_table(("x (N, C, S, S)", "maps", "pyconvnet ms", "GFLOP/s", "torch ms", "GFLOP/s",
                              "ratio", "target"), versus)]
    out += ["", f"MNIST-5k, 2 hidden layers of equal size, {a[0]['epochs']} epoch(s), seed {a[0]['seed']}, "
            f"{a[0]['train_images']} train / {a[0]['test_images']} test images:",
            format_table(("net", "params", "test top-1", "test loss", "train s"), [
                (r["kind"], f"{r['params']:,}", f"{r['test_top1']:.4f}", f"{r['test_loss']:.4f}",
                 f"{r['train_s']:.1f}") for r in a])]
    return "\n".join(out)


def plot(result, out, plt):
    """connectivity.png (fwd+bwd time and memory vs image side; hollow dashed = estimated) and
    connectivity_accuracy.png (test accuracy vs parameters); returns the paths."""
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.5))
    for kind, color in COLORS.items():
        rows = [r for r in result["rows"] if r["kind"] == kind]
        done = [r for r in rows if r["measured"]]
        est = done[-1:] + [r for r in rows if r["estimated"] and r.get("fwd_s")]
        for pts, dashed in ((done, False), (est, True)):
            if len(pts) > dashed:  # an estimate line starts at the last measured size
                ax_t.plot([r["side"] for r in pts], [(r["fwd_s"] + r["bwd_s"]) * 1e3 for r in pts], color=color,
                          ls="--" if dashed else "-", marker="o", mfc="none" if dashed else color,
                          label=f"{kind} (power-law estimate)" if dashed else kind)
        ax_m.plot([r["side"] for r in rows], [r["memory_bytes"] for r in rows], color=color, ls=":")
        for measured in (True, False):
            pts = [r for r in rows if r["measured"] == measured]
            if pts:
                ax_m.plot([r["side"] for r in pts], [r["memory_bytes"] for r in pts], "o", color=color,
                          mfc=color if measured else "none", label=kind + ("" if measured else " (not allocated)"))
    ax_m.axhline(result["budget_bytes"], color="k", lw=0.8, label=f"budget {human_bytes(result['budget_bytes'])}")
    ax_t.set(xscale="log", yscale="log", xlabel="image side S", ylabel="forward + backward ms",
             title=f"time, batch {result['config']['batch']}")
    ax_m.set(xscale="log", yscale="log", xlabel="image side S", ylabel="bytes", title="memory (counted)")
    for ax in (ax_t, ax_m):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths = [os.path.join(out, "connectivity.png"), os.path.join(out, "connectivity_accuracy.png")]
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for r in result["accuracy"]:
        ax.scatter(r["params"], r["test_top1"], s=40, color=COLORS[r["kind"]])
        ax.annotate(r["kind"], (r["params"], r["test_top1"]), textcoords="offset points", xytext=(5, 5))
    ax.set(xscale="log", xlabel="parameters", ylabel="test top-1", title="MNIST-5k: accuracy vs parameters")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(paths[1], dpi=100)
    plt.close(fig)
    return paths
