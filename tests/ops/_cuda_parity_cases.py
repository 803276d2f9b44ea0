"""Shared parity checks: a native implementation of the four ops against their ``*_ref`` twins.

Used by test_cuda_parity.py (the CUDA kernels on a GPU) and test_cuda_host_emulation.py (the same
per-ray code compiled for the CPU). ``impl`` is any object with ``ray_aabb_intersect``,
``march_rays``, ``composite`` and ``hash_encode`` attributes taking the ``*_native`` arguments.
"""

from __future__ import annotations

import math

import torch

from nerfkit.ops import (Composited, composite_ref, hash_encode_ref, level_layout, march_rays_ref,
                         ray_aabb_intersect_ref)
from nerfkit.ops.compositing import exclusive_segment_sum, render_weights

# Compositing stops at transmittance < 1e-4 where the twin does not: outputs may differ by that much.
TERMINATION = 1e-4


# ---------------------------------------------------------------- rays and grids

def make_rays(n: int, seed: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 3) origins in [-4, 4]^3 (some inside the box, many rays miss it) and unit directions,
    with axis-aligned rays (exact zero components, -0.0 too) among them."""
    g = torch.Generator().manual_seed(seed)
    origins = torch.rand(n, 3, generator=g) * 8.0 - 4.0
    towards = torch.rand(n, 3, generator=g) * 2.4 - 1.2 - origins          # aim near the box
    directions = towards / towards.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    axes = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, -0.0], [0.0, 1.0, 0.0], [0.6, 0.0, 0.8]])
    k = min(n, 16)
    directions[:k] = axes[torch.arange(k) % 4]
    origins[:k:4, :2] = 0.25 * torch.arange(len(origins[:k:4])).unsqueeze(-1) - 0.3
    return origins.to(device), directions.to(device)


def make_grid(n_cascades: int, res: int, density: float, seed: int, device: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n_cascades, res, res, res, generator=g) < density).to(device)


def scaled_box(aabb: torch.Tensor, scale: float) -> torch.Tensor:
    centre, half = (aabb[0] + aabb[1]) * 0.5, (aabb[1] - aabb[0]) * 0.5
    return torch.stack([centre - half * scale, centre + half * scale])


def check_intersect(impl, device: str, n: int, seed: int = 0) -> None:
    origins, directions = make_rays(n, seed, device)
    aabb = torch.tensor([[-1.0, -0.5, -2.0], [1.5, 1.0, 0.5]], device=device)
    got = impl.ray_aabb_intersect(origins, directions, aabb)
    want = ray_aabb_intersect_ref(origins, directions, aabb)
    for g, w, name in zip(got, want, ("t_near", "t_far"), strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype, name
        torch.testing.assert_close(g, w, rtol=0, atol=0, equal_nan=True, msg=lambda m, n=name: f"{n}: {m}")
    if n >= 64:
        assert bool(torch.isinf(want[0]).any()) and bool(torch.isfinite(want[0]).any()), "want hits and misses"


def march_inputs(n: int, n_cascades: int, res: int, seed: int, device: str):
    origins, directions = make_rays(n, seed, device)
    aabb = torch.tensor([[-1.0, -0.75, -1.25], [1.0, 1.25, 0.75]], device=device)
    t_min, t_max = ray_aabb_intersect_ref(origins, directions, scaled_box(aabb, 2.0 ** (n_cascades - 1)))
    t_min = t_min.clamp(min=0.05)                        # a near plane, as a method would
    if n > 8:
        t_max[3] = t_min[3]                              # an empty interval
        t_min[5], t_max[5] = math.inf, math.inf          # a ray flagged as missing
    grid = make_grid(n_cascades, res, 0.35, seed + 1, device)
    return origins, directions, t_min, t_max, grid, aabb


def check_march(impl, device: str, n: int, n_cascades: int, res: int, step_size: float,
                cone_angle: float, max_samples: int, seed: int = 0) -> int:
    """Kernel and twin must keep exactly the same samples (same float32 maths). Returns S."""
    args = (*march_inputs(n, n_cascades, res, seed, device), step_size, cone_angle, max_samples)
    got = impl.march_rays(*args)
    want = march_rays_ref(*args)
    names = ("ray_indices", "t_starts", "t_ends")
    for g, w, name in zip(got, want, names, strict=True):
        assert g.dtype == w.dtype, f"{name}: {g.dtype} != {w.dtype}"
        assert g.device == w.device, name
    if not torch.equal(got[0], want[0]):
        counts_g = torch.bincount(got[0], minlength=n)
        counts_w = torch.bincount(want[0], minlength=n)
        bad = (counts_g != counts_w).nonzero().flatten()
        raise AssertionError(f"ray_indices differ: {got[0].numel()} vs {want[0].numel()} samples; "
                             f"{bad.numel()} rays with other counts, first {bad[:8].tolist()}")
    for g, w, name in zip(got[1:], want[1:], names[1:], strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0, msg=lambda m, name=name: f"{name}: {m}")
    if max_samples > 0 and want[0].numel():
        assert int(torch.bincount(want[0]).max()) <= max_samples
    return int(want[0].numel())


def check_march_boundaries(impl, device: str, cone_angle: float) -> int:
    """Samples whose midpoints land exactly on cascade and cell borders (x = -2, -1.5, -1, -0.5, 0...)
    in a checkerboard grid: the kernel must pick the same cascade and cell as the twin."""
    ys = torch.tensor([0.0, 0.5, -0.5, 1.0, -1.0, 0.25, 2.0])
    origins = torch.stack([torch.full_like(ys, -3.0), ys, ys.flip(0)], -1)
    directions = torch.tensor([[1.0, 0.0, 0.0]]).expand_as(origins).contiguous()
    t_min = torch.full_like(ys, 0.875)                   # mid_k = 1 + 0.25 k: x = -2 + 0.25 k exactly
    t_max = torch.full_like(ys, 6.0)
    idx = torch.arange(4)
    grid = ((idx.view(1, 4, 1, 1) + idx.view(1, 1, 4, 1) + idx.view(1, 1, 1, 4) + torch.arange(2).view(2, 1, 1, 1))
            % 2 == 0)
    aabb = torch.tensor([[-1.0] * 3, [1.0] * 3])
    args = [t.to(device) for t in (origins, directions, t_min, t_max, grid, aabb)]
    got = impl.march_rays(*args, 0.25, cone_angle, 0)
    want = march_rays_ref(*args, 0.25, cone_angle, 0)
    for g, w, name in zip(got, want, ("ray_indices", "t_starts", "t_ends"), strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0, msg=lambda m, n=name: f"{n}: {m}")
    return int(want[0].numel())


# ---------------------------------------------------------------- compositing

def packed_samples(n_rays: int, max_per_ray: int, density: float, seed: int, device: str):
    """Packed samples sorted by ray (some rays empty) with densities of scale ``density``."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, max_per_ray + 1, (n_rays,), generator=g)
    if n_rays > 2:
        counts[1] = 0
    n = int(counts.sum())
    ray_indices = torch.repeat_interleave(torch.arange(n_rays), counts)
    widths = torch.rand(n, generator=g) * 0.05 + 0.001
    gaps = torch.rand(n, generator=g) * 0.02
    t_starts = 0.5 + exclusive_segment_sum(widths + gaps, ray_indices, n_rays)   # per-ray, increasing
    t_ends = t_starts + widths
    sigmas = torch.rand(n, generator=g) ** 3 * density
    if n > 4:
        sigmas[::7] = 0.0
    rgbs = torch.rand(n, 3, generator=g)
    return tuple(t.to(device) for t in (sigmas, rgbs, t_starts, t_ends, ray_indices))


def composite_truncated(sigmas, rgbs, t_starts, t_ends, ray_indices, n_rays: int) -> Composited:
    """The twin with the kernels' early termination: samples with transmittance < 1e-4 weigh 0."""
    weights, transmittance = render_weights(sigmas, t_starts, t_ends, ray_indices, n_rays)
    weights = torch.where(transmittance >= TERMINATION, weights, torch.zeros_like(weights))
    rgb = torch.zeros(n_rays, 3, dtype=rgbs.dtype, device=rgbs.device)
    rgb = rgb.index_add(0, ray_indices, weights.unsqueeze(-1) * rgbs)
    zeros = torch.zeros(n_rays, dtype=weights.dtype, device=weights.device)
    depth = zeros.index_add(0, ray_indices, weights * 0.5 * (t_starts + t_ends))
    alpha = zeros.index_add(0, ray_indices, weights)
    return Composited(rgb, depth, alpha, weights)


def _composite_with_grads(fn, samples, n_rays: int, upstream, use_weights: bool):
    sigmas, rgbs, t_starts, t_ends, ray_indices = samples
    s = sigmas.clone().requires_grad_(True)
    c = rgbs.clone().requires_grad_(True)
    out = fn(s, c, t_starts, t_ends, ray_indices, n_rays)
    loss = (out.rgb * upstream[0]).sum() + (out.depth * upstream[1]).sum() + (out.alpha * upstream[2]).sum()
    if use_weights:
        loss = loss + (out.weights * upstream[3]).sum()
    if s.numel():
        loss.backward()
    return out, s.grad, c.grad


def check_composite(impl, device: str, n_rays: int, max_per_ray: int, density: float, use_weights: bool,
                    seed: int = 0) -> bool:
    """Values and gradients (sigmas, rgbs), returning whether some ray terminated early.

    1. Against the twin: within the early-termination bound (1e-4 per ray, scaled by the upstream
       gradients for the gradients) where some ray's transmittance falls below 1e-4, else tightly.
    2. Against the twin truncated like the kernel: tightly, except on rays holding a sample whose
       transmittance is within 0.1% of 1e-4 (float32 and float64 may cut them one sample apart).
    """
    samples = packed_samples(n_rays, max_per_ray, density, seed, device)
    sigmas, rgbs, t_starts, t_ends, ray_indices = samples
    g = torch.Generator().manual_seed(seed + 7)
    up = [torch.randn(n_rays, 3, generator=g), torch.randn(n_rays, generator=g),
          torch.randn(n_rays, generator=g), torch.randn(sigmas.shape[0], generator=g)]
    up = [u.to(device) for u in up]
    got, gs, gc = _composite_with_grads(impl.composite, samples, n_rays, up, use_weights)
    want, ws, wc = _composite_with_grads(composite_ref, samples, n_rays, up, use_weights)
    cut, cs, cc = _composite_with_grads(composite_truncated, samples, n_rays, up, use_weights)

    t_far = float(t_ends.max()) if t_ends.numel() else 1.0
    _, transmittance = render_weights(sigmas, t_starts, t_ends, ray_indices, n_rays)
    terminates = bool((transmittance < TERMINATION).any())
    near_cut = ((transmittance / TERMINATION - 1.0).abs() < 1e-3)
    clear_ray = torch.ones(n_rays, dtype=torch.bool, device=device)
    clear_ray[ray_indices[near_cut]] = False
    clear_sample = clear_ray[ray_indices]
    tol = TERMINATION * 1.05 + 2e-6 if terminates else 2e-6
    for name, scale in (("rgb", 1.0), ("alpha", 1.0), ("weights", 1.0), ("depth", t_far)):
        a, b, c = getattr(got, name), getattr(want, name), getattr(cut, name)
        assert a.shape == b.shape and a.dtype == b.dtype, name
        torch.testing.assert_close(a, b, rtol=1e-5, atol=tol * scale, msg=lambda m, n=name: f"{n} vs twin: {m}")
        keep = clear_sample if name == "weights" else clear_ray
        torch.testing.assert_close(a[keep], c[keep], rtol=1e-5, atol=2e-6 * scale,
                                   msg=lambda m, n=name: f"{n} vs truncated twin: {m}")
    if not sigmas.numel():
        return terminates
    g_max = float(up[0].abs().sum(-1).max() + up[1].abs().max() * t_far + up[2].abs().max()
                  + (up[3].abs().max() if use_weights else 0.0))
    delta_max = float((t_ends - t_starts).max())
    torch.testing.assert_close(gc, wc, rtol=1e-4, atol=tol * float(up[0].abs().max()) + 1e-6)
    torch.testing.assert_close(gs, ws, rtol=1e-3, atol=2 * tol * g_max * delta_max + 1e-5)
    torch.testing.assert_close(gc[clear_sample], cc[clear_sample], rtol=1e-4, atol=1e-6,
                               msg=lambda m: f"grad rgbs vs truncated twin: {m}")
    torch.testing.assert_close(gs[clear_sample], cs[clear_sample], rtol=1e-4, atol=2e-6 * g_max * delta_max,
                               msg=lambda m: f"grad sigmas vs truncated twin: {m}")
    return terminates


# ---------------------------------------------------------------- hash encoding

LAYOUTS = {   # (n_levels, log2_table_size, base_resolution, max_resolution) for level_layout
    "dense": (4, 19, 4, 16),
    "hashed": (4, 10, 16, 64),
    "mixed": (16, 14, 16, 512),
    "hashed-then-dense": None,   # custom offsets: a hashed level (17^3 > 1024 rows) before a dense one
}


def layout(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(resolutions, offsets) of a named test layout."""
    if LAYOUTS[name] is None:
        return torch.tensor([16, 4, 8], dtype=torch.int32), torch.tensor([0, 1024, 1152, 2176], dtype=torch.int32)
    return level_layout(*LAYOUTS[name])


def hash_points(n: int, seed: int, device: str) -> torch.Tensor:
    """Points in [0, 1]^3 plus borders (exactly 0 and 1) and a few outside (clamped)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g)
    if n >= 8:
        x[0] = 0.0
        x[1] = 1.0
        x[2] = torch.tensor([1.0, 0.0, 0.5])
        x[3] = torch.tensor([-0.1, 1.2, 0.5])
        x[4] = torch.tensor([0.25, 0.5, 0.75])
    return x.to(device)


def check_hash(impl, device: str, layout_name: str, n_points: int, n_features: int, seed: int = 0) -> None:
    resolutions, offsets = layout(layout_name)
    g = torch.Generator().manual_seed(seed)
    table = (torch.rand(int(offsets[-1]), n_features, generator=g) * 2 - 1).to(device)
    x = hash_points(n_points, seed + 1, device)
    grad_out = torch.randn(n_points, len(resolutions) * n_features, generator=g).to(device)
    results = []
    for fn in (impl.hash_encode, hash_encode_ref):
        t = table.clone().requires_grad_(True)
        out = fn(x, t, offsets.to(device), resolutions.to(device))
        (out * grad_out).sum().backward()
        results.append((out, t.grad))
    (got, g_grad), (want, w_grad) = results
    assert got.shape == want.shape == (n_points, len(resolutions) * n_features)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_grad, w_grad, rtol=1e-4, atol=1e-5)
