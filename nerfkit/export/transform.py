"""Move Gaussians and cameras by a similarity, e.g. from nerfkit's scene coordinates back to the world.

nerfkit normalises every scene on load by a similarity ``x_scene = world_to_scene @ x_world`` with
``world_to_scene = [[s R, t], [0, 1]]`` (docs/design.md, "Conventions"), and every export is written back
in the ORIGINAL world coordinates. For Gaussians a similarity ``x -> s R x + t`` (``s > 0``, ``R`` a
proper rotation) acts on each parameter as follows:

- ``means``: ``s R mu + t``.
- ``quats``: ``q_R * q`` (Hamilton product), i.e. rotation ``R R_q``; the product keeps ``|q|``, so
  the optimised (not necessarily unit) quaternions stay as they were up to the rotation.
- ``scales`` (log std-devs): ``+ log s``; together with the rotation the covariance becomes
  ``s^2 R Sigma R^T``.
- ``opacities`` and ``sh0`` (band 0 is constant over the sphere): unchanged.
- ``shN``: rotated band by band, so that the colour seen along ``R d`` after the move is the colour
  that was seen along ``d`` before it. A camera moved by the same similarity sees every Gaussian
  along ``R d`` (``s`` and ``t`` do not change directions), so it renders the same image; depths
  scale by ``s``.

SH coefficients are rotated by :func:`nerfkit.render.spherical_harmonics.rotate_sh`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from nerfkit.data.similarity import decompose_similarity, float64_device, invert_similarity
from nerfkit.export.splat_ply import GAUSSIAN_KEYS, sh_degree_of
from nerfkit.render.gaussians import rotmat_to_quat
from nerfkit.render.spherical_harmonics import rotate_sh


def transform_gaussians(gaussians: Mapping[str, Tensor], similarity: Tensor) -> dict[str, Tensor]:
    """Apply ``x -> s R x + t`` to Gaussians (see the module docstring for each parameter).

    Args:
        gaussians: ``means (N, 3)``, ``quats (N, 4)`` (w, x, y, z), ``scales (N, 3)`` (log),
            ``opacities (N,)`` (logit), ``sh0 (N, 1, 3)``, ``shN (N, K, 3)``, K in {0, 3, 8, 15, 24}.
        similarity: (4, 4) ``[[s R, t], [0, 1]]``, ``s > 0``, ``R`` a proper rotation.
    Returns:
        A new dict with exactly those six keys (others are dropped: their meaning under the move is
        unknown), each tensor in its input's dtype and device; computed in float64.
    Raises:
        ValueError: a key is missing or ``similarity`` is not a uniform-scale proper similarity.

    >>> g = {"means": torch.tensor([[1.0, 0.0, 0.0]]), "quats": torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
    ...      "scales": torch.zeros(1, 3), "opacities": torch.zeros(1), "sh0": torch.zeros(1, 1, 3),
    ...      "shN": torch.zeros(1, 0, 3)}
    >>> quarter_turn_z = torch.tensor([[0.0, -2, 0, 5], [2, 0, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]])
    >>> out = transform_gaussians(g, quarter_turn_z)
    >>> out["means"], out["quats"], out["scales"]
    (tensor([[5., 2., 0.]]), tensor([[0.7071, 0.0000, 0.0000, 0.7071]]), tensor([[0.6931, 0.6931, 0.6931]]))
    """
    missing = [key for key in GAUSSIAN_KEYS if key not in gaussians]
    if missing:
        raise ValueError(f"the Gaussians lack {missing}: expected the keys {list(GAUSSIAN_KEYS)}")
    scale, rotation, translation = decompose_similarity(similarity)
    sh_degree_of(gaussians["shN"])          # rejects a K that is not (degree + 1)^2 - 1

    def work(tensor: Tensor) -> Tensor:
        return tensor.to(float64_device(tensor.device), torch.float64)

    means = work(gaussians["means"])
    means = scale * means @ rotation.to(means.device).T + translation.to(means.device)
    quats = work(gaussians["quats"])
    quats = _quat_multiply(rotmat_to_quat(rotation.to(quats.device)[None]).expand_as(quats), quats)
    scales = work(gaussians["scales"]) + math.log(scale)
    sh = torch.cat([gaussians["sh0"], gaussians["shN"].to(gaussians["sh0"])], -2)
    shN = rotate_sh(sh, rotation)[..., 1:, :]

    def like(value: Tensor, key: str) -> Tensor:
        return value.to(gaussians[key].device, gaussians[key].dtype)

    return {"means": like(means, "means"), "quats": like(quats, "quats"), "scales": like(scales, "scales"),
            "opacities": gaussians["opacities"].clone(), "sh0": gaussians["sh0"].clone(),
            "shN": like(shN, "shN")}


def gaussians_to_world(gaussians: Mapping[str, Tensor], world_to_scene: Tensor) -> dict[str, Tensor]:
    """Gaussians trained in scene coordinates, moved back to the original world coordinates.

    Args:
        gaussians: as :func:`transform_gaussians`, in scene coordinates.
        world_to_scene: (4, 4) similarity, ``x_scene = world_to_scene @ x_world``.
    """
    return transform_gaussians(gaussians, invert_similarity(world_to_scene))


def _quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product of (..., 4) (w, x, y, z) quaternions: rotation of ``a * b`` = R_a R_b."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz,
                        aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx,
                        aw * bz + ax * by - ay * bx + az * bw], -1)
