"""Flat configuration dataclasses, one per concern, and YAML presets from ``configs/``.

No inheritance between configs: a preset is a flat YAML mapping ``{train: {...}, method: {...}}``
whose keys are fields of :class:`TrainConfig` and of the method's config. Command-line flags are
applied last. Unknown keys and wrongly typed values are user errors with one clear sentence.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nerfkit.errors import NerfkitError

PRESET_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class TrainConfig:
    """What the trainer does, independent of the method."""

    scene: str = ""                 # scene folder ("" = the built-in demo scene)
    method: str = "ngp"
    output_dir: str = "outputs"
    max_steps: int = 20000          # stop after this many steps ...
    max_time: float = 0.0           # ... or after this many seconds of training (0 = no limit)
    eval_every: int = 0             # steps between quick evals on one test image (0 = off)
    checkpoint_every: int = 1000    # steps between checkpoints (also one every checkpoint_seconds)
    checkpoint_seconds: float = 120.0
    downscale: float = 1.0          # image downscale factor on load
    split_every: int = 8            # every Nth image is a test image when the format has no splits
    scene_kind: str = "auto"        # auto | object | unbounded
    eval_background: str = "white"  # background for RGBA test images: white | black
    seed: int = 0
    threads: int = 0                # torch CPU threads (0 = all cores)
    device: str = "auto"            # auto (cuda when available) | cpu | cuda
    on_nan: str = "stop"            # NaN/inf loss or parameters: stop | rollback (to the last good
                                    # checkpoint, then go on)


@dataclass
class NGPConfig:
    """Instant-NGP (Mueller et al. 2022) hyper-parameters; CPU-friendly defaults."""

    n_levels: int = 16
    features_per_level: int = 2
    log2_table_size: int = 17
    base_resolution: int = 16
    max_resolution: int = 512       # finest grid cells per axis over the box
    hidden_dim: int = 64
    geo_feat_dim: int = 15
    sh_degree: int = 4
    hash_backend: str = "auto"      # auto (tinycudann on CUDA when importable) | nerfkit | tcnn
    color_hidden_layers: int = 2
    lr: float = 1e-2
    lr_warmup_steps: int = 100
    weight_decay: float = 1e-6      # on the MLPs only
    target_samples: int = 1 << 16   # samples per batch; the ray count adapts to keep it
    initial_rays: int = 1024
    max_rays: int = 1 << 15
    grid_resolution: int = 64       # occupancy grid cells per axis and cascade
    grid_cascades: int = 0          # 0 = auto (1 for objects, 4 for unbounded scenes)
    grid_update_every: int = 16
    grid_warmup_steps: int = 256
    grid_ema: float = 0.95
    grid_threshold: float = 0.01    # occupied when sigma * step_size exceeds this
    steps_per_diagonal: int = 512   # marching step = box diagonal / this
    cone_angle: float = -1.0        # -1 = auto (0 for objects, 1/256 unbounded)
    max_samples_per_ray: int = 1024
    near: float = 0.05
    early_stop_eps: float = 1e-4    # drop samples behind transmittance < eps (train and render)
    train_background: str = "random"  # random | white | black (RGBA scenes)
    render_chunk: int = 1 << 14     # rays per chunk when rendering images
    max_points_per_query: int = 1 << 18   # field queries per chunk without gradients (memory bound)


@dataclass
class SplatConfig:
    """3D Gaussian splatting (Kerbl et al. 2023) hyper-parameters; 3DGS/gsplat defaults.

    Learning rates of the means are multiplied by the scene extent (1.1 x the largest camera
    distance from the cameras' centroid), as in 3DGS. Step counts are optimizer steps.

    The fields marked "0 = schedule" take their value from ``schedule``: ``3dgs`` is the paper's
    30k-step schedule (a GPU does ~30k steps in minutes); ``short`` fits the ~1-2k steps a CPU does
    in ten minutes (SH degree up every 100 steps, densify every 50 from step 100 to 2000, no
    opacity reset, 20k initial Gaussians). ``auto`` picks ``3dgs`` on CUDA and ``short`` elsewhere.
    """

    schedule: str = "auto"          # auto | 3dgs | short
    sh_degree: int = 3              # highest SH degree ...
    sh_degree_interval: int = 0     # ... reached by raising it by one every this many steps (0 = schedule)
    init_points: int = 0            # Gaussians to start with without sparse points (0 = schedule)
    init_from_views: bool = True    # ... start them where the views see (the alpha masks' visual hull
                                    # for RGBA images), coloured from the images; else random in the box
    init_opacity: float = 0.1
    init_scale: float = 1.0         # initial std-dev = this x mean distance to the 3 nearest points
    means_lr: float = 1.6e-4        # x scene extent; decays exponentially ...
    means_lr_final: float = 1.6e-6  # ... to this (x scene extent) over max_steps or max_time
    scales_lr: float = 5e-3
    quats_lr: float = 1e-3
    opacities_lr: float = 5e-2
    sh0_lr: float = 2.5e-3
    shN_lr: float = 2.5e-3 / 20
    ssim_lambda: float = 0.2        # loss = (1 - l) L1 + l (1 - SSIM)
    rasterize_mode: str = "classic"   # classic | antialiased (Mip-Splatting 2D filter, as gsplat)
    eps2d: float = 0.3              # screen-space dilation in pixels^2
    near: float = 0.01
    train_background: str = "random"  # random | white | black (RGBA scenes)
    backend: str = "auto"           # auto (gsplat on CUDA when importable) | nerfkit | gsplat
    # densification
    strategy: str = "default"       # default (3DGS adaptive density control) | mcmc
    refine_start: int = 0           # first step that may densify ... (0 = schedule)
    refine_stop: int = 0            # ... and the step where densification stops (0 = schedule)
    refine_every: int = 0           # (0 = schedule)
    grad_threshold: float = 0.0002  # mean screen-space gradient (NDC units) that triggers growth
    grow_scale3d: float = 0.01      # x extent: smaller Gaussians are cloned, larger ones split
    prune_opacity: float = 0.005
    prune_scale3d: float = 0.1      # x extent: larger Gaussians are pruned after the first reset
    prune_scale2d: float = 0.15     # x image size: larger screen radii are pruned ...
    refine_scale2d_stop: int = 0    # ... before this step (0 = never)
    reset_every: int = 0            # opacity reset period, default strategy (0 = schedule; -1 = never)
    cap_max: int = 1_000_000        # most Gaussians (mcmc strategy)
    noise_lr: float = 5e5           # position noise scale (mcmc)
    opacity_reg: float = 0.01       # mcmc regularisers
    scale_reg: float = 0.01

    def resolve(self, device_type: str) -> "SplatConfig":
        """A copy with every "0 = schedule" field filled in for a run on ``device_type``."""
        name = self.schedule if self.schedule != "auto" else ("3dgs" if device_type == "cuda" else "short")
        if name not in SPLAT_SCHEDULES:
            raise NerfkitError(f"splat schedule '{self.schedule}' is not one of auto, {', '.join(SPLAT_SCHEDULES)}")
        values = {key: value for key, value in SPLAT_SCHEDULES[name].items() if getattr(self, key) == 0}
        return dataclasses.replace(self, schedule=name, **values)


@dataclass
class MipNeRFConfig:
    """Mip-NeRF (Barron et al. 2021) and Mip-NeRF 360 (Barron et al. 2022) hyper-parameters.

    ``sampler``: ``coarse_to_fine`` is Mip-NeRF (one field queried on stratified frusta, then on frusta
    resampled from its blurred weights); ``proposal`` is Mip-NeRF 360 (small proposal fields trained
    with the interlevel loss pick the frusta of the field, plus the distortion loss); ``auto`` uses
    the first for objects and the second for unbounded scenes (whose space is contracted).

    ``occupancy`` marches rays through instant-ngp's occupancy grid (as ngp does) and shades one
    frustum per marching step: the fast choice for the hash backbone on objects.

    ``backbone``: ``mlp`` is the papers' field (integrated positional encoding + MLP); ``hash`` is a
    Zip-NeRF-style hash grid queried at the frustum's mean, each level's features weighted by
    erf(1 / sqrt(8 sigma^2 n^2)) for a frustum of radial std sigma and a level of n cells per unit,
    so levels finer than the pixel footprint fade out (much faster on a CPU).
    """

    backbone: str = "mlp"           # mlp | hash
    sampler: str = "auto"           # auto | coarse_to_fine | proposal | occupancy
    rays_per_batch: int = 1024      # (the papers use 4096 / 16384; occupancy: the first batch's)
    near: float = 0.05              # scene units (objects: the box clips the rays further)
    far: float = 1000.0             # unbounded scenes: last sample distance, scene units
    # Mip-NeRF: coarse to fine with one field queried twice
    coarse_samples: int = 128
    fine_samples: int = 128
    coarse_loss_weight: float = 0.1
    resample_padding: float = 0.01  # added to the blurred coarse weights before resampling
    # Mip-NeRF 360: proposal sampling
    proposal_levels: int = 2
    proposal_samples: int = 64      # frusta per proposal level
    nerf_samples: int = 32          # frusta of the field after the last proposal level
    interlevel_weight: float = 1.0
    distortion_weight: float = 0.01
    proposal_backbone: str = "hash"  # hash (small grids, as nerfstudio) | mlp (the paper's 4 x 256)
    # occupancy: instant-ngp's occupancy-grid marching (shared with ngp), frusta of one marching
    # step each, the ray count adapting to ``target_samples`` per batch
    grid_resolution: int = 64
    grid_update_every: int = 16
    grid_warmup_steps: int = 256
    grid_ema: float = 0.95
    grid_threshold: float = 0.01
    steps_per_diagonal: int = 512
    early_stop_eps: float = 1e-4
    max_samples_per_ray: int = 1024
    target_samples: int = 1 << 16
    max_rays: int = 1 << 15
    # mlp backbone (Mip-NeRF's field)
    min_deg: int = 0                # IPE frequencies 2^min_deg .. 2^(max_deg - 1)
    max_deg: int = 16
    mlp_depth: int = 8
    mlp_width: int = 256
    skip_layer: int = 4             # the input is concatenated again after this many layers
    view_deg: int = 4
    view_width: int = 128
    proposal_mlp_depth: int = 4
    proposal_mlp_width: int = 256
    density_bias: float = -1.0      # density = softplus(raw + bias)
    rgb_padding: float = 0.001
    # hash backbone (Zip-NeRF style) and hash proposal fields
    n_levels: int = 16
    features_per_level: int = 2
    log2_table_size: int = 17
    base_resolution: int = 16
    max_resolution: int = 1024      # finest grid cells per axis over the box (contracted cube)
    hidden_dim: int = 64
    geo_feat_dim: int = 15
    sh_degree: int = 4
    color_hidden_layers: int = 2
    hash_backend: str = "auto"      # auto | nerfkit | tcnn
    proposal_n_levels: int = 5
    proposal_log2_table_size: int = 17
    proposal_max_resolution: int = 128
    # optimisation: Adam, warm-up, then log-linear decay from lr to lr * lr_final_factor
    lr: float = 0.0                 # 0 = by backbone: mlp 5e-4 (the paper), hash 1e-2
    lr_final_factor: float = 0.01
    lr_warmup_steps: int = 20
    weight_decay: float = 0.0       # on the MLPs only
    train_background: str = "random"  # random | white | black (RGBA scenes)
    render_chunk: int = 4096        # rays per chunk when rendering images


SPLAT_SCHEDULES: dict[str, dict[str, int]] = {
    "3dgs": {"sh_degree_interval": 1000, "init_points": 100_000, "refine_start": 500, "refine_stop": 15_000,
             "refine_every": 100, "reset_every": 3000},
    "short": {"sh_degree_interval": 100, "init_points": 20_000, "refine_start": 100, "refine_stop": 2000,
              "refine_every": 50, "reset_every": -1},
}


METHOD_CONFIGS: dict[str, type] = {"ngp": NGPConfig, "mipnerf": MipNeRFConfig, "splat": SplatConfig}


def method_config_class(method: str) -> type:
    if method not in METHOD_CONFIGS:
        raise NerfkitError(f"unknown method '{method}': expected one of {', '.join(METHOD_CONFIGS)}")
    return METHOD_CONFIGS[method]


def apply_overrides(config: Any, values: dict[str, Any], source: str) -> Any:
    """A copy of dataclass ``config`` with ``values`` set, type-checked; ``source`` names the origin."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    updates = {}
    for key, value in values.items():
        if key not in fields:
            raise NerfkitError(f"{source}: unknown setting '{key}' for {type(config).__name__}; "
                               f"expected one of {', '.join(sorted(fields))}")
        updates[key] = _coerce(value, type(getattr(config, key)), f"{source}: setting '{key}'")
    return dataclasses.replace(config, **updates)


def _coerce(value: Any, kind: type, where: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise NerfkitError(f"{where} must be true or false, got {value!r}")
    if kind in (int, float):
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise NerfkitError(f"{where} must be a number, got {value!r}") from None
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise NerfkitError(f"{where} must be a whole number, got {value!r}")
        return number
    if kind is str:
        return str(value)
    return value


def load_preset(name_or_path: str) -> dict[str, dict[str, Any]]:
    """Read a preset by name (``configs/<name>.yaml``) or path; returns ``{train: .., method: ..}``."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
        raise NerfkitError(f"config '{name_or_path}' not found: expected a YAML file or one of {known}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise NerfkitError(f"config '{path}' is not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict) or not set(data) <= {"train", "method"}:
        raise NerfkitError(f"config '{path}' must be a mapping with the sections 'train' and 'method'")
    return {"train": dict(data.get("train") or {}), "method": dict(data.get("method") or {})}


@dataclass
class RunConfig:
    """Everything a run was started with; saved as ``config.yaml`` in the run folder."""

    train: TrainConfig = field(default_factory=TrainConfig)
    method: Any = field(default_factory=NGPConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {"train": dataclasses.asdict(self.train), "method": dataclasses.asdict(self.method)}

    @staticmethod
    def from_dict(data: dict[str, Any], source: str) -> "RunConfig":
        for section in ("train", "method"):
            if not isinstance(data.get(section, {}), dict):
                raise NerfkitError(f"{source}: '{section}' must be a mapping of settings, got "
                                   f"{type(data[section]).__name__}")
        train = apply_overrides(TrainConfig(), data.get("train", {}), source)
        method = apply_overrides(method_config_class(train.method)(), data.get("method", {}), source)
        return RunConfig(train, method)
