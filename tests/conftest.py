"""Suite-wide fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _eager_twins(monkeypatch):
    """Keep the CPU twins eager (torch.compile off); the one compile-parity test turns it back on."""
    monkeypatch.setenv("NERFKIT_COMPILE", "0")


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: a second OpenMP thread only adds start-up and contention cost."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """A 32 px demo scene in NeRF-synthetic layout (12 train, 2 val, 3 test images)."""
    from nerfkit.data.demo import write_demo_scene

    return write_demo_scene(tmp_path_factory.mktemp("demo") / "tiny-demo", size=32, n_train=12,
                            n_test=3, n_val=2, mesh_resolution=48)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.cuda`` tests skip cleanly where torch sees no GPU (every folder)."""
    import torch

    if item.get_closest_marker("cuda") is not None and not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU: torch.cuda.is_available() is False")
