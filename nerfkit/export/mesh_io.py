"""Triangle meshes to and from .ply and .obj, in the forms Blender and MeshLab import with colours.

docs/design.md ("Conventions"): meshes are written Z-up as the scene was given, in scene units; this
module writes the coordinates it is handed, unchanged (the caller maps them back to the scene's
original world frame first).

**.ply** — binary little endian, one ``vertex`` element and one ``face`` element::

    element vertex V
    property float x / y / z
    property uchar red / green / blue       (only when colours are given)
    element face F
    property list uchar int vertex_indices

Blender's PLY importer reads vertex colours from the ``red green blue`` uchar properties.

**.obj** — text; vertices as ``v x y z`` or, with colours, ``v x y z r g b`` with r g b floats in
[0, 1] (the de-facto extension Blender 3.x/4.x and MeshLab read); faces 1-based. With texture
coordinates the faces are ``f v/vt v/vt v/vt``; with a texture ``NAME.obj`` also gets ``mtllib
NAME.mtl`` + ``usemtl``, and ``NAME.mtl`` (``Kd 1 1 1``, ``map_Kd NAME.png``) and ``NAME.png`` are
written next to it. Texture coordinates follow OBJ and Blender: (0, 0) is the bottom-left corner of
the image, whose first row (``texture[0]``) is its top row.

Every file is written atomically (temp file in the same folder, then renamed over the target); a
textured OBJ writes its .png, then its .mtl, then the .obj, so an .obj on disk never names a file
that is not there yet.

>>> import numpy as np
>>> triangle = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
>>> paths = write_mesh("tri.obj", triangle, np.array([[0, 1, 2]]))  # doctest: +SKIP
>>> read_mesh("tri.obj")["faces"]  # doctest: +SKIP
array([[0, 1, 2]])
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
from plyfile import PlyData, PlyElement, PlyListProperty, PlyParseError

from nerfkit.core.errors import NerfkitError
from nerfkit.core.files import atomic_write

MESH_SUFFIXES = (".ply", ".obj")
"""The file types :func:`write_mesh` and :func:`read_mesh` handle, chosen by the path's suffix."""

_CHUNK_ROWS = 65536  # rows formatted per string operation when writing OBJ text
_INT32_MAX = np.iinfo(np.int32).max
_PLY_COLOUR_NAMES = (("red", "green", "blue"), ("diffuse_red", "diffuse_green", "diffuse_blue"),
                     ("r", "g", "b"))
_PLY_UV_NAMES = (("s", "t"), ("u", "v"), ("texture_u", "texture_v"), ("texture_s", "texture_t"))


# ----------------------------------------------------------------------------------------- write

def write_mesh(path: str | os.PathLike, vertices: Any, faces: Any, colors: Any = None,
               uvs: Any = None, face_uvs: Any = None, texture: Any = None) -> list[Path]:
    """Write a triangle mesh to ``path`` (.ply or .obj, by suffix); return the files written.

    Args:
        path: ``*.ply`` or ``*.obj`` (suffix case-insensitive); its folder is created when missing.
        vertices: ``(V, 3)`` real numbers, finite. Stored as float32 in .ply; in .obj with 9
            significant digits when float32 (exact), 17 otherwise (exact for float64).
        faces: ``(F, 3)`` integers in ``[0, V)``, 0-based; ``F`` may be 0.
        colors: ``(V, 3)`` uint8 per-vertex RGB, or None.
        uvs: ``(T, 2)`` floats in [0, 1], OBJ convention (v up), or None. .obj only.
        face_uvs: ``(F, 3)`` integers in ``[0, T)``: the uv of each face corner; given with ``uvs``.
        texture: ``(H, W, 3)`` uint8 image (row 0 at the top), or None; needs ``uvs``. .obj only:
            written as ``<stem>.png`` with ``<stem>.mtl`` next to the .obj.

    Returns:
        The paths written: ``[path]``, or ``[path, <stem>.mtl, <stem>.png]`` for a textured .obj.

    Raises:
        ValueError: an array has the wrong shape, dtype or values (one sentence naming it).
        NerfkitError: the suffix is not .ply/.obj, texture data is given for a .ply, or a file
            could not be written (permissions, disk full, ...).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise NerfkitError(f"'{path}' has an unknown mesh extension: expected "
                           f"{' or '.join(MESH_SUFFIXES)}")
    vertices, faces, colors, uvs, face_uvs, texture = _checked_mesh(
        vertices, faces, colors, uvs, face_uvs, texture)
    try:
        if suffix == ".ply":
            if uvs is not None or texture is not None:
                raise NerfkitError(f"'{path}' is a .ply, which keeps no texture coordinates or "
                                   f"texture here: expected a .obj path for a textured mesh")
            _write_ply(path, vertices, faces, colors)
            return [path]
        return _write_obj(path, vertices, faces, colors, uvs, face_uvs, texture)
    except OSError as error:
        failed = Path(error.filename) if error.filename else path
        raise NerfkitError(f"'{failed}' could not be written: {error.strerror or error}") from None


def _checked_mesh(vertices: Any, faces: Any, colors: Any, uvs: Any, face_uvs: Any,
                  texture: Any) -> tuple[np.ndarray, ...]:
    """The arrays of :func:`write_mesh` as numpy arrays, after checking shapes, dtypes, ranges."""
    vertices = np.asarray(vertices)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape (V, 3), got {vertices.shape}")
    if vertices.dtype.kind not in "fiu":
        raise ValueError(f"vertices must hold real numbers, got dtype {vertices.dtype}")
    if not np.isfinite(vertices).all():
        bad = int(np.flatnonzero(~np.isfinite(vertices).all(axis=1))[0])
        raise ValueError(f"vertices must be finite, but vertex {bad} is {vertices[bad].tolist()}")
    count = vertices.shape[0]
    faces = _checked_indices("faces", faces, count, "V (the vertex count)")

    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != (count, 3):
            raise ValueError(f"colors must have shape (V, 3) = ({count}, 3), "
                             f"got {colors.shape}")
        if colors.dtype != np.uint8:
            raise ValueError(f"colors must be uint8 (0..255), got dtype {colors.dtype}")

    if (uvs is None) != (face_uvs is None):
        raise ValueError("uvs and face_uvs must be given together: uvs (T, 2) holds the "
                         "coordinates, face_uvs (F, 3) picks one per face corner")
    if uvs is not None:
        uvs = np.asarray(uvs)
        if uvs.ndim != 2 or uvs.shape[1] != 2 or uvs.dtype.kind not in "fiu":
            raise ValueError(f"uvs must be real numbers of shape (T, 2), got {uvs.shape} "
                             f"of dtype {uvs.dtype}")
        if not (np.isfinite(uvs).all() and (uvs >= 0).all() and (uvs <= 1).all()):
            raise ValueError("uvs must be finite and within [0, 1] (OBJ texture coordinates)")
        face_uvs = _checked_indices("face_uvs", face_uvs, uvs.shape[0], "T (the uv count)")
        if face_uvs.shape[0] != faces.shape[0]:
            raise ValueError(f"face_uvs must have one row per face, (F, 3) = "
                             f"({faces.shape[0]}, 3), got {face_uvs.shape}")

    if texture is not None:
        texture = np.asarray(texture)
        if texture.ndim != 3 or texture.shape[2] != 3 or min(texture.shape[:2]) < 1:
            raise ValueError(f"texture must have shape (H, W, 3), got {texture.shape}")
        if texture.dtype != np.uint8:
            raise ValueError(f"texture must be uint8 (0..255), got dtype {texture.dtype}")
        if uvs is None:
            raise ValueError("a texture needs uvs and face_uvs to map it onto the faces")
    return vertices, faces, colors, uvs, face_uvs, texture


def _checked_indices(name: str, indices: Any, count: int, count_name: str) -> np.ndarray:
    """``indices`` as an ``(N, 3)`` int64 array with every entry in ``[0, count)``."""
    indices = np.asarray(indices)
    if indices.ndim != 2 or indices.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {indices.shape}")
    if indices.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {indices.dtype}")
    indices = indices.astype(np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= count):
        bad = int(np.flatnonzero(((indices < 0) | (indices >= count)).any(axis=1))[0])
        raise ValueError(f"{name} must index 0..{count - 1} ({count_name} = {count}), but row "
                         f"{bad} is {indices[bad].tolist()}")
    return indices


def _write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray,
               colors: np.ndarray | None) -> None:
    """The binary little-endian PLY of the module docstring."""
    if vertices.shape[0] - 1 > _INT32_MAX:
        raise ValueError(f"a .ply indexes faces with int32: {vertices.shape[0]} vertices are "
                         f"too many")
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertex = np.empty(vertices.shape[0], dtype=fields)
    for axis, name in enumerate("xyz"):
        vertex[name] = vertices[:, axis]
    if colors is not None:
        for channel, name in enumerate(("red", "green", "blue")):
            vertex[name] = colors[:, channel]
    face = np.empty(faces.shape[0], dtype=[("vertex_indices", "<i4", (3,))])
    face["vertex_indices"] = faces
    ply = PlyData([PlyElement.describe(vertex, "vertex"),
                   PlyElement.describe(face, "face", len_types={"vertex_indices": "u1"})],
                  text=False, byte_order="<")
    with atomic_write(path) as file:
        ply.write(file)


def _write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None,
               uvs: np.ndarray | None, face_uvs: np.ndarray | None,
               texture: np.ndarray | None) -> list[Path]:
    """The .obj (and its .mtl and .png when textured) of the module docstring."""
    written = []
    header = ["# written by nerfkit"]
    if texture is not None:
        mtl_path, png_path = path.with_suffix(".mtl"), path.with_suffix(".png")
        _write_png(png_path, texture)
        # No Ka: Blender's importer turns it into metallic; Ks 0 + Ns 0 keep the surface matte.
        mtl = ("# written by nerfkit\nnewmtl material_0\nKd 1 1 1\nKs 0 0 0\nNs 0\nd 1\n"
               f"illum 1\nmap_Kd {png_path.name}\n")
        with atomic_write(mtl_path) as file:
            file.write(mtl.encode())
        header.append(f"mtllib {mtl_path.name}")
        written = [mtl_path, png_path]

    digits = 9 if vertices.dtype.itemsize <= 4 and vertices.dtype.kind == "f" else 17
    if colors is None:
        vertex_rows: Iterable[np.ndarray] = [vertices.astype(np.float64)]
        vertex_format = f"v %.{digits}g %.{digits}g %.{digits}g\n"
    else:
        vertex_rows = [vertices.astype(np.float64), colors / 255.0]
        vertex_format = f"v %.{digits}g %.{digits}g %.{digits}g %.6g %.6g %.6g\n"
    with atomic_write(path) as file:
        file.write(("\n".join(header) + "\n").encode())
        _write_rows(file, vertex_format, np.concatenate(list(vertex_rows), axis=1))
        if uvs is not None:
            _write_rows(file, "vt %.9g %.9g\n", uvs.astype(np.float64))
        if texture is not None:
            file.write(b"usemtl material_0\n")
        if uvs is None:
            _write_rows(file, "f %d %d %d\n", faces + 1)
        else:
            corners = np.stack([faces + 1, face_uvs + 1], axis=2).reshape(-1, 6)
            _write_rows(file, "f %d/%d %d/%d %d/%d\n", corners)
    return [path, *written]


def _write_rows(file: IO[bytes], row_format: str, rows: np.ndarray) -> None:
    """Write ``row_format % row`` for every row, a chunk of rows per string operation."""
    for chunk in _chunks(rows):
        file.write(((row_format * chunk.shape[0]) % tuple(chunk.ravel().tolist())).encode())


def _chunks(rows: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, rows.shape[0], _CHUNK_ROWS):
        yield rows[start:start + _CHUNK_ROWS]


def _write_png(path: Path, image: np.ndarray) -> None:
    import imageio.v3 as iio  # only textured exports need it

    data = iio.imwrite("<bytes>", np.ascontiguousarray(image), extension=".png")
    with atomic_write(path) as file:
        file.write(data)


# ------------------------------------------------------------------------------------------ read

def read_mesh(path: str | os.PathLike) -> dict[str, Any]:
    """Read a .ply or .obj mesh written by nerfkit or by another tool (Blender, MeshLab, ...).

    Polygons with more than three corners are split into triangle fans ``(0, i, i + 1)``.

    - .ply (binary or ASCII): ``x y z`` of any numeric type; colours from ``red green blue`` (or
      ``diffuse_*``, ``r g b``), integer types read as 0..255, float types as 0..1; faces from
      ``vertex_indices`` (or ``vertex_index``); uvs from per-vertex ``s t`` / ``u v`` /
      ``texture_u texture_v`` (then ``face_uvs`` = ``faces``) or a per-face ``texcoord`` list.
    - .obj: ``v x y z [w]`` or ``v x y z r g b [a]`` (colours in [0, 1]; read as 0..255 when a value
      exceeds 1), ``vt``, faces as ``v``, ``v/vt``, ``v//vn`` or ``v/vt/vn`` with 1-based or
      negative (relative) indices; normals, groups, lines and other statements are ignored.
      Colours are returned only when every vertex has them, uvs only when every face has them.

    Returns:
        ``vertices`` (V, 3) float64, ``faces`` (F, 3) int64 (0-based), ``colors`` (V, 3) uint8 or
        None, ``uvs`` (T, 2) float64 or None, ``face_uvs`` (F, 3) int64 or None, and ``texture``:
        the image file the .obj's material names with ``map_Kd`` (resolved next to the .mtl), or
        None (always None for .ply, and for an .obj whose .mtl is missing).

    Raises:
        NerfkitError: the file is missing, has another extension, or is not a mesh this reads
            (the message names the file and, for .obj, the line).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise NerfkitError(f"'{path}' has an unknown mesh extension: expected "
                           f"{' or '.join(MESH_SUFFIXES)}")
    if not path.is_file():
        raise NerfkitError(f"'{path}' does not exist: expected a {suffix} mesh file")
    return _read_ply(path) if suffix == ".ply" else _read_obj(path)


def _read_ply(path: Path) -> dict[str, Any]:
    expected = "expected a PLY mesh with a vertex element (x y z) and a face element"
    try:
        ply = _read_ply_data(path)
    except OSError as error:
        raise NerfkitError(f"'{path}' could not be read ({error.strerror or error}): "
                           f"{expected}") from None
    except (PlyParseError, UnicodeDecodeError, ValueError, IndexError, EOFError) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise NerfkitError(f"'{path}' is not a readable PLY file ({reason}): {expected}") from None
    if "vertex" not in ply:
        raise NerfkitError(f"'{path}' has no vertex element: {expected}")
    vertex = ply["vertex"]
    names = {prop.name: prop for prop in vertex.properties}
    if not all(axis in names and not isinstance(names[axis], PlyListProperty) for axis in "xyz"):
        raise NerfkitError(f"'{path}' lacks the vertex properties x y z: {expected}")
    data = vertex.data
    count = len(data)
    vertices = np.stack([np.asarray(data[axis], np.float64) for axis in "xyz"], axis=1)
    vertices = vertices.reshape(count, 3)

    colors = None
    for channels in _PLY_COLOUR_NAMES:
        if all(name in names and not isinstance(names[name], PlyListProperty)
               for name in channels):
            columns = np.stack([np.asarray(data[name]) for name in channels], axis=1)
            if columns.dtype.kind == "f":
                columns = np.nan_to_num(columns) * 255.0
            colors = np.clip(np.rint(columns.astype(np.float64)), 0, 255).astype(np.uint8)
            colors = colors.reshape(count, 3)
            break

    faces = np.zeros((0, 3), np.int64)
    uvs = face_uvs = None
    if "face" in ply:
        face = ply["face"]
        face_names = {prop.name for prop in face.properties}
        key = next((name for name in ("vertex_indices", "vertex_index") if name in face_names),
                   None)
        if key is None:
            raise NerfkitError(f"'{path}' has a face element without vertex_indices: {expected}")
        indices = face.data[key]
        if indices.dtype != object and indices.ndim == 2 and indices.shape[1] == 3:
            faces = indices.astype(np.int64)  # the fast path: all triangles, read in one go
            corners = np.arange(faces.size).reshape(-1, 3)
            polygons = None  # a per-face texcoord list is never read on this path
        else:
            polygons = list(indices)
            faces, corners = _fan(polygons, path, "face")
        if faces.size and (faces.min() < 0 or faces.max() >= count):
            raise NerfkitError(f"'{path}' has faces indexing vertices outside 0..{count - 1}: "
                               f"{expected}")
        if "texcoord" in face_names and polygons is not None:
            coords = list(face.data["texcoord"])
            if all(len(c) == 2 * len(p) for c, p in zip(coords, polygons)):
                uvs = (np.concatenate([np.asarray(c, np.float64) for c in coords]).reshape(-1, 2)
                       if coords else np.zeros((0, 2)))
                face_uvs = corners
    if uvs is None:
        for pair in _PLY_UV_NAMES:
            if all(name in names and not isinstance(names[name], PlyListProperty)
                   for name in pair):
                uvs = np.stack([np.asarray(data[name], np.float64) for name in pair], axis=1)
                face_uvs = faces.copy()
                break
    return {"vertices": vertices, "faces": faces, "colors": colors, "uvs": uvs,
            "face_uvs": face_uvs, "texture": None}


def _read_ply_data(path: Path) -> PlyData:
    """The PLY at ``path``: triangle faces are first read in one block (memory-mapped, plyfile
    checks every list length); a file with other lists or other polygons is read row by row."""
    try:
        ply = PlyData.read(str(path), mmap="c", known_list_len={
            "face": {"vertex_indices": 3, "vertex_index": 3}})
        for element in ply.elements:  # copy out of the map so the file is not held open
            element.data = np.array(element.data)
        return ply
    except PlyParseError:
        return PlyData.read(str(path), mmap=False)


def _fan(polygons: list, path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Triangle fans of ``polygons`` (index sequences), and for each triangle corner its position
    in the concatenation of all polygons (to pick per-corner data such as PLY ``texcoord``)."""
    lengths = np.fromiter((len(p) for p in polygons), np.int64, len(polygons))
    if lengths.size and lengths.min() < 3:
        bad = int(np.flatnonzero(lengths < 3)[0])
        raise NerfkitError(f"'{path}' has a {what} with {lengths[bad]} vertices (number {bad}): "
                           f"expected polygons of at least 3 vertices")
    if not polygons:
        return np.zeros((0, 3), np.int64), np.zeros((0, 3), np.int64)
    flat = np.concatenate([np.asarray(p, np.int64).ravel() for p in polygons])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    triangles = lengths - 2
    first = np.repeat(starts, triangles)
    step = np.arange(triangles.sum()) - np.repeat(np.cumsum(triangles) - triangles, triangles)
    corners = np.stack([first, first + step + 1, first + step + 2], axis=1)
    return flat[corners], corners


def _read_obj(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise NerfkitError(f"'{path}' could not be read ({error.strerror or error}): expected a "
                           f"text .obj mesh") from None
    if b"\0" in raw:
        raise NerfkitError(f"'{path}' is not a text file: expected a text .obj mesh")
    positions: list[list[float]] = []
    colours: list[list[float] | None] = []
    texcoords: list[list[float]] = []
    polygons: list[list[int]] = []
    polygon_uvs: list[list[int] | None] = []
    normal_count = 0
    mtllibs: list[str] = []
    materials_used: list[str] = []

    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        keyword, *args = line.split()
        where = f"'{path}' line {number}"
        try:
            if keyword == "v":
                values = [float(a) for a in args]
                if len(values) not in (3, 4, 6, 7):
                    raise ValueError(f"{len(values)} numbers")
                positions.append(values[:3])
                colours.append(values[3:6] if len(values) >= 6 else None)
            elif keyword == "vt":
                values = [float(a) for a in args]
                if not 1 <= len(values) <= 3:
                    raise ValueError(f"{len(values)} numbers")
                texcoords.append([values[0], values[1] if len(values) > 1 else 0.0])
            elif keyword == "vn":
                normal_count += 1
            elif keyword == "f":
                if len(args) < 3:
                    raise ValueError(f"{len(args)} corners, at least 3 are needed")
                corners = [_obj_corner(arg, len(positions), len(texcoords)) for arg in args]
                polygons.append([vertex for vertex, _ in corners])
                uv = [uv for _, uv in corners]
                polygon_uvs.append(None if None in uv else uv)  # type: ignore[arg-type]
            elif keyword == "mtllib":
                mtllibs.append(line[len("mtllib"):].strip())
            elif keyword == "usemtl" and args:
                materials_used.append(args[0])
        except ValueError as error:
            raise NerfkitError(f"{where} is a malformed '{keyword}' statement ({error}): "
                               f"expected an OBJ mesh ('v x y z [r g b]', 'vt u v', "
                               f"'f v[/vt][/vn] ...')") from None

    count = len(positions)
    vertices = np.asarray(positions, np.float64).reshape(count, 3)
    faces, corner_ids = _fan(polygons, path, "face")
    colors = None
    if count and all(c is not None for c in colours):
        values = np.asarray(colours, np.float64)
        scale = 1.0 if np.nanmax(values, initial=0.0) > 1.0 else 255.0
        colors = np.clip(np.rint(np.nan_to_num(values) * scale), 0, 255).astype(np.uint8)
    uvs = face_uvs = None
    if texcoords and polygons and all(uv is not None for uv in polygon_uvs):
        uvs = np.asarray(texcoords, np.float64).reshape(-1, 2)
        flat_uvs = np.concatenate([np.asarray(uv, np.int64) for uv in polygon_uvs])  # type: ignore
        face_uvs = flat_uvs[corner_ids]
    return {"vertices": vertices, "faces": faces, "colors": colors, "uvs": uvs,
            "face_uvs": face_uvs, "texture": _obj_texture(path, mtllibs, materials_used)}


def _obj_corner(token: str, vertex_count: int, uv_count: int) -> tuple[int, int | None]:
    """One ``v``, ``v/vt``, ``v//vn`` or ``v/vt/vn`` face corner as 0-based (vertex, uv or None)."""
    parts = token.split("/")
    if len(parts) > 3 or not parts[0]:
        raise ValueError(f"corner '{token}' is not v, v/vt, v//vn or v/vt/vn")
    vertex = _obj_index(parts[0], vertex_count, "vertex")
    uv = _obj_index(parts[1], uv_count, "vt") if len(parts) > 1 and parts[1] else None
    return vertex, uv


def _obj_index(text: str, count: int, what: str) -> int:
    """A 1-based or negative (relative to the ``count`` defined so far) OBJ index, 0-based."""
    index = int(text)
    resolved = index - 1 if index > 0 else count + index
    if index == 0 or not 0 <= resolved < count:
        raise ValueError(f"{what} index {index} is out of range, {count} defined so far")
    return resolved


def _obj_texture(path: Path, mtllibs: list[str], materials_used: list[str]) -> Path | None:
    """The ``map_Kd`` image of the first material used (or defined), from the first .mtl found."""
    candidates = [name for line in mtllibs for name in (line, *line.split())]
    for name in dict.fromkeys(candidates):  # the whole line first (names with spaces), then words
        mtl_path = path.parent / name
        try:
            text = mtl_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        maps: dict[str, str] = {}
        current = None
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("newmtl"):
                current = line[len("newmtl"):].strip()
            elif line.startswith("map_Kd") and current is not None:
                rest = line[len("map_Kd"):].strip()
                # options such as '-s 1 1 1' may precede the name: then take the last word
                if rest:
                    maps.setdefault(current, rest.split()[-1] if rest.startswith("-") else rest)
        chosen = next((maps[m] for m in materials_used if m in maps), None)
        if chosen is None and maps:
            chosen = next(iter(maps.values()))
        if chosen is not None:
            return mtl_path.parent / chosen
    return None
