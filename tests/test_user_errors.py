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


BAD_NUMBERS = [
    ("--steps", "0"), ("--trials", "-1"), ("--images", "0"), ("--guidance", "-1"), ("--guidance", "nan"),
    ("--guidance", "inf"), ("--threads", "0"), ("--population", "1"), ("--batch-size", "0"),
    ("--latency-images", "0"), ("--latency-repeats", "0"), ("--latency-warmup", "-1"), ("--resolution", "0"),
    ("--seed", "-3"), ("--max-nonfull-run", "-1"), ("--min-full", "-1"), ("--stale-after", "0"),
    ("--branches", "0,-1"), ("--objectives", ","),
]


@pytest.mark.parametrize("option,value", BAD_NUMBERS)
def test_numeric_options_are_checked_up_front(option, value, tmp_path, capsys, monkeypatch):
    from datosearch import models

    def no_loading(*args, **kwargs):
        raise AssertionError("the pipeline was loaded before the options were checked")

    monkeypatch.setattr(models, "load", no_loading)  # every loader (studies.build.load_pipeline) calls it
    db = tmp_path / "n.db"
    args = [a for a in TINY_ARGS if a != "--steps" and a != "3"]
    assert cli.main(["run", "--study", "n", "--storage", f"sqlite:///{db}", *args, option, value]) == 2
    err = _one_sentence(capsys)
    assert option in err and "ZeroDivisionError" not in err
    assert not db.exists()


@pytest.mark.parametrize("argv", [["--steps", "0"], ["--guidance", "-0.5"], ["--index", "-1"], ["--seed", "-1"]])
def test_apply_numeric_options(argv, tmp_path, capsys):
    from datosearch.space import io
    from datosearch.space.schedule import Schedule

    io.save(Schedule.full(3), tmp_path / "s.json")
    out = tmp_path / "img"
    assert cli.main(["apply", "--schedule", str(tmp_path / "s.json"), "--prompt", "x", "--out", str(out), *argv]) == 2
    assert argv[0] in _one_sentence(capsys) and not out.exists()


def test_guidance_zero_is_used_not_replaced_by_the_default():
    from datosearch.space.schedule import Schedule
    from datosearch.studies.apply import generation_settings
    from datosearch.studies.resolve import resolve

    with one_thread():
        config, pipe = resolve({"model": "tiny", "images": 5, "steps": 2, "guidance": 0.0})
    assert config.guidance == 0.0 and config.steps == 2
    assert resolve({"model": "tiny", "images": 5, "steps": 2})[0].guidance == 7.5  # not given: the default
    stored = Schedule.full(4, scheduler="ddim", steps=4, guidance=0.0)
    assert generation_settings(stored, None, None, pipe) == ({"num_inference_steps": 4}, 0.0)  # stored 0 is used
    assert generation_settings(stored.with_meta(guidance=3.0), None, 0.0, pipe) == ({"num_inference_steps": 4}, 0.0)
    assert generation_settings(Schedule.full(4), None, None, pipe) == ({"num_inference_steps": 50}, 7.5)


def test_resolution_of_a_fixed_size_model_is_refused(tmp_path, capsys):
    db = tmp_path / "r.db"
    with one_thread():
        assert cli.main(["run", "--study", "r", "--storage", f"sqlite:///{db}", "--resolution", "40", "--images", "4",
                         "--steps", "2", "--no-progress", "--no-outputs"]) == 2
    err = _one_sentence(capsys)
    assert "generates 32x32 images only; --resolution 40 cannot be used" in err and not db.exists()


def test_resolution_equal_to_the_fixed_size_is_accepted():
    from datosearch.studies.resolve import resolve

    with one_thread():
        config, _ = resolve({"model": "embedded", "images": 4, "steps": 2, "resolution": 32})
    assert (config.height, config.width) == (32, 32)
