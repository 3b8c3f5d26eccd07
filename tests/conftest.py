"""Shared fixtures: a seeded numpy generator, and guards that restore the library's global settings
(thread count, workspace limit) after a test changes them."""
import os

# The suite makes thousands of tiny kernel calls; on a shared, oversubscribed machine OpenMP's
# default spin-waiting at each region's barrier costs more than the work (10x wall time measured).
# Must be set before libgomp loads with pyconvnet._core; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def _load_emulated_cuda(path, cublas):
    """PYCONVNET_TEST_CUDA_MODULE=path: that build of _cuda (test_cuda_emu.py's, against the host
    emulation of CUDA) stands in for pyconvnet._cuda, so the GPU tests run without a GPU; with
    PYCONVNET_TEST_CUBLAS=path, its cuBLAS backend is that library (the reference cuBLAS)."""
    import importlib.util
    import sys
    spec = importlib.util.spec_from_file_location("pyconvnet._cuda", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    why = module.load_cublas([cublas]) if cublas else ""
    if why:
        raise RuntimeError(f"{cublas}: {why}")
    sys.modules["pyconvnet._cuda"] = module  # before pyconvnet.cuda imports it


if os.environ.get("PYCONVNET_TEST_CUDA_MODULE"):
    _load_emulated_cuda(os.environ["PYCONVNET_TEST_CUDA_MODULE"], os.environ.get("PYCONVNET_TEST_CUBLAS"))

import pyconvnet  # noqa: E402
from pyconvnet.nn import init  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_everything():
    """Seed numpy's legacy global RNG and the layer-init generator before every test."""
    np.random.seed(0)
    init.seed(0)
    yield


@pytest.fixture(scope="session")
def lenet_checkpoint(tmp_path_factory):
    """(path, state_dict) of an untrained LeNet-5 checkpoint for scikit-learn's digits (fast)."""
    from pyconvnet import cli, models, optim, transfer
    init.seed(0)
    model = models.lenet5(10)
    config = dict(cli.DEFAULTS, data="digits", num_classes=10, input_shape=[1, 28, 28])
    out = tmp_path_factory.mktemp("lenet")
    transfer.save(str(out), model, optim.SGD(model, 0.01), config, {}, 0)
    return str(out / "checkpoint.npz"), model.state_dict()


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


@pytest.fixture
def restore_settings():
    """Restores the workspace limit and the thread count whatever the test sets."""
    limit, threads = pyconvnet.get_workspace_limit(), pyconvnet.get_num_threads()
    yield
    pyconvnet.set_workspace_limit(limit)
    pyconvnet.set_num_threads(threads)


@pytest.fixture
def small_workspace(restore_settings):
    """A workspace limit of 4 bytes: every conv/local kernel then runs one image per chunk."""
    pyconvnet.set_workspace_limit(4)
    yield


def run_python(code, *args, env=None, timeout=120):
    """Run code in a child interpreter that imports the same pyconvnet as this one (installed or
    in-tree) and can import the tests' own modules; returns the CompletedProcess."""
    import os
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(pyconvnet.__file__)))
    path = os.pathsep.join([pkg_parent, here, os.environ.get("PYTHONPATH", "")])
    full_env = dict(os.environ, PYTHONPATH=path, **(env or {}))
    return subprocess.run([sys.executable, "-c", code, *args], env=full_env, cwd=here,
                          capture_output=True, text=True, timeout=timeout)
