"""Per-call dispatch between native CUDA kernels and the pure-PyTorch twins.

Rule (DESIGN.md): CPU/MPS tensors take the ``*_ref`` twin; CUDA tensors take the native kernel when
native kernels are enabled and the extension built, else the twin with one warning.

Native kernels are opt-in until they have been verified on a GPU against their twins:
``NERFKIT_NATIVE=1`` enables them, ``NERFKIT_FORCE_REF=1`` forces the twins even then.
On the CPU the twins of the hottest ops run through ``torch.compile`` (still pure PyTorch, fused
by inductor into one loop); ``NERFKIT_COMPILE=0`` keeps them eager.
"""

from __future__ import annotations

import functools
import os
import warnings
from types import ModuleType

from torch import Tensor


def compile_enabled() -> bool:
    """Whether CPU twins may use torch.compile (``NERFKIT_COMPILE=0`` turns it off)."""
    return os.environ.get("NERFKIT_COMPILE", "1") not in ("", "0")


def disable_compile() -> None:
    """Turn torch.compile off for the rest of this process (after a compile failure)."""
    os.environ["NERFKIT_COMPILE"] = "0"


def native_enabled() -> bool:
    """True when the environment asks for native kernels and does not force the twins."""
    if os.environ.get("NERFKIT_FORCE_REF", "0") not in ("", "0"):
        return False
    return os.environ.get("NERFKIT_NATIVE", "0") not in ("", "0")


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
