"""The accuracy side of the fully vs locally connected vs convolutional comparison (nets of the
same depth and hidden units trained on MNIST-5k with one budget) and the report of a connectivity
run: its table and charts."""
import os
import time

import numpy as np

from . import nn
from .connectivity import COLORS, KINDS, format_worked_example, human_bytes


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
