"""Many workers on one study (PostgreSQL, SQLite, Journal file), crashes, and the global budget rule."""

from __future__ import annotations

import os
import signal
import time

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from datosearch.search.liveness import WORKER_ATTR, sweep_stale
from datosearch.studies import storage as storages
from datosearch.studies import study as studies
from fake_worker import create_study as _create, finish as _finish, spawn as _spawn  # bench/fake_worker.py
from fake_worker import study_config as _config  # noqa: F401  (other tests import it from here)

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _postgres_url() -> str:
    try:
        storages.open_storage(POSTGRES)
    except storages.StorageError as exc:
        if os.environ.get("CI"):
            raise  # CI starts PostgreSQL: not reaching it there is a failure
        pytest.skip(f"no PostgreSQL server reachable at 127.0.0.1:5432 ({exc})")
    return POSTGRES


@pytest.fixture(params=["sqlite", "journal", "postgres"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/w.db"
    if request.param == "journal":
        return f"journal:{tmp_path}/w.log"
    return _postgres_url()


@pytest.mark.parametrize("n_workers", [2, 4])
def test_workers_share_one_study_and_its_budget(url, n_workers, tmp_path):
    if (n_workers == 4) != url.startswith("postgresql"):
        pytest.skip("4 workers run on PostgreSQL, 2 on an SQLite file and 2 on a Journal file")
    budget = 12
    name = _create(url, budget)
    errors = _finish([_spawn(url, name, 0.05, tmp_path / "m", start_together=n_workers) for _ in range(n_workers)])
    trials = studies.open_study(url, name).get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(numbers) == list(range(len(trials)))  # no duplicated or lost trial numbers
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert budget <= len(complete) <= budget + n_workers - 1  # the budget rule (see search.runner.run_until)
    assert len({t.user_attrs[WORKER_ATTR] for t in complete}) >= 2  # the work was shared
    assert not any("database is locked" in e for e in errors)


def test_sigkill_mid_trial_fails_and_retries_it(url, tmp_path):
    name = _create(url, 10)
    markers = tmp_path / "m"
    victim = _spawn(url, name, 0.6, markers)
    study = studies.open_study(url, name)
    deadline = time.time() + 120
    while not (len(list(markers.glob(f"{victim.pid}-*"))) >= 3 and study.get_trials(states=(TrialState.RUNNING,))):
        assert time.time() < deadline and victim.poll() is None, "the worker never started a trial"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    before = {t.number: t.values for t in study.get_trials(states=(TrialState.COMPLETE,))}
    (killed,) = [t.number for t in study.get_trials(states=(TrialState.RUNNING,))]
    _finish([_spawn(url, name, 0.05, markers)])
    after = {t.number: t for t in studies.open_study(url, name).get_trials()}
    assert not [t for t in after.values() if t.state == TrialState.RUNNING]
    assert before and all(after[n].values == v for n, v in before.items())  # nothing completed was lost
    assert after[killed].state == TrialState.FAIL
    retries = [t for t in after.values() if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert after[killed].params.items() <= retries[0].params.items()  # the genes it had are kept


def test_heartbeat_fails_a_remote_workers_silent_trial(tmp_path, monkeypatch):
    """A worker on another machine stops sending heartbeats: after the grace period, it is failed and retried."""
    monkeypatch.setattr(storages, "HEARTBEAT_INTERVAL_S", 1)
    monkeypatch.setattr(storages, "GRACE_PERIOD_S", 1)
    url = f"sqlite:///{tmp_path}/hb.db"
    name = _create(url, 3)
    study = studies.open_study(url, name)
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr(WORKER_ATTR, "another-host:1234:1")
    study._storage.record_heartbeat(trial._trial_id)
    assert sweep_stale(study) == []  # heartbeat fresh, worker elsewhere: alive as far as we can tell
    time.sleep(2.2)
    assert sweep_stale(study) == [trial.number]
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == trial.number
