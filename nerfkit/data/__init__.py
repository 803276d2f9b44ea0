"""Scenes in: formats -> one :class:`~nerfkit.data.scene.Scene`, its cameras and rays, and the batches
methods train on. Entry point: :func:`load_scene`.

``load_scene`` is imported on first use, so that ``import nerfkit.data.cameras`` (say) does not load
the format readers and pycolmap.
"""

__all__ = ["load_scene"]


def __getattr__(name: str):
    if name == "load_scene":
        from nerfkit.data.load import load_scene
        return load_scene
    raise AttributeError(f"module 'nerfkit.data' has no attribute {name!r}")
