"""The training loop: mini-batch SGD with evaluation, checkpoints and a training-curve plot.

Reproducibility: every random choice derives from one seed: initial weights (nn.init.seed),
the data order and augmentation of epoch e (the DataLoader's (seed, e, i) streams) and dropout
masks ((layer seed, call count)). A checkpoint at the end of an epoch stores the counters, so a
resumed run is bit-identical on the CPU to one that never stopped (same thread count).

Devices: Run(config, device="cuda") moves the model to the GPU; each step then uploads only its
batch (images and labels), and the loss and accuracy come back every `sync_every` steps (the
divergence check runs then). Checkpoints hold host arrays, so they load on either device."""
import json
import math
import os
import time

import numpy as np

from . import checkpoint, models, nn, ops, optim, sources
from .data import DataLoader

CKPT = "checkpoint.npz"


class Diverged(RuntimeError):
    pass


def evaluate(model, dataset, batch_size=256, transform=None, ten_crop=False):
    """Mean loss, top-1 and (with more than 5 classes) top-5 accuracy over a data set. With
    ten_crop, transform yields (10, C, H, W) per image and the softmax outputs are averaged."""
    model.eval()
    crit = nn.SoftmaxCrossEntropy()
    loader = DataLoader(dataset, batch_size, shuffle=False, transform=transform)
    device = getattr(model, "device", "cpu")
    n = correct1 = correct5 = 0
    loss_sum = 0.0
    for x, y in loader:
        if ten_crop:
            b = x.shape[0]
            logits = model(ops.to_device(x.reshape(b * 10, *x.shape[2:]), device))
            prob = ops.to_numpy(nn.Softmax()(logits)).reshape(b, 10, -1).mean(axis=1)
            loss_sum += float(-np.log(np.maximum(prob[np.arange(b), y], 1e-30)).sum())
        else:
            logits = model(ops.to_device(x, device))
            loss_sum += float(crit(logits, ops.to_device(y, device))) * len(y)
            prob = ops.to_numpy(crit.prob)
        top = np.argsort(-prob, axis=1)[:, :5]
        correct1 += int((top[:, 0] == y).sum())
        correct5 += int((top == y[:, None]).any(axis=1).sum())
        n += len(y)
    if n == 0:
        raise ValueError(f"evaluate: no images to evaluate ({len(dataset)} in the data set, "
                         "none decodable)" if len(dataset) else "evaluate: the data set is empty")
    out = {"loss": loss_sum / n, "top1": correct1 / n}
    if prob.shape[1] > 5:
        out["top5"] = correct5 / n
    return out


class Run:
    """One training run: model, optimizer, schedule and data, built from a config dict (or from a
    checkpoint's copy of it), with fit() and the state a checkpoint needs."""

    def __init__(self, config, stats=None, device="cpu"):
        c = self.config = dict(config)
        self.device = device
        nn.init.seed(c["seed"])
        shape = models.input_shape(c["model"])
        self.train_set, self.test_set, self.train_tf, self.test_tf, self.stats = sources.resolve(
            c["data"], c["model"], shape, seed=c["seed"], stats=stats)
        first = self.train_set[0][0] if self.train_tf is None else self.train_tf(
            self.train_set[0][0], np.random.default_rng(0))
        c["input_shape"] = list(np.shape(first))
        c["num_classes"] = int(self.train_set.num_classes)
        self.model = models.build(c["model"], c["num_classes"], tuple(c["input_shape"]))
        self.model[0].need_input_grad = False  # nobody needs the gradient of the images
        self.model.to(device)
        self.opt = optim.SGD(self.model, c["lr"], c["momentum"], c["weight_decay"], rule=c["rule"])
        self.schedule = optim.make_schedule(c["schedule"], self.opt, c["epochs"])
        self.loader = DataLoader(self.train_set, c["batch_size"], shuffle=True, seed=c["seed"],
                                 transform=self.train_tf, num_workers=c["workers"], drop_last=True)
        self.epoch, self.history = 0, []

    # -- checkpoints
    def save(self, out_dir):
        dropout = [[i, l.seed, l.calls] for i, l in enumerate(self.model.layers) if isinstance(l, nn.Dropout)]
        meta = {"config": self.config, "epoch": self.epoch, "history": self.history,
                "optimizer": self.opt.state_dict(), "dropout": dropout,
                "schedule": self.schedule.state_dict() if self.schedule else None,
                "param_names": [[n, *self.model.offsets[n], list(p.shape)] for n, p, _ in self.model.named_parameters()]}
        arrays = {"params": ops.to_numpy(self.model.flat_params),  # host arrays: load anywhere
                  "velocity": ops.to_numpy(self.opt.velocity),
                  **{"stat_" + k: v for k, v in self.stats.items()}}
        checkpoint.save(os.path.join(out_dir, CKPT), arrays, meta)

    @classmethod
    def load(cls, path, device="cpu", **overrides):
        arrays, meta = checkpoint.load(path)
        config = dict(meta["config"], **overrides)
        stats = {k[5:]: v for k, v in arrays.items() if k.startswith("stat_")}
        run = cls(config, stats=stats, device=device)
        if arrays["params"].shape != run.model.flat_params.shape:
            raise ValueError(f"checkpoint {path}: {arrays['params'].size} parameters, but model "
                             f"{config['model']} has {run.model.flat_params.size}")
        ops.copyto(run.model.flat_params, arrays["params"])
        run.opt.load_state_dict(meta["optimizer"], arrays["velocity"])
        if run.schedule and meta["schedule"]:
            run.schedule.load_state_dict(meta["schedule"])
        for i, seed, calls in meta["dropout"]:
            run.model[i].seed, run.model[i].calls = seed, calls
        run.epoch, run.history = meta["epoch"], meta["history"]
        return run

    # -- training
    def train_epoch(self, progress=True, log_every=10, sync_every=None):
        """One pass over the training set. Each step's loss and correct count are read back, and
        checked for divergence, every `sync_every` steps: by default every step on the CPU (they
        are host numbers there) and every log_every steps on the GPU (a read waits for the GPU)."""
        from tqdm import tqdm
        model, opt, crit, device = self.model, self.opt, nn.SoftmaxCrossEntropy(), self.model.device
        sync_every = max(1, int(sync_every or (1 if device == "cpu" else log_every)))
        model.train()
        self.loader.set_epoch(self.epoch)
        steps = len(self.loader)
        bar = tqdm(total=steps, disable=not progress, leave=False, unit="batch",
                   desc=f"epoch {self.epoch + 1}/{self.config['epochs']}")
        t0, seen, loss_sum, correct, losses, pending = time.perf_counter(), 0, 0.0, 0, [], []
        for step, (x, y) in enumerate(self.loader):
            x, y = ops.to_device(x, device), ops.to_device(y, device)  # only the batch goes up
            logits = model(x)
            loss = crit(logits, y)
            pending.append((step, loss, ops.top1_count(logits, y), len(y)))
            if len(pending) >= sync_every or step + 1 == steps:
                for at, loss_at, correct_at, n in pending:
                    loss_at = float(loss_at)
                    if not math.isfinite(loss_at):
                        bar.close()
                        raise Diverged(f"loss became {loss_at} at epoch {self.epoch + 1}, step {at + 1} "
                                       f"(lr {opt.lr:g}); try a smaller --lr. The last good checkpoint is kept.")
                    seen += n
                    loss_sum += loss_at * n
                    correct += int(correct_at)
                    losses.append(loss_at)
                pending = []
                if sync_every > 1 or step % log_every == 0 or step + 1 == steps:
                    bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}",
                                    img_s=f"{seen / (time.perf_counter() - t0):.0f}")
            model.zero_grad()
            model.backward(crit.backward())
            opt.step()
            bar.update(1)
        bar.close()
        return {"loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1),
                "images_per_s": seen / (time.perf_counter() - t0), "step_losses": losses}

    def fit(self, out_dir=None, progress=True, log=print, until=None):
        """Train to the configured number of epochs (or only up to epoch `until`)."""
        end = self.config["epochs"] if until is None else min(until, self.config["epochs"])
        while self.epoch < end:
            tr = self.train_epoch(progress)
            ev = evaluate(self.model, self.test_set, transform=self.test_tf)
            self.epoch += 1
            if self.schedule:
                self.schedule.step(ev["top1"])
            row = {"epoch": self.epoch, "train_loss": tr["loss"], "train_acc": tr["acc"],
                   "test_loss": ev["loss"], "test_top1": ev["top1"], "lr": self.opt.lr,
                   "images_per_s": tr["images_per_s"]}
            if "top5" in ev:
                row["test_top5"] = ev["top5"]
            self.history.append(row)
            log(f"epoch {self.epoch:3d}  loss {tr['loss']:.4f}  train acc {tr['acc']:.4f}  "
                f"test loss {ev['loss']:.4f}  top-1 {ev['top1']:.4f}"
                + (f"  top-5 {ev['top5']:.4f}" if "top5" in ev else "")
                + f"  {tr['images_per_s']:.0f} img/s")
            if out_dir:
                self.save(out_dir)
                write_history(out_dir, self.history)
        return self.history


def write_history(out_dir, history):
    """history.json and a training-curve PNG (loss and accuracy per epoch)."""
    with open(os.path.join(out_dir, "history.json"), "w") as f:
        json.dump(history, f, indent=1)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a.plot(ep, [h["test_loss"] for h in history], "o-", label="test")
    a.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    b.plot(ep, [h["train_acc"] for h in history], "o-", label="train top-1")
    b.plot(ep, [h["test_top1"] for h in history], "o-", label="test top-1")
    if "test_top5" in history[-1]:
        b.plot(ep, [h["test_top5"] for h in history], "o-", label="test top-5")
    b.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "training_curve.png"), dpi=100)
    plt.close(fig)
