"""Scene formats -> one :class:`~nerfkit.data.scene.Scene`. Entry point: :func:`load_scene`.

``load_scene`` is imported lazily: :mod:`nerfkit.cameras` imports :mod:`nerfkit.data.scene`, and the
readers import :mod:`nerfkit.cameras`, so an eager import here would be circular.
"""

__all__ = ["load_scene"]


def __getattr__(name: str):
    if name == "load_scene":
        from nerfkit.data.load import load_scene
        return load_scene
    raise AttributeError(f"module 'nerfkit.data' has no attribute {name!r}")
