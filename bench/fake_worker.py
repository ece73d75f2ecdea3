"""A study worker with a cheap evaluator: the real worker loop (`studies.run`), no model.

    python bench/fake_worker.py URL STUDY SECONDS_PER_TRIAL MARKER_DIR [START_TOGETHER]

Before each evaluation it writes MARKER_DIR/<pid>-<n>.started, so a test can kill it mid-trial.
With START_TOGETHER = N it writes MARKER_DIR/<pid>.ready and waits for N such files before working,
so that N workers start at once (otherwise the first one up can finish a small budget alone).

`bench/workers.py` and the tests (which put bench/ on `sys.path`, tests/conftest.py) share it: the
fake evaluator (`FakeEvaluator`), a cheap study (`study_config`, `create_study`) and starting and
waiting for worker processes (`spawn`, `finish`).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from datosearch.models.tiny import tiny_unet
from datosearch.search.evaluator import CandidateError, Evaluation
from datosearch.space.encoding import EncodingConfig
from datosearch.space.layout import transformer_blocks
from datosearch.space.schedule import Schedule
from datosearch.studies import study as studies
from datosearch.studies.config import BUDGET_ATTR, StudyConfig


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


class SleepyEvaluator(FakeEvaluator):
    def __init__(self, seconds: float, markers: Path) -> None:
        super().__init__()
        self.seconds, self.markers = seconds, markers

    def evaluate(self, schedule):
        (self.markers / f"{os.getpid()}-{len(self.calls)}.started").touch()
        time.sleep(self.seconds)
        return super().evaluate(schedule)


def study_config() -> StudyConfig:
    """A study of the fake model (6 calls of the tiny U-Net's layout, 4 images)."""
    enc = EncodingConfig(n_calls=6, blocks=[b.path for b in transformer_blocks(tiny_unet())], branches=[0, 1])
    return StudyConfig(model="fake", prompts=["p"] * 4, seeds=[0, 1, 2, 3], height=16, width=16, steps=5,
                       scheduler="PNDMScheduler", guidance=7.5, objectives=["fid", "latency"], extractor="conv-random",
                       device="cpu", encoding=dataclasses.asdict(enc), population=4)


def create_study(url: str, budget: int) -> str:
    """A new `study_config()` study in `url` with a trial budget; its name."""
    name = f"w-{uuid.uuid4().hex[:8]}"
    study = studies.create(url, name, study_config())
    study.set_user_attr(BUDGET_ATTR, budget)
    return name


def spawn(url: str, name: str, seconds: float, markers: Path, start_together: int | None = None) -> subprocess.Popen:
    """This file as a worker process on study `name`, `seconds` per trial."""
    markers.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    together = [] if start_together is None else [str(start_together)]
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), url, name, str(seconds), str(markers),
                             *together], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(procs: list[subprocess.Popen]) -> list[str]:
    """Wait for workers that nobody kills: each must exit 0 (a SIGKILL here is a failure)."""
    errors = []
    for p in procs:
        _, err = p.communicate(timeout=300)
        errors.append(err)
        assert p.returncode == 0, (p.returncode, err[-2000:])
    return errors


def main() -> None:
    url, name, seconds, markers = sys.argv[1], sys.argv[2], float(sys.argv[3]), Path(sys.argv[4])
    study = studies.open_study(url, name)
    if len(sys.argv) > 5:
        (markers / f"{os.getpid()}.ready").touch()
        deadline = time.time() + 240
        while len(list(markers.glob("*.ready"))) < int(sys.argv[5]):
            if time.time() > deadline:
                sys.exit("the other workers never became ready")
            time.sleep(0.02)
    studies.run(study, SleepyEvaluator(seconds, markers), studies.stored_config(study), None)


if __name__ == "__main__":
    main()
