"""Optuna storages by URL: SQLite (default `sqlite:///studies/NAME.db`, WAL + busy timeout), any RDB URL, journal files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import optuna
import sqlalchemy

SQLITE_TIMEOUT_S = 60


def default_url(study: str) -> str:
    return f"sqlite:///studies/{study}.db"


def sqlite_path(url: str) -> Path | None:
    """The database file of a `sqlite:///` URL (relative or absolute), None for other URLs."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):]
    return None if path in ("", ":memory:") else Path(path)


def study_dir(url: str, study: str) -> Path:
    """Where files belonging to a study live (reference-image cache): beside its SQLite file, else ./studies."""
    db = sqlite_path(url)
    return (db.parent if db is not None else Path("studies")) / f"{study}.files"


def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_TIMEOUT_S * 1000}")
    cursor.close()


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Open (creating tables if needed) the storage at `url`.

    SQLite gets WAL journaling and a 60 s busy timeout so that a reader (optuna-dashboard) and a
    writer do not fail with "database is locked". `journal:PATH` opens a journal-file storage.
    """
    if url.startswith("journal:"):
        path = Path(url[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    db = sqlite_path(url)
    if db is None:
        return optuna.storages.RDBStorage(url)
    db.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(db, timeout=SQLITE_TIMEOUT_S) as conn:  # WAL is persistent: set it before any engine
        conn.execute("PRAGMA journal_mode=WAL")
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S}})
    sqlalchemy.event.listen(storage.engine, "connect", _on_connect)
    storage.engine.dispose()  # later connections run the pragmas above
    return storage


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
