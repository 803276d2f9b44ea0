"""The only Python that touches cuda/: each public op checks inputs and dispatches per call,
from the tensors' device, to a native kernel (:mod:`._native`) or to its pure-PyTorch ``*_ref``
twin (same signature; all of them in :mod:`.reference`).
"""

from nerfkit.ops.compositing import Composited, composite, composite_ref, render_weights
from nerfkit.ops.hash_encoding import (hash_encode, hash_encode_position_grad, hash_encode_position_grad_ref,
                                      hash_encode_ref, level_layout)
from nerfkit.ops.ray_marching import (
                                      grid_lookup,
                                      march_rays,
                                      march_rays_ref,
                                      ray_aabb_intersect,
                                      ray_aabb_intersect_ref,
)

__all__ = [
    "Composited", "composite", "composite_ref", "render_weights",
    "hash_encode", "hash_encode_position_grad", "hash_encode_position_grad_ref", "hash_encode_ref",
    "level_layout",
    "grid_lookup", "march_rays", "march_rays_ref", "ray_aabb_intersect", "ray_aabb_intersect_ref",
]
