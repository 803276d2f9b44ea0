"""The one table of methods: name -> settings class, implementation and a line for the CLI help.

Settings classes are light (no torch) and imported here; implementations are imported on first use,
so ``nerfkit --help`` and reading a ``config.yaml`` never load a method's code.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nerfkit.core.errors import NerfkitError
from nerfkit.core.settings import Settings
from nerfkit.methods.mipnerf_config import MipNeRFConfig
from nerfkit.methods.neus_config import NeuSConfig
from nerfkit.methods.ngp_config import NGPConfig
from nerfkit.methods.splat_config import SplatConfig

if TYPE_CHECKING:
    from nerfkit.data.inputs import SceneInfo
    from nerfkit.methods.base import Method


@dataclass(frozen=True)
class MethodSpec:
    """One method: its ``--method`` name, settings class, implementation (``module:Class``) and the
    one line ``nerfkit train --help`` shows."""

    name: str
    config: type[Settings]
    implementation: str
    summary: str

    def load(self) -> type:
        """The implementation class (imported now)."""
        module, _, name = self.implementation.partition(":")
        return getattr(importlib.import_module(module), name)


METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec("ngp", NGPConfig, "nerfkit.methods.ngp:NGP", "hash-grid NeRF, Instant-NGP"),
    MethodSpec("mipnerf", MipNeRFConfig, "nerfkit.methods.mipnerf:MipNeRF",
               "anti-aliased cones, Mip-NeRF; Mip-NeRF 360 for unbounded scenes"),
    MethodSpec("splat", SplatConfig, "nerfkit.methods.splat:Splat", "3D Gaussian splatting"),
    MethodSpec("neus", NeuSConfig, "nerfkit.methods.neus:NeuS",
               "a signed distance field, NeuS on a hash grid: surfaces for meshes"),
)}


def method_spec(name: str) -> MethodSpec:
    """The method called ``name``; one sentence naming the known ones otherwise."""
    if name not in METHODS:
        raise NerfkitError(f"unknown method '{name}': expected one of {', '.join(METHODS)}")
    return METHODS[name]


def build_method(name: str, config: Settings, scene: SceneInfo) -> Method:
    """Instantiate method ``name`` (imported now) from its settings and scene information."""
    return method_spec(name).load()(config, scene)


def methods_help() -> str:
    """``ngp (hash-grid NeRF ...), mipnerf (...) or splat (...)`` for the CLI help."""
    items = [f"{spec.name} ({spec.summary})" for spec in METHODS.values()]
    return ", ".join(items[:-1]) + " or " + items[-1]
