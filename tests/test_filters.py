"""Classic filters through conv2d: against scipy.ndimage (matching border modes) and analytic
properties (normalisation, Sobel on a ramp, LoG zero-crossing, Gabor orientation selectivity)."""
import math

import numpy as np
import pytest

import pyconvnet
from pyconvnet import filters as F

SCIPY_MODE = {"zero": "constant", "reflect": "mirror", "symmetric": "reflect",
              "replicate": "nearest", "edge": "nearest", "wrap": "wrap"}


@pytest.fixture
def ndi():
    return pytest.importorskip("scipy.ndimage")


@pytest.fixture
def img(rng):
    return rng.random((2, 13, 17)).astype(np.float32)  # (C, H, W), odd sizes


def _per_channel(fn, x):
    return np.stack([fn(c.astype(np.float64)) for c in x])


# ---- kernels
def test_smoothing_kernels_sum_to_one():
    assert F.mean_kernel(5).shape == (5, 5)
    for k in (F.mean_kernel(4), F.gaussian_kernel1d(2.0), F.gaussian_kernel(1.5)):
        assert abs(float(k.sum(dtype=np.float64)) - 1) < 1e-6
    assert F.gaussian_kernel1d(2.0).size == 2 * int(4 * 2.0 + 0.5) + 1


def test_log_and_gabor_kernels_have_zero_mean():
    k = F.log_kernel(2.0)
    assert k[k.shape[0] // 2, k.shape[1] // 2] < 0
    assert abs(float(k.sum())) < 0.01 * abs(k).max()  # not exactly 0: truncated at 4 sigma
    g = F.gabor_kernel(0.3, 6.0)
    assert g.shape[0] % 2 == 1 and abs(float(g.sum())) < 1e-4
    bank, params = F.gabor_bank(4, (4.0, 8.0))
    assert bank.shape[0] == 8 and len(params) == 8 and bank.shape[1] == bank.shape[2]


def test_kernel_arguments_are_checked():
    with pytest.raises(ValueError, match="sigma must be > 0"):
        F.gaussian_kernel1d(0)
    with pytest.raises(ValueError, match="size must be >= 1"):
        F.mean_kernel(0)
    with pytest.raises(ValueError, match="wavelength"):
        F.gabor_kernel(0, -1)


# ---- against scipy.ndimage
@pytest.mark.parametrize("border", list(SCIPY_MODE))
@pytest.mark.parametrize("shape", [(3, 3), (4, 4), (2, 5)])
def test_correlate_and_convolve_match_scipy(ndi, img, rng, border, shape):
    k = rng.standard_normal(shape).astype(np.float32)
    mode, k64 = SCIPY_MODE[border], k.astype(np.float64)
    np.testing.assert_allclose(F.correlate(img, k, border),
                               _per_channel(lambda c: ndi.correlate(c, k64, mode=mode), img), atol=2e-5)
    np.testing.assert_allclose(F.convolve(img, k, border),
                               _per_channel(lambda c: ndi.convolve(c, k64, mode=mode), img), atol=2e-5)


@pytest.mark.parametrize("border", ["zero", "reflect", "symmetric", "edge", "wrap"])
def test_named_filters_match_scipy(ndi, img, border):
    mode = SCIPY_MODE[border]
    cases = [
        (F.gaussian_filter(img, 1.5, border), lambda c: ndi.gaussian_filter(c, 1.5, mode=mode)),
        (F.laplacian_of_gaussian(img, 1.2, border), lambda c: ndi.gaussian_laplace(c, 1.2, mode=mode)),
        (F.mean_filter(img, 3, border), lambda c: ndi.uniform_filter(c, 3, mode=mode)),
        (F.gradient(img, "sobel", border)[0], lambda c: ndi.sobel(c, axis=-1, mode=mode)),
        (F.gradient(img, "sobel", border)[1], lambda c: ndi.sobel(c, axis=-2, mode=mode)),
        (F.gradient(img, "prewitt", border)[0], lambda c: ndi.prewitt(c, axis=-1, mode=mode)),
    ]
    for ours, ref in cases:
        np.testing.assert_allclose(ours, _per_channel(ref, img), atol=2e-5)


def test_strips_under_a_small_workspace_give_the_same_result(img, rng, restore_settings):
    k = rng.standard_normal((5, 5)).astype(np.float32)
    full = [F.correlate(img, k, b) for b in ("zero", "reflect")]
    pyconvnet.set_workspace_limit(4 * 2 * 25 * 17 * 3)  # room for 3 output rows at a time
    for b, y in zip(("zero", "reflect"), full):
        np.testing.assert_allclose(F.correlate(img, k, b), y, atol=1e-6)


# ---- shapes, banks, errors
def test_shapes_follow_the_input_and_bank_channels_are_grouped(rng):
    k = F.gaussian_kernel(1.0)
    x4 = rng.random((2, 3, 9, 11)).astype(np.float32)
    assert F.correlate(x4, k).shape == x4.shape
    assert F.correlate(x4[0, 0], k).shape == (9, 11)
    assert F.correlate((x4[0] * 255).astype(np.uint8), k).dtype == np.float32
    bank = np.stack([k, F.mean_kernel(k.shape[0])])
    y = F.filter_bank(x4, bank)
    assert y.shape == (2, 6, 9, 11) and F.filter_bank(x4[0, 0], bank).shape == (2, 9, 11)
    np.testing.assert_allclose(y[:, 2 * 1 + 1], F.correlate(x4[:, 1], bank[1]), atol=1e-6)  # c*K + k


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match="border must be one of"):
        F.gaussian_filter(np.zeros((5, 5)), 1.0, border="mirror")
    with pytest.raises(ValueError, match=r"got shape \(5,\)"):
        F.correlate(np.zeros(5), np.ones((3, 3)))
    with pytest.raises(TypeError, match="real numbers"):
        F.correlate(np.zeros((5, 5), complex), np.ones((3, 3)))
    with pytest.raises(ValueError, match="operator must be"):
        F.gradient(np.zeros((5, 5)), "canny")
    with pytest.raises(FileNotFoundError, match="no_such.png"):
        F.load_image("no_such.png")


# ---- analytic properties
def test_sobel_on_a_ramp_gives_the_scaled_slope():
    y, x = np.mgrid[0:12, 0:15].astype(np.float32)
    gx, gy, mag, ori = F.gradient(3.0 * x + 1.0, "sobel")
    inner = (slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(gx[inner], 8 * 3.0, rtol=1e-6)   # Sobel weights sum to 8 per side
    np.testing.assert_allclose(gy[inner], 0, atol=1e-5)
    np.testing.assert_allclose(ori[inner], 0, atol=1e-6)         # gradient points right
    gx, gy, _, ori = F.gradient(-2.0 * y, "prewitt", normalize=True)
    np.testing.assert_allclose(gy[inner], -2.0, rtol=1e-6)       # normalised: the slope itself
    np.testing.assert_allclose(ori[inner], -math.pi / 2, atol=1e-6)  # brighter upward


def test_log_has_a_zero_crossing_at_a_step_edge():
    step = np.zeros((20, 32), np.float32)
    step[:, 16:] = 1.0
    r = F.laplacian_of_gaussian(step, 2.0, border="edge")
    row = r[10]
    assert row[15] > 0 > row[16]                       # dark side positive, bright side negative
    assert np.abs(row[:4]).max() < 1e-3 and np.abs(row[-4:]).max() < 1e-3  # flat: ~0
    assert np.argmax(np.abs(np.diff(row))) == 15       # steepest between the two edge pixels


def test_gabor_bank_is_orientation_selective():
    bank, params = F.gabor_bank(8, (8.0,))
    y, x = np.mgrid[0:64, 0:64].astype(np.float64)
    for k, (theta, lam) in enumerate(params):
        grating = np.cos(2 * np.pi * (x * np.cos(theta) + y * np.sin(theta)) / lam).astype(np.float32)
        r = F.filter_bank(grating, bank, border="wrap")[:, 16:-16, 16:-16]
        energy = (r.astype(np.float64) ** 2).mean(axis=(1, 2))
        assert np.argmax(energy) == k, (k, energy.round(3))


def test_cli_writes_the_panels(tmp_path):
    from PIL import Image
    from pyconvnet import cli
    path = tmp_path / "tiny.png"
    Image.fromarray((np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)).save(path)
    assert cli.main(["filters", str(path), "--out", str(tmp_path / "out"), "--size", "40"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["edges.png", "gabor.png",
                                                                     "gaussian.png", "log.png"]
    with pytest.raises(SystemExit, match="does not exist"):
        cli.main(["filters", str(tmp_path / "missing.png")])
