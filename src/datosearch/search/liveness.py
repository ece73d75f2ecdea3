"""Crashed workers never leave zombies: Optuna heartbeats plus a sweep of trials whose worker is gone.

Every trial records the worker that runs it (`host:pid:start-ticks`). Before each new trial a
worker sweeps the study; a RUNNING trial is failed and re-queued (Optuna's
`RetryHeartbeatStaleTrialCallback`, so `retried_trial_number` works as usual) when
- its RDB heartbeat is older than the storage's grace period (`optuna.storages.fail_stale_trials`), or
- its worker ran on this host and that process no longer exists (immediate, any storage), or
- `stale_after` seconds have passed since it started (Journal storage across hosts, which has no
  heartbeats: choose it above your longest trial).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import warnings
from typing import Iterator

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import get_heartbeat_thread  # the thread study.optimize runs; ask/tell has none
from optuna.trial import FrozenTrial, TrialState

from .attrs import WORKER_ATTR

MAX_RETRY = 3


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a live pid from a reused one)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def worker_id() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or 0}"


def worker_alive(worker: str) -> bool | None:
    """True/False for a worker on this host, None when it ran elsewhere (or the id is unreadable)."""
    try:
        host, pid, ticks = worker.rsplit(":", 2)
        pid_n = int(pid)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    if os.path.isdir("/proc/self"):
        return _start_ticks(pid_n) == ticks
    try:
        os.kill(pid_n, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Record the worker on the trial and keep its RDB heartbeat alive while the block runs."""
    trial.set_user_attr(WORKER_ATTR, worker_id())
    with get_heartbeat_thread(trial._trial_id, study._storage):
        yield


def _is_stale(trial: FrozenTrial, now: datetime.datetime, stale_after: float | None) -> bool:
    worker = trial.user_attrs.get(WORKER_ATTR)
    alive = worker_alive(worker) if worker else None
    if alive is not None:
        return not alive
    started = trial.datetime_start
    return stale_after is not None and started is not None and (now - started).total_seconds() > stale_after


def sweep_stale(study: optuna.Study, stale_after: float | None = None) -> list[int]:
    """Fail and re-queue RUNNING trials whose worker is gone; returns their numbers."""
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    with warnings.catch_warnings():  # both are stable in practice but marked experimental; keep the bar clean
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # RDB heartbeats; re-queues through the storage's callback
        retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    now = datetime.datetime.now()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.FAIL)):
        if trial.state == TrialState.FAIL:
            if trial.number in running:  # failed just now by the heartbeat check
                failed.append(trial.number)
        elif _is_stale(trial, now, stale_after):
            try:
                if study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                    retry(study, trial)
                    failed.append(trial.number)
            except UpdateFinishedTrialError:  # another worker failed it first
                pass
    return sorted(failed)
