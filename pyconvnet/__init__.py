"""pyconvnet: a small convolutional-network library with C++/OpenMP kernels under a plain Python API.

CPU arrays are numpy float32, C-contiguous, NCHW. See README.md for the layer API.
"""
import scipy_openblas32  # noqa: F401  (loads libscipy_openblas before the extension that links it)

from . import _core
from ._workspace import set_workspace_limit, get_workspace_limit

__version__ = "0.1.0"


def set_num_threads(n):
    """Threads for every kernel: OpenMP across images, with BLAS kept single-threaded inside."""
    n = int(n)
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    _core.set_num_threads(n)


def get_num_threads():
    return _core.get_num_threads()


set_num_threads(get_num_threads())  # pins OpenBLAS to one thread under our OpenMP loops

from . import ops, nn  # noqa: E402

__all__ = ["nn", "ops", "set_num_threads", "get_num_threads", "set_workspace_limit",
           "get_workspace_limit"]
