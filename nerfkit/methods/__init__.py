"""Methods, one file each, behind the protocol in :mod:`nerfkit.methods.base`."""

from __future__ import annotations

from typing import Any

from nerfkit.errors import NerfkitError
from nerfkit.methods.base import Method, RayBatch, SceneInfo


def build_method(name: str, config: Any, scene: SceneInfo) -> Method:
    """Instantiate method ``name`` (imported lazily) from its config and scene information."""
    if name == "ngp":
        from nerfkit.methods.ngp import NGP
        return NGP(config, scene)
    if name == "mipnerf":
        from nerfkit.methods.mipnerf import MipNeRF
        return MipNeRF(config, scene)
    if name == "splat":
        from nerfkit.methods.splat import Splat
        return Splat(config, scene)
    raise NerfkitError(f"unknown method '{name}': expected ngp, mipnerf or splat")


__all__ = ["Method", "RayBatch", "SceneInfo", "build_method"]
