"""The COLMAP part of the broken-scene corpus (:mod:`corpus`): poses, text and binary model
files, and damages to the scene folder itself."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path
from typing import Any, Callable

from corpus import TARGET, TARGET_INDEX, BrokenScene, replace_file


def _colmap_image_record(data: bytes, image_id: int) -> int:
    """Byte offset of image ``image_id``'s record in an images.bin without 2D points."""
    offset = 8
    while True:
        (current,) = struct.unpack_from("<I", data, offset)
        if current == image_id:
            return offset
        name_end = data.index(b"\0", offset + 64)
        (points,) = struct.unpack_from("<Q", data, name_end + 1)
        offset = name_end + 1 + 8 + 24 * points


def colmap_pose_damages(base: str) -> list[BrokenScene]:
    binary = base == "colmap_bin"
    image_id = TARGET_INDEX + 1

    def pose(values: dict[int, float]) -> Callable[[Path], None]:
        """Set fields of the target image's pose (0-3: qw qx qy qz, 4-6: tx ty tz)."""
        def damage(root: Path) -> None:
            if binary:
                path = root / "sparse/0/images.bin"
                data = bytearray(path.read_bytes())
                start = _colmap_image_record(bytes(data), image_id) + 4
                for index, value in values.items():
                    struct.pack_into("<d", data, start + 8 * index, value)
                path.write_bytes(bytes(data))
                path = root / "sparse/0/frames.bin"
                if path.exists():                   # pycolmap >= 3.12 keeps the pose in frames
                    data = bytearray(path.read_bytes())
                    start = 8 + 84 * TARGET_INDEX + 8
                    for index, value in values.items():
                        struct.pack_into("<d", data, start + 8 * index, value)
                    path.write_bytes(bytes(data))
                return
            for name, first in (("images.txt", 1), ("frames.txt", 2)):
                path = root / "sparse/0" / name
                if not path.exists():
                    continue
                lines = path.read_text().splitlines()
                for n, line in enumerate(lines):
                    tokens = line.split()
                    if tokens and not line.startswith("#") and tokens[0] == str(image_id):
                        for index, value in values.items():
                            tokens[first + index] = repr(value)
                        lines[n] = " ".join(tokens)
                        break
                path.write_text("\n".join(lines) + "\n")
        return damage

    nan, inf = float("nan"), float("inf")
    named = "images.bin" if binary else "images.txt"
    cases = {
        "pose_quaternion_zero": (pose({0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0}), named),
        "pose_quaternion_nan": (pose({1: nan}), named),
        "pose_translation_nan": (pose({5: nan}), named),
        "pose_translation_inf": (pose({4: inf}), named),
        "pose_translation_1e300": (pose({4: 1e300, 5: -1e300}), TARGET),
    }
    return [BrokenScene(f"{base}/{name}", base, damage, expect)
            for name, (damage, expect) in cases.items()]


# --- COLMAP files -------------------------------------------------------------------------------------

def _edit_lines(relative: str, edit: Callable[[list[str]], list[str] | None]) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        path = root / relative
        lines = path.read_text().splitlines()
        result = edit(lines)
        path.write_text("\n".join(lines if result is None else result) + "\n")
    return damage


def _data_line(lines: list[str], first: str) -> int:
    return next(i for i, line in enumerate(lines) if line.split()[:1] == [first])


def _set_token(relative: str, first: str, index: int, value: str) -> Callable[[Path], None]:
    def edit(lines: list[str]) -> None:
        n = _data_line(lines, first)
        tokens = lines[n].split()
        tokens[index] = value
        lines[n] = " ".join(tokens)
    return _edit_lines(relative, edit)


def colmap_txt_damages() -> list[BrokenScene]:
    base, cams, imgs, pts = "colmap_txt", "sparse/0/cameras.txt", "sparse/0/images.txt", \
        "sparse/0/points3D.txt"

    def truncate(relative: str, fraction: float) -> Callable[[Path], None]:
        def damage(root: Path) -> None:
            path = root / relative
            data = path.read_bytes()
            path.write_bytes(data[: int(len(data) * fraction)])
        return damage

    def without_line(relative: str, first: str) -> Callable[[Path], None]:
        return _edit_lines(relative, lambda lines: [l for i, l in enumerate(lines)
                                                    if i != _data_line(lines, first)])

    cases = {
        "cameras_txt_empty": (replace_file(cams, ""), "sparse/0"),
        "cameras_txt_garbage": (replace_file(cams, "hello world\nthis is not colmap\n"), "cameras.txt"),
        "cameras_txt_truncated_60pct": (truncate(cams, 0.6), "cameras.txt"),
        "cameras_txt_line_dropped": (without_line(cams, "3"), "cameras.txt"),
        "cameras_txt_unknown_model": (_set_token(cams, "3", 1, "FOOBAR"), "FOOBAR"),
        "cameras_txt_fov_model": (lambda root: (_set_token(cams, "3", 1, "FOV")(root),
                                                _edit_lines(cams, lambda ls: [
                                                    l + " 0.5" if l.startswith("3 ") else l
                                                    for l in ls])(root)), "FOV"),
        "cameras_txt_width_word": (_set_token(cams, "3", 2, "wide"), "wide"),
        "cameras_txt_width_zero": (_set_token(cams, "3", 2, "0"), "cameras.txt"),
        "cameras_txt_too_few_params": (_edit_lines(cams, lambda ls: [
            " ".join(l.split()[:-1]) if l.startswith("3 ") else l for l in ls]), "parameters"),
        "cameras_txt_focal_nan": (_set_token(cams, "3", 4, "nan"), "cameras.txt"),
        "cameras_txt_focal_zero": (_set_token(cams, "3", 4, "0"), TARGET),
        "cameras_txt_focal_negative": (_set_token(cams, "3", 5, "-11"), TARGET),
        "cameras_txt_principal_inf": (_set_token(cams, "3", 6, "inf"), "cameras.txt"),
        "cameras_txt_invalid_utf8": (replace_file(cams, b"1 PINHOLE 12 8 11 11 6 4 \xff\xfe\n"),
                                     "cameras.txt"),
        "cameras_txt_missing": (lambda root: (root / cams).unlink(), "sparse/0"),
        "images_txt_missing": (lambda root: (root / imgs).unlink(), "images.bin or images.txt"),
        "images_txt_empty": (replace_file(imgs, ""), "images.txt"),
        "images_txt_truncated_half": (truncate(imgs, 0.5), "images.txt"),
        "images_txt_truncated_mid_line": (truncate(imgs, 0.35), "images.txt"),
        "images_txt_quaternion_word": (_set_token(imgs, "3", 2, "north"), "north"),
        "images_txt_camera_id_99": (_set_token(imgs, "3", 8, "99"), "sparse/0"),
        "images_txt_name_with_space": (_set_token(imgs, "3", 9, "cam 002.png"), "cam"),
        "images_txt_name_too_long": (_set_token(imgs, "3", 9, "y" * 300 + ".png"), "y" * 20),
        "images_txt_name_elsewhere": (_set_token(imgs, "3", 9, "../../gone/cam_002.png"),
                                      "gone"),
        "images_txt_points_line_odd": (_edit_lines(imgs, lambda ls: ls.__setitem__(
            _data_line(ls, "3") + 1, "1.0 2.0")), "images.txt"),
        "points3d_txt_missing": (lambda root: (root / pts).unlink(), "points3D"),
        "points3d_txt_garbage": (replace_file(pts, "1 2 3\n"), "points3D.txt"),
        "points3d_txt_truncated": (truncate(pts, 0.5), "points3D.txt"),
        "points3d_txt_colour_word": (_set_token(pts, "2", 4, "red"), "red"),
        "rigs_txt_garbage": (replace_file("sparse/0/rigs.txt", "1 1 LIDAR x\n"), "sparse/0"),
        "frames_txt_garbage": (replace_file("sparse/0/frames.txt", "1 1 a b c\n"), "sparse/0"),
        "frames_txt_nul_bytes": (replace_file("sparse/0/frames.txt", b"\0\0\0\0"), "frames.txt"),
    }
    return [BrokenScene(f"{base}/{name}", base, damage, expect)
            for name, (damage, expect) in cases.items()]


def colmap_bin_damages() -> list[BrokenScene]:
    base = "colmap_bin"
    cases: list[BrokenScene] = []
    for stem in ("cameras", "images", "points3D", "rigs", "frames"):
        relative = f"sparse/0/{stem}.bin"

        def cut(fraction: float, relative: str = relative) -> Callable[[Path], None]:
            def damage(root: Path) -> None:
                path = root / relative
                data = path.read_bytes()
                path.write_bytes(data[: max(0, min(len(data) - 1, int(len(data) * fraction)))])
            return damage

        def append(root: Path, relative: str = relative) -> None:
            with open(root / relative, "ab") as file:
                file.write(b"\x01\x02\x03")

        def huge_count(root: Path, relative: str = relative) -> None:
            path = root / relative
            data = bytearray(path.read_bytes())
            struct.pack_into("<Q", data, 0, 1 << 40)
            path.write_bytes(bytes(data))

        for name, damage in {"empty": cut(0.0), "cut_7_bytes": lambda root, r=relative: (
                root / r).write_bytes((root / r).read_bytes()[:7]),
                "cut_30pct": cut(0.3), "cut_half": cut(0.5), "cut_last_byte": cut(1.0),
                "trailing_bytes": append, "count_2_pow_40": huge_count}.items():
            cases.append(BrokenScene(f"{base}/{stem}_bin_{name}", base, damage, f"{stem}.bin"))

    def patch(relative: str, offset: int, fmt: str, value: Any) -> Callable[[Path], None]:
        def damage(root: Path) -> None:
            path = root / relative
            data = bytearray(path.read_bytes())
            struct.pack_into(fmt, data, offset, value)
            path.write_bytes(bytes(data))
        return damage

    camera = 8 + 2 * (4 + 4 + 8 + 8 + 8 * 4)     # the third PINHOLE camera's record
    extra = {
        "cameras_bin_model_id_99": (patch("sparse/0/cameras.bin", camera + 4, "<i", 99), "cameras.bin"),
        "cameras_bin_full_opencv_model": (patch("sparse/0/cameras.bin", camera + 4, "<i", 6), "cameras.bin"),
        "cameras_bin_width_zero": (patch("sparse/0/cameras.bin", camera + 8, "<Q", 0), "cameras.bin"),
        "cameras_bin_focal_nan": (patch("sparse/0/cameras.bin", camera + 24, "<d", float("nan")),
                                  TARGET),
        "cameras_bin_focal_negative": (patch("sparse/0/cameras.bin", camera + 24, "<d", -3.0), TARGET),
        "images_bin_name_not_utf8": (lambda root: _replace_name(root, b"cam_\xff\xfe2.png"),
                                     "images.bin"),
        "images_bin_name_missing_file": (lambda root: _replace_name(root, b"cam_992.png"),
                                         "cam_992.png"),
        "images_bin_camera_id_99": (lambda root: _patch_image_camera(root, 99), "sparse/0"),
        "points3d_bin_missing": (lambda root: (root / "sparse/0/points3D.bin").unlink(), "points3D"),
        "cameras_bin_missing": (lambda root: (root / "sparse/0/cameras.bin").unlink(), "sparse/0"),
        "images_bin_missing": (lambda root: (root / "sparse/0/images.bin").unlink(), "images.bin"),
        "cameras_bin_is_folder": (lambda root: ((root / "sparse/0/cameras.bin").unlink(),
                                                (root / "sparse/0/cameras.bin").mkdir()), "sparse/0"),
    }
    for name, (damage, expect) in extra.items():
        cases.append(BrokenScene(f"{base}/{name}", base, damage, expect))
    return cases


def _replace_name(root: Path, name: bytes) -> None:
    """Rename image 3 inside images.bin (same length keeps the layout valid)."""
    path = root / "sparse/0/images.bin"
    data = path.read_bytes()
    start = _colmap_image_record(data, TARGET_INDEX + 1) + 4 + 56 + 4
    end = data.index(b"\0", start)
    path.write_bytes(data[:start] + name + data[end:])


def _patch_image_camera(root: Path, camera_id: int) -> None:
    path = root / "sparse/0/images.bin"
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, _colmap_image_record(bytes(data), TARGET_INDEX + 1) + 60, camera_id)
    path.write_bytes(bytes(data))


# --- folders -----------------------------------------------------------------------------------------

def folder_damages() -> list[BrokenScene]:
    def empty_folder(root: Path) -> None:
        shutil.rmtree(root)
        root.mkdir()

    def only_images(root: Path) -> None:
        shutil.rmtree(root / "sparse")

    cases = [
        BrokenScene("colmap_txt/folder_emptied", "colmap_txt", empty_folder, "is not a scene folder"),
        BrokenScene("colmap_txt/folder_only_images", "colmap_txt", only_images, "not a scene folder"),
        BrokenScene("colmap_txt/folder_images_missing", "colmap_txt",
                    lambda root: shutil.rmtree(root / "images"), "cam_000.png"),
        BrokenScene("colmap_txt/folder_images_is_a_file", "colmap_txt",
                    lambda root: (shutil.rmtree(root / "images"), (root / "images").write_text("x")),
                    "cam_000.png"),
        BrokenScene("colmap_bin/folder_sparse_0_is_a_file", "colmap_bin",
                    lambda root: (shutil.rmtree(root / "sparse/0"), (root / "sparse/0").write_text("")),
                    "not a scene folder"),
        BrokenScene("blender/folder_only_val_json", "blender",
                    lambda root: ((root / "transforms_train.json").unlink(),
                                  (root / "transforms_test.json").unlink()), "not a scene folder"),
        BrokenScene("transforms/folder_json_is_a_folder", "transforms",
                    lambda root: ((root / "transforms.json").unlink(),
                                  (root / "transforms.json").mkdir()), "not a scene folder"),
        BrokenScene("transforms/folder_all_images_deleted", "transforms",
                    lambda root: shutil.rmtree(root / "images"), "6 of them are not on disk"),
        BrokenScene("colmap_txt/single_image", "colmap_txt",
                    _edit_lines("sparse/0/images.txt", lambda ls: [
                        line for line in ls[: _data_line(ls, "1") + 2] if not line.startswith("#")]),
                    "train split"),
    ]
    return cases
