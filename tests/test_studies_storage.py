"""Storage URLs: SQLite in WAL mode with a busy timeout (reader + writer), journal files, defaults."""

import sqlite3
import threading

import optuna
import pytest

from datosearch.studies.storage import default_url, open_storage, sqlite_path, study_dir, study_names


def test_sqlite_is_wal_with_busy_timeout(tmp_path):
    url = f"sqlite:///{tmp_path}/a.db"
    storage = open_storage(url)
    with storage.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60000
    assert sqlite3.connect(tmp_path / "a.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reader_and_writer_do_not_lock(tmp_path):
    url = f"sqlite:///{tmp_path}/rw.db"
    study = optuna.create_study(study_name="rw", storage=open_storage(url))
    errors = []

    def read() -> None:
        reader = optuna.load_study(study_name="rw", storage=open_storage(url))
        try:
            for _ in range(30):
                reader.get_trials(deepcopy=False)
        except Exception as exc:  # noqa: BLE001 - any failure is the test's finding
            errors.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    for i in range(30):
        study.tell(study.ask(), float(i))
    thread.join()
    assert errors == [] and len(study.trials) == 30


def test_journal_storage(tmp_path):
    storage = open_storage(f"journal:{tmp_path}/j/s.log")
    optuna.create_study(study_name="j", storage=storage).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert study_names(open_storage(f"journal:{tmp_path}/j/s.log")) == ["j"]


@pytest.mark.parametrize("url, path", [("sqlite:///studies/a.db", "studies/a.db"), ("sqlite:////abs/a.db", "/abs/a.db"),
                                       ("postgresql://u@h/db", None), ("sqlite:///:memory:", None)])
def test_sqlite_paths(url, path):
    assert (str(sqlite_path(url)) if sqlite_path(url) else None) == path


def test_defaults():
    assert default_url("demo") == "sqlite:///studies/demo.db"
    assert str(study_dir("sqlite:///studies/demo.db", "demo")) == "studies/demo.files"
