"""NeRF-synthetic (Blender) folders -> a :class:`Scene` in original world coordinates.

``transforms_{train,val,test}.json`` each hold ``camera_angle_x`` (horizontal field of view,
radians) and ``frames`` with ``file_path`` (relative to the folder, usually without extension:
``./train/r_0`` -> ``train/r_0.png``) and an OpenGL camera-to-world ``transform_matrix``.
Images are RGBA; the focal length is ``0.5 * W / tan(0.5 * camera_angle_x)`` and the principal
point is the image centre.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from nerfkit.core.errors import NerfkitError
from nerfkit.data.cameras import Cameras
from nerfkit.data.images import check_images_exist, image_size
from nerfkit.data.scene import SPLITS, Scene
from nerfkit.data.transforms_json import frame_c2w, frame_image_path, json_frames, json_number, read_json


def split_file(root: Path, split: str) -> Path:
    """``root/transforms_{split}.json``."""
    return root / f"transforms_{split}.json"


def parse_blender(root: Path) -> Scene:
    """Read a NeRF-synthetic folder (image headers are read for the sizes, pixels are not).

    ``transforms_train.json`` must exist; ``val`` and ``test`` are read when present (a missing
    test split is reported by :func:`nerfkit.data.load.load_scene` as an empty split).

    Returns:
        A :class:`Scene` in original world coordinates: ``world_to_scene`` is the identity,
        ``images`` is empty, cameras (float64) are ordered train, val, test as in the files, and
        ``splits`` holds the given splits; ``extras["kind"]`` is ``"object"``.
    """
    paths: list[Path] = []
    c2ws, intrinsics, sizes = [], [], []
    splits: dict[str, list[int]] = {}
    for split in SPLITS:
        path = split_file(root, split)
        if split != "train" and not path.is_file():
            continue
        meta = read_json(path)
        if "camera_angle_x" not in meta:
            raise NerfkitError(f"'{path}' has no 'camera_angle_x' (the horizontal field of view)")
        angle = json_number(meta["camera_angle_x"], "camera_angle_x", path)
        if not 0.0 < angle < math.pi:
            raise NerfkitError(f"'camera_angle_x' in '{path}' is {angle}, expected radians in "
                               "(0, pi)")
        frames = json_frames(meta, path)
        split_paths = [frame_image_path(frame, i, path) for i, frame in enumerate(frames)]
        check_images_exist(split_paths, path)
        splits[split] = list(range(len(paths), len(paths) + len(frames)))
        for i, (frame, image) in enumerate(zip(frames, split_paths)):
            width, height = image_size(image)
            focal = 0.5 * width / math.tan(0.5 * angle)
            c2ws.append(frame_c2w(frame, i, path))
            intrinsics.append([focal, focal, 0.5 * width, 0.5 * height])
            sizes.append([width, height])
        paths.extend(split_paths)
    if not paths:
        raise NerfkitError(f"'{split_file(root, 'train')}' has no frames")
    cameras = Cameras(torch.stack(c2ws), torch.tensor(intrinsics, dtype=torch.float64),
                      torch.tensor(sizes, dtype=torch.int64),
                      torch.zeros(len(paths), 5, dtype=torch.float64))
    return Scene(name=root.name, root=root, format="blender", image_paths=paths, images=[],
                 cameras=cameras, splits=splits, world_to_scene=torch.eye(4, dtype=torch.float64),
                 aabb=torch.tensor([[-1.0] * 3, [1.0] * 3]), unbounded=False,
                 extras={"kind": "object", "size_source": None})
