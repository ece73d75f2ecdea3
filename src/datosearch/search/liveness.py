"""Crashed workers never leave zombies: Optuna heartbeats plus a sweep of trials whose worker is gone.

Every trial records the worker that runs it (`host:pid:start-ticks`). Before each new trial a
worker sweeps the study; a RUNNING trial is failed and re-queued (Optuna's
`RetryHeartbeatStaleTrialCallback`, so `retried_trial_number` works as usual) when
- its RDB heartbeat is older than the storage's grace period (as `optuna.storages.fail_stale_trials`), or
- its worker ran on this host and that process no longer exists (immediate, any storage), or
- `stale_after` seconds have passed since it started (Journal storage across hosts, which has no
  heartbeats: choose it above your longest trial), or
- it never named its worker and `UNCLAIMED_AFTER_S` have passed since it started: its worker was
  killed between Optuna creating the trial and the worker writing its name (a few storage calls).
Each failed trial records why in `fail_reason`: "worker HOST:PID died", "heartbeat stale: ...",
"older than --stale-after N s ...", "no worker named itself within N s ...".
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import os
import socket
import warnings
from typing import Iterator

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import get_heartbeat_thread  # the thread study.optimize runs; ask/tell has none
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from .attrs import FAIL_ATTR, WORKER_ATTR

MAX_RETRY = 3
# A live worker names itself on its trial a few storage calls after `study.ask()` creates it; a trial
# still nameless after this long was abandoned by a worker killed in between.
UNCLAIMED_AFTER_S = 60.0


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


def _worker_name(worker: str | None) -> str:
    """`host:pid` of a worker id (`host:pid:start-ticks`), or 'unknown'."""
    return worker.rsplit(":", 1)[0] if worker and worker.count(":") >= 2 else (worker or "unknown")


def stale_reason(trial: FrozenTrial, now: datetime.datetime, stale_after: float | None) -> str | None:
    """Why a RUNNING trial is abandoned (its worker died on this host, or it ran past `stale_after`), else None."""
    worker = trial.user_attrs.get(WORKER_ATTR)
    alive = worker_alive(worker) if worker else None
    if alive is not None:
        return None if alive else f"worker {_worker_name(worker)} died"
    started = trial.datetime_start
    age = (now - started).total_seconds() if started is not None else 0.0
    if stale_after is not None and age > stale_after:
        return (f"older than --stale-after {stale_after:g} s (started {started:%Y-%m-%d %H:%M:%S} "
                f"by worker {_worker_name(worker)})")
    if worker is None and age > UNCLAIMED_AFTER_S:
        return (f"no worker named itself within {UNCLAIMED_AFTER_S:g} s (started {started:%Y-%m-%d %H:%M:%S}; "
                "its worker was killed while asking for it)")
    return None


def _heartbeat_stale(study: optuna.Study) -> dict[int, str]:
    """Trial ids whose RDB heartbeat is older than the grace period, with the reason (as `fail_stale_trials`)."""
    storage = study._storage
    if not is_heartbeat_enabled(storage):
        return {}
    interval = storage.get_heartbeat_interval()
    backend = getattr(storage, "_backend", storage)  # Optuna wraps RDBStorage in a _CachedStorage
    grace = getattr(backend, "grace_period", None) or 2 * interval  # Optuna's default grace period
    return {tid: f"heartbeat stale: none for more than {grace} s" for tid in storage._get_stale_trial_ids(study._study_id)}


def _fail(study: optuna.Study, trial: FrozenTrial, reason: str) -> bool:
    """Record `reason` and fail the trial; False if another worker finished or failed it first."""
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, FAIL_ATTR, reason)
        return storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    except UpdateFinishedTrialError:
        return False


def sweep_stale(study: optuna.Study, stale_after: float | None = None) -> list[int]:
    """Fail and re-queue RUNNING trials whose worker is gone (each gets a `fail_reason`); returns their numbers.

    The retry (a WAITING copy of the trial, Optuna's `RetryHeartbeatStaleTrialCallback`) is made
    from the trial as it was while running, so the copy does not inherit the `fail_reason`.
    """
    with warnings.catch_warnings():  # both are stable in practice but marked experimental; keep the bar clean
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        heartbeat_stale = _heartbeat_stale(study)
        storage_retry = study._storage.get_heartbeat_stale_trial_callback() if heartbeat_stale else None
        retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    now = datetime.datetime.now()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial._trial_id in heartbeat_stale:
            reason, callback = heartbeat_stale[trial._trial_id], storage_retry
            worker = trial.user_attrs.get(WORKER_ATTR)
            if worker:
                reason += f" (worker {_worker_name(worker)})"
        else:
            reason, callback = stale_reason(trial, now, stale_after), retry
        if reason is not None and _fail(study, trial, reason):
            if callback is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    callback(study, copy.deepcopy(trial))  # as Optuna does: the callback edits attrs
            failed.append(trial.number)
    return sorted(failed)
