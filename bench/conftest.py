"""pytest setup for bench/ (outside the default test run: pyproject sets testpaths = ["tests"]).

pytest collects only test_*.py by default; this makes `pytest bench` collect bench_*.py too, and adds
--bench-threads (comma-separated thread counts; default: pyconvnet's current count).
"""
import pytest


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
            import alexnet_shapes  # noqa: F401  (finds pyconvnet in a source checkout)
            import pyconvnet
            counts = [pyconvnet.get_num_threads()]
        metafunc.parametrize("threads", counts, ids=[f"{n}t" for n in counts])
