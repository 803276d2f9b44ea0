"""A corpus of broken scenes, each made from a valid tiny scene by one deliberate damage.

Every :class:`BrokenScene` names the valid base it starts from (one of :data:`BASES`), the damage
(a function of the scene folder) and ``expect``: a piece of text the error message must contain,
the file, key or value that is wrong. The writers of ``tests/data/scene_writers.py`` make the
bases; nothing here uses nerfkit, so the corpus cannot share a bug with the readers it tests.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import imageio.v3 as iio
import numpy as np

from scene_writers import make_image, orbit_cameras, write_blender, write_colmap, write_transforms

BASES = ("colmap_txt", "colmap_bin", "blender", "transforms")
N_CAMERAS, WIDTH, HEIGHT = 6, 16, 12
TARGET = "cam_002"               # the camera most damages hit (a train image in every base)
TARGET_INDEX = 2                 # its index in sorted order (COLMAP image id 3)


@dataclass(frozen=True)
class BrokenScene:
    """One damaged scene: ``base`` written, then ``damage(root)`` applied."""

    name: str
    base: str
    damage: Callable[[Path], Any]
    expect: str


def write_base(base: str, root: Path) -> Path:
    """A valid tiny scene (6 cameras, 16x12 px) of ``base`` at ``root``."""
    cams = orbit_cameras(n=N_CAMERAS, width=WIDTH, height=HEIGHT, focal=14.0)
    if base == "blender":
        return write_blender(root, cams)
    if base == "transforms":
        return write_transforms(root, cams)
    rng = np.random.default_rng(0)
    points = cams.center + rng.normal(0.0, 0.3, (8, 3))
    colors = rng.integers(0, 256, (8, 3))
    return write_colmap(root, cams, binary=base == "colmap_bin", points=points, colors=colors)


# --- helpers ---------------------------------------------------------------------------------------

def image_path(root: Path, base: str, name: str = TARGET) -> Path:
    if base == "blender":
        return next(root.glob(f"*/{name}.png"))
    return root / "images" / f"{name}.png"


def _edit_json(path: Path, edit: Callable[[dict], Any]) -> None:
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta, allow_nan=True))


def _frame_of(meta: dict, name: str = TARGET) -> dict:
    return next(f for f in meta["frames"] if name in str(f.get("file_path")))


def _json_file(root: Path, base: str) -> Path:
    return root / ("transforms_train.json" if base == "blender" else "transforms.json")


def _replace_bytes(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk claiming ``width`` x ``height`` with no pixel data."""
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)))


def _corrupt_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    start = len(data) // 3
    data[start:start + len(data) // 3] = b"\xff" * (len(data) // 3)
    path.write_bytes(bytes(data))


# --- images ---------------------------------------------------------------------------------------

def _image_damages(base: str) -> list[BrokenScene]:
    def on_image(action: Callable[[Path], Any]) -> Callable[[Path], Any]:
        return lambda root: action(image_path(root, base))

    def sized(width: int, height: int) -> Callable[[Path], Any]:
        return on_image(lambda p: iio.imwrite(p, make_image(9, width, height)))

    damages = {
        "truncated_half": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
        "truncated_16_bytes": lambda p: p.write_bytes(p.read_bytes()[:16]),
        "zero_bytes": lambda p: p.write_bytes(b""),
        "text_not_png": lambda p: p.write_text("this is not an image\n" * 3),
        "png_signature_then_garbage": lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x07" * 64),
        "corrupt_pixel_data": _corrupt_middle,
        "header_only_decompression_bomb": lambda p: p.write_bytes(png_header(60000, 60000)),
        "folder_instead_of_file": lambda p: (p.unlink(), p.mkdir()),
        "dangling_symlink": lambda p: (p.unlink(), p.symlink_to(p.parent / "nowhere.png")),
        "symlink_loop": lambda p: (p.unlink(), p.symlink_to(p.name)),
        "fifo_instead_of_file": lambda p: (p.unlink(), os.mkfifo(p)),
        "deleted": lambda p: p.unlink(),
    }
    cases = [BrokenScene(f"{base}/image_{name}", base, on_image(action), TARGET)
             for name, action in damages.items()]
    if base != "blender":            # NeRF-synthetic takes each image's size from its header
        for name, (w, h) in {"larger": (24, 16), "transposed": (HEIGHT, WIDTH),
                             "one_pixel": (1, 1)}.items():
            cases.append(BrokenScene(f"{base}/image_size_{name}", base, sized(w, h), TARGET))
    return cases


# --- poses ----------------------------------------------------------------------------------------

def _json_pose_damages(base: str) -> list[BrokenScene]:
    def matrix(edit: Callable[[list], Any]) -> Callable[[Path], Any]:
        def damage(root: Path) -> None:
            def change(meta: dict) -> None:
                frame = _frame_of(meta)
                result = edit(frame["transform_matrix"])
                if result is not None:
                    frame["transform_matrix"] = result
            _edit_json(_json_file(root, base), change)
        return damage

    def set_row(row: int, values: list) -> Callable[[list], None]:
        def edit(m: list) -> None:
            m[row] = values
        return edit

    def scale_rotation(factor: float) -> Callable[[list], None]:
        def edit(m: list) -> None:
            for r in range(3):
                m[r][:3] = [factor * v for v in m[r][:3]]
        return edit

    def same_pose(root: Path) -> None:
        def change(meta: dict) -> None:
            for frame in meta["frames"]:
                frame["transform_matrix"] = [[1, 0, 0, 0.5], [0, 1, 0, 0], [0, 0, 1, 2], [0, 0, 0, 1]]
        for path in root.glob("transforms*.json"):
            _edit_json(path, change)

    def literal(text: str) -> Callable[[Path], None]:
        def damage(root: Path) -> None:
            path = _json_file(root, base)
            meta = json.loads(path.read_text())
            _frame_of(meta)["transform_matrix"][1][3] = "@@"
            path.write_text(json.dumps(meta).replace('"@@"', text))
        return damage

    key = "transform_matrix"
    cases = {
        "pose_nan": (matrix(lambda m: m[0].__setitem__(3, float("nan"))), "non-finite"),
        "pose_inf": (matrix(lambda m: m[2].__setitem__(1, float("inf"))), "non-finite"),
        "pose_1e400": (literal("1e400"), "non-finite"),
        "pose_zero_rotation": (matrix(scale_rotation(0.0)), "not a rotation"),
        "pose_scaled_rotation": (matrix(scale_rotation(2.0)), "not a rotation"),
        "pose_mirrored": (matrix(lambda m: [[-v for v in m[0][:3]] + m[0][3:]] + m[1:]),
                          "not a rotation"),
        "pose_sheared": (matrix(lambda m: m[0].__setitem__(1, m[0][1] + 0.5)), "not a rotation"),
        "pose_last_row": (matrix(set_row(3, [0, 0, 1, 1])), "last row"),
        "pose_3x3": (matrix(lambda m: [r[:3] for r in m[:3]]), key),
        "pose_ragged": (matrix(lambda m: [m[0], m[1][:2], m[2], m[3]]), key),
        "pose_strings": (matrix(lambda m: [[str(v) for v in r] for r in m]), key),
        "pose_nulls": (matrix(set_row(0, [None, None, None, None])), key),
        "pose_dict": (matrix(lambda m: {"rows": m}), key),
        "pose_string": (matrix(lambda m: "identity"), key),
        "pose_number": (matrix(lambda m: 1.0), key),
        "pose_empty_list": (matrix(lambda m: []), key),
        "pose_missing": (lambda root: _edit_json(_json_file(root, base),
                                                 lambda meta: _frame_of(meta).pop(key)), key),
    }
    return [BrokenScene(f"{base}/{name}", base, damage, expect)
            for name, (damage, expect) in cases.items()]


# --- JSON keys --------------------------------------------------------------------------------------

def _set_top(base: str, key: str, value: Any) -> Callable[[Path], None]:
    return lambda root: _edit_json(_json_file(root, base), lambda meta: meta.__setitem__(key, value))


def _set_frame(base: str, key: str, value: Any) -> Callable[[Path], None]:
    return lambda root: _edit_json(_json_file(root, base),
                                   lambda meta: _frame_of(meta).__setitem__(key, value))


def replace_file(relative: str, text: str | bytes) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        path = root / relative
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return damage


def _json_file_damages(base: str) -> list[BrokenScene]:
    name = "transforms_train.json" if base == "blender" else "transforms.json"
    deep = "[" * 100_000 + "]" * 100_000
    files = {
        "json_empty_file": "",
        "json_not_json": "{ not json",
        "json_truncated": None,
        "json_top_level_list": "[]",
        "json_top_level_null": "null",
        "json_top_level_string": '"frames"',
        "json_nested_100000_deep": deep,
        "json_invalid_utf8": b'{"frames": [], "x": "\xff\xfe"}',
        "json_nul_bytes": b"\0" * 32,
    }
    cases = []
    for case, text in files.items():
        if text is None:
            def damage(root: Path, name: str = name) -> None:
                path = root / name
                path.write_text(path.read_text()[: len(path.read_text()) // 2])
        else:
            damage = replace_file(name, text)
        cases.append(BrokenScene(f"{base}/{case}", base, damage, name))
    frames = {
        "frames_missing": (lambda root: _edit_json(_json_file(root, base),
                                                   lambda meta: meta.pop("frames")), "frames"),
        "frames_object": (_set_top(base, "frames", {"0": {}}), "frames"),
        "frames_string": (_set_top(base, "frames", "images/"), "frames"),
        "frames_of_numbers": (_set_top(base, "frames", [1, 2, 3]), "frame 0"),
        "frame_null": (lambda root: _edit_json(_json_file(root, base),
                                               lambda m: m["frames"].__setitem__(1, None)), "frame 1"),
        "file_path_missing": (lambda root: _edit_json(_json_file(root, base),
                                                      lambda m: _frame_of(m).pop("file_path")),
                              "file_path"),
        "file_path_number": (_set_frame(base, "file_path", 5), "file_path"),
        "file_path_null": (_set_frame(base, "file_path", None), "file_path"),
        "file_path_list": (_set_frame(base, "file_path", ["images/cam_002.png"]), "file_path"),
        "file_path_empty": (_set_frame(base, "file_path", ""), "file_path"),
        "file_path_nul_byte": (_set_frame(base, "file_path", "images/cam\0_002.png"), "file_path"),
        "file_path_too_long": (_set_frame(base, "file_path", "images/" + "x" * 300 + ".png"),
                               "x" * 20 if base == "blender" else "file_path"),
        "file_path_absolute_nowhere": (_set_frame(base, "file_path", "/nonexistent/dir/img.png"),
                                       "/nonexistent/dir/img.png"),
        "file_path_outside_scene": (_set_frame(base, "file_path", "../../../no_such_image.png"),
                                    "no_such_image.png"),
        "file_path_is_folder": (_set_frame(base, "file_path", "." if base == "blender"
                                           else "images"), ".png' is missing"),
        "file_path_newline": (_set_frame(base, "file_path", "images/cam\n002.png"), "cam\\n002"),
        "file_path_unicode_missing": (_set_frame(base, "file_path", "images/caméra_ü_002.png"),
                                      "caméra_ü_002.png"),
    }
    for case, (damage, expect) in frames.items():
        cases.append(BrokenScene(f"{base}/{case}", base, damage, expect))
    return cases


def _transforms_key_damages() -> list[BrokenScene]:
    base = "transforms"
    top, frame = (lambda k, v: _set_top(base, k, v)), (lambda k, v: _set_frame(base, k, v))

    def drop_focal(root: Path) -> None:
        _edit_json(root / "transforms.json", lambda m: (m.pop("fl_x"), m.pop("fl_y")))

    def angle(value: Any) -> Callable[[Path], None]:
        def damage(root: Path) -> None:
            _edit_json(root / "transforms.json",
                       lambda m: (m.pop("fl_x"), m.pop("fl_y"), m.__setitem__("camera_angle_x", value)))
        return damage

    cases = {
        "fl_x_string": (top("fl_x", "eleven"), "fl_x"),
        "fl_x_list": (top("fl_x", [11.0]), "fl_x"),
        "fl_x_bool": (top("fl_x", True), "fl_x"),
        "fl_x_zero": (top("fl_x", 0.0), "focal length"),
        "fl_x_negative": (top("fl_x", -11.0), "focal length"),
        "fl_x_nan": (top("fl_x", float("nan")), "fl_x"),
        "fl_y_infinite": (top("fl_y", float("inf")), "fl_y"),
        "fl_x_frame_override_string": (frame("fl_x", "11"), "fl_x"),
        "focal_missing": (drop_focal, "focal length"),
        "camera_angle_x_string": (angle("wide"), "camera_angle_x"),
        "camera_angle_x_zero": (angle(0.0), "camera_angle_x"),
        "camera_angle_x_above_pi": (angle(4.0), "camera_angle_x"),
        "w_string": (top("w", "12px"), "'w'"),
        "w_zero": (top("w", 0), "'w'"),
        "h_negative": (top("h", -8), "'h'"),
        "h_fraction": (top("h", 8.5), "'h'"),
        "w_frame_override_null_list": (frame("w", [12]), "'w'"),
        "cx_string": (top("cx", "centre"), "cx"),
        "cy_nan": (top("cy", float("nan")), "cy"),
        "k1_string": (top("k1", "none"), "k1"),
        "k2_infinite": (frame("k2", float("inf")), "k2"),
        "k4_unsupported": (top("k4", 0.1), "k4"),
        "camera_model_equirectangular": (top("camera_model", "EQUIRECTANGULAR"), "EQUIRECTANGULAR"),
        "camera_model_number": (top("camera_model", 4), "camera model '4'"),
        "is_fisheye_with_pinhole_model": (lambda root: _edit_json(root / "transforms.json", lambda m: m.update(
            camera_model="PINHOLE", is_fisheye=True)), "is_fisheye"),
        "fisheye_p1": (lambda root: _edit_json(root / "transforms.json", lambda m: m.update(
            camera_model="OPENCV_FISHEYE", p1=0.01)), "p1"),
        "aabb_scale_string": (top("aabb_scale", "big"), "aabb_scale"),
        "aabb_scale_list": (top("aabb_scale", [16]), "aabb_scale"),
        "train_filenames_number": (top("train_filenames", 5), "train_filenames"),
        "train_filenames_numbers": (top("train_filenames", [1, 2]), "train_filenames"),
        "train_filenames_unknown": (top("train_filenames", ["images/nope.png"]), "nope.png"),
        "train_filenames_empty": (top("train_filenames", []), "train split"),
        "test_filenames_empty": (lambda root: _edit_json(root / "transforms.json", lambda m: m.update(
            train_filenames=[f["file_path"] for f in m["frames"]], test_filenames=[])),
            "test split"),
        "ply_file_path_number": (top("ply_file_path", 7), "ply_file_path"),
        "ply_file_path_missing_file": (top("ply_file_path", "points.ply"), "points.ply"),
        "ply_file_path_garbage": (lambda root: (top("ply_file_path", "points.ply")(root),
                                                (root / "points.ply").write_text("ply\nnonsense")),
                                  "points.ply"),
        "frames_empty": (top("frames", []), "frames"),
        "single_frame": (lambda root: _edit_json(root / "transforms.json",
                                                 lambda m: m.__setitem__("frames", m["frames"][:1])),
                         "train split"),
    }
    return [BrokenScene(f"{base}/{name}", base, damage, expect)
            for name, (damage, expect) in cases.items()]


def _blender_key_damages() -> list[BrokenScene]:
    base = "blender"

    def angle(value: Any, split: str = "train") -> Callable[[Path], None]:
        return lambda root: _edit_json(root / f"transforms_{split}.json",
                                       lambda m: m.__setitem__("camera_angle_x", value))

    def frames_of(split: str, value: Any) -> Callable[[Path], None]:
        return lambda root: _edit_json(root / f"transforms_{split}.json",
                                       lambda m: m.__setitem__("frames", value))

    cases = {
        "camera_angle_x_missing": (lambda root: _edit_json(
            root / "transforms_train.json", lambda m: m.pop("camera_angle_x")), "camera_angle_x"),
        "camera_angle_x_string": (angle("0.69"), "camera_angle_x"),
        "camera_angle_x_null": (angle(None), "camera_angle_x"),
        "camera_angle_x_zero": (angle(0), "camera_angle_x"),
        "camera_angle_x_negative": (angle(-0.7), "camera_angle_x"),
        "camera_angle_x_pi": (angle(3.1416), "camera_angle_x"),
        "camera_angle_x_nan": (angle(float("nan")), "camera_angle_x"),
        "camera_angle_x_list": (angle([0.7]), "camera_angle_x"),
        "camera_angle_x_bad_in_test": (angle("x", "test"), "transforms_test.json"),
        "train_frames_empty": (frames_of("train", []), "train split"),
        "test_frames_empty": (frames_of("test", []), "test split"),
        "test_json_missing": (lambda root: (root / "transforms_test.json").unlink(), "test split"),
        "test_json_is_folder": (lambda root: ((root / "transforms_test.json").unlink(),
                                              (root / "transforms_test.json").mkdir()), "test split"),
        "val_json_not_json": (replace_file("transforms_val.json", "{{"), "transforms_val.json"),
        "test_frame_pose_nan": (lambda root: _edit_json(root / "transforms_test.json", lambda m: m[
            "frames"][0]["transform_matrix"][0].__setitem__(0, float("nan"))), "non-finite"),
    }
    return [BrokenScene(f"{base}/{name}", base, damage, expect)
            for name, (damage, expect) in cases.items()]


def all_cases() -> list[BrokenScene]:
    """Every broken scene of the corpus (names are unique)."""
    from corpus_colmap import (colmap_bin_damages, colmap_pose_damages, colmap_txt_damages,
                               folder_damages)

    cases: list[BrokenScene] = []
    for base in BASES:
        cases += _image_damages(base)
    for base in ("blender", "transforms"):
        cases += _json_pose_damages(base) + _json_file_damages(base)
    for base in ("colmap_txt", "colmap_bin"):
        cases += colmap_pose_damages(base)
    cases += _transforms_key_damages() + _blender_key_damages()
    cases += colmap_txt_damages() + colmap_bin_damages() + folder_damages()
    names = [case.name for case in cases]
    assert len(names) == len(set(names)), "corpus names must be unique"
    return cases
