"""nerfkit's rasterizer against gsplat's CUDA rasterizer: same images, same gradients (GPU only)."""

from __future__ import annotations

import pytest
import torch

from nerfkit.render.splat import RasterSettings, render_gaussians


def random_gaussians(n: int, degree: int, device: str, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2 - 1
    values = {
        "means": (torch.rand(n, 3, generator=generator) - 0.5) * 1.6,
        "quats": torch.randn(n, 4, generator=generator),
        "scales": torch.log(torch.rand(n, 3, generator=generator) * 0.04 + 0.005),
        "opacities": torch.randn(n, generator=generator) * 2.0,
        "sh0": torch.randn(n, 1, 3, generator=generator) * 0.5,
        "shN": torch.randn(n, k, 3, generator=generator) * 0.1,
    }
    return {key: value.to(device).requires_grad_() for key, value in values.items()}


@pytest.mark.cuda
@pytest.mark.parametrize("antialiased", [False, True])
@pytest.mark.parametrize("degree", [0, 3])
def test_nerfkit_rasterizer_matches_gsplat_values_and_gradients(antialiased, degree):
    pytest.importorskip("gsplat")
    device = "cuda"
    c2w = torch.eye(4, device=device)
    c2w[:3, 3] = torch.tensor([0.2, -0.1, -3.0])
    intrinsics = torch.tensor([150.0, 140.0, 64.0, 50.0], device=device)
    background = torch.tensor([0.2, 0.5, 0.9], device=device)
    outputs, grads = [], []
    for backend in ("nerfkit", "gsplat"):
        gaussians = random_gaussians(3000, degree, device)
        settings = RasterSettings(backend=backend, antialiased=antialiased)
        out = render_gaussians(gaussians, c2w, intrinsics, 128, 100, background, degree, settings)
        generator = torch.Generator().manual_seed(1)
        weights = {key: torch.randn(out[key].shape, generator=generator).to(device) for key in ("rgb", "depth", "alpha")}
        loss = sum((out[key] * weights[key]).sum() for key in weights)
        loss.backward()
        outputs.append({key: out[key].detach() for key in weights})
        grads.append({key: value.grad for key, value in gaussians.items()})
    assert float(outputs[1]["alpha"].mean()) > 0.2, "the test scene must cover the image"
    for key in ("rgb", "depth", "alpha"):
        torch.testing.assert_close(outputs[0][key], outputs[1][key], atol=2e-4, rtol=1e-3, msg=key)
    for key in grads[1]:
        if degree == 0 and key == "shN":
            continue
        scale = float(grads[1][key].abs().max())
        assert scale > 0, key
        torch.testing.assert_close(grads[0][key], grads[1][key], atol=1e-3 * scale, rtol=1e-2, msg=key)
