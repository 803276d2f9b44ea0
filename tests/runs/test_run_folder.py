"""Run folders are named by their start time, found again from any parent folder, and every file
in them is written atomically; bad input names the folder or file."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest

from nerfkit.core.errors import NerfkitError
from nerfkit.core.files import atomic_write, read_yaml, write_json_atomic, write_yaml_atomic
from nerfkit.runs.folder import RunFolder


def list_checkpoints(run):
    return RunFolder(run).checkpoints()


def new_run_dir(root, scene, method, now=None):
    return RunFolder.create(root, scene, method, now).path


def resolve_run(path):
    return RunFolder.find(path).path


NOW = datetime(2024, 3, 5, 14, 7, 9)


def fake_run(root: Path, scene: str, method: str, name: str, checkpoint: bool = True) -> Path:
    """A run folder with config.yaml and, optionally, a dummy checkpoint file."""
    run = root / scene / method / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"method: {method}\n")
    if checkpoint:
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "step-0000001.pt").write_bytes(b"dummy")
    return run


# --- naming ----------------------------------------------------------------------------------------

def test_new_run_dir_is_named_after_the_start_time(tmp_path):
    run = new_run_dir(tmp_path / "outputs", "lego", "ngp", now=NOW)
    assert run == tmp_path / "outputs" / "lego" / "ngp" / "2024-03-05_140709"
    assert run.is_dir() and list(run.iterdir()) == []


def test_new_run_dir_appends_a_suffix_on_collision(tmp_path):
    names = [new_run_dir(tmp_path, "lego", "ngp", now=NOW).name for _ in range(3)]
    assert names == ["2024-03-05_140709", "2024-03-05_140709_1", "2024-03-05_140709_2"]
    other_second = new_run_dir(tmp_path, "lego", "ngp", now=datetime(2024, 3, 5, 14, 7, 10))
    assert other_second.name == "2024-03-05_140710"
    assert sorted(p.name for p in (tmp_path / "lego" / "ngp").iterdir()) == sorted(names + [other_second.name])


def test_new_run_dir_defaults_to_now(tmp_path):
    before = datetime.now().replace(microsecond=0)
    run = new_run_dir(tmp_path, "lego", "ngp")
    after = datetime.now()
    started = datetime.strptime(run.name, "%Y-%m-%d_%H%M%S")
    assert before <= started <= after


@pytest.mark.parametrize("scene, method", [("", "ngp"), ("a/b", "ngp"), ("lego", ".."), ("lego", ".")])
def test_new_run_dir_rejects_names_that_are_not_one_folder(tmp_path, scene, method):
    with pytest.raises(ValueError, match="single folder names"):
        new_run_dir(tmp_path / "out", scene, method, now=NOW)
    assert not (tmp_path / "out").exists()


# --- resolving -------------------------------------------------------------------------------------

@pytest.fixture
def outputs(tmp_path) -> dict[str, Path]:
    root = tmp_path / "outputs"
    return {
        "root": root,
        "lego_old": fake_run(root, "lego", "ngp", "2024-01-01_000000"),
        "lego_new": fake_run(root, "lego", "ngp", "2024-01-02_000000"),
        "lego_new_1": fake_run(root, "lego", "ngp", "2024-01-02_000000_1"),
        "lego_newest_no_ckpt": fake_run(root, "lego", "ngp", "2024-01-03_000000", checkpoint=False),
        "lego_other_method": fake_run(root, "lego", "splat", "2024-01-01_120000"),
        "ship": fake_run(root, "ship", "ngp", "2024-02-01_000000"),
        "ship_no_ckpt": fake_run(root, "ship", "ngp", "2024-03-01_000000", checkpoint=False),
    }


def test_resolve_run_returns_a_run_folder_itself(outputs):
    assert resolve_run(outputs["lego_old"]) == outputs["lego_old"]
    # A run folder is returned as is, even without checkpoints.
    assert resolve_run(outputs["lego_newest_no_ckpt"]) == outputs["lego_newest_no_ckpt"]


def test_resolve_run_from_a_method_folder_picks_the_newest_with_a_checkpoint(outputs):
    # 2024-01-03 has no checkpoint; of the two on 2024-01-02 the _1 suffix started later.
    assert resolve_run(outputs["root"] / "lego" / "ngp") == outputs["lego_new_1"]
    assert resolve_run(outputs["root"] / "lego" / "splat") == outputs["lego_other_method"]


def test_resolve_run_from_a_scene_folder(outputs):
    assert resolve_run(outputs["root"] / "lego") == outputs["lego_new_1"]
    assert resolve_run(outputs["root"] / "ship") == outputs["ship"]


def test_resolve_run_from_the_output_root(outputs):
    assert resolve_run(outputs["root"]) == outputs["ship"]


def test_resolve_run_uses_the_config_time_of_a_renamed_run(outputs):
    renamed = fake_run(outputs["root"], "lego", "ngp", "best-run")
    old = datetime(2024, 1, 1, 6, 0).timestamp()        # started before lego_new_1
    os.utime(renamed / "config.yaml", (old, old))
    assert resolve_run(outputs["root"] / "lego" / "ngp") == outputs["lego_new_1"]
    new = datetime(2024, 1, 5).timestamp()               # started after every named run
    os.utime(renamed / "config.yaml", (new, new))
    assert resolve_run(outputs["root"] / "lego" / "ngp") == renamed


def test_resolve_run_without_runs_names_the_folder(tmp_path):
    empty = tmp_path / "outputs" / "lego"
    (empty / "ngp").mkdir(parents=True)
    with pytest.raises(NerfkitError, match="holds no nerfkit run") as info:
        resolve_run(empty)
    assert str(empty) in str(info.value)


def test_resolve_run_with_runs_but_no_checkpoints_names_the_folder(tmp_path):
    fake_run(tmp_path / "outputs", "lego", "ngp", "2024-01-01_000000", checkpoint=False)
    with pytest.raises(NerfkitError) as info:
        resolve_run(tmp_path / "outputs" / "lego")
    assert str(tmp_path / "outputs" / "lego") in str(info.value)


def test_resolve_run_of_a_missing_path(tmp_path):
    with pytest.raises(NerfkitError, match="does not exist") as info:
        resolve_run(tmp_path / "nowhere")
    assert "nowhere" in str(info.value)


def test_list_checkpoints_orders_by_step_and_ignores_other_files(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("step-0000300.pt", "step-0000020.pt", "step-12345678.pt", ".step-0000999.pt.tmp-1-ab",
                 "step-12.pt", "notes.txt"):
        (folder / name).write_bytes(b"x")
    assert [step for step, _ in list_checkpoints(tmp_path)] == [20, 300, 12345678]


# --- atomic writes ---------------------------------------------------------------------------------

def test_write_json_atomic_round_trips_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "run" / "metrics.json"               # the folder is created
    data = {"psnr": 31.5, "ssim": 0.95, "steps": [1, 2, 3], "name": "lego", "ok": True, "none": None}
    write_json_atomic(path, data)
    assert json.loads(path.read_text()) == data
    write_json_atomic(path, {"psnr": 20.0})                # replaces the old content entirely
    assert json.loads(path.read_text()) == {"psnr": 20.0}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_write_yaml_atomic_round_trips_in_order(tmp_path):
    path = tmp_path / "config.yaml"
    data = {"zeta": 1, "alpha": {"lr": 0.01, "steps": [100, 200]}, "name": "lègo", "flag": False}
    write_yaml_atomic(path, data)
    loaded = read_yaml(path)
    assert loaded == data
    assert list(loaded) == ["zeta", "alpha", "name", "flag"]   # insertion order, not sorted
    assert "lègo" in path.read_text(encoding="utf-8")
    write_yaml_atomic(path, {"a": 2})
    assert read_yaml(path) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_atomic_write_failure_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"old": 1})
    with pytest.raises(RuntimeError, match="crash"), atomic_write(path) as file:
        file.write(b'{"new": ')
        temp = Path(file.name)
        assert temp.parent == tmp_path and temp.name.startswith(".metrics.json.tmp-")
        raise RuntimeError("crash while writing")
    assert json.loads(path.read_text()) == {"old": 1}
    assert not temp.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_unserialisable_data_leaves_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"old": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": {1, 2}})
    assert json.loads(path.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


# --- reading YAML ----------------------------------------------------------------------------------

def test_read_yaml_of_invalid_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("method: ngp\nsteps: [1, 2\nlr: 0.01\n")
    with pytest.raises(NerfkitError, match="not valid YAML") as info:
        read_yaml(path)
    message = str(info.value)
    assert str(path) in message
    assert "line 3" in message


def test_read_yaml_of_a_list_is_rejected(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(NerfkitError, match="mapping") as info:
        read_yaml(path)
    assert str(path) in str(info.value)


def test_read_yaml_of_an_empty_file_is_empty(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("")
    assert read_yaml(path) == {}


def test_read_yaml_of_a_missing_file(tmp_path):
    with pytest.raises(NerfkitError, match="does not exist") as info:
        read_yaml(tmp_path / "missing.yaml")
    assert "missing.yaml" in str(info.value)


def test_read_yaml_of_binary_garbage_names_the_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(NerfkitError, match="could not be read") as info:
        read_yaml(path)
    assert str(path) in str(info.value)
