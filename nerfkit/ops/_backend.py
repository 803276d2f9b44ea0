"""Per-call dispatch between native CUDA kernels and the pure-PyTorch twins.

Rule (docs/design.md): CPU/MPS tensors take the ``*_ref`` twin; CUDA tensors take the native kernel when
native kernels are enabled and the extension built, else the twin with one warning.

Native kernels are opt-in until they have been verified on a GPU against their twins
(:mod:`nerfkit.ops._flags`: ``NERFKIT_NATIVE=1`` enables them, ``NERFKIT_FORCE_REF=1`` forces the
twins even then).
"""

from __future__ import annotations

import functools
import warnings
from types import ModuleType

from torch import Tensor

from nerfkit.ops._flags import native_enabled


@functools.lru_cache(maxsize=1)
def load_native() -> ModuleType | None:
    """Build (first call, cached on disk by torch) and import the CUDA extension, or None."""
    try:
        from nerfkit.ops import _native_build
        return _native_build.build()
    except Exception as error:  # noqa: BLE001 - any build failure means: use the twins
        warnings.warn(f"nerfkit CUDA kernels unavailable, using PyTorch twins: {error}", stacklevel=3)
        return None


def use_native(*tensors: Tensor) -> bool:
    """Whether an op over ``tensors`` should call the native kernel."""
    if not tensors or not all(t.is_cuda for t in tensors):
        return False
    if not native_enabled():
        return False
    return load_native() is not None
