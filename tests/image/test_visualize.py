"""Depth colour maps are ordered and honour alpha and the given range; 8-bit conversion rounds and
clamps; PNGs read back as written."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from nerfkit.image.visualize import colorize_depth, colormap, save_image, side_by_side, to_uint8

LUMA = np.array([0.2126, 0.7152, 0.0722])            # Rec. 709 luma weights


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ LUMA


def ramp(width: int = 64, near: float = 1.0, far: float = 5.0) -> torch.Tensor:
    """(2, width) depth increasing left to right from ``near`` to ``far``."""
    return torch.linspace(near, far, width).expand(2, width).clone()


# --- colormap --------------------------------------------------------------------------------------

def test_colormap_lightness_and_mean_increase_monotonically():
    colours = colormap(np.linspace(0.0, 1.0, 501))
    assert colours.shape == (501, 3)
    assert np.all(np.diff(luma(colours)) > 0)
    assert np.all(np.diff(colours.mean(-1)) > 0)
    assert luma(colours[-1]) - luma(colours[0]) > 0.6          # dark blue to bright yellow


def test_colormap_clamps_outside_zero_one():
    np.testing.assert_allclose(colormap(np.array([-3.0, 0.0])), colormap(np.array([0.0, 0.0])))
    np.testing.assert_allclose(colormap(np.array([1.0, 7.0])), colormap(np.array([1.0, 1.0])))
    assert np.all((colormap(np.linspace(-1, 2, 31)) >= 0) & (colormap(np.linspace(-1, 2, 31)) <= 1))


# --- colorize_depth --------------------------------------------------------------------------------

def test_background_is_black_where_alpha_below_half():
    depth = ramp(8)
    alpha = torch.tensor([[1.0, 0.9, 0.5, 0.49, 0.2, 0.0, 1.0, 0.6]]).expand(2, 8)
    out = colorize_depth(depth * alpha, alpha, near=1.0, far=5.0)
    assert out.dtype == np.uint8 and out.shape == (2, 8, 3)
    background = (alpha < 0.5).numpy()
    assert np.all(out[background] == 0)
    assert np.all(out[~background].sum(-1) > 0)


def test_near_and_far_get_distinct_colours_lighter_with_distance():
    out = colorize_depth(ramp(64), near=1.0, far=5.0)
    row = luma(out[0])
    assert np.all(np.diff(row) >= 0)                       # never darker further away (8-bit steps)
    assert row[-1] - row[0] > 150
    assert np.abs(out[0, 0].astype(int) - out[0, -1].astype(int)).sum() > 200
    np.testing.assert_array_equal(out[0], out[1])


def test_explicit_near_and_far_map_to_the_ends_of_the_colormap():
    depth = torch.tensor([[2.0, 3.0, 4.0, 1.0, 9.0]])
    out = colorize_depth(depth, near=2.0, far=4.0)
    expected = np.round(colormap(np.array([0.0, 0.5, 1.0, 0.0, 1.0])) * 255).astype(np.uint8)
    np.testing.assert_array_equal(out[0], expected)        # beyond the range: clamped to the ends


def test_the_range_changes_the_colours():
    depth = ramp(16, 2.0, 3.0)
    tight = colorize_depth(depth, near=2.0, far=3.0)
    wide = colorize_depth(depth, near=0.0, far=10.0)
    # With the wide range 2..3 is a thin slice: far less spread in lightness.
    assert np.ptp(luma(tight[0])) > 150
    assert np.ptp(luma(wide[0])) < 40


def test_default_range_is_the_foreground_percentiles():
    # Foreground depths 1..5; the background's huge depth must not stretch the range.
    depth = ramp(101, 1.0, 5.0)
    alpha = torch.ones_like(depth)
    depth[:, :10] = 1000.0
    alpha[:, :10] = 0.0
    auto = colorize_depth(depth * alpha, alpha)
    lo, hi = np.percentile(depth[:, 10:].numpy(), [1, 99])
    explicit = colorize_depth(depth * alpha, alpha, near=float(lo), far=float(hi))
    np.testing.assert_array_equal(auto, explicit)
    assert luma(auto[0, 10]) < 60 and luma(auto[0, -1]) > 200


def test_depth_is_divided_by_alpha():
    depth = ramp(10, 1.0, 5.0)
    alpha = torch.full_like(depth, 0.8)
    np.testing.assert_array_equal(colorize_depth(depth * alpha, alpha, near=1.0, far=5.0),
                                  colorize_depth(depth, near=1.0, far=5.0))


# --- to_uint8 / save_image -------------------------------------------------------------------------

def test_to_uint8_rounds_and_clamps():
    image = torch.tensor([[[-0.5, 0.0, 0.4 / 255], [0.6 / 255, 127.4 / 255, 127.6 / 255],
                           [254.6 / 255, 1.0, 3.0]]])
    out = to_uint8(image)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[[0, 0, 0], [1, 127, 128], [255, 255, 255]]])


def test_to_uint8_is_exact_on_the_8bit_grid():
    levels = torch.arange(256, dtype=torch.float32) / 255
    np.testing.assert_array_equal(to_uint8(levels.view(16, 16, 1))[..., 0],
                                  np.arange(256, dtype=np.uint8).reshape(16, 16))


@pytest.mark.parametrize("channels", [3, 4])
def test_save_image_writes_a_png_that_reads_back_equal(tmp_path, channels):
    image = np.random.default_rng(channels).integers(0, 256, (9, 13, channels), dtype=np.uint8)
    path = tmp_path / "renders" / "deep" / "view.png"          # folders are created
    save_image(path, image)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(iio.imread(path), image)


def test_side_by_side_concatenates_left_to_right():
    left, right = np.zeros((2, 3, 3), np.uint8), np.full((2, 2, 3), 7, np.uint8)
    out = side_by_side(left, right)
    assert out.shape == (2, 5, 3)
    assert np.all(out[:, :3] == 0) and np.all(out[:, 3:] == 7)
