"""Classic image filters (box, Gaussian, Sobel/Prewitt, Laplacian of Gaussian, Gabor) applied
through the library's own conv2d kernel.

Images: (H, W), (C, H, W) or (N, C, H, W); any real dtype is converted once to float32 and the
result has the input's ndim. Every channel is filtered on its own: the kernel is repeated into a
grouped weight (C, 1, KH, KW) with groups=C (a bank of K kernels gives (C*K, 1, KH, KW), output
channel c*K + k = kernel k on channel c).

Correlation, not convolution: ops.conv2d_forward computes y[i, j] = sum_ab w[a, b] x[i+a, j+b]
(cross-correlation, as in PyTorch and Caffe). `correlate` applies a kernel as written; `convolve`
flips it first (true convolution). Symmetric kernels (box, Gaussian, LoG, even Gabor) give the
same result either way. Sobel and Prewitt are written for correlation: gx > 0 where intensity
grows to the right (+column), gy > 0 where it grows downward (+row), the same sign as
scipy.ndimage.sobel(axis=-1 / -2). They are not normalised: a ramp of slope s gives 8 s (Sobel)
or 6 s (Prewitt); pass normalize=True to get s.

Borders (the kernel centre is at index K // 2, as in scipy.ndimage, so even kernels also work):
  "zero"              zeros outside                 scipy mode "constant" (conv padding)
  "reflect"           d c b | a b c d  (no repeat)  scipy "mirror", PyTorch/OpenCV "reflect(_101)"
  "symmetric"         c b a | a b c d  (repeat)     scipy "reflect"
  "replicate"/"edge"  a a a | a b c d               scipy "nearest"
  "wrap"              b c d | a b c d               scipy "wrap"
All but "zero" pad with numpy, then run a valid convolution. An image whose im2col matrix would
exceed the workspace limit is filtered in horizontal strips, so memory stays bounded.
"""
import math
import os

import numpy as np

from . import ops
from ._workspace import get_workspace_limit

BORDERS = {"zero": "constant", "reflect": "reflect", "symmetric": "symmetric",
           "replicate": "edge", "edge": "edge", "wrap": "wrap"}
SOBEL = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)    # d/dx, for correlation
PREWITT = np.array([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]], np.float32)


# ---- kernel builders: float32 arrays, centre at index K // 2
def mean_kernel(size):
    """Box filter (size, size) of 1/size^2: sums to 1."""
    size = int(size)
    if size < 1:
        raise ValueError(f"mean_kernel: size must be >= 1, got {size}")
    return np.full((size, size), 1.0 / size ** 2, np.float32)


def gaussian_kernel1d(sigma, truncate=4.0, order=0):
    """Sampled 1-d Gaussian (order 0, normalised to sum 1) or its second derivative (order 2)
    over radius int(truncate * sigma + 0.5): the same samples as scipy.ndimage.gaussian_filter."""
    if not sigma > 0:
        raise ValueError(f"gaussian_kernel1d: sigma must be > 0, got {sigma}")
    if order not in (0, 2):
        raise ValueError(f"gaussian_kernel1d: order must be 0 or 2, got {order}")
    r = int(truncate * sigma + 0.5)
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * x ** 2 / sigma ** 2)
    g /= g.sum()
    if order == 2:  # d2/dx2 exp(-x^2 / 2s^2) = (x^2 / s^4 - 1 / s^2) exp(...)
        g *= x ** 2 / sigma ** 4 - 1.0 / sigma ** 2
    return g.astype(np.float32)


def gaussian_kernel(sigma, truncate=4.0):
    """2-d Gaussian (2r+1, 2r+1), the outer product of gaussian_kernel1d; sums to 1."""
    g = gaussian_kernel1d(sigma, truncate).astype(np.float64)
    return np.outer(g, g).astype(np.float32)


def log_kernel(sigma, truncate=4.0):
    """Laplacian of Gaussian g''(x) g(y) + g(x) g''(y) (scipy.ndimage.gaussian_laplace's samples);
    negative at the centre; sums to ~0 (truncation at 4 sigma leaves about 1% of the peak)."""
    g0 = gaussian_kernel1d(sigma, truncate, 0).astype(np.float64)
    g2 = gaussian_kernel1d(sigma, truncate, 2).astype(np.float64)
    return (np.outer(g0, g2) + np.outer(g2, g0)).astype(np.float32)


def gabor_kernel(theta, wavelength, sigma=None, phase=0.0, aspect=0.5, size=None, zero_mean=True):
    """Gabor filter exp(-(u^2 + aspect^2 v^2) / 2 sigma^2) cos(2 pi u / wavelength + phase) with
    u = x cos(theta) + y sin(theta), v = -x sin(theta) + y cos(theta) (x = column, y = row,
    pointing down). theta is the direction of the wave vector, i.e. normal to the stripes: it
    responds most to a grating cos(2 pi (x cos(theta) + y sin(theta)) / wavelength).
    sigma defaults to 0.5 * wavelength (about 1.1 octaves of bandwidth); size (odd) defaults to
    cover 2.5 standard deviations of the longer axis. zero_mean removes the DC response, so a
    flat region gives 0 whatever the phase."""
    if not wavelength > 0 or not aspect > 0:
        raise ValueError(f"gabor_kernel: wavelength and aspect must be > 0, got {wavelength}, {aspect}")
    sigma = 0.5 * wavelength if sigma is None else float(sigma)
    r = int(math.ceil(2.5 * sigma / min(aspect, 1.0))) if size is None else int(size) // 2
    y, x = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float64)
    u = x * math.cos(theta) + y * math.sin(theta)
    v = -x * math.sin(theta) + y * math.cos(theta)
    k = np.exp(-(u ** 2 + aspect ** 2 * v ** 2) / (2 * sigma ** 2)) * np.cos(2 * math.pi * u / wavelength + phase)
    if zero_mean:
        k -= k.mean()
    return k.astype(np.float32)


def gabor_bank(n_orientations=8, wavelengths=(4.0, 8.0), phase=0.0, aspect=0.5):
    """Kernels (K, S, S), zero-padded to the largest size, and their parameters [(theta,
    wavelength)], orientations theta = pi k / n_orientations (k = 0..n-1) for each wavelength."""
    params = [(math.pi * k / n_orientations, float(lam)) for lam in wavelengths
              for k in range(int(n_orientations))]
    kernels = [gabor_kernel(t, lam, phase=phase, aspect=aspect) for t, lam in params]
    s = max(k.shape[0] for k in kernels)
    bank = np.zeros((len(kernels), s, s), np.float32)
    for b, k in zip(bank, kernels):
        o = (s - k.shape[0]) // 2
        b[o:o + k.shape[0], o:o + k.shape[1]] = k
    return bank, params


def load_image(path=None, size=None):
    """An image file as (3, H, W) float32 in [0, 1] (scikit-learn's sample photo china.jpg when
    path is None), resized so that its shorter side is `size` when given."""
    from .data import decode_image, resize_shorter
    if path is None:
        from sklearn.datasets import load_sample_image
        img = load_sample_image("china.jpg").transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    else:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"load_image: image file {path} does not exist")
        img = decode_image(path)
    return resize_shorter(img, int(size)) if size else img


# ---- application through ops.conv2d_forward
def _as_nchw(images, who):
    a = np.asarray(images)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{who}: images must be real numbers, got dtype {a.dtype}")
    if a.ndim not in (2, 3, 4):
        raise ValueError(f"{who}: images must be (H, W), (C, H, W) or (N, C, H, W), got shape {a.shape}")
    x = np.ascontiguousarray(a.reshape((1,) * (4 - a.ndim) + a.shape), dtype=np.float32)
    return x, a.ndim


def _from_nchw(y, ndim, bank=False):
    """Back to the caller's ndim; a bank keeps its kernel axis: (H,W) -> (K,H,W) etc."""
    if ndim == 4:
        return y
    return y[0] if (ndim == 3 or bank) else y[0, 0]


def _correlate_nchw(x, w, border, who, centre=None):
    """x (N, C, H, W), w (C*K, 1, KH, KW) -> (N, C*K, H, W), the same size; kernel tap
    centre = (a, b) (default (KH // 2, KW // 2)) lands on the output pixel."""
    if border not in BORDERS:
        raise ValueError(f"{who}: border must be one of {', '.join(BORDERS)}, got {border!r}")
    (n, c, h, wd), (kh, kw) = x.shape, w.shape[2:]
    before = (kh // 2, kw // 2) if centre is None else centre
    after = (kh - 1 - before[0], kw - 1 - before[1])
    col_floats = c * kh * kw * h * wd  # im2col of one image with groups=C
    if border == "zero" and before == after and 4 * col_floats <= get_workspace_limit():
        return ops.conv2d_forward(x, w, None, 1, before, groups=c)
    pad = ((0, 0), (0, 0), (before[0], after[0]), (before[1], after[1]))
    xp = np.pad(x, pad, mode=BORDERS[border])
    rows = max(1, get_workspace_limit() // (4 * c * kh * kw * wd))  # output rows per strip
    if rows >= h:
        return ops.conv2d_forward(xp, w, None, 1, 0, groups=c)
    y = np.empty((n, w.shape[0], h, wd), np.float32)
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        y[:, :, r0:r1] = ops.conv2d_forward(np.ascontiguousarray(xp[:, :, r0:r1 + kh - 1]), w,
                                            None, 1, 0, groups=c)
    return y


def _kernel2d(kernel, who):
    k = np.asarray(kernel, np.float32)
    if k.ndim != 2 or min(k.shape) < 1:
        raise ValueError(f"{who}: kernel must be 2-d (KH, KW), got shape {k.shape}")
    return k


def correlate(images, kernel, border="reflect"):
    """Cross-correlate every channel with kernel (KH, KW) (what conv2d computes); same size."""
    x, nd = _as_nchw(images, "correlate")
    k = _kernel2d(kernel, "correlate")
    w = np.ascontiguousarray(np.broadcast_to(k, (x.shape[1], 1, *k.shape)))
    return _from_nchw(_correlate_nchw(x, w, border, "correlate"), nd)


def convolve(images, kernel, border="reflect"):
    """True convolution: correlation with the kernel flipped in both axes. The flipped kernel's
    centre is at (K - 1) // 2 (the original centre K // 2 mirrored), as in scipy.ndimage.convolve."""
    x, nd = _as_nchw(images, "convolve")
    k = _kernel2d(kernel, "convolve")[::-1, ::-1]
    w = np.ascontiguousarray(np.broadcast_to(k, (x.shape[1], 1, *k.shape)))
    centre = ((k.shape[0] - 1) // 2, (k.shape[1] - 1) // 2)
    return _from_nchw(_correlate_nchw(x, w, border, "convolve", centre), nd)


def filter_bank(images, kernels, border="reflect"):
    """Correlate every channel with each of kernels (K, KH, KW) in one grouped conv:
    (N, C, H, W) -> (N, C*K, H, W) with channel c*K + k; (H, W) -> (K, H, W)."""
    x, nd = _as_nchw(images, "filter_bank")
    k = np.asarray(kernels, np.float32)
    if k.ndim != 3:
        raise ValueError(f"filter_bank: kernels must be (K, KH, KW), got shape {k.shape}")
    w = np.ascontiguousarray(np.tile(k[:, None], (x.shape[1], 1, 1, 1)))
    return _from_nchw(_correlate_nchw(x, w, border, "filter_bank"), nd, bank=True)


def separable(images, k_rows, k_cols, border="reflect"):
    """Correlate with the outer product k_rows (KH,) x k_cols (KW,) as two 1-d passes:
    (1, KW) along rows, then (KH, 1) down columns; KH + KW instead of KH * KW per pixel."""
    x, nd = _as_nchw(images, "separable")
    c = x.shape[1]
    kr, kc = np.asarray(k_rows, np.float32).ravel(), np.asarray(k_cols, np.float32).ravel()
    y = _correlate_nchw(x, np.ascontiguousarray(np.broadcast_to(kc, (c, 1, 1, kc.size))), border, "separable")
    y = _correlate_nchw(y, np.ascontiguousarray(np.broadcast_to(kr[:, None], (c, 1, kr.size, 1))), border, "separable")
    return _from_nchw(y, nd)


def mean_filter(images, size=3, border="reflect"):
    """Box blur: the mean of each size x size window (separable)."""
    k = mean_kernel(size)[0] * size
    return separable(images, k, k, border)


def gaussian_filter(images, sigma, border="reflect", truncate=4.0):
    """Gaussian blur with standard deviation sigma (pixels), separable; sigma sets the scale:
    structures much smaller than sigma are averaged away."""
    g = gaussian_kernel1d(sigma, truncate)
    return separable(images, g, g, border)


def laplacian_of_gaussian(images, sigma, border="reflect", truncate=4.0):
    """LoG response: two separable passes g''(x) g(y) + g(x) g''(y). Zero-crossings mark edges,
    negative on the bright side of an edge."""
    g0, g2 = gaussian_kernel1d(sigma, truncate, 0), gaussian_kernel1d(sigma, truncate, 2)
    return separable(images, g0, g2, border) + separable(images, g2, g0, border)


def gradient(images, operator="sobel", border="reflect", normalize=False):
    """(gx, gy, magnitude, orientation) with the Sobel or Prewitt operator (signs as in the
    module docstring); orientation = atan2(gy, gx) in radians, y pointing down."""
    kx = {"sobel": SOBEL, "prewitt": PREWITT}.get(operator)
    if kx is None:
        raise ValueError(f"gradient: operator must be 'sobel' or 'prewitt', got {operator!r}")
    if normalize:
        kx = kx / np.abs(kx).sum()  # weights 8 (Sobel) or 6 (Prewitt): a ramp of slope s gives s
    g = filter_bank(images, np.stack([kx, kx.T]), border)
    gx, gy = (g[..., 0::2, :, :], g[..., 1::2, :, :]) if g.ndim == 4 else (g[0::2], g[1::2])
    if np.ndim(images) == 2:
        gx, gy = gx[0], gy[0]
    return gx, gy, np.hypot(gx, gy), np.arctan2(gy, gx)
