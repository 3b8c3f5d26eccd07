"""Fully connected vs locally connected vs convolutional layers with the same hidden units
(pyconvnet.connectivity), forward and backward separately, over the image sides of
connectivity.SERIES; and the locally connected layer against PyTorch's F.unfold + bmm equivalent.

    pytest bench/bench_connectivity.py --benchmark-only [--bench-threads 1,2]
    pytest bench/bench_connectivity.py --benchmark-only -k "lc and not torch"

Each size is planned before anything is allocated (connectivity.plan_size against
connectivity.default_budget()): layers that would not fit are skipped with the bytes they would
need; `pyconvnet bench connectivity` estimates their times from a power law fitted to the measured
sizes. Before timing, check_family asserts at each size that fc, lc and conv given the same
(convolutional) weights compute the same y, dx and summed dw; test_lc_vs_torch_unfold asserts lc
against PyTorch. GPU rows are listed and skipped, with the reason, until a backend can run them.
extra_info: params, memory_bytes (values + gradients + x, y, dy, dx + workspace), gflop, GFLOP/s;
for the torch comparison the interleaved ratio torch time / pyconvnet time (forward + backward).
"""
import pytest

import pyconvnet
from pyconvnet import connectivity as C
from pyconvnet.bench_cli import LC_TARGET, available_devices, time_interleaved

try:
    import torch
except ImportError:
    torch = None

CFG, BUDGET = C.SERIES, C.default_budget()
LAYERS = [(s, k, p) for s in CFG["sizes"] for k in C.KINDS for p in ("fwd", "bwd")]
DEVICES = [pytest.param(d, marks=pytest.mark.skipif(why is not None, reason=f"{d}: {why}"))
           for d, why in available_devices().items()]
_alive = {}  # the layers of one size at a time


def at_size(side):
    if _alive.get("side") != side:
        _alive.clear()
        chosen, with_torch, plans = C.plan_size(side, CFG, BUDGET, torch is not None)
        cases = {k: C.LayerCase(k, side, CFG) for k in chosen}
        if cases:
            C.check_family(cases)
        _alive.update(side=side, cases=cases, plans=plans, with_torch=with_torch)
    return _alive


def set_threads(n):
    pyconvnet.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("side,kind,pass_", LAYERS, ids=[f"S{s}-{k}-{p}" for s, k, p in LAYERS])
def test_layer(benchmark, side, kind, pass_, device, threads):
    set_threads(threads)
    alive = at_size(side)
    plan = alive["plans"][kind]
    if kind not in alive["cases"]:
        pytest.skip(f"{kind} at S={side} needs {C.human_bytes(plan['memory_bytes'])} (with the other layers "
                    f"of this size over the {C.human_bytes(BUDGET)} budget): not allocated; "
                    "`pyconvnet bench connectivity` estimates it")
    case = alive["cases"][kind]
    gflop = case.flops * (1 if pass_ == "fwd" else 2) / 1e9
    benchmark.group = f"connectivity S={side} {pass_}"
    benchmark.extra_info.update(params=plan["params"], memory_bytes=plan["memory_bytes"], gflop=gflop,
                                threads=threads, device=device)
    case.fwd()
    benchmark(case.fwd if pass_ == "fwd" else case.bwd)
    if benchmark.stats is not None:
        benchmark.extra_info["GFLOP/s"] = round(gflop / benchmark.stats.stats.median, 3)


@pytest.mark.parametrize("side", CFG["sizes"])
def test_lc_vs_torch_unfold(benchmark, side, threads):
    if torch is None:
        pytest.skip("PyTorch is not installed")
    set_threads(threads)
    alive = at_size(side)
    if not alive["with_torch"]:
        pytest.skip(f"lc and its torch equivalent at S={side} do not fit the {C.human_bytes(BUDGET)} budget")
    lc = alive["cases"]["lc"]
    theirs = C.TorchUnfoldLC(lc, torch)
    theirs.check(lc)
    set_threads(threads)
    of, ob, tf, tb = time_interleaved([lc.fwd, lc.bwd, theirs.fwd, theirs.bwd], repeat=5)
    gflop = 3 * lc.flops / 1e9
    benchmark.group = "lc vs torch unfold (fwd+bwd)"
    benchmark.extra_info.update(ratio_fwd_bwd=round((tf + tb) / (of + ob), 3), target=LC_TARGET,
                                pyconvnet_GFLOP_s=round(gflop / (of + ob), 3),
                                torch_GFLOP_s=round(gflop / (tf + tb), 3), gflop=gflop, threads=threads)
    benchmark(lambda: (theirs.fwd(), theirs.bwd()))  # pyconvnet's side is test_layer's fwd and bwd
