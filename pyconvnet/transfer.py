"""Transfer learning: features of a trained net by layer name, a linear SVM on them, and
fine-tuning (a new classifier head, frozen layers through per-layer lr_mult).

Layer names (Caffe's AlexNet scheme): K counts the weighted layers (Conv2d -> convK,
LocallyConnected2d -> localK, Linear -> fcK) up to and including the layer; every other layer
takes the K of the weighted layer before it: reluK/tanhK/sigmoidK, normK (LRN), poolK
(max or average), dropK, flattenK. AlexNet: conv1 relu1 norm1 pool1 conv2 ... conv5 relu5
pool5 flatten5 fc6 relu6 drop6 fc7 relu7 drop7 fc8. LeNet-5: conv1 relu1 pool1 conv2 relu2
pool2 flatten2 fc3 relu3 fc4 relu4 fc5. A repeated name gets a suffix (_2, _3, ...). Anywhere a
layer is asked for, its index in model.layers (an int or a digit string) works too.
"""
import math
import os
import warnings

import numpy as np

from . import checkpoint, models, nn, optim, sources
from .data import ArrayDataset, DataLoader, make_batch

WEIGHTED = {"Conv2d": "conv", "LocallyConnected2d": "local", "Linear": "fc"}
OTHER = {"ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "MaxPool2d": "pool",
         "AvgPool2d": "pool", "LocalResponseNorm": "norm", "Dropout": "drop", "Flatten": "flatten"}


# ---- names and features
def layer_names(model):
    """One name per entry of model.layers (scheme in the module docstring)."""
    names, k = [], 0
    for layer in model.layers:
        t = type(layer).__name__
        k += t in WEIGHTED
        base = f"{WEIGHTED.get(t) or OTHER.get(t, t.lower())}{k}"
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return names


def layer_index(model, layer):
    """Index in model.layers of `layer`: an int, a digit string or a name from layer_names."""
    n = len(model.layers)
    if isinstance(layer, (int, np.integer)) or (isinstance(layer, str) and layer.lstrip("-").isdigit()):
        i = int(layer)
        if not -n <= i < n:
            raise ValueError(f"layer index {i} does not exist; the model has {n} layers (0..{n - 1})")
        return i % n
    names = layer_names(model)
    if layer not in names:
        raise ValueError(f"unknown layer {layer!r}; valid names: {', '.join(names)} "
                         f"(or an index 0..{n - 1})")
    return names.index(layer)


def features(model, x, layer, batch_size=256):
    """Activations after `layer` for images x (N, C, H, W) float32, computed batch_size images at
    a time (bounds memory) in eval mode (no dropout); (N, ...) float32."""
    i = layer_index(model, layer)
    x = np.asarray(x)
    was_training, out = model.training, None
    model.eval()
    try:
        for b0 in range(0, len(x), batch_size):
            y = model.features(np.ascontiguousarray(x[b0:b0 + batch_size], dtype=np.float32), i)
            if out is None:
                out = np.empty((len(x), *y.shape[1:]), np.float32)
            out[b0:b0 + len(y)] = y  # copied: a layer may reuse its output buffer
    finally:
        model.train(was_training)
    return out


# ---- checkpoints
def load_model(path):
    """(model, config, stats) from a checkpoint written by Run.save or finetune: the model built
    from the checkpoint's config, with its weights."""
    arrays, meta = checkpoint.load(path)
    c = meta["config"]
    model = models.build(c["model"], c["num_classes"], tuple(c["input_shape"]))
    load_weights(model, path, arrays=arrays, meta=meta)
    return model, c, {k[5:]: v for k, v in arrays.items() if k.startswith("stat_")}


def load_weights(model, path, skip=(), arrays=None, meta=None):
    """Copy a checkpoint's parameters into model (names and shapes must match, except the
    parameter names in skip). ValueError naming the first mismatch otherwise."""
    if arrays is None:
        arrays, meta = checkpoint.load(path)
    flat, arch = arrays["params"], meta["config"].get("model", "?")
    saved = {n: (s, e, tuple(shape)) for n, s, e, shape in meta["param_names"]}
    have = {n: p for n, p, _ in model.named_parameters()}
    for n, p in have.items():
        if n in skip:
            continue
        if n not in saved or saved[n][2] != p.shape:
            got = saved[n][2] if n in saved else "nothing"
            raise ValueError(f"checkpoint {path} ({arch}) does not fit this model: parameter {n} has "
                             f"shape {got} in the checkpoint, {p.shape} in the model")
        s, e, shape = saved[n]
        p[...] = flat[s:e].reshape(shape)
    extra = sorted(set(saved) - set(have))
    if extra:
        raise ValueError(f"checkpoint {path} ({arch}) does not fit this model: it has parameters "
                         f"{extra[:4]} that the model lacks")


# ---- data helpers
def as_arrays(data):
    """(x (N, C, H, W) float32, y (N,) int64) from an (x, y) pair or a data set."""
    if isinstance(data, tuple):
        return np.ascontiguousarray(data[0], dtype=np.float32), np.asarray(data[1], np.int64)
    x, y, _ = make_batch(data, np.arange(len(data)), None, 0, 0)
    return x, y


def per_class(labels, k, seed=0):
    """Sorted indices of k seeded random samples of every class (all of a class with fewer)."""
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k]
                                   for c in np.unique(labels)]))


# ---- linear SVM
def linear_svm(ftr, ytr, fte, yte, C=1.0, max_iter=5000):
    """Fit sklearn's LinearSVC on features (N, ...) and report accuracy. Features are standardised
    with the training statistics, then divided by sqrt(dim) (unit mean squared norm), so that one
    C means the same margin/error trade-off at every layer's dimension; unscaled, C=1 in 1,000
    dimensions took minutes to (not) converge here, and took 0.1-1 s scaled."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC
    ftr, fte = ftr.reshape(len(ftr), -1), fte.reshape(len(fte), -1)
    scaler, root = StandardScaler().fit(ftr), np.sqrt(ftr.shape[1])
    ftr, fte = scaler.transform(ftr) / root, scaler.transform(fte) / root
    clf = LinearSVC(C=C, max_iter=max_iter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(ftr, ytr)
    return {"dim": ftr.shape[1], "n_train": len(ytr), "n_test": len(yte),
            "train_acc": float(clf.score(ftr, ytr)), "test_acc": float(clf.score(fte, yte)),
            "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught)}


def svm(model, layer, train_data, test_data, C=1.0, batch_size=256):
    """A linear SVM on the features after `layer` of another data set: train_data/test_data
    are data sets or (x, y) pairs. Returns {"layer", "index", "dim", "n_train", "n_test",
    "train_acc", "test_acc", "converged"}."""
    (xtr, ytr), (xte, yte) = as_arrays(train_data), as_arrays(test_data)
    i = layer_index(model, layer)
    r = linear_svm(features(model, xtr, i, batch_size), ytr, features(model, xte, i, batch_size), yte, C)
    return {"layer": layer_names(model)[i], "index": i, **r}


# ---- fine-tuning
def replace_head(model, num_classes, seed=0, lr_mult=10.0):
    """A new Sequential of model's layers with the last Linear replaced by a fresh
    Linear(in_features, num_classes) (He init from nn.init.seed(seed), bias 0) that learns
    lr_mult times faster than the pretrained layers (Caffe's fine-tuning recipe: the new layer
    starts from scratch, the others only adjust). With LeNet-5, 100 target images and 15 epochs,
    lr_mult 1 lost to training from scratch (0.834 vs 0.841 top-1 over 3 seeds) and lr_mult 10
    won (0.922). The other layers and their weights move into the new model's flat buffers: do
    not use `model` afterwards."""
    last = [i for i, layer in enumerate(model.layers) if isinstance(layer, nn.Linear)]
    if not last:
        raise ValueError("replace_head: the model has no Linear layer to replace")
    nn.init.seed(seed)
    layers = list(model.layers)
    head = layers[last[-1]] = nn.Linear(layers[last[-1]].in_features, int(num_classes))
    head.lr_mult = float(lr_mult)
    return nn.Sequential(*layers)


def freeze(model, names=(), upto=None):
    """Freeze (lr_mult = wd_mult = 0, Caffe's lr_mult) the weighted layers named in `names` or,
    with `upto`, every weighted layer up to and including that one; the others keep a nonzero
    multiplier they have (the new head's) or get 1. Returns the frozen names. Call
    opt.refresh_multipliers() on an existing optimizer afterwards."""
    all_names = layer_names(model)
    weighted = [i for i, layer in enumerate(model.layers) if layer.named_parameters()]
    chosen = {layer_index(model, n) for n in names}
    bare = sorted(all_names[i] for i in chosen if i not in weighted)
    if bare:
        raise ValueError(f"freeze: layers {bare} have no parameters; weighted layers: "
                         f"{', '.join(all_names[i] for i in weighted)}")
    if upto is not None:
        chosen |= set(range(layer_index(model, upto) + 1))
    frozen = [i for i in weighted if i in chosen]
    if len(frozen) == len(weighted):
        raise ValueError(f"freeze: that freezes every weighted layer ({', '.join(all_names[i] for i in frozen)}); "
                         "nothing would train")
    for i in weighted:
        layer = model[i]
        layer.lr_mult = 0.0 if i in chosen else (getattr(layer, "lr_mult", 1.0) or 1.0)
        layer.wd_mult = 0.0 if i in chosen else (getattr(layer, "wd_mult", 1.0) or 1.0)
        layer.need_input_grad = True
    # backward can stop at the first trainable layer: nothing before it learns
    model[min(set(weighted) - set(frozen))].need_input_grad = False
    return [all_names[i] for i in frozen]


def train(model, train_set, test_set, epochs, lr, batch_size=32, seed=0, momentum=0.9,
          weight_decay=5e-4, train_tf=None, test_tf=None, log=None):
    """Mini-batch SGD with a cosine schedule, honouring each layer's lr_mult; evaluates once at the
    end. One loop for fine-tuning and for training from scratch, so the two compare at the same
    budget (Run builds its own model and loader from a config, hence this small loop)."""
    from .train import Diverged, evaluate
    opt = optim.SGD(model, lr, momentum, weight_decay)
    schedule = optim.make_schedule("cosine", opt, epochs)
    loader = DataLoader(train_set, batch_size, shuffle=True, seed=seed, transform=train_tf)
    crit, history = nn.SoftmaxCrossEntropy(), []
    model[0].need_input_grad = False
    for epoch in range(epochs):
        model.train()
        loss_sum = seen = 0
        for x, y in loader:
            loss = crit(model(x), y)
            if not math.isfinite(loss):
                raise Diverged(f"loss became {loss} in epoch {epoch + 1} (lr {opt.lr:g}); try a smaller lr")
            model.zero_grad()
            model.backward(crit.backward())
            opt.step()
            loss_sum, seen = loss_sum + loss * len(y), seen + len(y)
        schedule.step()
        history.append(loss_sum / max(seen, 1))
        if log:
            log(f"epoch {epoch + 1:3d}  train loss {history[-1]:.4f}")
    ev = evaluate(model, test_set, transform=test_tf)
    return {"top1": ev["top1"], "loss": ev["loss"], "train_loss": history,
            "n_train": len(train_set), "epochs": epochs, "opt": opt}


def _target(config, stats, data, num_classes, k_per_class, seed):
    """(train_set, test_set, train_tf, test_tf) of `data` for the checkpoint's model."""
    tr, te, tr_tf, te_tf, _ = sources.resolve(data, config["model"], tuple(config["input_shape"]),
                                              seed, stats)
    if tr.num_classes > num_classes:
        raise ValueError(f"--num-classes {num_classes}, but {data} has {tr.num_classes} classes")
    if k_per_class:
        keep = per_class(tr.labels, k_per_class, seed)
        tr = (ArrayDataset(tr.images[keep], tr.labels[keep], tr.classes) if isinstance(tr, ArrayDataset)
              else _Subset(tr, keep))
    return tr, te, tr_tf, te_tf


class _Subset:
    """The samples `indices` of a data set (ImageFolder) with the data-set interface."""

    def __init__(self, ds, indices):
        self.ds, self.indices = ds, np.asarray(indices)
        self.labels, self.classes = ds.labels[self.indices], ds.classes

    num_classes = property(lambda self: len(self.classes))

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.ds[int(self.indices[i])]


def finetune(checkpoint_path, data, num_classes, freeze_names=(), freeze_upto=None, epochs=10,
             lr=0.01, batch_size=32, k_per_class=None, seed=0, out=None, log=None, head_lr_mult=10.0):
    """Fine-tune a checkpoint on `data` (a source name or folder): new num_classes-way head
    (learning head_lr_mult times faster), chosen layers frozen, k_per_class training images
    per class if given. With out, writes
    out/checkpoint.npz (readable by Run.load, `pyconvnet eval` and load_model). Returns
    {"top1", "loss", "train_loss", "n_train", "epochs", "frozen", "model"}."""
    model, config, stats = load_model(checkpoint_path)
    tr, te, tr_tf, te_tf = _target(config, stats, data, num_classes, k_per_class, seed)
    model = replace_head(model, num_classes, seed, head_lr_mult)
    frozen = freeze(model, freeze_names, freeze_upto)
    r = train(model, tr, te, epochs, lr, batch_size, seed, train_tf=tr_tf, test_tf=te_tf, log=log)
    if out:
        cfg = dict(config, data=data, num_classes=int(num_classes), epochs=epochs, lr=lr,
                   batch_size=batch_size, seed=seed, schedule="cosine", finetuned_from=str(checkpoint_path))
        save(out, model, r["opt"], cfg, stats, epochs)
    return dict(r, frozen=frozen, model=model)


def scratch(checkpoint_path, data, num_classes, epochs=10, lr=0.01, batch_size=32,
            k_per_class=None, seed=0, log=None):
    """The baseline of finetune: the checkpoint's architecture, freshly initialised (seed), on
    the same data with the same loop, epochs and lr."""
    _, config, stats = load_model(checkpoint_path)
    tr, te, tr_tf, te_tf = _target(config, stats, data, num_classes, k_per_class, seed)
    nn.init.seed(seed)
    model = models.build(config["model"], num_classes, tuple(config["input_shape"]))
    r = train(model, tr, te, epochs, lr, batch_size, seed, train_tf=tr_tf, test_tf=te_tf, log=log)
    return dict(r, model=model)


def save(out, model, opt, config, stats, epoch):
    """out/checkpoint.npz in Run.save's layout (params, velocity, stat_*, config and state)."""
    dropout = [[i, l.seed, l.calls] for i, l in enumerate(model.layers) if isinstance(l, nn.Dropout)]
    meta = {"config": config, "epoch": epoch, "history": [], "optimizer": opt.state_dict(),
            "dropout": dropout, "schedule": None,
            "param_names": [[n, *model.offsets[n], list(p.shape)] for n, p, _ in model.named_parameters()]}
    arrays = {"params": model.flat_params, "velocity": opt.velocity,
              **{"stat_" + k: v for k, v in stats.items()}}
    checkpoint.save(os.path.join(out, "checkpoint.npz"), arrays, meta)
