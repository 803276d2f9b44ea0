"""Every broken scene of the corpus ends in one clear sentence for train, eval and export.

The corpus (:mod:`corpus`, ~290 scenes) is built once per session from valid tiny scenes. ``train``
gets the scene folder; ``eval``, ``export mesh`` and ``export splat`` get a copy of a real trained
run whose ``config.yaml`` points at the broken scene (the scene was damaged or replaced after
training). Each call must exit 2 with exactly one ``nerfkit: error:`` line that names the damaged
file, key or value, and no traceback.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from outcomes import Tally, run_cli
from corpus import BASES, all_cases

COMMANDS = ("train", "eval", "export-mesh", "export-splat")


@pytest.fixture(scope="session")
def broken_scenes(bases, tmp_path_factory) -> dict[str, Path]:
    """Case name -> its damaged scene folder."""
    root = tmp_path_factory.mktemp("broken")
    scenes = {}
    for index, case in enumerate(all_cases()):
        folder = root / f"{index:03d}" / case.base
        shutil.copytree(bases[case.base], folder, symlinks=True)
        case.damage(folder)
        scenes[case.name] = folder
    return scenes


@pytest.fixture(scope="session")
def base_transforms(bases) -> dict[str, dict]:
    """The ``world_to_scene`` of each valid base, for runs that name it (or its damaged copy)."""
    from nerfkit.data import load_scene

    return {base: load_scene(scene, kind="object").transform_dict() for base, scene in bases.items()}


def run_on_scene(template: Path, scene: Path, transform: dict, dest: Path) -> Path:
    """A copy of the run ``template`` whose config names ``scene`` (normalised by ``transform``).

    The weights (linked, not copied) stay those of the template: the run is only ever reopened.
    """
    dest.mkdir(parents=True)
    config = yaml.safe_load((template / "config.yaml").read_text())
    config["train"].update(scene=str(scene), scene_kind="object")     # the template's kind
    (dest / "config.yaml").write_text(yaml.safe_dump(config))
    saved = json.loads((template / "transform.json").read_text())
    (dest / "transform.json").write_text(json.dumps({**saved, **transform}))
    (dest / "checkpoints").symlink_to(template / "checkpoints")
    return dest


def command_argv(command: str, scene: Path, runs: dict[str, Path], transform: dict,
                 work: Path) -> list:
    if command == "train":
        return ["train", scene, "--no-viewer", "--no-progress", "--output-dir", work / "out",
                "--max-steps", "1"]
    if command == "eval":
        return ["eval", run_on_scene(runs["ngp"], scene, transform, work / "run"), "-o",
                work / "eval.json"]
    if command == "export-mesh":
        return ["export", "mesh", run_on_scene(runs["ngp"], scene, transform, work / "run"), "-o",
                work / "mesh.ply", "--resolution", "16"]
    return ["export", "splat", run_on_scene(runs["splat"], scene, transform, work / "run"), "-o",
            work / "splat.ply"]


def test_the_corpus_has_over_200_scenes_of_every_format():
    cases = all_cases()
    assert len(cases) >= 200
    for base in BASES:
        assert sum(case.base == base for case in cases) >= 30, base


def test_undamaged_bases_eval_and_export(bases, trained_runs, base_transforms, tmp_path):
    """The damage, not the base, breaks each scene (train loads the same way, and trains the
    blender base in test_nan_guard)."""
    for base, scene in bases.items():
        for command in COMMANDS[1:]:
            work = tmp_path / base / command
            argv = command_argv(command, scene, trained_runs, base_transforms[base], work)
            outcome = run_cli(argv)
            assert outcome.code == 0, (base, command, outcome.stderr, outcome.traceback)


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("command", COMMANDS)
def test_every_broken_scene_is_one_clear_sentence(command, base, broken_scenes, trained_runs,
                                                  base_transforms, tally: Tally, tmp_path):
    cases = [case for case in all_cases() if case.base == base]
    for index, case in enumerate(cases):
        work = tmp_path / f"{index:03d}"
        argv = command_argv(command, broken_scenes[case.name], trained_runs,
                            base_transforms[base], work)
        tally.check(case.name, command, argv, case.expect)
    tally.assert_all_clear()
