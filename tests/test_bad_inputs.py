"""Bad inputs a new user tries (issue 32), in one table. Every row: exit 2, at most two lines on stderr and
no traceback, no warning a user would see, the message names the offending value, no model is built, and no
database, export or report is created or changed (every file under the working directory is compared byte
for byte)."""

from __future__ import annotations

import gc
import os
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Callable

import pytest

from datosearch import cli
from datosearch.models import embedded, tiny
from datosearch.options import BOUNDS, EXCLUSIVE_LOW, flag
from datosearch.space import io
from datosearch.space.schedule import Schedule
from datosearch.studies import study as studies
from search_helpers import TINY_ARGS, FakeEvaluator
from test_workers import _config

DB = Path("studies/good.db")  # relative to the test's working directory


@pytest.fixture(scope="module")
def good_db(tmp_path_factory) -> bytes:
    """The bytes of a valid study database holding study 'good' (6 COMPLETE trials, fake evaluator)."""
    root = tmp_path_factory.mktemp("good")
    url = f"sqlite:///{root}/good.db"
    config = _config()
    study = studies.create(url, "good", config, [Schedule.full(6), Schedule.deepcache(6, 2)])
    studies.run(study, FakeEvaluator(), config, 6)
    del study
    gc.collect()
    with sqlite3.connect(root / "good.db") as conn:  # everything into the main file: the copies stand alone
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return (root / "good.db").read_bytes()


@pytest.fixture
def workdir(tmp_path, monkeypatch, good_db):
    """A working directory with studies/good.db, a plain file `file.txt` and a schedule `s.json`."""
    monkeypatch.chdir(tmp_path)
    DB.parent.mkdir()
    DB.write_bytes(good_db)
    Path("file.txt").write_text("a file, not a directory\n")
    io.save(Schedule.full(3), "s.json")

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was built before the bad input was refused")

    monkeypatch.setattr(tiny, "tiny_sd_pipeline", no_loading)  # what models.load builds 'tiny' and
    monkeypatch.setattr(embedded, "load_embedded", no_loading)  # 'embedded' with
    return tmp_path


def _zero_a_page() -> None:
    """Zero the 4 KiB page holding the root of the `trials` table (a b-tree page, so SQLite notices)."""
    with sqlite3.connect(DB) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'trials'").fetchone()[0]
    conn.close()
    data = bytearray(DB.read_bytes())
    data[(root - 1) * page_size:root * page_size] = bytes(page_size)
    DB.write_bytes(data)


def _empty() -> None:
    DB.write_bytes(b"")


def _file(name: str) -> Callable[[], None]:
    return lambda: Path(name).write_text("a file\n")


RUN = ["run", "--study", "new", *TINY_ARGS]
APPLY = ["apply", "--schedule", "s.json", "--prompt", "x"]
NOT_A_DIR = "file.txt is a file, not a directory"
DAMAGED = ["studies/good.db is damaged", "sqlite3 studies/good.db .recover"]

# (id, argv, setup before the call, texts the message must hold, texts it must not)
ROWS: list[tuple[str, list[str], Callable[[], None] | None, list[str], list[str]]] = [
    ("export-out-under-a-file", ["export", "--study", "good", "--out", "file.txt/sub"], None,
     ["cannot write the export to file.txt/sub", NOT_A_DIR], []),
    ("export-out-in-proc", ["export", "--study", "good", "--out", "/proc/x"], None,
     ["cannot write the export to /proc/x", "/proc/x cannot be created"], []),
    ("apply-out-under-a-file", [*APPLY, "--out", "file.txt/img"], None,
     ["cannot write the images to file.txt/img", NOT_A_DIR], []),
    ("report-out-under-a-file", ["report", "--study", "good", "--pictures", "0", "--out", "file.txt/r.html"], None,
     ["cannot write the report to file.txt/r.html", NOT_A_DIR], ["File exists"]),
    ("run-exports-is-a-file", ["run", "--study", "new", *TINY_ARGS], _file("exports"),
     ["cannot write the export to exports/new", "exports is a file, not a directory"], []),
    ("run-storage-under-a-file", [*RUN, "--storage", "sqlite:///file.txt/new.db"], None,
     ["file.txt/new.db", NOT_A_DIR], []),
    ("run-journal-under-a-file", [*RUN, "--storage", "journal:file.txt/new.log"], None,
     ["file.txt/new.log", NOT_A_DIR], []),
    ("run-steps-1e9", [*RUN, "--steps", "1000000000"], None, ["--steps", "1..1000", "got 1000000000", "timesteps"], []),
    ("run-images-1e12", [*RUN, "--images", "1000000000000"], None,
     ["--images", "1..20000", "got 1000000000000", "memory"], []),
    ("run-resolution-not-a-multiple-of-8", [*RUN, "--resolution", "33"], None, ["multiple of 8", "got 33"], []),
    *[(f"{command}-damaged-database", [command, "--study", "good", *extra], _zero_a_page, DAMAGED, [])
      for command, extra in [("show", []), ("export", []), ("report", ["--pictures", "0"]), ("resume", []),
                             ("run", TINY_ARGS), ("worker", ["--storage", "sqlite:///studies/good.db"])]],
    *[(f"{command}-empty-database", [command, "--study", "good", *extra], _empty,
       ["no Optuna study tables in studies/good.db"], [])
      for command, extra in [("show", []), ("export", []), ("report", ["--pictures", "0"]), ("resume", [])]],
    ("show-missing-journal", ["show", "--study", "good", "--storage", "journal:none.log"], None,
     ["no study journal at none.log"], []),
    *[(f"{command}-budget-{value}", [*argv, "--budget", value], None,
       ["--budget must be a number of minutes > 0 and at most 43200", f"got {value}"], [])
      for command, argv in [("run", RUN), ("resume", ["resume", "--study", "good"]),
                            ("worker", ["worker", "--study", "good", "--storage", "sqlite:///studies/good.db"])]
      for value in ("0", "-3", "nan", "inf")],
    ("export-heldout-seed-among-calibration-seeds", ["export", "--study", "good", "--heldout", "8", "--heldout-seed", "1"],
     None, ["--heldout-seed must be an integer in 20000..", "got 1", "studies calibrate on seeds 0..N-1"], []),
    ("run-model-missing-directory", ["run", "--study", "new", "--model", "/nonexistent", "--no-outputs"], None,
     ["cannot load pipeline '/nonexistent'"], []),
]
HIDDEN = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)  # not shown by default


def _command_of(dest: str) -> list[str]:
    """A command line, without the option, of a command that takes `dest`."""
    commands = {name: {a.dest for a in sub._actions}
                for name, sub in cli.parser()._subparsers._group_actions[0].choices.items()}
    base = {"run": RUN, "apply": APPLY, "report": ["report", "--study", "good"],
            "export": ["export", "--study", "good"]}
    return next(argv for name, argv in base.items() if dest in commands[name])


def _too_big(dest: str) -> str:
    bound = BOUNDS[dest]
    return str(int(bound.hi) + bound.step) if bound.integer else str(bound.hi * 10)


UPPER = [(f"upper-bound-{flag(dest)}", [*_command_of(dest), flag(dest), _too_big(dest)], None,
          [flag(dest), f"at most {int(BOUNDS[dest].hi)}" if dest in EXCLUSIVE_LOW else f"..{int(BOUNDS[dest].hi)}",
           f"got {_too_big(dest)}", BOUNDS[dest].why], [])
         for dest in BOUNDS]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("argv,setup,expected,unexpected", [row[1:] for row in ROWS + UPPER],
                         ids=[row[0] for row in ROWS + UPPER])
def test_bad_input_is_one_sentence_and_writes_nothing(argv, setup, expected, unexpected, workdir, capsys):
    if setup is not None:
        setup()
    before = _tree(workdir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = cli.main(argv)
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2, err
    assert err.startswith("datosearch: error: ") and err.count("\n") <= 2 and "Traceback" not in err, err
    for text in expected:
        assert text in err, (text, err)
    for text in unexpected:
        assert text not in err, (text, err)
    assert [str(w.message) for w in caught if not issubclass(w.category, HIDDEN)] == []
    assert _tree(workdir) == before  # nothing created, changed or left behind
    assert not Path("/proc/x").exists()


def test_every_bounded_option_has_an_upper_bound_and_help_states_it(capsys):
    for dest, bound in BOUNDS.items():
        assert bound.lo < bound.hi < float("inf") and bound.why, dest
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "an integer in 1..1000: diffusion models are trained on 1000 timesteps" in text
    assert "a multiple of 8 in 8..4096" in text and "an integer in 1..256" in text and "an integer in 1..20000" in text


def test_the_good_database_is_read_without_a_change(workdir, capsys):
    """The control for the table: the same commands on the intact copy work and leave it as it was."""
    before = DB.read_bytes()
    assert cli.main(["show", "--study", "good"]) == 0
    assert cli.main(["export", "--study", "good", "--out", "out"]) == 0
    assert "trial" in capsys.readouterr().out and Path("out/index.json").is_file()
    wal = DB.with_name("good.db-wal")  # there while this process holds connections: it must hold no page
    assert DB.read_bytes() == before and (not wal.exists() or wal.stat().st_size == 0)


def test_a_study_in_use_is_found_while_its_tables_are_still_in_the_wal(tmp_path):
    """The storage check reads through SQLite's locks while a database is open elsewhere: a study made
    while another connection held the file lives in the WAL until a checkpoint, not yet in the main file."""
    db = tmp_path / "s.db"
    other = sqlite3.connect(db)  # optuna-dashboard, say: open before the study is made, so nothing checkpoints
    other.execute("PRAGMA journal_mode=WAL")
    other.execute("CREATE TABLE other (x)")
    other.commit()
    try:
        studies.create(f"sqlite:///{db}", "s", _config())
        assert studies.open_study(f"sqlite:///{db}", "s").study_name == "s"
    finally:
        other.close()


def test_a_missing_model_directory_is_the_sentence_alone(tmp_path):
    """In a subprocess: a library's warning printed before the sentence is seen only there."""
    proc = subprocess.run([sys.executable, "-m", "datosearch.cli", "run", "--study", "m", "--model", "/nonexistent",
                           "--images", "2", "--steps", "2", "--no-outputs", "--no-progress"], cwd=tmp_path,
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("datosearch: error: cannot load pipeline '/nonexistent'"), lines
    assert list(tmp_path.iterdir()) == []


def test_a_disk_that_fills_up_while_apply_saves_images_is_one_sentence(tmp_path, monkeypatch, capsys):
    """The images are written atomically: a full disk at the second image is exit 2 with the path and the
    system's reason, the first image stays whole and no temporary file is left."""
    import errno

    from datosearch import atomic

    monkeypatch.chdir(tmp_path)
    io.save(Schedule.full(4, model="tiny"), "s.json")
    real, written = os.replace, []

    def replace(src, dst):
        if written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(dst)
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    code = cli.main(["apply", "--schedule", "s.json", "--prompt", "a", "--prompt", "b", "--steps", "3",
                     "--out", "img"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") <= 2 and "Traceback" not in err, err
    assert "cannot write images to img: No space left on device" in err
    assert sorted(p.name for p in Path("img").iterdir()) == ["image_000.png"]
