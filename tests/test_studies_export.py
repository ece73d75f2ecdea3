"""A small real study (tiny pipeline): export validates and re-applies to the same images, report, show, refusal."""

import json
import os
import re
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from PIL import Image

from datosearch import atomic as atomic_module, cli
from datosearch.errors import UserValueError
from datosearch.search.evaluator import images_digest
from datosearch.space.io import json_schema
from datosearch.space.schedule import Schedule
from datosearch.studies import export_front, open_study, write_report
from search_helpers import TINY_ARGS, cli_study, one_thread, run_threads


@pytest.fixture(scope="module")
def study_url(tmp_path_factory):
    return cli_study(tmp_path_factory.mktemp("study"), "s", 10, in_process=True)  # re-applied bit for bit below


def test_export_validates_and_reapplies(study_url, tmp_path, capsys):
    out = tmp_path / "export"
    assert cli.main(["export", "--study", "s", "--storage", study_url, "--out", str(out)]) == 0
    index = json.loads((out / "index.json").read_text())
    assert index["format"] == "datosearch/export@1" and index["entries"]
    assert [o["name"] for o in index["objectives"]] == ["psnr", "latency", "shift"]  # the default objectives
    for entry in index["entries"]:
        jsonschema.validate(json.loads((out / entry["file"]).read_text()), json_schema())
    study = open_study(study_url, "s")
    k = max(range(len(index["entries"])), key=lambda i: index["entries"][i]["speedup"])  # an accelerated one
    trial = study.trials[index["entries"][k]["trial"]]
    assert list(index["entries"][k]["values"].values()) == trial.values
    prompts = study.user_attrs["datosearch_config"]["prompts"]
    args = ["apply", "--schedule", str(out / "index.json"), "--index", str(k), "--out", str(tmp_path / "img")]
    with run_threads():  # as the study's trials were generated (a user's process: torch's default, every core)
        assert cli.main(args + [a for p in prompts for a in ("--prompt", p)]) == 0
    paths = sorted((tmp_path / "img").glob("*.png"))
    images = torch.stack([torch.from_numpy(np.array(Image.open(p))).permute(2, 0, 1) / 255.0 for p in paths])
    assert images_digest(images) == trial.user_attrs["images_digest"]


def test_report_is_self_contained(study_url, tmp_path):
    path = tmp_path / "r.html"
    assert cli.main(["report", "--study", "s", "--storage", study_url, "--out", str(path)]) == 0
    html = path.read_text()
    assert "deepcache-N2-b0" in html and "Hypervolume history" in html and "Cache plans of the front" in html
    assert "Plotly.newPlot" in html and len(html) > 1_000_000  # plotly.js is inlined
    opening_tags = re.findall(r"<script[^>]*>", html)
    assert opening_tags and not any("src=" in tag for tag in opening_tags)  # nothing loaded from elsewhere
    markup = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.S)  # (plotly.js's own strings hold links)
    assert "http" not in markup and "<link" not in markup


def test_show_prints_the_front(study_url, capsys):
    assert cli.main(["show", "--study", "s", "--storage", study_url]) == 0
    header, rule, *rows = capsys.readouterr().out.strip().splitlines()
    assert header.split()[:5] == ["#", "trial", "psnr", "latency", "shift"] and set(rule) == {"-", " "}
    study = open_study(study_url, "s")
    best = {t.number: t for t in study.best_trials}
    assert rows and len(rows) == len({t.user_attrs["schedule_key"] for t in best.values()})  # one row per schedule
    fids = []
    for k, row in enumerate(rows):
        cells = row.split()
        trial = best[int(cells[1])]  # every row is a Pareto-optimal trial ...
        assert int(cells[0]) == k and cells[2:5] == [f"{v:.4g}" for v in trial.values]  # ... with its values
        assert cells[5] == f"{trial.user_attrs['speedup']:.2f}x"
        c = Schedule.from_dict(trial.user_attrs["schedule"]).counts()
        assert cells[6] == f"{c['full']}/{c['shallow']}/{c['reuse']}"
        fids.append(trial.values[0])
    assert fids == sorted(fids)


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def test_failed_export_leaves_the_previous_one_intact(study_url, tmp_path, monkeypatch):
    study = open_study(study_url, "s")
    out = tmp_path / "export"
    export_front(study, out)
    for path in out.iterdir():  # mark the previous export, so that rewriting it with equal content shows
        path.write_text(path.read_text().replace("{", '{"previous": true, ', 1))
    before = _snapshot(out)
    assert len(before) >= 3  # index + at least two schedules, so a failure can land between files
    calls = []

    def disk_full(path, data, real=atomic_module.write_atomic, **kw):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(path, data, **kw)

    monkeypatch.setattr(atomic_module, "write_atomic", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export_front(study, out)
    assert _snapshot(out) == before  # nothing replaced, nothing left behind


def test_export_writes_the_index_last_and_removes_stale_schedules(study_url, tmp_path, monkeypatch):
    out = tmp_path / "export"
    out.mkdir()
    for name in ("schedule_97.json", "schedule_98.json", "index.json", "notes.txt"):
        (out / name).write_text("{}")
    placed = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (placed.append(Path(dst)), real_replace(src, dst)))
    export_front(open_study(study_url, "s"), out)
    final = [p.name for p in placed if p.parent == out]
    index = json.loads((out / "index.json").read_text())
    files = [e["file"] for e in index["entries"]]
    assert final[-1] == "index.json" and sorted(final[:-1]) == sorted(files)
    assert sorted(p.name for p in out.glob("schedule_*.json")) == sorted(files)  # 97 and 98 are gone
    assert (out / "notes.txt").exists() and not [p for p in out.iterdir() if p.name.startswith(".")]


def test_failed_report_write_leaves_no_temporary_file(study_url, tmp_path, monkeypatch):
    path = tmp_path / "r.html"
    study = open_study(study_url, "s")
    write_report(study, path)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(UserValueError, match="cannot write the report .*No space left"):  # one sentence, exit 2
        write_report(study, path)
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"] and path.read_bytes() == before


def test_resume_with_another_config_is_refused(study_url, capsys):
    study = open_study(study_url, "s")
    before = [(t.number, t.state, t.values) for t in study.trials]
    with one_thread():
        code = cli.main(["resume", "--study", "s", "--storage", study_url, *TINY_ARGS, "--steps", "4", "--guidance", "3",
                         "--trials", "12"])
    err = capsys.readouterr().err
    assert code == 2
    assert "steps (stored 3, given 4)" in err and "guidance (stored 7.5, given 3.0)" in err
    assert err.count("\n") == 1
    assert [(t.number, t.state, t.values) for t in open_study(study_url, "s").trials] == before
