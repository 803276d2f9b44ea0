"""The environment switches of the ops (read per call, so tests and users may change them at run time).

- ``NERFKIT_NATIVE=auto`` (default): native kernels on the backends whose kernels have passed their
  parity tests against the twins (:data:`VERIFIED_BACKENDS`: the CPU; CUDA once a GPU has run
  ``tests/ops/test_cuda_parity.py``); ``1``: on every backend that builds; ``0``: never.
- ``NERFKIT_FORCE_REF=1``: always use the pure-PyTorch twins, whatever ``NERFKIT_NATIVE`` says.
- ``NERFKIT_COMPILE=0``: keep the CPU twins out of ``torch.compile``.
"""

from __future__ import annotations

import os
from typing import Literal

from nerfkit.core.errors import NerfkitError

NativeMode = Literal["auto", "on", "off"]

BACKENDS = ("cpu", "cuda")
"""Device types with native kernels."""

VERIFIED_BACKENDS = frozenset({"cpu"})
"""Backends that ``NERFKIT_NATIVE=auto`` turns on: their kernels passed the parity tests in CI."""

_MODES: dict[str, NativeMode] = {"auto": "auto", "": "auto", "1": "on", "0": "off"}


def compile_enabled() -> bool:
    """Whether CPU twins may use torch.compile (``NERFKIT_COMPILE=0`` turns it off)."""
    return os.environ.get("NERFKIT_COMPILE", "1") not in ("", "0")


def disable_compile() -> None:
    """Turn torch.compile off for the rest of this process (after a compile failure)."""
    os.environ["NERFKIT_COMPILE"] = "0"


def force_ref() -> bool:
    """True when ``NERFKIT_FORCE_REF`` asks for the twins everywhere."""
    return os.environ.get("NERFKIT_FORCE_REF", "0") not in ("", "0")


def native_mode() -> NativeMode:
    """``NERFKIT_NATIVE`` as ``auto``, ``on`` or ``off``; a NerfkitError for any other value."""
    raw = os.environ.get("NERFKIT_NATIVE", "auto").strip().lower()
    if raw not in _MODES:
        raise NerfkitError(f"NERFKIT_NATIVE must be 0, 1 or auto, got '{raw}'")
    return _MODES[raw]


def native_enabled(device_type: str) -> bool:
    """Whether the environment lets tensors on ``device_type`` (``cpu``, ``cuda``, ...) take native kernels."""
    if device_type not in BACKENDS or force_ref():
        return False
    mode = native_mode()
    if mode == "auto":
        return device_type in VERIFIED_BACKENDS
    return mode == "on"
