"""Training logs (issue 20): a run folder after `nerfkit train` holds TensorBoard events that
tensorboard's own event reader reads back (scalars per logged step, learning rates, memory, the
held-out renders at each --eval-every, the final test scores); --logger jsonl writes one JSON object
per logged step; --logger none writes no logs; training.png is there and not blank in every case."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from nerfkit.cli import main
from nerfkit.core.errors import NerfkitError
from nerfkit.runs.folder import RunFolder
from nerfkit.runs.loggers import TrainingLogger, read_history, resolve_logger
from tiny_run import tiny_train_args

STEPS, EVERY = 20, 5


def _train(scene, output, *extra: str) -> RunFolder:
    args = tiny_train_args(scene, output, "--max-steps", str(STEPS), "--eval-every", str(EVERY),
                           "--set", f"log_every={EVERY}", *extra, threads=1)
    threads = torch.get_num_threads()
    try:
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)
    return RunFolder.find(output / "tiny-demo" / "ngp")


def _assert_plot(run: RunFolder) -> None:
    picture = np.asarray(Image.open(run.plot_file).convert("RGB")).astype(np.float32)
    assert picture.shape[0] > 200 and picture.shape[1] > 400
    assert picture.std() > 10.0                              # axes, curves and labels, not a blank page
    assert (np.abs(picture - 255).max(-1) > 60).mean() > 0.01


@pytest.fixture(scope="module")
def tensorboard_run(tiny_demo, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NERFKIT_COMPILE", "0")
        return _train(tiny_demo, tmp_path_factory.mktemp("tb"), "--logger", "tensorboard")


def test_tensorboard_events_read_back(tensorboard_run):
    from tensorboard.backend.event_processing import event_accumulator

    run = tensorboard_run
    assert list(run.logs_dir.glob("events.out.tfevents.*"))
    events = event_accumulator.EventAccumulator(str(run.logs_dir), size_guidance={
        event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    logged = list(range(EVERY, STEPS + 1, EVERY))
    for tag in ("train/loss", "train/psnr", "train/rays_per_second", "time/train_seconds", "memory/rss_mb",
                "eval/psnr", "eval/ssim"):
        assert tag in scalars, (tag, scalars)
        assert [event.step for event in events.Scalars(tag)] == logged, tag
    assert any(tag.startswith("lr/") for tag in scalars), scalars
    loss = [event.value for event in events.Scalars("train/loss")]
    psnr = [event.value for event in events.Scalars("train/psnr")]
    np.testing.assert_allclose(psnr, -10 * np.log10(loss), rtol=1e-5)      # PSNR of the logged MSE
    assert all(event.value > 0 for event in events.Scalars("memory/rss_mb"))
    seconds = [event.value for event in events.Scalars("time/train_seconds")]
    assert seconds == sorted(seconds) and seconds[0] > 0

    metrics = json.loads(run.metrics_file.read_text())
    test_psnr = events.Scalars("test/psnr")
    assert [e.step for e in test_psnr] == [STEPS]
    assert test_psnr[0].value == pytest.approx(metrics["psnr"], rel=1e-6)
    assert metrics["history"][-1]["eval_psnr"] == pytest.approx(events.Scalars("eval/psnr")[-1].value, rel=1e-6)

    # The held-out render at each eval: ground truth | render of the first val image.
    assert set(events.Tags()["images"]) >= {"eval/rgb", "eval/depth"}
    images = events.Images("eval/rgb")
    assert [image.step for image in images] == logged
    last = np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string)).convert("RGB"))
    assert last.shape == (32, 64, 3)
    from nerfkit.data.sampler import background_color
    from nerfkit.methods.base import inference
    from nerfkit.runs.evaluate import ground_truth
    from nerfkit.runs.session import open_run

    _, scene, method, step = open_run(run)
    assert step == STEPS
    index = scene.split("val")[0]
    background = background_color("white", 1)[0]
    with inference(method):
        render = method.render(scene.cameras[index], background)["rgb"].clamp(0, 1)
    expected_render = (render.numpy() * 255 + 0.5).astype(np.uint8)
    expected_truth = (ground_truth(scene, index, background).numpy() * 255 + 0.5).astype(np.uint8)
    assert np.abs(last[:, :32].astype(int) - expected_truth).max() <= 1
    assert np.abs(last[:, 32:].astype(int) - expected_render).max() <= 2        # the model at step 20
    _assert_plot(run)


def test_jsonl_and_none_loggers(tiny_demo, tmp_path):
    run = _train(tiny_demo, tmp_path / "jsonl", "--logger", "jsonl")
    lines = (run.logs_dir / RunFolder.LOG_JSONL).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == list(range(EVERY, STEPS + 1, EVERY))   # one object per step
    for record in records:
        assert record["train/psnr"] == pytest.approx(-10 * np.log10(record["train/loss"]), rel=1e-6)
        assert "eval/psnr" in record and any(key.startswith("lr/") for key in record)
        picture = np.asarray(Image.open(run.logs_dir / record["images"]["eval/rgb"]))
        assert picture.shape == (32, 64, 3)
    assert records[-1]["test/psnr"] == pytest.approx(json.loads(run.metrics_file.read_text())["psnr"])
    assert not list(run.logs_dir.glob("events.out.tfevents.*"))
    history = read_history(run.logs_dir)
    assert [p.step for p in history] == [r["step"] for r in records]
    _assert_plot(run)

    quiet = _train(tiny_demo, tmp_path / "none", "--logger", "none")
    assert not quiet.logs_dir.exists()
    _assert_plot(quiet)


def test_auto_falls_back_to_jsonl_and_bad_choices_are_one_sentence():
    assert resolve_logger("auto", available=True) == ("tensorboard", "")
    name, note = resolve_logger("auto", available=False)
    assert name == "jsonl" and "tensorboard" in note and "\n" not in note
    with pytest.raises(NerfkitError, match="needs the tensorboard package"):
        resolve_logger("tensorboard", available=False)
    with pytest.raises(NerfkitError, match="--logger must be one of"):
        resolve_logger("wandb")


def test_a_resumed_run_drops_the_steps_logged_past_its_checkpoint():
    logger = TrainingLogger(None, None)
    for step, seconds in [(10, 1.0), (20, 2.0), (30, 3.0), (40, 4.0)]:   # killed after 40, checkpoint at 20
        logger._point(step, seconds).loss = 0.1
    logger._point(30, 3.1).loss = 0.05                                    # the resumed process logs 30 again
    assert [(p.step, p.seconds, p.loss) for p in logger.history] == [(10, 1.0, 0.1), (20, 2.0, 0.1),
                                                                      (30, 3.1, 0.05)]
