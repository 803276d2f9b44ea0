"""tests/ops: skip ``@pytest.mark.cuda`` tests cleanly where no GPU is present.

Self-contained on purpose (a per-item hook, scoped to this folder), so it keeps working whatever a
top-level tests/conftest.py does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

# The parity tests share checks in _cuda_parity_cases.py; make it importable whatever --import-mode.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("cuda") is not None and not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU: torch.cuda.is_available() is False")


@pytest.fixture(scope="session")
def cpu_extension():
    """The CPU extension, built once per session (cached on disk by torch across sessions). A build
    error fails the tests that use it: CI must run the CPU kernels, never skip them."""
    from nerfkit.ops import _native_build
    return _native_build.build_cpu()


@pytest.fixture
def native_env(monkeypatch):
    """NERFKIT_NATIVE / NERFKIT_FORCE_REF as the defaults (auto, unset)."""
    monkeypatch.delenv("NERFKIT_NATIVE", raising=False)
    monkeypatch.delenv("NERFKIT_FORCE_REF", raising=False)
    return monkeypatch


@pytest.fixture
def threads():
    """Set torch's (and so OpenMP's) thread count within a test; restored afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)
