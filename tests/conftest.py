"""Suite-wide fixtures."""

from __future__ import annotations

import signal

import pytest


def pytest_configure(config):
    """Let Ctrl-C reach the commands the tests start. A shell that runs the suite in the background
    (``cmd &`` without job control) starts it with SIGINT ignored, and an ignored signal stays
    ignored in every child: their Ctrl-C tests (``nerfkit view``, ``train``, ``--nproc``) would then
    wait for an exit that never comes. A handler, unlike an ignore, is reset to the default in a
    child, so each Python child installs its own KeyboardInterrupt again."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
