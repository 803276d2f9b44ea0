"""Splat files for the web (issue 20): SuperSplat's compressed .ply, the .splat of the web viewers and
Niantic's .spz round-trip through our readers within their quantisation steps, agree with an
independent reader (gsply, when installed), and render like the Gaussians they hold; `nerfkit
export splat` writes each with --min-opacity, --crop and --sh-degree, and refuses bad combinations
in one sentence."""

from __future__ import annotations

import gzip
import math
import struct

import numpy as np
import pytest
import torch

from nerfkit.cli import main
from nerfkit.core.errors import NerfkitError
from nerfkit.export.splat_compressed import CHUNK, morton_order
from nerfkit.export.splat_files import clean_gaussians, read_splat_file, write_splat_file
from nerfkit.export.splat_ply import read_splat_ply
from nerfkit.image.metrics import psnr
from nerfkit.render.spherical_harmonics import SH_C0
from nerfkit.render.splat import RasterSettings, render_gaussians


def _gaussians(count: int = 700, degree: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """A blob of Gaussians in front of the camera of :func:`_render`, with realistic values."""
    generator = torch.Generator().manual_seed(seed)
    rgb = torch.rand(count, 3, generator=generator) * 0.9 + 0.05
    return {"means": torch.randn(count, 3, generator=generator) * 0.6,
            "quats": torch.randn(count, 4, generator=generator),
            "scales": torch.rand(count, 3, generator=generator) * 2.0 - 4.5,
            "opacities": torch.randn(count, generator=generator) * 2.0,
            "sh0": ((rgb - 0.5) / SH_C0).reshape(count, 1, 3),
            "shN": (torch.rand(count, (degree + 1) ** 2 - 1, 3, generator=generator) - 0.5) * 0.4}


def _render(gaussians: dict[str, torch.Tensor], size: int = 64) -> torch.Tensor:
    c2w = torch.eye(4)
    c2w[2, 3] = -4.0                                      # looking down +z at the origin (OpenCV axes)
    intrinsics = torch.tensor([size * 1.2, size * 1.2, size / 2, size / 2])
    degree = math.isqrt(gaussians["shN"].shape[1] + 1) - 1
    out = render_gaussians(gaussians, c2w, intrinsics, size, size, torch.ones(3), degree,
                           RasterSettings(backend="nerfkit"))
    return out["rgb"].clamp(0, 1)


def _unit(quats: torch.Tensor) -> torch.Tensor:
    return quats / quats.norm(dim=-1, keepdim=True)


def _assert_close(read: dict, original: dict, means: float, scales: float, rotation: float, opacity: float,
                  colour: float, sh: float | None) -> None:
    assert (read["means"] - original["means"]).abs().max() <= means
    assert (read["scales"] - original["scales"]).abs().max() <= scales
    assert 1 - (_unit(read["quats"]) * _unit(original["quats"])).sum(-1).abs().min() <= rotation
    assert (torch.sigmoid(read["opacities"]) - torch.sigmoid(original["opacities"])).abs().max() <= opacity
    assert ((read["sh0"] - original["sh0"]) * SH_C0).abs().max() <= colour          # in colour units
    if sh is not None:
        assert read["shN"].shape == original["shN"].shape
        assert (read["shN"] - original["shN"]).abs().max() <= sh


def test_compressed_ply_round_trips_within_its_quantisation(tmp_path):
    g = _gaussians(count=3 * CHUNK + 17)                   # several chunks, the last one partial
    path = tmp_path / "scene.compressed.ply"
    write_splat_file(path, g, "compressed")
    read = read_splat_file(path)
    order = torch.from_numpy(morton_order(g["means"].numpy()))
    original = {key: value[order] for key, value in g.items()}
    extent = float(g["means"].max() - g["means"].min())
    _assert_close(read, original, means=extent / 1023, scales=2.0 / 1023 + 1e-5, rotation=1e-4,
                  opacity=0.5 / 255 + 1e-6, colour=0.5 / 255 + 1e-6, sh=8 / 256)
    assert path.stat().st_size < 0.3 * (len(g["means"]) * 62 * 4)              # vs the standard .ply
    assert psnr(_render(read), _render(g)) > 40


def test_splat_round_trips_base_colours(tmp_path):
    g = _gaussians(degree=0)
    path = tmp_path / "scene.splat"
    write_splat_file(path, g)
    assert path.stat().st_size == 32 * len(g["means"])
    read = read_splat_file(path)
    order = torch.argsort(-(g["scales"].double().sum(1).exp() * torch.sigmoid(g["opacities"])), stable=True)
    original = {key: value[order] for key, value in g.items()}
    assert torch.equal(read["means"], original["means"])
    _assert_close(read, original, means=0, scales=1e-5, rotation=2e-4, opacity=0.5 / 255 + 1e-6,
                  colour=0.5 / 255 + 1e-6, sh=None)
    assert read["shN"].shape == (len(g["means"]), 0, 3)
    assert psnr(_render(read), _render(g)) > 35


def test_spz_round_trips_and_keeps_the_ply_axes(tmp_path):
    g = _gaussians()
    path = tmp_path / "scene.spz"
    write_splat_file(path, g)
    header = struct.unpack("<IIIBBBB", gzip.decompress(path.read_bytes())[:16])
    assert header[:5] == (0x5053474E, 3, len(g["means"]), 3, 12)
    read = read_splat_file(path)
    _assert_close(read, g, means=0.5 / 4096 + 1e-6, scales=1 / 32 + 1e-5, rotation=2e-5,
                  opacity=0.5 / 255 + 1e-6, colour=0.5 / 255 / 0.15 * SH_C0 + 1e-6, sh=(8 + 1) / 128)
    assert psnr(_render(read), _render(g)) > 35


def test_an_independent_reader_agrees(tmp_path):
    gsply = pytest.importorskip("gsply", reason="gsply (an independent splat reader) is not installed")
    g = _gaussians()
    write_splat_file(tmp_path / "a.compressed.ply", g, "compressed")
    write_splat_file(tmp_path / "a.spz", g)
    ours = read_splat_file(tmp_path / "a.compressed.ply")
    theirs = gsply.plyread(str(tmp_path / "a.compressed.ply"))
    flip = np.array([1.0, 1.0, 1.0])
    for label, data, mine in [("compressed", theirs, ours),
                              ("spz", gsply.read_spz(str(tmp_path / "a.spz")), read_splat_file(tmp_path / "a.spz"))]:
        if label == "spz":                                  # spz is stored RUB; ours reads it back as RDF
            flip = np.array([1.0, -1.0, -1.0])
        np.testing.assert_allclose(np.asarray(data.means) * flip, mine["means"].numpy(), atol=1e-5, err_msg=label)
        np.testing.assert_allclose(np.asarray(data.scales), mine["scales"].numpy(), atol=1e-5, err_msg=label)
        opacity = 1 / (1 + np.exp(-np.asarray(data.opacities, dtype=np.float64)))    # logit clamps differ at 0 and 1
        np.testing.assert_allclose(opacity, torch.sigmoid(mine["opacities"].double()).numpy(), atol=1e-4,
                                   err_msg=label)
        np.testing.assert_allclose(np.asarray(data.sh0).reshape(-1, 3), mine["sh0"].numpy().reshape(-1, 3),
                                   atol=1e-5, err_msg=label)
        if label == "compressed":                           # same axes: every band compares directly
            np.testing.assert_allclose(np.asarray(data.shN), mine["shN"].numpy(), atol=1e-5, err_msg=label)
            q = np.asarray(data.quats)
            q = q / np.linalg.norm(q, axis=1, keepdims=True)
            assert np.abs((q * _unit(mine["quats"]).numpy()).sum(1)).min() > 1 - 1e-5


def test_clean_gaussians_thresholds_crops_and_drops_bands():
    g = _gaussians()
    kept = clean_gaussians(g, min_opacity=0.5, crop=(-0.5, -0.5, -0.5, 0.5, 0.5, 0.5), sh_degree=1)
    inside = ((g["means"] >= -0.5) & (g["means"] <= 0.5)).all(-1) & (torch.sigmoid(g["opacities"]) >= 0.5)
    assert 0 < int(inside.sum()) < len(inside)
    assert torch.equal(kept["means"], g["means"][inside]) and kept["shN"].shape[1] == 3
    assert torch.equal(kept["shN"], g["shN"][inside][:, :3])
    for bad in [dict(min_opacity=1.5), dict(crop=(1, 0, 0, 0, 1, 1)), dict(sh_degree=4)]:
        with pytest.raises(NerfkitError):
            clean_gaussians(g, **bad)


def test_corrupt_files_are_one_sentence(tmp_path):
    (tmp_path / "a.splat").write_bytes(b"\x00" * 33)
    (tmp_path / "a.spz").write_bytes(b"not gzip")
    (tmp_path / "b.spz").write_bytes(gzip.compress(b"\x00" * 40))
    (tmp_path / "a.xyz").write_bytes(b"")
    for name, words in [("a.splat", "32-byte rows"), ("a.spz", "corrupt"), ("b.spz", "magic"),
                        ("a.xyz", "extension"), ("missing.ply", "does not exist")]:
        with pytest.raises(NerfkitError, match=words):
            read_splat_file(tmp_path / name)


# --- the command ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def splat_run(tiny_demo, tmp_path_factory):
    from nerfkit.core.settings import apply_overrides
    from nerfkit.methods.splat_config import SplatConfig
    from nerfkit.runs.config import RunConfig, TrainConfig
    from nerfkit.runs.session import start_run

    method = apply_overrides(SplatConfig(), {"init_points": 400, "init_from_views": False,
                                             "sh_degree_interval": 1, "refine_start": 1000}, "test")
    train = TrainConfig(scene=str(tiny_demo), output_dir=str(tmp_path_factory.mktemp("runs")), max_steps=4,
                        method="splat", threads=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NERFKIT_COMPILE", "0")
        trainer = start_run(RunConfig(train, method), log=lambda line: None)
        for _ in range(4):
            trainer.step()
        trainer.save()
    return trainer.run_dir


def test_export_writes_each_format_with_the_clean_ups(splat_run, tmp_path, capsys):
    standard = tmp_path / "all.ply"
    assert main(["export", "splat", str(splat_run), "-o", str(standard)]) == 0
    everything = read_splat_ply(standard)
    low, high = everything["means"].quantile(0.1, dim=0), everything["means"].quantile(0.9, dim=0)
    box = [*low.tolist(), *high.tolist()]
    threshold = float(torch.sigmoid(everything["opacities"]).median())
    expected = clean_gaussians(everything, threshold, box, 1)
    assert 0 < len(expected["means"]) < len(everything["means"])
    for name, extra in [("kept.ply", []), ("kept.compressed.ply", ["--format", "compressed"]),
                        ("kept.spz", []), ("kept.splat", ["--sh-degree", "0"])]:
        args = ["export", "splat", str(splat_run), "-o", str(tmp_path / name), "--min-opacity", repr(threshold),
                "--crop", *map(str, box), *extra]
        if name != "kept.splat":
            args += ["--sh-degree", "1"]
        assert main(args) == 0, name
        assert "dropped" in capsys.readouterr().out
        read = read_splat_file(tmp_path / name)
        assert len(read["means"]) == len(expected["means"]), name
        assert read["shN"].shape[1] == (0 if name.endswith(".splat") else 3), name
        if name == "kept.ply":
            assert all(torch.equal(read[key], expected[key]) for key in expected)
        else:                                                 # the same Gaussians, in some order
            ours = np.sort(read["means"].numpy(), axis=0)
            assert np.abs(ours - np.sort(expected["means"].numpy(), axis=0)).max() < 3e-3, name   # 10-bit steps
    assert main(["export", "splat", str(splat_run), "--format", "compressed"]) == 0
    assert "splat.compressed.ply" in capsys.readouterr().out
    assert (splat_run / "exports" / "splat.compressed.ply").is_file()


@pytest.mark.parametrize("extra, words", [
    (["-o", "x.spz", "--format", "compressed"], ["--format compressed", ".spz"]),
    (["-o", "x.splat", "--sh-degree", "2"], ["--sh-degree 2", "base colours"]),
    (["-o", "x.ply", "--format", "tiny"], ["--format must be one of"]),
    (["-o", "x.ply", "--sh-degree", "7"], ["--sh-degree 7", "expected 0.."]),
    (["-o", "x.ply", "--min-opacity", "2"], ["--min-opacity"]),
    (["-o", "x.ply", "--crop", "1", "1", "1", "0", "0", "0"], ["--crop"]),
    (["-o", "x.obj"], ["'.obj'", ".spz"]),
])
def test_bad_combinations_are_one_sentence(splat_run, tmp_path, capsys, extra, words):
    extra = [str(tmp_path / item) if item.startswith("x.") else item for item in extra]
    code = main(["export", "splat", str(splat_run), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("nerfkit: error: ") and "\n" not in err, err
    for word in words:
        assert word in err, (word, err)
    assert not list(tmp_path.iterdir())
