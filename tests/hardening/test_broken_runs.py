"""Broken run folders: eval, export and ``train --resume`` end in one clear sentence.

A real tiny run (ngp, and splat for ``export splat``) is copied and one file of the copy is
damaged: config.yaml, transform.json, the checkpoints, or the run path itself.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import yaml

from outcomes import Tally


@dataclass(frozen=True)
class BrokenRun:
    name: str
    damage: Callable[[Path], Any]
    expect: str
    resumable: bool = False       # train --resume may legitimately start again from step 0


def _config(edit: Callable[[dict], Any]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        config = yaml.safe_load((run / "config.yaml").read_text())
        edit(config)
        (run / "config.yaml").write_text(yaml.safe_dump(config))
    return damage


def _write(name: str, data: str | bytes) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / name
        path.unlink(missing_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return damage


def _transform(edit: Callable[[dict], Any]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        saved = json.loads((run / "transform.json").read_text())
        edit(saved)
        (run / "transform.json").write_text(json.dumps(saved))
    return damage


def _checkpoints(action: Callable[[Path], Any]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        for path in sorted((run / "checkpoints").glob("step-*.pt")):
            action(path)
    return damage


def _replace_checkpoint(state: Any) -> Callable[[Path], None]:
    return _checkpoints(lambda path: torch.save(state, path))


class _NotAllowed:
    """A class a weights_only load refuses to unpickle."""


def _other_run_checkpoint(other: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        source = sorted((run.parent / other).glob("step-*.pt"))[-1]
        for path in sorted((run / "checkpoints").glob("step-*.pt")):
            shutil.copy(source, path)
    return damage


BROKEN_RUNS = (
    BrokenRun("config_deleted", lambda run: (run / "config.yaml").unlink(), "config.yaml"),
    BrokenRun("config_empty", _write("config.yaml", ""), "config.yaml"),
    BrokenRun("config_not_yaml", _write("config.yaml", "train: [unclosed\n"), "config.yaml"),
    BrokenRun("config_a_list", _write("config.yaml", "- train\n- method\n"), "config.yaml"),
    BrokenRun("config_binary", _write("config.yaml", b"\xff\xfe\x00\x01"), "config.yaml"),
    BrokenRun("config_train_not_a_mapping", _config(lambda c: c.__setitem__("train", 5)),
              "config.yaml"),
    BrokenRun("config_method_not_a_mapping", _config(lambda c: c.__setitem__("method", "fast")),
              "config.yaml"),
    BrokenRun("config_unknown_key", _config(lambda c: c["train"].__setitem__("bogus", 1)),
              "bogus"),
    BrokenRun("config_wrong_type", _config(lambda c: c["train"].__setitem__("max_steps", "many")),
              "max_steps"),
    BrokenRun("config_unknown_method", _config(lambda c: c["train"].__setitem__("method", "nerf")),
              "nerf"),
    BrokenRun("config_scene_moved", _config(lambda c: c["train"].__setitem__("scene", "/gone/x")),
              "/gone/x"),
    BrokenRun("config_scene_empty", _config(lambda c: c["train"].__setitem__("scene", "")),
              "config.yaml"),
    BrokenRun("config_scene_a_list", _config(lambda c: c["train"].__setitem__("scene", [1, 2])),
              "scene"),
    BrokenRun("config_table_size_changed",
              _config(lambda c: c["method"].__setitem__("log2_table_size", 12)), "config.yaml"),
    BrokenRun("transform_deleted", lambda run: (run / "transform.json").unlink(), "transform.json"),
    BrokenRun("transform_not_json", _write("transform.json", "{"), "transform.json"),
    BrokenRun("transform_a_list", _write("transform.json", "[1, 2]"), "transform.json"),
    BrokenRun("transform_no_matrix", _transform(lambda t: t.pop("world_to_scene")),
              "transform.json"),
    BrokenRun("transform_matrix_3x3",
              _transform(lambda t: t.__setitem__("world_to_scene", [[1, 0, 0]] * 3)),
              "transform.json"),
    BrokenRun("transform_matrix_strings",
              _transform(lambda t: t.__setitem__("world_to_scene", "identity")), "transform.json"),
    BrokenRun("transform_other_scene",
              _transform(lambda t: t["world_to_scene"][0].__setitem__(3, 5.0)), "changed since"),
    BrokenRun("checkpoint_truncated",
              _checkpoints(lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])),
              "checkpoint", resumable=True),
    BrokenRun("checkpoint_garbage", _checkpoints(lambda p: p.write_bytes(b"garbage" * 9)),
              "checkpoint", resumable=True),
    BrokenRun("checkpoint_zero_bytes", _checkpoints(lambda p: p.write_bytes(b"")), "checkpoint",
              resumable=True),
    BrokenRun("checkpoint_dangling_symlink",
              _checkpoints(lambda p: (p.unlink(), p.symlink_to(p.parent / "gone.pt"))),
              "checkpoint", resumable=True),
    BrokenRun("checkpoints_deleted", lambda run: shutil.rmtree(run / "checkpoints"), "checkpoint",
              resumable=True),
    BrokenRun("checkpoints_folder_is_a_file",
              lambda run: (shutil.rmtree(run / "checkpoints"), (run / "checkpoints").write_text("")),
              "checkpoint"),
    BrokenRun("checkpoint_code_pickle", _replace_checkpoint({"step": 2, "x": _NotAllowed()}),
              "checkpoint", resumable=True),
    BrokenRun("checkpoint_without_step", _replace_checkpoint({"method": {}}), "checkpoint"),
    BrokenRun("checkpoint_without_method", _replace_checkpoint({"step": 2}), "checkpoint"),
    BrokenRun("checkpoint_foreign_weights",
              _replace_checkpoint({"step": 2, "method": {"w": torch.zeros(3)}}), "checkpoint"),
    BrokenRun("checkpoint_a_list", _replace_checkpoint([1, 2, 3]), "checkpoint"),
    BrokenRun("checkpoint_of_the_other_method", _other_run_checkpoint("other"), "checkpoint"),
)

COMMANDS = ("eval", "export-mesh", "export-pointcloud", "export-splat", "resume")


def _argv(command: str, run: Path, work: Path) -> list:
    return {
        "eval": ["eval", run, "-o", work / "eval.json"],
        "export-mesh": ["export", "mesh", run, "-o", work / "mesh.ply", "--resolution", "16"],
        "export-pointcloud": ["export", "pointcloud", run, "-o", work / "points.ply"],
        "export-splat": ["export", "splat", run, "-o", work / "splat.ply"],
        "resume": ["train", "--resume", run, "--no-viewer", "--no-progress"],
    }[command]


def _copy_run(template: Path, other: Path, dest: Path) -> Path:
    """``dest/run``: a copy of ``template``; ``dest/other``: the other method's checkpoints."""
    run = dest / "run"
    shutil.copytree(template, run, symlinks=True)
    shutil.copytree(other / "checkpoints", dest / "other")
    return run


@pytest.mark.parametrize("command", COMMANDS)
def test_every_broken_run_is_one_clear_sentence(command, trained_runs, tally: Tally, tmp_path):
    method = "splat" if command == "export-splat" else "ngp"
    other = "ngp" if method == "splat" else "splat"
    tried = 0
    for index, case in enumerate(BROKEN_RUNS):
        if command == "resume" and case.resumable:
            continue
        run = _copy_run(trained_runs[method], trained_runs[other], tmp_path / f"{index:02d}")
        case.damage(run)
        tally.check(case.name, command, _argv(command, run, tmp_path / f"{index:02d}"),
                    case.expect)
        tried += 1
    for name, path in {"run_path_missing": tmp_path / "nowhere",
                       "run_path_a_file": tmp_path / "00" / "run" / "config.yaml"}.items():
        expect = "nowhere" if name == "run_path_missing" else "config.yaml"
        tally.check(name, command, _argv(command, path, tmp_path / name), expect)
    assert tried >= 25
    tally.assert_all_clear()


@pytest.mark.filterwarnings("ignore:Skipping unreadable checkpoint")
@pytest.mark.parametrize("case", [c for c in BROKEN_RUNS if c.resumable], ids=lambda c: c.name)
def test_resume_without_an_intact_checkpoint_starts_again(case, trained_runs, tmp_path, capsys):
    """No intact checkpoint is not an error for --resume: it restarts (and says so)."""
    from nerfkit.cli import main

    run = _copy_run(trained_runs["ngp"], trained_runs["splat"], tmp_path)
    case.damage(run)
    code = main(["train", "--resume", str(run), "--no-viewer", "--no-progress"])
    assert code == 0
    assert "has no checkpoint yet: starting it from step 0" in capsys.readouterr().out
    steps = json.loads((run / "metrics.json").read_text())["steps"]
    assert steps == 2
