"""Fully connected vs locally connected vs convolutional layers: the lecture's weight-sharing
argument as arithmetic (worked_example) and as measured cost (measure_series); the accuracy side and
the report are in connectivity_report.py.

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
    n_in, (_, _, hidden), k2 = cfg["channels"] * side * side, geometry(side, cfg), cfg["field"] ** 2
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
        ws = _workspace_floats(_core.conv2d_slot_floats(x, _shaped(M, C, k, k), (1, 1), (pad, pad), 1),
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
