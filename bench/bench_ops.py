"""Per-op benchmarks on the AlexNet 2012 layer shapes at batch 16, forward and forward+backward.

Run from the repository root (pytest-benchmark; bench/conftest.py makes `pytest bench` collect
bench_*.py, which the default `pytest` run, testpaths = ["tests"], never sees):

    pytest bench --benchmark-only                                  # every op, default threads
    pytest bench/bench_ops.py --benchmark-only -k "conv2 or lrn"   # some ops
    pytest bench --benchmark-only --bench-threads 1,2              # per thread count
    pytest bench --benchmark-only --benchmark-min-rounds=1 --benchmark-max-time=0.1   # quick pass

Each benchmark first asserts pyconvnet's output (and for fwd+bwd its gradients) once, against
PyTorch when importable and else against numpy (alexnet_shapes.py), then times the layer calls.
extra_info holds the work per call ("gflop" or "gbyte") and the GFLOP/s or GB/s at the median
time. For side-by-side pyconvnet / PyTorch ratios run bench/compare_torch.py.
"""
import pytest

from alexnet_shapes import CASES, NAMES
import pyconvnet

try:
    import torch
except ImportError:
    torch = None

_cases = {}


def get_case(name):
    """One case per op per session (the inputs of the larger ones are tens of MB)."""
    if name not in _cases:
        _cases[name] = CASES[name]()
    return _cases[name]


def set_threads(n):
    pyconvnet.set_num_threads(n)
    if torch is not None:  # one OpenMP runtime serves both: keep their counts equal
        torch.set_num_threads(n)


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("name", NAMES)
def test_op(benchmark, name, backward, threads):
    case = get_case(name)
    set_threads(threads)
    case.check(backward, torch)
    set_threads(threads)

    amount, unit = case.work(backward)
    scale = "gflop" if unit == "GFLOP/s" else "gbyte"
    benchmark.group = name
    benchmark.extra_info.update({scale: amount / 1e9, "threads": threads,
                                 "checked_against": "torch" if torch is not None else "numpy"})
    benchmark(case.fwd_bwd if backward else case.fwd)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info[unit] = round(case.rate(benchmark.stats.stats.median, backward)[0], 2)
