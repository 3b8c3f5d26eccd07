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


def keep_freed_memory(trim_mb=256):
    """Let glibc's malloc keep freed blocks for reuse instead of returning them to the OS.

    A training step allocates its activations and gradients afresh (megabytes for LeNet-5 at
    batch 64). With glibc's defaults most of that memory goes back to the OS when freed and is
    faulted in again, page by page, the next step: about 550 page faults a step for LeNet-5,
    a fifth to a quarter of its step time on a 2-core machine. This raises the size below
    which blocks come from the heap to 32 MiB and lets up to `trim_mb` MiB of free heap stay
    mapped. It is a
    process-wide setting, so `pyconvnet train` and `pyconvnet bench` call it for their own
    process and the library never does it on import. Returns False (and changes nothing) where
    the C library is not glibc."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(M_TRIM_THRESHOLD, int(trim_mb) << 20))

from . import ops, nn  # noqa: E402

__all__ = ["nn", "ops", "set_num_threads", "get_num_threads", "set_workspace_limit",
           "get_workspace_limit", "keep_freed_memory"]
