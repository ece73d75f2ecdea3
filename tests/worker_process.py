"""A study worker with a cheap evaluator: the real worker loop (`studies.run`), no model.

    python tests/worker_process.py URL STUDY SECONDS_PER_TRIAL MARKER_DIR [START_TOGETHER]
Before each evaluation it writes MARKER_DIR/<pid>-<n>.started, so a test can kill it mid-trial.
With START_TOGETHER = N it writes MARKER_DIR/<pid>.ready and waits for N such files before working,
so that N workers start at once (otherwise the first one up can finish a small budget alone).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from search_helpers import FakeEvaluator  # noqa: E402

from datosearch.studies import study as studies  # noqa: E402


class SleepyEvaluator(FakeEvaluator):
    def __init__(self, seconds: float, markers: Path) -> None:
        super().__init__()
        self.seconds, self.markers = seconds, markers

    def evaluate(self, schedule):
        (self.markers / f"{os.getpid()}-{len(self.calls)}.started").touch()
        time.sleep(self.seconds)
        return super().evaluate(schedule)


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
