"""Training on several processes (torch.distributed, gloo on the CPU) is training on the whole batch:
the same losses, parameters and densification as one process with the same global batch; the
shares of a batch; what the processes' environment must hold."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import distributed_worker as worker
from nerfkit.core.errors import NerfkitError
from nerfkit.data.inputs import BatchRequest
from nerfkit.data.load import load_scene
from nerfkit.data.sampler import ImageSampler, PixelSampler
from nerfkit.runs.distributed import check_process_count, process_place
from nerfkit.runs.parallel import ProcessShare


def _run_workers(scene: Path, output: Path, result: Path, nproc: int = 2) -> None:
    """``nproc`` worker processes (:func:`distributed_worker.run_workers`); all must end with code 0."""
    codes, errors = worker.run_workers(scene, output, result, nproc)
    if codes != [0] * nproc:      # the whole of each process's stderr (an assert would shorten it)
        pytest.fail(f"exit codes {codes}\n" + "\n".join(f"--- process {rank}:\n{text}" for rank, text in enumerate(errors)))


@pytest.fixture(scope="module")
def two_process_runs(tiny_demo, tmp_path_factory):
    """Rank 0's results of ngp and splat trained by two gloo processes (worker.STEPS steps each)."""
    folder = tmp_path_factory.mktemp("distributed")
    _run_workers(tiny_demo, folder / "runs", folder / "result.pt")
    return torch.load(folder / "result.pt", weights_only=False)


@pytest.mark.parametrize("method", ["ngp", "splat"])
def test_two_processes_train_as_one_process_on_the_same_global_batch(method, two_process_runs, tiny_demo,
                                                                     tmp_path, one_torch_thread):
    # One process on the same global batch: ngp's rays (the adaptive count), splat's two images per
    # step (two processes render one each).
    alone = worker.train_steps(worker.run_config(method, tiny_demo, tmp_path, images_per_step=2))
    together = two_process_runs[method]
    assert together["losses"] == pytest.approx(alone["losses"], rel=1e-5)
    assert alone["state"].keys() == together["state"].keys()
    for name, value in alone["state"].items():
        assert value.shape == together["state"][name].shape, name
        assert torch.allclose(value.float(), together["state"][name].float(), rtol=1e-5, atol=1e-5), name
    # Both went on drawing the same batches and random numbers (grid updates, densification).
    assert torch.equal(alone["sampler"], together["sampler"]) and torch.equal(alone["rng"], together["rng"])
    if method == "ngp":      # the ray count adapted, and the grid was refreshed at steps 0, 4 and 8
        assert float(together["state"]["n_rays"]) != float(worker.run_config("ngp", tiny_demo, tmp_path).method.initial_rays)
        assert int(together["state"]["grid.updates"]) == 3
    else:                    # densification grew the set identically on both sides
        assert together["gaussians"] == alone["gaussians"] != together["initial_gaussians"]


def test_shares_of_a_ray_batch_are_the_whole_batch(tiny_demo):
    scene = load_scene(tiny_demo)
    ids = scene.split("train")
    whole = PixelSampler(scene, ids, "random", seed=3, with_radii=True).sample(1001)
    shares = [ProcessShare(rank, 3).step_part(PixelSampler(scene, ids, "random", seed=3, with_radii=True),
                                              BatchRequest("rays", 1001, cone_radii=True)) for rank in range(3)]
    assert [len(part.batches[0]) for part in shares] == [333, 334, 334]
    assert sum(part.weight for part in shares) == pytest.approx(1.0)
    for field in ("origins", "directions", "rgb", "background", "camera_ids", "radii"):
        joined = torch.cat([getattr(part.batches[0], field) for part in shares])
        assert torch.equal(joined, getattr(whole, field)), field


def test_shares_of_a_multi_image_step_are_the_images_one_process_draws(tiny_demo):
    scene = load_scene(tiny_demo)
    ids = scene.split("train")
    alone = ImageSampler(scene, ids, "random", seed=5)
    expected = [alone.sample() for _ in range(5)]
    parts = [ProcessShare(rank, 2).step_part(ImageSampler(scene, ids, "random", seed=5),
                                             BatchRequest("image"), images_per_step=5) for rank in range(2)]
    joined = [batch for part in parts for batch in part.batches]
    assert [batch.image_id for batch in joined] == [batch.image_id for batch in expected]
    assert all(torch.equal(a.rgb, b.rgb) and torch.equal(a.background, b.background)
               for a, b in zip(joined, expected))
    assert [len(part.batches) for part in parts] == [2, 3] and parts[0].weight == pytest.approx(0.2)
    with pytest.raises(NerfkitError, match="images_per_step 1 is fewer than the 2 processes"):
        ProcessShare(0, 2).check(BatchRequest("image"), 1)


def test_process_place_from_the_launchers_variables():
    assert process_place({}) is None
    assert process_place({"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}) is None   # exported for other tools
    full = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}
    place = process_place(full)
    assert (place.rank, place.world_size, place.local_rank, place.local_world_size, place.master_port) == (1, 4, 1, 2, 29500)
    with pytest.raises(NerfkitError, match=r"has RANK, WORLD_SIZE set but not LOCAL_RANK, MASTER_ADDR, MASTER_PORT"):
        process_place({"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(NerfkitError, match="whole numbers"):
        process_place({**full, "RANK": "one"})
    with pytest.raises(NerfkitError, match="do not describe a process"):
        process_place({**full, "RANK": "4"})


def test_process_count_checks():
    check_process_count(4, torch.device("cpu"))
    check_process_count(2, torch.device("cuda"), gpus=2)
    with pytest.raises(NerfkitError, match="--nproc 4 asks for one GPU per process but this machine has 2 GPUs"):
        check_process_count(4, torch.device("cuda"), gpus=2)
    with pytest.raises(NerfkitError, match="--nproc must be at least 1, got 0"):
        check_process_count(0, torch.device("cpu"))
