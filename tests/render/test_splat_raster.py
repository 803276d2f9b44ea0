"""The tile rasterizer against brute-force per-pixel compositing: values, gradients, early stop."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from nerfkit.render.splat_project import ALPHA_THRESHOLD, project_gaussians
from nerfkit.render.splat_raster import bin_gaussians, rasterize, rasterize_ref

sys.path.insert(0, str(Path(__file__).parent))
from splat_reference import composite_brute_force  # noqa: E402


def random_scene(n: int, opacity_low: float, opacity_high: float, seed: int = 0, dtype=torch.float64):
    """``n`` Gaussians in front of an identity camera (37x29 px) and their projection."""
    generator = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=generator, dtype=dtype) - 0.5) * torch.tensor([1.5, 1.2, 1.0], dtype=dtype)
    means[:, 2] += 3
    quats = torch.randn(n, 4, generator=generator, dtype=dtype)
    scales = torch.log(torch.rand(n, 3, generator=generator, dtype=dtype) * 0.15 + 0.02)
    opacities = torch.rand(n, generator=generator, dtype=dtype) * (opacity_high - opacity_low) + opacity_low
    features = torch.rand(n, 4, generator=generator, dtype=dtype)
    intrinsics = torch.tensor([30.0, 30.0, 18.0, 14.0], dtype=dtype)
    projected = project_gaussians(means, quats, scales, opacities, torch.eye(4, dtype=dtype), intrinsics, 37, 29)
    return projected, features


def leaves(projected, features):
    return [projected.means2d.detach().clone().requires_grad_(), projected.conics.detach().clone().requires_grad_(),
            projected.opacities.detach().clone().requires_grad_(), features.clone().requires_grad_()]


@pytest.mark.parametrize("n, low, high, tile, chunk", [
    (60, 0.05, 0.95, 8, 5),       # translucent: every pair is used
    (300, 0.8, 1.0, 8, 7),        # opaque: pixels stop early (T <= 1e-4), across chunk boundaries
    (300, 0.8, 1.0, 16, 32),
    (120, 0.3, 1.0, 16, 1),       # one Gaussian per tile and round
])
def test_tile_rasterizer_matches_brute_force_values_and_gradients(n, low, high, tile, chunk):
    projected, features = random_scene(n, low, high)
    width, height = 37, 29
    means2d, conics, opacities, feats = leaves(projected, features)
    tiles = bin_gaussians(means2d.detach(), projected.radii, projected.depths, width, height, tile)
    image, alpha = rasterize(means2d, conics, opacities, feats, tiles, width, height, chunk)
    ref_leaves = leaves(projected, features)
    ref_image, ref_alpha = composite_brute_force(*ref_leaves, projected.depths, projected.visible, width, height)

    assert image.shape == (height, width, 4) and alpha.shape == (height, width)
    torch.testing.assert_close(image, ref_image, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(alpha, ref_alpha, atol=1e-12, rtol=1e-10)
    if high > 0.99:
        assert 1 - 1e-3 < float(ref_alpha.detach().max()) <= 1 - 1e-4, "the opaque case must reach the early-stop rule"

    generator = torch.Generator().manual_seed(1)
    g_image = torch.randn(image.shape, generator=generator, dtype=image.dtype)
    g_alpha = torch.randn(alpha.shape, generator=generator, dtype=alpha.dtype)
    grads = torch.autograd.grad((image * g_image).sum() + (alpha * g_alpha).sum(), [means2d, conics, opacities, feats])
    ref_grads = torch.autograd.grad((ref_image * g_image).sum() + (ref_alpha * g_alpha).sum(), ref_leaves)
    for name, got, want in zip(("means2d", "conics", "opacities", "features"), grads, ref_grads):
        assert float(want.abs().max()) > 0, name
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-8, msg=name)


def test_rasterizer_in_float32_agrees_with_float64():
    projected, features = random_scene(200, 0.5, 1.0, seed=3)
    out = []
    for dtype in (torch.float64, torch.float32):
        tiles = bin_gaussians(projected.means2d.to(dtype), projected.radii, projected.depths, 37, 29)
        out.append(rasterize(projected.means2d.to(dtype), projected.conics.to(dtype), projected.opacities.to(dtype),
                             features.to(dtype), tiles, 37, 29)[0])
    assert float((out[0] - out[1].double()).abs().max()) < 1e-4


def test_no_visible_gaussians_gives_an_empty_image_and_zero_gradients():
    projected, features = random_scene(10, 0.5, 1.0)
    radii = torch.zeros_like(projected.radii)
    means2d, conics, opacities, feats = leaves(projected, features)
    tiles = bin_gaussians(means2d.detach(), radii, projected.depths, 37, 29)
    assert tiles.gaussian_ids.numel() == 0
    image, alpha = rasterize(means2d, conics, opacities, feats, tiles, 37, 29)
    assert float(image.detach().abs().max()) == 0 and float(alpha.detach().abs().max()) == 0
    (image.sum() + alpha.sum()).backward()
    assert float(means2d.grad.abs().max()) == 0 and float(feats.grad.abs().max()) == 0


def test_tile_lists_hold_every_pixel_a_gaussian_reaches_front_to_back():
    projected, _ = random_scene(150, 0.02, 1.0, seed=5)
    width, height, tile = 37, 29, 8
    tiles = bin_gaussians(projected.means2d, projected.radii, projected.depths, width, height, tile)
    listed = set()
    for t in range(tiles.n_tiles):
        ids = tiles.gaussian_ids[tiles.offsets[t]:tiles.offsets[t + 1]]
        assert bool((projected.depths[ids][1:] >= projected.depths[ids][:-1]).all()), "not sorted by depth"
        listed |= {(t, int(i)) for i in ids}
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    px, py = xs.reshape(-1).double() + 0.5, ys.reshape(-1).double() + 0.5
    for i in torch.nonzero(projected.opacities >= ALPHA_THRESHOLD).squeeze(1).tolist():
        dx, dy = projected.means2d[i, 0] - px, projected.means2d[i, 1] - py
        a, b, c = projected.conics[i]
        alpha = projected.opacities[i] * torch.exp(-(0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy))
        for pixel in torch.nonzero(alpha >= ALPHA_THRESHOLD).squeeze(1).tolist():
            tile_id = (int(py[pixel]) // tile) * tiles.tiles_x + int(px[pixel]) // tile
            assert (tile_id, i) in listed, f"Gaussian {i} reaches pixel {pixel} but is not in tile {tile_id}"


def test_rasterize_rejects_mismatched_inputs():
    projected, features = random_scene(10, 0.5, 1.0)
    tiles = bin_gaussians(projected.means2d, projected.radii, projected.depths, 37, 29)
    with pytest.raises(ValueError, match="rasterize expects"):
        rasterize(projected.means2d, projected.conics[:5], projected.opacities, features, tiles, 37, 29)


# ---------------------------------------------------------------- the native CPU rasterizer vs its twin

@pytest.fixture(scope="module")
def cpu_extension():
    """Built once per module (cached on disk); a build error fails, never skips, these tests."""
    from nerfkit.ops import _native_build
    return _native_build.build_cpu()


def crowded_scene(n: int, width: int, height: int, seed: int, spread: float = 1.0):
    """``n`` float32 Gaussians over a width x height camera, many overlapping; ``spread`` < 1 packs
    them into the top-left part of the image (the other tiles stay empty)."""
    generator = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=generator) - 0.5) * torch.tensor([2.0, 1.5, 1.0])
    means[:, :2] = means[:, :2] * spread - (1 - spread) * torch.tensor([1.6, 1.2])
    means[:, 2] += 3
    quats = torch.randn(n, 4, generator=generator)
    scales = torch.log(torch.rand(n, 3, generator=generator) * 0.2 * spread + 0.02)
    opacities = torch.rand(n, generator=generator) * 0.9 + 0.05
    features = torch.rand(n, 4, generator=generator)
    intrinsics = torch.tensor([0.8 * width, 0.8 * width, width / 2, height / 2])
    projected = project_gaussians(means, quats, scales, opacities, torch.eye(4), intrinsics, width, height)
    return projected, features


def _render_with_grads(fn, projected, features, width, height, tile):
    means2d, conics, opacities, feats = leaves(projected, features)
    tiles = bin_gaussians(means2d.detach(), projected.radii, projected.depths, width, height, tile)
    image, alpha = fn(means2d, conics, opacities, feats, tiles, width, height)
    generator = torch.Generator().manual_seed(2)
    g_image = torch.randn(image.shape, generator=generator)
    g_alpha = torch.randn(alpha.shape, generator=generator)
    grads = torch.autograd.grad((image * g_image).sum() + (alpha * g_alpha).sum(), [means2d, conics, opacities, feats])
    return image.detach(), alpha.detach(), grads, tiles


@pytest.mark.parametrize("n, width, height, tile, spread", [
    (60, 37, 29, 8, 1.0),          # translucent, small
    (1500, 64, 48, 8, 1.0),        # many overlapping Gaussians: long lists, pixels stop early
    (800, 61, 47, 16, 1.0),        # 16 px tiles, image not a multiple of the tile
    (400, 64, 48, 8, 0.4),         # Gaussians packed into one corner: most tiles empty
])
def test_native_rasterizer_matches_the_twin_values_and_gradients(cpu_extension, n, width, height, tile, spread):
    from nerfkit.render.splat_raster_native import rasterize_native

    def native(means2d, conics, opacities, feats, tiles, width, height):
        return rasterize_native(means2d, conics, opacities, feats, tiles.gaussian_ids, tiles.offsets, tiles.tiles_x,
                                tiles.tiles_y, tiles.tile_size, width, height)

    projected, features = crowded_scene(n, width, height, seed=n, spread=spread)
    image, alpha, grads, tiles = _render_with_grads(native, projected, features, width, height, tile)
    ref_image, ref_alpha, ref_grads, _ = _render_with_grads(rasterize_ref, projected, features, width, height, tile)
    per_tile = tiles.offsets.diff()
    if spread < 1:
        assert int((per_tile == 0).sum()) > tiles.n_tiles // 3, "the case must hold empty tiles"
    if n >= 800:
        assert float(alpha.max()) > 0.999 and int(per_tile.max()) > 100, "the case must reach the early stop"
    torch.testing.assert_close(image, ref_image, rtol=1e-4, atol=2e-5)
    torch.testing.assert_close(alpha, ref_alpha, rtol=1e-4, atol=2e-5)
    for name, got, want in zip(("means2d", "conics", "opacities", "features"), grads, ref_grads):
        scale = float(want.abs().max())
        assert scale > 0, name
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4 * scale, msg=lambda m, n=name: f"{n}: {m}")


def test_native_rasterizer_is_the_same_on_any_number_of_threads(cpu_extension):
    """Tiles run in parallel, pair gradients are summed per Gaussian in list order: bit-identical."""
    from nerfkit.render.splat_raster import rasterize
    projected, features = crowded_scene(600, 48, 40, seed=7)
    results = []
    before = torch.get_num_threads()
    try:
        for n_threads in (1, 3):
            torch.set_num_threads(n_threads)
            image, alpha, grads, _ = _render_with_grads(rasterize, projected, features, 48, 40, 8)
            results.append((image, alpha, *grads))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_native_rasterizer_agrees_with_brute_force(cpu_extension):
    projected, features = random_scene(300, 0.3, 1.0, seed=11, dtype=torch.float32)
    from nerfkit.render.splat_raster import rasterize
    means2d, conics, opacities, feats = leaves(projected, features)
    tiles = bin_gaussians(means2d.detach(), projected.radii, projected.depths, 37, 29, 8)
    image, alpha = rasterize(means2d, conics, opacities, feats, tiles, 37, 29)
    ref_image, ref_alpha = composite_brute_force(*(t.double() for t in leaves(projected, features)),
                                                 projected.depths, projected.visible, 37, 29)
    torch.testing.assert_close(image.double(), ref_image, rtol=1e-4, atol=5e-5)
    torch.testing.assert_close(alpha.double(), ref_alpha, rtol=1e-4, atol=5e-5)


def test_rasterize_dispatches_float32_cpu_to_the_kernel_and_the_rest_to_the_twin(cpu_extension, monkeypatch):
    from nerfkit.render import splat_raster
    monkeypatch.delenv("NERFKIT_NATIVE", raising=False)
    monkeypatch.delenv("NERFKIT_FORCE_REF", raising=False)
    calls = []
    original = splat_raster.rasterize_native
    monkeypatch.setattr(splat_raster, "rasterize_native", lambda *a: calls.append(1) or original(*a))
    for dtype, env, expected in ((torch.float32, None, 1), (torch.float64, None, 0), (torch.float32, "1", 0)):
        if env:
            monkeypatch.setenv("NERFKIT_FORCE_REF", env)
        projected, features = random_scene(30, 0.3, 1.0, dtype=dtype)
        tiles = bin_gaussians(projected.means2d, projected.radii, projected.depths, 37, 29)
        calls.clear()
        splat_raster.rasterize(projected.means2d, projected.conics, projected.opacities, features, tiles, 37, 29)
        assert len(calls) == expected, (dtype, env)


def test_native_rasterizer_with_no_visible_gaussians(cpu_extension):
    from nerfkit.render.splat_raster import rasterize
    projected, features = random_scene(10, 0.5, 1.0, dtype=torch.float32)
    means2d, conics, opacities, feats = leaves(projected, features)
    tiles = bin_gaussians(means2d.detach(), torch.zeros_like(projected.radii), projected.depths, 37, 29)
    image, alpha = rasterize(means2d, conics, opacities, feats, tiles, 37, 29)
    assert float(image.detach().abs().max()) == 0 and float(alpha.detach().abs().max()) == 0
    (image.sum() + alpha.sum()).backward()
    assert float(means2d.grad.abs().max()) == 0 and float(feats.grad.abs().max()) == 0
