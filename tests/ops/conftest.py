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
