"""PSNR and SSIM give the textbook values on 8-bit images and agree with scikit-image.

Relation to scikit-image (checked below, not just assumed): ``structural_similarity(...,
gaussian_weights=True, sigma=1.5)`` filters with ``truncate=3.5`` -> radius ``int(3.5 * 1.5 + 0.5)
= 5``, i.e. the same 11-tap window, with 'reflect' padding, and then averages the SSIM map after
``crop(S, (win_size - 1) // 2)``, i.e. without the 5-pixel border where the padding reaches. The map
that is left is exactly nerfkit's 'valid' map, so the two means agree to rounding. Per channel it
averages the channel means, which equals nerfkit's mean over all (equally sized) channel maps.
scikit-image does not quantise, so it is given the 8-bit-quantised images nerfkit compares.
"""

from __future__ import annotations

import doctest
import itertools
import math

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.filters import gaussian
from skimage.metrics import structural_similarity
from skimage.transform import resize

import nerfkit.image.metrics
from nerfkit.image.metrics import MAX_PSNR, psnr, psnr_from_mse, quantize_8bit, ssim

SKIMAGE_SSIM = {"channel_axis": 2, "data_range": 1.0, "gaussian_weights": True, "sigma": 1.5,
                "use_sample_covariance": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def grid_image(seed: int, shape=(16, 20, 3), high: int = 254) -> torch.Tensor:
    """A random image whose values lie exactly on the 8-bit grid k/255, k in [0, high]."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, high + 1, shape, generator=gen).double() / 255.0


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """skimage's astronaut, 128 x 128, float64 in [0, 1] on the 8-bit grid."""
    image = resize(skdata.astronaut(), (128, 128), anti_aliasing=True)
    return quantize_8bit(torch.from_numpy(image)).numpy()


def noisy(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return quantize_8bit(torch.from_numpy(image + rng.normal(0.0, sigma, image.shape))).numpy()


# --- PSNR ------------------------------------------------------------------------------------------

def test_psnr_of_one_level_offset_is_20_log10_255():
    target = grid_image(0)
    assert psnr(target + 1 / 255, target) == pytest.approx(20 * math.log10(255), abs=1e-9)
    assert round(psnr(target + 1 / 255, target), 2) == 48.13


def test_psnr_of_known_mse():
    # Half the values off by 2 levels, half exact: MSE = 0.5 * (2/255)^2.
    target = grid_image(1, shape=(8, 8, 3))
    pred = target.clone()
    pred[:4] += 2 / 255
    expected = -10 * math.log10(0.5 * (2 / 255) ** 2)
    assert psnr(pred, target) == pytest.approx(expected, abs=1e-9)
    assert psnr(target, pred) == pytest.approx(expected, abs=1e-9)  # symmetric


def test_identical_images_give_the_documented_cap():
    target = grid_image(2)
    assert MAX_PSNR == 100.0
    assert psnr(target, target.clone()) == MAX_PSNR
    assert psnr_from_mse(0.0) == MAX_PSNR


def test_psnr_compares_8bit_quantised_images():
    target = grid_image(3)
    # Less than half a level off: the same 8-bit image.
    assert psnr(target + 0.4 / 255, target) == MAX_PSNR
    # Values outside [0, 1] are clamped: 1.3 and 1.0 are both 255.
    ones = torch.ones(4, 4, 3)
    assert psnr(ones * 1.3, ones) == MAX_PSNR
    assert psnr(-0.2 * ones, 0 * ones) == MAX_PSNR


def test_quantize_8bit_snaps_to_the_grid():
    values = torch.tensor([-0.5, 0.0, 0.3 / 255, 0.7 / 255, 100.2 / 255, 1.0, 2.0])
    expected = torch.tensor([0.0, 0.0, 0.0, 1.0, 100.0, 255.0, 255.0], dtype=torch.float64) / 255
    out = quantize_8bit(values)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("mse", [1e-1, 1e-3, 2.5e-5, 1e-9])
def test_psnr_from_mse_is_minus_10_log10_and_inverts(mse):
    value = psnr_from_mse(mse)
    assert value == pytest.approx(-10 * math.log10(mse), rel=1e-12)
    assert 10 ** (-value / 10) == pytest.approx(mse, rel=1e-12)


def test_psnr_from_mse_caps_below_the_cap_level():
    assert psnr_from_mse(1e-3) == pytest.approx(30.0)
    assert psnr_from_mse(10 ** (-MAX_PSNR / 10) / 2) == MAX_PSNR
    assert psnr_from_mse(-1.0) == MAX_PSNR
    assert psnr_from_mse(1e-9) < MAX_PSNR


def test_psnr_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(4, 4, 3), torch.zeros(4, 5, 3))


def test_docstring_examples_hold():
    # The psnr example once used t = 0.5: 127.5 and 128.5 both round to 128 on the 8-bit grid,
    # so it printed 100.0 instead of the 48.13 it claimed.
    result = doctest.testmod(nerfkit.image.metrics, verbose=False)
    assert result.attempted >= 2
    assert result.failed == 0


# --- SSIM ------------------------------------------------------------------------------------------

def test_ssim_of_identical_images_is_one(astronaut):
    image = torch.from_numpy(astronaut)
    assert ssim(image, image.clone()) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_constant_images_follows_the_formula():
    # Constant images: variances 0, so SSIM = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1).
    a, b = 100 / 255, 140 / 255
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(torch.full((12, 12, 3), a), torch.full((12, 12, 3), b)) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("distortion", ["noise", "blur", "noise+blur"])
def test_ssim_matches_skimage(astronaut, distortion):
    if distortion == "noise":
        other = noisy(astronaut, 0.05)
    elif distortion == "blur":
        other = quantize_8bit(torch.from_numpy(gaussian(astronaut, sigma=1.2, channel_axis=2))).numpy()
    else:
        other = noisy(gaussian(astronaut, sigma=0.8, channel_axis=2), 0.03, seed=1)
    ours = ssim(torch.from_numpy(other), torch.from_numpy(astronaut))
    reference = structural_similarity(other, astronaut, **SKIMAGE_SSIM)
    assert 0.2 < ours < 0.99                     # a real, non-trivial comparison
    assert ours == pytest.approx(reference, abs=1e-3)
    assert ours == pytest.approx(reference, abs=1e-9)  # in fact equal up to rounding


def test_ssim_equals_skimage_map_without_its_5_pixel_border(astronaut):
    other = noisy(astronaut, 0.1)
    _, full_map = structural_similarity(other, astronaut, full=True, **SKIMAGE_SSIM)
    ours = ssim(torch.from_numpy(other), torch.from_numpy(astronaut))
    assert ours == pytest.approx(full_map[5:-5, 5:-5].mean(), abs=1e-9)
    # The border (reflect-padded in skimage, absent in 'valid' filtering) does matter: averaging
    # the uncropped map gives a measurably different number.
    assert abs(full_map.mean() - ours) > 1e-4


def test_ssim_is_symmetric(astronaut):
    other = noisy(astronaut, 0.07)
    a, b = torch.from_numpy(other), torch.from_numpy(astronaut)
    assert ssim(a, b) == pytest.approx(ssim(b, a), abs=1e-12)


def test_ssim_decreases_monotonically_with_noise(astronaut):
    target = torch.from_numpy(astronaut)
    scores = [ssim(torch.from_numpy(noisy(astronaut, sigma)), target)
              for sigma in (0.005, 0.02, 0.05, 0.1, 0.2)]
    assert all(earlier > later for earlier, later in itertools.pairwise(scores)), scores
    assert scores[0] > 0.95 and scores[-1] < 0.5


def test_ssim_rejects_images_smaller_than_the_window():
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.zeros(10, 32, 3), torch.zeros(10, 32, 3))


def test_ssim_filters_small_images_by_banded_products_and_large_ones_by_convolution(monkeypatch):
    from nerfkit.image import metrics

    generator = torch.Generator().manual_seed(3)
    pred, target = torch.rand(2, 40, 57, 3, generator=generator, dtype=torch.float64)
    banded = metrics.ssim_loss_map(pred, target)
    monkeypatch.setattr(metrics, "BANDED_BLUR_MAX_SIDE", 0)
    convolved = metrics.ssim_loss_map(pred, target)
    assert banded.shape == convolved.shape == (3, 30, 47)
    assert torch.allclose(banded, convolved, atol=1e-12, rtol=0)
    # and the banded path differentiates like the convolution path
    grads = []
    for side in (512, 0):
        monkeypatch.setattr(metrics, "BANDED_BLUR_MAX_SIDE", side)
        leaf = pred.clone().requires_grad_(True)
        metrics.ssim_loss_map(leaf, target).mean().backward()
        grads.append(leaf.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-12, rtol=0)
