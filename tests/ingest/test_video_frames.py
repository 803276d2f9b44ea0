"""Video -> sharp frames: counts, time order, sharpest-per-window choice, and one-sentence errors.

The videos are tiny (64x48, 10 fps) H.264 files written in ``tmp_path`` with imageio-ffmpeg. Every
frame carries its index as a bright 2-pixel-wide vertical bar at column ``2 * index``, drawn after
any blur, so a decoded frame tells which source frame it was despite compression.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio
import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest

from nerfkit.ingest.video_frames import VIDEO_SUFFIXES, extract_frames, sharpness
from nerfkit.core.errors import NerfkitError

WIDTH, HEIGHT = 64, 48   # multiples of 16: ffmpeg keeps the size as is


def _checkerboard(square: int = 2, low: int = 0, high: int = 160) -> np.ndarray:
    """(HEIGHT, WIDTH, 3) uint8 checkerboard with ``square``-pixel cells."""
    cells = (np.indices((HEIGHT, WIDTH)) // square).sum(axis=0) % 2
    grey = np.where(cells == 1, high, low).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _box_blur(image: np.ndarray, radius: int = 2) -> np.ndarray:
    """(H, W, C) uint8 -> the mean over a (2 radius + 1)^2 box, edges replicated."""
    padded = np.pad(image.astype(np.float32), ((radius, radius), (radius, radius), (0, 0)),
                    mode="edge")
    size = 2 * radius + 1
    out = sum(padded[dy:dy + image.shape[0], dx:dx + image.shape[1]]
              for dy in range(size) for dx in range(size)) / size**2
    return np.round(out).astype(np.uint8)


def _with_index(image: np.ndarray, index: int) -> np.ndarray:
    """A copy of ``image`` with a white 2-pixel bar at columns 2 index, 2 index + 1."""
    out = image.copy()
    out[:, 2 * index:2 * index + 2] = 255
    return out


def _index_of(frame: np.ndarray) -> int:
    """The index encoded by :func:`_with_index`: the brightest 2-column pair (left column)."""
    columns = frame.astype(np.float32).mean(axis=(0, 2))
    return int(np.argmax(columns[0::2] + columns[1::2]))


def _write_video(path: Path, frames: list[np.ndarray]) -> Path:
    iio.imwrite(path, np.stack(frames), plugin="FFMPEG", fps=10, codec="libx264",
                output_params=["-crf", "12"])
    return path


def _plain_video(path: Path, count: int) -> Path:
    """``count`` frames of dark texture, frame i marked with its index."""
    base = _checkerboard(square=4, high=60)
    return _write_video(path, [_with_index(base, i) for i in range(count)])


def test_video_suffixes_are_lower_case_extensions():
    assert {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"} <= VIDEO_SUFFIXES
    assert all(suffix.startswith(".") and suffix == suffix.lower() for suffix in VIDEO_SUFFIXES)


def test_sharpness_of_checkerboard_exceeds_its_blurred_copy():
    board = _checkerboard()
    assert sharpness(board) > 10.0 * sharpness(_box_blur(board))
    assert sharpness(board[:, :, :1]) == pytest.approx(sharpness(board), rel=1e-4)
    assert sharpness(np.full((HEIGHT, WIDTH, 3), 99, np.uint8)) == 0.0


def test_target_count_frames_are_written_in_time_order(tmp_path):
    video = _plain_video(tmp_path / "clip.mp4", 30)
    calls: list[tuple[int, int]] = []
    paths = extract_frames(video, tmp_path / "out" / "frames", target_count=5,
                           progress=lambda done, total: calls.append((done, total)))
    assert [p.name for p in paths] == [f"frame_{i:05d}.png" for i in range(5)]
    assert all(p.is_file() for p in paths)
    indices = []
    for path in paths:
        image = iio.imread(path)
        assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
        indices.append(_index_of(image))
    assert indices == sorted(indices) and len(set(indices)) == 5
    assert all(6 * w <= i < 6 * (w + 1) for w, i in enumerate(indices))   # one per 6-frame window
    assert calls[-1] == (30, 30) and [done for done, _ in calls] == list(range(1, 31))


def test_sharpest_frame_of_each_window_is_chosen(tmp_path):
    sharp = _checkerboard(square=2)
    blurred = _box_blur(sharp)
    sharp_offsets = [3, 0, 5, 1, 4]                  # where the sharp frame sits in each window
    sharp_indices = [6 * w + o for w, o in enumerate(sharp_offsets)]
    frames = [_with_index(sharp if i in sharp_indices else blurred, i) for i in range(30)]
    video = _write_video(tmp_path / "clip.mp4", frames)

    paths = extract_frames(video, tmp_path / "out", target_count=5)
    chosen = [iio.imread(p) for p in paths]
    assert [_index_of(image) for image in chosen] == sharp_indices
    # Compression softens the sharp frames a little; they must still beat every blurred frame.
    with imageio.get_reader(video, format="FFMPEG") as reader:
        decoded_blurred = [np.asarray(f) for i, f in enumerate(reader) if i not in sharp_indices]
    worst_chosen = min(sharpness(image) for image in chosen)
    assert worst_chosen > 2.0 * max(sharpness(f) for f in decoded_blurred)


def test_fewer_frames_than_target_gives_every_frame(tmp_path):
    video = _plain_video(tmp_path / "short.mp4", 4)
    paths = extract_frames(video, tmp_path / "out", target_count=10)
    assert [_index_of(iio.imread(p)) for p in paths] == [0, 1, 2, 3]


def test_stale_frames_of_an_earlier_run_are_removed(tmp_path):
    video = _plain_video(tmp_path / "short.mp4", 4)
    out = tmp_path / "out"
    out.mkdir()
    (out / "frame_00007.png").write_bytes(b"old")
    (out / "notes.txt").write_text("kept")
    extract_frames(video, out, target_count=2)
    assert sorted(p.name for p in out.iterdir()) == ["frame_00000.png", "frame_00001.png",
                                                     "notes.txt"]


def _text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n")
    return path


def _truncated(tmp_path: Path, suffix: str) -> Path:
    whole = _plain_video(tmp_path / f"whole{suffix}", 30)
    path = tmp_path / f"cut{suffix}"
    data = whole.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def _audio_only(tmp_path: Path) -> Path:
    """An .mp4 with one silent audio stream and no video stream, i.e. zero video frames."""
    path = tmp_path / "silence.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi",
                    "-i", "anullsrc=r=8000:cl=mono", "-t", "0.3", "-c:a", "aac", str(path)],
                   check=True)
    return path


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.mov"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize("make, expected", [
    (_text_file, "could not be decoded"),
    (lambda tmp: _truncated(tmp, ".mp4"), "could not be decoded"),   # cut before its index
    (lambda tmp: _truncated(tmp, ".mkv"), "is truncated"),             # opens, then ends early
    (_audio_only, "no video frames"),
    (_empty, "could not be decoded"),
    (lambda tmp: tmp / "missing.mp4", "does not exist"),
], ids=["text-file", "truncated-mp4", "truncated-mkv", "audio-only", "empty-file", "missing"])
def test_unusable_video_raises_one_sentence_error(tmp_path, make, expected):
    video = make(tmp_path)
    with pytest.raises(NerfkitError) as info:
        extract_frames(video, tmp_path / "out", target_count=5)
    message = str(info.value)
    assert expected in message and f"'{video}'" in message and "expected" in message
    assert "\n" not in message and message.count(". ") == 0
    error = info.value
    assert error.__cause__ is None and (error.__suppress_context__ or error.__context__ is None)
    assert not any((tmp_path / "out").glob("frame_*.png"))


@pytest.mark.parametrize("target_count", [0, -3])
def test_target_count_below_one_raises(tmp_path, target_count):
    video = _plain_video(tmp_path / "clip.mp4", 3)
    with pytest.raises(NerfkitError, match="at least 1") as info:
        extract_frames(video, tmp_path / "out", target_count=target_count)
    assert "clip.mp4" in str(info.value) and info.value.__cause__ is None


def test_output_folder_that_is_a_file_raises(tmp_path):
    video = _plain_video(tmp_path / "clip.mp4", 3)
    (tmp_path / "out").write_text("a file, not a folder")
    with pytest.raises(NerfkitError, match="is a file: expected a folder"):
        extract_frames(video, tmp_path / "out", target_count=2)
