"""Optuna storages by URL: SQLite (default `sqlite:///studies/NAME.db`, WAL + busy timeout), any RDB URL, journal files."""

from __future__ import annotations

import os
import shlex
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RetryHeartbeatStaleTrialCallback

from ..atomic import writing
from ..errors import UserValueError
from ..search.liveness import MAX_RETRY

SQLITE_TIMEOUT_S = 60
# Heartbeats of RDB storages (seconds); a trial whose heartbeat is older than the grace period is
# failed and re-queued by the next worker. The environment overrides them (tests use small values).
HEARTBEAT_INTERVAL_S = int(os.environ.get("DATOSEARCH_HEARTBEAT_INTERVAL", 30))
GRACE_PERIOD_S = int(os.environ.get("DATOSEARCH_GRACE_PERIOD", 120))


class StorageError(UserValueError):
    """A storage URL that cannot be opened (no server, no driver, bad URL, a damaged database file)."""


class NoDatabaseError(StorageError):
    """A storage file (SQLite, journal) that holds no Optuna tables: missing, empty or another program's."""


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


SQLITE_HEADER = b"SQLite format 3\x00"


def _check_sqlite_file(db: Path, url: str) -> bool:
    """Refuse, without writing anything, an existing file that is not an SQLite database or is damaged;
    whether it holds Optuna's tables (False for a missing or empty file)."""
    if db.is_dir():
        raise StorageError(f"the study database {db} (storage {url}) is a directory, not an SQLite file")
    try:
        with db.open("rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StorageError(f"cannot read the study database {db} (storage {url}): {exc.strerror}") from None
    if header and header != SQLITE_HEADER:
        raise StorageError(f"{db} is not an SQLite database (storage {url}); it was left untouched, "
                           f"so move it away or pass another --storage")
    return bool(header) and _intact_tables(db, url)


def _intact_tables(db: Path, url: str) -> bool:
    """Whether the SQLite file `db` holds Optuna's `studies` table, after SQLite's own consistency check
    (`PRAGMA quick_check`, which reads every page): a damaged file is refused before anything writes to
    it. Read-only, creating no -wal/-shm file: a read-write connection would checkpoint the file on closing
    and leave this process's open study connections reading a stale snapshot (other workers' trials
    unseen). While the database is in use (its -wal and -shm files exist) the read takes SQLite's locks and
    sees the WAL (an immutable read would miss its pages, tables created there included, and could meet
    a checkpoint half done); otherwise nobody has it open and it is read as immutable."""
    in_use = all(db.with_name(db.name + suffix).exists() for suffix in ("-wal", "-shm"))
    mode = "mode=ro" if in_use else "mode=ro&immutable=1"
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?{mode}", uri=True, timeout=SQLITE_TIMEOUT_S)
    try:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
        if problems == ["ok"]:
            return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'studies'").fetchone() \
                is not None
        reason = "; ".join(line for p in problems for line in p.splitlines() if not line.startswith("***"))
    except sqlite3.DatabaseError as exc:
        reason = str(exc)
    finally:
        conn.close()
    raise StorageError(f"the study database {db} is damaged ({reason}); it was left untouched: recover its trials "
                       f"with `sqlite3 {shlex.quote(str(db))} .recover | sqlite3 recovered.db` and pass "
                       f"--storage sqlite:///recovered.db")


def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_TIMEOUT_S * 1000}")
    cursor.close()


def _rdb(url: str, **engine_kwargs: Any) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats and Optuna's retry of stale trials; one-sentence errors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs or None, heartbeat_interval=HEARTBEAT_INTERVAL_S,
                grace_period=GRACE_PERIOD_S,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))
    except ImportError as exc:  # Optuna wraps the driver's ModuleNotFoundError
        name = getattr(exc.__cause__, "name", None) or "?"
        extra = "postgres" if "psycopg" in name else "mysql" if "mysql" in name.lower() else None
        hint = f" (pip install 'datosearch[{extra}]')" if extra else ""
        raise StorageError(f"cannot open storage {url}: the database driver {name!r} is not installed{hint}") from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StorageError(f"cannot open storage {url}: {reason}") from None


def check_database(url: str, create: bool = True) -> None:
    """Refuse, reading only, a storage file that cannot be a study database: an SQLite file that is not
    one or is damaged (`StorageError`); with `create` False also a missing or empty file, or one without
    Optuna's tables (`NoDatabaseError`). Server URLs are checked when they are opened."""
    path = journal_path(url)
    if path is not None:
        if not create and not (path.is_file() and path.stat().st_size):
            raise NoDatabaseError(f"no study journal at {path} (storage {url})")
        return
    db = sqlite_path(url)
    if db is not None and not _check_sqlite_file(db, url) and not create:
        what = "no study database at" if not db.exists() else "no Optuna study tables in"
        raise NoDatabaseError(f"{what} {db} (storage {url})")


def journal_path(url: str) -> Path | None:
    """The file of a `journal:PATH` URL, None for other URLs."""
    return Path(url[len("journal:"):]) if url.startswith("journal:") else None


def open_storage(url: str, create: bool = True) -> optuna.storages.BaseStorage:
    """Open (creating tables if needed) the storage at `url`; with `create` False, a storage file that does
    not hold Optuna's tables yet is refused (`NoDatabaseError`) and nothing is created or written.

    SQLite gets WAL journaling and a 60 s busy timeout so that a reader (optuna-dashboard) and a
    writer do not fail with "database is locked". `journal:PATH` opens a journal-file storage
    (no heartbeats: see `search.liveness`). RDB storages get heartbeats.
    """
    check_database(url, create)
    path = journal_path(url)
    if path is not None:
        with writing(path, "the study journal"):
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    db = sqlite_path(url)
    if db is None:
        return _rdb(url)
    with writing(db, "the study database"):
        db.parent.mkdir(parents=True, exist_ok=True)
    try:
        with sqlite3.connect(db, timeout=SQLITE_TIMEOUT_S) as conn:  # WAL is persistent: set it before any engine
            conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"cannot open the study database {db} (storage {url}): {exc}") from None
    storage = _rdb(url, connect_args={"timeout": SQLITE_TIMEOUT_S})
    sqlalchemy.event.listen(storage.engine, "connect", _on_connect)
    storage.engine.dispose()  # later connections run the pragmas above
    return storage


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
