"""pytest setup for bench/ (outside the default test run: pyproject sets testpaths = ["tests"]).

pytest collects only test_*.py by default; this makes `pytest bench` collect bench_*.py too, and adds
--bench-threads (comma-separated thread counts; default: pyconvnet's current count).
"""
import sys
from pathlib import Path

import pytest

try:
    import pyconvnet
except ImportError:  # a source checkout without an install: the bench files use the checkout's
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import pyconvnet

pyconvnet.keep_freed_memory()  # as `pyconvnet bench` does: the same malloc policy for both sides


def pytest_addoption(parser):
    parser.addoption("--bench-threads", default=None,
                     help="comma-separated pyconvnet thread counts to benchmark, e.g. 1,2")


def pytest_collect_file(file_path, parent):
    # files named on the command line are collected by pytest itself; don't collect them twice
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and not parent.session.isinitpath(file_path)):
        return pytest.Module.from_parent(parent, path=file_path)


def pytest_generate_tests(metafunc):
    if "threads" in metafunc.fixturenames:
        opt = metafunc.config.getoption("--bench-threads")
        if opt:
            counts = [int(t) for t in opt.split(",")]
        else:
            counts = [pyconvnet.get_num_threads()]
        metafunc.parametrize("threads", counts, ids=[f"{n}t" for n in counts])
