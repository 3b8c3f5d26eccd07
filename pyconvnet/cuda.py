"""The CUDA backend: device arrays, availability, and the GEMM switch.

    from pyconvnet import cuda
    cuda.is_available()           # False here without a driver or a GPU; cuda.why_unavailable() says why
    a = cuda.asarray(x)           # a host -> device copy of a numpy array
    a.numpy(), a.to("cpu")        # device -> host copies: the only ways data comes back
    model.to("cuda")              # a Sequential's flat buffers move; the layers' views follow

Device arrays (pyconvnet._cuda.DeviceArray) are C-contiguous, with shape, dtype, size, ndim,
reshape (a view, one -1 allowed), a[i] and a[start:stop] on the leading axis (views), fill,
copy_from, copy, item/float(). They export __cuda_array_interface__ (v3) and DLPack, so
torch.from_dlpack(a) and cupy.asarray(a) share their memory. numpy never converts them silently
(np.asarray(a) raises TypeError): call .numpy().

All kernels run on the legacy default stream, in order; memory comes from a caching allocator
(memory_stats(), empty_cache()), so a training loop stops calling cudaMalloc after its first step.
Matrix products use cuBLAS when a libcublas can be loaded at run time, else our own SGEMM;
gemm_backend() says which and set_gemm_backend("ours" | "cublas") picks one.
"""
import glob
import os
import sys

import numpy as np

try:
    from . import _cuda
    _IMPORT_ERROR = None
except Exception as e:  # not built on this machine, or its shared library cannot load
    _cuda = None
    _IMPORT_ERROR = (f"pyconvnet._cuda is not available ({type(e).__name__}: {e}); it is built "
                     "when CMake finds a CUDA compiler")


def why_unavailable():
    """None when a GPU can be used; otherwise why not (no module, no driver, no device, ...)."""
    if _cuda is None:
        return _IMPORT_ERROR
    ok, why = _cuda.device_usable()
    return None if ok else why


def is_available():
    """True when the CUDA backend is built and a usable GPU (compute capability >= 8.0) is present."""
    return why_unavailable() is None


def device_count():
    """Visible CUDA devices (0 without the module or a driver). pyconvnet uses device 0."""
    return _cuda.device_count() if _cuda is not None else 0


def _require():
    why = why_unavailable()
    if why is not None:
        raise RuntimeError(f"pyconvnet.cuda: CUDA is not available: {why}")
    _init_gemm()


def is_device_array(a):
    return _cuda is not None and isinstance(a, _cuda.DeviceArray)


# ---- arrays
def asarray(a, dtype=None):
    """A device array holding a copy of host data (a device array is returned as is)."""
    if is_device_array(a):
        if dtype is not None and np.dtype(dtype) != a.dtype:
            raise TypeError(f"pyconvnet.cuda.asarray: a device array of dtype {a.dtype} does not "
                            f"convert to {np.dtype(dtype)} on the device; convert on the host first")
        return a
    _require()
    return _cuda.asarray(a, dtype)


def empty(shape, dtype=np.float32):
    _require()
    return _cuda.empty(_shape(shape), np.dtype(dtype))


def zeros(shape, dtype=np.float32):
    a = empty(shape, dtype)
    a.fill(0)
    return a


def empty_like(a, dtype=None):
    return empty(a.shape, a.dtype if dtype is None else dtype)


def zeros_like(a, dtype=None):
    return zeros(a.shape, a.dtype if dtype is None else dtype)


def _shape(shape):
    return (int(shape),) if np.isscalar(shape) else tuple(int(d) for d in shape)


def synchronize():
    """Wait for all queued GPU work (timing needs this; numpy() and float() wait by themselves)."""
    _require()
    _cuda.synchronize()


def memory_stats():
    """Bytes in use by arrays, cached for reuse and at peak; cudaMalloc and cudaFree calls so far."""
    return _cuda.memory_stats() if _cuda is not None else {}


def empty_cache():
    """Give the cached (unused) device blocks back to the driver."""
    if _cuda is not None:
        _cuda.empty_cache()


# ---- GEMM backend
_gemm_state = {"ready": False, "why": None}


def _cublas_candidates():
    """Library names and paths to try, in order: the soname (already loaded by PyTorch, or on the
    loader's path), the nvidia-cublas wheel, then the CUDA toolkit."""
    names = ["libcublas.so.13", "libcublas.so.12", "libcublas.so"]
    for d in sys.path:  # pip's nvidia-cublas wheels (PyTorch's): nvidia/cublas/lib, nvidia/cu13/lib
        if d and os.path.isdir(os.path.join(d, "nvidia")):
            names += _newest_first(glob.glob(os.path.join(d, "nvidia", "*", "lib", "libcublas.so.*")))
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            names += _newest_first(glob.glob(os.path.join(home, "lib64", "libcublas.so.*")))
    return names


def _newest_first(paths):
    """libcublas.so.13.1.0 before libcublas.so.12 (by version numbers, not as strings)."""
    def version(p):
        return tuple(int(v) for v in p.rsplit(".so.", 1)[-1].split(".") if v.isdigit())
    return sorted(paths, key=version, reverse=True)


def _init_gemm():
    if not _gemm_state["ready"]:
        _gemm_state["why"] = _cuda.load_cublas(_cublas_candidates()) or None
        _gemm_state["ready"] = True


def gemm_backend():
    """'cublas' (the default when a libcublas loads) or 'ours' (the tiled SGEMM in cuda/gemm.cu)."""
    _require()
    return _cuda.gemm_backend()


def set_gemm_backend(name):
    """Use 'ours' or 'cublas' for every matrix product from now on (ValueError if unavailable)."""
    _require()
    _cuda.set_gemm_backend(name)


def sgemm(c, a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    """c (M, N) = alpha op(a) op(b) + beta c on device arrays, with the selected GEMM backend."""
    _require()
    _cuda.sgemm(c, a, b, trans_a, trans_b, alpha, beta)


def why_no_cublas():
    """None when cuBLAS loaded, else the loader's reasons."""
    _require()
    return _gemm_state["why"]


# ---- the ops table that pyconvnet.ops.backend() returns for device arrays
class Backend:
    """The _cuda kernels (same names and arguments as _core) and device allocation. Differences
    from _core are absorbed here: the fused loss comes back as a device scalar."""

    name = "cuda"

    def __getattr__(self, name):
        return getattr(_cuda, name)

    empty = staticmethod(empty)
    zeros = staticmethod(zeros)
    empty_like = staticmethod(empty_like)
    zeros_like = staticmethod(zeros_like)

    @staticmethod
    def asarray(a):
        return asarray(a)

    @staticmethod
    def softmax_xent_forward(prob, logits, labels):
        """Writes prob; returns the mean loss as a 0-d float32 device array (float() reads it)."""
        loss = _cuda.empty((), np.dtype(np.float32))
        _cuda.softmax_xent_forward(loss, prob, logits, labels)
        return loss

    @staticmethod
    def top1_count(logits, labels):
        """Rows whose largest logit is at the label, as a 0-d int64 device array."""
        count = _cuda.empty((), np.dtype(np.int64))
        _cuda.top1_count(count, logits, labels)
        return count


_backend = []


def backend():
    """The CUDA ops table (RuntimeError naming the reason when CUDA cannot be used)."""
    if not _backend:
        _require()
        _backend.append(Backend())
    return _backend[0]
