"""Named data sources for the trainer: the bundled MNIST-5k and scikit-learn digits, or an
ImageNet-style folder, with the transforms each model needs."""
import os

import numpy as np

from . import data as D

BUNDLED = ("mnist5k", "digits")


def resolve(source, model_name, input_shape, seed=0, stats=None, max_stat_images=2000):
    """(train_set, test_set, train_transform, test_transform, stats) for a source name or a
    folder path. stats holds the arrays a checkpoint keeps to preprocess the same way (the mean
    image and the RGB PCA of the training set); given, they are used instead of recomputed."""
    if source == "mnist5k":
        tr, te = D.load_mnist5k("train"), D.load_mnist5k("test")
        # 4,000 training digits overfit quickly: shifts of up to 2 pixels add back some variety
        return D.ArrayDataset(*tr), D.ArrayDataset(*te), D.RandomTranslate(2), None, {}
    if source == "digits":
        size, pad = (input_shape[-1], 4) if model_name == "lenet5" else (input_shape[-1], 0)
        tr, te = D.load_digits("train", size=size, pad=pad), D.load_digits("test", size=size, pad=pad)
        return D.ArrayDataset(*tr), D.ArrayDataset(*te), None, None, {}
    if not os.path.isdir(source):
        raise ValueError(f"--data must be one of {', '.join(BUNDLED)} or an image folder; "
                         f"{source!r} is neither")
    train = D.ImageFolder(source, "train")
    test = D.ImageFolder(source, "val", folders=train.folders)
    crop = input_shape[-1]
    scale = rescale_size(crop)
    base = D.Compose(D.ResizeShorter(scale), D.CenterCrop(crop))
    if not stats:
        mean = D.mean_image(train, transform=base, max_samples=max_stat_images, seed=seed)
        eigvals, eigvecs = D.rgb_pca(train, transform=base, max_samples=max_stat_images, seed=seed)
        stats = {"mean": mean.astype(np.float32), "eigvals": np.asarray(eigvals, np.float32),
                 "eigvecs": np.asarray(eigvecs, np.float32)}
    return train, test, train_transform(stats, scale, crop), test_transform(stats, scale, crop), stats


def rescale_size(crop):
    """Shorter side before cropping: AlexNet rescales to 256 and crops 227; others keep the ratio."""
    return 256 if crop == 227 else int(round(crop * 256 / 224))


def train_transform(stats, scale, crop):
    """AlexNet's augmentation: random crops of the rescaled image, mirroring, PCA colour noise."""
    return D.Compose(D.ResizeShorter(scale), D.RandomCrop(crop), D.RandomHorizontalFlip(),
                     D.PCAColour(stats["eigvals"], stats["eigvecs"]), D.SubtractMean(stats["mean"]))


def test_transform(stats, scale, crop):
    return D.Compose(D.ResizeShorter(scale), D.CenterCrop(crop), D.SubtractMean(stats["mean"]))


class TenCrop:
    """Evaluation transform: rescale, subtract the mean, then the four corner and centre crops and
    their mirrors -> (10, C, crop, crop)."""

    def __init__(self, stats, scale, crop):
        self.pre = D.Compose(D.ResizeShorter(scale), D.SubtractMean(_resize_mean(stats["mean"], scale)))
        self.crop = crop

    def __call__(self, img, rng):
        return D.ten_crop(self.pre(img, rng), self.crop)


def _resize_mean(mean, scale):
    """The per-pixel mean is defined on crops; over the full rescaled image use its channel means."""
    return mean.mean(axis=(1, 2), keepdims=True)
