"""Shared helpers of the search/studies/CLI tests: a cheap study configuration and a fake evaluator."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest
import torch

from fake_worker import FakeEvaluator  # noqa: F401  (bench/fake_worker.py, on sys.path by conftest.py)

# tiny pipeline, 3 PNDM steps (4 U-Net calls), 5 images (conv-random with 4 features), one timed repeat per
# trial instead of a calibrated cost model, quality against the study's own full compute, its own trajectory
# (the defaults are exercised in test_launch.py)
TINY_ARGS = ["--model", "tiny", "--images", "5", "--steps", "3", "--latency-repeats", "1", "--latency-warmup", "0",
             "--population", "4", "--no-progress", "--latency", "measured", "--reference", "full", "--no-search-steps"]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread, timing too: on a shared 2-core machine, two threads are many times slower."""
    from datosearch.objectives import set_timing_threads

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    timing = set_timing_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        set_timing_threads(timing)


@contextlib.contextmanager
def run_threads() -> Iterator[None]:
    """Torch on the threads `datosearch run` generates with (every core the process may use), so that images
    generated here equal its trials' bit for bit (a thread count of its own may round one pixel otherwise)."""
    from datosearch.objectives import generation_threads

    before = torch.get_num_threads()
    torch.set_num_threads(generation_threads())
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def quick_tuning() -> Iterator[None]:
    """Tuned anchors from one warp start and one descent pass (tests/test_tuning.py covers the full search):
    a study on the tiny model still enqueues them, at a third of the cost."""
    from datosearch.studies import tuning

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tuning, "GRID", tuning.GRID[:1])
        patch.setattr(tuning, "PASSES", tuning.PASSES[:1])
        yield


def embedded_study(images: int = 3, reference_steps: int = 25) -> tuple[Any, Any, torch.Tensor]:
    """The embedded pipeline on one thread, a default study configuration with `images` calibration images,
    and their reference: DPM-Solver++ 2M at `reference_steps` linspace steps (a cheap converged reference)."""
    from datosearch import models
    from datosearch.studies.resolve import resolve

    torch.set_num_threads(1)
    pipe = models.load("embedded")
    pipe.set_progress_bar_config(disable=True)
    config, pipe = resolve({"model": "embedded", "images": images, "device": "cpu"}, pipe=pipe)
    return pipe, config, reference_images(pipe, config, reference_steps)


def reference_images(pipe: Any, config: Any, steps: int = 25) -> torch.Tensor:
    """The calibration images of `config` on DPM-Solver++ 2M at `steps` linspace steps."""
    from datosearch.search.evaluator import generate
    from datosearch.space.trajectory import Trajectory, swapped
    from datosearch.studies.build import calibration

    traj = Trajectory("DPMSolverMultistepScheduler", steps, {"timestep_spacing": "linspace"})
    with swapped(pipe, traj):
        return generate(pipe, calibration(config), trajectory=traj)


def cli_study(root: Path, name: str, trials: int, args: Sequence[str] = TINY_ARGS, in_process: bool = False) -> str:
    """Run `datosearch run` (no outputs) for a new study in an SQLite file under `root`; its storage URL.
    `in_process`: generate in this process only, as a user's own process does (`search.processes` splits them
    otherwise, and the tiny pipeline rounds a pixel differently on 1 thread than on 2)."""
    from datosearch import cli
    from datosearch.search import processes

    url = f"sqlite:///{root}/{name}.db"
    limit = processes.MAX_PROCESSES
    processes.MAX_PROCESSES = 1 if in_process else limit
    try:
        with one_thread():
            assert cli.main(["run", "--study", name, "--storage", url, "--trials", str(trials), "--no-outputs",
                             *args]) == 0
    finally:
        processes.MAX_PROCESSES = limit
    return url

