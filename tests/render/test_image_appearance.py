"""The per-image colour correction (``render/appearance.py``) against its closed form: a pixel of
training image i shows ``M_i fg + b_i alpha`` over the untouched background, with the stored
transforms centred so their mean is the identity; zero at the start; held-out images never corrected."""

from __future__ import annotations

import pytest
import torch

from nerfkit.render.appearance import ImageAppearance
from nerfkit.render.appearance_options import AppearanceOptions
from nerfkit.core.errors import NerfkitError
from nerfkit.data.inputs import SceneInfo

TRAIN = (0, 2, 3, 5)       # scene indices of the training images; 1 and 4 are held out


def _randomised(seed: int = 0) -> ImageAppearance:
    module = ImageAppearance(TRAIN, 6)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        module.matrices.add_(0.2 * torch.randn(module.matrices.shape, generator=generator))
        module.offsets.add_(0.1 * torch.randn(module.offsets.shape, generator=generator))
    return module


def test_a_new_correction_changes_no_bit():
    module = ImageAppearance(TRAIN, 6)
    rgb, alpha = torch.rand(7, 5, 3), torch.rand(7, 5)
    background = torch.rand(7, 5, 3)
    assert torch.equal(module(rgb, alpha, background, torch.randint(0, 6, (7, 5))), rgb)
    off = ImageAppearance()
    assert not off.enabled and list(off.parameters()) == [] and off.param_groups(1e-2) == []
    assert off(rgb, alpha, background, 3) is rgb


def test_the_correction_is_the_closed_form_over_an_untouched_background():
    module = _randomised()
    rgb, alpha, background = torch.rand(64, 3), torch.rand(64), torch.rand(64, 3)
    ids = torch.tensor(TRAIN * 16)
    out = module(rgb, alpha, background, ids)
    matrices = module.matrices - module.matrices.mean(0) + torch.eye(3)
    offsets = module.offsets - module.offsets.mean(0)
    for k, image in enumerate(ids.tolist()):
        row = TRAIN.index(image)
        fg = rgb[k] - background[k] * (1 - alpha[k])
        expected = matrices[row] @ fg + offsets[row] * alpha[k] + background[k] * (1 - alpha[k])
        torch.testing.assert_close(out[k], expected, atol=1e-6, rtol=0)
    # where nothing was rendered (alpha 0) the background stays exactly as it was
    empty = module(background.clone(), torch.zeros(64), background, ids)
    torch.testing.assert_close(empty, background, atol=1e-7, rtol=0)


def test_the_mean_transform_is_the_identity_and_held_out_images_are_never_corrected():
    module = _randomised(1)
    matrices, offsets = module.transforms()
    torch.testing.assert_close(matrices.mean(0), torch.zeros(3, 3), atol=1e-7, rtol=0)
    torch.testing.assert_close(offsets.mean(0), torch.zeros(3), atol=1e-7, rtol=0)
    rgb, alpha, background = torch.rand(10, 3), torch.rand(10), torch.rand(10, 3)
    for held_out in (1, 4):
        assert torch.equal(module(rgb, alpha, background, torch.full((10,), held_out)), rgb)
    # one image as a whole (splat's ImageBatch.image_id), the same as the same id per pixel
    image = torch.rand(4, 6, 3)
    torch.testing.assert_close(module(image, torch.ones(4, 6), torch.ones(3), 3),
                               module(image, torch.ones(4, 6), torch.ones(3), torch.full((4, 6), 3)), atol=0, rtol=0)


def test_gradients_reach_the_transforms_and_the_colours():
    module = _randomised(2)
    rgb = torch.rand(32, 3, requires_grad=True)
    out = module(rgb, torch.rand(32), torch.rand(32, 3), torch.tensor(TRAIN * 8))
    out.square().sum().backward()
    assert module.matrices.grad.abs().sum() > 0 and module.offsets.grad.abs().sum() > 0 and rgb.grad is not None
    # the centring: a change common to every image is not a correction, so its gradient sums to zero
    torch.testing.assert_close(module.matrices.grad.sum(0), torch.zeros(3, 3), atol=1e-5, rtol=0)


def test_state_round_trips_and_the_group_is_named():
    module = _randomised(3)
    again = ImageAppearance(TRAIN, 6)
    again.load_state_dict(module.state_dict())
    assert torch.equal(again.matrices, module.matrices) and torch.equal(again.offsets, module.offsets)
    assert "rows" not in module.state_dict()                      # rebuilt from the scene, not stored
    (group,) = module.param_groups(5e-3)
    assert group["name"] == "appearance" and group["lr"] == 5e-3 and len(group["params"]) == 2


def test_for_scene_follows_the_setting():
    scene = SceneInfo(torch.tensor([[-1.0] * 3, [1.0] * 3]), False, False, train_image_ids=TRAIN, image_count=6)
    assert ImageAppearance.for_scene(AppearanceOptions(appearance="on"), scene).matrices.shape == (4, 3, 3)
    for mode in ("off", "auto"):
        assert not ImageAppearance.for_scene(AppearanceOptions(appearance=mode), scene).enabled
    with pytest.raises(NerfkitError, match="appearance_lr must be >= 0"):
        AppearanceOptions(appearance_lr=-1.0)
