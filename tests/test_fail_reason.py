"""Trials failed by the stale-trial sweep say why in `fail_reason` (issue 15)."""

from __future__ import annotations

import socket
import time

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from datosearch.search.attrs import FAIL_ATTR, WORKER_ATTR
from datosearch.search import liveness
from datosearch.search.liveness import sweep_stale
from datosearch.studies import storage as storages
from datosearch.studies import study as studies
from test_workers import _create

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
X = {"x": optuna.distributions.FloatDistribution(0, 1)}


def test_dead_worker_and_stale_after_reasons():
    study = optuna.create_study()
    host = socket.gethostname()
    dead = study.ask(X)
    dead.set_user_attr(WORKER_ATTR, f"{host}:999999999:1")  # a process that no longer exists
    remote = study.ask(X)
    remote.set_user_attr(WORKER_ATTR, "another-host:42:7")
    assert sweep_stale(study) == [0]
    assert study.trials[0].user_attrs[FAIL_ATTR] == f"worker {host}:999999999 died"
    assert FAIL_ATTR not in study.trials[1].user_attrs  # still running, untouched
    assert sweep_stale(study, stale_after=0.5) == []  # young
    time.sleep(0.6)
    assert sweep_stale(study, stale_after=0.5) == [1]
    reason = study.trials[1].user_attrs[FAIL_ATTR]
    assert reason.startswith("older than --stale-after 0.5 s (started ") and "by worker another-host:42)" in reason
    retries = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in retries) == [0, 1]
    assert all(FAIL_ATTR not in t.user_attrs for t in retries)  # the re-queued copies do not inherit it


def test_trial_whose_worker_never_named_itself(monkeypatch):
    """A worker killed between `study.ask()` and naming itself leaves a nameless RUNNING trial."""
    study = optuna.create_study()
    study.ask(X)  # no WORKER_ATTR: killed right after Optuna created it
    assert sweep_stale(study) == []  # young: a live worker may be about to name itself
    monkeypatch.setattr(liveness, "UNCLAIMED_AFTER_S", 0.2)
    time.sleep(0.3)
    assert sweep_stale(study) == [0]
    reason = study.trials[0].user_attrs[FAIL_ATTR]
    assert reason.startswith("no worker named itself within 0.2 s (started ") and "killed while asking" in reason
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == 0


def test_heartbeat_stale_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(storages, "HEARTBEAT_INTERVAL_S", 1)
    monkeypatch.setattr(storages, "GRACE_PERIOD_S", 1)
    url = f"sqlite:///{tmp_path}/hb.db"
    study = studies.open_study(url, _create(url, 3))
    trial = study.ask(X)
    trial.set_user_attr(WORKER_ATTR, "another-host:1234:1")
    study._storage.record_heartbeat(trial._trial_id)
    time.sleep(2.2)
    assert sweep_stale(study) == [trial.number]
    failed = study.trials[trial.number]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs[FAIL_ATTR] == "heartbeat stale: none for more than 1 s (worker another-host:1234)"
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == trial.number
    assert FAIL_ATTR not in retry.user_attrs
