"""LPIPS (issue 20) from weights made here in the exact formats of the published files (torchvision's
AlexNet / VGG-16 state dicts, the lpips package's linear layers): 0 for identical images, growing
with noise, equal to a direct re-implementation of the formula on the same weights; cleanly reported
absent (one line) without weights, in `nerfkit eval` and in the final metrics.json of a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nerfkit.image.lpips import (
    BACKBONE_FILES,
    LINEAR_FILES,
    LPIPS,
    find_weights,
    layer_channels,
    load_lpips,
)

# torchvision's conv layers: features index -> (out, in, kernel)
ALEX_CONVS = {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)}
VGG_CONVS = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256),
             14: (256, 256), 17: (512, 256), 19: (512, 512), 21: (512, 512), 24: (512, 512), 26: (512, 512),
             28: (512, 512)}


def _backbone(net: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision-format state dict (features and classifier) with random weights."""
    generator = torch.Generator().manual_seed(seed)
    convs = ALEX_CONVS if net == "alex" else {i: (o, c, 3) for i, (o, c) in VGG_CONVS.items()}
    state = {}
    for index, (out, channels, kernel) in convs.items():
        fan_in = channels * kernel * kernel
        state[f"features.{index}.weight"] = torch.randn(out, channels, kernel, kernel, generator=generator) * (2 / fan_in) ** 0.5
        state[f"features.{index}.bias"] = torch.randn(out, generator=generator) * 0.01
    state["classifier.1.weight"] = torch.randn(8, 4, generator=generator)    # present in the real files
    state["classifier.1.bias"] = torch.zeros(8)
    return state


def _linear(net: str, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=generator)
            for i, c in enumerate(layer_channels(net))}


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lpips-weights")
    for net in ("alex", "vgg"):
        torch.save(_backbone(net), folder / BACKBONE_FILES[net])
        torch.save(_linear(net), folder / LINEAR_FILES[net])
    return folder


@pytest.fixture
def no_hub_cache(tmp_path, monkeypatch):
    """An empty torch hub cache and no installed lpips package: nothing to find but what a test gives."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr("nerfkit.image.lpips._installed_linear_dir", lambda: None)


def _direct_lpips(net: str, backbone: dict, linear: dict, x0: torch.Tensor, x1: torch.Tensor) -> float:
    """The formula written out on the raw state dicts: (1, 3, H, W) images in [-1, 1]."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def conv(x, index, stride=1, padding=1):
        return F.relu(F.conv2d(x, backbone[f"features.{index}.weight"], backbone[f"features.{index}.bias"],
                               stride=stride, padding=padding))

    def taps(x):
        x = (x - shift) / scale
        if net == "alex":
            r1 = conv(x, 0, 4, 2)
            r2 = conv(F.max_pool2d(r1, 3, 2), 3, 1, 2)
            r3 = conv(F.max_pool2d(r2, 3, 2), 6)
            r4 = conv(r3, 8)
            return [r1, r2, r3, r4, conv(r4, 10)]
        out, blocks = [], [[0, 2], [5, 7], [10, 12, 14], [17, 19, 21], [24, 26, 28]]
        for number, block in enumerate(blocks):
            if number:
                x = F.max_pool2d(x, 2, 2)
            for index in block:
                x = conv(x, index)
            out.append(x)
        return out

    total = 0.0
    for layer, (a, b) in enumerate(zip(taps(x0), taps(x1))):
        a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        weighted = F.conv2d((a - b) ** 2, linear[f"lin{layer}.model.1.weight"])
        total += float(weighted.mean())
    return total


@pytest.mark.parametrize("net,size", [("alex", 64), ("vgg", 32)])
def test_lpips_is_zero_grows_with_noise_and_matches_the_formula(weights_dir, no_hub_cache, net, size):
    metric = load_lpips(net, weights_dir)
    assert metric.model is not None, metric.reason
    generator = torch.Generator().manual_seed(3)
    image = torch.rand(size, size, 3, generator=generator)
    assert metric.model.distance(image, image) == pytest.approx(0.0, abs=1e-7)
    noise = torch.randn(size, size, 3, generator=generator)
    distances = [metric.model.distance((image + sigma * noise).clamp(0, 1), image) for sigma in (0.02, 0.1, 0.3)]
    assert 0 < distances[0] < distances[1] < distances[2], distances

    noisy = (image + 0.1 * noise).clamp(0, 1)
    expected = _direct_lpips(net, torch.load(weights_dir / BACKBONE_FILES[net]),
                             torch.load(weights_dir / LINEAR_FILES[net]),
                             noisy.permute(2, 0, 1)[None] * 2 - 1, image.permute(2, 0, 1)[None] * 2 - 1)
    assert metric.model.distance(noisy, image) == pytest.approx(expected, rel=1e-4)


def test_weights_are_found_in_the_hub_cache_and_refused_when_wrong(weights_dir, tmp_path, monkeypatch):
    home = tmp_path / "torch-home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(home))
    torch.save(_backbone("alex"), home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    linear = tmp_path / "linear"
    linear.mkdir()
    torch.save(_linear("alex"), linear / "alex.pth")
    backbone_file, linear_file, reason = find_weights("alex", linear)
    assert reason == "" and backbone_file.parent == home / "hub" / "checkpoints" and linear_file == linear / "alex.pth"

    torch.save({"lin0.model.1.weight": torch.rand(1, 3, 1, 1)}, linear / "alex.pth")     # wrong shapes
    metric = load_lpips("alex", linear)
    assert metric.model is None and "lin0.model.1.weight" in metric.reason and "\n" not in metric.reason


def test_absent_weights_are_one_line(no_hub_cache, tmp_path):
    metric = load_lpips("alex", None)
    assert metric.model is None
    assert "alexnet-owt-7be5be79.pth" in metric.reason and "never downloads" in metric.reason
    assert "\n" not in metric.reason
    with pytest.raises(ValueError):
        load_lpips("squeeze")


def test_installed_lpips_package_provides_the_linear_layers(no_hub_cache, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("lpips") is None:
        pytest.skip("the lpips package is not installed (pip install --no-deps lpips)")
    monkeypatch.undo()                                       # the real lookup of the installed package
    from nerfkit.image import lpips as module

    folder = module._installed_linear_dir()
    assert folder is not None and (folder / "alex.pth").is_file()
    state = torch.load(folder / "alex.pth", map_location="cpu", weights_only=True)
    assert [tuple(state[f"lin{i}.model.1.weight"].shape) for i in range(5)] == \
        [(1, c, 1, 1) for c in layer_channels("alex")]
    LPIPS("alex", _backbone("alex"), state)                 # the published linear layers fit our network


@pytest.fixture(scope="module")
def tiny_run(tiny_demo, tmp_path_factory):
    from tiny_run import train_tiny_ngp_once

    with pytest.MonkeyPatch.context() as patch:               # the final metrics without any weights
        patch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("empty-torch-home")))
        patch.setattr("nerfkit.image.lpips._installed_linear_dir", lambda: None)
        return train_tiny_ngp_once(tiny_demo, tmp_path_factory.mktemp("lpips-run"), 5)


def test_eval_reports_lpips_with_weights_and_null_without(tiny_run, weights_dir, no_hub_cache, tmp_path, capsys):
    from nerfkit.cli import main

    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["lpips"] is None and "alexnet" in metrics["lpips_note"]

    assert main(["eval", str(tiny_run), "-o", str(tmp_path / "without.json")]) == 0
    without = json.loads((tmp_path / "without.json").read_text())
    assert without["lpips"] is None and "never downloads" in without["lpips_note"]
    assert "LPIPS not computed" in capsys.readouterr().out

    assert main(["eval", str(tiny_run), "--lpips-weights", str(weights_dir), "-o", str(tmp_path / "with.json")]) == 0
    scored = json.loads((tmp_path / "with.json").read_text())
    assert scored["lpips_net"] == "alex" and "lpips_note" not in scored
    values = [image["lpips"] for image in scored["images"]]
    assert all(value > 0 for value in values)
    assert scored["lpips"] == pytest.approx(sum(values) / len(values))
    assert "LPIPS (alex)" in capsys.readouterr().out

    assert main(["eval", str(tiny_run), "--lpips-weights", str(tmp_path / "nowhere")]) == 2
    assert "--lpips-weights" in capsys.readouterr().err
