"""Checkpoints: one .npz file with the flat parameter buffer, the optimizer's velocity, any extra
arrays (e.g. the data mean) and JSON metadata (model, epoch, optimizer and schedule state, dropout
RNG counters, history) stored as a byte array. Written atomically (temp file, fsync, rename), read
with allow_pickle=False, and verified by SHA-256 digests of every array kept in the metadata."""
import hashlib
import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT = "pyconvnet-checkpoint"
VERSION = 1


def _digest(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def save(path, arrays, meta):
    """Write arrays (name -> ndarray) and meta (JSON-able dict) to path atomically."""
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    meta = dict(meta, format=FORMAT, version=VERSION,
                digests={k: _digest(v) for k, v in arrays.items()},
                dtypes={k: str(v.dtype) for k, v in arrays.items()})
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __meta__=blob, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def load(path):
    """(arrays, meta) from a checkpoint; ValueError naming the path if it is not a valid,
    untampered pyconvnet checkpoint."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise ValueError(f"checkpoint {path} is corrupt or not an .npz file: {e}") from None
    if "__meta__" not in arrays:
        raise ValueError(f"checkpoint {path} has no pyconvnet metadata")
    try:
        meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"checkpoint {path}: metadata is not valid JSON: {e}") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"checkpoint {path}: not a {FORMAT} v{VERSION} file")
    digests = meta.get("digests", {})
    if set(digests) != set(arrays):
        raise ValueError(f"checkpoint {path}: arrays {sorted(arrays)} do not match the metadata {sorted(digests)}")
    for k, a in arrays.items():
        if str(a.dtype) != meta["dtypes"].get(k) or _digest(a) != digests[k]:
            raise ValueError(f"checkpoint {path}: array {k!r} fails its SHA-256 check (file modified or damaged)")
    return arrays, meta
