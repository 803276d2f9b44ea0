"""Property-based fuzzing (hypothesis) of the JSON and COLMAP readers.

The property: whatever the bytes, :func:`load_scene` returns a scene or raises
:class:`NerfkitError`; nothing else escapes (and pycolmap never gets to abort the process).
Plus the converse for the COLMAP checker: every model pycolmap itself writes passes it.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pycolmap
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from corpus import write_base
from nerfkit.data.colmap_check import camera_param_counts, check_binary_file, check_model_files
from nerfkit.data.load import load_scene
from nerfkit.core.errors import NerfkitError
from outcomes import HardeningCounts

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=5)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=5), max_leaves=20)


def _loads_or_clear_error(root: Path, counts: HardeningCounts) -> None:
    """The property: a scene, or NerfkitError (anything else fails the test with its traceback)."""
    counts.fuzzed += 1
    try:
        load_scene(root)
    except NerfkitError:
        pass


@pytest.fixture(scope="module")
def fuzz_bases(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz")
    return {base: write_base(base, root / base)
            for base in ("transforms", "blender", "colmap_txt", "colmap_bin")}


def _paths(meta, prefix=()):
    """Every (key path) into a JSON value, for picking the one to replace."""
    yield prefix
    if isinstance(meta, dict):
        for key, value in meta.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(meta, list):
        for index, value in enumerate(meta):
            yield from _paths(value, prefix + (index,))


def _replaced(meta, path, value):
    if not path:
        return value
    copy = dict(meta) if isinstance(meta, dict) else list(meta)
    copy[path[0]] = _replaced(meta[path[0]], path[1:], value)
    return copy


@pytest.mark.parametrize("base, name", [("transforms", "transforms.json"),
                                        ("blender", "transforms_train.json")])
@FUZZ
@given(data=st.data())
def test_any_value_anywhere_in_the_json(base, name, fuzz_bases, counts, data):
    """Replace one value (at any depth, the whole file included) by arbitrary JSON."""
    path = fuzz_bases[base] / name
    original = path.read_text()
    meta = json.loads(original)
    where = data.draw(st.sampled_from(list(_paths(meta))))
    value = data.draw(JSON)
    try:
        path.write_text(json.dumps(_replaced(meta, where, value), allow_nan=True))
        _loads_or_clear_error(fuzz_bases[base], counts)
    finally:
        path.write_text(original)


@pytest.mark.parametrize("base, name", [("transforms", "transforms.json"),
                                        ("blender", "transforms_train.json")])
@FUZZ
@given(cut=st.floats(0.0, 1.0), junk=st.binary(max_size=24), at=st.floats(0.0, 1.0))
def test_truncated_or_spliced_json_bytes(base, name, fuzz_bases, counts, cut, junk, at):
    path = fuzz_bases[base] / name
    original = path.read_bytes()
    data = original[: int(len(original) * cut)]
    position = int(len(data) * at)
    try:
        path.write_bytes(data[:position] + junk + data[position:])
        _loads_or_clear_error(fuzz_bases[base], counts)
    finally:
        path.write_bytes(original)


COLMAP_BIN = ("cameras.bin", "images.bin", "points3D.bin", "rigs.bin", "frames.bin")
MUTATION = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0), st.binary(max_size=0)),
    st.tuples(st.just("overwrite"), st.floats(0.0, 1.0), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("insert"), st.floats(0.0, 1.0), st.binary(min_size=1, max_size=16)),
)


def _mutate(data: bytes, mutation) -> bytes:
    kind, where, payload = mutation
    position = int(len(data) * where)
    if kind == "truncate":
        return data[:position]
    if kind == "overwrite":
        return data[:position] + payload + data[position + len(payload):]
    return data[:position] + payload + data[position:]


@FUZZ
@given(name=st.sampled_from(COLMAP_BIN), mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_mutated_colmap_binary_files(fuzz_bases, counts, name, mutations):
    path = fuzz_bases["colmap_bin"] / "sparse/0" / name
    original = path.read_bytes()
    data = original
    for mutation in mutations:
        data = _mutate(data, mutation)
    try:
        path.write_bytes(data)
        _loads_or_clear_error(fuzz_bases["colmap_bin"], counts)
    finally:
        path.write_bytes(original)


TOKENS = st.sampled_from(["", "0", "-1", "nan", "inf", "1e309", "3.5", "PINHOLE", "OPENCV_FISHEYE",
                          "x", "#", "cam_002.png", "99", "4294967296", "-0", "1 2", "\t"])


@FUZZ
@given(name=st.sampled_from(["cameras.txt", "images.txt", "points3D.txt", "rigs.txt",
                             "frames.txt"]),
       line=st.integers(0, 40), token=st.integers(0, 12), value=TOKENS | st.text(max_size=6),
       action=st.sampled_from(["replace", "delete_line", "duplicate_line", "truncate"]))
def test_mutated_colmap_text_files(fuzz_bases, counts, name, line, token, value, action):
    path = fuzz_bases["colmap_txt"] / "sparse/0" / name
    original = path.read_text()
    lines = original.splitlines()
    assume(lines)
    n = line % len(lines)
    if action == "replace":
        words = lines[n].split(" ")
        words[token % len(words)] = value
        lines[n] = " ".join(words)
    elif action == "delete_line":
        del lines[n]
    elif action == "duplicate_line":
        lines.insert(n, lines[n])
    else:
        lines = lines[:n] + [lines[n][: token % (len(lines[n]) + 1)]] if lines else []
    try:
        path.write_text("\n".join(lines) + "\n")
        _loads_or_clear_error(fuzz_bases["colmap_txt"], counts)
    finally:
        path.write_text(original)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(stem=st.sampled_from(["cameras", "images", "points3D", "rigs", "frames"]),
       data=st.binary(max_size=300))
def test_the_binary_checker_on_arbitrary_bytes(tmp_path_factory, stem, data):
    path = tmp_path_factory.getbasetemp() / f"arbitrary-{stem}.bin"
    path.write_bytes(data)
    try:
        check_binary_file(path, stem)
    except NerfkitError as error:
        assert path.name in str(error) and "\n" not in str(error)


SUPPORTED = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")


@FUZZ
@given(models=st.lists(st.sampled_from(sorted(camera_param_counts())), min_size=1, max_size=4),
       images=st.integers(1, 5), points=st.integers(0, 6), track=st.integers(0, 4),
       seed=st.integers(0, 2 ** 16))
def test_every_model_pycolmap_writes_passes_the_checker(tmp_path_factory, models, images, points,
                                                        track, seed):
    """No false alarms: random cameras (every model), images with 2D points, points with tracks."""
    rng = np.random.default_rng(seed)
    rec = pycolmap.Reconstruction()
    for camera_id, model in enumerate(models, 1):
        camera = pycolmap.Camera.create_from_model_name(camera_id, model, 30.0, 40, 30)
        rec.add_camera_with_trivial_rig(camera)
    for image_id in range(1, images + 1):
        image = pycolmap.Image(name=f"im_{image_id}.png", camera_id=1 + image_id % len(models),
                               image_id=image_id)
        image.points2D = pycolmap.Point2DList([pycolmap.Point2D(rng.uniform(0, 40, 2))
                                               for _ in range(track)])
        quat = rng.normal(size=4)
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(quat / np.linalg.norm(quat)), rng.normal(size=3))
        rec.add_image_with_trivial_frame(image, pose)
    for _ in range(points):
        rec.add_point3D(rng.normal(size=3), pycolmap.Track(), rng.integers(0, 255, 3).astype(np.uint8))
    for text in (False, True):
        folder = tmp_path_factory.getbasetemp() / f"written-{'txt' if text else 'bin'}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        (rec.write_text if text else rec.write_binary)(str(folder))
        check_model_files(folder)          # raises on a false alarm
    data = (tmp_path_factory.getbasetemp() / "written-bin" / "images.bin").read_bytes()
    assert struct.unpack_from("<Q", data)[0] == images
