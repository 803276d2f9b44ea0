"""Video -> a few sharp still frames, the first step of ``nerfkit process``.

:func:`extract_frames` streams a video twice through the ffmpeg that imageio-ffmpeg ships: a first
pass in ffmpeg alone only counts the decoded frames (and notices truncated files), a second pass
through imageio's FFMPEG reader hands the frames to Python one at a time. The frames are split into
``target_count`` equal windows of consecutive frames and the sharpest frame of each window (highest
:func:`sharpness`) is written as a PNG: besides the frame being decoded, only the current window's
best frame and at most two frames waiting for the PNG writer thread are ever held in memory.

Errors a user can cause (a missing file, a file that is not a decodable video, a truncated video, a
video without frames, ``target_count < 1``) raise :class:`~nerfkit.core.errors.NerfkitError` naming the
file and what was expected.
"""

from __future__ import annotations

import re
import subprocess
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import imageio
import imageio.v3 as iio
import numpy as np

from nerfkit.core.errors import NerfkitError

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"})

FRAME_PATTERN = "frame_{:05d}.png"             # written frames, numbered from 0 in time order
_FRAME_NAME = re.compile(r"frame_\d{5}\.png")  # the same names, to find stale ones of earlier runs
_GREY_WEIGHTS = (0.299, 0.587, 0.114)          # ITU-R BT.601 luma weights for R, G, B
_PNG_LEVEL = 1         # zlib level: 3-9x faster than Pillow's default 6, files up to ~20% larger
_PENDING_WRITES = 2    # frames queued for the PNG writer thread before decoding waits for it
# ffmpeg's own words (stderr, log level "error") for a file that stops before its end.
# (A file cut before its index, e.g. an .mp4 without its "moov atom", does not even open: ffmpeg
# then reports it like any other non-video, so both get the _UNREADABLE message.)
_TRUNCATION_MARKERS = ("File ended prematurely", "partial file")
_UNREADABLE = ("could not be decoded: expected a complete, untruncated video file that ffmpeg "
               "can read (" + ", ".join(sorted(VIDEO_SUFFIXES)) + ")")


def sharpness(image: np.ndarray) -> float:
    """Focus measure of one image: the variance of the Laplacian of its grey image.

    The grey image is ``0.299 R + 0.587 G + 0.114 B`` (BT.601) in 0..255 units; a single channel is
    used as is. The Laplacian is the 4-neighbour stencil ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]`` over
    the interior pixels (no padding, so borders add no fake edges). Blur removes high frequencies,
    which the Laplacian responds to, so a sharper view of the same scene scores higher; the value is
    only comparable between images of similar content and size (e.g. frames of one video).

    Args:
        image: (H, W, 3) or (H, W, 1) uint8 (also (H, W, 4): alpha is ignored, or (H, W) grey).

    Returns:
        The variance in squared grey levels, >= 0; 0.0 for a flat image or one under 3x3 pixels.

    Example:
        >>> board = (np.indices((8, 8)).sum(axis=0) % 2 * 255).astype(np.uint8)[:, :, None]
        >>> sharpness(board)
        1040400.0
        >>> sharpness(np.full((8, 8, 3), 7, np.uint8))
        0.0
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W, 3|1) image, got shape {image.shape}")
    if image.shape[2] == 1:
        grey = image[:, :, 0].astype(np.float32)
    else:
        grey = image[:, :, :3].astype(np.float32) @ np.asarray(_GREY_WEIGHTS, np.float32)
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    laplacian = (grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]
                 - 4.0 * grey[1:-1, 1:-1])
    return float(laplacian.var(dtype=np.float64))


def extract_frames(video: Path, out_dir: Path, target_count: int = 150,
                   progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Write the sharpest frame of each of ``target_count`` equal time windows as PNGs.

    The video's N frames are split into K = min(target_count, N) windows of consecutive frames
    (frame i belongs to window ``i * K // N``, so window sizes differ by at most one); in each the
    frame with the highest :func:`sharpness` wins (the earliest on a tie). With N <= target_count
    every frame is written. Frames are streamed, never all in memory (see the module docstring).

    Args:
        video: path of a video file, any format ffmpeg reads (see :data:`VIDEO_SUFFIXES`).
        out_dir: folder for ``frame_00000.png``, ``frame_00001.png``, ... (created if missing);
            ``frame_NNNNN.png`` files there from an earlier run that this run did not write are
            removed, so the folder holds exactly this extraction.
        target_count: number of frames wanted, >= 1.
        progress: called as ``progress(decoded, total)`` after every decoded frame of the second
            pass; ``total`` is the frame count of the first pass (raised to ``decoded`` should the
            decoder yield more frames than were counted).

    Returns:
        The written paths, K of them, in time order. Each PNG is RGB uint8 at the video's size.

    Raises:
        NerfkitError: the video is missing, not decodable, truncated or has no frames, or
            ``target_count < 1``.
    """
    video, out_dir = Path(video), Path(out_dir)
    if isinstance(target_count, bool) or not isinstance(target_count, (int, np.integer)) \
            or target_count < 1:
        raise NerfkitError(f"cannot extract {target_count!r} frames from video '{video}': expected "
                           "a target frame count of at least 1")
    if not video.is_file():
        raise NerfkitError(f"video '{video}' does not exist: expected a video file")
    total = _count_frames(video)
    windows = min(int(target_count), total)
    if out_dir.exists() and not out_dir.is_dir():
        raise NerfkitError(f"output folder '{out_dir}' is a file: expected a folder for the frames")
    out_dir.mkdir(parents=True, exist_ok=True)

    written: list[Path] = []
    best: np.ndarray | None = None     # (H, W, 3) uint8, sharpest frame of the current window
    best_score, current = -1.0, 0
    # PNG encoding (zlib, which releases the GIL) overlaps decoding on one writer thread; at most
    # _PENDING_WRITES frames wait for it, so memory stays bounded even when every frame is kept.
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending: deque[Future[Path]] = deque()

        def flush(frame: np.ndarray) -> None:
            path = out_dir / FRAME_PATTERN.format(len(written))
            written.append(path)
            pending.append(writer.submit(_write, frame, path))
            while len(pending) > _PENDING_WRITES:
                pending.popleft().result()

        for index, frame in enumerate(_decode(video)):
            window = min(index * windows // total, windows - 1)  # clamp if the decoder yields extra
            if window != current and best is not None:
                flush(best)
                best, best_score = None, -1.0
            current = window
            score = sharpness(frame)
            if score > best_score:
                best, best_score = frame, score
            if progress is not None:
                progress(index + 1, max(total, index + 1))
        if best is not None:
            flush(best)
        while pending:
            pending.popleft().result()   # re-raises a failed write here
    if not written:
        raise NerfkitError(f"video '{video}' yielded no frames when decoded: expected a video "
                           "with at least one frame")
    _remove_stale_frames(out_dir, keep={path.name for path in written})
    return written


def _count_frames(video: Path) -> int:
    """Frames in the first video stream, counted by ffmpeg decoding it alone (no pixels to Python).

    ffmpeg's ``-progress`` report on stdout gives the count; its error log on stderr tells apart a
    file that is not a video, one without a video stream, and one that ends early.
    """
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error",
               "-progress", "pipe:1", "-i", str(video), "-map", "0:v:0", "-f", "null", "-"]
    try:
        result = subprocess.run(command, capture_output=True, check=False)
    except OSError:
        raise NerfkitError(f"video '{video}' could not be decoded because ffmpeg failed to start: "
                           "expected the ffmpeg that imageio-ffmpeg installs") from None
    errors = result.stderr.decode(errors="replace")
    if "matches no streams" in errors:
        raise NerfkitError(f"video '{video}' contains no video frames: expected a video with at "
                           "least one frame") from None
    if any(marker in errors for marker in _TRUNCATION_MARKERS):
        raise NerfkitError(f"video '{video}' is truncated or damaged: expected a complete video "
                           "file") from None
    counts = re.findall(rb"^frame=\s*(\d+)", result.stdout, flags=re.MULTILINE)
    if result.returncode != 0 or not counts:
        raise NerfkitError(f"video '{video}' {_UNREADABLE}") from None
    frames = int(counts[-1])
    if frames == 0:
        raise NerfkitError(f"video '{video}' contains no video frames: expected a video with at "
                           "least one frame") from None
    return frames


def _decode(video: Path) -> Iterator[np.ndarray]:
    """Yield the frames of ``video`` one at a time as (H, W, 3) uint8 RGB, in time order.

    imageio's FFMPEG reader runs in a ``with`` block so ffmpeg is stopped however the iteration
    ends (an error, a raising ``progress`` callback). After a complete pass imageio-ffmpeg 0.8's
    ``read_frames`` leaves the stdin/stdout pipes of the already exited ffmpeg to the garbage
    collector (a harmless ``ResourceWarning`` under ``python -X dev``; ``imageio.v3.imiter`` too).
    """
    try:
        reader = imageio.get_reader(video, format="FFMPEG")
    except Exception:   # noqa: BLE001 - imageio/ffmpeg raise OSError, RuntimeError, ...
        raise NerfkitError(f"video '{video}' {_UNREADABLE}") from None
    with reader:
        frames = iter(reader)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                return
            except Exception:   # noqa: BLE001 - as above, for a stream that breaks mid-way
                raise NerfkitError(f"video '{video}' {_UNREADABLE}") from None
            frame = np.asarray(frame)
            if frame.ndim == 2:
                frame = frame[:, :, None]
            if frame.shape[2] == 1:
                frame = np.repeat(frame, 3, axis=2)
            yield np.ascontiguousarray(frame[:, :, :3], dtype=np.uint8)


def _write(frame: np.ndarray, path: Path) -> Path:
    """Write one (H, W, 3) uint8 frame as an RGB PNG and return its path."""
    iio.imwrite(path, frame, plugin="pillow", extension=".png", compress_level=_PNG_LEVEL)
    return path


def _remove_stale_frames(out_dir: Path, keep: set[str]) -> None:
    """Delete ``frame_NNNNN.png`` files in ``out_dir`` whose names are not in ``keep``."""
    for path in out_dir.iterdir():
        if _FRAME_NAME.fullmatch(path.name) and path.name not in keep and path.is_file():
            path.unlink()
