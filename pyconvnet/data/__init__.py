"""Data sets, image folders, augmentation and a prefetching DataLoader.

Conventions: one image is (C,H,W) float32 with pixels in [0, 1]; a batch is (B,C,H,W) float32
C-contiguous; labels are int64. Randomness comes from explicit numpy Generators derived from
(seed, epoch, sample index). This package imports only numpy and Pillow (scikit-learn only
inside load_digits), never the compiled extension, so it can be used and tested on its own.
"""
from .datasets import ArrayDataset, load_digits, load_mnist5k, mnist5k_path, stratified_split
from .folder import CorruptImageError, CorruptImageWarning, ImageFolder, decode_image, read_synset_map
from .formats import CIFAR10_CLASSES, read_cifar10_batch, read_idx
from .loader import DataLoader, epoch_permutation, make_batch, sample_rng
from .stats import channel_mean, mean_image, rgb_pca
from .transforms import (CenterCrop, Compose, PCAColour, RandomCrop, RandomHorizontalFlip,
                         RandomTranslate, Resize, ResizeShorter, SubtractMean, center_crop, crop,
                         hflip, pca_colour, random_crop, random_hflip, random_translate, resize,
                         resize_shorter, subtract_mean, ten_crop)

__all__ = [
    "ArrayDataset", "load_digits", "load_mnist5k", "mnist5k_path", "stratified_split",
    "CorruptImageError", "CorruptImageWarning", "ImageFolder", "decode_image", "read_synset_map",
    "CIFAR10_CLASSES", "read_cifar10_batch", "read_idx",
    "DataLoader", "epoch_permutation", "make_batch", "sample_rng",
    "channel_mean", "mean_image", "rgb_pca",
    "CenterCrop", "Compose", "PCAColour", "RandomCrop", "RandomHorizontalFlip", "RandomTranslate",
    "Resize", "ResizeShorter", "SubtractMean", "center_crop", "crop", "hflip", "pca_colour",
    "random_crop", "random_hflip", "random_translate", "resize", "resize_shorter", "subtract_mean",
    "ten_crop",
]
