"""Suite-wide fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _eager_twins(monkeypatch):
    """Keep the CPU twins eager (torch.compile off); the one compile-parity test turns it back on."""
    monkeypatch.setenv("NERFKIT_COMPILE", "0")
