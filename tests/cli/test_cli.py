"""Every user mistake ends in one sentence naming the file or value, exit code 2, no traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_run import tiny_train_args
from nerfkit.cli import main


def _fails_with(capsys, args: list[str], *words: str) -> str:
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    assert err.startswith("nerfkit: error: ") and "\n" not in err, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    return err


def test_folder_that_is_no_scene(tmp_path, capsys):
    (tmp_path / "holiday").mkdir()
    (tmp_path / "holiday" / "notes.txt").write_text("hello")
    _fails_with(capsys, ["train", str(tmp_path / "holiday")], "holiday", "not a scene folder", "COLMAP")


def test_missing_scene_path(tmp_path, capsys):
    _fails_with(capsys, ["train", str(tmp_path / "nowhere")], "nowhere", "does not exist")


def test_missing_and_corrupt_images(tiny_demo, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_demo, broken)
    (broken / "train" / "r_3.png").unlink()
    _fails_with(capsys, ["train", str(broken)], "r_3")
    shutil.copy(tiny_demo / "train" / "r_3.png", broken / "train" / "r_3.png")
    (broken / "train" / "r_5.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    _fails_with(capsys, ["train", str(broken)], "r_5.png")
    shutil.copy(tiny_demo / "train" / "r_5.png", broken / "train" / "r_5.png")
    data = (tiny_demo / "train" / "r_6.png").read_bytes()
    (broken / "train" / "r_6.png").write_bytes(data[: len(data) // 2])
    _fails_with(capsys, ["train", str(broken)], "r_6.png")


def test_unknown_camera_model(tmp_path, capsys):
    scene = tmp_path / "colmap"
    (scene / "sparse" / "0").mkdir(parents=True)
    (scene / "images").mkdir()
    (scene / "sparse" / "0" / "cameras.txt").write_text("1 FOV 32 24 20 16 12 0.5\n")
    (scene / "sparse" / "0" / "images.txt").write_text("1 1 0 0 0 0 0 0 1 a.png\n\n")
    (scene / "sparse" / "0" / "points3D.txt").write_text("")
    _fails_with(capsys, ["train", str(scene)], "FOV")


def test_empty_split(tiny_demo, tmp_path, capsys):
    broken = tmp_path / "nosplit"
    shutil.copytree(tiny_demo, broken)
    meta = json.loads((broken / "transforms_test.json").read_text())
    meta["frames"] = []
    (broken / "transforms_test.json").write_text(json.dumps(meta))
    _fails_with(capsys, ["train", str(broken)], "test")


@pytest.mark.parametrize("flags, words", [
    (["--max-steps", "0"], ["--max-steps", "0"]),
    (["--max-time", "-5"], ["--max-time", "-5"]),
    (["--downscale", "0.5"], ["downscale", "0.5"]),
    (["--scene-kind", "sideways"], ["sideways"]),
    (["--method", "nerfacto"], ["nerfacto", "ngp"]),
    (["--set", "log2_table_size=big"], ["log2_table_size", "big"]),
    (["--set", "no_such_knob=1"], ["no_such_knob"]),
    (["--set", "novalue"], ["novalue"]),
    (["--config", "no-such-preset"], ["no-such-preset"]),
])
def test_bad_flag_values(tiny_demo, tmp_path, capsys, flags, words):
    _fails_with(capsys, ["train", str(tiny_demo), "--output-dir", str(tmp_path), *flags], *words)
    assert not list(tmp_path.glob("*/*/*/checkpoints")), "a rejected command must not start a run"


def test_eval_and_render_of_a_folder_without_a_run(tmp_path, capsys):
    _fails_with(capsys, ["eval", str(tmp_path)], str(tmp_path), "no nerfkit run")
    _fails_with(capsys, ["render", str(tmp_path), "-o", str(tmp_path / "out")], "no nerfkit run")
    _fails_with(capsys, ["eval", str(tmp_path / "missing")], "missing", "does not exist")


def test_argparse_type_errors_exit_2_without_traceback():
    result = subprocess.run([sys.executable, "-m", "nerfkit.cli", "train", "--max-steps", "many"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--max-steps" in result.stderr and "many" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_scene_uses_the_demo_scene(tmp_path, monkeypatch, capsys):
    """`nerfkit train` without a scene renders (once) and trains the built-in demo scene."""
    monkeypatch.setenv("NERFKIT_CACHE", str(tmp_path / "cache"))
    from nerfkit.data import demo

    calls = []
    real = demo.ensure_demo_scene

    def small_demo(**_):
        calls.append(1)
        return real(size=24, n_train=8, n_test=2, n_val=1)

    monkeypatch.setattr(demo, "ensure_demo_scene", small_demo)
    args = tiny_train_args("", tmp_path / "out", "--max-steps", "3")
    args.remove("")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert calls and "demo scene" in out and "results:" in out
    assert Path(tmp_path / "cache").exists()


def test_out_of_memory_and_warnings_are_one_line_each(monkeypatch, capsys):
    import warnings

    import torch

    from nerfkit.cli import evaluate

    def exhausted(args):
        warnings.warn("a damaged checkpoint was skipped:\nsecond line")
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")

    monkeypatch.setattr(evaluate, "run", exhausted)
    assert main(["eval", "somewhere"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("nerfkit: warning: a damaged checkpoint was skipped")
    assert lines[1].startswith("nerfkit: error: 'nerfkit eval' ran out of memory") and "--downscale" in lines[1]

    def broken(args):
        raise RuntimeError("an ordinary bug")

    monkeypatch.setattr(evaluate, "run", broken)
    with pytest.raises(RuntimeError, match="ordinary bug"):       # real bugs keep their traceback
        main(["eval", "somewhere"])
