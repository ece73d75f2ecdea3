"""Rough edges a new user hits (issue 15): each bad input is one sentence on stderr, exit 2, nothing written."""

from __future__ import annotations

import pytest

from datosearch import cli
from search_helpers import TINY_ARGS, one_thread


def _one_sentence(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("datosearch: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("argv", [
    ["show"], ["export"], ["report"], ["resume"], ["run", *TINY_ARGS, "--trials", "1", "--no-outputs"],
])
def test_corrupt_study_database_is_one_sentence_and_left_untouched(argv, tmp_path, capsys):
    db = tmp_path / "c.db"
    content = b"this is not an SQLite database\n" * 100
    db.write_bytes(content)
    with one_thread():
        code = cli.main([argv[0], "--study", "c", "--storage", f"sqlite:///{db}", *argv[1:]])
    assert code == 2
    err = _one_sentence(capsys)
    assert f"{db} is not an SQLite database" in err
    assert db.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.db"]  # no -wal/-shm, no reference cache
