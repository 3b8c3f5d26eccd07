"""Training-step throughput: forward, softmax cross-entropy, backward and the SGD step
(momentum 0.9, weight decay 5e-4) of LeNet-5 (batch 64, 28x28), alexnet_small (batch 64, 64x64,
100 classes) and AlexNet (batch 16, 227x227), in pyconvnet and in the identical torch.nn.Sequential
with torch.optim.SGD (pyconvnet.bench_models.TrainStep).

    pytest bench/bench_models.py --benchmark-only [--bench-threads 2]

Before timing, one step of each library from the same weights (dropout off) is asserted to give
the same loss, gradients and updated weights (without PyTorch: that a step lowers the loss).
extra_info: images_per_s and GFLOP/s (3x the forward FLOPs of Sequential.summary). For
interleaved pyconvnet/PyTorch ratios run `pyconvnet bench models --compare-torch`.
"""
import pytest

import pyconvnet
from pyconvnet.bench_cli import MODEL_BATCH
from pyconvnet.bench_models import TrainStep

try:
    import torch
except ImportError:
    torch = None

_alive = {}  # one model at a time: AlexNet's weights, gradients and momentum are 0.7 GB per library


def step_for(name):
    if _alive.get("name") != name:
        _alive.clear()
        case = TrainStep(name, MODEL_BATCH[name])
        if torch is not None:
            case.setup_torch(torch)
        case.check()  # against torch; without it, only that a step lowers the loss
        _alive.update(name=name, case=case)
    return _alive["case"]


@pytest.mark.parametrize("lib", ["pyconvnet", "torch"])
@pytest.mark.parametrize("name", list(MODEL_BATCH))
def test_train_step(benchmark, name, lib, threads):
    if lib == "torch" and torch is None:
        pytest.skip("PyTorch is not installed")
    pyconvnet.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    case = step_for(name)
    benchmark.group = f"train step {name} batch {case.batch}"
    benchmark.extra_info.update(batch=case.batch, gflop=case.flops / 1e9, threads=threads)
    benchmark(case.step if lib == "pyconvnet" else case.torch_step)
    if benchmark.stats is not None:
        t = benchmark.stats.stats.median
        benchmark.extra_info.update({"images_per_s": round(case.batch / t, 2),
                                     "GFLOP/s": round(case.flops / t / 1e9, 2)})
