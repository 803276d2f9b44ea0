"""``nerfkit process`` on broken photo folders, videos, outputs and flags: one clear sentence each.

Every input is refused before COLMAP starts (a damaged image among the photos, a folder with too
few readable images, a video that does not decode), so the whole corpus runs in seconds.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

import imageio.v3 as iio
import numpy as np

from corpus import png_header
from outcomes import Tally
from scene_writers import make_image

GOOD = 2          # readable photos next to the damaged one: too few for COLMAP on their own


def _photos(folder: Path, count: int = GOOD, size: tuple[int, int] = (48, 32)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        iio.imwrite(folder / f"photo_{i}.png", make_image(i, *size))


def _damaged(action: Callable[[Path], Any]) -> Callable[[Path], Path]:
    """A folder of :data:`GOOD` photos plus ``photo_9.png`` damaged by ``action``."""
    def build(root: Path) -> Path:
        folder = root / "photos"
        _photos(folder)
        path = folder / "photo_9.png"
        iio.imwrite(path, make_image(9, 48, 32))
        action(path)
        return folder
    return build


def _video(root: Path, frames: int, cut: float = 1.0, name: str = "clip.mp4") -> Path:
    path = root / name
    rng = np.random.default_rng(0)
    iio.imwrite(path, rng.integers(0, 255, (frames, 32, 48, 3), dtype=np.uint8), fps=10,
                codec="libx264", macro_block_size=16)
    if cut < 1.0:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * cut)])
    return path


IMAGE_DAMAGES: dict[str, tuple[Callable[[Path], Any], str]] = {
    "truncated_half": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
                       "photo_9.png"),
    "truncated_16_bytes": (lambda p: p.write_bytes(p.read_bytes()[:16]), "photo_9.png"),
    "zero_bytes": (lambda p: p.write_bytes(b""), "photo_9.png"),
    "text_not_png": (lambda p: p.write_text("not an image"), "photo_9.png"),
    "png_signature_then_garbage": (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\7" * 64),
                                   "photo_9.png"),
    "decompression_bomb_header": (lambda p: p.write_bytes(png_header(60000, 60000)),
                                  "photo_9.png"),
    "other_size": (lambda p: iio.imwrite(p, make_image(9, 32, 48)), "photo_9.png"),
    "one_pixel": (lambda p: iio.imwrite(p, make_image(9, 1, 1)), "photo_9.png"),
    "folder_named_png": (lambda p: (p.unlink(), p.mkdir()), "only 2 image(s)"),
    "dangling_symlink": (lambda p: (p.unlink(), p.symlink_to(p.parent / "gone.png")),
                         "only 2 image(s)"),
    "symlink_loop": (lambda p: (p.unlink(), p.symlink_to(p.name)), "only 2 image(s)"),
    "fifo": (lambda p: (p.unlink(), os.mkfifo(p)), "only 2 image(s)"),
    "jpeg_named_png_truncated": (lambda p: (iio.imwrite(p, make_image(9, 48, 32), extension=".jpg"),
                                            p.write_bytes(p.read_bytes()[:200])), "photo_9.png"),
}


def _inputs() -> dict[str, tuple[Callable[[Path], Path], str, list[str]]]:
    """name -> (build(root) -> input path, expected text, extra flags)."""
    cases: dict[str, tuple[Callable[[Path], Path], str, list[str]]] = {
        f"photos_{name}": (_damaged(action), expect, [])
        for name, (action, expect) in IMAGE_DAMAGES.items()}

    def folder(build: Callable[[Path], Any]) -> Callable[[Path], Path]:
        def make(root: Path) -> Path:
            path = root / "photos"
            path.mkdir(parents=True)
            build(path)
            return path
        return make

    cases.update({
        "empty_folder": (folder(lambda p: None), "holds no images", []),
        "only_text_files": (folder(lambda p: (p / "notes.txt").write_text("x")), "holds no images", []),
        "images_in_a_subfolder_only": (folder(lambda p: _photos(p / "nested", 4)), "holds no images",
                                       []),
        "two_photos": (folder(lambda p: _photos(p, 2)), "only 2 image(s)", []),
        "input_missing": (lambda root: root / "nowhere", "does not exist", []),
        "input_a_text_file": (lambda root: (root / "notes.txt").write_text("x") and root / "notes.txt",
                              "not a video", []),
        "video_garbage": (lambda root: (root / "clip.mp4").write_bytes(b"\0\1 not a video" * 40)
                          and root / "clip.mp4", "clip.mp4", []),
        "video_zero_bytes": (lambda root: (root / "clip.mp4").write_bytes(b"") or root / "clip.mp4",
                             "clip.mp4", []),
        "video_truncated": (lambda root: _video(root, 30, cut=0.05), "clip.mp4", []),
        "video_two_frames": (lambda root: _video(root, 2), "clip.mp4", []),
        "video_folder_named_mp4": (folder(lambda p: None), "holds no images", []),
        "bad_camera_model": (folder(lambda p: _photos(p, 3)), "--camera-model",
                             ["--camera-model", "FISHEYE"]),
        "bad_matcher": (folder(lambda p: _photos(p, 3)), "--matcher", ["--matcher", "fast"]),
        "bad_video_frames": (folder(lambda p: _photos(p, 3)), "--video-frames",
                             ["--video-frames", "1"]),
        "bad_min_registered": (folder(lambda p: _photos(p, 3)), "--min-registered",
                               ["--min-registered", "1.5"]),
        "bad_downscale": (folder(lambda p: _photos(p, 3)), "--downscale", ["--downscale", "1"]),
        "bad_threads": (folder(lambda p: _photos(p, 3)), "--threads", ["--threads", "-2"]),
    })
    return cases


def test_every_broken_process_input_is_one_clear_sentence(tally: Tally, tmp_path):
    for index, (name, (build, expect, flags)) in enumerate(_inputs().items()):
        root = tmp_path / f"{index:02d}"
        root.mkdir()
        source = build(root)
        tally.check(name, "process", ["process", source, root / "scene", *flags], expect)
    outputs = {
        "output_an_existing_file": lambda root: (root / "scene").write_text("x"),
        "output_inside_the_input": None,
        "output_already_processed": lambda root: (root / "scene" / "sparse").mkdir(parents=True),
    }
    for name, prepare in outputs.items():
        root = tmp_path / name
        _photos(root / "photos", 3)
        out = root / "photos" / "scene" if prepare is None else root / "scene"
        if prepare is not None:
            prepare(root)
        expect = "scene" if prepare is not None else "inside the input"
        tally.check(name, "process", ["process", root / "photos", out], expect)
    assert tally.counts.by_command["process"] >= 30
    tally.assert_all_clear()


def test_the_damaged_folders_process_once_repaired(tmp_path):
    """Control: the two photos plus an intact third image pass the input checks (no COLMAP)."""
    from nerfkit.ingest.process import _copy_images

    folder = _damaged(lambda p: None)(tmp_path)
    assert _copy_images(folder, tmp_path / "out") == ["photo_0.png", "photo_1.png", "photo_9.png"]
    shutil.rmtree(tmp_path / "out")
