"""Pose refinement: a learned SE(3) correction per training camera, applied to the batches a method
trains on (options: :mod:`nerfkit.render.pose_options`).

Camera ``i`` keeps its loaded pose ``c2w_i`` (camera-to-world, OpenCV axes, scene coordinates) and
learns a tangent vector ``xi_i = (t_i, w_i)`` (6,), zero at the start; its pose in training is::

    c2w_i' = c2w_i @ [[exp(w_i), t_i], [0, 1]]

a rotation by the axis-angle ``w_i`` (radians, :func:`so3_exp`, Rodrigues' formula) and a
translation ``t_i`` (scene units), both in the camera's own frame. A ray ``o + s d`` of camera ``i``
then becomes ``o + R_i t_i + s (d + R_i (exp(w_i) - I) R_i^T d)`` with ``R_i`` the rotation of
``c2w_i``; an image's camera gets ``c2w_i'`` itself. Both are written as "the pose plus a
difference", so a zero correction changes no bit of a ray or a pose.

Methods never see this: the trainer corrects each batch before ``train_step``
(docs/design.md, "Pose refinement").
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor, nn

from nerfkit.data.inputs import ImageBatch, RayBatch

if TYPE_CHECKING:
    from nerfkit.data.scene import Scene

POSE_GROUP = "poses"
"""The name of the corrections' optimizer parameter group."""

_SMALL_ANGLE2 = 1e-8     # below this squared angle (1e-4 rad) Rodrigues' coefficients by Taylor series


def skew(w: Tensor) -> Tensor:
    """(..., 3) vectors -> (..., 3, 3) cross-product matrices ``[w]_x`` (``[w]_x v = w x v``)."""
    x, y, z = w.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([torch.stack([zero, -z, y], -1), torch.stack([z, zero, -x], -1),
                        torch.stack([-y, x, zero], -1)], -2)


def so3_exp_minus_identity(w: Tensor) -> Tensor:
    """``exp([w]_x) - I`` for (..., 3) axis-angle vectors (radians): (..., 3, 3).

    Rodrigues' formula ``A [w]_x + B [w]_x^2`` with ``A = sin(theta) / theta`` and
    ``B = (1 - cos(theta)) / theta^2 = (sin(theta / 2) / (theta / 2))^2 / 2``, ``theta = |w|`` (the
    half-angle form keeps ``B`` accurate in float32 where ``1 - cos`` would cancel); below 1e-4 rad
    their Taylor series, so that the value and its gradient are finite at ``w = 0`` (exactly 0 there).
    """
    theta2 = (w * w).sum(-1)
    small = theta2 < _SMALL_ANGLE2
    theta = torch.where(small, torch.ones_like(theta2), theta2).sqrt()
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    half = torch.sin(0.5 * theta) / (0.5 * theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, 0.5 * half * half)
    k = skew(w)
    return a[..., None, None] * k + b[..., None, None] * (k @ k)


def so3_exp(w: Tensor) -> Tensor:
    """(..., 3) axis-angle vectors (radians) -> (..., 3, 3) rotation matrices ``exp([w]_x)``.

    >>> so3_exp(torch.tensor([0.0, 0.0, 3.14159265 / 2])).round(decimals=6) + 0.0
    tensor([[ 0., -1.,  0.],
            [ 1.,  0.,  0.],
            [ 0.,  0.,  1.]])
    """
    return torch.eye(3, dtype=w.dtype, device=w.device) + so3_exp_minus_identity(w)


def corrected_poses(c2w: Tensor, tangent: Tensor) -> Tensor:
    """``c2w @ [[exp(w), t], [0, 1]]`` for (N, 4, 4) poses and (N, 6) tangents ``(t, w)``: (N, 4, 4).

    Written as ``[[R + R (exp(w) - I), o + R t], [0, 1]]``: a zero tangent returns ``c2w`` bit for bit.
    """
    rotation, origin = c2w[:, :3, :3], c2w[:, :3, 3]
    out = c2w.clone()
    out[:, :3, :3] = rotation + rotation @ so3_exp_minus_identity(tangent[:, 3:])
    out[:, :3, 3] = origin + (rotation @ tangent[:, :3, None])[..., 0]
    return out


class PoseRefinement(nn.Module):
    """The corrections of a scene's training cameras and how they move a batch.

    Args:
        c2w: (N, 4, 4) the training cameras' loaded poses (scene coordinates).
        image_ids: the N cameras' indices in the scene (what ``RayBatch.camera_ids`` and
            ``ImageBatch.image_id`` hold).
        n_images: the scene's image count.

    Attributes:
        tangent: (N, 6) Parameter, ``(t, w)`` per training camera in its own frame: translation in
            scene units, axis-angle rotation in radians; zero at the start.
        image_ids: (N,) int64 buffer (saved with the state, so a checkpoint names its cameras).
    """

    def __init__(self, c2w: Tensor, image_ids: Sequence[int], n_images: int) -> None:
        super().__init__()
        ids = torch.as_tensor(list(image_ids), dtype=torch.int64)
        if c2w.shape != (len(ids), 4, 4):
            raise ValueError(f"expected ({len(ids)}, 4, 4) poses for {len(ids)} cameras, got {tuple(c2w.shape)}")
        rows = torch.full((n_images,), -1, dtype=torch.int64)
        rows[ids] = torch.arange(len(ids))
        self.tangent = nn.Parameter(torch.zeros(len(ids), 6))
        self.register_buffer("image_ids", ids)
        self.register_buffer("rows", rows, persistent=False)                 # scene image -> row, or -1
        self.register_buffer("c2w", c2w.detach().float().clone(), persistent=False)

    @staticmethod
    def for_scene(scene: Scene) -> "PoseRefinement":
        """Zero corrections of ``scene``'s training cameras."""
        ids = scene.split("train")
        return PoseRefinement(scene.cameras.c2w[ids], ids, len(scene.cameras))

    def param_group(self, lr: float) -> dict:
        """The corrections' optimizer group (named :data:`POSE_GROUP`, no weight decay)."""
        return {"name": POSE_GROUP, "params": [self.tangent], "lr": lr, "eps": 1e-15, "weight_decay": 0.0}

    def refined_c2w(self) -> Tensor:
        """(N, 4, 4) the training cameras' corrected poses, in the order of ``image_ids``."""
        return corrected_poses(self.c2w, self.tangent)

    def apply(self, batch: RayBatch | ImageBatch) -> RayBatch | ImageBatch:
        """The same batch seen from the corrected cameras, differentiable in ``tangent``.

        A :class:`RayBatch`'s origins and directions move with each ray's camera
        (``camera_ids``: training cameras only); an :class:`ImageBatch`'s camera gets its corrected
        pose. Everything else is the batch's own.
        """
        if isinstance(batch, ImageBatch):
            row = int(self.rows[batch.image_id])
            if row < 0:
                raise ValueError(f"image {batch.image_id} is not a training camera: it has no correction")
            c2w = batch.camera.c2w.to(self.tangent.device)
            camera = dataclasses.replace(batch.camera, c2w=corrected_poses(c2w, self.tangent[row:row + 1]))
            return dataclasses.replace(batch, camera=camera)
        rotation = self.c2w[:, :3, :3]
        turn = rotation @ so3_exp_minus_identity(self.tangent[:, 3:]) @ rotation.transpose(-1, -2)   # (N, 3, 3)
        shift = (rotation @ self.tangent[:, :3, None])[..., 0]                                         # (N, 3)
        rows = self.rows[batch.camera_ids]
        directions = batch.directions + torch.einsum("rij,rj->ri", turn[rows], batch.directions)
        return dataclasses.replace(batch, origins=batch.origins + shift[rows], directions=directions)


__all__ = ["POSE_GROUP", "PoseRefinement", "corrected_poses", "skew", "so3_exp", "so3_exp_minus_identity"]
