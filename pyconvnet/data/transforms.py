"""Per-image transforms and augmentation on CHW float32 arrays (pixels in [0, 1]).

Layout: every function takes and returns one image img (C,H,W) float32, never modifying its
input. Randomness comes only from an explicit numpy Generator `rng`; DataLoader hands each
sample its own rng derived from (seed, epoch, sample index), so results do not depend on the
number of workers. Sizes are int (square) or (height, width).

The step classes at the bottom (Compose, RandomCrop, ...) wrap these functions as callables
step(img, rng) -> img for DataLoader(transform=...); they are plain classes so that they pickle
(needed by the spawn start method).
"""
import numpy as np
from PIL import Image


def _hw(size):
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def _check_chw(img, op):
    if img.ndim != 3:
        raise ValueError(f"{op}: expected an image (C,H,W), got shape {img.shape}")


def resize(img, size):
    """Bilinear resize of img (C,H,W) to (C,h,w), one Pillow 'F' (float32) plane per channel.

    Pillow's bilinear filter widens its support when shrinking, so downscaling is antialiased.
    """
    _check_chw(img, "resize")
    h, w = _hw(size)
    if h < 1 or w < 1:
        raise ValueError(f"resize: target size must be positive, got {(h, w)}")
    out = np.empty((img.shape[0], h, w), dtype=np.float32)
    for c, plane in enumerate(np.asarray(img, dtype=np.float32)):  # C planes (1 or 3)
        out[c] = np.asarray(Image.fromarray(np.ascontiguousarray(plane)).resize((w, h), Image.BILINEAR))
    return out


def resize_shorter(img, size):
    """Resize img (C,H,W) so that its shorter side is `size`, keeping the aspect ratio."""
    _check_chw(img, "resize_shorter")
    h, w = img.shape[1:]
    if h <= w:
        return resize(img, (size, max(1, round(w * size / h))))
    return resize(img, (max(1, round(h * size / w)), size))


def crop(img, top, left, size):
    """The (C,h,w) window of img (C,H,W) at (top, left); a copy."""
    h, w = _hw(size)
    if top < 0 or left < 0 or top + h > img.shape[1] or left + w > img.shape[2]:
        raise ValueError(f"crop: window {(h, w)} at {(top, left)} does not fit image {img.shape}")
    return img[:, top:top + h, left:left + w].copy()


def center_crop(img, size):
    """Central (C,h,w) window of img (C,H,W); ValueError if the image is smaller."""
    _check_chw(img, "center_crop")
    h, w = _hw(size)
    return crop(img, (img.shape[1] - h) // 2, (img.shape[2] - w) // 2, (h, w))


def random_crop(img, size, rng):
    """A (C,h,w) window of img (C,H,W) at a uniformly random position."""
    _check_chw(img, "random_crop")
    h, w = _hw(size)
    if h > img.shape[1] or w > img.shape[2]:
        raise ValueError(f"random_crop: crop {(h, w)} larger than image {img.shape}")
    top = int(rng.integers(0, img.shape[1] - h + 1))
    left = int(rng.integers(0, img.shape[2] - w + 1))
    return crop(img, top, left, (h, w))


def hflip(img):
    """Mirror img (C,H,W) left-right; a C-contiguous copy."""
    return np.ascontiguousarray(img[:, :, ::-1])


def random_hflip(img, rng, p=0.5):
    """hflip(img) with probability p, else a copy of img."""
    return hflip(img) if rng.random() < p else img.copy()


def random_translate(img, max_shift, rng):
    """Shift img (C,H,W) by integers dy, dx uniform in [-max_shift, max_shift]; zeros fill in.

    Same as zero-padding by max_shift and taking a random crop of the original size.
    """
    _check_chw(img, "random_translate")
    t = int(max_shift)
    padded = np.pad(img, ((0, 0), (t, t), (t, t)))
    return random_crop(padded, img.shape[1:], rng)


def pca_colour(img, eigvals, eigvecs, rng, std=0.1):
    """AlexNet's PCA colour augmentation of an RGB image img (3,H,W).

    Adds the same shift eigvecs @ (alpha * eigvals) to every pixel, alpha (3,) ~ N(0, std)
    drawn once per image. eigvals (3,), eigvecs (3,3) with eigenvectors as columns, as
    returned by rgb_pca (covariance of pixels in [0, 1]). Output is not clipped.
    """
    _check_chw(img, "pca_colour")
    if img.shape[0] != 3:
        raise ValueError(f"pca_colour: expected an RGB image (3,H,W), got shape {img.shape}")
    eigvals = np.asarray(eigvals, dtype=np.float64)
    eigvecs = np.asarray(eigvecs, dtype=np.float64)
    if eigvals.shape != (3,) or eigvecs.shape != (3, 3):
        raise ValueError(f"pca_colour: expected eigvals (3,) and eigvecs (3,3), "
                         f"got {eigvals.shape} and {eigvecs.shape}")
    alpha = rng.normal(0.0, std, size=3)
    shift = eigvecs @ (alpha * eigvals)  # (3,) one RGB offset for the whole image
    return (img + shift.astype(np.float32)[:, None, None]).astype(np.float32)


def subtract_mean(img, mean):
    """img - mean, mean either a mean image (C,H,W) or per-channel (C,1,1); see stats.py."""
    mean = np.asarray(mean, dtype=np.float32)
    if mean.ndim != 3 or mean.shape[0] != img.shape[0] or mean.shape[1:] not in ((1, 1), img.shape[1:]):
        raise ValueError(f"subtract_mean: mean of shape {mean.shape} does not fit image {img.shape}; "
                         f"expected {(img.shape[0], 1, 1)} or {img.shape}")
    return img - mean


def ten_crop(img, size):
    """The 10 test-time crops of img (C,H,W): (10,C,h,w) float32.

    Order: top-left, top-right, bottom-left, bottom-right, centre, then the same five
    mirrored left-right (crop 5+k == hflip(crop k)).
    """
    _check_chw(img, "ten_crop")
    h, w = _hw(size)
    H, W = img.shape[1:]
    if h > H or w > W:
        raise ValueError(f"ten_crop: crop {(h, w)} larger than image {img.shape}")
    corners = [(0, 0), (0, W - w), (H - h, 0), (H - h, W - w), ((H - h) // 2, (W - w) // 2)]
    crops = np.stack([img[:, t:t + h, l:l + w] for t, l in corners])  # (5,C,h,w)
    return np.ascontiguousarray(np.concatenate([crops, crops[..., ::-1]]), dtype=np.float32)


class Compose:
    """Apply steps in order; each step is a callable step(img, rng) -> img sharing one rng."""

    def __init__(self, *steps):
        self.steps = list(steps)

    def __call__(self, img, rng):
        for step in self.steps:
            img = step(img, rng)
        return img


class Resize:
    def __init__(self, size):
        self.size = size

    def __call__(self, img, rng):
        return resize(img, self.size)


class ResizeShorter:
    def __init__(self, size):
        self.size = size

    def __call__(self, img, rng):
        return resize_shorter(img, self.size)


class CenterCrop:
    def __init__(self, size):
        self.size = size

    def __call__(self, img, rng):
        return center_crop(img, self.size)


class RandomCrop:
    def __init__(self, size):
        self.size = size

    def __call__(self, img, rng):
        return random_crop(img, self.size, rng)


class RandomHorizontalFlip:
    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, img, rng):
        return random_hflip(img, rng, self.p)


class RandomTranslate:
    def __init__(self, max_shift):
        self.max_shift = max_shift

    def __call__(self, img, rng):
        return random_translate(img, self.max_shift, rng)


class PCAColour:
    def __init__(self, eigvals, eigvecs, std=0.1):
        self.eigvals, self.eigvecs, self.std = eigvals, eigvecs, std

    def __call__(self, img, rng):
        return pca_colour(img, self.eigvals, self.eigvecs, rng, self.std)


class SubtractMean:
    def __init__(self, mean):
        self.mean = np.asarray(mean, dtype=np.float32)

    def __call__(self, img, rng):
        return subtract_mean(img, self.mean)
