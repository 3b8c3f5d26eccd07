"""SGD over a Sequential's flat buffers (one kernel call per step) and learning-rate schedules.

Every object here has state_dict()/load_state_dict() of plain JSON types or numpy arrays, so a
checkpoint holds them without pickle."""
import math

import numpy as np

from . import ops
from .ops import backend

RULES = {"torch": 0, "paper": 1}


class SGD:
    """Mini-batch SGD with momentum and weight decay.
    rule="torch": matches torch.optim.SGD (dampening 0): d = g + wd*w; v = mu*v + d;
                  w -= lr * (d + mu*v if nesterov else v)
    rule="paper": Krizhevsky et al. 2012: v = mu*v - wd*lr*w - lr*g; w += v
    Per-layer multipliers (Caffe's lr_mult / decay_mult) come from layer attributes lr_mult and
    wd_mult when set (lr_mult = 0 freezes a layer)."""

    def __init__(self, model, lr, momentum=0.9, weight_decay=5e-4, nesterov=False, rule="torch"):
        if rule not in RULES:
            raise ValueError(f"SGD: rule must be one of {sorted(RULES)}, got {rule!r}")
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum == 0 or rule != "torch"):
            raise ValueError("SGD: nesterov needs momentum > 0 and rule='torch'")
        self.model = model
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.nesterov, self.rule = bool(nesterov), rule
        self.velocity = backend(model.flat_params).zeros_like(model.flat_params)
        self.refresh_multipliers()

    def refresh_multipliers(self):
        """Re-read per-layer lr_mult / wd_mult (call after freezing or unfreezing layers)."""
        offs, lrm, wdm = [0], [], []
        for i, layer in enumerate(self.model.layers):
            for n, _, _ in layer.named_parameters():
                start, end = self.model.offsets[f"{i}.{n}"]
                assert start == offs[-1]
                offs.append(end)
                lrm.append(getattr(layer, "lr_mult", 1.0))
                wdm.append(getattr(layer, "wd_mult", 1.0))
        self._off = np.array(offs, np.int64)
        self._lr_mult = np.array(lrm, np.float32)
        self._wd_mult = np.array(wdm, np.float32)

    def step(self):
        m = self.model
        if ops.device_of(self.velocity) != ops.device_of(m.flat_params):  # the model moved
            self.velocity = ops.to_device(self.velocity, ops.device_of(m.flat_params))
        backend(m.flat_params).sgd_step(m.flat_params, self.velocity, m.flat_grads, self._off,
                                        self._lr_mult, self._wd_mult, self.lr, self.momentum,
                                        self.weight_decay, self.nesterov, RULES[self.rule])

    def state_dict(self):
        return {"lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay,
                "nesterov": self.nesterov, "rule": self.rule}

    def load_state_dict(self, state, velocity=None):
        self.lr, self.momentum = float(state["lr"]), float(state["momentum"])
        self.weight_decay, self.nesterov, self.rule = float(state["weight_decay"]), bool(state["nesterov"]), state["rule"]
        if velocity is not None:
            if velocity.shape != self.velocity.shape:
                raise ValueError(f"SGD: velocity has shape {velocity.shape}, expected {self.velocity.shape}")
            ops.copyto(self.velocity, velocity)


class _Schedule:
    """Call step() once per epoch (after evaluation); it sets optimizer.lr for the next epoch."""

    def __init__(self, optimizer):
        self.optimizer, self.base_lr, self.epoch = optimizer, optimizer.lr, 0

    def step(self, metric=None):
        self.epoch += 1
        self.optimizer.lr = self.lr_at(self.epoch)

    def state_dict(self):
        return {"base_lr": self.base_lr, "epoch": self.epoch}

    def load_state_dict(self, state):
        self.base_lr, self.epoch = float(state["base_lr"]), int(state["epoch"])


class StepLR(_Schedule):
    def __init__(self, optimizer, step_size, gamma=0.1):
        super().__init__(optimizer)
        self.step_size, self.gamma = int(step_size), float(gamma)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class MultiStepLR(_Schedule):
    def __init__(self, optimizer, milestones, gamma=0.1):
        super().__init__(optimizer)
        self.milestones, self.gamma = sorted(int(m) for m in milestones), float(gamma)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** sum(epoch >= m for m in self.milestones)


class CosineLR(_Schedule):
    def __init__(self, optimizer, total_epochs, min_lr=0.0):
        super().__init__(optimizer)
        self.total, self.min_lr = int(total_epochs), float(min_lr)

    def lr_at(self, epoch):
        t = min(epoch, self.total) / max(self.total, 1)
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * t))


class ReduceLROnPlateau(_Schedule):
    """The AlexNet paper's rule: divide the learning rate by 10 when the validation metric stops
    improving (mode "min" for a loss, "max" for an accuracy) for `patience` epochs."""

    def __init__(self, optimizer, mode="min", factor=0.1, patience=2, threshold=1e-4, min_lr=0.0):
        super().__init__(optimizer)
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {mode!r}")
        self.mode, self.factor, self.patience = mode, float(factor), int(patience)
        self.threshold, self.min_lr = float(threshold), float(min_lr)
        self.best, self.bad_epochs = None, 0

    def step(self, metric=None):
        if metric is None:
            raise ValueError("ReduceLROnPlateau.step needs the validation metric")
        self.epoch += 1
        m = float(metric)
        better = self.best is None or (m < self.best * (1 - self.threshold) if self.mode == "min"
                                       else m > self.best * (1 + self.threshold))
        if better:
            self.best, self.bad_epochs = m, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                self.optimizer.lr = max(self.optimizer.lr * self.factor, self.min_lr)
                self.bad_epochs = 0

    def state_dict(self):
        return {**super().state_dict(), "best": self.best, "bad_epochs": self.bad_epochs,
                "lr": self.optimizer.lr}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.best, self.bad_epochs = state["best"], int(state["bad_epochs"])
        self.optimizer.lr = float(state["lr"])


def make_schedule(name, optimizer, epochs):
    """Schedules by CLI name: none, step, multistep, plateau, cosine."""
    if name in (None, "none"):
        return None
    if name == "step":
        return StepLR(optimizer, max(1, epochs // 3))
    if name == "multistep":
        return MultiStepLR(optimizer, [epochs // 2, 3 * epochs // 4])
    if name == "plateau":
        return ReduceLROnPlateau(optimizer, mode="max")
    if name == "cosine":
        return CosineLR(optimizer, epochs)
    raise ValueError(f"unknown schedule {name!r}; choose none, step, multistep, plateau or cosine")
