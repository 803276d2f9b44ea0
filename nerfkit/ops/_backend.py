"""Per-call dispatch between the native kernels and the pure-PyTorch twins.

Rule (docs/design.md, "Ops: dispatch per call"): tensors that are all on the CPU take the CPU
kernels, tensors that are all on one CUDA device the CUDA kernels, when the environment enables
that backend (:mod:`nerfkit.ops._flags`) and its extension built; everything else takes the twin.
A backend whose build fails warns once and then uses the twins for the rest of the process.
"""

from __future__ import annotations

import functools
import warnings
from types import ModuleType

from torch import Tensor

from nerfkit.ops._flags import native_enabled

_MAX_ERROR_CHARS = 400


@functools.lru_cache(maxsize=None)
def load_native(device_type: str) -> ModuleType | None:
    """Build (first call, cached on disk by torch) and import the ``cpu`` or ``cuda`` extension, or
    None after one warning when it cannot be built (no compiler, no ninja, no GPU, ...)."""
    try:
        from nerfkit.ops import _native_build
        return _native_build.build(device_type)
    except Exception as error:  # noqa: BLE001 - any build failure means: use the twins
        message = " ".join(str(error).split())
        if len(message) > _MAX_ERROR_CHARS:
            message = message[:_MAX_ERROR_CHARS] + " ... (NERFKIT_BUILD_VERBOSE=1 shows the compiler output)"
        warnings.warn(f"nerfkit {device_type.upper()} kernels unavailable, using the PyTorch twins: {message}",
                      stacklevel=3)
        return None


def backend_of(*tensors: Tensor) -> str | None:
    """``cpu`` or ``cuda`` when all ``tensors`` are on that device type (CUDA: one device), else None."""
    if not tensors:
        return None
    device = tensors[0].device
    if any(t.device != device for t in tensors[1:]):
        return None
    return device.type if device.type in ("cpu", "cuda") else None


def use_native(*tensors: Tensor) -> bool:
    """Whether an op over ``tensors`` should call the native kernel of their device."""
    kind = backend_of(*tensors)
    if kind is None or not native_enabled(kind):
        return False
    return load_native(kind) is not None
