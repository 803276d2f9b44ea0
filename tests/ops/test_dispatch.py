"""Which implementation an op runs: NERFKIT_NATIVE=auto (default) / 1 / 0 and NERFKIT_FORCE_REF=1
pick what they say per backend, and a backend whose build fails falls back to the twins with
exactly one warning."""

from __future__ import annotations

import warnings

import pytest
import torch

import _cuda_parity_cases as cases  # noqa: I001 - tests/ops helper, put on sys.path by conftest.py
from nerfkit.core.errors import NerfkitError
from nerfkit.ops import _backend, _native, composite, composite_ref, hash_encode, hash_encode_ref, march_rays
from nerfkit.ops import march_rays_ref, ray_aabb_intersect
from nerfkit.ops._flags import native_enabled, native_mode


@pytest.mark.parametrize("value,cpu,cuda", [(None, True, False), ("auto", True, False), ("1", True, True),
                                            ("0", False, False), (" AUTO ", True, False)])
def test_native_mode_per_backend(native_env, value, cpu, cuda):
    if value is not None:
        native_env.setenv("NERFKIT_NATIVE", value)
    assert (native_enabled("cpu"), native_enabled("cuda"), native_enabled("mps")) == (cpu, cuda, False)
    native_env.setenv("NERFKIT_FORCE_REF", "1")
    assert not native_enabled("cpu") and not native_enabled("cuda")


def test_a_bad_native_mode_is_a_nerfkit_error(native_env):
    native_env.setenv("NERFKIT_NATIVE", "yes")
    with pytest.raises(NerfkitError, match="NERFKIT_NATIVE must be 0, 1 or auto, got 'yes'"):
        native_mode()


def test_mixed_devices_and_other_backends_take_the_twin():
    assert _backend.backend_of(torch.zeros(2)) == "cpu"
    assert _backend.backend_of() is None
    assert _backend.backend_of(torch.zeros(2, device="meta")) is None
    assert _backend.backend_of(torch.zeros(2), torch.zeros(2, device="meta")) is None


def _spy(monkeypatch, name: str) -> list[int]:
    calls: list[int] = []
    original = getattr(_native, name)

    def wrapper(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(_native, name, wrapper)
    return calls


@pytest.mark.parametrize("env,expect_native", [({}, True), ({"NERFKIT_NATIVE": "1"}, True),
                                               ({"NERFKIT_NATIVE": "0"}, False),
                                               ({"NERFKIT_NATIVE": "1", "NERFKIT_FORCE_REF": "1"}, False)])
def test_public_ops_on_cpu_tensors_follow_the_switches(cpu_extension, native_env, env, expect_native):
    for key, value in env.items():
        native_env.setenv(key, value)
    names = ("hash_encode_native", "composite_native", "march_rays_native", "ray_aabb_intersect_native")
    calls = {name: _spy(native_env, name) for name in names}
    resolutions, offsets = cases.layout("mixed")
    table = torch.rand(int(offsets[-1]), 2)
    x = cases.hash_points(50, 0, "cpu")
    out = hash_encode(x, table, offsets, resolutions)
    torch.testing.assert_close(out, hash_encode_ref(x, table, offsets, resolutions), rtol=1e-5, atol=1e-6)
    samples = cases.packed_samples(16, 8, 5.0, 0, "cpu")
    composite(*samples, 16)
    args = cases.march_inputs(64, 2, 16, 0, "cpu")
    ray_aabb_intersect(*args[:2], args[5])
    march_rays(*args, 0.01, 0.0, 64)
    assert {name: len(c) for name, c in calls.items()} == {name: int(expect_native) for name in names}


def test_a_failed_build_falls_back_to_the_twins_with_one_warning(monkeypatch):
    """No compiler (the build raises): every op still works, through the twins, and the CPU backend
    warns once for the whole process, not once per call."""
    from nerfkit.ops import _native_build
    from nerfkit.render.splat_raster import bin_gaussians, rasterize, rasterize_ref

    def no_compiler(device_type, verbose=False):
        raise RuntimeError("Error building extension: c++: command not found")

    monkeypatch.delenv("NERFKIT_NATIVE", raising=False)
    monkeypatch.delenv("NERFKIT_FORCE_REF", raising=False)
    monkeypatch.setattr(_native_build, "build", no_compiler)
    _backend.load_native.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            resolutions, offsets = cases.layout("mixed")
            table = torch.rand(int(offsets[-1]), 2)
            x = cases.hash_points(40, 0, "cpu")
            samples = cases.packed_samples(16, 8, 5.0, 0, "cpu")
            args = cases.march_inputs(64, 2, 16, 0, "cpu")
            means2d = torch.rand(20, 2) * 30
            conics = torch.tensor([[0.2, 0.0, 0.2]]).repeat(20, 1)
            opacities, features = torch.full((20,), 0.5), torch.rand(20, 4)
            tiles = bin_gaussians(means2d, torch.full((20, 2), 6.0), torch.rand(20), 32, 24, 8)
            for _ in range(3):
                assert torch.equal(hash_encode(x, table, offsets, resolutions),
                                   hash_encode_ref(x, table, offsets, resolutions))
                assert torch.equal(composite(*samples, 16).rgb, composite_ref(*samples, 16).rgb)
                for a, b in zip(march_rays(*args, 0.01, 0.0, 64), march_rays_ref(*args, 0.01, 0.0, 64), strict=True):
                    assert torch.equal(a, b)
                image, _ = rasterize(means2d, conics, opacities, features, tiles, 32, 24)
                assert torch.equal(image, rasterize_ref(means2d, conics, opacities, features, tiles, 32, 24)[0])
        messages = [str(w.message) for w in caught if "kernels unavailable" in str(w.message)]
        assert len(messages) == 1, messages
        assert "CPU kernels unavailable, using the PyTorch twins" in messages[0]
        assert "command not found" in messages[0]
    finally:
        _backend.load_native.cache_clear()          # the next test loads the real extension again


def test_a_lock_left_by_a_killed_build_is_cleared_and_a_live_one_kept(tmp_path, monkeypatch):
    """torch waits for ever on a build folder's ``lock``; a killed build leaves one behind."""
    import os
    import time

    from nerfkit.ops import _native_build

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    name = "nerfkit_cpu_test"
    now = time.time()
    for folder, age in ((name, 3600.0), (f"{name}_v1", 60.0), ("other_ext", 3600.0)):
        (tmp_path / folder).mkdir()
        for entry in ("lock", "cpu_ext.o"):
            (tmp_path / folder / entry).touch()
            os.utime(tmp_path / folder / entry, (now - age, now - age))
    with pytest.warns(UserWarning, match="removed the build lock .*nerfkit_cpu_test/lock: its folder had not changed "
                                         "for 60 minutes"):
        removed = _native_build.clear_stale_build_locks(name, now=now)
    assert removed == [tmp_path / name / "lock"]
    assert (tmp_path / f"{name}_v1" / "lock").exists()        # a build still writing: left alone
    assert (tmp_path / "other_ext" / "lock").exists()         # not ours
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _native_build.clear_stale_build_locks(name, now=now) == []
