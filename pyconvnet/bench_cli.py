"""`pyconvnet bench ops|models|connectivity`: a progress bar, a table, and OUT/<what>.json and
OUT/<what>.png (connectivity also OUT/connectivity_accuracy.png).

  ops           the AlexNet layer shapes at batch 16 (bench/alexnet_shapes.py of a source checkout),
                forward and forward+backward, on the CPU or (--device cuda) the GPU
  models        training steps (forward, loss, backward, SGD step) of LeNet-5 (batch 64, 28x28),
                alexnet_small (batch 64, 64x64, 100 classes) and AlexNet (batch 16, 227x227);
                on the CPU or (--device cuda) the GPU, where PyTorch runs on the GPU too
  connectivity  fully vs locally connected vs convolutional layers (pyconvnet.connectivity): the
                lecture's worked example, a size series, and MNIST-5k accuracy vs parameters

Every timed call is first checked for correctness (against PyTorch when importable). With
--compare-torch the same work runs in PyTorch in this process, timed interleaved with pyconvnet
(time_interleaved), and the table shows ratio = torch time / pyconvnet time (> 1: pyconvnet faster).
"""
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

from . import get_num_threads, set_num_threads
from .bench_models import TrainStep

MODEL_BATCH = {"lenet5": 64, "alexnet_small": 64, "alexnet": 16}
QUICK_MODEL_BATCH = {"lenet5": 16, "alexnet_small": 8}
MODEL_TARGETS = {"lenet5": 2.0, "alexnet_small": 1.0, "alexnet": 1.0}  # vs torch at 2 threads, reported
GPU_MODEL_TARGETS = {"alexnet": 0.5}  # vs torch + cuDNN on the same GPU (FP32), reported
LC_TARGET = 5.0  # locally connected fwd+bwd vs torch unfold + bmm at 2 threads, reported
QUICK_OPS = ("conv3", "maxpool", "lrn", "softmax_xent")
TARGET_THREADS = 2


def add_parser(sub):
    p = sub.add_parser("bench", help="benchmarks: AlexNet ops, training steps, FC vs LC vs conv")
    p.add_argument("what", choices=("ops", "models", "connectivity"))
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=None, help="compute threads (default: all cores)")
    p.add_argument("--compare-torch", action="store_true", help="time PyTorch side by side")
    p.add_argument("--out", default=os.path.join("runs", "bench"), help="folder for JSON and PNG")
    p.add_argument("--quick", action="store_true", help="small sizes and few samples (a smoke run)")
    p.add_argument("--repeat", type=int, default=None, help="timing samples per call (default 5, quick 2)")
    p.add_argument("--memory-budget", type=float, default=None,
                   help="connectivity: MiB the measured layers may hold (default: 1/4 of free, at most 2 GiB)")
    p.add_argument("--epochs", type=int, default=None, help="connectivity: MNIST-5k epochs (default 3, quick 1)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_bench)


# ---- timing ------------------------------------------------------------------------------
def _per_call(fn, calls, sync=None):
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    if sync is not None:  # asynchronous (GPU) calls: the time is the time until they finished
        sync()
    return (time.perf_counter() - t) / calls


def device_sync(device, torch=None):
    """None on the CPU; on CUDA, a function that waits for the GPU work queued so far, ours and
    PyTorch's (calls there are asynchronous: a timer must wait before it stops)."""
    if device == "cpu":
        return None
    from . import cuda

    def sync():
        cuda.synchronize()
        if torch is not None and torch.cuda.is_available():
            torch.cuda.synchronize()
    return sync


def time_interleaved(fns, repeat=5, min_time=0.05, sync=None):
    """Median seconds per call of each fn. After a warm-up call each, samples are taken in turns,
    the order reversed every other round (A B C, C B A, ...), so that load from other processes
    hits all alike; a sample runs back-to-back calls for at least min_time seconds."""
    calls = []
    for fn in fns:
        fn()
        calls.append(max(1, math.ceil(min_time / max(_per_call(fn, 1, sync), 1e-9))))
    samples = [[] for _ in fns]
    for r in range(repeat):
        for i in (range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))):
            samples[i].append(_per_call(fns[i], calls[i], sync))
    return [statistics.median(s) for s in samples]


def available_devices(what="connectivity"):
    """{device: None if `pyconvnet bench <what>` can use it, else why not}."""
    try:
        from . import cuda
        why = cuda.why_unavailable()
    except ImportError:
        why = "pyconvnet was built without its CUDA backend (pyconvnet._cuda)"
    if why is None and what == "connectivity":
        why = "`pyconvnet bench connectivity` has no GPU rows yet (ops and models have)"
    return {"cpu": None, "cuda": why}


def _set_threads(n, torch):
    set_num_threads(n)
    if torch is not None:  # one OpenMP runtime serves both: keep the counts equal
        torch.set_num_threads(n)


# ---- models: one training step, in pyconvnet and in PyTorch (bench_models.py) -------------
def run_models(a, torch, bar):
    batches = QUICK_MODEL_BATCH if a.quick else MODEL_BATCH
    bar.reset(total=len(batches))
    rows = []
    for name, batch in batches.items():
        case = TrainStep(name, batch, device=a.device)
        if torch is not None:  # the reference for the check, even without --compare-torch
            case.setup_torch(torch)
        case.check()
        _set_threads(a.threads, torch)
        fns = [case.step] + ([case.torch_step] if a.compare_torch else [])
        times = time_interleaved(fns, a.repeat, 0.2, device_sync(a.device, torch))
        row = {"model": name, "batch": batch, "ms": times[0] * 1e3, "images_per_s": batch / times[0],
               "gflops": case.flops / times[0] / 1e9, "checked_against_torch": torch is not None}
        if a.compare_torch:
            tdev = case.xt.device.type
            row.update(torch_ms=times[1] * 1e3, torch_images_per_s=batch / times[1], ratio=times[1] / times[0],
                       torch_device=tdev)
            target = (GPU_MODEL_TARGETS.get(name) if a.device == tdev == "cuda" else
                      MODEL_TARGETS[name] if a.device == "cpu" and a.threads == TARGET_THREADS else None)
            if target:
                row.update(target=target, met=row["ratio"] >= target)
        rows.append(row)
        del case
        bar.update(1)
    return {"rows": rows}


# ---- ops: the AlexNet layer shapes of bench/alexnet_shapes.py ------------------------------
def _alexnet_shapes():
    """bench/alexnet_shapes.py of the source checkout this package was built in, or else one that
    is importable already (a test puts the checkout's bench/ on sys.path)."""
    bench = Path(__file__).resolve().parents[1] / "bench"
    if (bench / "alexnet_shapes.py").is_file() and str(bench) not in sys.path:
        sys.path.insert(0, str(bench))
    try:
        import alexnet_shapes
    except ImportError:
        raise SystemExit(f"pyconvnet bench ops: needs bench/alexnet_shapes.py of a source checkout "
                         f"(looked in {bench})") from None
    return alexnet_shapes


def run_ops(a, torch, bar):
    shapes = _alexnet_shapes()
    try:
        from compare_torch import TARGETS
    except ImportError:
        TARGETS = {}
    names = QUICK_OPS if a.quick else shapes.NAMES
    bar.reset(total=2 * len(names))
    rows = []
    for name in names:
        case = shapes.CASES[name]().to(a.device)
        for backward, pass_name in ((False, "fwd"), (True, "fwd+bwd")):
            case.check(backward, torch)
            _set_threads(a.threads, torch)
            fns = [case.fwd_bwd if backward else case.fwd]
            if a.compare_torch:
                case.setup_torch(torch)
                fns.append(case.torch_fwd_bwd if backward else case.torch_fwd)
            times = time_interleaved(fns, a.repeat, 0.05, device_sync(a.device, torch))
            rate, unit = case.rate(times[0], backward)
            row = {"op": name, "pass": pass_name, "ms": times[0] * 1e3, "rate": rate, "unit": unit}
            if a.compare_torch:
                row.update(torch_ms=times[1] * 1e3, ratio=times[1] / times[0], torch_device=case.xt.device.type)
                if backward and a.device == "cpu" and a.threads == TARGET_THREADS and name in TARGETS:
                    row.update(target=TARGETS[name], met=row["ratio"] >= TARGETS[name])
            rows.append(row)
            bar.update(1)
        del case
    return {"rows": rows}


# ---- connectivity ---------------------------------------------------------------------------
def run_connectivity(a, torch, bar):
    from . import connectivity as C, connectivity_report as R
    cfg = C.QUICK_SERIES if a.quick else C.SERIES
    budget = int(a.memory_budget * 2**20) if a.memory_budget else (C.QUICK_BUDGET if a.quick else C.default_budget())
    epochs = a.epochs if a.epochs is not None else (1 if a.quick else 3)
    limits = (256, 128) if a.quick else (None, None)
    bar.reset(total=len(cfg["sizes"]) + R.accuracy_steps(epochs, 64, limits[0]))
    series = C.measure_series(cfg, budget, a.repeat, 0.05, torch if a.compare_torch else None, bar.update)
    if a.compare_torch and not a.quick:
        series["torch_unfold"] += C.compare_lc_torch(C.LC_WIDE, budget, torch, a.repeat)
    for r in series["torch_unfold"]:
        if a.threads == TARGET_THREADS:
            r.update(target=LC_TARGET, met=r["ratio_fwd_bwd"] >= LC_TARGET)
    accuracy = R.compare_accuracy(epochs, train_images=limits[0], test_images=limits[1], progress=bar.update)
    return {"worked_example": C.worked_example(), **series, "accuracy": accuracy}


# ---- the command ----------------------------------------------------------------------------
def cmd_bench(a):
    from tqdm import tqdm
    reason = available_devices(a.what).get(a.device)
    if reason:
        raise SystemExit(f"pyconvnet bench: --device {a.device} is not available: {reason}")
    try:
        import torch
    except ImportError:
        torch = None
    if a.compare_torch and torch is None:
        raise SystemExit("pyconvnet bench: --compare-torch needs PyTorch (pip install torch)")
    a.threads = a.threads or get_num_threads()
    a.repeat = a.repeat or (2 if a.quick else 5)
    if a.repeat < 1:
        raise SystemExit("pyconvnet bench: --repeat must be >= 1")
    _set_threads(a.threads, torch)
    run = {"ops": run_ops, "models": run_models, "connectivity": run_connectivity}[a.what]
    load0, t0 = os.getloadavg()[0], time.time()
    with tqdm(total=0, desc=f"bench {a.what}", unit="case", disable=a.no_progress, file=sys.stderr) as bar:
        result = run(a, torch, bar)
    result = {"command": a.what, "device": a.device, "threads": a.threads, "quick": a.quick,
              "torch": torch.__version__ if torch is not None else None, "compare_torch": a.compare_torch,
              "cpu": _cpu_name(), "load_avg": [load0, os.getloadavg()[0]], "seconds": time.time() - t0, **result}
    print(report(result))
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, f"{a.what}.json"), "w") as f:
        json.dump(result, f, indent=1)
    paths = plot(result, a.out)
    print(f"wrote {os.path.join(a.out, a.what + '.json')}, " + ", ".join(paths))


# ---- tables and charts ----------------------------------------------------------------------
def format_table(header, rows):
    """Columns of strings: the first left-aligned, the others right-aligned."""
    cells = [list(header)] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "  ".join(c.rjust(w[i]) if i else c.ljust(w[i]) for i, c in enumerate(r)).rstrip()  # noqa: E731
    return "\n".join([line(cells[0]), "-" * (sum(w) + 2 * len(w) - 2)] + [line(r) for r in cells[1:]])


def fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def _target(row):
    return f">={row['target']:.1f} {'ok' if row['met'] else 'MISS'}" if "target" in row else ""


def report(result):
    r = result
    torch_device = next((x["torch_device"] for x in r.get("rows", []) if "torch_device" in x), None)
    head = (f"pyconvnet bench {r['command']} on {r['cpu']}, {r['threads']} threads, {r['device']}; "
            f"load avg {r['load_avg'][0]:.1f} -> {r['load_avg'][1]:.1f}; torch {r['torch'] or 'not installed'}"
            + (f" on {torch_device}" if torch_device else "")
            + ("\nratio = torch time / pyconvnet time (> 1: pyconvnet faster), timed interleaved in one process"
               if r["compare_torch"] else ""))
    if r["command"] == "connectivity":
        from . import connectivity_report
        return head + "\n\n" + connectivity_report.format_report(r)
    if r["command"] == "ops":
        table = format_table(("op", "pass", "pyconvnet ms", "torch ms", "ratio", "rate", "target"), [
            (x["op"], x["pass"], fmt(x["ms"]), fmt(x.get("torch_ms")), fmt(x.get("ratio")),
             f"{x['rate']:.2f} {x['unit']}", _target(x)) for x in r["rows"]])
    else:
        table = format_table(("model", "batch", "ms/step", "images/s", "GFLOP/s", "torch ms", "torch img/s",
                              "ratio", "target"), [
            (x["model"], x["batch"], fmt(x["ms"], ".1f"), fmt(x["images_per_s"], ".1f"), fmt(x["gflops"], ".1f"),
             fmt(x.get("torch_ms"), ".1f"), fmt(x.get("torch_images_per_s"), ".1f"), fmt(x.get("ratio")),
             _target(x)) for x in r["rows"]])
    return head + "\n\n" + table


def plot(result, out):
    """The PNG chart(s) of a result; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if result["command"] == "connectivity":
        from . import connectivity_report
        return connectivity_report.plot(result, out, plt)
    rows, ops = result["rows"], result["command"] == "ops"
    labels = [f"{x['op']} {x['pass']}" if ops else f"{x['model']} b{x['batch']}" for x in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(rows) + 2), 4.5))
    if result["compare_torch"]:
        ax.bar(range(len(rows)), [x["ratio"] for x in rows], color="tab:blue")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_ylabel("torch time / pyconvnet time")
    else:
        ax.bar(range(len(rows)), [x["ms"] if ops else x["images_per_s"] for x in rows], color="tab:blue")
        ax.set_ylabel("ms per call" if ops else "training images/s")
    ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_title(f"pyconvnet bench {result['command']}, {result['threads']} threads ({result['device']})")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = os.path.join(out, f"{result['command']}.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        import platform
        return platform.processor() or "unknown CPU"
