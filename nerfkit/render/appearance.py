"""Per-image appearance: one affine colour transform per training image, applied to what a method
renders before the loss (Inria 3DGS's exposure compensation; one module for every method).

Training image ``i`` is rendered as::

    fg      = rgb - background * (1 - alpha)          # what the scene contributes, premultiplied
    rgb_i   = rgb + (M_i - I) fg + b_i alpha          # i.e. fg -> M_i fg + b_i alpha, background kept

so the background a target was composited on is never recoloured, and an opaque pixel is simply
``M_i rgb + b_i``. The transforms are kept centred: ``M_i = I + A_i - mean_j A_j`` and ``b_i = c_i -
mean_j c_j`` over the training images (``A``, ``c``: the stored parameters), so their mean is the
identity by construction. A colour correction and the scene's colours trade off exactly (every
``M_i`` times ``G^-1`` and the scene's colours times ``G``), and the centring fixes that trade at the
mean: the uncorrected model *is* the neutral (mean) appearance of the training photos. Held-out
views (evaluate, render, the viewer) and exports (mesh colours, splat files, point clouds) therefore
use the method's plain output, with no one photo's colour cast.

At the start (``A_i = I``, ``c_i = 0``) the correction is exactly zero, so a method renders and
trains bit for bit as without it.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from nerfkit.data.inputs import SceneInfo
from nerfkit.render.appearance_options import AppearanceOptions


class ImageAppearance(nn.Module):
    """The transforms of a scene's training images (none when the correction is off).

    Args:
        train_ids: the scene indices of the training images (one transform each).
        n_images: images in the scene; the others (held-out images) are never corrected.

    Parameters ``matrices`` (K, 3, 3) start at the identity and ``offsets`` (K, 3) at zero, for the
    K training images; with K = 0 the module has no parameters and returns colours unchanged (a
    checkpoint of a run without the correction has nothing for it).
    """

    def __init__(self, train_ids: Sequence[int] = (), n_images: int = 0) -> None:
        super().__init__()
        train_ids = [int(i) for i in train_ids]
        count = len(train_ids)
        rows = torch.full((max(n_images, max(train_ids, default=-1) + 1),), count, dtype=torch.int64)
        rows[train_ids] = torch.arange(count)           # scene index -> row; the rest: the last, zero row
        self.register_buffer("rows", rows, persistent=False)
        if count:
            self.matrices = nn.Parameter(torch.eye(3).repeat(count, 1, 1))
            self.offsets = nn.Parameter(torch.zeros(count, 3))
        else:
            self.register_parameter("matrices", None)
            self.register_parameter("offsets", None)

    @staticmethod
    def for_scene(options: AppearanceOptions, scene: SceneInfo) -> "ImageAppearance":
        """The correction ``options`` ask for (``on``: one transform per training image of
        ``scene``; ``off`` or an undecided ``auto``: none)."""
        if options.appearance != "on":
            return ImageAppearance()
        if not scene.train_image_ids:
            raise ValueError("appearance=on needs the scene's training images (SceneInfo.train_image_ids)")
        return ImageAppearance(scene.train_image_ids, scene.image_count)

    @property
    def enabled(self) -> bool:
        return self.matrices is not None

    def transforms(self) -> tuple[Tensor, Tensor]:
        """The centred transforms minus the identity: ``M_i - I`` (K, 3, 3) and ``b_i`` (K, 3)."""
        return (self.matrices - self.matrices.mean(0, keepdim=True),
                self.offsets - self.offsets.mean(0, keepdim=True))

    def forward(self, rgb: Tensor, alpha: Tensor, background: Tensor, image_ids: Tensor | int) -> Tensor:
        """Colours as training image(s) ``image_ids`` show them.

        Args:
            rgb: (..., 3) rendered colour composited on ``background``.
            alpha: (...) the render's opacity.
            background: (..., 3) or (3,) the background of ``rgb``.
            image_ids: (...) int64 scene image of each colour (a ray batch's ``camera_ids``), or
                one int for all of them (an image batch's ``image_id``).
        Returns:
            (..., 3) the corrected colour; ``rgb`` itself when the correction is off.
        """
        if not self.enabled:
            return rgb
        matrices, offsets = self.transforms()
        # One (4, 3) table per image, [(M - I)^T; b], and a zero one for the images not trained on.
        table = torch.cat([matrices.transpose(1, 2), offsets.unsqueeze(1)], 1)
        table = torch.cat([table, table.new_zeros(1, 4, 3)])
        rows = self.rows[torch.as_tensor(image_ids, device=self.rows.device)]
        alpha = alpha.unsqueeze(-1)
        inputs = torch.cat([rgb - background * (1.0 - alpha), alpha], -1)        # (..., 4): [fg, alpha]
        return rgb + (inputs.unsqueeze(-1) * table[rows]).sum(-2)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """The optimizer group ``appearance`` at ``lr`` (none when the correction is off)."""
        if not self.enabled:
            return []
        return [{"name": "appearance", "params": [self.matrices, self.offsets], "lr": lr, "eps": 1e-15,
                 "weight_decay": 0.0}]


__all__ = ["ImageAppearance"]
