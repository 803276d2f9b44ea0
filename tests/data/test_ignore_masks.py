"""``masks=ignore`` (the default where a scene has masks): pixels a mask marks 0 are never drawn for
training, are left out of splat's loss and of the held-out scores."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from nerfkit.core.errors import NerfkitError
from nerfkit.data import load_scene
from nerfkit.data.inputs import BatchRequest
from nerfkit.data.sampler import make_sampler
from nerfkit.image.metrics import psnr
from scene_writers import orbit_cameras, write_blender, write_colmap, write_transforms
from test_masks import by_stem, disc_mask, write_masks


@pytest.fixture
def cams():
    return orbit_cameras(n=8)


def test_ignore_masks_are_kept_per_image_and_downscale_conservatively(tmp_path, cams):
    root = write_colmap(tmp_path / "capture", cams)
    masks = write_masks(root, cams)
    scene = load_scene(root, masks="ignore")
    half = load_scene(root, downscale=2, masks="ignore")
    index, half_index = by_stem(scene), by_stem(half)
    for i, stem in enumerate(cams.names):
        np.testing.assert_array_equal(scene.masks[index[stem]], masks[i] == 255)
        blocks = (masks[i] == 255).reshape(12, 2, 16, 2)
        # a half-size pixel counts only when all four photo pixels under it count
        np.testing.assert_array_equal(half.masks[half_index[stem]], blocks.all(axis=(1, 3)))
    assert scene.images[0].shape[2] == 3 and scene.extras["masks"] == "ignore"


def test_transforms_json_mask_path_and_blender_split_folders(tmp_path, cams):
    frame_extra = {i: {"mask_path": f"my_masks/{name}"} for i, name in enumerate(cams.names)}
    root = write_transforms(tmp_path / "capture", cams, frame_extra=frame_extra)
    (root / "my_masks").mkdir()
    for i, name in enumerate(cams.names):
        iio.imwrite(root / "my_masks" / f"{name}.png", disc_mask(i, 32, 24))
    scene = load_scene(root)                # auto: frames name their masks -> ignore
    assert scene.extras["masks"] == "ignore"
    for i, stem in enumerate(cams.names):
        np.testing.assert_array_equal(scene.masks[by_stem(scene)[stem]], disc_mask(i, 32, 24) == 255)
    meta = json.loads((root / "transforms.json").read_text())
    meta["frames"][2]["mask_path"] = "my_masks/nothing.png"
    (root / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(NerfkitError, match=r"mask '.*nothing.png' of image '.*cam_002.png' is not a file"):
        load_scene(root)

    blender = write_blender(tmp_path / "synthetic", cams)      # train/ and test/ reuse names: split folders
    for split in ("train", "val", "test"):
        for path in (blender / split).glob("*.png"):
            (blender / "masks" / split).mkdir(parents=True, exist_ok=True)
            iio.imwrite(blender / "masks" / split / path.name, np.full((24, 32), 255 if split != "train" else 0,
                                                                       np.uint8))
    scene = load_scene(blender)
    for i, path in enumerate(scene.image_paths):
        assert scene.masks[i].all() == (Path(path).parent.name != "train")


def test_the_sampler_never_draws_an_ignored_pixel(tmp_path, cams):
    root = write_colmap(tmp_path / "capture", cams)
    write_masks(root, cams)
    scene = load_scene(root)
    train = scene.split("train")
    sampler = make_sampler(scene, train, BatchRequest(kind="rays", rays=4096))
    assert len(sampler) == sum(int(scene.masks[i].sum()) for i in train)
    batch = sampler.sample(20000)
    fx, fy, cx, cy = scene.cameras.intrinsics[batch.camera_ids].unbind(-1)
    c2w = scene.cameras.c2w[batch.camera_ids]
    local = torch.einsum("rji,rj->ri", c2w[:, :3, :3], batch.directions)        # camera-frame directions
    u = (fx * local[:, 0] / local[:, 2] + cx - 0.5).round().long()
    v = (fy * local[:, 1] / local[:, 2] + cy - 0.5).round().long()
    counted = torch.stack([torch.from_numpy(scene.masks[int(c)])[y, x] for c, x, y in
                           zip(batch.camera_ids[:2000], u[:2000], v[:2000])])
    assert bool(counted.all())
    everything = make_sampler(load_scene(root, masks="off"), train, BatchRequest(kind="rays", rays=4096))
    assert len(everything) == len(train) * 32 * 24 > len(sampler)
    image = make_sampler(scene, train, BatchRequest(kind="image")).sample()
    np.testing.assert_array_equal(image.keep.numpy(), scene.masks[image.image_id])


def test_psnr_counts_only_kept_pixels():
    target = torch.full((16, 16, 3), 0.5)
    pred = target.clone()
    pred[:4] = 1.0                                       # wrong only where the mask ignores
    keep = torch.ones(16, 16, dtype=torch.bool)
    keep[:4] = False
    assert psnr(pred, target, keep) == psnr(target, target) and psnr(pred, target) < 20.0
    pred[8, 8] = 0.6
    assert psnr(pred, target, keep) < psnr(target, target)


def test_all_zero_masks_are_one_sentence(tmp_path, cams):
    root = write_colmap(tmp_path / "capture", cams)
    (root / "masks").mkdir()
    for name in cams.names:
        iio.imwrite(root / "masks" / f"{name}.png", np.zeros((24, 32), np.uint8))
    with pytest.raises(NerfkitError, match="every mask ignores every pixel"):
        load_scene(root)
