"""pyconvnet next to PyTorch (CPU) on the AlexNet 2012 layer shapes at batch 16, in one process.

    python bench/compare_torch.py [--threads 1 2] [--repeat 5] [--ops conv1,conv2,...] [--min-time 0.05]

For each thread count both libraries get n threads (pyconvnet.set_num_threads, torch.set_num_threads).
For each op and pass (fwd, fwd+bwd) it first asserts that pyconvnet agrees with torch (forward output
and gradients, rtol 1e-3; dropout: the same law, as masks differ), warms both up, then takes --repeat
timing samples of each side interleaved A B B A A B ..., so that load from other processes hits both
alike. A sample runs the op back to back for at least --min-time seconds and yields the mean time per
call; the table shows the median sample. ratio = torch ms / pyconvnet ms: above 1, pyconvnet is faster.
The torch side is torch.nn.functional on requires_grad tensors, gradients by torch.autograd.grad.
Without torch installed it checks against numpy and prints pyconvnet's timings alone.
"""
import argparse
import math
import os
import platform
import statistics
import time

from alexnet_shapes import CASES, NAMES
import pyconvnet

try:
    import torch
except ImportError:
    torch = None

# speed-up wanted over torch at 2 threads, forward+backward (reported, not asserted)
TARGETS = {"conv1": 1.5, "conv2": 0.9, "conv3": 0.9, "conv4": 0.9, "conv5": 0.9, "maxpool": 3.0,
           "lrn": 3.0, "dropout_fc": 3.0, "dropout_conv": 3.0, "linear": 1.0}
TARGET_THREADS = 2


def per_call(fn, inner):
    t = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t) / inner


def calls_per_sample(fn, min_time):
    """Warm up, then the number of back-to-back calls that lasts about min_time seconds."""
    fn()
    return max(1, math.ceil(min_time / per_call(fn, 1)))


def time_pair(a, b, repeat, min_time):
    """Median seconds per call of a and of b (b may be None), sampled interleaved A B B A ..."""
    fns = [f for f in (a, b) if f is not None]
    inner = [calls_per_sample(f, min_time) for f in fns]
    samples = [[] for _ in fns]
    for r in range(repeat):
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            samples[i].append(per_call(fns[i], inner[i]))
    return [statistics.median(s) for s in samples] + [None] * (2 - len(fns))


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def set_threads(n):
    pyconvnet.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)


def run_table(cases, n, args):
    set_threads(n)
    rows, misses = [], []
    load0 = os.getloadavg()[0]
    for case in cases:
        for backward, pass_name in ((False, "fwd"), (True, "fwd+bwd")):
            case.check(backward, torch)
            set_threads(n)  # keep both at n whatever the check did
            if torch is not None:
                case.setup_torch(torch)
                ours, theirs = time_pair(case.fwd_bwd if backward else case.fwd,
                                         case.torch_fwd_bwd if backward else case.torch_fwd,
                                         args.repeat, args.min_time)
            else:
                ours, theirs = time_pair(case.fwd_bwd if backward else case.fwd, None,
                                         args.repeat, args.min_time)
            rate, unit = case.rate(ours, backward)
            ratio = theirs / ours if theirs else None
            target = ""
            if backward and n == TARGET_THREADS and case.name in TARGETS and ratio is not None:
                met = ratio >= TARGETS[case.name]
                target = f">={TARGETS[case.name]:.1f} {'ok' if met else 'MISS'}"
                if not met:
                    misses.append(f"{case.name} {ratio:.2f}x < {TARGETS[case.name]:.1f}x")
            rows.append((case.name, pass_name, ours, theirs, ratio, rate, unit, target))
    print_table(rows, n, args, load0, os.getloadavg()[0])
    return misses


def print_table(rows, n, args, load0, load1):
    versus = f"torch {torch.__version__}" if torch is not None else "torch not installed"
    print(f"\n== {n} thread{'s' if n > 1 else ''}, batch 16, median of {args.repeat} samples "
          f"(load avg {load0:.1f} -> {load1:.1f}); {versus} ==")
    if torch is not None:
        print("   ratio = torch ms / pyconvnet ms  (> 1: pyconvnet faster)"
              + (f"; targets are for fwd+bwd at {TARGET_THREADS} threads" if n == TARGET_THREADS else ""))
    head = f"{'op':<13} {'pass':<8} {'pyconvnet ms':>12} {'torch ms':>9} {'ratio':>6}  {'pyconvnet rate':>17}"
    print(head + ("  target" if torch is not None and n == TARGET_THREADS else ""))
    print("-" * (len(head) + (12 if n == TARGET_THREADS else 0)))
    for name, pass_name, ours, theirs, ratio, rate, unit, target in rows:
        t = f"{theirs * 1e3:9.2f}" if theirs else f"{'-':>9}"
        r = f"{ratio:6.2f}" if ratio else f"{'-':>6}"
        print(f"{name:<13} {pass_name:<8} {ours * 1e3:12.2f} {t} {r}  {rate:9.2f} {unit:<7}  {target}".rstrip())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    ap.add_argument("--repeat", type=int, default=5, help="timing samples per side (default 5)")
    ap.add_argument("--ops", default=",".join(NAMES), help=f"comma-separated subset of {','.join(NAMES)}")
    ap.add_argument("--min-time", type=float, default=0.05, help="seconds per sample (default 0.05)")
    args = ap.parse_args()
    names = [s.strip() for s in args.ops.split(",") if s.strip()]
    unknown = [s for s in names if s not in CASES]
    if unknown:
        ap.error(f"unknown op(s) {unknown}; choose from {NAMES}")
    if min(args.threads) < 1 or args.repeat < 1:
        ap.error("--threads and --repeat must be >= 1")

    print(f"pyconvnet {pyconvnet.__version__} on {cpu_name()}, {os.cpu_count()} logical CPUs; "
          + (f"torch {torch.__version__}" if torch is not None
             else "torch is not installed: pyconvnet timings only, checked against numpy"))
    cases = [CASES[name]() for name in names]
    misses = {n: run_table(cases, n, args) for n in args.threads}
    if torch is not None and TARGET_THREADS in misses:
        print(f"\ntargets missed at {TARGET_THREADS} threads: "
              + ("; ".join(misses[TARGET_THREADS]) or "none"))


if __name__ == "__main__":
    main()
