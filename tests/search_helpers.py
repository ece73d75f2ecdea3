"""Shared helpers of the search/studies/CLI tests: a cheap study configuration and a fake evaluator."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Sequence

import torch

from datosearch.search.evaluator import CandidateError, Evaluation
from datosearch.space.schedule import Schedule

# tiny pipeline, 3 PNDM steps (4 U-Net calls), 5 images (conv-random with 4 features), one timed repeat per
# trial instead of a calibrated cost model, quality against the study's own full compute, its own trajectory
# (the defaults are exercised in test_launch.py)
TINY_ARGS = ["--model", "tiny", "--images", "5", "--steps", "3", "--latency-repeats", "1", "--latency-warmup", "0",
             "--population", "4", "--no-progress", "--latency", "measured", "--reference", "full", "--no-search-steps"]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread: on a shared 2-core machine, two threads are many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cli_study(root: Path, name: str, trials: int, args: Sequence[str] = TINY_ARGS) -> str:
    """Run `datosearch run` (no outputs) for a new study in an SQLite file under `root`; its storage URL."""
    from datosearch import cli

    url = f"sqlite:///{root}/{name}.db"
    with one_thread():
        assert cli.main(["run", "--study", name, "--storage", url, "--trials", str(trials), "--no-outputs", *args]) == 0
    return url


class FakeEvaluator:
    """Scores a schedule without a model: cost = share of computed calls, error = share skipped + pruning."""

    objectives = ["fid", "latency"]

    def __init__(self, fail_if: callable = lambda s: False) -> None:
        self.calls: list[str] = []
        self.fail_if = fail_if

    def prepare(self) -> None:
        pass

    def evaluate(self, schedule: Schedule) -> Evaluation:
        self.calls.append(schedule.key())
        if self.fail_if(schedule):
            raise CandidateError("the generated images contain NaN or infinite values")
        c = schedule.counts()
        ratio = sum(schedule.prune.ratios.values())
        cost = (c["full"] + 0.4 * c["shallow"]) / schedule.n_calls * (1 - 0.1 * ratio)
        return Evaluation({"fid": 1 - cost + 0.01 * ratio, "latency": cost}, {"speedup": 1 / cost})
