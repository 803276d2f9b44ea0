"""`nerfkit render RUN -o video.mp4 [--path PATH.json|orbit]`: a tiny trained run renders the orbit and a
saved camera path to H.264 .mp4 files with the right frame count and size, showing the scene (not
blank) in motion (consecutive frames differ); the split render to PNGs still works; bad inputs end in
one sentence with exit code 2, before the run is even opened."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
from tiny_run import train_tiny_ngp_once

from nerfkit.video.camera_path import CameraPath, orbit_path, save_camera_path
from nerfkit.cli import main


@pytest.fixture(scope="module")
def trained_run(tiny_demo, tmp_path_factory) -> Path:
    return train_tiny_ngp_once(tiny_demo, tmp_path_factory.mktemp("video-runs"), 100)


def _read(video: Path) -> np.ndarray:
    frames = iio.imread(video, plugin="pyav") if _has_pyav() else np.stack(list(iio.imiter(video)))
    return np.asarray(frames)


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _codec(video: Path) -> str:
    """ffmpeg's description of the video stream (codec, pixel format, size)."""
    result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(video)],
                            capture_output=True, text=True, check=False)
    return next(line for line in result.stderr.splitlines() if "Video:" in line)


def _check_video(frames: np.ndarray, count: int, width: int, height: int) -> None:
    assert frames.shape == (count, height, width, 3), frames.shape
    for frame in frames:                       # the object on the white background, not a flat image
        assert frame.std() > 10 and (frame < 200).mean() > 0.05, (frame.std(), (frame < 200).mean())
    changes = np.abs(np.diff(frames.astype(np.float64), axis=0)).mean(axis=(1, 2, 3))
    assert (changes > 1.0).all(), changes


def test_orbit_video(trained_run, tmp_path, capsys):
    out = tmp_path / "videos" / "orbit.mp4"
    assert main(["render", str(trained_run), "-o", str(out), "--frames", "6", "--no-progress"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and "6 frames" in printed[0] and str(out) in printed[0], printed
    assert [p.name for p in out.parent.iterdir()] == ["orbit.mp4"]          # no temp file left
    stream = _codec(out)
    assert "h264" in stream and "yuv420p" in stream and "32x32" in stream, stream
    _check_video(_read(out), 6, 32, 32)


def test_camera_path_file_video(trained_run, tiny_demo, tmp_path, capsys):
    from nerfkit.data.load import load_scene

    orbit = orbit_path(load_scene(tiny_demo), frames=8)
    path = CameraPath(orbit.keyframes[:4], width=40, height=30, fps=5, seconds=0.8)   # a quarter turn
    save_camera_path(tmp_path / "path.json", path)
    out = tmp_path / "path.mp4"
    assert main(["render", str(trained_run), "--path", str(tmp_path / "path.json"), "-o", str(out),
                 "--no-progress", "--background", "black"]) == 0
    assert "4 frames (40x30, 5 fps" in capsys.readouterr().out
    _check_video(_read(out), 4, 40, 30)
    # Overrides: an odd width is rounded up to even (yuv420p); the height keeps the aspect.
    out2 = tmp_path / "small.mp4"
    assert main(["render", str(trained_run), "--path", str(tmp_path / "path.json"), "-o", str(out2),
                 "--no-progress", "--width", "23", "--fps", "4", "--seconds", "0.5"]) == 0
    assert _read(out2).shape == (2, 18, 24, 3)


def test_split_render_to_images_still_works(trained_run, tmp_path):
    out = tmp_path / "renders"
    assert main(["render", str(trained_run), "--split", "test", "-o", str(out)]) == 0
    assert len(list(out.glob("*_gt.png"))) == 3


@pytest.mark.parametrize("arguments,expected", [
    (["--path", "{tmp}/missing.json", "-o", "{tmp}/v.mp4"], "missing.json' does not exist"),
    (["--path", "{tmp}", "-o", "{tmp}/v.mp4"], "is not a file"),
    (["--path", "{tmp}/bad.json", "-o", "{tmp}/v.mp4"], "bad.json' is not valid JSON"),
    (["--path", "orbit", "-o", "{tmp}/frames"], "must be an .mp4 file"),
    (["-o", "{tmp}/v.mp4", "--fps", "0"], "--fps must be"),
    (["-o", "{tmp}/v.mp4", "--width", "1"], "--width must be"),
    (["-o", "{tmp}/v.mp4", "--frames", "10", "--seconds", "2"], "not both"),
    (["--path", "{tmp}/bad.json", "-o", "{tmp}/v.mp4", "--frames", "10"], "orbit only"),
])
def test_bad_video_arguments_are_one_sentence(tmp_path, capsys, arguments, expected):
    (tmp_path / "bad.json").write_text("not json")
    argv = ["render", str(tmp_path / "no-such-run")] + [a.format(tmp=tmp_path) for a in arguments]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nerfkit: error: ") and expected in err[0], err
    assert not list(tmp_path.glob("*.mp4"))
