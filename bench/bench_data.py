"""Data loading for AlexNet: decode + augment throughput of 256 -> 227 JPEGs.

    pytest bench/bench_data.py --benchmark-only

64 JPEGs of about 300x256 (Pillow, quality 90, in two class folders of a temporary ImageFolder) go
through DataLoader(batch 16) with ResizeShorter(256), RandomCrop(227), RandomHorizontalFlip and
PCAColour at num_workers 0, 1 and 2; one round is one epoch of 4 passes over the files (256 images,
so that starting the worker processes, once per epoch and included, does not dominate). Before
timing, the batches of every worker count are asserted equal to the serial ones (a batch depends
only on seed, epoch and batch number). extra_info: images_per_s and images_per_s_per_worker
(num_workers 0 counts as one).
"""

import numpy as np
import pytest
from PIL import Image

from pyconvnet import data as D

FILES, PASSES, BATCH, SIZE = 64, 4, 16, (300, 256)
IMAGES = FILES * PASSES  # (width, height): the shorter side is already 256
# AlexNet's RGB PCA of ImageNet pixels in [0, 1] (eigenvalues, eigenvectors as columns)
EIGVALS = np.array([0.2175, 0.0188, 0.0045], np.float32)
EIGVECS = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]], np.float32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """root/train/{a,b}/NN.jpg: smooth random colour fields with noise, so JPEG has work to do."""
    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    for i in range(FILES):
        d = root / "train" / "ab"[i % 2]
        d.mkdir(parents=True, exist_ok=True)
        coarse = Image.fromarray(rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)).resize(SIZE, Image.BICUBIC)
        pixels = np.asarray(coarse, np.int16) + rng.integers(-20, 21, (SIZE[1], SIZE[0], 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(d / f"{i:02d}.jpg", quality=90)
    return root


class Passes:
    """The data set `passes` times over (an epoch reads every file `passes` times)."""

    def __init__(self, ds, passes):
        self.ds, self.passes = ds, passes

    def __len__(self):
        return len(self.ds) * self.passes

    def __getitem__(self, i):
        return self.ds[i % len(self.ds)]


def loader(folder, workers):
    tf = D.Compose(D.ResizeShorter(256), D.RandomCrop(227), D.RandomHorizontalFlip(), D.PCAColour(EIGVALS, EIGVECS))
    return D.DataLoader(Passes(D.ImageFolder(folder, "train"), PASSES), BATCH, shuffle=True, seed=0,
                        transform=tf, num_workers=workers)


def epoch(dl):
    dl.set_epoch(0)
    return [x for x, _ in dl]


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_decode_augment(benchmark, folder, workers):
    dl = loader(folder, workers)
    got, want = epoch(dl), epoch(loader(folder, 0))
    assert len(got) == IMAGES // BATCH and got[0].shape == (BATCH, 3, 227, 227) and got[0].dtype == np.float32
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    benchmark.group = f"data: {IMAGES} JPEG reads ({FILES} files 300x256) -> 227 crops, batch {BATCH}"
    benchmark.extra_info.update(images=IMAGES, num_workers=workers)
    benchmark.pedantic(epoch, args=(dl,), rounds=3, iterations=1, warmup_rounds=0)
    if benchmark.stats is not None:
        rate = IMAGES / benchmark.stats.stats.median
        benchmark.extra_info.update(images_per_s=round(rate, 1),
                                    images_per_s_per_worker=round(rate / max(workers, 1), 1))
