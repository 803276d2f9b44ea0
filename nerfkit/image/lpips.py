"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric"),
v0.1, as papers report it next to PSNR and SSIM; from weights already on the machine, never downloaded.

The distance between two images ``x0, x1`` in [-1, 1] is

    d(x0, x1) = sum_l  mean_{h,w}  sum_c  w_{l,c} (n0_{l,chw} - n1_{l,chw})^2

where ``n_l`` are the activations of layer ``l`` of a fixed network (after the ReLUs ``relu1..relu5``
of AlexNet, ``relu1_2, relu2_2, relu3_3, relu4_3, relu5_3`` of VGG-16), each input first shifted and
scaled by the constants below, the activations divided by their channel-wise L2 norm (+ 1e-10), and
``w_l`` the learnt non-negative linear layers of the ``lpips`` package (``weights/v0.1/alex.pth``,
``vgg.pth``: ``lin{l}.model.1.weight`` of shape (1, C_l, 1, 1)). AlexNet is the default, as in the
field; VGG on request.

Weights (both needed; nerfkit writes its own network code, the weights are the published ones):

- the backbone, a torchvision state dict (``features.<i>.weight|bias``): ``alexnet-owt-7be5be79.pth``
  or ``vgg16-397923af.pth`` (any ``alexnet-*.pth`` / ``vgg16-*.pth``), looked up in the folder given
  (``--lpips-weights DIR``), then torch's hub cache (``$TORCH_HOME/hub/checkpoints``, by default
  ``~/.cache/torch/hub/checkpoints``), where torchvision keeps them;
- the linear layers ``alex.pth`` / ``vgg.pth``: in the folder given (or its ``v0.1/``), else in an
  installed ``lpips`` package (``pip install --no-deps lpips``; BSD-2-Clause; only its weight files
  are read, the package is never imported, so torchvision is not needed).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

LPIPS_NETS = ("alex", "vgg")
BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
BACKBONE_PATTERNS = {"alex": "alexnet-*.pth", "vgg": "vgg16-*.pth"}
LINEAR_FILES = {"alex": "alex.pth", "vgg": "vgg.pth"}
NET_NAMES = {"alex": "AlexNet", "vgg": "VGG-16"}

SHIFT = (-0.030, -0.088, -0.188)
"""Per-channel shift of the [-1, 1] input (the lpips package's scaling layer)."""
SCALE = (0.458, 0.448, 0.450)
"""Per-channel scale of the shifted input."""
NORM_EPS = 1e-10
MIN_SIZE = 32
"""Smallest image side scored (AlexNet's five stages need it)."""

# torchvision's ``features`` layouts: (kind, out channels, kernel, stride, padding) per module.
_ALEX_LAYERS = [("conv", 64, 11, 4, 2), ("relu",), ("pool",), ("conv", 192, 5, 1, 2), ("relu",), ("pool",),
                ("conv", 384, 3, 1, 1), ("relu",), ("conv", 256, 3, 1, 1), ("relu",),
                ("conv", 256, 3, 1, 1), ("relu",)]
_ALEX_TAPS = (1, 4, 7, 9, 11)                           # relu1 .. relu5
_VGG_CHANNELS = [64, 64, "pool", 128, 128, "pool", 256, 256, 256, "pool", 512, 512, 512, "pool", 512, 512, 512]
_VGG_TAPS = (3, 8, 15, 22, 29)                          # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3


def _alexnet_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for spec in _ALEX_LAYERS:
        if spec[0] == "conv":
            _, out, kernel, stride, padding = spec
            layers.append(nn.Conv2d(channels, out, kernel, stride, padding))
            channels = out
        elif spec[0] == "relu":
            layers.append(nn.ReLU())
        else:
            layers.append(nn.MaxPool2d(3, 2))
    return nn.Sequential(*layers)


def _vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for spec in _VGG_CHANNELS:
        if spec == "pool":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, int(spec), 3, 1, 1), nn.ReLU()]
            channels = int(spec)
    return nn.Sequential(*layers)


def layer_channels(net: str) -> list[int]:
    """Channels of the five tapped layers: AlexNet 64, 192, 384, 256, 256; VGG 64, 128, 256, 512, 512."""
    return [64, 192, 384, 256, 256] if net == "alex" else [64, 128, 256, 512, 512]


class LPIPS(nn.Module):
    """The LPIPS v0.1 distance with a given backbone and linear layers.

    Args:
        net: ``alex`` or ``vgg``.
        backbone: torchvision state dict of the network (``features.*`` keys are used).
        linear: the lpips package's state dict (``lin0.model.1.weight`` .. ``lin4.model.1.weight``).
    Raises:
        ValueError: a state dict lacks a key or has a wrongly shaped tensor.
    """

    def __init__(self, net: str, backbone: dict[str, Tensor], linear: dict[str, Tensor]) -> None:
        super().__init__()
        if net not in LPIPS_NETS:
            raise ValueError(f"net must be one of {LPIPS_NETS}, got {net!r}")
        self.net = net
        self.features = _alexnet_features() if net == "alex" else _vgg16_features()
        self.taps = _ALEX_TAPS if net == "alex" else _VGG_TAPS
        features = {key.removeprefix("features."): value for key, value in backbone.items()
                    if key.startswith("features.")}
        try:
            self.features.load_state_dict(features, strict=True)
        except RuntimeError as error:
            raise ValueError(f"the {NET_NAMES[net]} weights do not fit torchvision's layout: "
                             f"{str(error).splitlines()[0]}") from None
        weights = []
        for index, channels in enumerate(layer_channels(net)):
            key = f"lin{index}.model.1.weight"
            if key not in linear or tuple(linear[key].shape) != (1, channels, 1, 1):
                found = tuple(linear[key].shape) if key in linear else "missing"
                raise ValueError(f"the LPIPS linear layers lack {key} of shape (1, {channels}, 1, 1) "
                                 f"(found {found})")
            weights.append(linear[key].float().reshape(channels))
        self.linear = nn.ParameterList([nn.Parameter(w, requires_grad=False) for w in weights])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def activations(self, images: Tensor) -> list[Tensor]:
        """(N, 3, H, W) images in [-1, 1] -> the five tapped activations, each unit-normalised over
        its channels."""
        x = (images - self.shift) / self.scale
        out = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                out.append(x / (torch.sqrt(torch.sum(x * x, dim=1, keepdim=True)) + NORM_EPS))
            if index == self.taps[-1]:
                break
        return out

    def forward(self, images0: Tensor, images1: Tensor) -> Tensor:
        """(N, 3, H, W) pairs in [-1, 1] -> (N,) LPIPS distances (0 for identical images)."""
        total = torch.zeros(images0.shape[0], device=images0.device)
        for a, b, weight in zip(self.activations(images0), self.activations(images1), self.linear):
            total = total + torch.einsum("nchw,c->nhw", (a - b) ** 2, weight).mean(dim=(1, 2))
        return total

    @torch.no_grad()
    def distance(self, pred: Tensor, target: Tensor) -> float:
        """LPIPS between two (H, W, 3) images in [0, 1] (mapped to [-1, 1], as the field does).

        Raises:
            ValueError: the images differ in shape or a side is below :data:`MIN_SIZE` pixels.
        """
        if pred.shape != target.shape or pred.ndim != 3 or pred.shape[-1] != 3:
            raise ValueError(f"LPIPS needs two (H, W, 3) images of one size, got {tuple(pred.shape)} "
                             f"and {tuple(target.shape)}")
        if min(pred.shape[:2]) < MIN_SIZE:
            raise ValueError(f"LPIPS needs images of at least {MIN_SIZE} px, got {tuple(pred.shape[:2])}")
        device = self.shift.device

        def prepared(image: Tensor) -> Tensor:
            return image.detach().float().clamp(0, 1).to(device).permute(2, 0, 1)[None] * 2.0 - 1.0

        return float(self(prepared(pred), prepared(target))[0])


@dataclass(frozen=True)
class LpipsMetric:
    """LPIPS as evaluation uses it: the network when its weights were found, else why not.

    Attributes:
        net: ``alex`` or ``vgg``.
        model: the loaded :class:`LPIPS`, or None.
        reason: one line saying why ``model`` is None ("" when loaded).
    """

    net: str
    model: LPIPS | None
    reason: str = ""


def hub_checkpoints_dir() -> Path:
    """torch's hub cache for weights: ``$TORCH_HOME/hub/checkpoints`` (``~/.cache/torch/...``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _installed_linear_dir() -> Path | None:
    """``weights/v0.1`` of an installed ``lpips`` package, located without importing it."""
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1"


def find_weights(net: str, weights_dir: Path | None = None) -> tuple[Path | None, Path | None, str]:
    """(backbone file, linear-layer file, reason): the files to load, or None and one line why."""
    folders = ([Path(weights_dir)] if weights_dir is not None else []) + [hub_checkpoints_dir()]
    backbone = None
    for folder in folders:
        exact = folder / BACKBONE_FILES[net]
        found = [exact] if exact.is_file() else sorted(folder.glob(BACKBONE_PATTERNS[net]))
        if found:
            backbone = found[0]
            break
    linear_dirs = ([Path(weights_dir), Path(weights_dir) / "v0.1"] if weights_dir is not None else [])
    installed = _installed_linear_dir()
    linear_dirs += [installed] if installed is not None else []
    linear = next((d / LINEAR_FILES[net] for d in linear_dirs if (d / LINEAR_FILES[net]).is_file()), None)
    where = " or ".join(str(f) for f in folders)
    if backbone is None:
        return None, linear, (f"no {NET_NAMES[net]} weights ({BACKBONE_FILES[net]}) in {where}; nerfkit never "
                              f"downloads them: copy torchvision's file there or pass --lpips-weights DIR")
    if linear is None:
        return backbone, None, (f"no LPIPS linear layers ({LINEAR_FILES[net]}): pip install --no-deps lpips, "
                                f"or put {LINEAR_FILES[net]} in the folder given to --lpips-weights")
    return backbone, linear, ""


def load_lpips(net: str = "alex", weights_dir: Path | None = None,
               device: torch.device | str = "cpu") -> LpipsMetric:
    """LPIPS with ``net`` (``alex`` or ``vgg``) from the weights on this machine (see the module
    docstring for where they are looked up); an :class:`LpipsMetric` without a model, and the
    reason in one line, when they are missing or unreadable."""
    if net not in LPIPS_NETS:
        raise ValueError(f"net must be one of {LPIPS_NETS}, got {net!r}")
    backbone, linear, reason = find_weights(net, weights_dir)
    if reason:
        return LpipsMetric(net, None, reason)
    try:
        model = LPIPS(net, _load(backbone), _load(linear))
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as error:
        first = (str(error).splitlines() or [type(error).__name__])[0][:200]
        return LpipsMetric(net, None, f"the LPIPS weights {backbone} / {linear} could not be used: {first}")
    return LpipsMetric(net, model.to(device))


def _load(path: Path) -> dict[str, Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no state dict")
    return state
