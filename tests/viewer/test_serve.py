"""Serving: the training hook's time budget and pause, the keyframe panel's files, the CLI."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from tiny_run import tiny_train_args

from nerfkit.cli import main
from nerfkit.app.serve import TrainingViewer
from nerfkit.runs.trainer import TrainStats
from nerfkit.viewer.types import RenderResult, TrainingControl


class FakeServer:
    """Always has a frame to draw, each costing ``cost`` seconds (reported, not slept)."""

    def __init__(self, cost: float) -> None:
        self.cost, self.frames = cost, 0

    def render_once(self) -> float:
        self.frames += 1
        return self.cost


def test_training_keeps_its_speed_while_a_browser_watches():
    stats, server = TrainStats(), FakeServer(cost=0.2)       # slow CPU frames, fast steps
    hook = TrainingViewer(server, TrainingControl(), stats, render_fraction=0.1)
    for _ in range(5000):
        stats.train_seconds += 0.02
        hook.after_step()
    render_seconds = server.frames * server.cost
    share = render_seconds / (render_seconds + stats.train_seconds)
    assert 0.08 <= share <= 0.1 + server.cost / stats.train_seconds


def test_no_browser_costs_nothing():
    class Idle:
        calls = 0

        def render_once(self) -> float:
            Idle.calls += 1
            return 0.0

    stats = TrainStats()
    hook = TrainingViewer(Idle(), TrainingControl(), stats)
    started = time.perf_counter()
    for _ in range(1000):
        stats.train_seconds += 0.01
        hook.after_step()
    assert time.perf_counter() - started < 0.5
    assert hook.budget.credit <= hook.budget.max_credit


def test_pause_holds_the_loop_until_resumed():
    control, stats = TrainingControl(), TrainStats()
    server = FakeServer(cost=0.0)       # nothing to draw: the hook waits on the switch
    hook = TrainingViewer(server, control, stats)
    control.pause()
    worker = threading.Thread(target=hook.after_step)
    worker.start()
    time.sleep(0.4)
    assert worker.is_alive(), "the training loop went on while paused"
    assert server.frames >= 2, "a paused run must still serve the browser"
    control.resume()
    worker.join(timeout=2)
    assert not worker.is_alive()


def test_keyframes_are_saved_in_world_coordinates(tmp_path):
    from nerfkit.video.camera_path import load_camera_path
    from nerfkit.viewer.keyframes import KeyframeOptions
    from nerfkit.viewer.server import ViewerOptions, ViewerServer

    scene_to_world = np.diag([2.0, 2.0, 2.0, 1.0])
    scene_to_world[:3, 3] = [10.0, 0.0, -5.0]
    options = ViewerOptions(port=0, keyframes=KeyframeOptions(scene_to_world, tmp_path / "camera_paths", (64, 48)))
    server = ViewerServer(lambda request: RenderResult(np.zeros((request.height, request.width, 3))),
                          TrainStats(), options)
    try:
        assert server.render_once() == 0.0          # no browser, nothing to draw
        pose = np.eye(4)
        pose[:3, 3] = [1.0, 2.0, 3.0]
        server.keyframe_panel.add_keyframe(pose, np.radians(50.0))
        server.keyframe_panel.add_keyframe(np.eye(4), np.radians(40.0))
        path = server.keyframe_panel.save_path()
    finally:
        server.close()
    assert path == tmp_path / "camera_paths" / "camera_path.json"
    loaded = load_camera_path(path)
    assert (loaded.width, loaded.height) == (64, 48) and len(loaded.keyframes) == 2
    assert np.allclose(loaded.keyframes[0].camera_to_world[:3, 3], [12.0, 4.0, 1.0])
    assert np.allclose(loaded.keyframes[0].camera_to_world[:3, :3], np.eye(3))
    assert loaded.keyframes[0].fov_y_degrees == pytest.approx(50.0)


def _fails_with(capsys, args: list[str], *words: str) -> None:
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    assert err.startswith("nerfkit: error: ") and "\n" not in err and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)


def test_view_and_train_flag_mistakes(tmp_path, capsys):
    _fails_with(capsys, ["view", str(tmp_path / "nowhere")], "nowhere", "does not exist")
    _fails_with(capsys, ["train", str(tmp_path), "--port", "70000"], "--port", "70000")
    _fails_with(capsys, ["train", str(tmp_path), "--host", ""], "--host")
    _fails_with(capsys, ["view", str(tmp_path), "--host", "256.1.1.1"], "--host", "256.1.1.1")


def test_train_with_the_viewer_on_finishes_and_says_how_to_view(tiny_demo, tmp_path, capsys):
    args = tiny_train_args(tiny_demo, tmp_path, "--max-steps", "3", "--port", "0", threads=1, viewer=True)
    threads = torch.get_num_threads()
    try:
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "viewer: http://localhost:" in out
    assert "nerfkit view " in out


def test_render_video_button_writes_an_mp4_next_to_the_path(viewer_run):
    import imageio_ffmpeg

    from nerfkit.runs.session import open_run
    from nerfkit.app.serve import start_viewer

    _, scene, method, step = open_run(viewer_run)
    server = start_viewer(method, scene, viewer_run, "127.0.0.1", 0, TrainStats(step=step))
    try:
        panel = server.keyframe_panel
        panel.width.value, panel.height.value, panel.fps.value, panel.seconds.value = 32, 24, 10, 0.3
        panel.name.value = "test path"
        for index in scene.split("train")[:2]:
            panel.add_keyframe(scene.cameras.c2w[index].double().numpy(), np.radians(40.0))
        panel.request_video()
        assert server.render_once() > 0.0            # the queued video job runs on this thread
    finally:
        server.close()
    assert "video written" in panel.status.content, panel.status.content
    video = viewer_run / "camera_paths" / "testpath.mp4"
    assert (viewer_run / "camera_paths" / "testpath.json").exists()
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(video))
    assert frames == 3                                    # 10 fps x 0.3 s
