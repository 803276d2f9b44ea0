"""Throughput of nerfkit's native kernels (CUDA or CPU) against their PyTorch twins (and nerfacc /
tiny-cuda-nn when importable on CUDA), as a markdown table.

    python bench/bench_kernels.py                 # CUDA when present, else the CPU extension
    python bench/bench_kernels.py --device cpu    # the g++/OpenMP build of the same sources
    python bench/bench_kernels.py --quick         # 16x smaller, for a smoke run

Realistic sizes are 2^18 rays, 2^21 samples, 2^21 points x 16 levels on CUDA and 16x fewer on the
CPU (``--quick`` divides by 16 again). Times are the median of calls after a warm-up (CUDA events
on the GPU, ``perf_counter`` on the CPU); "fwd+bwd" includes the backward. Each row prints the
work it did (rays, samples, points), so "same work" is visible. The end-to-end training benchmark
is a separate script.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import torch

from nerfkit.ops import (
    composite_ref,
    hash_encode_position_grad_ref,
    hash_encode_ref,
    level_layout,
    march_rays_ref,
    ray_aabb_intersect_ref,
)


@dataclass
class Row:
    op: str
    size: str
    impl: str
    ms: float | None       # None: failed (see note)
    items: int             # work items per call, for the throughput column
    unit: str
    note: str = ""


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_ms(fn: Callable[[], object], device: str, repeat: int, budget_s: float = 2.0) -> float:
    """Median milliseconds per call of ``fn``.

    One warm-up call, then ``repeat`` timings (fewer for slow calls), each over enough back-to-back
    calls to last about 2 ms (so one CUDA event pair or ``perf_counter`` pair spans many launches
    of a fast kernel, not its launch latency).
    """
    import time
    fn()
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    calls = max(1, min(1000, math.ceil(2e-3 / max(time.perf_counter() - t0, 1e-7))))
    times = []
    for _ in range(repeat):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(calls):
                fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / calls)
        else:
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            times.append((time.perf_counter() - t0) * 1e3 / calls)
        if sum(times) * calls > budget_s * 1e3:
            break
    return statistics.median(times)


def _measure(rows: list[Row], op: str, size: str, impl: str, fn: Callable[[], object], items: int, unit: str,
             device: str, repeat: int) -> None:
    try:
        rows.append(Row(op, size, impl, time_ms(fn, device, repeat), items, unit))
    except Exception as error:  # noqa: BLE001 - a failing peer (OOM, API drift) is a table entry, not a crash
        rows.append(Row(op, size, impl, None, items, unit, f"{type(error).__name__}: {str(error)[:60]}"))
    finally:
        if device == "cuda":
            torch.cuda.empty_cache()


# ---------------------------------------------------------------- inputs

def _rays(n: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays from a sphere of radius 3 towards the unit box, like cameras around an object."""
    g = torch.Generator().manual_seed(0)
    origins = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * 3.0
    target = (torch.rand(n, 3, generator=g) * 2 - 1) * 0.8
    directions = torch.nn.functional.normalize(target - origins, dim=-1)
    return origins.to(device), directions.to(device)


def _sphere_grid(n_cascades: int, res: int, device: str) -> torch.Tensor:
    """Occupancy of a shell of radius 0.5..0.8 in cascade 0 (a plausible trained grid), empty elsewhere."""
    axis = (torch.arange(res, device=device) + 0.5) / res * 2 - 1
    r = torch.sqrt(axis.view(-1, 1, 1) ** 2 + axis.view(1, -1, 1) ** 2 + axis.view(1, 1, -1) ** 2)
    grid = torch.zeros(n_cascades, res, res, res, dtype=torch.bool, device=device)
    grid[0] = (r > 0.5) & (r < 0.8)
    return grid


def _packed(n_rays: int, n_samples: int, device: str):
    g = torch.Generator().manual_seed(1)
    ray_indices = torch.sort(torch.randint(0, n_rays, (n_samples,), generator=g)).values
    t_starts = torch.rand(n_samples, generator=g) * 4.0
    order = torch.argsort(ray_indices * 8.0 + t_starts)   # increasing t within each ray
    t_starts = t_starts[order]
    t_ends = t_starts + 0.01
    sigmas = torch.rand(n_samples, generator=g) * 50.0
    rgbs = torch.rand(n_samples, 3, generator=g)
    return [t.to(device) for t in (sigmas, rgbs, t_starts, t_ends, ray_indices)]


# ---------------------------------------------------------------- benchmarks

def bench_marching(rows, device, n_rays, repeat, native):
    origins, directions = _rays(n_rays, device)
    n_cascades, res = 4, 128
    aabb = torch.tensor([[-1.0] * 3, [1.0] * 3], device=device)
    grid = _sphere_grid(n_cascades, res, device)
    outer = aabb * 2.0 ** (n_cascades - 1)
    size = f"{n_rays} rays"
    impls = {"twin": (ray_aabb_intersect_ref, march_rays_ref)}
    if native is not None:
        impls["kernel"] = (native.ray_aabb_intersect_native, native.march_rays_native)
    for name, (intersect, _) in impls.items():
        _measure(rows, "ray_aabb_intersect", size, name, lambda f=intersect: f(origins, directions, aabb),
                 n_rays, "rays", device, repeat)
    nerfacc = _try_import("nerfacc")
    if nerfacc is not None:
        aabbs = aabb.reshape(1, 6)
        _measure(rows, "ray_aabb_intersect", size, "nerfacc",
                 lambda: nerfacc.ray_aabb_intersect(origins, directions, aabbs), n_rays, "rays", device, repeat)
    t_min, t_max = ray_aabb_intersect_ref(origins, directions, outer)
    step = math.sqrt(3) * 2 / 1024
    for cone in (0.0, 1 / 256):
        size = f"{n_rays} rays, {n_cascades}x{res}^3, cone {cone:g}"
        n_samples = int(march_rays_ref(origins[:4096], directions[:4096], t_min[:4096], t_max[:4096], grid, aabb,
                                       step, cone, 1024)[0].numel() * n_rays / min(n_rays, 4096))
        for name, (_, march) in impls.items():
            _measure(rows, "march_rays", size, name,
                     lambda f=march, c=cone: f(origins, directions, t_min, t_max, grid, aabb, step, c, 1024),
                     n_samples, "samples", device, repeat)
        if nerfacc is not None:
            def nerfacc_march(cone_angle: float):
                est = nerfacc.OccGridEstimator(roi_aabb=aabb.flatten(), resolution=res, levels=n_cascades)
                est = est.to(device)
                est.binaries = grid
                return lambda: est.sampling(origins, directions, render_step_size=step, cone_angle=cone_angle,
                                            near_plane=0.0)
            try:
                fn = nerfacc_march(cone)
            except Exception as error:  # noqa: BLE001
                rows.append(Row("march_rays", size, "nerfacc", None, n_samples, "samples", str(error)[:60]))
            else:
                _measure(rows, "march_rays", size, "nerfacc", fn, n_samples, "samples", device, repeat)


def bench_compositing(rows, device, n_rays, n_samples, repeat, native):
    sigmas, rgbs, t_starts, t_ends, ray_indices = _packed(n_rays, n_samples, device)
    size = f"{n_samples} samples, {n_rays} rays"

    def fwd_bwd(fn):
        def run():
            s, c = sigmas.detach().requires_grad_(True), rgbs.detach().requires_grad_(True)
            out = fn(s, c, t_starts, t_ends, ray_indices, n_rays)
            (out.rgb.sum() + out.depth.sum() + out.alpha.sum()).backward()
        return run

    impls = {"twin": composite_ref}
    if native is not None:
        impls["kernel"] = native.composite_native
    for name, fn in impls.items():
        _measure(rows, "composite fwd+bwd", size, name, fwd_bwd(fn), n_samples, "samples", device, repeat)
    nerfacc = _try_import("nerfacc")
    if nerfacc is not None:
        def nerfacc_composite(s, c, t0, t1, ri, n):
            weights, _, _ = nerfacc.render_weight_from_density(t0, t1, s, ray_indices=ri, n_rays=n)
            rgb = nerfacc.accumulate_along_rays(weights, c, ray_indices=ri, n_rays=n)
            depth = nerfacc.accumulate_along_rays(weights, ((t0 + t1) / 2)[:, None], ray_indices=ri, n_rays=n)
            alpha = nerfacc.accumulate_along_rays(weights, None, ray_indices=ri, n_rays=n)
            return SimpleNamespace(rgb=rgb, depth=depth, alpha=alpha)
        _measure(rows, "composite fwd+bwd", size, "nerfacc", fwd_bwd(nerfacc_composite), n_samples, "samples",
                 device, repeat)


def bench_hash(rows, device, n_points, repeat, native):
    n_levels, log2_size, base, finest = 16, 19, 16, 2048
    resolutions, offsets = level_layout(n_levels, log2_size, base, finest)
    table = (torch.rand(int(offsets[-1]), 2, device=device) * 2 - 1) * 1e-4
    x = torch.rand(n_points, 3, device=device)
    size = f"{n_points} pts x {n_levels} levels, 2^{log2_size}"

    def fwd_bwd(fn):
        def run():
            t = table.detach().requires_grad_(True)
            fn(x, t, offsets, resolutions).sum().backward()
        return run

    impls = {"twin": hash_encode_ref}
    if native is not None:
        impls["kernel"] = native.hash_encode_native
    for name, fn in impls.items():
        _measure(rows, "hash_encode fwd+bwd", size, name, fwd_bwd(fn), n_points, "points", device, repeat)
    grad_out = torch.randn(n_points, 2 * n_levels, device=device)
    if device == "cpu" and native is not None:
        # The CPU table-gradient scatter strategies (cuda/cpu_hash.cpp), on the backward alone.
        from nerfkit.ops import _native_build
        ext = _native_build.build("cpu")
        for code, label in ((0, "kernel, auto (level split)"), (1, "kernel, private partials"), (2, "kernel, atomics")):
            _measure(rows, "hash table gradient", size, label,
                     lambda c=code: ext.hash_encode_bwd(x, grad_out, offsets, resolutions, int(offsets[-1]), 2, c),
                     n_points, "points", device, repeat)

    def position_grad(fn):
        def run():
            t, g = table.detach().requires_grad_(True), grad_out.detach().requires_grad_(True)
            fn(x, t, g, offsets, resolutions).square().sum().backward()
        return run

    impls = {"twin": hash_encode_position_grad_ref}
    if native is not None:
        impls["kernel"] = native.hash_encode_position_grad_native
    for name, fn in impls.items():
        _measure(rows, "hash position grad fwd+bwd", size, name, position_grad(fn), n_points, "points", device,
                 repeat)
    tcnn = _try_import("tinycudann")
    if tcnn is not None and device == "cuda":
        try:
            encoding = tcnn.Encoding(3, {"otype": "HashGrid", "n_levels": n_levels, "n_features_per_level": 2,
                                         "log2_hashmap_size": log2_size, "base_resolution": base,
                                         "per_level_scale": math.exp(math.log(finest / base) / (n_levels - 1))})
        except Exception as error:  # noqa: BLE001
            rows.append(Row("hash_encode fwd+bwd", size, "tiny-cuda-nn", None, n_points, "points", str(error)[:60]))
        else:
            _measure(rows, "hash_encode fwd+bwd", size, "tiny-cuda-nn (fp16 params)",
                     lambda: encoding(x).float().sum().backward(), n_points, "points", device, repeat)


def bench_rasterizer(rows, device, n_gaussians, repeat):
    """The splat tile rasterizer, forward + backward, at 400 x 400 px (CPU: the native kernel)."""
    if device != "cpu":
        return
    from nerfkit.render.splat_raster import bin_gaussians, rasterize, rasterize_ref
    g = torch.Generator().manual_seed(2)
    width = height = 400
    means2d = torch.rand(n_gaussians, 2, generator=g) * torch.tensor([width, height])
    scale = torch.rand(n_gaussians, generator=g) * 4 + 1                     # 1..5 px standard deviation
    conics = torch.stack([1 / scale ** 2, torch.zeros_like(scale), 1 / scale ** 2], dim=-1)
    radii = (3 * scale).ceil().int()[:, None].expand(-1, 2).contiguous()
    opacities = torch.rand(n_gaussians, generator=g) * 0.9
    features = torch.rand(n_gaussians, 4, generator=g)
    tiles = bin_gaussians(means2d, radii, torch.rand(n_gaussians, generator=g), width, height)
    size = f"{n_gaussians} Gaussians, {width}x{height} px, {int(tiles.gaussian_ids.numel())} tile entries"

    def fwd_bwd(fn):
        def run():
            inputs = [t.detach().requires_grad_(True) for t in (means2d, conics, opacities, features)]
            image, alpha = fn(*inputs, tiles, width, height)
            (image.sum() + alpha.sum()).backward()
        return run

    for name, fn in (("twin", rasterize_ref), ("kernel", rasterize)):
        _measure(rows, "rasterize fwd+bwd", size, name, fwd_bwd(fn), width * height, "pixels", device, repeat)


def _try_import(name: str):
    try:
        return __import__(name)
    except Exception:  # noqa: BLE001 - ImportError, or a broken install of an optional peer
        return None


# ---------------------------------------------------------------- table

def run(device: str, quick: bool, repeat: int) -> list[Row]:
    from nerfkit.ops import _native, _native_build
    _native_build.build(device)
    native = _native
    scale = (16 if quick else 1) * (16 if device == "cpu" else 1)
    rows: list[Row] = []
    bench_marching(rows, device, (1 << 18) // scale, repeat, native)
    bench_compositing(rows, device, (1 << 18) // scale, (1 << 21) // scale, repeat, native)
    bench_hash(rows, device, (1 << 21) // scale, repeat, native)
    bench_rasterizer(rows, device, (1 << 16) // (16 if quick else 1), repeat)
    return rows


def markdown(rows: list[Row]) -> str:
    lines = ["| op | size | impl | work / call | ms / call | throughput | vs twin |",
             "|---|---|---|---:|---:|---:|---:|"]
    twin_ms = {(r.op, r.size): r.ms for r in rows if r.impl == "twin" and r.ms}
    for r in rows:
        if r.ms is None:
            lines.append(f"| {r.op} | {r.size} | {r.impl} | {r.items:,} {r.unit} | failed | {r.note} | |")
            continue
        rate = r.items / (r.ms * 1e-3)
        base = twin_ms.get((r.op, r.size))
        speedup = f"{base / r.ms:.1f}x" if base else ""
        lines.append(f"| {r.op} | {r.size} | {r.impl} | {r.items:,} {r.unit} | {r.ms:.3f} | "
                     f"{rate / 1e6:.2f} M {r.unit}/s | {speedup} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16x smaller sizes")
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per entry (fewer for slow ones)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("bench_kernels: --device cuda needs a CUDA GPU (torch.cuda.is_available() is False).")
        return 2
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}, torch {torch.__version__}\n")
    print(markdown(run(device, args.quick, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
