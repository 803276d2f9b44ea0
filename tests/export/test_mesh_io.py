"""Mesh .ply/.obj: round trips are exact, the PLY header is the one Blender reads colours from, the
OBJ text is 1-based with ``v x y z r g b``, textured OBJs reference their .mtl and .png, OBJs from
other tools read (quads, negative indices, v//vn), bad input names itself, and writes are atomic."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from nerfkit.core.errors import NerfkitError
from nerfkit.export import mesh_io
from nerfkit.export.mesh_io import read_mesh, write_mesh


def cube(dtype=np.float64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A cube with awkward coordinates (large offset, tiny fractions), its 12 triangles, colours."""
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], np.float64)
    vertices = (corners * [0.1234567, 2.5e-3, 7.0] + [123456.789, -0.333333, 1e-7]).astype(dtype)
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    colors = np.array([[0, 0, 0], [255, 255, 255], [1, 2, 3], [254, 128, 127],
                       [10, 20, 30], [200, 100, 50], [7, 77, 177], [255, 0, 128]], np.uint8)
    return vertices, faces, colors


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".tmp-" in p.name]


# ------------------------------------------------------------------------------------ round trips

@pytest.mark.parametrize("with_colors", [True, False])
def test_ply_round_trip_is_exact_in_float32(tmp_path, with_colors):
    vertices, faces, colors = cube()
    path = tmp_path / "mesh.ply"
    written = write_mesh(path, vertices, faces, colors if with_colors else None)
    assert written == [path]
    mesh = read_mesh(path)
    np.testing.assert_array_equal(mesh["vertices"], vertices.astype(np.float32))
    np.testing.assert_array_equal(mesh["faces"], faces)
    if with_colors:
        assert mesh["colors"].dtype == np.uint8
        np.testing.assert_array_equal(mesh["colors"], colors)
    else:
        assert mesh["colors"] is None
    assert mesh["uvs"] is None and mesh["face_uvs"] is None and mesh["texture"] is None


@pytest.mark.parametrize("with_colors", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_obj_round_trip_is_exact_at_the_input_precision(tmp_path, with_colors, dtype):
    vertices, faces, colors = cube(dtype)
    path = tmp_path / "mesh.obj"
    assert write_mesh(path, vertices, faces, colors if with_colors else None) == [path]
    mesh = read_mesh(path)
    np.testing.assert_array_equal(mesh["vertices"].astype(dtype), vertices)
    np.testing.assert_array_equal(mesh["faces"], faces)
    if with_colors:
        np.testing.assert_array_equal(mesh["colors"], colors)
    else:
        assert mesh["colors"] is None
    assert mesh["uvs"] is None and mesh["texture"] is None
    assert not (tmp_path / "mesh.mtl").exists() and not (tmp_path / "mesh.png").exists()


def test_textured_obj_writes_mtl_and_png_that_it_references(tmp_path):
    vertices, faces, colors = cube()
    uvs = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.25, 0.75]])
    face_uvs = np.random.default_rng(0).integers(0, len(uvs), faces.shape)
    texture = np.random.default_rng(1).integers(0, 256, (6, 9, 3)).astype(np.uint8)
    path = tmp_path / "textured.obj"
    written = write_mesh(path, vertices, faces, colors, uvs=uvs, face_uvs=face_uvs,
                         texture=texture)
    assert written == [path, tmp_path / "textured.mtl", tmp_path / "textured.png"]
    assert no_temp_files(tmp_path)

    lines = path.read_text().splitlines()
    assert "mtllib textured.mtl" in lines
    usemtl = lines.index("usemtl material_0")
    first_face = next(i for i, line in enumerate(lines) if line.startswith("f "))
    assert usemtl < first_face
    assert lines[first_face] == "f " + " ".join(f"{v + 1}/{t + 1}"
                                                 for v, t in zip(faces[0], face_uvs[0]))
    mtl = (tmp_path / "textured.mtl").read_text().splitlines()
    assert "newmtl material_0" in mtl and "Kd 1 1 1" in mtl and "map_Kd textured.png" in mtl
    np.testing.assert_array_equal(iio.imread(tmp_path / "textured.png"), texture)

    mesh = read_mesh(path)
    np.testing.assert_array_equal(mesh["vertices"], vertices)
    np.testing.assert_array_equal(mesh["faces"], faces)
    np.testing.assert_array_equal(mesh["colors"], colors)
    np.testing.assert_array_equal(mesh["uvs"], uvs)
    np.testing.assert_array_equal(mesh["face_uvs"], face_uvs)
    assert mesh["texture"] == tmp_path / "textured.png"


def test_uvs_without_texture_write_vt_faces_but_no_material(tmp_path):
    vertices, faces, _ = cube()
    uvs = np.array([[0.0, 0.0], [1.0, 0.5], [0.5, 1.0]])
    face_uvs = np.tile([0, 1, 2], (len(faces), 1))
    path = tmp_path / "uv.obj"
    assert write_mesh(path, vertices, faces, uvs=uvs, face_uvs=face_uvs) == [path]
    text = path.read_text()
    assert "mtllib" not in text and "usemtl" not in text and "vt 1 0.5\n" in text
    mesh = read_mesh(path)
    np.testing.assert_array_equal(mesh["face_uvs"], face_uvs)
    assert mesh["texture"] is None


def test_empty_face_list_round_trips(tmp_path):
    vertices, _, colors = cube()
    for name in ("points.ply", "points.obj"):
        write_mesh(tmp_path / name, vertices, np.zeros((0, 3), np.int32), colors)
        mesh = read_mesh(tmp_path / name)
        assert mesh["faces"].shape == (0, 3)
        np.testing.assert_array_equal(mesh["colors"], colors)


def test_suffix_is_case_insensitive(tmp_path):
    vertices, faces, _ = cube()
    write_mesh(tmp_path / "MESH.PLY", vertices, faces)
    assert read_mesh(tmp_path / "MESH.PLY")["faces"].shape == (12, 3)


# ------------------------------------------------------------------------------ file contents

def test_ply_header_is_binary_little_endian_with_uchar_colours(tmp_path):
    vertices, faces, colors = cube()
    path = tmp_path / "mesh.ply"
    write_mesh(path, vertices, faces, colors)
    ply = PlyData.read(str(path))
    assert not ply.text and ply.byte_order == "<"
    assert [element.name for element in ply.elements] == ["vertex", "face"]
    assert [(p.name, p.val_dtype) for p in ply["vertex"].properties] == [
        ("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    (indices,) = ply["face"].properties
    assert (indices.name, indices.len_dtype, indices.val_dtype) == ("vertex_indices", "u1", "i4")
    header = path.read_bytes().split(b"end_header\n")[0].decode()
    assert header.splitlines() == [
        "ply", "format binary_little_endian 1.0", "element vertex 8",
        "property float x", "property float y", "property float z",
        "property uchar red", "property uchar green", "property uchar blue",
        "element face 12", "property list uchar int vertex_indices"]


def test_ply_without_colours_has_only_xyz(tmp_path):
    vertices, faces, _ = cube()
    write_mesh(tmp_path / "mesh.ply", vertices, faces)
    ply = PlyData.read(str(tmp_path / "mesh.ply"))
    assert [p.name for p in ply["vertex"].properties] == ["x", "y", "z"]


def test_obj_text_has_coloured_vertex_lines_and_one_based_faces(tmp_path):
    vertices = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.25]], np.float32)
    colors = np.array([[255, 0, 51], [0, 255, 0], [0, 0, 255]], np.uint8)
    path = tmp_path / "tri.obj"
    write_mesh(path, vertices, np.array([[0, 1, 2]]), colors)
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    assert lines == ["v 0.5 -1 2 1 0 0.2", "v 1 0 0 0 1 0", "v 0 1 0.25 0 0 1", "f 1 2 3"]


# --------------------------------------------------------------------- files from other tools

def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_generic_obj_quads_normals_and_groups(tmp_path):
    path = write_text(tmp_path / "quad.obj", """# exported by some tool
mtllib missing.mtl
o Plane
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0   # trailing comment
vn 0 0 1
vt 0 0
vt 1 0
vt 1 1
vt 0 1
s off
g plane
usemtl none
f 1/1/1 2/2/1 3/3/1 4/4/1
l 1 2
""")
    mesh = read_mesh(path)
    np.testing.assert_array_equal(mesh["faces"], [[0, 1, 2], [0, 2, 3]])
    np.testing.assert_array_equal(mesh["face_uvs"], [[0, 1, 2], [0, 2, 3]])
    assert mesh["uvs"].shape == (4, 2) and mesh["colors"] is None
    assert mesh["texture"] is None  # the .mtl is missing: no error, no texture


def test_generic_obj_negative_indices_and_v_double_slash_vn(tmp_path):
    path = write_text(tmp_path / "neg.obj", """v 0 0 0
v 1 0 0
v 0 1 0
vn 0 0 1
f -3//-1 -2//-1 -1//-1
v 0 0 1
v 1 0 1 1.0
f 1 -2 -1
f 4 5 3 2 1
""")
    mesh = read_mesh(path)
    np.testing.assert_array_equal(mesh["faces"], [[0, 1, 2], [0, 3, 4],
                                                  [3, 4, 2], [3, 2, 1], [3, 1, 0]])
    assert mesh["vertices"].shape == (5, 3) and mesh["uvs"] is None


def test_generic_obj_colours_as_floats_or_bytes(tmp_path):
    floats = write_text(tmp_path / "f.obj", "v 0 0 0 1 0.5 0\nv 1 0 0 0 0 1\nv 0 1 0 0.2 0.2 0.2\n"
                                            "f 1 2 3\n")
    np.testing.assert_array_equal(read_mesh(floats)["colors"],
                                  [[255, 128, 0], [0, 0, 255], [51, 51, 51]])
    bytes_ = write_text(tmp_path / "b.obj", "v 0 0 0 255 128 0\nv 1 0 0 0 0 1\nf 1 2 1\n")
    np.testing.assert_array_equal(read_mesh(bytes_)["colors"], [[255, 128, 0], [0, 0, 1]])
    mixed = write_text(tmp_path / "m.obj", "v 0 0 0 1 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    assert read_mesh(mixed)["colors"] is None


def test_generic_ply_ascii_with_float_colours_and_quads(tmp_path):
    vertex = np.array([(0, 0, 0, 1.0, 0.0, 0.5), (1, 0, 0, 0, 1, 0), (1, 1, 0, 0, 0, 1),
                       (0, 1, 0, 1, 1, 1)],
                      dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"),
                             ("red", "f4"), ("green", "f4"), ("blue", "f4")])
    face = np.empty(1, dtype=[("vertex_index", "O")])
    face["vertex_index"][0] = np.array([0, 1, 2, 3], np.int32)
    path = tmp_path / "quad.ply"
    PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(face, "face")],
            text=True).write(str(path))
    mesh = read_mesh(path)
    np.testing.assert_array_equal(mesh["faces"], [[0, 1, 2], [0, 2, 3]])
    np.testing.assert_array_equal(mesh["colors"][0], [255, 0, 128])


def test_generic_binary_ply_with_mixed_polygons_and_face_texcoords(tmp_path):
    vertex = np.array([(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (2, 0, 0)],
                      dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    face = np.empty(2, dtype=[("vertex_indices", "O"), ("texcoord", "O")])
    face["vertex_indices"][0] = np.array([0, 1, 2, 3], np.int32)
    face["vertex_indices"][1] = np.array([1, 4, 2], np.int32)
    face["texcoord"][0] = np.array([0, 0, 1, 0, 1, 1, 0, 1], np.float32)
    face["texcoord"][1] = np.array([0.5, 0, 1, 0, 1, 0.5], np.float32)
    path = tmp_path / "mixed.ply"
    faces = PlyElement.describe(face, "face", val_types={"texcoord": "f4"})
    PlyData([PlyElement.describe(vertex, "vertex"), faces], byte_order="<").write(str(path))
    mesh = read_mesh(path)
    np.testing.assert_array_equal(mesh["faces"], [[0, 1, 2], [0, 2, 3], [1, 4, 2]])
    np.testing.assert_array_equal(mesh["face_uvs"], [[0, 1, 2], [0, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(mesh["uvs"][[4, 6]], [[0.5, 0], [1, 0.5]])
    assert mesh["colors"] is None


def test_generic_ply_with_per_vertex_st(tmp_path):
    vertex = np.array([(0, 0, 0, 0.0, 0.0), (1, 0, 0, 1.0, 0.0), (0, 1, 0, 0.0, 1.0)],
                      dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("s", "<f4"), ("t", "<f4")])
    face = np.array([([0, 1, 2],)], dtype=[("vertex_indices", "<i4", (3,))])
    path = tmp_path / "st.ply"
    PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(face, "face")],
            byte_order="<").write(str(path))
    mesh = read_mesh(path)
    np.testing.assert_array_equal(mesh["uvs"], [[0, 0], [1, 0], [0, 1]])
    np.testing.assert_array_equal(mesh["face_uvs"], mesh["faces"])


# ---------------------------------------------------------------------------------- bad input

def test_unknown_extension_names_the_path_and_the_expected_ones(tmp_path):
    vertices, faces, _ = cube()
    with pytest.raises(NerfkitError, match=r"mesh\.stl.*\.ply or \.obj"):
        write_mesh(tmp_path / "mesh.stl", vertices, faces)
    with pytest.raises(NerfkitError, match=r"mesh\.stl.*\.ply or \.obj"):
        read_mesh(tmp_path / "mesh.stl")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["mesh.ply", "mesh.obj"])
def test_bad_arrays_raise_value_errors_and_write_nothing(tmp_path, name):
    vertices, faces, colors = cube()
    path = tmp_path / name
    cases = [
        ((vertices, faces + 1), r"faces must index 0\.\.7 .* row \d+ is \[\d+, \d+, 8\]"),
        ((vertices, faces - 1), r"faces must index 0\.\.7"),
        ((np.where(np.arange(8)[:, None] == 5, np.nan, vertices), faces),
         r"vertices must be finite, but vertex 5"),
        ((vertices[:, :2], faces), r"vertices must have shape \(V, 3\)"),
        ((vertices, faces.astype(np.float32)), r"faces must hold integers"),
        ((vertices, faces[:, :2]), r"faces must have shape \(N, 3\)"),
        ((vertices, faces, colors.astype(np.float32)), r"colors must be uint8"),
        ((vertices, faces, colors[:4]), r"colors must have shape \(V, 3\)"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            write_mesh(path, *args)
    assert list(tmp_path.iterdir()) == []


def test_bad_texture_arguments(tmp_path):
    vertices, faces, _ = cube()
    uvs = np.array([[0.0, 0.0], [1.0, 1.0]])
    face_uvs = np.zeros_like(faces)
    texture = np.zeros((2, 2, 3), np.uint8)
    with pytest.raises(ValueError, match="together"):
        write_mesh(tmp_path / "m.obj", vertices, faces, uvs=uvs)
    with pytest.raises(ValueError, match="needs uvs"):
        write_mesh(tmp_path / "m.obj", vertices, faces, texture=texture)
    with pytest.raises(ValueError, match=r"within \[0, 1\]"):
        write_mesh(tmp_path / "m.obj", vertices, faces, uvs=uvs * 2, face_uvs=face_uvs)
    with pytest.raises(ValueError, match="face_uvs must index 0..1"):
        write_mesh(tmp_path / "m.obj", vertices, faces, uvs=uvs, face_uvs=face_uvs + 2)
    with pytest.raises(ValueError, match=r"texture must have shape \(H, W, 3\)"):
        write_mesh(tmp_path / "m.obj", vertices, faces, uvs=uvs, face_uvs=face_uvs,
                   texture=np.zeros((2, 2), np.uint8))
    with pytest.raises(NerfkitError, match=r"m\.ply.*\.obj"):
        write_mesh(tmp_path / "m.ply", vertices, faces, uvs=uvs, face_uvs=face_uvs,
                   texture=texture)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text, message", [
    ("v 0 0\nf 1 1 1\n", r"line 1 .*'v'"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n", r"line 4 .*vertex index 4 is out of range"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 0\n", r"line 4 .*index 0"),
    ("v 0 0 0\nv 1 0 0\nf 1 2\n", r"line 3 .*at least 3"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 a 3\n", r"line 4"),
    ("v 0 0 zero\n", r"line 1"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1/5 2/1 3/1\n", r"line 4 .*vt index 5"),
])
def test_malformed_obj_names_the_file_and_line(tmp_path, text, message):
    path = write_text(tmp_path / "bad.obj", text)
    with pytest.raises(NerfkitError, match=r"bad\.obj' " + message):
        read_mesh(path)


def test_unreadable_files_name_themselves(tmp_path):
    with pytest.raises(NerfkitError, match=r"nothing\.ply' does not exist"):
        read_mesh(tmp_path / "nothing.ply")
    (tmp_path / "junk.ply").write_bytes(b"not a ply at all\n")
    with pytest.raises(NerfkitError, match=r"junk\.ply' is not a readable PLY"):
        read_mesh(tmp_path / "junk.ply")
    (tmp_path / "binary.obj").write_bytes(b"\x00\x01\x02v 0 0 0")
    with pytest.raises(NerfkitError, match=r"binary\.obj' is not a text file"):
        read_mesh(tmp_path / "binary.obj")
    vertices, faces, _ = cube()
    write_mesh(tmp_path / "ok.ply", vertices, faces)
    truncated = (tmp_path / "ok.ply").read_bytes()[:-7]
    (tmp_path / "short.ply").write_bytes(truncated)
    with pytest.raises(NerfkitError, match=r"short\.ply'"):
        read_mesh(tmp_path / "short.ply")


# --------------------------------------------------------------------------------- atomicity

def test_obj_failing_mid_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    vertices, faces, colors = cube()
    path = tmp_path / "mesh.obj"
    write_mesh(path, vertices, faces, colors)
    before = path.read_bytes()

    real_write_rows = mesh_io._write_rows
    calls = []

    def failing_write_rows(file, row_format, rows):
        calls.append(row_format)
        if len(calls) == 2:  # vertices are in the temp file; the faces fail
            raise RuntimeError("disk on fire")
        real_write_rows(file, row_format, rows)

    monkeypatch.setattr(mesh_io, "_write_rows", failing_write_rows)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_mesh(path, vertices[::-1].copy(), faces)
    assert path.read_bytes() == before
    assert no_temp_files(tmp_path)


def test_ply_failing_mid_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    vertices, faces, colors = cube()
    path = tmp_path / "mesh.ply"
    write_mesh(path, vertices, faces, colors)
    before = path.read_bytes()

    def half_write(self, stream):
        stream.write(b"ply\nformat binary_little_endian 1.0\n")
        raise KeyboardInterrupt  # even an interrupt leaves the old file

    monkeypatch.setattr(PlyData, "write", half_write)
    with pytest.raises(KeyboardInterrupt):
        write_mesh(path, vertices + 1, faces)
    assert path.read_bytes() == before
    assert no_temp_files(tmp_path)


def test_textured_obj_failing_keeps_the_old_obj(tmp_path, monkeypatch):
    vertices, faces, _ = cube()
    uvs, face_uvs = np.array([[0.0, 0.0]]), np.zeros_like(faces)
    path = tmp_path / "mesh.obj"
    write_mesh(path, vertices, faces)
    before = path.read_bytes()

    def failing_png(png_path, image):
        raise OSError(28, "No space left on device", str(png_path))

    monkeypatch.setattr(mesh_io, "_write_png", failing_png)
    with pytest.raises(NerfkitError, match=r"mesh\.png' could not be written: No space left"):
        write_mesh(path, vertices, faces, uvs=uvs, face_uvs=face_uvs,
                   texture=np.zeros((1, 1, 3), np.uint8))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mesh.obj"]
