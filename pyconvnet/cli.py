"""Command line: pyconvnet train | eval | summary, plus the commands of the modules in EXTRA
(each has add_parser(subparsers), which registers a subcommand and sets its `func`)."""
import argparse
import importlib
import os
import sys

from . import models

DEFAULTS = {"model": "lenet5", "data": "mnist5k", "epochs": 30, "batch_size": 64, "lr": 0.1,
            "momentum": 0.9, "weight_decay": 5e-4, "rule": "torch", "schedule": "cosine",
            "seed": 0, "workers": 0}


def _train_parser(sub):
    p = sub.add_parser("train", help="train a model (default: LeNet-5 on the bundled MNIST-5k)")
    p.add_argument("--model", choices=models.MODELS, default=DEFAULTS["model"])
    p.add_argument("--data", default=DEFAULTS["data"],
                   help="mnist5k (bundled, default), digits (scikit-learn's), or a folder with train/ and val/")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"default {DEFAULTS['epochs']}; with --resume, the checkpoint's own")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    p.add_argument("--momentum", type=float, default=DEFAULTS["momentum"])
    p.add_argument("--weight-decay", type=float, default=DEFAULTS["weight_decay"])
    p.add_argument("--rule", choices=("torch", "paper"), default=DEFAULTS["rule"])
    p.add_argument("--schedule", choices=("none", "step", "multistep", "plateau", "cosine"),
                   default=DEFAULTS["schedule"])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--workers", type=int, default=DEFAULTS["workers"], help="data-loading processes")
    p.add_argument("--threads", type=int, default=None, help="compute threads (default: all cores)")
    p.add_argument("--out", default=None, help="output folder (default runs/MODEL-DATA)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    p.add_argument("--no-progress", action="store_true")


def _device(name):
    if name == "cuda":
        from . import cuda
        why = cuda.why_unavailable()
        if why is not None:
            raise SystemExit(f"pyconvnet: --device cuda is not available: {why}")


def cmd_train(a):
    from .train import CKPT, Diverged, Run
    _device(a.device)
    out = a.out or os.path.join("runs", f"{a.model}-{os.path.basename(os.path.normpath(a.data))}")
    ckpt = os.path.join(out, CKPT)
    if a.resume:
        if not os.path.isfile(ckpt):
            raise SystemExit(f"pyconvnet: --resume: no checkpoint at {ckpt}")
        extend = {"epochs": a.epochs} if a.epochs is not None else {}
        run = Run.load(ckpt, device=a.device, workers=a.workers, **extend)
        print(f"resuming {ckpt} at epoch {run.epoch}")
    else:
        epochs = DEFAULTS["epochs"] if a.epochs is None else a.epochs
        config = {"model": a.model, "data": a.data, "epochs": epochs, "batch_size": a.batch_size,
                  "lr": a.lr, "momentum": a.momentum, "weight_decay": a.weight_decay,
                  "rule": a.rule, "schedule": a.schedule, "seed": a.seed, "workers": a.workers}
        run = Run(config, device=a.device)
    c = run.config
    print(f"{c['model']} on {c['data']}: {len(run.train_set)} train / {len(run.test_set)} test "
          f"images, {c['num_classes']} classes, input {tuple(c['input_shape'])}, "
          f"{run.model.flat_params.size:,} parameters; writing {out}/")
    try:
        hist = run.fit(out, progress=not a.no_progress)
    except Diverged as e:
        raise SystemExit(f"pyconvnet: training diverged: {e}") from None
    if hist:
        h = hist[-1]
        print(f"final test top-1 {h['test_top1']:.4f}" + (f", top-5 {h['test_top5']:.4f}" if "test_top5" in h else "")
              + f"; checkpoint {ckpt}, curve {os.path.join(out, 'training_curve.png')}")


def cmd_eval(a):
    from . import sources
    from .train import Run, evaluate
    overrides = {"data": a.data} if a.data else {}
    _device(a.device)
    run = Run.load(a.checkpoint, device=a.device, **overrides)
    tf, ten = run.test_tf, False
    if a.ten_crop:
        if not run.stats:
            raise SystemExit("pyconvnet: --ten-crop needs an image-folder data set")
        crop = run.config["input_shape"][-1]
        tf, ten = sources.TenCrop(run.stats, sources.rescale_size(crop), crop), True
    r = evaluate(run.model, run.test_set, transform=tf, ten_crop=ten)
    print(f"{a.checkpoint}: {len(run.test_set)} test images, loss {r['loss']:.4f}, "
          f"top-1 {r['top1']:.4f}" + (f", top-5 {r['top5']:.4f}" if "top5" in r else ""))


def cmd_summary(a):
    m = models.build(a.model, a.num_classes)
    print(m.summary(models.input_shape(a.model)))


EXTRA = ("lecture_cli", "bench_cli")  # modules of pyconvnet with add_parser(subparsers)


def main(argv=None):
    p = argparse.ArgumentParser(prog="pyconvnet", description="A small convolutional-network library.")
    sub = p.add_subparsers(dest="cmd", required=True)
    _train_parser(sub)
    for name in EXTRA:
        importlib.import_module(f"pyconvnet.{name}").add_parser(sub)
    e = sub.add_parser("eval", help="evaluate a checkpoint on its (or another) test set")
    e.add_argument("checkpoint")
    e.add_argument("--data", default=None)
    e.add_argument("--ten-crop", action="store_true", help="average 10 crops per image (folders)")
    e.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    s = sub.add_parser("summary", help="layers, output shapes, parameters, neurons and FLOPs")
    s.add_argument("model", choices=models.MODELS)
    s.add_argument("--num-classes", type=int, default=None)
    a = p.parse_args(argv)
    if a.cmd in ("train", "bench"):  # this process is ours: keep freed activations mapped
        from . import keep_freed_memory
        keep_freed_memory()
    if getattr(a, "threads", None):
        from . import set_num_threads
        set_num_threads(a.threads)
    if a.cmd == "summary" and a.num_classes is None:
        a.num_classes = 1000 if a.model != "lenet5" else 10
    builtin = {"train": cmd_train, "eval": cmd_eval, "summary": cmd_summary}
    try:
        (builtin[a.cmd] if a.cmd in builtin else a.func)(a)
    except (ValueError, TypeError) as e:
        raise SystemExit(f"pyconvnet: {e}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
