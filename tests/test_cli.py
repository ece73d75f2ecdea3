"""The CLI: help, one-sentence errors with exit 2 and no DB written, SIGKILL then resume."""

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

import datosearch
from datosearch import cli
from datosearch.search import liveness
from datosearch.studies import open_study
from search_helpers import TINY_ARGS, one_thread


@pytest.mark.parametrize("command", ["run", "resume", "worker", "export", "report", "apply", "show"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    assert "--study" in capsys.readouterr().out or command == "apply"


def test_run_help_states_the_defaults_a_new_study_gets(capsys):
    from datosearch.studies.resolve import DEFAULTS

    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, key in [("--images", "images"), ("--steps", "steps"), ("--batch-size", "batch_size"),
                      ("--latency-warmup", "latency_warmup"), ("--population", "population")]:
        stated = re.search(re.escape(flag) + r" \S+ [^-]*?\(default (\w+)", text)
        assert stated and stated.group(1) == str(DEFAULTS[key]), (flag, stated and stated.group(0))


def test_commands_registry():
    assert set(cli.COMMANDS) == {"run", "resume", "worker", "export", "report", "apply", "show"}


def test_worker_bad_input_is_one_sentence(tmp_path, capsys):
    db = tmp_path / "none.db"
    assert cli.main(["worker", "--study", "nope", "--storage", f"sqlite:///{db}"]) == 2
    assert cli.main(["worker", "--study", "nope", "--storage", "postgresql://postgres@127.0.0.1:1/test"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("datosearch: error: no study database") and not db.exists()
    assert lines[1].startswith("datosearch: error: cannot open storage postgresql://") and len(lines) == 2


def test_export_of_a_study_without_completed_trials(tmp_path, capsys):
    from test_workers import _create

    url = f"sqlite:///{tmp_path}/e.db"
    name = _create(url, 3)
    out = tmp_path / "out"
    assert cli.main(["export", "--study", name, "--storage", url, "--out", str(out)]) == 2
    assert "has no completed trials to export" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("argv", [
    ["export", "--study", "nope"], ["show", "--study", "nope"], ["report", "--study", "nope"],
    ["resume", "--study", "nope"],
])
def test_missing_study_is_one_sentence_and_creates_nothing(argv, tmp_path, capsys):
    db = tmp_path / "none.db"
    assert cli.main(argv + ["--storage", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("datosearch: error: no study database") and err.count("\n") == 1
    assert not db.exists()


def test_bad_objective_and_schedule_file(tmp_path, capsys):
    db = tmp_path / "bad.db"
    with one_thread():
        assert cli.main(["run", "--study", "b", "--storage", f"sqlite:///{db}", *TINY_ARGS, "--objectives", "fid,speed"]) == 2
    assert "unknown objective" in capsys.readouterr().err and not db.exists()
    assert cli.main(["apply", "--schedule", str(tmp_path / "missing.json"), "--prompt", "x"]) == 2
    assert "cannot read schedule file" in capsys.readouterr().err


def _states(url: str) -> dict[int, tuple]:
    return {t.number: (t.state, t.values, t.params) for t in open_study(url, "k").trials}


def _count(db: Path, state: str) -> int:
    """Read-only peek (opening an RDBStorage here would race the other process creating the tables)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM trials WHERE state = ?", (state,)).fetchone()[0]
    except sqlite3.Error:
        return 0


def _kill_mid_trial(proc: subprocess.Popen, db: Path, min_complete: int) -> None:
    """SIGKILL `proc` while the storage shows one of its trials RUNNING: stop it (SIGSTOP), look, kill or go on."""
    deadline = time.time() + 180
    while time.time() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        if _count(db, "COMPLETE") >= min_complete:
            proc.send_signal(signal.SIGSTOP)
            if _count(db, "RUNNING") == 1:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                return
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    pytest.fail("the study made no progress")


def test_sigkill_then_resume(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/k.db"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(datosearch.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "datosearch.cli", "run", "--study", "k", "--storage", url,
                             "--trials", "40", "--no-outputs", *TINY_ARGS], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _kill_mid_trial(proc, tmp_path / "k.db", min_complete=3)
    finally:
        proc.kill()
    before = _states(url)
    complete = {n: v for n, v in before.items() if v[0] == TrialState.COMPLETE}
    (running,) = [n for n, v in before.items() if v[0] == TrialState.RUNNING]  # killed mid-trial
    # killed between `study.ask()` and naming its worker, the trial is only known dead once it is
    # older than UNCLAIMED_AFTER_S (test_fail_reason): don't wait here
    monkeypatch.setattr(liveness, "UNCLAIMED_AFTER_S", 0.0)
    with one_thread():  # the budget counts COMPLETE trials
        assert cli.main(["resume", "--study", "k", "--storage", url, "--trials", str(len(complete) + 2),
                         "--no-progress", "--no-outputs"]) == 0
    after = _states(url)
    assert {n: after[n] for n in complete} == complete  # completed trials intact
    assert after[running][0] == TrialState.FAIL  # the interrupted one is failed ...
    assert not any(v[0] == TrialState.RUNNING for v in after.values())
    new = sorted(set(after) - set(before))  # the count continues: no number reused or skipped
    assert set(before) <= set(after) and new == list(range(max(before) + 1, max(before) + 1 + len(new)))
    assert sum(v[0] == TrialState.COMPLETE for v in after.values()) == len(complete) + 2
    # ... and its genes were enqueued again (Optuna's retry callback records the original number)
    retried = [t for t in open_study(url, "k").trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == running]
    killed = open_study(url, "k").trials[running].params  # partial if it was killed mid-suggest
    assert len(retried) == 1 and killed.items() <= retried[0].params.items()

def _fake_model(monkeypatch, config, evaluator) -> None:
    """`resolve` returns the stored configuration without loading a model; `build_evaluator` gives `evaluator`."""
    from types import SimpleNamespace

    from datosearch.studies import build, resolve

    monkeypatch.setattr(resolve, "resolve", lambda opts, base=None, device=None, pipe=None: (config, SimpleNamespace(device="cpu")))
    monkeypatch.setattr(build, "build_evaluator", lambda *a, **k: evaluator() if callable(evaluator) else evaluator)


@pytest.mark.parametrize("command", ["worker", "run"])
def test_run_where_every_candidate_fails_exits_nonzero_and_says_why(command, tmp_path, monkeypatch, capsys):
    from search_helpers import FakeEvaluator
    from test_workers import _config, _create

    url = f"sqlite:///{tmp_path}/f.db"
    name = _create(url, 3)
    _fake_model(monkeypatch, _config(), FakeEvaluator(fail_if=lambda s: True))
    argv = [command, "--study", name, "--storage", url, "--no-progress"] + (["--no-outputs"] if command == "run" else [])
    with one_thread():
        assert cli.main(argv) == 3
    err = capsys.readouterr().err
    assert "search incomplete: stopped after 10 failed trials in a row: 10 of this run's 10 trials failed" in err
    assert "holds 0 of 3 COMPLETE trials" in err and "CandidateError: the generated images contain NaN" in err
    trials = open_study(url, name).trials
    assert len(trials) == 10 and all(t.state == TrialState.FAIL for t in trials)


def test_internal_error_shows_its_traceback_and_exits_1(tmp_path, monkeypatch, capsys):
    from test_workers import _config, _create

    url = f"sqlite:///{tmp_path}/i.db"
    name = _create(url, 3)

    def bug():
        raise ValueError("cannot map 7 tokens onto a grid of latents (4, 4)")  # as dato/state.py's token_grid

    _fake_model(monkeypatch, _config(), bug)
    with one_thread():
        assert cli.main(["worker", "--study", name, "--storage", url, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in bug" in err
    assert "ValueError: cannot map 7 tokens" in err and "datosearch: internal error (ValueError)" in err
    assert "datosearch: error:" not in err  # not dressed up as the user's mistake


def test_user_error_types_share_one_base():
    from datosearch.errors import DatosearchError
    from datosearch.objectives import ObjectiveError
    from datosearch.studies.config import StudyConfigError
    from datosearch.studies.storage import StorageError
    from datosearch.studies.study import StudyNotFoundError

    for error in (cli.UsageError, ObjectiveError, StudyConfigError, StorageError, StudyNotFoundError):
        assert issubclass(error, DatosearchError) and issubclass(error, ValueError)


def test_budget_is_per_command_and_a_resume_with_another_budget_is_not_refused(tmp_path, monkeypatch, capsys):
    """`--budget MINUTES`: no trial starts once MINUTES have passed since the command's first trial; a new study
    given no --trials has no trial target; the budget is not part of the study, so a resume or a worker with
    another budget continues it. A fake clock moves a minute on every look."""
    from datosearch.options import MAX_TRIALS
    from datosearch.search import runner
    from datosearch.studies.study import budget

    minutes = iter(range(0, 10**6, 60))
    monkeypatch.setattr(runner, "clock", lambda: float(next(minutes)))
    url = f"sqlite:///{tmp_path}/b.db"
    storage = ["--study", "b", "--storage", url, "--no-progress"]

    def complete() -> int:
        return sum(t.state == TrialState.COMPLETE for t in open_study(url, "b").trials)

    with one_thread():
        assert cli.main(["run", *storage, "--budget", "1", "--no-outputs", *TINY_ARGS]) == 0  # 1 trial, then 1 min
        assert complete() == 1 and budget(open_study(url, "b")) == MAX_TRIALS
        assert cli.main(["resume", *storage, "--budget", "2.5", "--no-outputs"]) == 0  # starts at 0, 1 and 2 min
        assert complete() == 4
        assert cli.main(["worker", *storage, "--budget", "1"]) == 0
    err = capsys.readouterr().err
    assert complete() == 5 and "datosearch: error" not in err and "different configuration" not in err
    assert [line for line in err.splitlines() if "time budget" in line] == [
        f"datosearch: time budget of {m} min spent: no new trial started; study 'b' holds {n} COMPLETE trials; "
        "`datosearch resume --study b` continues it" for m, n in [(1, 1), (2.5, 4), (1, 5)]]
