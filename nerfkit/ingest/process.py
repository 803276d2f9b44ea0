"""Photos or a video in, a posed COLMAP scene out (``nerfkit process INPUT OUT``), with pycolmap.

Stages (each timed and reported): prepare the images (copied, or frames sampled from a video, never
touching INPUT), SIFT feature extraction, matching (exhaustive for small sets, sequential for video),
incremental mapping with bundle adjustment, keeping the model with the most registered images,
optional undistortion to PINHOLE, and downscaled copies. ``OUT`` then holds ``images/`` and
``sparse/0/`` (the layout :mod:`nerfkit.data.colmap` reads) plus ``process.json`` (the summary) and
``colmap/`` (the database and all models).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from nerfkit.core.errors import NerfkitError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
MATCHERS = ("auto", "exhaustive", "sequential")
CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
EXHAUSTIVE_LIMIT = 200          # auto matching: exhaustive up to this many images
MAPPING_ATTEMPTS = 3            # incremental mapping runs (new seeds) before a collapsed result is an error
COLLAPSE_RATIO = 1e-4           # cameras spread less than this x the 3D points: a collapsed reconstruction


@dataclass
class ProcessOptions:
    """How to process (the ``nerfkit process`` flags)."""

    matcher: str = "auto"            # auto | exhaustive | sequential
    camera_model: str = "SIMPLE_RADIAL"
    single_camera: bool = True       # all images share one set of intrinsics
    undistort: bool = False          # write PINHOLE images and model
    downscales: tuple[int, ...] = ()  # extra copies images_2/, images_4/, ...
    video_frames: int = 150          # frames kept from a video
    min_registered: float = 0.5      # fail when fewer than this fraction registers
    max_image_size: int = 3200       # SIFT works on images at most this large
    seed: int = 0
    threads: int = 0                 # CPU threads for COLMAP (0 = all cores; 1 = the same result every run)
    overwrite: bool = False


@dataclass
class ProcessReport:
    """What ``nerfkit process`` did (also written to ``OUT/process.json``)."""

    images: int = 0
    registered: int = 0
    failed: list[str] = field(default_factory=list)
    points3d: int = 0
    mean_reprojection_error: float = float("nan")
    models: int = 0
    matcher: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def registered_fraction(self) -> float:
        return self.registered / max(self.images, 1)

    def summary_lines(self) -> list[str]:
        lines = [f"registered {self.registered} of {self.images} images ({100 * self.registered_fraction:.0f}%), "
                 f"{self.points3d:,} 3D points, mean reprojection error {self.mean_reprojection_error:.3f} px, "
                 f"{self.matcher} matching, {self.models} model(s)"]
        if self.failed:
            shown = ", ".join(self.failed[:10]) + (f" and {len(self.failed) - 10} more" if len(self.failed) > 10 else "")
            lines.append(f"not registered: {shown}")
        lines.append("time: " + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in self.seconds.items()))
        return lines


def process(source: Path, out: Path, options: ProcessOptions,
            log: Callable[[str], None] | None = None) -> ProcessReport:
    """Pose the photos (a folder) or the video (a file) at ``source`` into a scene folder ``out``.

    Raises NerfkitError for bad input and when fewer than ``options.min_registered`` of the images
    register (after writing what was found, so it can be inspected).
    """
    from nerfkit.ingest.video_frames import VIDEO_SUFFIXES

    _check_options(options)
    source, out = Path(source).resolve(), Path(out).resolve()
    if not source.exists():
        raise NerfkitError(f"input '{source}' does not exist: expected a folder of images or a video file")
    if out == source or source in out.parents:
        raise NerfkitError(f"output '{out}' is inside the input '{source}': choose a folder outside it "
                           "(nerfkit never writes into your input)")
    if out.exists() and not out.is_dir():
        raise NerfkitError(f"output '{out}' is a file: expected a folder to write the scene into")
    if (out / "sparse").exists() or (out / "images").exists():
        if not options.overwrite:
            raise NerfkitError(f"output '{out}' already holds a processed scene: pass --overwrite or choose "
                               "another folder")
        for name in ("images", "sparse", "colmap", "process.json"):
            _remove(out / name)
        for old in out.glob("images_*"):
            _remove(old)
    log = log or (lambda line: None)
    report = ProcessReport()
    is_video = source.is_file() and source.suffix.lower() in VIDEO_SUFFIXES
    if source.is_file() and not is_video:
        raise NerfkitError(f"input '{source}' is a file but not a video ({', '.join(sorted(VIDEO_SUFFIXES))}); "
                           "expected a folder of images or a video")
    report.matcher = options.matcher if options.matcher != "auto" else "sequential" if is_video else "exhaustive"

    images_dir = out / "images"
    stage = _Stages(report, log)
    with stage("images"):
        if is_video:
            names = _frames_from_video(source, images_dir, options.video_frames)
        else:
            names = _copy_images(source, images_dir)
    report.images = len(names)
    if report.matcher == "exhaustive" and options.matcher == "auto" and len(names) > EXHAUSTIVE_LIMIT:
        report.matcher = "sequential"
    log(f"{len(names)} images in {images_dir}")

    import pycolmap

    pycolmap.logging.minloglevel = 3               # fatal only: we report stages, failures and tips ourselves
    colmap_threads = options.threads if options.threads > 0 else -1     # COLMAP: -1 = all cores
    colmap_dir = out / "colmap"
    colmap_dir.mkdir(parents=True, exist_ok=True)
    database = colmap_dir / "database.db"
    with stage("features"):
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = options.camera_model
        extraction = pycolmap.FeatureExtractionOptions()
        extraction.max_image_size = options.max_image_size
        extraction.num_threads = colmap_threads
        mode = pycolmap.CameraMode.SINGLE if options.single_camera else pycolmap.CameraMode.AUTO
        pycolmap.extract_features(database, images_dir, image_names=names, camera_mode=mode,
                                  reader_options=reader, extraction_options=extraction)
    with stage("matching"):
        matching = pycolmap.FeatureMatchingOptions()
        matching.num_threads = colmap_threads
        if report.matcher == "exhaustive":
            pycolmap.match_exhaustive(database, matching_options=matching)
        else:
            pairing = pycolmap.SequentialPairingOptions()
            pairing.overlap = 10
            pycolmap.match_sequential(database, matching_options=matching, pairing_options=pairing)
    with stage("mapping"):
        models_dir = colmap_dir / "sparse"
        for attempt in range(MAPPING_ATTEMPTS):
            shutil.rmtree(models_dir, ignore_errors=True)
            models_dir.mkdir()
            mapping = pycolmap.IncrementalPipelineOptions()
            mapping.random_seed = options.seed + attempt
            mapping.num_threads = colmap_threads
            models = pycolmap.incremental_mapping(database, images_dir, models_dir, options=mapping)
            if not models or not _model_collapsed(max(models.values(), key=lambda m: m.num_reg_images())):
                break
            log(f"mapping attempt {attempt + 1} collapsed (most cameras at one point): mapping again "
                "with another random seed")
        else:
            raise NerfkitError(f"COLMAP's reconstruction of '{images_dir}' collapsed (most cameras at one "
                               f"point) in {MAPPING_ATTEMPTS} attempts: move the camera between photos "
                               "rather than only turning it, so that they show parallax")
    report.models = len(models)
    if not models:
        raise NerfkitError(f"COLMAP could not register any of the {len(names)} images in '{images_dir}': "
                           "make sure neighbouring photos overlap (~60%) and the scene is textured and static, "
                           "or try --matcher exhaustive")
    model = max(models.values(), key=lambda m: m.num_reg_images())
    registered = {model.images[image_id].name for image_id in model.reg_image_ids()}
    report.registered = len(registered)
    report.failed = [name for name in names if name not in registered]
    report.points3d = model.num_points3D()
    report.mean_reprojection_error = float(model.compute_mean_reprojection_error())

    sparse = out / "sparse" / "0"
    if options.undistort:
        with stage("undistortion"):
            _undistort(pycolmap, model, images_dir, colmap_dir, out)
    else:
        sparse.mkdir(parents=True, exist_ok=True)
        model.write_binary(str(sparse))
    if options.downscales:
        with stage("downscaling"):
            _write_downscaled(out / "images", options.downscales)
    (out / "process.json").write_text(json.dumps({**asdict(report), "options": asdict(options)}, indent=2))
    for line in report.summary_lines():
        log(line)
    if report.registered_fraction < options.min_registered:
        raise NerfkitError(f"only {report.registered} of {report.images} images registered (needed "
                           f"{100 * options.min_registered:.0f}%): see the list above; take photos with more "
                           "overlap, or try --matcher exhaustive")
    if report.failed:
        log("tip: images that did not register are skipped in training; more overlap or --matcher exhaustive "
            "may bring them in")
    return report


def collapsed_cameras(centres: np.ndarray, points: np.ndarray) -> bool:
    """True when a reconstruction put most cameras at one point (a degenerate COLMAP solution,
    seen now and then): the median distance of the (C, 3) camera centres from their median is below
    :data:`COLLAPSE_RATIO` times that of the (P, 3) 3D points, or one camera lies absurdly far from
    the rest (:func:`nerfkit.data.normalize.camera_outlier`, which would make the scene unloadable)."""
    if len(centres) < 3 or len(points) == 0:
        return False
    from nerfkit.data.normalize import camera_outlier

    if camera_outlier(torch.from_numpy(centres)) is not None:   # what loading the scene would refuse
        return True
    camera_spread = np.median(np.linalg.norm(centres - np.median(centres, axis=0), axis=1))
    point_spread = np.median(np.linalg.norm(points - np.median(points, axis=0), axis=1))
    return bool(camera_spread < COLLAPSE_RATIO * point_spread)


def _model_collapsed(model) -> bool:
    """:func:`collapsed_cameras` of a pycolmap reconstruction."""
    centres = np.array([model.images[i].projection_center() for i in model.reg_image_ids()]).reshape(-1, 3)
    points = np.array([point.xyz for point in model.points3D.values()]).reshape(-1, 3)
    return collapsed_cameras(centres, points)


class _Stages:
    """``with stages("name"):`` times a stage into the report and logs its start and end."""

    def __init__(self, report: ProcessReport, log: Callable[[str], None]) -> None:
        self.report, self.log = report, log
        self.name, self.start = "", 0.0

    def __call__(self, name: str) -> "_Stages":
        self.name = name
        return self

    def __enter__(self) -> None:
        self.log(f"[{self.name}] ...")
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        seconds = time.perf_counter() - self.start
        self.report.seconds[self.name] = round(seconds, 2)
        if exc[0] is None:
            self.log(f"[{self.name}] done in {seconds:.1f} s")


def _check_options(options: ProcessOptions) -> None:
    if options.matcher not in MATCHERS:
        raise NerfkitError(f"--matcher must be one of {', '.join(MATCHERS)}, got '{options.matcher}'")
    if options.camera_model not in CAMERA_MODELS:
        raise NerfkitError(f"--camera-model must be one of {', '.join(CAMERA_MODELS)}, got '{options.camera_model}'")
    if not 0.0 <= options.min_registered <= 1.0:
        raise NerfkitError(f"--min-registered must be a fraction in [0, 1], got {options.min_registered}")
    if options.threads < 0:
        raise NerfkitError(f"--threads must be 0 (all cores) or positive, got {options.threads}")
    if options.video_frames < 3:
        raise NerfkitError(f"--video-frames must be at least 3, got {options.video_frames}")
    if any(factor < 2 for factor in options.downscales):
        raise NerfkitError(f"--downscale factors must be integers >= 2, got {list(options.downscales)}")


def _copy_images(source: Path, images_dir: Path) -> list[str]:
    """Check and copy the images of ``source`` (a folder, not recursive); returns their names."""
    from PIL import Image, UnidentifiedImageError

    if not source.is_dir():
        raise NerfkitError(f"input '{source}' is not a folder of images or a video file")
    files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise NerfkitError(f"'{source}' holds no images (expected {', '.join(sorted(IMAGE_SUFFIXES))} files)")
    if len(files) < 3:
        raise NerfkitError(f"'{source}' holds only {len(files)} image(s): structure from motion needs at least 3 "
                           "overlapping photos (20-200 work best)")
    sizes: dict[tuple[int, int], Path] = {}
    for path in files:
        try:
            with Image.open(path) as image:
                image.load()
                size = image.size
        except (UnidentifiedImageError, OSError, ValueError):
            raise NerfkitError(f"image '{path}' cannot be read: expected a valid JPEG, PNG, BMP or TIFF file") from None
        if sizes and size not in sizes:
            other_size, other = next(iter(sizes.items()))
            raise NerfkitError(f"image '{path.name}' is {size[0]}x{size[1]} but '{other.name}' is "
                               f"{other_size[0]}x{other_size[1]}: all photos of a scene must have the same size")
        sizes.setdefault(size, path)
    images_dir.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copy2(path, images_dir / path.name)
    return [path.name for path in files]


def _frames_from_video(video: Path, images_dir: Path, count: int) -> list[str]:
    from nerfkit.ingest.video_frames import extract_frames

    paths = extract_frames(video, images_dir, target_count=count)
    if len(paths) < 3:
        raise NerfkitError(f"video '{video}' gave only {len(paths)} frame(s): structure from motion needs at least 3")
    return [path.name for path in paths]


def _undistort(pycolmap, model, images_dir: Path, colmap_dir: Path, out: Path) -> None:
    """Replace ``images/`` and the model with PINHOLE versions (originals kept in ``colmap/images``)."""
    model_dir = colmap_dir / "model"
    model_dir.mkdir(exist_ok=True)
    model.write_binary(str(model_dir))
    undistorted = colmap_dir / "undistorted"
    pycolmap.undistort_images(str(undistorted), str(model_dir), str(images_dir))
    shutil.move(str(images_dir), str(colmap_dir / "images"))
    shutil.move(str(undistorted / "images"), str(images_dir))
    sparse = out / "sparse" / "0"
    sparse.mkdir(parents=True, exist_ok=True)
    pycolmap.Reconstruction(str(undistorted / "sparse")).write_binary(str(sparse))


def _write_downscaled(images_dir: Path, factors: tuple[int, ...]) -> None:
    from PIL import Image

    for factor in factors:
        target = images_dir.parent / f"images_{factor}"
        target.mkdir(exist_ok=True)
        for path in sorted(images_dir.iterdir()):
            with Image.open(path) as image:
                size = (max(1, round(image.width / factor)), max(1, round(image.height / factor)))
                image.resize(size, Image.Resampling.LANCZOS).save(target / path.name)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
