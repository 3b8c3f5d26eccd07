"""Readers for the on-disk formats of MNIST (IDX) and CIFAR-10 (binary batches).

Both read the whole file, validate its size against its header or record layout, and
raise ValueError naming the path and what was expected for a corrupt or truncated file.
"""
import gzip
import zlib

import numpy as np

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]

# IDX type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/)
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

_CIFAR_RECORD = 1 + 3 * 32 * 32  # label byte, then 1024 R, 1024 G, 1024 B bytes (row-major)


def _read_bytes(path):
    """File contents, gunzipped when the file starts with the gzip magic (any file name)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt gzip stream ({e})") from e
    return data


def read_idx(path):
    """Read an IDX file (MNIST images or labels, gzipped or not) into a numpy array.

    Header: 2 zero bytes, a type byte, ndim, then ndim big-endian uint32 sizes. Returns
    an array of shape sizes in native byte order: uint8 for MNIST, e.g. (60000,28,28) or
    (60000,). ValueError if the magic, the type or the data length does not match.
    """
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: {len(data)} bytes is too short for an IDX header")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(f"{path}: not an IDX file (magic bytes {data[:4].hex()}, "
                         f"expected 0000<type in {sorted(_IDX_DTYPES)}><ndim>0)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, need {header} for {ndim} dims)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: IDX header says shape {shape} of {dtype.name} = {expected} bytes, "
                         f"file has {len(data)} bytes (truncated or corrupt)")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # native order, writable copy


def read_cifar10_batch(path):
    """Read a CIFAR-10 binary batch (e.g. data_batch_1.bin), gzipped or not.

    Records are 1 label byte + 3072 pixel bytes (channel-major R, G, B planes of 32x32).
    Returns images (N,3,32,32) uint8 and labels (N,) int64. ValueError if the length is not a
    positive multiple of 3073 or a label is not 0..9 (e.g. a CIFAR-100 file, 2 label bytes).
    """
    data = _read_bytes(path)
    if len(data) == 0 or len(data) % _CIFAR_RECORD:
        raise ValueError(f"{path}: {len(data)} bytes is not a positive multiple of the CIFAR-10 "
                         f"record size {_CIFAR_RECORD} (1 label + 3x32x32 pixels)")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise ValueError(f"{path}: label {labels.max()} is not a CIFAR-10 class (0..9)")
    images = records[:, 1:].reshape(-1, 3, 32, 32).copy()
    return images, labels
