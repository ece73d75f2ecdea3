"""Loading schedules from a real `datosearch/export@1` index: `space.load(index, index=K)` and `datosearch.apply`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import datosearch
from datosearch.models.tiny import tiny_unet
from datosearch.space import io
from datosearch.space.schedule import Schedule, ScheduleError
from datosearch.studies import study as studies
from datosearch.studies.export import export_front
from search_helpers import FakeEvaluator
from test_workers import _config


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    """A real export (`export_front`) of a small study scored by the fake evaluator: several entries."""
    root = tmp_path_factory.mktemp("export")
    url = f"sqlite:///{root}/e.db"
    config = _config()
    study = studies.create(url, "e", config, [Schedule.full(6), Schedule.deepcache(6, 2), Schedule.deepcache(6, 3)])
    studies.run(study, FakeEvaluator(), config, 12)
    export_front(study, root / "out")
    return root / "out"


def test_load_entry_k_of_a_real_export_index(export_dir):
    index = json.loads((export_dir / "index.json").read_text())
    assert index["format"] == io.EXPORT_FORMAT and len(index["entries"]) >= 2
    for k, entry in enumerate(index["entries"]):
        schedule = io.load(export_dir / "index.json", index=k)
        assert schedule.key() == entry["key"] and schedule.meta["trial"] == entry["trial"]
        assert schedule == io.load(export_dir / entry["file"])  # the entry's file, relative to the index


def test_multi_entry_export_without_index_is_one_sentence(export_dir):
    n = len(json.loads((export_dir / "index.json").read_text())["entries"])
    with pytest.raises(ScheduleError) as exc:
        io.load(export_dir / "index.json")
    message = str(exc.value)
    assert f"holds {n} schedules" in message and "index=K" in message and "\n" not in message
    with pytest.raises(ScheduleError, match=f"index {n} is not in 0..{n - 1}"):
        io.load(export_dir / "index.json", index=n)
    with pytest.raises(ScheduleError, match=f"holds {n} schedules"):
        datosearch.apply(tiny_unet(), export_dir / "index.json")


def test_apply_takes_a_single_entry_export_index(export_dir, tmp_path):
    index = json.loads((export_dir / "index.json").read_text())
    entry = index["entries"][0]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / entry["file"]).write_text((export_dir / entry["file"]).read_text())
    (tmp_path / "sub" / "index.json").write_text(json.dumps({**index, "entries": [entry]}))
    handle = datosearch.apply(tiny_unet(), str(tmp_path / "sub" / "index.json"))
    try:
        assert handle.schedule.key() == entry["key"]
    finally:
        handle.remove()


def test_index_on_a_plain_schedule_file(tmp_path):
    path = tmp_path / "s.json"
    io.save(Schedule.full(3), path)
    assert io.load(path, index=0) == io.load(path)
    with pytest.raises(ScheduleError, match="holds one schedule"):
        io.load(path, index=2)


def test_entry_pointing_to_an_index_is_not_followed(tmp_path):
    (tmp_path / "index.json").write_text(json.dumps({"format": io.EXPORT_FORMAT, "entries": [{"file": "index.json"}]}))
    with pytest.raises(ScheduleError, match="unknown schema None"):  # read as a schedule, no recursion
        io.load(tmp_path / "index.json")
