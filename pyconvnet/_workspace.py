"""The im2col workspace: one float32 buffer per Python thread, shared by all conv layers.

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
    _local.buf = None


def get_workspace_limit():
    return _state["limit"]


def workspace(slot, count):
    """A float32 view of room for min(count, limit // slot) slots, at least one."""
    slot = int(slot)
    n = max(1, min(int(count), _state["limit"] // (4 * slot)))
    need = n * slot
    buf = getattr(_local, "buf", None)
    if buf is None or buf.size < need:
        buf = _local.buf = np.empty(need, dtype=np.float32)
    return buf[:need]
