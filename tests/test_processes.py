"""Generation split over worker processes (`search.processes`): the images and pruning log of a 1-thread
generation here, the pipeline's state carried to the worker, errors raised here."""

from __future__ import annotations

import pytest
import torch

from datosearch import models
from datosearch.models.digits import digit_prompt
from datosearch.search import processes
from datosearch.search.evaluator import Calibration, Evaluator, generate
from datosearch.space.schedule import PruneConfig, Schedule, ScheduleError
from datosearch.space.trajectory import Trajectory, swapped

TOP = "down_blocks.0.attentions.0.transformer_blocks.0"
SCHEDULE = Schedule(["full", 0, "reuse", "full", 1, "full"], PruneConfig(ratios={TOP: 0.5}),
                    trajectory=Trajectory("DPMSolverMultistepScheduler", 6)).with_forecast(2)


@pytest.fixture(scope="module")
def pipe():
    return models.load("embedded")


def _calib(n: int = 5) -> Calibration:
    return Calibration([digit_prompt(i) for i in range(n)], [100 + i for i in range(n)], steps=4, guidance=2.0,
                       height=32, width=32, batch_size=2)


def _evaluator(pipe) -> Evaluator:
    return Evaluator(pipe, _calib(), [], reference=torch.zeros(1), fid=lambda images: 0.0,
                     measure_latency=lambda run: 1.0)


@pytest.fixture
def split():
    torch.set_num_threads(2)
    processes.enable()
    yield
    processes.enable(False)


def test_nothing_is_split_unless_enabled_on_cpu_with_2_to_max_threads(pipe):
    torch.set_num_threads(2)
    assert processes.parts(pipe, 24) == 1  # not enabled
    processes.enable()
    try:
        assert processes.parts(pipe, 24) == 2 and processes.parts(pipe, 1) == 1
        torch.set_num_threads(1)  # timing runs on one thread: never split
        assert processes.parts(pipe, 24) == 1
        torch.set_num_threads(processes.MAX_PROCESSES + 1)
        assert processes.parts(pipe, 24) == 1
    finally:
        processes.enable(False)


def test_split_generation_gives_the_same_images_and_pruning_log(pipe):
    ev = _evaluator(pipe)
    torch.set_num_threads(1)  # what each process runs on
    here, here_log = ev.images(SCHEDULE), ev.last_pruning
    plain = ev.images(None)
    torch.set_num_threads(2)
    processes.enable()
    try:
        split, split_log = ev.images(SCHEDULE), ev.last_pruning
        assert len(processes._workers) == 1  # one worker, kept for the next generation
        again = ev.images(None)
    finally:
        processes.enable(False)
    assert not processes._workers
    assert torch.equal(split, here) and torch.equal(again, plain) and not torch.equal(split, plain)
    assert split_log == here_log and split_log["pruned_calls"] > 0
    assert type(pipe.scheduler).__name__ == "PNDMScheduler"  # the schedule's scheduler is gone again


def test_a_swapped_scheduler_reaches_the_worker(pipe, split):
    traj = Trajectory("EulerDiscreteScheduler", 3)
    with swapped(pipe, traj):
        euler = generate(pipe, _calib(), trajectory=traj)
    processes.enable(False)
    torch.set_num_threads(1)
    with swapped(pipe, traj):
        assert torch.equal(generate(pipe, _calib(), trajectory=traj), euler)
    assert not torch.equal(generate(pipe, _calib(), steps=3), euler)


def test_a_worker_error_is_raised_here_and_the_workers_go_on(pipe, split):
    import datosearch

    handle = datosearch.apply(pipe, Schedule.full(3), strict=True, trajectory="pipeline")
    try:
        with pytest.raises(ScheduleError, match="plans 3 U-Net calls"):
            generate(pipe, _calib(), steps=4)  # both parts refuse; every reply is read
    finally:
        handle.remove()
    split = generate(pipe, _calib(), steps=2)
    processes.enable(False)
    torch.set_num_threads(1)
    assert torch.equal(split, generate(pipe, _calib(), steps=2))


@pytest.mark.parametrize("n, batch, sizes", [(24, 24, [12, 12]), (40, 20, [20, 20]), (5, 2, [4, 1]), (7, 2, [4, 3]),
                                             (3, 8, [2, 1])])
def test_parts_are_whole_batches_where_there_are_enough(n, batch, sizes):
    calib = Calibration([digit_prompt(0)] * n, list(range(n)), 4, 2.0, 32, 32, batch)
    pieces = processes._pieces(calib, 2)
    assert [len(p.seeds) for p in pieces] == sizes and sum((p.seeds for p in pieces), []) == calib.seeds
