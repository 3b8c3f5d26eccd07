"""The lecture demos: subcommands filters, visualize, transfer, finetune (registered through
cli.EXTRA), the two transfer experiments (demo_svm: SVM on a net's features vs raw pixels;
demo_finetune: fine-tuning vs training from scratch) and the figures of `pyconvnet filters`."""
import os

import numpy as np

SIGMAS = (1.0, 2.0, 4.0, 8.0)
LOG_SIGMAS = (1.0, 2.0, 4.0)
# the source net of demo_svm, pinned here (not cli.DEFAULTS) so that its numbers stay reproducible
SOURCE = {"model": "lenet5", "data": "mnist5k", "batch_size": 64, "lr": 0.05, "momentum": 0.9,
          "weight_decay": 5e-4, "rule": "torch", "schedule": "cosine", "workers": 0}


def add_parser(sub):
    p = sub.add_parser("filters", help="PNG panels of classic filters (Gaussian, Sobel, LoG, Gabor)")
    p.add_argument("image", nargs="?", default=None,
                   help="an image file (default: scikit-learn's sample photo china.jpg)")
    p.add_argument("--out", default="filters", help="output folder (default ./filters)")
    p.add_argument("--size", type=int, default=256, help="shorter side after resizing (default 256)")
    p.add_argument("--border", default="reflect",
                   choices=("zero", "reflect", "symmetric", "replicate", "edge", "wrap"))
    p.set_defaults(func=cmd_filters)

    v = sub.add_parser("visualize", help="layer-1 filters and top-9 dataset patches per conv filter")
    v.add_argument("checkpoint")
    v.add_argument("--data", default=None, help="images to scan (default: the checkpoint's data set)")
    v.add_argument("--layers", default=None,
                   help="conv layers, 1 = the first Conv2d (default 1,2,3, as many as the net has)")
    v.add_argument("--images", type=int, default=500, help="test images scanned (default 500)")
    v.add_argument("--mode", choices=("image", "position"), default="image",
                   help="top 9 images (max over positions) or top 9 (image, position) pairs")
    v.add_argument("--max-filters", type=int, default=64, help="filters drawn per layer (default 64)")
    v.add_argument("--out", default="visualize", help="output folder (default ./visualize)")
    v.set_defaults(func=cmd_visualize)

    t = sub.add_parser("transfer", help="linear SVM on a trained net's features vs on raw pixels")
    t.add_argument("checkpoint", nargs="?", default=None,
                   help="source net (default: train LeNet-5 on MNIST-5k for --epochs)")
    t.add_argument("--data", default="digits", help="target data set (default digits at 28x28)")
    t.add_argument("--layers", default=None, help="comma-separated layer names (default: every pool and fc)")
    t.add_argument("--per-class", type=int, default=None, help="SVM training images per class (default all)")
    t.add_argument("--epochs", type=int, default=10, help="source training epochs without a checkpoint")
    t.add_argument("--C", type=float, default=1.0, help="SVM regularisation (default 1)")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_transfer)

    f = sub.add_parser("finetune", help="new classifier head on a checkpoint, optionally frozen layers")
    f.add_argument("checkpoint")
    f.add_argument("--data", required=True, help="mnist5k, digits or an image folder")
    f.add_argument("--num-classes", type=int, required=True)
    g = f.add_mutually_exclusive_group()
    g.add_argument("--freeze", default="", help="comma-separated layer names, e.g. conv1,conv2")
    g.add_argument("--freeze-upto", default=None, help="freeze every layer up to this one, e.g. fc3")
    f.add_argument("--per-class", type=int, default=None, help="training images per class (default all)")
    f.add_argument("--epochs", type=int, default=10)
    f.add_argument("--lr", type=float, default=0.01)
    f.add_argument("--head-lr-mult", type=float, default=10.0,
                   help="the new head learns this many times faster (Caffe's recipe; default 10)")
    f.add_argument("--batch-size", type=int, default=32)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--scratch", action="store_true", help="also train the same net from scratch")
    f.add_argument("--out", default=None, help="write OUT/checkpoint.npz (the fine-tuned net)")
    f.set_defaults(func=cmd_finetune)


def _missing_file(path):
    if path is not None and not os.path.isfile(path):
        raise SystemExit(f"pyconvnet: {path} does not exist")


def cmd_filters(a):
    _missing_file(a.image)
    from . import filters
    img = filters.load_image(a.image, a.size)
    for p in save_filter_panels(img, a.out, a.border):
        print(p)


def cmd_visualize(a):
    _missing_file(a.checkpoint)
    from . import visualize
    layers = [int(t) for t in a.layers.split(",") if t.strip()] if a.layers else None
    for p in visualize.visualize(a.checkpoint, a.out, a.data, layers, a.images, a.mode,
                                 a.max_filters):
        print(p)


def cmd_transfer(a):
    if a.checkpoint:
        _missing_file(a.checkpoint)
    layers = [t for t in a.layers.split(",") if t] if a.layers else None
    r = demo_svm(a.checkpoint, a.data, layers, a.per_class, a.epochs, a.C, a.seed,
                          log=print)
    print(format_svm(r))


def cmd_finetune(a):
    _missing_file(a.checkpoint)
    from . import transfer
    freeze = [t for t in a.freeze.split(",") if t]
    r = transfer.finetune(a.checkpoint, a.data, a.num_classes, freeze, a.freeze_upto,
                          a.epochs, a.lr, a.batch_size, a.per_class, a.seed, a.out, log=print,
                          head_lr_mult=a.head_lr_mult)
    print(f"fine-tuned: test top-1 {r['top1']:.4f} ({r['n_train']} training images, "
          f"{r['epochs']} epochs, frozen {', '.join(r['frozen']) or 'nothing'})")
    if a.scratch:
        s = transfer.scratch(a.checkpoint, a.data, a.num_classes, a.epochs, a.lr, a.batch_size,
                             a.per_class, a.seed, log=print)
        print(f"from scratch: test top-1 {s['top1']:.4f} (same data, epochs and lr)")


# ---- experiments
def _source(checkpoint_path, epochs, seed, log):
    """(model, config, stats): a checkpoint, or LeNet-5 trained on MNIST-5k for `epochs`."""
    from . import transfer as T
    if checkpoint_path:
        return T.load_model(checkpoint_path)
    from .train import Run
    run = Run(dict(SOURCE, epochs=epochs, seed=seed))
    run.fit(progress=False, log=log or (lambda s: None))
    return run.model, run.config, run.stats


def demo_svm(checkpoint_path=None, data="digits", layers=None, k_per_class=None, epochs=10,
             C=1.0, seed=0, log=None):
    """SVMs on the features of a net trained on one data set (a checkpoint, default LeNet-5
    trained on MNIST-5k for `epochs`) against an SVM on raw pixels, on `data` (default
    scikit-learn's digits at 28x28). layers: default every pool and fc layer."""
    from . import sources, transfer as T
    from .data import make_batch
    model, config, stats = _source(checkpoint_path, epochs, seed, log)
    tr, te, _, tf, _ = sources.resolve(data, config["model"], tuple(config["input_shape"]), seed, stats)
    xtr, ytr, _ = make_batch(tr, np.arange(len(tr)), tf, seed, 0)
    xte, yte, _ = make_batch(te, np.arange(len(te)), tf, seed, 0)
    if k_per_class:
        keep = T.per_class(ytr, k_per_class, seed)
        xtr, ytr = xtr[keep], ytr[keep]
    names = layers or [n for n in T.layer_names(model) if n.startswith(("pool", "fc"))]
    out = {"source": checkpoint_path or f"lenet5 on mnist5k, {epochs} epochs",
           "target": data, "raw": T.linear_svm(xtr, ytr, xte, yte, C), "layers": {}}
    for name in names:
        out["layers"][name] = T.svm(model, name, (xtr, ytr), (xte, yte), C)
    return out


def format_svm(r):
    rows = [("raw pixels", r["raw"])] + list(r["layers"].items())
    lines = [f"linear SVM on {r['target']} ({r['raw']['n_train']} train / {r['raw']['n_test']} test), "
             f"features of {r['source']}", f"{'features':<12}{'dim':>8}{'train':>9}{'test':>9}"]
    lines += [f"{n:<12}{v['dim']:>8}{v['train_acc']:>9.4f}{v['test_acc']:>9.4f}"
              + ("" if v["converged"] else "  (not converged)") for n, v in rows]
    return "\n".join(lines)



def demo_finetune(k_per_class=10, epochs=15, lr=0.01, freeze_names=("conv1", "conv2"),
                  source_epochs=5, seeds=(0, 1, 2), log=None):
    """Fine-tuning against training from scratch on a small target set, at one budget (epochs,
    lr, batch size 32). Source: LeNet-5 trained on MNIST-5k digits 0-4 for source_epochs (seed 0).
    Target: k_per_class images of each digit 5-9 (labels 0-4) from MNIST-5k's training split,
    tested on all 500 test images of 5-9. The new head learns 10x faster (replace_head). Per seed (the target subset, the new head's and the
    scratch net's initialisation): top-1 of fine-tuning every layer, of fine-tuning with
    freeze_names frozen, and of training from scratch; "mean" averages them over the seeds."""
    from . import data as D, models, nn, transfer as T
    (xtr, ytr), (xte, yte) = D.load_mnist5k("train"), D.load_mnist5k("test")
    src_tr, src_te = D.ArrayDataset(xtr[ytr < 5], ytr[ytr < 5]), D.ArrayDataset(xte[yte < 5], yte[yte < 5])
    tgt_te = D.ArrayDataset(xte[yte >= 5], yte[yte >= 5] - 5)
    nn.init.seed(0)
    source = models.lenet5(5)
    src = T.train(source, src_tr, src_te, source_epochs, 0.05, 64, 0, train_tf=D.RandomTranslate(2))
    state, runs = source.state_dict(), []
    for seed in seeds:
        keep = T.per_class(ytr[ytr >= 5], k_per_class, seed)
        tgt_tr, run = D.ArrayDataset(xtr[ytr >= 5][keep], ytr[ytr >= 5][keep] - 5), {}
        for key, names in (("finetune_all", ()), ("finetune_frozen", tuple(freeze_names))):
            model = models.lenet5(5)
            model.load_state_dict(state)
            model = T.replace_head(model, 5, seed)
            T.freeze(model, names)
            run[key] = T.train(model, tgt_tr, tgt_te, epochs, lr, 32, seed, log=log)["top1"]
        nn.init.seed(seed)
        run["scratch"] = T.train(models.lenet5(5), tgt_tr, tgt_te, epochs, lr, 32, seed, log=log)["top1"]
        runs.append(run)
    mean = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
    return {"source_top1": src["top1"], "n_train": 5 * k_per_class, "n_test": len(tgt_te),
            "epochs": epochs, "lr": lr, "runs": runs, "mean": mean}


# ---- figures of `pyconvnet filters`
def _canvas(k, size):
    """Kernel k centred on a (size, size) zero canvas, so widths compare at one scale."""
    c = np.zeros((size, size), np.float32)
    kh, kw = k.shape
    if kh > size:
        o = (kh - size) // 2
        return k[o:o + size, o:o + size]
    o = (size - kh) // 2
    c[o:o + kh, o:o + kw] = k
    return c


def _figure(rows, cols, scale=2.6):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(rows, cols, figsize=(scale * cols, scale * rows * 0.8), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return plt, fig, axes


def _save(plt, fig, path, title):
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _sym(a):
    """Colour limits centred on 0, so white means 0 on a diverging map."""
    lim = float(np.abs(a).max()) or 1.0
    return {"cmap": "RdBu_r", "vmin": -lim, "vmax": lim}


def _show(ax, img, title, **kw):
    ax.imshow(img.transpose(1, 2, 0).clip(0, 1) if img.ndim == 3 else img, **kw)
    ax.set_title(title, fontsize=9)


def save_filter_panels(img, out, border="reflect"):
    """gaussian.png, edges.png, log.png, gabor.png for img (3, H, W) in [0, 1]; their paths."""
    from . import filters as F
    os.makedirs(out, exist_ok=True)
    gray = img.mean(axis=0)
    paths = []

    plt, fig, ax = _figure(2, len(SIGMAS) + 1)
    _show(ax[0, 0], img, "original")
    ax[1, 0].axis("off")
    for i, s in enumerate(SIGMAS, 1):
        _show(ax[0, i], F.gaussian_filter(img, s, border), f"Gaussian sigma={s:g}")
        _show(ax[1, i], _canvas(F.gaussian_kernel(s), 65), f"kernel {2 * int(4 * s + .5) + 1}px "
              "(65x65 view)", cmap="gray")
    paths.append(_save(plt, fig, os.path.join(out, "gaussian.png"),
                       "Gaussian blur: the kernel width sigma sets the scale that survives"))

    gx, gy, mag, ori = F.gradient(F.gaussian_filter(gray, 1.0, border), "sobel", border)
    hsv = np.stack([(ori + np.pi) / (2 * np.pi), np.ones_like(ori), mag / mag.max()], -1)
    import matplotlib.colors as mcolors
    plt, fig, ax = _figure(1, 5)
    _show(ax[0, 0], gray, "grey", cmap="gray")
    _show(ax[0, 1], gx, "Sobel x (+ = brighter right)", **_sym(np.stack([gx, gy])))
    _show(ax[0, 2], gy, "Sobel y (+ = brighter below)", **_sym(np.stack([gx, gy])))
    _show(ax[0, 3], mag, "magnitude", cmap="gray_r")
    _show(ax[0, 4], mcolors.hsv_to_rgb(hsv).transpose(2, 0, 1), "orientation (hue)")
    paths.append(_save(plt, fig, os.path.join(out, "edges.png"), "Edges: Sobel gradient after a sigma=1 blur"))

    plt, fig, ax = _figure(3, len(LOG_SIGMAS))
    for i, s in enumerate(LOG_SIGMAS):
        r = F.laplacian_of_gaussian(gray, s, border)
        k = _canvas(F.log_kernel(s), 41)
        _show(ax[0, i], k, f"LoG kernel sigma={s:g}", **_sym(k))
        _show(ax[1, i], r, "response", **_sym(r))
        zc = (np.sign(r[:, 1:]) != np.sign(r[:, :-1]))[:-1] | (np.sign(r[1:]) != np.sign(r[:-1]))[:, :-1]
        slope = np.abs(np.diff(r, axis=1))[:-1] + np.abs(np.diff(r, axis=0))[:, :-1]
        _show(ax[2, i], zc & (slope > 0.05 * slope.max()), "zero-crossings (strong)", cmap="gray_r")
    paths.append(_save(plt, fig, os.path.join(out, "log.png"), "Laplacian of Gaussian: blobs and edges by scale"))

    bank, params = F.gabor_bank()
    odd, _ = F.gabor_bank(phase=np.pi / 2)
    energy = np.hypot(F.filter_bank(gray, bank, border), F.filter_bank(gray, odd, border))
    n = len(params) // 2
    plt, fig, ax = _figure(4, n, scale=1.9)
    for j, (t, lam) in enumerate(params):
        r, c = 2 * (j // n), j % n
        _show(ax[r, c], bank[j], f"{np.degrees(t):.0f} deg, lambda {lam:g}", **_sym(bank[j]))
        _show(ax[r + 1, c], energy[j], "energy", cmap="magma")
    paths.append(_save(plt, fig, os.path.join(out, "gabor.png"),
                       "Gabor bank: kernels (even phase) and local energy |even + i odd|"))
    return paths
