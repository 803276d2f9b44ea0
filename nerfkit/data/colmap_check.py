"""Structural checks of a COLMAP model's files before pycolmap reads them.

pycolmap's binary readers trust the counts in a file: a truncated ``images.bin``, ``points3D.bin``
or ``frames.bin`` aborts the whole Python process (a failed glog CHECK), and a truncated
``cameras.bin`` can load with garbage parameters. Its text readers do not notice a file cut off
between two lines. So every file of the model is walked here first, record by record, and a file
whose layout does not add up raises :class:`~nerfkit.core.errors.NerfkitError` naming the file and
the byte offset (binary) or line (text) where it stops making sense.

Binary layouts (little endian, COLMAP >= 3.12 / pycolmap >= 3.12; ``rigs`` and ``frames`` are
optional, older models have neither)::

    cameras.bin   u64 n; n x (u32 id, i32 model, u64 width, u64 height, f64 params[k(model)])
    images.bin    u64 n; n x (u32 id, f64 qvec[4], f64 tvec[3], u32 camera_id, name\\0,
                              u64 m, m x (f64 x, f64 y, u64 point3D_id))
    points3D.bin  u64 n; n x (u64 id, f64 xyz[3], u8 rgb[3], f64 error, u64 m, m x (u32, u32))
    rigs.bin      u64 n; n x (u32 id, u32 s, [i32 type, u32 id if s > 0],
                              (s - 1) x (i32 type, u32 id, u8 has_pose, [f64 pose[7]]))
    frames.bin    u64 n; n x (u32 id, u32 rig_id, f64 pose[7], u32 m, m x (i32, u32, u64))
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Callable, Sequence

import pycolmap

from nerfkit.core.errors import NerfkitError
from nerfkit.data.colmap_cameras import camera_from_colmap

_POSE_BYTES = 7 * 8


def camera_param_counts() -> dict[str, int]:
    """COLMAP camera model name -> number of parameters, for every model pycolmap knows."""
    counts = {}
    for name, model in pycolmap.CameraModelId.__members__.items():
        if int(model.value) >= 0:
            camera = pycolmap.Camera.create_from_model_name(1, name, 1.0, 2, 2)
            counts[name] = len(camera.params)
    return counts


class _Bytes:
    """A cursor over a binary file's contents that raises a clear error past the end."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.offset = data, path, 0

    def fail(self, what: str) -> NerfkitError:
        return NerfkitError(f"COLMAP file '{self.path}' is truncated or corrupt: {what} at byte "
                            f"{self.offset} (the file has {len(self.data)} bytes)")

    def read(self, fmt: str, what: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.offset + size > len(self.data):
            raise self.fail(f"it ends inside {what}")
        values = struct.unpack_from(fmt, self.data, self.offset)
        self.offset += size
        return values

    def skip(self, size: int, what: str) -> None:
        if size < 0 or self.offset + size > len(self.data):
            raise self.fail(f"it ends inside {what}")
        self.offset += size

    def count(self, record_bytes: int, what: str) -> int:
        """A u64 record count, refused when even the smallest records cannot fit the rest."""
        (n,) = self.read("<Q", f"the number of {what}")
        if n * record_bytes > len(self.data) - self.offset:
            self.offset -= 8
            raise self.fail(f"it claims {n} {what}, more than the file can hold")
        return n

    def string(self, what: str) -> str:
        end = self.data.find(b"\0", self.offset)
        if end < 0:
            raise self.fail(f"it ends inside {what}")
        raw = self.data[self.offset:end]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8 text") from None
        self.offset = end + 1
        return text

    def finish(self) -> None:
        if self.offset != len(self.data):
            raise self.fail(f"{len(self.data) - self.offset} bytes follow the last record")


def _cameras_bin(cursor: _Bytes) -> None:
    counts = list(camera_param_counts().items())
    by_id = {int(pycolmap.CameraModelId.__members__[name].value): k for name, k in counts}
    for i in range(cursor.count(24, "cameras")):
        _, model, width, height = cursor.read("<IiQQ", f"camera {i}")
        if model not in by_id:
            cursor.offset -= 20
            raise cursor.fail(f"camera {i} has the unknown camera model id {model}")
        if not (0 < width < 1 << 20 and 0 < height < 1 << 20):
            raise cursor.fail(f"camera {i} has the image size {width}x{height}")
        cursor.skip(8 * by_id[model], f"the parameters of camera {i}")


def _check_pose(cursor: _Bytes, pose: list[float], what: str) -> None:
    """A finite pose with a non-zero quaternion (pycolmap would silently replace a zero one)."""
    if not all(math.isfinite(v) for v in pose):
        raise NerfkitError(f"COLMAP file '{cursor.path}': {what} has a non-finite pose {pose}")
    _check_quaternion(pose[:4], f"COLMAP file '{cursor.path}': {what}")


def _images_bin(cursor: _Bytes) -> None:
    for i in range(cursor.count(73, "images")):
        _, *pose, _ = cursor.read("<I7dI", f"image {i}")
        _check_pose(cursor, pose, f"image {i}")
        cursor.string(f"the name of image {i}")
        (points,) = cursor.read("<Q", f"the number of 2D points of image {i}")
        cursor.skip(24 * points, f"the 2D points of image {i}")


def _points3d_bin(cursor: _Bytes) -> None:
    for i in range(cursor.count(51, "points")):
        cursor.skip(8 + 24 + 3 + 8, f"point {i}")
        (track,) = cursor.read("<Q", f"the track length of point {i}")
        cursor.skip(8 * track, f"the track of point {i}")


def _rigs_bin(cursor: _Bytes) -> None:
    for i in range(cursor.count(8, "rigs")):
        _, sensors = cursor.read("<II", f"rig {i}")
        if sensors > 0:
            cursor.skip(8, f"the reference sensor of rig {i}")
        for _ in range(max(sensors - 1, 0)):
            _, _, has_pose = cursor.read("<iIB", f"a sensor of rig {i}")
            if has_pose:
                cursor.skip(_POSE_BYTES, f"a sensor pose of rig {i}")


def _frames_bin(cursor: _Bytes) -> None:
    for i in range(cursor.count(4 + 4 + _POSE_BYTES + 4, "frames")):
        _, _, *pose = cursor.read("<II7d", f"frame {i}")
        _check_pose(cursor, pose, f"frame {i}")
        (data_ids,) = cursor.read("<I", f"the number of data ids of frame {i}")
        cursor.skip(16 * data_ids, f"the data ids of frame {i}")


_BINARY: dict[str, Callable[[_Bytes], None]] = {
    "cameras": _cameras_bin, "images": _images_bin, "points3D": _points3d_bin,
    "rigs": _rigs_bin, "frames": _frames_bin,
}


def check_binary_file(path: Path, stem: str) -> None:
    """Walk one binary model file (``stem`` in cameras, images, points3D, rigs, frames)."""
    cursor = _Bytes(_read_bytes(path), path)
    _BINARY[stem](cursor)
    cursor.finish()


# --- text -----------------------------------------------------------------------------------------

def _text_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, stripped line)`` of every line, comments and blank lines included."""
    raw = _read_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise NerfkitError(f"COLMAP file '{path}' is not UTF-8 text (byte {error.start})") from None
    if "\0" in text:
        raise NerfkitError(f"COLMAP file '{path}' holds NUL bytes: expected a text file")
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)]


def _numbers(tokens: list[str], kind: type, path: Path, number: int, what: str) -> list:
    """``tokens`` parsed as ``kind`` (int, or float that must be finite)."""
    values = []
    for token in tokens:
        try:
            value = kind(token)
        except ValueError:
            value = None
        if value is None or (kind is float and not math.isfinite(value)):
            raise NerfkitError(f"line {number} of '{path}' has '{token[:40]}' where {what} was "
                               "expected")
        values.append(value)
    return values


def _check_quaternion(q: Sequence[float], where: str) -> None:
    norm = math.sqrt(sum(v * v for v in q))
    if not (math.isfinite(norm) and norm > 1e-6):
        raise NerfkitError(f"{where} has the rotation quaternion {list(q)}, expected a non-zero "
                           "finite one")


def _header_count(lines: list[tuple[int, str]], label: str) -> int | None:
    """N from a ``# Number of <label>: N`` header comment, or None."""
    prefix = f"# number of {label}:"
    for _, line in lines:
        if line.lower().startswith(prefix):
            value = line[len(prefix):].split(",")[0].strip()
            return int(value) if value.isdigit() else None
    return None


def _check_count(path: Path, lines: list[tuple[int, str]], label: str, found: int) -> None:
    expected = _header_count(lines, label)
    if expected is not None and expected != found:
        raise NerfkitError(f"COLMAP file '{path}' lists {found} {label} but its header says "
                           f"{expected}: the file is truncated or was edited")


def _cameras_txt(path: Path, lines: list[tuple[int, str]]) -> None:

    params = camera_param_counts()
    data = [(n, line.split()) for n, line in lines if line and not line.startswith("#")]
    for number, tokens in data:
        if len(tokens) < 4:
            raise NerfkitError(f"line {number} of '{path}' has {len(tokens)} fields: expected "
                               "CAMERA_ID MODEL WIDTH HEIGHT PARAMS...")
        if tokens[1] not in params:
            camera_from_colmap(tokens[1], [], path)   # raises: the model is not supported
        _, width, height = _numbers([tokens[0], tokens[2], tokens[3]], int, path, number,
                                    "a whole number")
        if width < 1 or height < 1:
            raise NerfkitError(f"line {number} of '{path}' gives the image size {width}x{height}, "
                               "expected at least 1x1")
        if len(tokens) - 4 != params[tokens[1]]:
            raise NerfkitError(f"line {number} of '{path}' gives {len(tokens) - 4} parameters for "
                               f"a {tokens[1]} camera, which has {params[tokens[1]]}")
        _numbers(tokens[4:], float, path, number, "a finite number")
    _check_count(path, lines, "cameras", len(data))


def _images_txt(path: Path, lines: list[tuple[int, str]]) -> None:
    count, index = 0, 0
    while index < len(lines):
        number, line = lines[index]
        index += 1
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        if len(tokens) < 10:
            raise NerfkitError(f"line {number} of '{path}' has {len(tokens)} fields: expected "
                               "IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME")
        _numbers([tokens[0], tokens[8]], int, path, number, "a whole number")
        pose = _numbers(tokens[1:8], float, path, number, "a finite number")
        _check_quaternion(pose[:4], f"line {number} of '{path}'")
        count += 1
        if index < len(lines):          # the 2D points line (may be empty)
            number, points = lines[index]
            index += 1
            if len(points.split()) % 3:
                raise NerfkitError(f"line {number} of '{path}' is not a list of X Y POINT3D_ID "
                                   "triples (the 2D points of the image above it)")
            _numbers(points.split(), float, path, number, "a number")
    _check_count(path, lines, "images", count)


def _points3d_txt(path: Path, lines: list[tuple[int, str]]) -> None:
    data = [(n, line.split()) for n, line in lines if line and not line.startswith("#")]
    for number, tokens in data:
        if len(tokens) < 8 or (len(tokens) - 8) % 2:
            raise NerfkitError(f"line {number} of '{path}' has {len(tokens)} fields: expected "
                               "POINT3D_ID X Y Z R G B ERROR and (IMAGE_ID, POINT2D_IDX) pairs")
        _numbers(tokens[1:4] + tokens[7:8], float, path, number, "a number")
        _numbers(tokens[:1] + tokens[4:7] + tokens[8:], int, path, number, "a whole number")
    _check_count(path, lines, "points", len(data))


_TEXT: dict[str, Callable[[Path, list[tuple[int, str]]], None]] = {
    "cameras": _cameras_txt, "images": _images_txt, "points3D": _points3d_txt,
}


def check_text_file(path: Path, stem: str) -> None:
    """Check one text model file (cameras, images, points3D; rigs and frames are only decoded)."""
    lines = _text_lines(path)
    if stem in _TEXT:
        _TEXT[stem](path, lines)


def check_model_files(model_dir: Path) -> None:
    """Check every file pycolmap will read from ``model_dir``.

    pycolmap reads the binary model when ``cameras``, ``images`` and ``points3D`` all exist as
    ``.bin``, else the text model; ``rigs`` and ``frames`` are optional in either.
    """
    core = ("cameras", "images", "points3D")
    ext = "bin" if all((model_dir / f"{stem}.bin").is_file() for stem in core) else "txt"
    for stem in _BINARY:
        path = model_dir / f"{stem}.{ext}"
        if not path.exists():
            continue
        if not path.is_file():
            raise NerfkitError(f"COLMAP file '{path}' is not a file")
        if ext == "bin":
            check_binary_file(path, stem)
        else:
            check_text_file(path, stem)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise NerfkitError(f"COLMAP file '{path}' could not be read: "
                           f"{error.strerror or error}") from None
