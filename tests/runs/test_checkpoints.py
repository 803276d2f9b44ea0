"""Checkpoints round-trip, keep the N newest, never replace a good file with a bad one, and the
newest readable one is found even when the newest file is damaged."""

from __future__ import annotations

import errno
import io
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfkit.runs.checkpoints import (capture_rng_state, latest_checkpoint, load_checkpoint,
                                 restore_rng_state, save_checkpoint)
from nerfkit.core.errors import NerfkitError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ckpt_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def all_names(folder: Path) -> list[str]:
    """Every entry, hidden temp files included."""
    return sorted(p.name for p in folder.iterdir())


def small_state(value: float) -> dict:
    return {"method": {"weight": torch.full((3, 2), value)}, "trainer": {"best_psnr": value}}


def truncate(path: Path, fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


# --- round trip ------------------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    gen = torch.Generator().manual_seed(0)
    state = {
        "method": {"density.weight": torch.randn(4, 5, generator=gen),
                   "grid": torch.randint(0, 2, (8,), generator=gen, dtype=torch.uint8).bool(),
                   "counts": torch.arange(6, dtype=torch.int64)},
        "optimizer": {"adam": {"state": {0: {"step": torch.tensor(17.0)}}, "param_groups": [{"lr": 1e-2}]}},
        "trainer": {"best_psnr": 31.25, "schedule": [1, 2, 3], "name": "ngp", "done": False, "none": None},
    }
    path = save_checkpoint(tmp_path, 1234, state)
    assert path == tmp_path / "checkpoints" / "step-0001234.pt"
    loaded = load_checkpoint(path)
    assert loaded["step"] == 1234 and isinstance(loaded["step"], int)
    for key, tensor in state["method"].items():
        assert loaded["method"][key].dtype == tensor.dtype
        assert torch.equal(loaded["method"][key], tensor)
    assert torch.equal(loaded["optimizer"]["adam"]["state"][0]["step"], torch.tensor(17.0))
    assert loaded["optimizer"]["adam"]["param_groups"] == [{"lr": 1e-2}]
    assert loaded["trainer"] == state["trainer"]


def test_step_argument_overrides_a_step_in_state(tmp_path):
    path = save_checkpoint(tmp_path, 7, {"step": 999})
    assert path.name == "step-0000007.pt"
    assert load_checkpoint(path)["step"] == 7


# --- keep N ----------------------------------------------------------------------------------------

def test_keep_n_leaves_exactly_the_n_newest(tmp_path):
    for step in (10, 20, 30, 40, 50, 60):
        save_checkpoint(tmp_path, step, small_state(step), keep=3)
    assert all_names(ckpt_dir(tmp_path)) == ["step-0000040.pt", "step-0000050.pt", "step-0000060.pt"]
    for step in (40, 50, 60):
        loaded = load_checkpoint(ckpt_dir(tmp_path) / f"step-{step:07d}.pt")
        assert torch.equal(loaded["method"]["weight"], torch.full((3, 2), float(step)))


def test_keep_one_keeps_only_the_latest(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {}, keep=1)
    assert all_names(ckpt_dir(tmp_path)) == ["step-0000003.pt"]


def test_pruning_orders_by_step_not_by_name_length(tmp_path):
    # 8 digits sort before 7 as strings ("step-10000000" < "step-9000000"); by step it is newest.
    for step in (8_000_000, 9_000_000, 10_000_000):
        save_checkpoint(tmp_path, step, {}, keep=2)
    assert all_names(ckpt_dir(tmp_path)) == ["step-10000000.pt", "step-9000000.pt"]
    assert latest_checkpoint(tmp_path).name == "step-10000000.pt"


def test_an_older_step_saved_last_is_kept(tmp_path):
    for step in (4, 5, 6):
        save_checkpoint(tmp_path, step, {}, keep=3)
    save_checkpoint(tmp_path, 2, {}, keep=3)              # e.g. re-running from an earlier step
    assert all_names(ckpt_dir(tmp_path)) == ["step-0000002.pt", "step-0000005.pt", "step-0000006.pt"]


def test_keep_below_one_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="keep"):
        save_checkpoint(tmp_path, 1, {}, keep=0)
    assert not ckpt_dir(tmp_path).exists()


# --- failing saves ---------------------------------------------------------------------------------

def half_writing_save(error: Exception, written: list[Path] | None = None):
    """A torch.save that writes the first half of the real payload, then fails with ``error``;
    the files it wrote to are appended to ``written``."""
    real_save = torch.save

    def fake(obj, file, *args, **kwargs):
        if written is not None:
            written.append(Path(file.name))
        buffer = io.BytesIO()
        real_save(obj, buffer)
        data = buffer.getvalue()
        file.write(data[: len(data) // 2])
        raise error

    return fake


def disk_full() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


def wrapped_disk_full() -> RuntimeError:
    """What torch.save raises for a failed write: a RuntimeError raised while handling the OSError."""
    try:
        raise disk_full()
    except OSError:
        try:
            raise RuntimeError("[enforce fail at inline_container.cc] . PytorchStreamWriter failed writing file")
        except RuntimeError as error:
            return error


@pytest.mark.parametrize("make_error", [disk_full, wrapped_disk_full], ids=["oserror", "wrapped"])
def test_failing_save_raises_nerfkit_error_and_keeps_the_previous(tmp_path, monkeypatch, make_error):
    previous = save_checkpoint(tmp_path, 100, small_state(1.0))
    before = previous.read_bytes()
    written: list[Path] = []
    monkeypatch.setattr(torch, "save", half_writing_save(make_error(), written))
    with pytest.raises(NerfkitError) as info:
        save_checkpoint(tmp_path, 200, small_state(2.0))
    message = str(info.value)
    assert "No space left on device" in message
    assert "step-0000200.pt" in message
    monkeypatch.undo()
    # The half file went to a hidden temp file beside the checkpoints, which is gone again.
    assert len(written) == 1 and written[0].parent == ckpt_dir(tmp_path)
    assert written[0].name.startswith(".step-0000200.pt.tmp-")
    assert not written[0].exists()
    assert all_names(ckpt_dir(tmp_path)) == ["step-0000100.pt"]          # no temp file left
    assert previous.read_bytes() == before
    assert torch.equal(load_checkpoint(previous)["method"]["weight"], torch.full((3, 2), 1.0))
    assert latest_checkpoint(tmp_path) == previous


def test_failing_overwrite_of_the_same_step_keeps_the_old_file(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path, 5, small_state(1.0))
    monkeypatch.setattr(torch, "save", half_writing_save(disk_full()))
    with pytest.raises(NerfkitError):
        save_checkpoint(tmp_path, 5, small_state(2.0))
    monkeypatch.undo()
    assert all_names(ckpt_dir(tmp_path)) == ["step-0000005.pt"]
    assert torch.equal(load_checkpoint(path)["method"]["weight"], torch.full((3, 2), 1.0))


class NotAllowed:
    """Not loadable with weights_only=True."""


def test_state_that_does_not_load_back_never_replaces_anything(tmp_path):
    previous = save_checkpoint(tmp_path, 1, small_state(1.0))
    with pytest.raises(Exception) as info:
        save_checkpoint(tmp_path, 2, {"trainer": NotAllowed()})
    assert not isinstance(info.value, NerfkitError)          # a bug in the caller, not user input
    assert all_names(ckpt_dir(tmp_path)) == ["step-0000001.pt"]
    assert latest_checkpoint(tmp_path) == previous


# --- finding the newest good one ---------------------------------------------------------------

def test_latest_checkpoint_is_the_highest_step(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for step in (3, 12, 7):
        save_checkpoint(tmp_path, step, {}, keep=5)
    assert latest_checkpoint(tmp_path) == ckpt_dir(tmp_path) / "step-0000012.pt"


def test_latest_checkpoint_skips_a_truncated_newest_file(tmp_path):
    older = save_checkpoint(tmp_path, 1, small_state(1.0))
    newest = save_checkpoint(tmp_path, 2, small_state(2.0))
    truncate(newest)
    with pytest.warns(UserWarning, match="step-0000002.pt"):
        found = latest_checkpoint(tmp_path)
    assert found == older
    assert load_checkpoint(found)["step"] == 1


def test_latest_checkpoint_is_none_when_all_are_damaged(tmp_path):
    for step in (1, 2):
        truncate(save_checkpoint(tmp_path, step, {}), 0.3)
    with pytest.warns(UserWarning):
        assert latest_checkpoint(tmp_path) is None


def test_latest_checkpoint_ignores_temp_files(tmp_path):
    good = save_checkpoint(tmp_path, 1, {})
    (ckpt_dir(tmp_path) / ".step-0000009.pt.tmp-1-abcd").write_bytes(b"partial")
    (ckpt_dir(tmp_path) / "notes.txt").write_text("x")
    assert latest_checkpoint(tmp_path) == good


# --- loading damaged files -------------------------------------------------------------------------

def test_load_checkpoint_of_garbage_names_the_file(tmp_path):
    garbage = tmp_path / "step-0000001.pt"
    garbage.write_bytes(b"this is not a zip file at all" * 10)
    with pytest.raises(NerfkitError, match="corrupt or truncated") as info:
        load_checkpoint(garbage)
    assert str(garbage) in str(info.value)


def test_load_checkpoint_of_a_truncated_file_names_the_file(tmp_path):
    path = save_checkpoint(tmp_path, 3, small_state(3.0))
    truncate(path)
    with pytest.raises(NerfkitError, match="step-0000003.pt"):
        load_checkpoint(path)


def test_load_checkpoint_of_a_missing_file(tmp_path):
    with pytest.raises(NerfkitError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_load_checkpoint_of_a_foreign_torch_file(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(NerfkitError, match="not a nerfkit checkpoint") as info:
        load_checkpoint(path)
    assert "weights.pt" in str(info.value)


# --- random state ----------------------------------------------------------------------------------

def draw() -> tuple:
    return torch.rand(5), np.random.rand(3), random.random(), torch.randn(2)


def assert_same_draws(a: tuple, b: tuple) -> None:
    assert torch.equal(a[0], b[0]) and torch.equal(a[3], b[3])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]


def test_rng_restore_reproduces_the_draws():
    torch.manual_seed(123)
    np.random.seed(4)
    random.seed(5)
    draw()
    state = capture_rng_state()
    first = draw()
    second = draw()
    assert not torch.equal(first[0], second[0])           # the draws do advance the generators
    restore_rng_state(state)
    assert_same_draws(draw(), first)


def test_rng_state_survives_a_checkpoint(tmp_path):
    torch.manual_seed(7)
    np.random.seed(7)
    random.seed(7)
    np.random.randn(1)                                    # leave a cached Gaussian in numpy's state
    path = save_checkpoint(tmp_path, 1, {"rng": capture_rng_state()})
    expected = draw()
    draw()
    restore_rng_state(load_checkpoint(path)["rng"])
    assert_same_draws(draw(), expected)
