"""The environment switches of the ops (read per call, so tests and users may change them at run time).

- ``NERFKIT_NATIVE=1``: use the native kernels where they built (opt-in until verified on a GPU).
- ``NERFKIT_FORCE_REF=1``: always use the pure-PyTorch twins, even with ``NERFKIT_NATIVE=1``.
- ``NERFKIT_COMPILE=0``: keep the CPU twins out of ``torch.compile``.
"""

from __future__ import annotations

import os


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
