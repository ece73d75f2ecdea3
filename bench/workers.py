"""Multi-worker throughput on PostgreSQL: trials/minute with 1, 2 and 4 workers on one study.

Each worker is `bench/fake_worker.py` (the real worker loop, `studies.run`) with a fixed-cost,
sleep-based evaluator, so 2 CPU cores do not limit it. Throughput is counted from the trials'
own timestamps (first start to last completion), which leaves out process start-up.

    python bench/workers.py [--storage postgresql://postgres@127.0.0.1:5432/test] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from datosearch.objectives import device_name
from datosearch.search.liveness import WORKER_ATTR
from datosearch.studies import study as studies
from datosearch.studies.storage import open_storage
from fake_worker import create_study, finish, spawn

RESULTS = Path(__file__).resolve().parent / "results"


def throughput(url: str, n_workers: int, seconds: float, per_worker: int) -> dict[str, float]:
    name = create_study(url, per_worker * n_workers)
    with tempfile.TemporaryDirectory() as markers:
        finish([spawn(url, name, seconds, Path(markers)) for _ in range(n_workers)])
    trials = studies.open_study(url, name).get_trials(states=(TrialState.COMPLETE,))
    optuna.delete_study(study_name=name, storage=open_storage(url))
    span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    # the window in which every worker was busy: from the last worker's first start to the first worker's last end
    by_worker: dict[str, list] = {}
    for t in trials:
        by_worker.setdefault(t.user_attrs[WORKER_ATTR], []).append(t)
    lo = max(min(t.datetime_start for t in ts) for ts in by_worker.values())
    hi = min(max(t.datetime_complete for t in ts) for ts in by_worker.values())
    inside = sum(lo <= t.datetime_complete <= hi for t in trials)
    window = (hi - lo).total_seconds()
    return {"workers": len(by_worker), "trials": len(trials), "span_s": span, "per_minute": 60 * len(trials) / span,
            "window_s": window, "window_per_minute": 60 * inside / window if window > 0 else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--seconds", type=float, default=1.0, help="cost of one fake trial")
    parser.add_argument("--per-worker", type=int, default=12, help="trial budget per worker")
    args = parser.parse_args()
    rows = [throughput(args.storage, n, args.seconds, args.per_worker) for n in (1, 2, 4)]
    base, wbase = rows[0]["per_minute"], rows[0]["window_per_minute"]
    lines = [f"# Worker scaling on {args.storage.split('@')[-1]} from {device_name('cpu')}", "",
             f"Fake trial: {args.seconds} s sleep; budget {args.per_worker} COMPLETE trials per worker; "
             f"throughput from trial timestamps ({time.strftime('%Y-%m-%d')}).", "",
             "Whole span: first trial start to last completion (includes workers' staggered start-up on 2 cores). "
             "All busy: only the window in which every worker was running trials.", "",
             "| workers | trials | span s | trials/min (span) | scaling (span) | trials/min (all busy) | scaling (all busy) "
             "| ideal |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['workers']} | {r['trials']} | {r['span_s']:.1f} | {r['per_minute']:.1f} | "
              f"{r['per_minute'] / base:.2f}x | {r['window_per_minute']:.1f} | {r['window_per_minute'] / wbase:.2f}x | "
              f"{r['workers']}x |" for r in rows]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "workers_postgres.md").write_text(text)
    (RESULTS / "workers_postgres.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(text)


if __name__ == "__main__":
    main()
