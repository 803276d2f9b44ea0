"""3D Gaussian splatting (Kerbl et al. 2023) behind the Method protocol.

The scene is a set of anisotropic 3D Gaussians (mean, rotation, scale, opacity, SH colour up to
degree 3). A step renders one whole training image, with gsplat on CUDA or nerfkit's PyTorch
rasterizer elsewhere (:mod:`nerfkit.render.splat`), and minimises ``(1 - l) L1 + l D-SSIM``
(Eq. 7, l = 0.2). A densification strategy (:mod:`nerfkit.methods.strategies`) then grows and prunes
the set. The SH degree in use rises by one every ``sh_degree_interval`` steps; the means' learning
rate decays exponentially over the run, scaled by the scene extent.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from nerfkit.data.cameras import Cameras
from nerfkit.data.inputs import BatchRequest, ImageBatch, SceneInfo
from nerfkit.image.metrics import ssim_loss_map
from nerfkit.methods.base import CrossProcess, MethodBase
from nerfkit.methods.splat_config import SplatConfig
from nerfkit.methods.strategies.base import make_strategy
from nerfkit.render.appearance import ImageAppearance
from nerfkit.render.gaussians import covariance_3d
from nerfkit.render.spherical_harmonics import SH_C0
from nerfkit.render.splat import RasterSettings, render_gaussians
from nerfkit.render.splat_geometry import depth_distortion_loss, depth_normal_loss, gaussian_normals

PARAMETER_NAMES = ("means", "quats", "scales", "opacities", "sh0", "shN")


def scene_extent(scene: SceneInfo) -> float:
    """3DGS's scene size: 1.1 x the largest distance of a camera from the cameras' centroid
    (half the box diagonal when the cameras are unknown)."""
    centers = scene.camera_centers
    if centers is not None and centers.shape[0] > 1:
        radius = float((centers - centers.mean(0)).norm(dim=-1).max())
        if radius > 0:
            return 1.1 * radius
    return 0.5 * float((scene.aabb[1] - scene.aabb[0]).norm())


def nearest_neighbour_distance(points: np.ndarray, k: int = 3) -> np.ndarray:
    """(N, 3) points -> (N,) mean distance to the ``k`` nearest other points (scipy's KD-tree)."""
    from scipy.spatial import cKDTree

    if points.shape[0] <= 1:
        return np.ones(points.shape[0])
    k = min(k, points.shape[0] - 1)
    distances, _ = cKDTree(points).query(points, k=k + 1)
    return np.maximum(distances[:, 1:].mean(1), 1e-7)


def initial_gaussians(config: SplatConfig, scene: SceneInfo) -> dict[str, Tensor]:
    """Gaussians at the scene's sparse points (coloured by them), else at random points the views see
    (inside the visual hull for RGBA scenes) coloured from the images (``init_from_views``), else
    uniformly random in the box with random colours; isotropic, std-dev from the 3 nearest
    neighbours."""
    carved = None
    if (scene.points3d is None or scene.points3d.shape[0] < 4) and config.init_from_views and scene.point_sampler:
        carved = scene.point_sampler(config.init_points)
    if scene.points3d is not None and scene.points3d.shape[0] >= 4:
        means = scene.points3d.float()
        rgb = (scene.points_rgb.float() / 255.0 if scene.points_rgb is not None
               else torch.full_like(means, 0.5))
    elif carved is not None and carved[0].shape[0] >= 4:
        means, rgb = carved[0].float(), carved[1].float() / 255.0
    else:
        low, high = scene.aabb[0].float(), scene.aabb[1].float()
        means = low + torch.rand(config.init_points, 3) * (high - low)
        rgb = torch.rand(config.init_points, 3)
    n = means.shape[0]
    distance = torch.from_numpy(nearest_neighbour_distance(means.numpy())).float() * config.init_scale
    extra_coefficients = (config.sh_degree + 1) ** 2 - 1
    return {
        "means": means,
        "quats": torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1),
        "scales": torch.log(distance).unsqueeze(-1).repeat(1, 3),
        "opacities": torch.full((n,), math.log(config.init_opacity / (1.0 - config.init_opacity))),
        "sh0": ((rgb - 0.5) / SH_C0).unsqueeze(1),
        "shN": torch.zeros(n, extra_coefficients, 3),
    }


class Splat(MethodBase):
    """The ``splat`` method (see :mod:`nerfkit.methods.base` for the contract; it has Gaussians,
    :class:`~nerfkit.methods.capabilities.HasGaussians`)."""

    name = "splat"
    pinhole_only = True     # the rasterizer projects through pinholes; photos are undistorted at load

    def __init__(self, config: SplatConfig, scene: SceneInfo) -> None:
        super().__init__()
        config = config.resolve("cuda" if torch.cuda.is_available() else "cpu")   # no-op once resolved
        self.config = config
        self.extent = scene_extent(scene)
        self.gaussians = nn.ParameterDict({k: nn.Parameter(v) for k, v in initial_gaussians(config, scene).items()})
        self.strategy = make_strategy(config.strategy, config.refine, config.default_strategy, config.mcmc,
                                      self.extent)
        self.settings = RasterSettings(near=config.near, eps2d=config.eps2d, backend=config.backend,
                                       antialiased=config.rasterize_mode == "antialiased")
        self.sh_degree_in_use = 0
        self.appearance = ImageAppearance.for_scene(config.image_appearance, scene)
        self._infos: list[dict[str, Any]] = []   # this step's images (several: a multi-image step)

    # --- protocol -----------------------------------------------------------------------------
    @property
    def n_gaussians(self) -> int:
        return int(self.gaussians["means"].shape[0])

    def batch_request(self, step: int) -> BatchRequest:
        return BatchRequest("image", background=self.config.train_background)

    def param_groups(self) -> list[dict[str, Any]]:
        c = self.config
        lrs = {"means": c.means_lr * self.extent, "quats": c.quats_lr, "scales": c.scales_lr,
               "opacities": c.opacities_lr, "sh0": c.sh0_lr, "shN": c.shN_lr}
        return [{"name": name, "params": [self.gaussians[name]], "lr": lrs[name], "eps": 1e-15,
                 "betas": (0.9, 0.999)} for name in PARAMETER_NAMES] \
            + self.appearance.param_groups(c.image_appearance.appearance_lr)

    def lr_factor(self, step: int, progress: float) -> dict[str, float]:
        """The means' learning rate decays exponentially from ``means_lr`` to ``means_lr_final``, the
        appearance correction's to a tenth of its own (as 3DGS's exposure)."""
        progress = min(max(progress, 0.0), 1.0)
        return {"means": (self.config.means_lr_final / self.config.means_lr) ** progress,
                "appearance": 0.1 ** progress}

    def sh_degree_at(self, step: int) -> int:
        """SH degree in use at ``step``: 0 at first, one more every ``sh_degree_interval`` steps."""
        return min(self.config.sh_degree, step // max(self.config.sh_degree_interval, 1))

    def before_step(self, step: int, progress: float) -> None:
        self.sh_degree_in_use = self.sh_degree_at(step)
        self._infos = []

    def distribute(self, across: CrossProcess) -> None:
        super().distribute(across)
        self.strategy.distribute(across)

    def train_step(self, batch: ImageBatch, step: int, progress: float) -> dict[str, Any]:
        width, height = (int(v) for v in batch.camera.sizes[0])
        geometry = (self.config.depth_normal_weight > 0 or self.config.depth_distortion_weight > 0) \
            and progress >= self.config.geometry_start
        out = self._render(batch.camera, batch.background, self.sh_degree_in_use, geometry=geometry)
        if out["means2d"].requires_grad:
            out["means2d"].retain_grad()
        rgb = self.appearance(out["rgb"], out["alpha"], batch.background, batch.image_id)
        target = batch.rgb
        if batch.keep is not None:          # ignored pixels (the scene's masks) match the render: no loss there
            keep = batch.keep.to(rgb.device)[..., None]
            target = torch.where(keep, target, rgb.detach())
        l1 = (rgb - target).abs().mean()
        loss = (1.0 - self.config.ssim_lambda) * l1
        if self.config.ssim_lambda > 0:
            loss = loss + self.config.ssim_lambda * (1.0 - ssim_loss_map(rgb, target).mean())
        loss = loss + self.strategy.loss(self.gaussians)
        stats: dict[str, Any] = {}
        if "extra" in out:
            normal_loss = depth_normal_loss(out["extra"][..., :3], out["alpha"], out["z"],
                                            batch.camera.intrinsics[0].to(rgb.device))
            distortion = depth_distortion_loss(out["alpha"], out["z"], out["extra"][..., 3])
            loss = loss + self.config.depth_normal_weight * normal_loss \
                + self.config.depth_distortion_weight * distortion
            stats = {"depth_normal": float(normal_loss.detach()), "depth_distortion": float(distortion.detach())}
        self._infos.append({"means2d": out["means2d"], "radii": out["radii"], "width": width, "height": height})
        counted = 1.0 if batch.keep is None else max(float(batch.keep.float().mean()), 1e-8)
        mse = float(torch.mean((rgb.detach() - target) ** 2)) / counted
        return {"loss": loss, "mse": mse, "rays": width * height, "gaussians": self.n_gaussians, **stats}

    def after_backward(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        """Densify from this step's images (each one's own screen-space gradients; one image per step
        unless the trainer gives a process several, ``images_per_step``)."""
        infos, self._infos = self._infos, []
        if not infos:
            return
        for info in infos:
            means2d = info["means2d"]
            flat = means2d.detach().reshape(-1, 2)       # gsplat hands back (1, N, 2)
            if means2d.grad is not None:
                flat.grad = means2d.grad.reshape(-1, 2)
            info["means2d"] = flat
            info["radii"] = info["radii"].reshape(-1)
        info = infos[0] if len(infos) == 1 else {"views": infos}
        self.strategy.step_post_backward(dict(self.gaussians), optimizer, step, info)

    @torch.no_grad()
    def render(self, camera: Cameras, background: Tensor) -> dict[str, Tensor]:
        """Render camera 0 of ``camera`` at its size with the full SH degree reached so far."""
        out = self._render(camera, background, self.sh_degree_in_use)
        return {key: out[key].cpu() for key in ("rgb", "depth", "alpha")}

    def density(self, xyz: Tensor, chunk: int = 1 << 22) -> Tensor:
        """(P, 3) points -> (P,) sum over Gaussians of opacity x unnormalised Gaussian falloff.

        Exact (every point against every Gaussian, in blocks of ``chunk`` pairs): meant for
        moderate point counts.
        """
        g = self.gaussians
        with torch.no_grad():
            precision = torch.linalg.inv(covariance_3d(g["quats"], g["scales"]) + 1e-10 * torch.eye(3, device=xyz.device))
            opacity = torch.sigmoid(g["opacities"])
            out = torch.zeros(xyz.shape[0], device=xyz.device)
            step = max(1, chunk // max(self.n_gaussians, 1))
            for start in range(0, xyz.shape[0], step):
                d = xyz[start:start + step, None, :] - g["means"][None]           # (p, N, 3)
                m = torch.einsum("pni,nij,pnj->pn", d, precision, d)
                out[start:start + step] = (opacity * torch.exp(-0.5 * m)).sum(-1)
        return out

    # --- checkpoints --------------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {"strategy": self.strategy.state_dict(), "extent": self.extent,
                "sh_degree_in_use": self.sh_degree_in_use}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.strategy.load_state_dict(state["strategy"])
        self.extent = float(state["extent"])
        self.sh_degree_in_use = int(state["sh_degree_in_use"])

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False):
        """Resize the Gaussians to the checkpoint's count (keeping the Parameter objects, so an
        optimizer built on them stays valid), then load."""
        for name in PARAMETER_NAMES:
            saved = state_dict.get(f"gaussians.{name}")
            if saved is not None and saved.shape != self.gaussians[name].shape:
                self.gaussians[name].data = torch.empty_like(saved, device=self.gaussians[name].device)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # --- rendering ----------------------------------------------------------------------------
    def _render(self, camera: Cameras, background: Tensor, sh_degree: int, geometry: bool = False) -> dict[str, Any]:
        """Render camera 0; ``geometry`` also composites each Gaussian's normal and squared depth
        (camera axes) into ``extra`` (H, W, 4) for the geometry regularisers."""
        width, height = (int(v) for v in camera.sizes[0])
        device = self.gaussians["means"].device
        c2w = camera.c2w[0].to(device)
        extra = None
        if geometry:
            g = self.gaussians
            w2c = torch.linalg.inv(c2w)
            depth = g["means"] @ w2c[2, :3] + w2c[2, 3]
            extra = torch.cat([gaussian_normals(g["quats"], g["scales"], g["means"], w2c), (depth ** 2)[:, None]], -1)
        return render_gaussians(dict(self.gaussians), c2w, camera.intrinsics[0].to(device),
                                width, height, background.to(device), sh_degree, self.settings, extra)
