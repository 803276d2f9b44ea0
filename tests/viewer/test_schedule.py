"""Progressive refinement and the render budget that keeps training at speed."""

from __future__ import annotations

import pytest

from nerfkit.viewer.camera_math import image_size
from nerfkit.viewer.schedule import (
    ProgressiveSchedule,
    RenderBudget,
    affordable_long_side,
)


def test_still_camera_refines_level_by_level_then_stops():
    schedule = ProgressiveSchedule((0.25, 0.5, 1.0))
    assert schedule.next_job() is None
    schedule.invalidate(7)
    scales = []
    while (job := schedule.next_job()) is not None:
        scales.append(job.scale)
        schedule.done(job)
    assert scales == [0.25, 0.5, 1.0]


def test_moving_camera_stays_coarse():
    schedule = ProgressiveSchedule((0.25, 0.5, 1.0))
    schedule.invalidate(1)
    for _ in range(5):                  # the camera moves while every frame is drawn
        job = schedule.next_job()
        assert job.scale == 0.25
        schedule.invalidate(1)
        schedule.done(job)              # stale: does not advance the level
        assert not schedule.is_current(job)
    job = schedule.next_job()
    schedule.done(job)
    assert schedule.next_job().scale == 0.5      # it stopped: refine


def test_clients_take_turns_and_forgotten_clients_get_nothing():
    schedule = ProgressiveSchedule((0.5, 1.0))
    for client in (1, 2, 3):
        schedule.invalidate(client)
    order = []
    for _ in range(3):
        job = schedule.next_job()
        order.append(job.client_id)
        schedule.done(job)
    assert sorted(order) == [1, 2, 3]
    schedule.forget(2)
    remaining = []
    while (job := schedule.next_job()) is not None:
        remaining.append(job.client_id)
        schedule.done(job)
    assert sorted(remaining) == [1, 3]


def test_invalidate_wakes_a_waiting_renderer():
    schedule = ProgressiveSchedule()
    assert not schedule.wait(0.01)
    schedule.invalidate(1)
    assert schedule.wait(0.01)


@pytest.mark.parametrize("fraction, step_seconds, frame_seconds", [(0.1, 0.05, 0.3), (0.1, 0.2, 0.02),
                                                                   (0.25, 0.01, 0.5)])
def test_budget_keeps_rendering_below_its_share(fraction, step_seconds, frame_seconds):
    """Simulated: training steps of a fixed length, and a frame whenever the budget allows."""
    budget = RenderBudget(fraction)
    train = render = 0.0
    for _ in range(20_000):
        budget.trained(step_seconds)
        train += step_seconds
        if budget.may_render():
            budget.rendered(frame_seconds)
            render += frame_seconds
    share = render / (train + render)
    assert share <= fraction + frame_seconds / (train + render) + 1e-9
    assert share >= 0.8 * fraction       # and the viewer does get its share


def test_budget_rejects_bad_fractions():
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError):
            RenderBudget(bad)


def test_moving_frames_shrink_to_the_time_target():
    assert affordable_long_side(64, 1.5, 0.0, 0.25) == 64             # nothing measured yet
    assert affordable_long_side(64, 1.5, 1e-6, 0.25) == 64            # fast model: as asked
    slow = 1e-3                                                        # 1 ms per pixel (a CPU NeRF)
    side = affordable_long_side(64, 1.5, slow, 0.25)
    width, height = image_size(1.5, side)
    assert side < 64 and width * height * slow <= 0.25
    assert affordable_long_side(64, 1.5, 1.0, 0.25) == 16             # hopeless: the floor
