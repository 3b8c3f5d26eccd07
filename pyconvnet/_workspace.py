"""The im2col workspace: one float32 buffer per Python thread and device, shared by all conv layers.

Kernels ask for `count` slots of `slot` floats (one slot per image in flight); the buffer holds as
many as the limit allows but always at least one, so a tight limit processes the batch in chunks.
"""
import threading

import numpy as np

_DEFAULT_LIMIT = 256 << 20  # bytes
_state = {"limit": _DEFAULT_LIMIT}
_local = threading.local()


def set_workspace_limit(nbytes):
    """Bound the im2col workspace (default 256 MiB); a batch that needs more runs in chunks."""
    nbytes = int(nbytes)
    if nbytes < 4:
        raise ValueError(f"set_workspace_limit: need at least 4 bytes, got {nbytes}")
    _state["limit"] = nbytes
    _local.bufs = {}


def get_workspace_limit():
    return _state["limit"]


def workspace(slot, count, be=None):
    """A float32 view of room for min(count, limit // slot) slots, at least one, on the device of
    the ops table `be` (pyconvnet.ops.backend(...); None: host memory)."""
    slot = int(slot)
    n = max(1, min(int(count), _state["limit"] // (4 * slot)))
    need = n * slot
    bufs = _local.__dict__.setdefault("bufs", {})
    key = getattr(be, "name", "cpu")
    buf = bufs.get(key)
    if buf is None or buf.size < need:
        bufs[key] = None  # let the old buffer go first
        buf = bufs[key] = (be.empty if be is not None else np.empty)(need, np.float32)
    return buf[:need]
