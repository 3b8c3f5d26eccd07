"""Tests for pyconvnet.data: bundled data sets, file readers, ImageFolder, transforms, DataLoader."""
import gzip
import multiprocessing
import re
import struct
import warnings

import numpy as np
import pytest
from PIL import Image

from pyconvnet.data import (ArrayDataset, CenterCrop, Compose, CorruptImageError, CorruptImageWarning,
                            DataLoader, ImageFolder, RandomCrop, RandomHorizontalFlip, RandomTranslate,
                            ResizeShorter, channel_mean, decode_image, load_digits, load_mnist5k,
                            mean_image, pca_colour, random_crop, random_translate, read_cifar10_batch,
                            read_idx, resize, resize_shorter, rgb_pca, stratified_split,
                            subtract_mean, ten_crop)


def rows(images):
    """Set of images as bytes, to compare splits without relying on order."""
    return {img.tobytes() for img in images}


def bilinear_reference(img, H, W):
    """Upsample img (h,w) to (H,W): half-pixel centres, edge clamping (what Pillow does upscaling)."""
    h, w = img.shape
    ys = np.clip((np.arange(H) + 0.5) * h / H - 0.5, 0, h - 1)
    xs = np.clip((np.arange(W) + 0.5) * w / W - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    return ((1 - wy) * ((1 - wx) * img[y0][:, x0] + wx * img[y0][:, x1])
            + wy * ((1 - wx) * img[y1][:, x0] + wx * img[y1][:, x1]))


# ----------------------------------------------------------------------------- bundled data sets

def test_mnist5k_shapes_range_and_classes():
    x, y = load_mnist5k("train")
    xt, yt = load_mnist5k("test")
    assert x.shape == (4000, 1, 28, 28) and xt.shape == (1000, 1, 28, 28)
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    assert 0.05 < x.mean() < 0.25  # MNIST digits: mostly black background
    assert np.array_equal(np.bincount(y), [400] * 10)  # stratified: 500 per class in the file
    assert np.array_equal(np.bincount(yt), [100] * 10)
    assert x.flags.writeable  # callers may modify their copy; the cache is not exposed


def test_mnist5k_split_deterministic_and_disjoint():
    a, ya = load_mnist5k("train", seed=3)
    b, yb = load_mnist5k("train", seed=3)
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    test, _ = load_mnist5k("test", seed=3)
    assert not rows(a) & rows(test)
    assert len(a) + len(test) == 5000
    other, _ = load_mnist5k("train", seed=4)
    assert rows(other) != rows(a)
    with pytest.raises(ValueError, match="split"):
        load_mnist5k("val")


def test_stratified_split_covers_everything_once():
    labels = np.repeat(np.arange(3), [10, 20, 31])
    train, test = stratified_split(labels, 0.2, seed=1)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(labels)))
    assert np.array_equal(np.bincount(labels[test]), [2, 4, 6])
    again, _ = stratified_split(labels, 0.2, seed=1)
    assert np.array_equal(train, again)


def test_digits_shapes_range_split_and_upscale():
    x, y = load_digits("train")
    xt, yt = load_digits("test")
    assert x.shape[1:] == (1, 8, 8) and x.dtype == np.float32 and y.dtype == np.int64
    assert len(x) + len(xt) == 1797
    assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(y)) == set(range(10)) == set(np.unique(yt))
    assert np.array_equal(load_digits("train")[0], x)
    big, ybig = load_digits("train", size=28, pad=4)
    assert big.shape == (len(x), 1, 28, 28) and np.array_equal(ybig, y)
    assert big.min() >= 0.0 and big.max() <= 1.0
    assert not big[:, :, :4].any() and not big[:, :, :, -4:].any()  # zero frame like MNIST
    np.testing.assert_allclose(big[:3, 0, 4:24, 4:24], [bilinear_reference(img[0], 20, 20) for img in x[:3]],
                               atol=1e-6)


# ----------------------------------------------------------------------------- file formats

def write_idx(path, array, code=0x08, compress=False):
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)
    return data


def test_read_idx_roundtrip_plain_and_gzip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    write_idx(tmp_path / "img.idx3-ubyte", images)
    write_idx(tmp_path / "img.gz", images, compress=True)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    write_idx(tmp_path / "lab.idx1-ubyte", labels)
    ints = np.array([[1, -2], [70000, 3]], dtype=np.int32)
    write_idx(tmp_path / "int.idx", ints, code=0x0C)
    assert np.array_equal(read_idx(tmp_path / "img.idx3-ubyte"), images)
    assert np.array_equal(read_idx(tmp_path / "img.gz"), images)
    assert np.array_equal(read_idx(tmp_path / "lab.idx1-ubyte"), labels)
    out = read_idx(tmp_path / "int.idx")
    assert out.dtype == np.int32 and np.array_equal(out, ints)


def test_read_idx_rejects_corrupt_files(tmp_path):
    data = write_idx(tmp_path / "ok", np.zeros((5, 4, 3), np.uint8))
    (tmp_path / "short").write_bytes(data[:-7])
    (tmp_path / "long").write_bytes(data + b"x")
    (tmp_path / "magic").write_bytes(b"\x01" + data[1:])
    (tmp_path / "header").write_bytes(data[:9])
    (tmp_path / "badgz").write_bytes(gzip.compress(data)[:20])
    for name, match in [("short", "truncated"), ("long", "truncated"), ("magic", "not an IDX"),
                        ("header", "header"), ("badgz", "gzip")]:
        with pytest.raises(ValueError, match=match) as info:
            read_idx(tmp_path / name)
        assert name in str(info.value)


def test_read_cifar10_batch(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    images = rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    blob = b"".join(bytes([lab]) + img.tobytes() for lab, img in zip(labels, images))
    (tmp_path / "data_batch_1.bin").write_bytes(blob)
    x, y = read_cifar10_batch(tmp_path / "data_batch_1.bin")
    assert x.shape == (3, 3, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int64
    assert np.array_equal(x, images) and np.array_equal(y, labels)
    assert np.array_equal(x[1, 2].ravel(), np.frombuffer(blob[3073 + 1 + 2048:2 * 3073], np.uint8))
    (tmp_path / "cut.bin").write_bytes(blob[:-1])
    with pytest.raises(ValueError, match="multiple of .*3073"):
        read_cifar10_batch(tmp_path / "cut.bin")
    (tmp_path / "c100.bin").write_bytes(bytes([42]) + blob[1:])
    with pytest.raises(ValueError, match="label 42"):
        read_cifar10_batch(tmp_path / "c100.bin")


# ----------------------------------------------------------------------------- ImageFolder

COLOURS = {"ant": (230, 20, 20), "bee": (20, 230, 20), "cow": (20, 20, 230)}  # label k -> channel k


def write_jpeg(path, colour, size):
    Image.new("RGB", size, colour).save(path, "JPEG", quality=95)


@pytest.fixture
def image_tree(tmp_path):
    """train/{ant,bee,cow}/ with 4 solid-colour JPEGs each (two sizes), one corrupt and one
    truncated file, and a non-image file; returns (root, paths of the two bad files)."""
    for name, colour in COLOURS.items():
        folder = tmp_path / "train" / name
        folder.mkdir(parents=True)
        for k in range(4):
            write_jpeg(folder / f"{k}.JPEG", colour, (20, 24) if k % 2 else (26, 18))
    (tmp_path / "train" / "ant" / "notes.txt").write_text("not an image")
    bad = tmp_path / "train" / "ant" / "bad.JPEG"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    noise = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "full.jpg", quality=95)
    cut = tmp_path / "train" / "bee" / "cut.jpeg"
    cut.write_bytes((tmp_path / "full.jpg").read_bytes()[:1500])
    return tmp_path, {str(bad), str(cut)}


def test_decode_image_rejects_bad_files(image_tree):
    _, bad_paths = image_tree
    for path in bad_paths:
        with pytest.raises(CorruptImageError) as info:
            decode_image(path)
        assert info.value.path == path


def test_image_folder_scans_classes_and_synsets(image_tree):
    root, _ = image_tree
    (root / "words.txt").write_text("ant formica\nbee apis mellifera, honey bee\ncow bos\n")
    ds = ImageFolder(root, "train", synset_map=root / "words.txt")
    assert ds.folders == ["ant", "bee", "cow"] and ds.num_classes == 3
    assert ds.classes == ["formica", "apis mellifera, honey bee", "bos"]
    assert len(ds) == 14  # 12 good + 2 bad files listed, notes.txt ignored
    assert np.array_equal(np.bincount(ds.labels), [5, 5, 4])
    img, label = ds[0]
    assert img.dtype == np.float32 and img.shape in ((3, 18, 26), (3, 24, 20)) and label == 0
    (root / "short.txt").write_text("ant formica\n")
    with pytest.raises(ValueError, match="bee"):
        ImageFolder(root, "train", synset_map=root / "short.txt")


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "train"))):
        ImageFolder(tmp_path, "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        ImageFolder(tmp_path, "train")
    (tmp_path / "train" / "a").mkdir()
    write_jpeg(tmp_path / "train" / "a" / "x.png", (1, 2, 3), (4, 4))
    (tmp_path / "train" / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        ImageFolder(tmp_path, "train")


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_skips_bad_images_once_and_keeps_labels(image_tree, num_workers):
    root, bad_paths = image_tree
    ds = ImageFolder(root, "train")
    loader = DataLoader(ds, batch_size=4, seed=1, num_workers=num_workers,
                        transform=Compose(ResizeShorter(16), RandomCrop(16), RandomHorizontalFlip()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        epochs = [list(loader), list(loader)]
    reported = [str(w.message) for w in caught if issubclass(w.category, CorruptImageWarning)]
    assert len(reported) == 2 and all(any(p in m for m in reported) for p in bad_paths)
    for batches in epochs:
        assert sum(len(y) for _, y in batches) == 12
        assert np.array_equal(np.bincount(np.concatenate([y for _, y in batches])), [4, 4, 4])
        for x, y in batches:
            assert x.shape[1:] == (3, 16, 16) and x.dtype == np.float32 and x.flags.c_contiguous
            assert len(x) == len(y)
            assert np.array_equal(x.mean(axis=(2, 3)).argmax(axis=1), y)  # colour tells the class


# ----------------------------------------------------------------------------- transforms and stats

def test_pca_colour_matches_formula():
    img = np.random.default_rng(2).random((3, 5, 6), dtype=np.float32)
    eigvals = np.array([0.2, 0.02, 0.004])
    eigvecs = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))[0]
    out = pca_colour(img, eigvals, eigvecs, np.random.default_rng(7), std=0.1)
    alpha = np.random.default_rng(7).normal(0.0, 0.1, 3)
    shift = sum(alpha[k] * eigvals[k] * eigvecs[:, k] for k in range(3))  # AlexNet eq.
    assert out.dtype == np.float32 and out.shape == img.shape
    np.testing.assert_allclose(out - img, np.broadcast_to(shift[:, None, None], img.shape), atol=1e-6)
    assert np.abs(shift).max() > 1e-4  # the check is not vacuous


def test_rgb_pca_eigendecomposition():
    rng = np.random.default_rng(4)
    mix = np.array([[1.0, 0.0, 0.0], [0.8, 0.5, 0.0], [0.6, 0.3, 0.2]])
    pixels = np.clip(0.5 + 0.12 * mix @ rng.normal(size=(3, 6 * 7 * 8)), 0, 1)
    images = (pixels.reshape(3, 6, 7, 8).transpose(1, 0, 2, 3) * 255).round().astype(np.uint8)
    eigvals, eigvecs = rgb_pca(images)
    cov = np.cov((images.transpose(1, 0, 2, 3).reshape(3, -1) / 255.0))
    assert np.all(np.diff(eigvals) <= 0) and eigvals[-1] > 0
    for k in range(3):
        np.testing.assert_allclose(cov @ eigvecs[:, k], eigvals[k] * eigvecs[:, k], atol=1e-10)
    np.testing.assert_allclose(eigvecs.T @ eigvecs, np.eye(3), atol=1e-12)
    from_dataset = rgb_pca(ArrayDataset(images, np.zeros(6, np.int64)))
    np.testing.assert_allclose(from_dataset[0], eigvals, rtol=1e-5)


def test_means():
    images = np.random.default_rng(5).random((7, 3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(mean_image(images), images.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(channel_mean(images)[:, 0, 0], images.mean(axis=(0, 2, 3)), rtol=1e-6)
    centred = subtract_mean(images[0], channel_mean(images))
    assert centred.shape == (3, 4, 5)
    with pytest.raises(ValueError, match=r"\(3, 1, 1\)"):
        subtract_mean(images[0], np.zeros((3, 2, 2)))


def test_ten_crop():
    img = np.random.default_rng(6).random((3, 9, 11)).astype(np.float32)
    crops = ten_crop(img, 5)
    assert crops.shape == (10, 3, 5, 5) and crops.dtype == np.float32
    assert np.array_equal(crops[0], img[:, :5, :5]) and np.array_equal(crops[3], img[:, 4:, 6:])
    assert np.array_equal(crops[4], img[:, 2:7, 3:8])
    for k in range(5):
        assert np.array_equal(crops[5 + k], crops[k][:, :, ::-1])
    with pytest.raises(ValueError, match="larger"):
        ten_crop(img, 10)


def test_crops_resize_and_translate():
    img = np.arange(2 * 6 * 8, dtype=np.float32).reshape(2, 6, 8)
    rng = np.random.default_rng(8)
    c = random_crop(img, (3, 4), rng)
    top, left = divmod(int(c[0, 0, 0]), 8)
    assert np.array_equal(c, img[:, top:top + 3, left:left + 4])
    t = random_translate(img, 2, np.random.default_rng(9))
    assert t.shape == img.shape
    ys, xs = np.nonzero(t[0] == img[0, 3, 4])
    assert abs(ys[0] - 3) <= 2 and abs(xs[0] - 4) <= 2  # content moved by at most 2 pixels
    assert resize_shorter(np.zeros((3, 40, 60), np.float32), 20).shape == (3, 20, 30)
    flat = resize(np.full((1, 5, 7), 0.25, np.float32), (13, 3))
    assert flat.shape == (1, 13, 3) and np.allclose(flat, 0.25)
    small = np.random.default_rng(10).random((2, 5, 7)).astype(np.float32)
    up = resize(small, (11, 16))
    for c in range(2):
        np.testing.assert_allclose(up[c], bilinear_reference(small[c], 11, 16), atol=1e-6)


# ----------------------------------------------------------------------------- DataLoader

def toy_dataset(n=53):
    rng = np.random.default_rng(10)
    return ArrayDataset(rng.integers(0, 256, (n, 1, 6, 6), dtype=np.uint8), np.arange(n))


AUGMENT = Compose(RandomTranslate(1), RandomHorizontalFlip(), CenterCrop(5))


def collect(loader):
    return [(x.copy(), y.copy()) for x, y in loader]


def assert_same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)


def test_loader_reproducible_and_worker_independent():
    ds = toy_dataset()
    serial = collect(DataLoader(ds, 8, seed=5, transform=AUGMENT))
    assert_same(serial, collect(DataLoader(ds, 8, seed=5, transform=AUGMENT)))
    assert_same(serial, collect(DataLoader(ds, 8, seed=5, transform=AUGMENT, num_workers=2, prefetch=1)))
    other = collect(DataLoader(ds, 8, seed=6, transform=AUGMENT))
    assert not np.array_equal(serial[0][1], other[0][1])
    x, y = serial[0]
    assert x.shape == (8, 1, 5, 5) and x.dtype == np.float32 and x.flags.c_contiguous and y.dtype == np.int64
    assert not multiprocessing.active_children()


def test_loader_epochs_cover_all_samples_in_new_orders():
    ds = toy_dataset()
    loader = DataLoader(ds, 8, seed=0)
    assert len(loader) == 7
    first, second = collect(loader), collect(loader)  # epochs 0 and 1
    for epoch in (first, second):
        y = np.concatenate([b[1] for b in epoch])
        assert np.array_equal(np.sort(y), np.arange(53))  # each sample exactly once
        for x, yb in epoch:  # no transform: images are the stored ones, scaled to [0, 1]
            assert np.array_equal(x, ds.images[yb].astype(np.float32) / 255)
    assert not np.array_equal(first[0][1], second[0][1])
    loader.set_epoch(1, start_batch=3)
    assert_same(collect(loader), second[3:])  # a resumed run regenerates the same batches
    dropping = DataLoader(ds, 8, shuffle=False, drop_last=True)
    y = np.concatenate([b[1] for b in dropping])
    assert len(dropping) == 6 and np.array_equal(y, np.arange(48))


class Exploding(ArrayDataset):
    def __getitem__(self, i):
        if i == 11:
            raise KeyError("boom at 11")
        return super().__getitem__(i)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_propagates_errors_and_cleans_up(num_workers):
    base = toy_dataset()
    ds = Exploding(base.images, base.labels)
    with pytest.raises((KeyError, RuntimeError), match="boom at 11"):
        for _ in DataLoader(ds, 4, shuffle=False, transform=AUGMENT, num_workers=num_workers):
            pass
    for _ in DataLoader(toy_dataset(), 4, num_workers=num_workers):
        break  # leaving early shuts the workers down too
    assert not multiprocessing.active_children()
