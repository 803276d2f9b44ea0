"""The 3DGS Gaussian .ply: round trips are bit-exact, the header is exactly the standard one,
f_rest is channel-major, files from other trainers read, bad files name themselves, and writes
are atomic."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import plyfile
import pytest
import torch
from plyfile import PlyData, PlyElement

from nerfkit.core.errors import NerfkitError
from nerfkit.export.splat_ply import (read_splat_ply, sh_degree_of, splat_ply_property_names,
                                      write_splat_ply)

SH_COUNT = {0: 0, 1: 3, 2: 8, 3: 15}  # K, the higher-band SH coefficients per channel


def standard_names(degree: int) -> list[str]:
    """The property list of the 3DGS .ply, spelled out here independently of the module."""
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(3 * SH_COUNT[degree])]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def random_gaussians(count: int, degree: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Gaussians with random values over many magnitudes, plus -0.0, a subnormal and +-inf."""
    generator = torch.Generator().manual_seed(seed)

    def values(*shape: int) -> torch.Tensor:
        magnitude = torch.pow(10.0, torch.randint(-30, 30, shape, generator=generator).float())
        return torch.randn(*shape, generator=generator) * magnitude

    gaussians = {"means": values(count, 3), "quats": values(count, 4), "scales": values(count, 3),
                 "opacities": values(count), "sh0": values(count, 1, 3),
                 "shN": values(count, SH_COUNT[degree], 3)}
    if count:
        gaussians["means"][0] = torch.tensor([-0.0, 1e-45, float("inf")])
        gaussians["opacities"][0] = float("-inf")
    return gaussians


def assert_bit_exact(read: dict[str, torch.Tensor], written: dict[str, torch.Tensor]) -> None:
    assert sorted(read) == sorted(written)
    for key, tensor in written.items():
        assert read[key].dtype == torch.float32, key
        assert read[key].shape == tensor.shape, key
        assert torch.equal(read[key].view(torch.int32), tensor.view(torch.int32)), key


def header_of(path: Path) -> list[str]:
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    return raw[:end].decode("ascii").splitlines()


def write_plain_ply(path: Path, columns: dict[str, np.ndarray], text: bool = False,
                    extra_elements: tuple[PlyElement, ...] = ()) -> None:
    """A PLY with one vertex property per column (in the given order and dtypes), via plyfile."""
    count = len(next(iter(columns.values())))
    vertices = np.empty(count, dtype=[(name, column.dtype) for name, column in columns.items()])
    for name, column in columns.items():
        vertices[name] = column
    PlyData([PlyElement.describe(vertices, "vertex"), *extra_elements], text=text).write(str(path))


def columns_of(gaussians: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The 3DGS columns of ``gaussians``, computed by hand (channel-major f_rest)."""
    shN = gaussians["shN"].numpy()
    columns = {}
    for i, axis in enumerate("xyz"):
        columns[axis] = gaussians["means"][:, i].numpy()
    for c in range(3):
        columns[f"f_dc_{c}"] = gaussians["sh0"][:, 0, c].numpy()
    for c in range(3):
        for k in range(shN.shape[1]):
            columns[f"f_rest_{c * shN.shape[1] + k}"] = shN[:, k, c]
    columns["opacity"] = gaussians["opacities"].numpy()
    for i in range(3):
        columns[f"scale_{i}"] = gaussians["scales"][:, i].numpy()
    for i in range(4):
        columns[f"rot_{i}"] = gaussians["quats"][:, i].numpy()
    return columns


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_is_bit_exact(tmp_path, degree):
    gaussians = random_gaussians(37, degree)
    write_splat_ply(tmp_path / "splats.ply", gaussians)
    assert_bit_exact(read_splat_ply(tmp_path / "splats.ply"), gaussians)


@pytest.mark.parametrize("degree", [0, 3])
def test_round_trip_of_zero_gaussians(tmp_path, degree):
    gaussians = random_gaussians(0, degree)
    write_splat_ply(tmp_path / "empty.ply", gaussians)
    assert header_of(tmp_path / "empty.ply")[2] == "element vertex 0"
    assert_bit_exact(read_splat_ply(tmp_path / "empty.ply"), gaussians)


def test_write_accepts_parameters_float64_and_non_contiguous_views(tmp_path):
    gaussians = random_gaussians(5, 2)
    expected = {key: value.clone() for key, value in gaussians.items()}
    gaussians["means"] = torch.nn.Parameter(gaussians["means"])
    gaussians["scales"] = gaussians["scales"].double()
    gaussians["shN"] = gaussians["shN"].transpose(1, 2).contiguous().transpose(1, 2)
    gaussians["features"] = torch.zeros(5, 7)  # extra keys are ignored
    write_splat_ply(tmp_path / "splats.ply", gaussians)
    assert_bit_exact(read_splat_ply(tmp_path / "splats.ply"), expected)


def test_write_creates_the_folder_and_overwrites(tmp_path):
    path = tmp_path / "a" / "b" / "splats.ply"
    write_splat_ply(path, random_gaussians(3, 1, seed=1))
    second = random_gaussians(4, 3, seed=2)
    write_splat_ply(path, second)
    assert_bit_exact(read_splat_ply(path), second)
    assert sorted(p.name for p in path.parent.iterdir()) == ["splats.ply"]


# --- the exact file layout ---------------------------------------------------------------------


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_header_text_is_the_standard_one(tmp_path, degree):
    write_splat_ply(tmp_path / "splats.ply", random_gaussians(6, degree))
    expected = (["ply", "format binary_little_endian 1.0", "element vertex 6"]
                + [f"property float {name}" for name in standard_names(degree)]
                + ["end_header"])
    assert header_of(tmp_path / "splats.ply") == expected
    header_bytes = len("\n".join(expected)) + 1
    assert (tmp_path / "splats.ply").stat().st_size == header_bytes + 6 * 4 * len(expected[3:-1])


@pytest.mark.parametrize("degree", [0, 3])
def test_plyfile_sees_one_float32_vertex_element_in_order(tmp_path, degree):
    write_splat_ply(tmp_path / "splats.ply", random_gaussians(6, degree))
    ply = PlyData.read(str(tmp_path / "splats.ply"))
    assert not ply.text
    assert ply.byte_order == "<"
    assert [element.name for element in ply.elements] == ["vertex"]
    vertex = ply["vertex"]
    assert [prop.name for prop in vertex.properties] == standard_names(degree)
    assert {prop.val_dtype for prop in vertex.properties} == {"f4"}
    assert vertex.data.dtype == np.dtype([(name, "<f4") for name in standard_names(degree)])
    assert splat_ply_property_names(degree) == standard_names(degree)


def test_normals_are_zero(tmp_path):
    write_splat_ply(tmp_path / "splats.ply", random_gaussians(9, 1))
    vertex = PlyData.read(str(tmp_path / "splats.ply"))["vertex"]
    for name in ("nx", "ny", "nz"):
        assert np.array_equal(vertex[name], np.zeros(9, np.float32))


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_f_rest_is_channel_major(tmp_path, degree):
    count, sh_count = 4, SH_COUNT[degree]
    gaussians = random_gaussians(count, degree)
    i, k, c = np.meshgrid(np.arange(count), np.arange(sh_count), np.arange(3), indexing="ij")
    gaussians["shN"] = torch.from_numpy((1000 * i + 100 * c + k).astype(np.float32))
    write_splat_ply(tmp_path / "splats.ply", gaussians)
    vertex = PlyData.read(str(tmp_path / "splats.ply"))["vertex"]
    for channel in range(3):
        for coefficient in range(sh_count):
            expected = 1000 * np.arange(count) + 100 * channel + coefficient
            assert np.array_equal(vertex[f"f_rest_{channel * sh_count + coefficient}"], expected)


def test_raw_bytes_of_a_row(tmp_path):
    """One Gaussian with a distinct value per slot, unpacked with struct (no PLY library)."""
    gaussians = {"means": torch.tensor([[1.0, 2.0, 3.0]]),
                 "quats": torch.tensor([[40.0, 41.0, 42.0, 43.0]]),
                 "scales": torch.tensor([[30.0, 31.0, 32.0]]),
                 "opacities": torch.tensor([20.0]),
                 "sh0": torch.tensor([[[5.0, 6.0, 7.0]]]),
                 "shN": torch.tensor([[[100.0, 200.0, 300.0], [101.0, 201.0, 301.0],
                                       [102.0, 202.0, 302.0]]])}
    write_splat_ply(tmp_path / "splats.ply", gaussians)
    raw = (tmp_path / "splats.ply").read_bytes()
    body = raw[raw.index(b"end_header\n") + len(b"end_header\n"):]
    assert struct.unpack("<26f", body) == (1, 2, 3, 0, 0, 0, 5, 6, 7,
                                            100, 101, 102, 200, 201, 202, 300, 301, 302,
                                            20, 30, 31, 32, 40, 41, 42, 43)


# --- reading files from elsewhere --------------------------------------------------------------


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_reads_any_property_order_types_and_extras(tmp_path, degree):
    gaussians = random_gaussians(8, degree, seed=3)
    columns = columns_of(gaussians)
    rng = np.random.default_rng(degree)
    shuffled = {name: columns[name] for name in rng.permutation(list(columns))}
    shuffled["red"] = np.arange(8, dtype=np.uint8)  # extra properties are ignored
    shuffled["x"] = shuffled["x"].astype(np.float64)  # wider types are narrowed to float32
    faces = PlyElement.describe(np.zeros(1, dtype=[("vertex_indices", "i4", (3,))]), "face")
    write_plain_ply(tmp_path / "theirs.ply", shuffled, extra_elements=(faces,))
    assert_bit_exact(read_splat_ply(tmp_path / "theirs.ply"), gaussians)


def test_reads_ascii_ply(tmp_path):
    gaussians = {key: value.round(decimals=3) for key, value in random_gaussians(3, 1).items()}
    gaussians = {key: value.nan_to_num(posinf=1.0, neginf=-1.0) for key, value in gaussians.items()}
    write_plain_ply(tmp_path / "ascii.ply", columns_of(gaussians), text=True)
    read = read_splat_ply(tmp_path / "ascii.ply")
    for key, value in gaussians.items():
        assert torch.equal(read[key], value), key


def test_reads_gsplat_export(tmp_path):
    """gsplat (1.5) writes but has no .ply reader: check its writer and ours agree both ways."""
    gsplat = pytest.importorskip("gsplat")
    if not hasattr(gsplat, "export_splats"):
        pytest.skip("this gsplat has no export_splats")
    gaussians = random_gaussians(11, 3, seed=4)
    gaussians["means"][0] = 0.5  # gsplat drops rows with inf/NaN
    gaussians["opacities"][0] = 0.5
    gsplat.export_splats(**gaussians, format="ply", save_to=str(tmp_path / "gsplat.ply"))
    assert_bit_exact(read_splat_ply(tmp_path / "gsplat.ply"), gaussians)

    write_splat_ply(tmp_path / "ours.ply", gaussians)
    theirs = PlyData.read(str(tmp_path / "gsplat.ply"))["vertex"]
    ours = PlyData.read(str(tmp_path / "ours.ply"))["vertex"]
    for prop in theirs.properties:
        assert np.array_equal(theirs[prop.name], ours[prop.name]), prop.name


# --- errors ------------------------------------------------------------------------------------


def assert_error_names_file(path: Path, *words: str) -> None:
    with pytest.raises(NerfkitError) as caught:
        read_splat_ply(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    for word in words:
        assert word in message


def test_missing_file(tmp_path):
    assert_error_names_file(tmp_path / "nope.ply", "does not exist", "3DGS")


def test_folder_instead_of_file(tmp_path):
    assert_error_names_file(tmp_path, "3DGS")


@pytest.mark.parametrize("content", [b"", b"hello, world\n", bytes(range(256)),
                                     (b"ply\nformat binary_little_endian 1.0\nelement vertex -1\n"
                                      b"property float x\nend_header\n")])
def test_not_a_ply(tmp_path, content):
    (tmp_path / "junk.ply").write_bytes(content)
    assert_error_names_file(tmp_path / "junk.ply", "not a readable PLY", "3DGS")


def test_truncated_file(tmp_path):
    write_splat_ply(tmp_path / "splats.ply", random_gaussians(5, 3))
    raw = (tmp_path / "splats.ply").read_bytes()
    (tmp_path / "splats.ply").write_bytes(raw[:-10])
    assert_error_names_file(tmp_path / "splats.ply", "not a readable PLY")


def test_no_vertex_element(tmp_path):
    points = np.zeros(2, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(points, "point")]).write(str(tmp_path / "points.ply"))
    assert_error_names_file(tmp_path / "points.ply", "no vertex element", "point")


def test_missing_required_properties(tmp_path):
    columns = columns_of(random_gaussians(3, 0))
    del columns["opacity"], columns["rot_3"]
    write_plain_ply(tmp_path / "cloud.ply", columns)
    assert_error_names_file(tmp_path / "cloud.ply", "opacity, rot_3")


def test_plain_point_cloud(tmp_path):
    cloud = {name: np.zeros(4, np.float32) for name in ("x", "y", "z", "nx", "ny", "nz")}
    cloud.update({name: np.zeros(4, np.uint8) for name in ("red", "green", "blue")})
    write_plain_ply(tmp_path / "cloud.ply", cloud)
    assert_error_names_file(tmp_path / "cloud.ply", "f_dc_0", "scale_0", "rot_0")


@pytest.mark.parametrize("rest_count", [3, 10, 44, 48])
def test_f_rest_count_not_a_3dgs_degree(tmp_path, rest_count):
    columns = columns_of(random_gaussians(3, 0))
    columns.update({f"f_rest_{i}": np.zeros(3, np.float32) for i in range(rest_count)})
    write_plain_ply(tmp_path / "odd.ply", columns)
    assert_error_names_file(tmp_path / "odd.ply", f"{rest_count} f_rest", "0, 9, 24, 45")


def test_f_rest_with_a_gap(tmp_path):
    columns = columns_of(random_gaussians(3, 0))
    columns.update({f"f_rest_{i}": np.zeros(3, np.float32) for i in (*range(8), 9)})
    write_plain_ply(tmp_path / "gap.ply", columns)
    assert_error_names_file(tmp_path / "gap.ply", "f_rest_0 .. f_rest_8")


def test_list_property_instead_of_number(tmp_path):
    columns = columns_of(random_gaussians(2, 0))
    del columns["opacity"]
    names = list(columns)
    vertices = np.empty(2, dtype=[*((name, "f4") for name in names), ("opacity", "O")])
    for name in names:
        vertices[name] = columns[name]
    vertices["opacity"] = [np.zeros(2, np.float32), np.zeros(2, np.float32)]
    element = PlyElement.describe(vertices, "vertex", len_types={"opacity": "u1"},
                                  val_types={"opacity": "f4"})
    PlyData([element]).write(str(tmp_path / "list.ply"))
    assert_error_names_file(tmp_path / "list.ply", "opacity", "lists")


BAD_SHAPES = [
    ("means", (5, 2), "means must have shape (N, 3)"),
    ("means", (5,), "means must have shape (N, 3)"),
    ("quats", (5, 3), "quats must have shape (N, 4)"),
    ("scales", (4, 3), "scales must have shape (N, 3)"),
    ("opacities", (5, 1), "opacities must have shape (N,)"),
    ("sh0", (5, 3), "sh0 must have shape (N, 1, 3)"),
    ("shN", (5, 3, 1), "shN must have shape (N, K, 3)"),
    ("shN", (5, 45), "shN must have shape (N, K, 3)"),
    ("shN", (5, 4, 3), "4 SH coefficients"),
    ("shN", (5, 24, 3), "degree 4"),
]


@pytest.mark.parametrize(("key", "shape", "message"), BAD_SHAPES)
def test_write_rejects_bad_shapes(tmp_path, key, shape, message):
    gaussians = random_gaussians(5, 1)
    gaussians[key] = torch.zeros(shape)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        write_splat_ply(tmp_path / "bad.ply", gaussians)
    assert list(tmp_path.iterdir()) == []


def test_write_rejects_missing_keys(tmp_path):
    gaussians = random_gaussians(5, 1)
    del gaussians["sh0"], gaussians["quats"]
    with pytest.raises(ValueError, match="lacks quats, sh0"):
        write_splat_ply(tmp_path / "bad.ply", gaussians)


def test_write_reports_unwritable_folder_as_nerfkit_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(NerfkitError, match="could not be written"):
        write_splat_ply(tmp_path / "file" / "splats.ply", random_gaussians(2, 0))


# --- atomic writes -----------------------------------------------------------------------------


def failing_write(self, stream):
    """Half of a PLY, then a crash."""
    stream.write(b"ply\nformat binary_little_endian 1.0\n")
    raise RuntimeError("simulated crash mid-write")


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "splats.ply"
    write_splat_ply(path, random_gaussians(7, 3, seed=5))
    before = path.read_bytes()
    monkeypatch.setattr(plyfile.PlyData, "write", failing_write)
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_splat_ply(path, random_gaussians(9, 1, seed=6))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["splats.ply"]


def test_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(plyfile.PlyData, "write", failing_write)
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_splat_ply(tmp_path / "splats.ply", random_gaussians(3, 0))
    assert list(tmp_path.iterdir()) == []


# --- sh_degree_of ------------------------------------------------------------------------------


@pytest.mark.parametrize(("sh_count", "degree"), [(0, 0), (3, 1), (8, 2), (15, 3), (24, 4)])
def test_sh_degree_of(sh_count, degree):
    assert sh_degree_of(torch.zeros(2, sh_count, 3)) == degree
    assert sh_degree_of(torch.zeros(sh_count, 3)) == degree


@pytest.mark.parametrize("shape", [(2, 4, 3), (2, 15, 1), (3,)])
def test_sh_degree_of_rejects_other_shapes(shape):
    with pytest.raises(ValueError):
        sh_degree_of(torch.zeros(shape))
