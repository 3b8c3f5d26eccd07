"""Training-set statistics for normalisation and colour augmentation.

Every function takes either an array of images (N,C,H,W) (uint8 0..255 is scaled to [0, 1],
floats are taken as already in [0, 1]) or a data set (ArrayDataset, ImageFolder: ds[i] ->
(image (C,H,W) float32 in [0, 1], label)). Statistics are therefore always in [0, 1] pixel
units, matching pca_colour and subtract_mean. Sums are accumulated in float64.

For a data set, `transform(img, rng)` (deterministic, e.g. Compose(ResizeShorter(256),
CenterCrop(256))) can bring images to a common size first, `max_samples` bounds the cost with
a seeded random subset, and unreadable images (CorruptImageError) are skipped.
"""
import numpy as np

from .folder import CorruptImageError

_CHUNK = 256  # images per float64 chunk when the input is an array: bounds temporary memory


def _chunks(data, transform=None, max_samples=None, seed=0):
    """Yield float64 chunks (n,C,H,W) of the selected images."""
    n = len(data)
    indices = np.arange(n)
    if max_samples is not None and max_samples < n:
        indices = np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))
    if isinstance(data, np.ndarray):
        if data.ndim != 4:
            raise ValueError(f"expected images (N,C,H,W), got shape {data.shape}")
        scale = 1.0 / 255.0 if data.dtype == np.uint8 else 1.0
        for start in range(0, len(indices), _CHUNK):
            yield data[indices[start:start + _CHUNK]].astype(np.float64) * scale
        return
    for i in indices:  # one image at a time: data set images may differ in size
        try:
            img, _ = data[int(i)]
        except CorruptImageError:
            continue
        if transform is not None:
            img = transform(img, np.random.default_rng((seed, int(i))))
        yield np.asarray(img, dtype=np.float64)[None]


def mean_image(data, transform=None, max_samples=None, seed=0):
    """Per-pixel mean image (C,H,W) float32; all images must share one shape."""
    total, count, shape = None, 0, None
    for chunk in _chunks(data, transform, max_samples, seed):
        if shape is None:
            shape, total = chunk.shape[1:], np.zeros(chunk.shape[1:])
        elif chunk.shape[1:] != shape:
            raise ValueError(f"mean_image: image shape {chunk.shape[1:]} differs from {shape}; "
                             f"pass a transform that resizes/crops to one size")
        total += chunk.sum(axis=0)
        count += chunk.shape[0]
    if count == 0:
        raise ValueError("mean_image: no images")
    return (total / count).astype(np.float32)


def channel_mean(data, transform=None, max_samples=None, seed=0):
    """Per-channel mean (C,1,1) float32 over all pixels of all images."""
    total, count = None, 0
    for chunk in _chunks(data, transform, max_samples, seed):
        sums = chunk.sum(axis=(0, 2, 3))
        total = sums if total is None else total + sums
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    if count == 0:
        raise ValueError("channel_mean: no images")
    return (total / count).astype(np.float32)[:, None, None]


def rgb_pca(data, transform=None, max_samples=None, seed=0):
    """Eigen-decomposition of the 3x3 covariance of RGB pixel values (in [0, 1]).

    Returns eigvals (3,) in descending order and eigvecs (3,3) with eigenvector k in column k
    (cov @ eigvecs[:, k] == eigvals[k] * eigvecs[:, k]), both float64, for pca_colour.
    """
    s, ss, count = np.zeros(3), np.zeros((3, 3)), 0
    for chunk in _chunks(data, transform, max_samples, seed):
        if chunk.shape[1] != 3:
            raise ValueError(f"rgb_pca: expected RGB images (N,3,H,W), got chunk {chunk.shape}")
        pixels = chunk.transpose(1, 0, 2, 3).reshape(3, -1)  # (3, pixels)
        s += pixels.sum(axis=1)
        ss += pixels @ pixels.T
        count += pixels.shape[1]
    if count < 2:
        raise ValueError("rgb_pca: need at least 2 pixels")
    mean = s / count
    cov = (ss - count * np.outer(mean, mean)) / (count - 1)
    eigvals, eigvecs = np.linalg.eigh(cov)  # ascending
    order = np.argsort(eigvals)[::-1]
    return eigvals[order], eigvecs[:, order]
